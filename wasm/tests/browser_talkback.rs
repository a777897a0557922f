//! Talk-back on the demo page in headless Chromium: a viewer page raises its hand, the host
//! page lets it in, the viewer's fake camera plays on the host's page; sent back, it leaves
//! the host's grid (`core/tests/browser/talkback.mjs` drives both pages). The host presses
//! "Record" on a server that records: both pages show it, and the files hold both
//! participants' pictures.
#![cfg(not(target_arch = "wasm32"))]

use std::process::Stdio;
use std::time::Duration;

mod common;
use common::demo_server_from;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_page_raises_its_hand_the_host_lets_it_in_and_its_camera_plays() {
    let recordings = std::env::temp_dir().join(format!("madang-talkback-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&recordings);
    // No room recorded from its start: the host's button starts it.
    let (server, browser) = demo_server_from(madang::sfu::ServerConfig {
        record: Some(madang::sfu::record::RecordConfig {
            dir: recordings.clone(),
            rooms: vec!["none-from-the-start".into()],
        }),
        ..madang::sfu::ServerConfig::dev()
    })
    .await;
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
    // The host's and the center's files, each with pictures ffprobe reads.
    let files: Vec<_> = std::fs::read_dir(recordings.join("class"))
        .expect("the room's recording directory")
        .map(|e| e.unwrap().path())
        .collect();
    println!("recorded: {files:?}");
    assert!(files.len() >= 2, "{files:?}");
    for file in &files {
        let probe = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v"])
            .args([
                "-show_entries",
                "stream=codec_name,nb_read_frames",
                "-of",
                "csv=p=0",
            ])
            .arg(file)
            .output()
            .expect("ffprobe: scripts/setup.sh installs ffmpeg");
        let line = String::from_utf8_lossy(&probe.stdout).trim().to_owned();
        println!("{}: {line}", file.display());
        let frames: u32 = line
            .strip_prefix("h264,")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}: {line}", file.display()));
        assert!(frames >= 20, "{}: {frames} pictures", file.display());
    }
}
