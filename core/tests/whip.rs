//! WHIP ingest (RFC 9725) against a WHIP client with nothing of madang in it: a plain-JS
//! page in headless Chromium (`core/tests/browser/whip.html`: the fake camera as H.264, the
//! microphone as Opus, one POST with the candidates in the offer) publishes into a room; a
//! Rust participant decodes its pictures and hears it; the page's DELETE ends the session and
//! the room sees it leave. Refusals: a bad token (401), a wrong content type (415), an offer
//! with no codec madang takes (406), trickle (405).
//!
//! Debian 12's `simple-whip-client` (GStreamer webrtcbin), the client the issue names, cannot
//! run here: it links libsoup 2 and Debian's libnice (through gupnp-igd) links libsoup 3, so
//! it aborts at start ("libsoup2 symbols detected. Using libsoup2 and libsoup3 in the same
//! process is not supported").

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use madang::room::{Room, RoomEvent, RoomOptions};
use madang::sfu::{Server, ServerConfig};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_whip_client_publishes_into_a_room_and_leaves_with_delete() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} missing: scripts/setup.sh installs Debian's chromium"
    );
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
    let mut node = tokio::process::Command::new("node")
        .arg(browser_dir().join("whip.mjs"))
        .args([url.as_str(), "60"])
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/setup.sh installs nodejs)");
    let mut stop = node.stdin.take();
    let mut lines = tokio::io::BufReader::new(node.stdout.take().unwrap()).lines();
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
            line = lines.next_line() => {
                let Some(line) = line.unwrap() else { break };
                let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if value.get("ok").is_some() {
                    result = Some(value);
                } else {
                    println!("page: {line}");
                }
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
