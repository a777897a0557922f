//! A dropped signal connection in the browser module: the demo page joins through a TCP
//! relay the test controls, plays a Rust participant, then the relay cuts its connections
//! without a WebSocket close (as a proxy or NAT reset would). The page must resume the
//! session on a new WebSocket, keep playing all along, and its chat message after the drop
//! must reach the Rust participant, who never sees the page leave
//! (`core/tests/browser/reconnect.mjs` drives the page).
#![cfg(not(target_arch = "wasm32"))]

use std::process::Stdio;
use std::time::{Duration, Instant};

use madang::media::TestPattern;
use madang::room::{Room, RoomEvent, RoomOptions, VideoOptions};
use madang::signal::Role;
use tokio::io::AsyncBufReadExt;

mod common;
use common::demo_server;
#[path = "../../core/tests/common/relay.rs"]
mod relay;
use relay::Relay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_websocket_drops_resumes_and_keeps_playing() {
    let (server, browser) = demo_server().await;
    let relay = Relay::start(server.http_addr()).await;
    let token = server
        .token(
            "field",
            "rust",
            "Rust",
            Role::Speaker,
            Duration::from_secs(600),
        )
        .unwrap();
    let mut video = VideoOptions::new(320, 180);
    video.fps = 15;
    let options = RoomOptions {
        video: Some(video),
        ..RoomOptions::default()
    };
    let mut room = Room::connect(&server.signal_url(), &token, options)
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", relay.addr.port());
    let mut node = tokio::process::Command::new("node")
        .arg(browser.join("reconnect.mjs"))
        .args([base.as_str(), "field", "rust", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/setup.sh installs nodejs)");
    let mut lines = tokio::io::BufReader::new(node.stdout.take().unwrap()).lines();
    let mut pattern = TestPattern::new(320, 180).unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(66));
    let start = Instant::now();
    let (mut result, mut chat, mut left) = (None, false, false);
    while result.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the page run did not end"
        );
        tokio::select! {
            _ = tick.tick() => {
                room.publish_video(&pattern.next_frame(start.elapsed().as_micros() as u64))
                    .await
                    .unwrap();
            }
            event = room.next_event() => match event {
                Some(RoomEvent::Data(m)) if m.payload.as_ref() == "after the drop" => chat = true,
                Some(RoomEvent::ParticipantLeft { .. }) => left = true,
                _ => {}
            },
            line = lines.next_line() => {
                let Some(line) = line.unwrap() else { break };
                let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if value["ready"] == true {
                    relay.cut();
                } else if value.get("ok").is_some() {
                    result = Some(value);
                }
            }
        }
    }
    // The chat message may still be on its way.
    let until = Instant::now() + Duration::from_secs(5);
    while !chat && Instant::now() < until {
        if let Ok(Some(RoomEvent::Data(m))) =
            tokio::time::timeout(Duration::from_millis(200), room.next_event()).await
        {
            chat = m.payload.as_ref() == "after the drop";
        }
    }
    let result = result.expect("a result line from the page");
    println!("page: {result}");
    assert_eq!(result["ok"], true, "{result}");
    assert!(
        chat,
        "the page's message after the drop reached the Rust participant"
    );
    assert!(!left, "the page never left the room");
    assert_eq!(server.stats().participants, 2);
    room.leave().await;
    server.shutdown().await;
}
