//! Tile sizes from the browser end to end: a publisher sends simulcast (640×360 and
//! 320×180) — a Rust participant, or a page of the demo publishing its camera with
//! `publishCamera({ simulcast: true })` — and two headless Chromium pages of the demo
//! (`examples/web`, importing `wasm/pkg`) show it, one on a small screen, one on a large
//! one. The grid of each page tells the server its tile sizes (the protocol's `layout`), and
//! each page must play the video at the width its tile needs: 320 on the small screen, 640
//! on the large — on the loopback, and with every link a senior center's DSL line
//! (`madang serve --network rural`: 1 Mbit/s, 1 % loss, 60 ± 20 ms).
#![cfg(not(target_arch = "wasm32"))]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use madang::media::TestPattern;
use madang::netsim::Profile;
use madang::room::{Room, RoomOptions, VideoOptions};
use madang::signal::Role;

mod common;
use common::demo_server_from;

/// The room server's log of layer changes and probes (`madang::sfu` at debug), kept for
/// a failing run's output; one buffer for the process, emptied by each run.
#[derive(Clone)]
struct ServerLog(Arc<Mutex<Vec<u8>>>);

impl ServerLog {
    fn install() -> Self {
        static LOG: OnceLock<ServerLog> = OnceLock::new();
        let log = LOG
            .get_or_init(|| {
                let log = ServerLog(Arc::default());
                let writer = log.clone();
                tracing_subscriber::fmt()
                    .with_env_filter("madang::sfu=debug,madang::room=debug")
                    .with_ansi(false)
                    .with_writer(move || writer.clone())
                    .init();
                log
            })
            .clone();
        log.take();
        log
    }

    fn take(&self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut *self.0.lock().unwrap())).into_owned()
    }
}

impl std::io::Write for ServerLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One line of the run's timeline at `t`: the publisher's uplink, and per downlink its
/// estimate and videos paused or below their tile's layer, with the server's probes.
fn moment(
    t: Duration,
    server: &madang::sfu::EngineStats,
    room: &madang::room::RoomStats,
) -> String {
    let kbps = |bps: f64| (bps / 1000.0) as u64;
    let downlinks: Vec<String> = server
        .downlinks
        .iter()
        .map(|d| {
            let e = &d.estimate;
            format!(
                "{} {}k ({}k/{}k, loss {:.1} %) {} videos, {} paused, {} lowered",
                d.identity,
                kbps(e.delay_based_bps.min(e.loss_based_bps)),
                kbps(e.delay_based_bps),
                kbps(e.loss_based_bps),
                100.0 * e.loss,
                d.videos,
                d.paused,
                d.lowered
            )
        })
        .collect();
    format!(
        "{:5.1} s: publisher {}k, layers {}, encoder {}k, {} pictures, {} keyframe requests, \
         rtt {:?} ms; probes {}/{} carried, {} switches; {}",
        t.as_secs_f64(),
        room.sent.uplink_estimate_bps / 1000,
        room.sent.video_layers_on,
        room.sent.video_target_bps / 1000,
        room.sent.video_frames,
        room.sent.keyframe_requests,
        room.publish_rtt_ms.map(|ms| ms as u64),
        server.probes_carried,
        server.probes,
        server.layer_switches,
        downlinks.join("; ")
    )
}

/// Runs `tiles.mjs` on a server serving the demo, with `pages` (see the script), while a
/// Rust participant publishes simulcast when `rust_publisher`; every datagram of the server
/// crosses `network` when given. Fails when a page did not play the layer its tile needs.
async fn watch(
    room_name: &str,
    watched: &str,
    pages: &[&str],
    rust_publisher: bool,
    network: Option<Profile>,
) {
    // One browser run at a time: two at once on two cores starve the pages' decoders.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let log = ServerLog::install();
    let (server, browser) = demo_server_from(madang::sfu::ServerConfig {
        network,
        ..madang::sfu::ServerConfig::dev()
    })
    .await;
    let token = server
        .token(
            room_name,
            "rust",
            "Rust publisher",
            Role::Speaker,
            Duration::from_secs(600),
        )
        .unwrap();
    let mut video = VideoOptions::new(640, 360);
    video.fps = 15;
    // 480 kbit/s at full size, 170 at 320×180 (the default, for 30 fps, is 691 + 245: more
    // than a `rural` uplink carries with the pages' voices and repairs).
    video.bitrate_kbps = 480;
    video.simulcast = true;
    let options = RoomOptions {
        video: rust_publisher.then_some(video),
        ..RoomOptions::default()
    };
    let room = Room::connect(&server.signal_url(), &token, options)
        .await
        .unwrap();
    let base = format!("http://localhost:{}", server.http_addr().port());
    let mut node = tokio::process::Command::new("node")
        .arg(browser.join("tiles.mjs"))
        .args([base.as_str(), room_name, "90", watched])
        .args(pages)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/setup.sh installs nodejs)");
    let stdout = node.stdout.take().unwrap();
    let stderr = node.stderr.take().unwrap();
    let read = |mut pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        tokio::spawn(async move {
            let mut s = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut s)
                .await
                .ok();
            s
        })
    };
    let out_task = read(Box::new(stdout));
    let err_task = read(Box::new(stderr));
    let mut pattern = TestPattern::new(640, 360).unwrap();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(66));
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    let mut timeline = Vec::new();
    let status = loop {
        tokio::select! {
            _ = tick.tick(), if rust_publisher => {
                let frame = pattern.next_frame(start.elapsed().as_micros() as u64);
                room.publish_video(&frame).await.unwrap();
            }
            _ = every_second.tick() => {
                timeline.push(moment(start.elapsed(), &server.stats(), &room.stats().await));
            }
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
    println!("server: {:?}", server.stats());
    // Second by second: the Rust publisher's uplink and each downlink as the server saw it.
    println!("{}", timeline.join("\n"));
    println!("server log:\n{}", log.take());
    assert!(
        status.success(),
        "a page did not play the layer its tile needs:\n{stdout}\n{stderr}"
    );
    room.leave().await;
    server.shutdown().await;
}

// The demo's grid is the page less a 300 px side column: about 380×340 on the small screen
// (tiles of ~200×110 for three or four people), 1280×820 on the large (~640×360).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_page_plays_the_simulcast_layer_its_tile_needs() {
    watch(
        "tiles",
        "rust",
        &["small:700x420:320", "large:1600x900:640"],
        true,
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rural_links_each_page_keeps_playing_the_layer_its_tile_needs() {
    // Both layers (~650 kbit/s) fit the publisher's 1 Mbit/s uplink, the 640×360 layer
    // (~500 kbit/s) the large page's downlink once the server's estimate of it has grown:
    // the small page must not be raised past its tile, nor the large one left on 320.
    watch(
        "tiles-rural",
        "rust",
        &["small:700x420:320", "large:1600x900:640"],
        true,
        Some("rural".parse().unwrap()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_publishes_simulcast_and_each_viewer_gets_the_layer_its_tile_needs() {
    watch(
        "tiles-browser",
        "camera",
        &[
            "camera:1280x720:publish",
            "small:700x420:320",
            "large:1600x900:640",
        ],
        false,
        None,
    )
    .await;
}
