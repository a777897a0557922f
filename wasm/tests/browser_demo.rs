//! The browser package end to end: `madang serve`'s HTTP side serves the demo page
//! (`examples/web`, importing `wasm/pkg`), two headless Chromium pages join the demo room
//! with their fake cameras through `madang-wasm`, and a Rust participant joins too.
//! Each page must play the others' video (`videoWidth > 0`, `framesDecoded` rising), the
//! Rust participant must decode both browsers' H.264, chat must reach everyone, and a page
//! that closes must leave the others' grid. A screenshot of three participants is saved.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use madang::media::TestPattern;
use madang::room::{Room, RoomEvent, RoomOptions, VideoOptions};
use madang::signal::Role;

mod common;
use common::demo_server;

/// Pictures the Rust participant must decode from each browser.
const PICTURES: u32 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_pages_and_a_rust_participant_hold_a_call() {
    let (server, browser) = demo_server().await;
    let token = server
        .token(
            "demo",
            "rust",
            "Rust participant",
            Role::Speaker,
            Duration::from_secs(600),
        )
        .unwrap();
    let mut video = VideoOptions::new(640, 360);
    video.fps = 15;
    let options = RoomOptions {
        video: Some(video),
        ..RoomOptions::default()
    };
    let mut room = Room::connect(&server.signal_url(), &token, options)
        .await
        .unwrap();

    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo-three-participants.png");
    let _ = std::fs::remove_file(&screenshot);
    let base = format!("http://localhost:{}", server.http_addr().port());
    let mut node = tokio::process::Command::new("node")
        .arg(browser.join("demo.mjs"))
        .args([
            base.as_str(),
            "demo",
            "90",
            "Alice",
            "Bob",
            "--expect",
            "rust",
        ])
        .env("SCREENSHOT", &screenshot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/setup.sh installs nodejs)");
    // The pages hold the call until this side has decoded what it needs from both of them.
    let mut hold = node.stdin.take();
    let mut stdout_pipe = node.stdout.take().unwrap();
    let mut stderr_pipe = node.stderr.take().unwrap();
    let out_task = tokio::spawn(async move {
        let mut s = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stdout_pipe, &mut s)
            .await
            .ok();
        s
    });
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr_pipe, &mut s)
            .await
            .ok();
        s
    });

    // Publish the test pattern and count what arrives from each browser until node is done.
    let mut pattern = TestPattern::new(640, 360).unwrap();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(66));
    let mut decoded: HashMap<String, u32> = HashMap::new();
    let mut chat = Vec::new();
    let status = loop {
        tokio::select! {
            _ = tick.tick() => {
                let frame = pattern.next_frame(start.elapsed().as_micros() as u64);
                room.publish_video(&frame).await.unwrap();
            }
            event = room.next_event() => match event {
                Some(RoomEvent::VideoFrame { participant, .. }) => {
                    *decoded.entry(participant).or_default() += 1;
                    let enough = decoded.len() == 2 && decoded.values().all(|&n| n >= PICTURES);
                    if enough && let Some(mut pipe) = hold.take() {
                        tokio::io::AsyncWriteExt::write_all(&mut pipe, b"decoded\n").await.unwrap();
                    }
                }
                Some(RoomEvent::Data(m)) => chat.push((m.from, m.payload)),
                _ => {}
            },
            status = node.wait() => break status.unwrap(),
        }
        assert!(
            start.elapsed() < Duration::from_secs(150),
            "the browser run did not finish"
        );
    };
    let stdout = out_task.await.unwrap();
    let stderr = err_task.await.unwrap();
    println!("browser: {stdout}");
    println!("madang decoded from the browsers: {decoded:?}; chat: {chat:?}");
    println!("screenshot: {}", screenshot.display());
    assert!(
        status.success(),
        "the browser steps failed:\n{stdout}\n{stderr}"
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let ids: Vec<String> = result["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        let n = decoded.get(id).copied().unwrap_or(0);
        assert!(
            n >= PICTURES,
            "madang decoded only {n} pictures of {id}'s H.264"
        );
    }
    assert!(
        chat.iter()
            .any(|(from, text)| from == &ids[0] && &**text == "hello from Alice"),
        "the browser's chat did not reach the Rust participant: {chat:?}"
    );
    assert!(screenshot.exists(), "no screenshot saved");
    room.leave().await;
    server.shutdown().await;
}
