//! Talk-back on the demo page in headless Chromium: a viewer page raises its hand, the host
//! page lets it in, the viewer's fake camera plays on the host's page; sent back, it leaves
//! the host's grid (`core/tests/browser/talkback.mjs` drives both pages).
#![cfg(not(target_arch = "wasm32"))]

use std::process::Stdio;
use std::time::Duration;

mod common;
use common::demo_server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_page_raises_its_hand_the_host_lets_it_in_and_its_camera_plays() {
    let (server, browser) = demo_server().await;
    let base = format!("http://localhost:{}", server.http_addr().port());
    let node = tokio::process::Command::new("node")
        .arg(browser.join("talkback.mjs"))
        .args([base.as_str(), "class", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/setup.sh installs nodejs)");
    let out = tokio::time::timeout(Duration::from_secs(120), node.wait_with_output())
        .await
        .expect("the browser run finished")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("browser: {stdout}");
    assert!(
        out.status.success(),
        "talk-back steps failed:\n{stdout}\n{stderr}"
    );
    server.shutdown().await;
}
