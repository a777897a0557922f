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
        simulcast: false,
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

// ---- the conference scenarios of tests/conference.rs, on the simulated network ----

use madang::room::RoomEvent;
use madang::signal::{ClientMessage, DataMessage, ErrorCode, LeaveReason, Role};
use madang::sim::{JoinOptions, World};

/// Every event of a run, pictures reduced to who sent them.
#[derive(Default)]
struct Seen {
    /// (receiver, publisher) of every decoded picture.
    pictures: Vec<(usize, String)>,
    /// (receiver, identity, reason) of every departure.
    left: Vec<(usize, String, LeaveReason, Duration)>,
    /// (receiver, code) of every error.
    errors: Vec<(usize, ErrorCode)>,
    disconnected: Vec<usize>,
    /// (participant, back, when): the signal connection lost (false) and resumed (true).
    signal: Vec<(usize, bool, Duration)>,
    /// (receiver, identity) of every arrival announced.
    joined: Vec<(usize, String)>,
    /// (receiver, from, payload) of data messages.
    data: Vec<(usize, String, String)>,
}

impl Seen {
    fn record(&mut self, i: usize, event: RoomEvent, at: Duration) {
        match event {
            RoomEvent::VideoFrame { participant, .. } => self.pictures.push((i, participant)),
            RoomEvent::ParticipantLeft { identity, reason } => {
                self.left.push((i, identity, reason, at))
            }
            RoomEvent::Error { code, .. } => self.errors.push((i, code)),
            RoomEvent::Disconnected => self.disconnected.push(i),
            RoomEvent::Reconnecting => self.signal.push((i, false, at)),
            RoomEvent::Reconnected => self.signal.push((i, true, at)),
            RoomEvent::ParticipantJoined(p) => self.joined.push((i, p.identity)),
            RoomEvent::Data(m) => self.data.push((i, m.from, m.payload.to_string())),
            _ => {}
        }
    }

    fn pictures(&self, to: usize, from: &str) -> usize {
        self.pictures
            .iter()
            .filter(|(i, p)| *i == to && p == from)
            .count()
    }
}

fn run_world(world: &mut World, seen: &mut Seen, seconds: f64) {
    world
        .run_for(Duration::from_secs_f64(seconds), &mut |i, e, t| {
            seen.record(i, e, t)
        })
        .unwrap();
}

fn world(profile: &str) -> World {
    World::new(profile.parse().unwrap(), 3, World::engine_config())
}

#[test]
fn late_joiner_sees_everyone_and_leavers_are_announced_on_rural_links() {
    let mut w = world("rural,jitter=0ms");
    let mut seen = Seen::default();
    let alice = w.join("alice", JoinOptions::default()).unwrap();
    let bob = w.join("bob", JoinOptions::default()).unwrap();
    run_world(&mut w, &mut seen, 2.0);
    let carol = w.join("carol", JoinOptions::default()).unwrap();
    run_world(&mut w, &mut seen, 4.0);
    let tracks: Vec<String> = w
        .participant(carol)
        .session()
        .joined()
        .unwrap()
        .tracks
        .iter()
        .map(|t| t.id.clone())
        .collect();
    assert!(
        tracks.contains(&"alice/camera".to_string()) && tracks.contains(&"bob/camera".to_string()),
        "{tracks:?}"
    );
    for (to, from) in [
        (carol, "alice"),
        (carol, "bob"),
        (alice, "carol"),
        (bob, "carol"),
    ] {
        let n = seen.pictures(to, from);
        assert!(n > 15, "{from} → {to}: {n} pictures");
    }
    w.leave(bob);
    run_world(&mut w, &mut seen, 1.0);
    for who in [alice, carol] {
        assert!(
            seen.left
                .iter()
                .any(|(i, id, r, _)| *i == who && id == "bob" && *r == LeaveReason::Left),
            "{who} did not see bob leave: {:?}",
            seen.left
        );
    }
    let before = seen.pictures(carol, "alice");
    run_world(&mut w, &mut seen, 2.0);
    assert!(
        seen.pictures(carol, "alice") > before + 15,
        "the room goes on"
    );
}

#[test]
fn bad_tokens_are_refused_and_the_room_carries_on() {
    let mut w = world("lte,loss=0%,jitter=0ms");
    let mut seen = Seen::default();
    let alice = w.join("alice", JoinOptions::default()).unwrap();
    let bob = w.join("bob", JoinOptions::default()).unwrap();
    run_world(&mut w, &mut seen, 1.0);
    let forged = w
        .join(
            "mallory",
            JoinOptions {
                token: Some("not.a.token".into()),
                ..JoinOptions::default()
            },
        )
        .unwrap();
    let other_room = w.token("elsewhere", "eve", Role::Speaker).unwrap();
    let eve = w
        .join(
            "eve",
            JoinOptions {
                token: Some(other_room),
                ..JoinOptions::default()
            },
        )
        .unwrap();
    run_world(&mut w, &mut seen, 2.0);
    match w.participant(forged).session().phase() {
        madang::room::session::Phase::Closed => {}
        other => panic!("forged token: {other:?}"),
    }
    assert!(
        seen.errors.contains(&(forged, ErrorCode::InvalidToken)),
        "{:?}",
        seen.errors
    );
    assert!(seen.disconnected.contains(&forged));
    // A valid token for another room joins that room, alone: it sees nobody's pictures.
    assert_eq!(seen.pictures(eve, "alice") + seen.pictures(eve, "bob"), 0);
    let (a, b) = (seen.pictures(alice, "bob"), seen.pictures(bob, "alice"));
    run_world(&mut w, &mut seen, 2.0);
    assert!(seen.pictures(alice, "bob") > a + 20 && seen.pictures(bob, "alice") > b + 20);
}

#[test]
fn a_dropped_signal_connection_is_resumed_and_the_call_goes_on() {
    // Signal messages take 40 ms; bob's WebSocket is reset at 3 s and his network lets a
    // new one through only 2 s later. Meanwhile dave joins and carol leaves.
    let mut w = World::new("lan,delay=40ms".parse().unwrap(), 3, World::engine_config());
    let mut seen = Seen::default();
    let alice = w.join("alice", JoinOptions::default()).unwrap();
    let bob = w.join("bob", JoinOptions::default()).unwrap();
    let carol = w.join("carol", JoinOptions::default()).unwrap();
    run_world(&mut w, &mut seen, 3.0);
    let before = seen.pictures(bob, "alice");
    w.drop_signal(bob, Duration::from_secs(2));
    run_world(&mut w, &mut seen, 0.5);
    let dave = w.join("dave", JoinOptions::default()).unwrap();
    w.leave(carol);
    w.send(
        bob,
        ClientMessage::Data {
            message: DataMessage {
                from: String::new(),
                to: Vec::new(),
                topic: "chat".into(),
                payload: "sent while the signal was down".into(),
            },
        },
    );
    run_world(&mut w, &mut seen, 1.0);
    // Still down: alice's pictures reach bob all the same (media never used the signal):
    // 15 fps.
    let during = seen.pictures(bob, "alice") - before;
    assert!(
        during >= 21,
        "{during} pictures of alice in 1.5 s without a signal"
    );
    assert!(!seen.joined.iter().any(|(i, id)| *i == bob && id == "dave"));
    run_world(&mut w, &mut seen, 3.5);
    eprintln!("bob's signal: {:?}", seen.signal);
    let lost = seen.signal.iter().find(|(i, back, _)| *i == bob && !back);
    let back = seen.signal.iter().find(|(i, back, _)| *i == bob && *back);
    let (Some(lost), Some(back)) = (lost, back) else {
        panic!("bob lost and resumed his signal: {:?}", seen.signal);
    };
    eprintln!(
        "bob: signal lost at {:.2} s, resumed at {:.2} s",
        lost.2.as_secs_f64(),
        back.2.as_secs_f64()
    );
    assert!(back.2 - lost.2 < Duration::from_millis(2500));
    // Nobody saw bob leave; bob caught up with what happened meanwhile.
    assert!(
        !seen.left.iter().any(|(_, id, ..)| id == "bob"),
        "{:?}",
        seen.left
    );
    assert!(seen.joined.contains(&(bob, "dave".into())));
    assert!(
        seen.left
            .iter()
            .any(|(i, id, ..)| *i == bob && id == "carol")
    );
    eprintln!(
        "after the resume: bob shows {} pictures of dave, dave {} of bob",
        seen.pictures(bob, "dave"),
        seen.pictures(dave, "bob")
    );
    assert!(seen.pictures(bob, "dave") > 20, "bob receives dave");
    assert!(seen.pictures(dave, "bob") > 20, "dave receives bob");
    // What bob sent while down went out on the new connection.
    assert!(
        seen.data
            .iter()
            .any(|(i, from, text)| *i == alice && from == "bob" && text.contains("down")),
        "{:?}",
        seen.data
    );
    assert!(
        seen.disconnected.is_empty() && seen.errors.is_empty(),
        "{:?}",
        seen.errors
    );
    assert_eq!(w.engine().stats().participants, 3);
}

#[test]
fn vanished_participants_are_removed() {
    let mut w = world("lan");
    let mut seen = Seen::default();
    let alice = w.join("alice", JoinOptions::default()).unwrap();
    let ghost = w.join("ghost", JoinOptions::default()).unwrap();
    let dropper = w.join("dropper", JoinOptions::default()).unwrap();
    run_world(&mut w, &mut seen, 2.0);
    assert!(seen.pictures(alice, "ghost") > 10 && seen.pictures(alice, "dropper") > 10);

    // The WebSocket closes without a word and the media stops (the process died): removed
    // once its media has been silent for a second (a session whose media goes on waits
    // for a resume instead: `a_dropped_signal_connection_is_resumed_…`), as connection lost.
    let t = w.elapsed();
    w.disconnect(dropper);
    run_world(&mut w, &mut seen, 2.0);
    let (_, _, reason, at) = seen
        .left
        .iter()
        .find(|(i, id, ..)| *i == alice && id == "dropper")
        .expect("dropper removed")
        .clone();
    assert_eq!(reason, LeaveReason::ConnectionLost);
    eprintln!("dropper removed after {:?}", at - t);
    assert!(at - t < Duration::from_millis(1500), "after {:?}", at - t);

    // Silent with everything open: removed when the server notices (silence timeout 15 s,
    // or ICE failing first).
    let t = w.elapsed();
    w.vanish(ghost);
    run_world(&mut w, &mut seen, 40.0);
    let (_, _, reason, at) = seen
        .left
        .iter()
        .find(|(i, id, ..)| *i == alice && id == "ghost")
        .expect("ghost removed")
        .clone();
    eprintln!("ghost removed after {:?} as {reason:?}", at - t);
    assert!(matches!(
        reason,
        LeaveReason::Timeout | LeaveReason::ConnectionLost
    ));
    assert!(
        at - t >= Duration::from_secs(3) && at - t <= Duration::from_secs(31),
        "{:?}",
        at - t
    );
}

#[test]
fn a_grid_room_composes_inline_on_simulated_time() {
    let mut config = World::engine_config();
    config.grid_rooms = vec!["sim".into()];
    config.grid = madang::sfu::mixer::GridConfig {
        width: 320,
        height: 180,
        fps: 10,
        bitrate_kbps: 400,
    };
    let mut w = World::new("lan".parse().unwrap(), 4, config);
    let mut seen = Seen::default();
    w.join("alice", JoinOptions::default()).unwrap();
    w.join("bob", JoinOptions::default()).unwrap();
    let tv = w
        .join(
            "tv",
            JoinOptions {
                role: Role::Viewer,
                video: None,
                audio: false,
                auto_subscribe: false,
                ..JoinOptions::default()
            },
        )
        .unwrap();
    run_world(&mut w, &mut seen, 1.0);
    w.send(
        tv,
        madang::signal::ClientMessage::Subscribe {
            tracks: vec!["grid/grid".into()],
        },
    );
    run_world(&mut w, &mut seen, 3.0);
    let grid = seen.pictures(tv, "grid");
    assert!(grid >= 15, "{grid} grid pictures in 3 s at 10 fps");
    assert_eq!(seen.pictures(tv, "alice") + seen.pictures(tv, "bob"), 0);
}

/// The class's host, `cityhall`, publishing the default camera and voice.
fn join_host(w: &mut World) -> usize {
    let options = JoinOptions {
        role: Role::Host,
        ..JoinOptions::default()
    };
    w.join("cityhall", options).unwrap()
}

/// Talk-back in a class: a host, twenty centers watching (each would publish 320×180 if let
/// in), three hands up; the host lets the second in, everyone sees that center, then the
/// host sends it back and its tile goes away everywhere.
#[test]
fn talk_back_a_promoted_center_is_seen_by_every_viewer_and_gone_when_demoted() {
    use madang::signal::ClientMessage;
    let mut w = world("lan");
    // Pictures by (receiver, publisher) with the time each came; other events as they are.
    let mut pictures: Vec<(usize, String, Duration)> = Vec::new();
    let mut events: Vec<(usize, RoomEvent, Duration)> = Vec::new();
    let run = |w: &mut World, seconds: f64, pictures: &mut Vec<_>, events: &mut Vec<_>| {
        w.run_for(Duration::from_secs_f64(seconds), &mut |i, e, at| match e {
            RoomEvent::VideoFrame { participant, .. } => pictures.push((i, participant, at)),
            RoomEvent::AudioFrame { .. } => {}
            e => events.push((i, e, at)),
        })
        .unwrap();
    };
    let host = join_host(&mut w);
    let centers: Vec<usize> = (0..20)
        .map(|c| {
            let options = JoinOptions {
                role: Role::Viewer,
                ..JoinOptions::default()
            };
            w.join(&format!("center-{c:02}"), options).unwrap()
        })
        .collect();
    run(&mut w, 2.0, &mut pictures, &mut events);
    // Viewers publish nothing: only the host's pictures arrive.
    assert!(pictures.iter().all(|(_, from, _)| from == "cityhall"));
    for &c in &centers {
        assert!(
            pictures.iter().any(|(i, _, _)| *i == c),
            "{c} sees no class"
        );
    }

    // Three hands, in this order; the host sees the queue.
    for c in [3, 7, 12] {
        w.send(centers[c], ClientMessage::Hand { raised: true });
        run(&mut w, 0.1, &mut pictures, &mut events);
    }
    let queue = events.iter().rev().find_map(|(i, e, _)| match e {
        RoomEvent::Hands(q) if *i == host => Some(q.clone()),
        _ => None,
    });
    assert_eq!(
        queue,
        Some(vec![
            "center-03".into(),
            "center-07".into(),
            "center-12".into()
        ])
    );

    // The second is let in: it starts publishing, and every other participant decodes it.
    let promoted_at = w.elapsed();
    w.send(
        host,
        ClientMessage::Promote {
            identity: "center-07".into(),
        },
    );
    run(&mut w, 4.0, &mut pictures, &mut events);
    let mut first_seen = Vec::new();
    for (i, &c) in centers.iter().enumerate().filter(|(i, _)| *i != 7) {
        let seen: Vec<Duration> = pictures
            .iter()
            .filter(|(to, from, _)| *to == c && from == "center-07")
            .map(|p| p.2)
            .collect();
        assert!(
            seen.len() >= 45,
            "center {i} decoded {} of the promoted center's pictures",
            seen.len()
        );
        first_seen.push(seen[0] - promoted_at);
    }
    let to_host = pictures
        .iter()
        .filter(|(to, from, _)| *to == host && from == "center-07")
        .count();
    assert!(to_host >= 45, "the host decoded {to_host}");
    first_seen.sort();
    println!(
        "promoted center first seen after {:?} (median), {:?} (last of 19 viewers)",
        first_seen[first_seen.len() / 2],
        first_seen[first_seen.len() - 1]
    );
    assert!(
        events
            .iter()
            .any(|(i, e, _)| *i == centers[7] && matches!(e, RoomEvent::HandLowered))
    );

    // Sent back: everyone sees the role change and the camera end; no picture after.
    w.send(
        host,
        ClientMessage::Demote {
            identity: "center-07".into(),
        },
    );
    run(&mut w, 0.5, &mut pictures, &mut events);
    let demoted_at = w.elapsed();
    run(&mut w, 2.0, &mut pictures, &mut events);
    for i in std::iter::once(host).chain(centers.iter().copied()) {
        let saw = |f: &dyn Fn(&RoomEvent) -> bool| events.iter().any(|(to, e, _)| *to == i && f(e));
        assert!(
            saw(
                &|e| matches!(e, RoomEvent::RoleChanged { identity, role: Role::Viewer } if identity == "center-07")
            ),
            "{i} not told of the demotion"
        );
        if i != centers[7] {
            assert!(
                saw(&|e| matches!(e, RoomEvent::TrackUnpublished(t) if t == "center-07/camera")),
                "{i}: the promoted center's camera did not end"
            );
        }
    }
    let after = pictures
        .iter()
        .filter(|(_, from, at)| from == "center-07" && *at > demoted_at)
        .count();
    assert_eq!(after, 0, "pictures of a demoted center after its demotion");
}

/// A broadcast room: the host publishes, centers with speaker tokens join as viewers and
/// publish nothing; one that joins late sees the host at once.
#[test]
fn in_a_broadcast_room_centers_watch_and_late_joiners_see_the_host_at_once() {
    let mut config = World::engine_config();
    config.broadcast_rooms = vec!["sim".into()];
    let mut w = World::new("lte".parse().unwrap(), 3, config);
    let mut pictures: Vec<(usize, String, Duration)> = Vec::new();
    let record = |w: &mut World, seconds: f64, pictures: &mut Vec<_>| {
        w.run_for(Duration::from_secs_f64(seconds), &mut |i, e, at| {
            if let RoomEvent::VideoFrame { participant, .. } = e {
                pictures.push((i, participant, at));
            }
        })
        .unwrap();
    };
    let host = join_host(&mut w);
    // Speaker tokens, cameras ready: in a broadcast room they wait to be let in.
    let early: Vec<usize> = (0..4)
        .map(|c| {
            w.join(&format!("center-{c}"), JoinOptions::default())
                .unwrap()
        })
        .collect();
    record(&mut w, 5.0, &mut pictures);
    assert!(
        pictures.iter().all(|(_, from, _)| from == "cityhall"),
        "a center published in a broadcast room"
    );
    for &c in &early {
        let n = pictures.iter().filter(|(i, _, _)| *i == c).count();
        assert!(n >= 40, "center {c} saw {n} pictures of the class in 5 s");
    }
    // Late joiners: the time from their join to the host's first picture.
    let mut waits = Vec::new();
    for late in 0..8 {
        let joined_at = w.elapsed();
        let c = w
            .join(&format!("late-{late}"), JoinOptions::default())
            .unwrap();
        // In 20 ms steps, to see where the wait goes: the receiving connection (ICE and
        // DTLS), the first video packet (a keyframe the server asked for), the picture.
        let (mut up, mut packet) = (None, None);
        for _ in 0..200 {
            record(&mut w, 0.02, &mut pictures);
            let session = w.participant(c).session();
            let now = w.elapsed() - joined_at;
            if up.is_none() && session.receiving_ready() {
                up = Some(now);
            }
            let video = |t: &madang::room::TrackStats| t.packets > 0 && t.track.ends_with("camera");
            if packet.is_none() && session.receive_stats().iter().any(video) {
                packet = Some(now);
            }
        }
        println!(
            "late joiner {late}: receiving connection up after {up:?}, first video packet {packet:?}"
        );
        let first = pictures
            .iter()
            .find(|(i, from, _)| *i == c && from == "cityhall")
            .map(|p| p.2 - joined_at);
        waits.push(first.expect("a late joiner saw no picture of the class in 2 s"));
    }
    waits.sort();
    println!("late joiners on lte: the class's first picture {waits:?} after joining");
    // Measured 0.6–2.5 s (seed 3): the receiving connection is up 0.5–1.7 s after the join
    // and the first video packet comes 0.1–1.2 s after that; on `lan` the whole join takes
    // 0.27 s. The long ones look like lost handshake datagrams waiting out a retransmission
    // timer (rtc's DTLS starts at 1 s and has no setting for it): not yet shown.
    assert!(
        waits.iter().all(|w| *w < Duration::from_secs(3)),
        "{waits:?}"
    );
    assert!(pictures.iter().filter(|(i, _, _)| *i == host).count() == 0);
}
