//! A thousand joins and leaves against one server on loopback: nothing is left behind (no
//! session, room or task; `/metrics` back to 0) and memory stays flat.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use madang::room::{Room, RoomOptions};
use madang::sfu::{Server, ServerConfig};
use madang::signal::Role;
use tokio_tungstenite::tungstenite::Message;

/// Resident memory of this process (the server runs in it), bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Joins `room` as `identity` over a bare WebSocket, waits for `joined`, leaves, and waits
/// for the server's close.
async fn join_and_leave(server: &Server, room: &str, identity: &str) {
    let token = server
        .token(
            room,
            identity,
            identity,
            Role::Speaker,
            Duration::from_secs(60),
        )
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(server.signal_url())
        .await
        .unwrap();
    let join = serde_json::json!({"type": "join", "protocol": 1, "token": token});
    ws.send(Message::Text(join.to_string().into()))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("\"joined\"") => break,
            Ok(Some(Ok(_))) => continue,
            other => panic!("{identity}: no joined: {other:?}"),
        }
    }
    ws.send(Message::Text(r#"{"type":"leave"}"#.into()))
        .await
        .unwrap();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        if matches!(m, Message::Close(_)) {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_joins_and_leaves_leave_nothing_behind() {
    let server = Server::bind(ServerConfig::dev()).await.unwrap();
    let metrics = tokio::runtime::Handle::current().metrics();
    let start = Instant::now();
    let mut after_100 = None;
    let packets_before = server.stats().packets_in;
    for cycle in 0..1000 {
        // Ten rooms in turn, so rooms open and close too; every hundredth cycle a real
        // client with its WebRTC connections and tasks, publishing audio.
        let room = format!("room{}", cycle % 10);
        if cycle % 100 == 50 {
            let token = server
                .token(
                    &room,
                    "webrtc",
                    "WebRTC",
                    Role::Speaker,
                    Duration::from_secs(60),
                )
                .unwrap();
            let options = RoomOptions {
                audio: true,
                ..RoomOptions::default()
            };
            let client = Room::connect(&server.signal_url(), &token, options)
                .await
                .unwrap();
            // Half a second of a voice: its publishing connection comes up and carries it.
            let mut tone =
                madang::media::Tone::new(440.0, 0.3, madang::media::Channels::Mono, 20).unwrap();
            for _ in 0..25 {
                client.publish_audio(&tone.next_frame()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            client.leave().await;
        } else {
            join_and_leave(&server, &room, &format!("p{cycle}")).await;
        }
        if cycle == 99 {
            after_100 = Some((rss(), metrics.num_alive_tasks()));
        }
        if cycle % 250 == 249 {
            println!(
                "{} cycles, {:.1} s",
                cycle + 1,
                start.elapsed().as_secs_f64()
            );
        }
    }
    // The server's counters come every 100 ms; the last leave settles within a moment.
    let mut stats = server.stats();
    for _ in 0..40 {
        stats = server.stats();
        if stats.participants == 0 && stats.rooms == 0 && stats.sessions == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (stats.participants, stats.rooms, stats.sessions),
        (0, 0, 0),
        "left behind: {stats:?}"
    );
    assert!(
        stats.packets_in > packets_before + 100,
        "the WebRTC clients' audio did not arrive: {stats:?}"
    );
    let (rss_100, tasks_100) = after_100.unwrap();
    let (rss_end, tasks_end) = (rss(), metrics.num_alive_tasks());
    println!(
        "RSS after 100 cycles {:.1} MB, after 1000 {:.1} MB ({:+.1} %); tasks {tasks_100} then {tasks_end}; {:.1} s",
        rss_100 as f64 / 1e6,
        rss_end as f64 / 1e6,
        (rss_end as f64 / rss_100 as f64 - 1.0) * 100.0,
        start.elapsed().as_secs_f64()
    );
    assert!(
        tasks_end <= tasks_100,
        "tasks: {tasks_100} after 100 cycles, {tasks_end} after 1000"
    );
    assert!(
        rss_end as f64 <= rss_100 as f64 * 1.05,
        "RSS grew from {rss_100} to {rss_end} bytes"
    );
    server.shutdown().await;
}
