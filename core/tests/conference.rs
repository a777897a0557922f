//! Conferences over real WebRTC on loopback: the room server and several room clients in one
//! process, media flowing through the server's one UDP port.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use madang::media::{Channels, SpeechSource, TestPattern, read_stamp};
use madang::room::{Room, RoomEvent, RoomOptions, VideoOptions};
use madang::sfu::{Server, ServerConfig};
use madang::signal::Role;

const W: u32 = 320;
const H: u32 = 180;

async fn join(server: &Server, room: &str, identity: &str) -> Room {
    let token = server
        .token(
            room,
            identity,
            identity,
            Role::Speaker,
            Duration::from_secs(600),
        )
        .unwrap();
    let options = RoomOptions {
        video: Some(VideoOptions::new(W, H)),
        audio: true,
        ..RoomOptions::default()
    };
    Room::connect(&server.signal_url(), &token, options)
        .await
        .unwrap()
}

/// Publishes the test pattern and speech for `seconds`, collecting decoded stamps per sender.
async fn run_participant(
    room: Room,
    seconds: f64,
    clock: Instant,
) -> (Room, HashMap<String, Vec<u32>>, u32) {
    let mut room = room;
    let mut pattern = TestPattern::new(W, H).unwrap();
    let mut speech = SpeechSource::new(Channels::Mono, 20).unwrap();
    let mut received: HashMap<String, Vec<u32>> = HashMap::new();
    let start = Instant::now();
    let mut frames_sent = 0u32;
    let mut video_tick = tokio::time::interval(Duration::from_millis(33));
    let mut audio_tick = tokio::time::interval(Duration::from_millis(20));
    while start.elapsed().as_secs_f64() < seconds {
        tokio::select! {
            _ = video_tick.tick() => {
                let frame = pattern.next_frame(clock.elapsed().as_micros() as u64);
                room.publish_video(&frame).await.unwrap();
                frames_sent += 1;
            }
            _ = audio_tick.tick() => {
                room.publish_audio(&speech.next_frame()).await.unwrap();
            }
            event = room.next_event() => match event {
                Some(RoomEvent::VideoFrame { participant, frame, .. }) => {
                    if let Some(stamp) = read_stamp(&frame) {
                        received.entry(participant).or_default().push(stamp.seq);
                    }
                }
                Some(RoomEvent::Error { code, reason }) => eprintln!("DEBUG error {code}: {reason}"),
                Some(RoomEvent::Disconnected) | None => break,
                _ => {}
            }
        }
    }
    (room, received, frames_sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_participants_see_each_other() {
    let server = Server::bind(ServerConfig::dev()).await.unwrap();
    let a = join(&server, "r", "alice").await;
    let b = join(&server, "r", "bob").await;
    let clock = Instant::now();
    let (ra, rb) = tokio::join!(
        run_participant(a, 4.0, clock),
        run_participant(b, 4.0, clock)
    );
    let (room_a, got_a, sent_a) = ra;
    let (room_b, got_b, sent_b) = rb;
    println!(
        "alice sent {sent_a}, bob got {:?}",
        got_b.get("alice").map(Vec::len)
    );
    println!(
        "bob sent {sent_b}, alice got {:?}",
        got_a.get("bob").map(Vec::len)
    );
    println!("server: {:?}", server.stats());
    println!("alice receive: {:?}", room_a.receive_stats());
    assert!(
        got_b.get("alice").is_some_and(|v| v.len() > 30),
        "bob saw too little of alice"
    );
    assert!(
        got_a.get("bob").is_some_and(|v| v.len() > 30),
        "alice saw too little of bob"
    );
    room_a.leave().await;
    room_b.leave().await;
    server.shutdown().await;
}
