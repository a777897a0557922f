//! WHIP ingest (RFC 9725) and WHEP playback against clients with nothing of madang in them.
//!
//! WHIP with simulcast: the same page sending two layers; a subscriber gets both (the small
//! first, then the full size), the recording the full size.
//!
//! WHIP: a plain-JS page in headless Chromium (`core/tests/browser/whip.html`: the fake
//! camera as H.264, the microphone as Opus, one POST with the candidates in the offer)
//! publishes into a room; a Rust participant decodes its pictures and hears it; the page's
//! DELETE ends the session and the room sees it leave. Refusals: a bad token (401), a wrong
//! content type (415), an offer with no codec madang takes (406), trickle (405).
//!
//! WHEP: a plain-JS player page (`core/tests/browser/whep.html`) plays a Rust participant's
//! camera and microphone and the room's composited grid; its DELETEs take the players out
//! of the room; the participant leaves and comes back and is played again. Refusals: a
//! participant not in the room (404), a room without a grid and no participant named (400).
//!
//! The field reporter (`examples/web/field.html`, WHIP from a phone page) goes live with a
//! fake camera, and comes back by itself after the server restarts on the same address.
//!
//! GStreamer's webrtcbin publishes over WHIP too (`core/tests/gst/whip_publish.py`:
//! videotestsrc → x264enc, audiotestsrc → opusenc, one POST, a DELETE at the end): a Rust
//! participant decodes its pictures and hears it. Debian 12's `simple-whip-client`, built on
//! the same webrtcbin, cannot run here: it links libsoup 2 and Debian's libnice (through
//! gupnp-igd) links libsoup 3, so it aborts at start ("libsoup2 symbols detected. Using
//! libsoup2 and libsoup3 in the same process is not supported"); the script stands in for it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use madang::media::{Channels, TestPattern, Tone};
use madang::room::{Room, RoomEvent, RoomOptions, VideoOptions};
use madang::sfu::{IceServer, Server, ServerConfig};
use madang::signal::{LeaveReason, Role};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// A raw HTTP/1.1 request to `addr`; the status code and the whole response.
async fn http(addr: std::net::SocketAddr, request: String) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

fn request(method: &str, path: &str, token: &str, content_type: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A browser-like offer with VP8 video only.
const VP8_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\na=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n\
a=rtpmap:96 VP8/90000\r\n";

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// One Chromium at a time: each test runs one beside a server and encoding participants,
/// and two side by side on two cores measure the machine rather than the path.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `http_client.mjs` on `url`: the driver, and its stdin (a line stops the page) and
/// stdout.
fn drive(
    chromium: &str,
    url: &str,
) -> (
    tokio::process::Child,
    Option<tokio::process::ChildStdin>,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) {
    let mut node = tokio::process::Command::new("node")
        .arg(browser_dir().join("http_client.mjs"))
        .args([url, "60"])
        .env("CHROMIUM", chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/setup.sh installs nodejs)");
    let stop = node.stdin.take();
    let lines = tokio::io::BufReader::new(node.stdout.take().unwrap()).lines();
    (node, stop, lines)
}

/// A line of the page driver.
enum PageLine {
    /// Its result, `{"ok": …, "status": …}`.
    Result(serde_json::Value),
    /// The page's status once live.
    Live(serde_json::Value),
    /// Anything else (printed).
    Other,
    /// The driver ended.
    End,
}

/// Reads a line of the page driver (printing it).
fn page_line(line: Option<String>) -> PageLine {
    let Some(line) = line else {
        return PageLine::End;
    };
    println!("page: {line}");
    let mut value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
    if value.get("ok").is_some() {
        PageLine::Result(value)
    } else if let Some(status) = value.get_mut("live") {
        PageLine::Live(status.take())
    } else {
        PageLine::Other
    }
}

/// The Chromium binary (`$CHROMIUM`, Debian's by default).
fn chromium() -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} missing: scripts/setup.sh installs Debian's chromium"
    );
    chromium
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_whip_client_publishes_into_a_room_and_leaves_with_delete() {
    let _one = ONE_BROWSER.lock().await;
    let chromium = chromium();
    let config = ServerConfig {
        static_dir: Some(browser_dir()),
        ..ServerConfig::dev()
    };
    let server = Server::bind(config).await.unwrap();
    let ttl = Duration::from_secs(600);
    let token = |id: &str| server.token("hall", id, id, Role::Speaker, ttl).unwrap();
    let http_addr = server.http_addr();

    // Refusals first.
    let sdp = "application/sdp";
    let (status, _) = http(
        http_addr,
        request("POST", "/whip/hall", "nonsense", sdp, VP8_OFFER),
    )
    .await;
    assert_eq!(status, 401, "a bad token");
    let (status, _) = http(
        http_addr,
        request("POST", "/whip/hall", &token("x"), "text/plain", "v=0"),
    )
    .await;
    assert_eq!(status, 415, "a wrong content type");
    let (status, body) = http(
        http_addr,
        request("POST", "/whip/hall", &token("vp8"), sdp, VP8_OFFER),
    )
    .await;
    println!(
        "VP8 offer: {status} {}",
        body.lines().last().unwrap_or_default()
    );
    assert_eq!(status, 406, "an offer without H.264 or Opus: {body}");
    assert!(
        body.contains("H.264"),
        "the reason names what madang takes: {body}"
    );
    let (status, body) = http(
        http_addr,
        request("OPTIONS", "/whip/hall", "", "text/plain", ""),
    )
    .await;
    assert_eq!(status, 204, "OPTIONS for browser clients");
    assert!(body.contains("access-control-allow-methods"), "{body}");
    let (status, _) = http(http_addr, request("PATCH", "/whip/hall/x", "", sdp, "")).await;
    assert_eq!(status, 405, "no trickle");

    let mut room = Room::connect(&server.signal_url(), &token("rust"), RoomOptions::default())
        .await
        .unwrap();
    let url = format!(
        "http://localhost:{}/whip.html?room=hall&token={}",
        http_addr.port(),
        token("field-cam")
    );
    let (_node, mut stop, mut lines) = drive(&chromium, &url);
    // Everything the room shows of the WHIP publisher, until the page has deleted it.
    let start = Instant::now();
    let (mut pictures, mut audio, mut first, mut joined, mut left) =
        (0u32, 0u32, None, false, None);
    let mut result = None;
    while result.is_none() && start.elapsed() < Duration::from_secs(90) {
        tokio::select! {
            event = room.next_event() => match event {
                Some(RoomEvent::ParticipantJoined(p)) if p.identity == "field-cam" => joined = true,
                Some(RoomEvent::VideoFrame { participant, .. }) if participant == "field-cam" => {
                    pictures += 1;
                    let at = *first.get_or_insert_with(Instant::now);
                    // Ten seconds of pictures: then the page deletes its session.
                    if at.elapsed() >= Duration::from_secs(10)
                        && let Some(mut stdin) = stop.take()
                    {
                        stdin.write_all(b"stop\n").await.unwrap();
                    }
                }
                Some(RoomEvent::AudioFrame { participant, .. }) if participant == "field-cam" => {
                    audio += 1
                }
                Some(RoomEvent::ParticipantLeft { identity, reason }) if identity == "field-cam" => {
                    left = Some(reason)
                }
                _ => {}
            },
            line = lines.next_line() => match page_line(line.unwrap()) {
                PageLine::Result(value) => result = Some(value),
                PageLine::Live(_) | PageLine::Other => {}
                PageLine::End => break,
            }
        }
    }
    // The leave follows the DELETE.
    let deleted = Instant::now();
    while left.is_none() && deleted.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(RoomEvent::ParticipantLeft { identity, reason })) =
            tokio::time::timeout(Duration::from_millis(200), room.next_event()).await
            && identity == "field-cam"
        {
            left = Some(reason);
        }
    }
    let result = result.expect("the page's result");
    let sent = result["status"]["framesSent"].as_f64().unwrap_or(0.0);
    println!("page: {result}");
    println!(
        "WHIP publisher: {pictures} pictures decoded of {sent} the page sent ({:.1} %), {audio} \
         audio frames, left as {left:?}",
        100.0 * f64::from(pictures) / sent.max(1.0)
    );
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["status"]["post"], 201);
    assert!(
        result["status"]["location"]
            .as_str()
            .is_some_and(|l| l.starts_with("/whip/hall/"))
    );
    assert!(joined, "the WHIP publisher appeared in the room");
    assert!(f64::from(pictures) >= 0.95 * sent, "{pictures} of {sent}");
    assert!(pictures >= 100, "{pictures} pictures");
    assert!(audio >= 250, "{audio} audio frames of 20 ms");
    assert_eq!(
        left,
        Some(LeaveReason::Left),
        "the DELETE took it out of the room"
    );
    room.leave().await;
    server.shutdown().await;
}

/// Publishes the test pattern (640×360, 30 fps) and a tone into `room` until `stop` is set;
/// then leaves. Its events are drained so the room never waits on its reader.
async fn publish(mut room: Room, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let mut pattern = TestPattern::new(640, 360).unwrap();
    let mut tone = Tone::new(440.0, 0.5, Channels::Mono, 20).unwrap();
    let start = Instant::now();
    let mut video = tokio::time::interval(Duration::from_millis(33));
    let mut audio = tokio::time::interval(Duration::from_millis(20));
    // Bounded: the test stops it, and it never runs past two minutes on its own.
    while !stop.load(std::sync::atomic::Ordering::Relaxed)
        && start.elapsed() < Duration::from_secs(120)
    {
        tokio::select! {
            _ = video.tick() => {
                let frame = pattern.next_frame(start.elapsed().as_micros() as u64);
                room.publish_video(&frame).await.unwrap();
            }
            _ = audio.tick() => room.publish_audio(&tone.next_frame()).await.unwrap(),
            _ = room.next_event() => {}
        }
    }
    room.leave().await;
}

/// A receive-only offer of one video and one audio m-line, enough for the server to decide
/// (the refusals come before any connection is made).
const RECV_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\n\
a=rtpmap:102 H264/90000\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=recvonly\r\n\
a=rtpmap:111 opus/48000/2\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whep_player_plays_a_participant_and_the_grid_and_leaves_with_delete() {
    let _one = ONE_BROWSER.lock().await;
    let chromium = chromium();
    let config = ServerConfig {
        static_dir: Some(browser_dir()),
        grid_rooms: vec!["hall".into()],
        ..ServerConfig::dev()
    };
    let server = Server::bind(config).await.unwrap();
    let ttl = Duration::from_secs(600);
    let token = |room: &str, id: &str, role| server.token(room, id, id, role, ttl).unwrap();
    let http_addr = server.http_addr();

    let mut camera = VideoOptions::new(640, 360);
    camera.fps = 30;
    let options = RoomOptions {
        video: Some(camera),
        audio: true,
        auto_subscribe: false,
        decode_video: false,
        decode_audio: false,
        ..RoomOptions::default()
    };
    // The participant played: it leaves after 3 s of playing and comes back.
    let start_publishing = || async {
        let publisher = Room::connect(
            &server.signal_url(),
            &token("hall", "jongno", Role::Speaker),
            options.clone(),
        )
        .await
        .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        (tokio::spawn(publish(publisher, stop.clone())), stop)
    };
    let (mut publishing, mut stop) = start_publishing().await;

    // Refusals: nobody of that name; a room without a grid, and nobody named.
    let sdp = "application/sdp";
    let viewer = token("hall", "x", Role::Viewer);
    let (status, body) = http(
        http_addr,
        request(
            "POST",
            "/whep/hall?participant=nobody",
            &viewer,
            sdp,
            RECV_OFFER,
        ),
    )
    .await;
    assert_eq!(status, 404, "a participant not in the room: {body}");
    assert!(body.contains("no participant nobody"), "{body}");
    let annex = token("annex", "y", Role::Viewer);
    let (status, body) = http(
        http_addr,
        request("POST", "/whep/annex", &annex, sdp, RECV_OFFER),
    )
    .await;
    assert_eq!(status, 400, "no grid and nobody named: {body}");
    assert!(
        body.contains("?participant="),
        "the reason says what to do: {body}"
    );

    // A room member who sees the players come and go.
    let watch_options = RoomOptions {
        video: None,
        audio: false,
        auto_subscribe: false,
        ..RoomOptions::default()
    };
    let mut watch = Room::connect(
        &server.signal_url(),
        &token("hall", "watch", Role::Viewer),
        watch_options,
    )
    .await
    .unwrap();
    let url = format!(
        "http://localhost:{}/whep.html?room=hall&play=jongno,grid&tokens={},{}",
        http_addr.port(),
        token("hall", "player-jongno", Role::Viewer),
        token("hall", "player-grid", Role::Viewer),
    );
    let (_node, mut stop_page, mut lines) = drive(&chromium, &url);
    let start = Instant::now();
    let (mut live, mut result) = (None::<serde_json::Value>, None::<serde_json::Value>);
    let mut left = Vec::new();
    let (mut live_at, mut came_back, mut rejoined) = (None, false, false);
    while result.is_none() && start.elapsed() < Duration::from_secs(90) {
        let playing = live_at.map_or(Duration::ZERO, |t: Instant| t.elapsed());
        if playing >= Duration::from_secs(3) && !came_back {
            came_back = true;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            publishing.await.unwrap();
            (publishing, stop) = start_publishing().await;
        }
        // Nine seconds of playing once live: then the page deletes its sessions.
        if playing >= Duration::from_secs(9)
            && let Some(mut stdin) = stop_page.take()
        {
            stdin.write_all(b"stop\n").await.unwrap();
        }
        tokio::select! {
            event = watch.next_event() => match event {
                Some(RoomEvent::ParticipantLeft { identity, reason }) => {
                    left.push((identity, reason));
                }
                Some(RoomEvent::ParticipantJoined(p))
                    if p.identity == "jongno" && left.iter().any(|(i, _)| i == "jongno") =>
                {
                    rejoined = true;
                }
                _ => {}
            },
            line = lines.next_line() => match page_line(line.unwrap()) {
                PageLine::Result(value) => result = Some(value),
                PageLine::Live(status) => {
                    live = Some(status);
                    live_at = Some(Instant::now());
                }
                PageLine::Other => {}
                PageLine::End => break,
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    // The leaves follow the DELETEs.
    let deleted = Instant::now();
    let players_left = |left: &[(String, LeaveReason)]| {
        left.iter()
            .filter(|(identity, _)| identity.starts_with("player-"))
            .count()
    };
    while players_left(&left) < 2 && deleted.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(RoomEvent::ParticipantLeft { identity, reason })) =
            tokio::time::timeout(Duration::from_millis(200), watch.next_event()).await
        {
            left.push((identity, reason));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    publishing.await.unwrap();
    let result = result.expect("the page's result");
    println!("page: {result}");
    assert_eq!(result["ok"], true, "{result}");
    let live = live.expect("the page went live");
    assert!(
        rejoined,
        "the participant left and came back while played: {left:?}"
    );
    // 9 s of 30 fps from the participant (less the second or so it takes to come back, so
    // more than the first 3 s gave means it was played again) and of the grid's 15.
    for (name, width, min) in [("jongno", 640, 160.0), ("grid", 0, 90.0)] {
        let before = &live["players"][name];
        let after = &result["status"]["players"][name];
        let decoded = |p: &serde_json::Value| p["framesDecoded"].as_f64().unwrap_or(0.0);
        let (from, to) = (decoded(before), decoded(after));
        println!(
            "WHEP {name}: {to} pictures decoded ({} in the last ~9 s), {} wide, {} audio packets",
            to - from,
            after["width"],
            after["audioPackets"]
        );
        assert_eq!(after["post"], 201, "{after}");
        assert!(
            after["location"]
                .as_str()
                .is_some_and(|l| l.starts_with("/whep/hall/")),
            "{after}"
        );
        assert!(to - from >= min, "{name}: {from} → {to} pictures");
        if width > 0 {
            assert_eq!(after["width"], width, "{after}");
        }
    }
    // The participant's voice (50 packets a second), and on the grid the loudest speaker's,
    // the same one here: from the first speaker ranking on, and again after the rejoin.
    for (name, min) in [("jongno", 300.0), ("grid", 150.0)] {
        let audio = result["status"]["players"][name]["audioPackets"]
            .as_f64()
            .unwrap_or(0.0);
        assert!(audio >= min, "{name}: {audio} audio packets");
    }
    let mut gone: Vec<&str> = left
        .iter()
        .filter(|(identity, reason)| {
            identity.starts_with("player-") && *reason == LeaveReason::Left
        })
        .map(|(identity, _)| identity.as_str())
        .collect();
    gone.sort_unstable();
    assert_eq!(
        gone,
        ["player-grid", "player-jongno"],
        "the DELETEs took the players out of the room: {left:?}"
    );
    watch.leave().await;
    server.shutdown().await;
}

/// The demo pages (`examples/web`): the field reporter lives there.
fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/web")
}

/// A Rust participant of `server`'s room `hall`; the time its first picture of `from` came
/// (or `None` after `limit`), and how many more came within `then`.
async fn watch_pictures(
    server: &Server,
    from: &str,
    limit: Duration,
    then: Duration,
) -> (Option<Instant>, u32) {
    let token = server
        .token(
            "hall",
            "desk",
            "desk",
            Role::Viewer,
            Duration::from_secs(600),
        )
        .unwrap();
    let mut room = Room::connect(&server.signal_url(), &token, RoomOptions::default())
        .await
        .unwrap();
    let start = Instant::now();
    let (mut first, mut pictures) = (None, 0);
    loop {
        let until = match first {
            Some(t) => t + then,
            None => start + limit,
        };
        let wait = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, room.next_event()).await {
            Ok(Some(RoomEvent::VideoFrame { participant, .. })) if participant == from => {
                first.get_or_insert_with(Instant::now);
                pictures += 1;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    room.leave().await;
    (first, pictures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_field_reporter_goes_live_and_comes_back_by_itself_after_a_server_restart() {
    let _one = ONE_BROWSER.lock().await;
    let chromium = chromium();
    let config = ServerConfig {
        static_dir: Some(web_dir()),
        ..ServerConfig::dev()
    };
    let server = Server::bind(config.clone()).await.unwrap();
    let http_addr = server.http_addr();
    // On a --dev server the page fetches its token itself (identity `reporter` from the name).
    let url = format!(
        "http://localhost:{}/field.html?room=hall&name=Reporter&go=1",
        http_addr.port()
    );
    let (_node, mut stop_page, mut lines) = drive(&chromium, &url);
    let live = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the page went live in time")
        .unwrap();
    let PageLine::Live(live) = page_line(live) else {
        panic!("the page did not go live");
    };
    assert_eq!(live["connection"], "connected", "{live}");
    let (first, before) = watch_pictures(
        &server,
        "reporter",
        Duration::from_secs(10),
        Duration::from_secs(3),
    )
    .await;
    println!("field reporter before the restart: {before} pictures in 3 s");
    assert!(first.is_some() && before >= 45, "{before} pictures in 3 s");

    // The server restarts on the same address (same secret: the page's token stays good).
    server.shutdown().await;
    let restarted = ServerConfig {
        http: http_addr,
        ..config
    };
    let server = Server::bind(restarted).await.unwrap();
    let up = Instant::now();
    let (first, after) = watch_pictures(
        &server,
        "reporter",
        Duration::from_secs(20),
        Duration::from_secs(3),
    )
    .await;
    let back = first.map(|t| t - up);
    println!(
        "field reporter after the restart: first picture {back:?} after the server was up, {after} pictures in 3 s"
    );

    stop_page
        .take()
        .unwrap()
        .write_all(b"stop\n")
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match page_line(lines.next_line().await.unwrap()) {
                PageLine::Result(value) => return value,
                PageLine::End => return serde_json::Value::Null,
                PageLine::Live(_) | PageLine::Other => {}
            }
        }
    })
    .await
    .unwrap_or_default();
    let back = back.expect("the page came back by itself");
    assert!(back <= Duration::from_secs(5), "back after {back:?}");
    assert!(after >= 45, "{after} pictures in 3 s");
    assert_eq!(
        result["ok"], true,
        "the DELETE went to the new server: {result}"
    );
    assert!(
        result["status"]["reconnects"].as_u64().unwrap_or(0) >= 1,
        "{result}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gstreamer_webrtcbin_whip_client_publishes_into_a_room_and_leaves_with_delete() {
    let _one = ONE_BROWSER.lock().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/gst/whip_publish.py");
    // ICE servers the client is told of (it needs none on loopback).
    let ice_servers: Vec<IceServer> = [
        "stun:127.0.0.1:3478",
        "turn:127.0.0.1:3478?transport=udp,field,s3cret",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    for bad in [
        "http://x",
        "turn:127.0.0.1:3478",
        "stun:a\"b",
        "stun:",
        "turn:x,user",
    ] {
        assert!(bad.parse::<IceServer>().is_err(), "{bad} accepted");
    }
    let config = ServerConfig {
        ice_servers,
        ..ServerConfig::dev()
    };
    let server = Server::bind(config).await.unwrap();
    let ttl = Duration::from_secs(600);
    let token = |id: &str| server.token("hall", id, id, Role::Speaker, ttl).unwrap();
    let mut room = Room::connect(&server.signal_url(), &token("rust"), RoomOptions::default())
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{}/whip/hall", server.http_addr().port());
    let mut child = tokio::process::Command::new("/usr/bin/python3")
        .arg(&script)
        .args([url.as_str(), token("gst-cam").as_str(), "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with GStreamer's bindings: scripts/setup.sh installs them");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut pictures, mut audio, mut joined, mut left) = (0u32, 0u32, false, None);
    let (mut first, mut last) = (None, None);
    let mut said = Vec::new();
    let start = Instant::now();
    // Until the script has deleted its session and the room has seen it leave.
    while left.is_none() && start.elapsed() < Duration::from_secs(60) {
        tokio::select! {
            event = room.next_event() => match event {
                Some(RoomEvent::ParticipantJoined(p)) if p.identity == "gst-cam" => joined = true,
                Some(RoomEvent::VideoFrame { participant, .. }) if participant == "gst-cam" => {
                    pictures += 1;
                    first.get_or_insert_with(Instant::now);
                    last = Some(Instant::now());
                }
                Some(RoomEvent::AudioFrame { participant, .. }) if participant == "gst-cam" => {
                    audio += 1
                }
                Some(RoomEvent::ParticipantLeft { identity, reason }) if identity == "gst-cam" => {
                    left = Some(reason)
                }
                _ => {}
            },
            line = lines.next_line() => match line.unwrap() {
                Some(line) => said.push(serde_json::from_str::<serde_json::Value>(&line).unwrap()),
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    // Its last line (the DELETE's answer) may come after the room saw it leave.
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await
    {
        said.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    println!("webrtcbin said: {said:?}");
    let post = said
        .iter()
        .find(|v| v.get("post").is_some())
        .expect("the POST");
    assert_eq!(post["post"], 201, "{said:?}");
    assert!(
        post["location"]
            .as_str()
            .is_some_and(|l| l.starts_with("/whip/hall/"))
    );
    assert_eq!(
        post["links"],
        serde_json::json!([
            "<stun:127.0.0.1:3478>; rel=\"ice-server\"",
            "<turn:127.0.0.1:3478?transport=udp>; rel=\"ice-server\"; username=\"field\"; \
             credential=\"s3cret\"; credential-type=\"password\""
        ]),
        "the ICE servers as Link headers"
    );
    let end = said
        .iter()
        .find(|v| v.get("deleted").is_some())
        .expect("the end");
    assert_eq!(end["deleted"], 200);
    let sent = end["sent"].as_f64().unwrap();
    // It sends up to 30 pictures a second (what its encoder made while connected, over the
    // 10 s, on a busy machine fewer); those from the first the room showed to the last.
    let (first, last) = (first.expect("no picture"), last.unwrap());
    let shown = last.duration_since(first).as_secs_f64();
    let fps = (sent / 10.0).min(30.0);
    let expected = fps * shown + 1.0;
    println!(
        "GStreamer WHIP publisher: {pictures} pictures decoded in the {shown:.2} s from the \
         first to the last ({:.1} % of {fps:.1} fps; {sent} encoded while connected, the first \
         shown {:.2} s after the start), {audio} audio frames, left as {left:?}",
        100.0 * f64::from(pictures) / expected,
        first.duration_since(start).as_secs_f64()
    );
    assert!(joined, "the WHIP publisher appeared in the room");
    assert!(sent >= 250.0, "{sent} pictures in 10 s at 30 fps");
    assert!(
        first.duration_since(start) < Duration::from_secs(3),
        "the first picture within 3 s"
    );
    assert!(shown >= 8.0, "pictures for {shown} s of 10");
    assert!(
        f64::from(pictures) >= 0.95 * expected,
        "{pictures} of {expected}"
    );
    assert!(audio >= 400, "{audio} audio frames of 20 ms in 10 s");
    assert_eq!(
        left,
        Some(LeaveReason::Left),
        "the DELETE took it out of the room"
    );
    room.leave().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_whip_client_sending_simulcast_reaches_the_room_in_both_layers() {
    let _one = ONE_BROWSER.lock().await;
    let chromium = chromium();
    let recordings =
        std::env::temp_dir().join(format!("madang-whip-simulcast-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&recordings);
    let config = ServerConfig {
        static_dir: Some(browser_dir()),
        record: Some(madang::sfu::record::RecordConfig {
            dir: recordings.clone(),
            rooms: Vec::new(),
        }),
        ..ServerConfig::dev()
    };
    let server = Server::bind(config).await.unwrap();
    let ttl = Duration::from_secs(600);
    let token = |id: &str| server.token("hall", id, id, Role::Speaker, ttl).unwrap();
    let mut room = Room::connect(&server.signal_url(), &token("rust"), RoomOptions::default())
        .await
        .unwrap();
    let url = format!(
        "http://localhost:{}/whip.html?room=hall&token={}&simulcast=1",
        server.http_addr().port(),
        token("field-cam")
    );
    let (_node, mut stop, mut lines) = drive(&chromium, &url);
    // The widths the room shows of the publisher, in order of first appearance.
    let mut widths: Vec<u32> = Vec::new();
    let (mut first, mut result) = (None, None);
    let start = Instant::now();
    while result.is_none() && start.elapsed() < Duration::from_secs(90) {
        tokio::select! {
            event = room.next_event() => {
                if let Some(RoomEvent::VideoFrame { participant, frame, .. }) = event
                    && participant == "field-cam"
                {
                    if !widths.contains(&frame.width()) {
                        widths.push(frame.width());
                    }
                    let at = *first.get_or_insert_with(Instant::now);
                    if at.elapsed() >= Duration::from_secs(8)
                        && let Some(mut stdin) = stop.take()
                    {
                        stdin.write_all(b"stop\n").await.unwrap();
                    }
                }
            }
            line = lines.next_line() => match page_line(line.unwrap()) {
                PageLine::Result(value) => result = Some(value),
                PageLine::Live(_) | PageLine::Other => {}
                PageLine::End => break,
            }
        }
    }
    let result = result.expect("the page's result");
    println!(
        "widths the room showed, in order: {widths:?}; page: {}",
        result["status"]
    );
    assert_eq!(result["ok"], true, "{result}");
    let layers = &result["status"]["layers"];
    assert_eq!(
        layers["h"], 320,
        "the page sent a half-size layer: {layers}"
    );
    assert_eq!(layers["f"], 640, "and a full-size one: {layers}");
    // A subscriber starts at the smallest layer and is raised to the largest its link takes.
    assert_eq!(widths, [320, 640], "both layers reached the room");
    room.leave().await;
    server.shutdown().await;
    // The recording took the largest layer.
    let file = std::fs::read_dir(recordings.join("hall"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("field-cam-"))
        .expect("the WHIP publisher's file");
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "stream=width",
        ])
        .args(["-of", "csv=p=0"])
        .arg(&file)
        .output()
        .expect("ffprobe: scripts/setup.sh installs ffmpeg");
    let width = String::from_utf8_lossy(&probe.stdout).trim().to_owned();
    assert_eq!(width, "640", "{}", file.display());
}
