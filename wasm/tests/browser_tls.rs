//! The demo page served over https by a server with TLS: the browser module connects with
//! `wss://` (the page picks it from `location.protocol`) and joins the room a Rust
//! participant is in, who sees it arrive. The certificate is self-signed, made here; Chromium
//! is told to accept it.
#![cfg(not(target_arch = "wasm32"))]

use std::time::{Duration, Instant};

use madang::room::{Room, RoomEvent, RoomOptions};
use madang::signal::Role;

mod common;
use common::demo_server_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_over_https_joins_with_wss() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let tls = madang::sfu::TlsConfig {
        cert_pem: cert.cert.pem().into_bytes(),
        key_pem: cert.signing_key.serialize_pem().into_bytes(),
    };
    let (server, browser) = demo_server_with(Some(tls)).await;
    let token = server
        .token(
            "demo",
            "rust",
            "Rust",
            Role::Speaker,
            Duration::from_secs(600),
        )
        .unwrap();
    let options = RoomOptions {
        trusted_certificates: Some(cert.cert.pem().into_bytes()),
        ..RoomOptions::default()
    };
    let mut room = Room::connect(&server.signal_url(), &token, options)
        .await
        .unwrap();
    let url = format!(
        "https://localhost:{}/?room=demo&name=Field%20tablet&autojoin=1",
        server.http_addr().port()
    );
    let mut node = tokio::process::Command::new("node")
        .arg(browser.join("open.mjs"))
        .args([url.as_str(), "madangRoom", "30"])
        .env("IGNORE_CERTIFICATE_ERRORS", "1")
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/setup.sh installs nodejs)");
    let until = Instant::now() + Duration::from_secs(40);
    let mut joined = None;
    while joined.is_none() && Instant::now() < until {
        if let Ok(Some(RoomEvent::ParticipantJoined(p))) =
            tokio::time::timeout(Duration::from_millis(200), room.next_event()).await
        {
            joined = Some(p);
        }
    }
    let status = node.wait().await.unwrap();
    let joined = joined.expect("the page over https never joined");
    assert_eq!(joined.name, "Field tablet");
    assert!(status.success(), "the page did not join: {status}");
    room.leave().await;
    server.shutdown().await;
}
