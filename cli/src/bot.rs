//! The participant `madang serve --bot ROOM` adds: a Rust client that publishes a moving,
//! stamped test pattern (640×360, 15 fps) and speech-like audio, and answers chat messages. It
//! gives a lone browser tab someone to see, and shows the Rust client at work.

use std::time::{Duration, Instant};

use madang::media::{Channels, SpeechSource, TestPattern};
use madang::room::{Room, RoomEvent, RoomOptions, VideoOptions};

/// Runs until the room session ends (or the task is aborted).
/// `trusted`: the server's own certificate (PEM) when it serves TLS; the bot connects to
/// the server's address, so the certificate must name it (or be self-signed for it).
pub async fn run(url: String, token: String, trusted: Option<Vec<u8>>) {
    let mut video = VideoOptions::new(640, 360);
    video.fps = 15;
    let options = RoomOptions {
        video: Some(video),
        audio: true,
        decode_video: false,
        decode_audio: false,
        trusted_certificates: trusted,
        ..RoomOptions::default()
    };
    let mut room = match Room::connect(&url, &token, options).await {
        Ok(room) => room,
        Err(e) => {
            eprintln!("bot: could not join: {e}");
            return;
        }
    };
    let mut pattern = TestPattern::new(640, 360).expect("valid size");
    let mut speech = SpeechSource::new(Channels::Mono, 20).expect("20 ms blocks");
    let start = Instant::now();
    let mut frames = tokio::time::interval(Duration::from_micros(1_000_000 / 15));
    let mut audio = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = frames.tick() => {
                let frame = pattern.next_frame(start.elapsed().as_micros() as u64);
                if room.publish_video(&frame).await.is_err() {
                    break;
                }
            }
            _ = audio.tick() => {
                let block = speech.next_frame();
                if room.publish_audio(&block).await.is_err() {
                    break;
                }
            }
            event = room.next_event() => match event {
                Some(RoomEvent::Data(m)) if m.topic == "chat" && !m.from.is_empty() => {
                    let reply = format!("{} said: {}", m.from, m.payload);
                    let _ = room.send_data("chat", &reply, Vec::new());
                }
                Some(RoomEvent::Disconnected) | None => break,
                Some(_) => {}
            },
        }
    }
    room.leave().await;
}
