//! Interop with an independent WebRTC stack: headless Chromium joins through a test page that
//! speaks the signal protocol in plain JavaScript (`tests/browser/interop.html`), publishes its
//! fake camera as H.264, and receives a Rust participant's test pattern. Video must flow both
//! ways: the browser's `framesDecoded` grows, and madang decodes the browser's H.264.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use madang::media::TestPattern;
use madang::room::{Room, RoomEvent, RoomOptions, VideoOptions};
use madang::sfu::{Server, ServerConfig};
use madang::signal::Role;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_and_madang_exchange_h264() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} missing: scripts/test.sh installs Debian's chromium"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core missing: scripts/test.sh runs npm install in core/tests/browser"
    );
    let config = ServerConfig {
        static_dir: Some(browser_dir()),
        ..ServerConfig::dev()
    };
    let server = Server::bind(config).await.unwrap();
    let ttl = Duration::from_secs(600);
    let rust_token = server
        .token("interop", "rust", "Rust participant", Role::Speaker, ttl)
        .unwrap();
    let browser_token = server
        .token("interop", "chromium", "Chromium", Role::Speaker, ttl)
        .unwrap();
    let options = RoomOptions {
        video: Some(VideoOptions::new(640, 360)),
        audio: true,
        ..RoomOptions::default()
    };
    let mut room = Room::connect(&server.signal_url(), &rust_token, options)
        .await
        .unwrap();

    let url = format!(
        "http://localhost:{}/interop.html?token={browser_token}",
        server.http_addr().port()
    );
    let screenshot =
        std::env::temp_dir().join(format!("madang-interop-{}.png", std::process::id()));
    let mut node = tokio::process::Command::new("node")
        .arg(browser_dir().join("interop.mjs"))
        .args([url.as_str(), "rust/camera", "30", "40"])
        .env("CHROMIUM", &chromium)
        .env("LINGER_MS", "3000")
        .env("SCREENSHOT", &screenshot)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (scripts/test.sh installs nodejs)");

    // Publish the test pattern and count what arrives from the browser until node is done.
    let mut pattern = TestPattern::new(640, 360).unwrap();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(33));
    let mut from_browser = 0u32;
    let mut browser_size = None;
    let status = loop {
        tokio::select! {
            _ = tick.tick() => {
                room.publish_video(&pattern.next_frame(start.elapsed().as_micros() as u64)).await.unwrap();
            }
            event = room.next_event() => {
                if let Some(RoomEvent::VideoFrame { participant, frame, .. }) = event
                    && participant == "chromium"
                {
                    from_browser += 1;
                    browser_size = Some((frame.width(), frame.height()));
                }
            }
            status = node.wait() => break status.unwrap(),
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "browser run did not finish"
        );
    };
    let output = node.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("browser: {stdout}");
    println!("madang decoded {from_browser} frames from Chromium, size {browser_size:?}");
    println!("screenshot: {}", screenshot.display());
    assert!(
        status.success(),
        "the browser did not decode 30 frames of madang's video:\n{stdout}\n{stderr}"
    );
    assert!(
        from_browser >= 30,
        "madang decoded only {from_browser} frames of the browser's H.264"
    );
    room.leave().await;
    server.shutdown().await;
}
