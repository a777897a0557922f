//! Whole conferences on simulated time over the simulated network: the server core and four
//! client sessions with real codecs in one thread, no sockets, no sleeps.

use std::time::Duration;

use madang::netsim::Profile;
use madang::sim::{SimConfig, SimReport, run};

fn small(profile: &str, seed: u64) -> SimConfig {
    SimConfig {
        participants: 4,
        width: 320,
        height: 180,
        fps: 15,
        bitrate_kbps: 300,
        audio: true,
        profile: profile.parse::<Profile>().unwrap(),
        seed,
        warmup_timeout: Duration::from_secs(10),
        seconds: 4.0,
    }
}

fn summary(r: &SimReport) -> String {
    r.pairs
        .iter()
        .map(|p| format!("{}→{} {}/{}", p.from, p.to, p.frames_decoded, p.frames_sent))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn on_a_perfect_network_every_picture_arrives() {
    let r = run(&small("lan", 1)).unwrap();
    eprintln!(
        "lan: warm-up {:.2} s, {:.1} simulated s in {:.2} real s; {}",
        r.warmup_seconds,
        r.simulated_seconds,
        r.real_seconds,
        summary(&r)
    );
    assert_eq!(r.pairs.len(), 12);
    for p in &r.pairs {
        assert!(p.frames_sent >= 55, "{p:?}");
        assert_eq!(p.frames_decoded, p.frames_sent, "{p:?}");
        // No delay anywhere: a picture is decoded at the instant it was captured.
        assert_eq!(p.latency_ms.p99, 0.0, "{p:?}");
    }
    for a in &r.audio {
        assert!(a.frames_sent >= 190, "{a:?}");
        assert_eq!(a.frames_received, a.frames_sent, "{a:?}");
    }
    assert_eq!(r.network.up.dropped() + r.network.down.dropped(), 0);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let a = run(&small("lte", 7)).unwrap();
    let b = run(&small("lte", 7)).unwrap();
    eprintln!("lte seed 7: {}", summary(&a));
    eprintln!("network: {:?}", a.network);
    let counts = |r: &SimReport| -> Vec<(u64, u64, u64)> {
        r.pairs
            .iter()
            .map(|p| (p.frames_sent, p.frames_received, p.frames_decoded))
            .chain(
                r.audio
                    .iter()
                    .map(|a| (a.frames_sent, a.frames_received, 0)),
            )
            .collect()
    };
    eprintln!("a {:?}\nb {:?}", a.network, b.network);
    assert_eq!(counts(&a), counts(&b));
    assert_eq!(a.network, b.network);
    assert!(
        a.network.up.lost > 0 && a.network.down.lost > 0,
        "{:?}",
        a.network
    );
}
