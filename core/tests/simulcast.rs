//! Simulcast on simulated time: publishers send each picture at two sizes, and the server
//! forwards each subscriber the layer its downlink carries — the small one to a subscriber
//! whose link narrows (no video paused, every picture decoded at the new size without a
//! glitch), the full size to the others, and the full size again once the link widens.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use madang::netsim::{Direction, LinkConfig};
use madang::room::{RoomEvent, TrackStats};
use madang::signal::TrackKind;
use madang::sim::{JoinOptions, World};

/// Pictures each subscriber decoded: `(subscriber, publisher) → [(at s, width)]`.
type Seen = BTreeMap<(usize, String), Vec<(f64, u32)>>;

/// Of `seen[(who, from)]`, the pictures decoded in `from_s..to_s`, and the widths they had.
fn window(seen: &Seen, who: usize, from: &str, from_s: f64, to_s: f64) -> (usize, Vec<u32>) {
    let pictures: Vec<u32> = seen
        .get(&(who, from.to_owned()))
        .map(|v| {
            v.iter()
                .filter(|(t, _)| *t >= from_s && *t < to_s)
                .map(|(_, w)| *w)
                .collect()
        })
        .unwrap_or_default();
    let mut widths = pictures.clone();
    widths.sort_unstable();
    widths.dedup();
    (pictures.len(), widths)
}

/// Freezes of the videos participant `i` receives so far, by track.
fn freezes(world: &World, i: usize) -> BTreeMap<String, (u64, f64)> {
    world
        .participant(i)
        .session()
        .receive_stats()
        .into_iter()
        .filter(|t: &TrackStats| t.kind == TrackKind::Video)
        .map(|t| (t.track, (t.freezes, t.freeze_ms)))
        .collect()
}

#[test]
fn a_narrow_downlink_gets_the_small_layer_of_every_video_and_the_full_size_comes_back() {
    let link = LinkConfig {
        delay: Duration::from_millis(30),
        ..LinkConfig::default()
    };
    let mut world = World::new("delay=30ms".parse().unwrap(), 3, World::engine_config());
    for id in ["p1", "p2"] {
        world
            .join(
                id,
                JoinOptions {
                    video: Some((640, 360, 15, 600)),
                    simulcast: true,
                    ..JoinOptions::default()
                },
            )
            .unwrap();
    }
    // Two subscribers that only speak: p3's downlink will narrow, p4's stays wide.
    for id in ["p3", "p4"] {
        let listener = JoinOptions {
            video: None,
            ..JoinOptions::default()
        };
        world.join(id, listener).unwrap();
    }
    let (narrow, wide) = (2, 3);
    let seen: RefCell<Seen> = RefCell::default();
    let paused: RefCell<Vec<(f64, String, bool)>> = RefCell::default();
    let mut on_event = |i: usize, event: RoomEvent, at: Duration| match event {
        RoomEvent::VideoFrame {
            participant, frame, ..
        } => seen
            .borrow_mut()
            .entry((i, participant))
            .or_default()
            .push((at.as_secs_f64(), frame.width())),
        RoomEvent::VideoPaused { track, paused: p } if i == narrow => {
            paused.borrow_mut().push((at.as_secs_f64(), track, p))
        }
        _ => {}
    };
    world
        .run_for(Duration::from_secs(8), &mut on_event)
        .unwrap();
    let t = world.elapsed().as_secs_f64();
    for who in [narrow, wide] {
        for from in ["p1", "p2"] {
            let (n, widths) = window(&seen.borrow(), who, from, t - 3.0, t);
            assert!(
                n >= 30,
                "p{} sees {from} before the narrowing: {n}",
                who + 1
            );
            assert_eq!(widths, [640], "p{} sees {from} at full size", who + 1);
        }
    }

    // p3's downlink narrows to 800 kbit/s: two small layers (~230 kbit/s each with their
    // headers) and three voices (~45 kbit/s each) fit, a full-size one (~650) beside a small
    // one does not.
    world.set_link(
        narrow,
        Direction::Down,
        LinkConfig {
            rate_bps: Some(800_000),
            queue_bytes: 30_000,
            ..link.clone()
        },
    );
    world
        .run_for(Duration::from_secs(10), &mut on_event)
        .unwrap();
    let settled = world.elapsed().as_secs_f64();
    let frozen_before = freezes(&world, narrow);
    world
        .run_for(Duration::from_secs(20), &mut on_event)
        .unwrap();
    let narrow_end = world.elapsed().as_secs_f64();
    let downlink = world
        .engine()
        .downlinks()
        .into_iter()
        .find(|d| d.identity == "p3")
        .unwrap();
    eprintln!(
        "narrow: {downlink:?}; pauses {:?}; switches {}, paused {}, resumed {}",
        paused.borrow(),
        world.engine().stats().layer_switches,
        world.engine().stats().videos_paused,
        world.engine().stats().videos_resumed,
    );
    assert_eq!(downlink.paused, 0, "no video is paused: {downlink:?}");
    assert_eq!(downlink.lowered, 2, "both at the small layer: {downlink:?}");
    for from in ["p1", "p2"] {
        let (n, widths) = window(&seen.borrow(), narrow, from, settled, narrow_end);
        let small = seen.borrow()[&(narrow, from.to_owned())]
            .iter()
            .filter(|(t, w)| *t >= settled && *t < narrow_end && *w == 320)
            .count();
        eprintln!(
            "narrow: p3 decoded {n} pictures of {from} in 20 s at widths {widths:?}, {small} small"
        );
        // 15 fps: 300 pictures in 20 s, a few seconds of them lost to a probe of the full
        // size that the link cannot carry (undone by the allocation).
        assert!(n >= 225, "p3 decoded {n} pictures of {from} in 20 s");
        assert!(
            small * 100 >= n * 85,
            "p3 gets mostly the small layer of {from}"
        );
        let (_, last) = window(&seen.borrow(), narrow, from, narrow_end - 5.0, narrow_end);
        assert_eq!(last, [320], "p3 is back on the small layer of {from}");
        let (n, widths) = window(&seen.borrow(), wide, from, settled, narrow_end);
        assert!(n >= 285, "p4 decoded {n} pictures of {from} in 20 s");
        assert_eq!(widths, [640], "p4 keeps the full size of {from}");
    }
    let frozen = freezes(&world, narrow);
    for (track, (n, ms)) in &frozen {
        let (n0, ms0) = frozen_before.get(track).copied().unwrap_or_default();
        eprintln!("narrow: {track}: {} freezes, {:.0} ms", n - n0, ms - ms0);
        // A probe of the full size that the link cannot carry costs both videos seconds of
        // freezes until the allocation undoes it (measured: 3.3 s and 4.8 s; the loss that
        // undoes it is reported seconds late, see `sfu::allocate::PROBE_LOSS`).
        assert!(ms - ms0 <= 6000.0, "{track} froze {:.0} ms", ms - ms0);
    }

    // The link widens again: within the allocation's holds both videos come back to the
    // full size, and each switch up is decoded without a freeze.
    world.set_link(narrow, Direction::Down, link);
    let frozen_before = freezes(&world, narrow);
    world
        .run_for(Duration::from_secs(40), &mut on_event)
        .unwrap();
    let end = world.elapsed().as_secs_f64();
    for from in ["p1", "p2"] {
        let (n, widths) = window(&seen.borrow(), narrow, from, end - 5.0, end);
        let all = &seen.borrow()[&(narrow, from.to_owned())];
        let up = all
            .iter()
            .find(|(t, w)| *t >= narrow_end && *w == 640)
            .map(|(t, _)| t - narrow_end);
        eprintln!("wide again: p3 sees {from} at full size {up:?} s after the widening");
        assert!(n >= 70, "p3 decoded {n} pictures of {from} in the last 5 s");
        assert_eq!(widths, [640], "p3 gets the full size of {from} again");
    }
    for (track, (n, ms)) in freezes(&world, narrow) {
        let (n0, ms0) = frozen_before.get(&track).copied().unwrap_or_default();
        eprintln!(
            "wide again: {track}: {} freezes, {:.0} ms",
            n - n0,
            ms - ms0
        );
        assert!(ms - ms0 <= 500.0, "{track} froze {:.0} ms", ms - ms0);
    }
}

/// The longest time between two pictures of `seen` in `from_s..to_s`, seconds.
fn longest_gap(pictures: &[(f64, u32)], from_s: f64, to_s: f64) -> f64 {
    let times: Vec<f64> = pictures
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t >= from_s && *t < to_s)
        .collect();
    times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
}

#[test]
fn a_layer_its_publisher_pauses_is_left_for_a_smaller_one_within_half_a_second() {
    // A publisher pauses its full size on its own (as Chromium does when its estimate
    // falls): the subscriber forwarded it moves to the small layer at that layer's next
    // keyframe, and the picture holds still only until then.
    let mut world = World::new("delay=40ms".parse().unwrap(), 5, World::engine_config());
    let publisher = JoinOptions {
        video: Some((640, 360, 15, 600)),
        simulcast: true,
        ..JoinOptions::default()
    };
    world.join("p1", publisher).unwrap();
    let listener = JoinOptions {
        video: None,
        ..JoinOptions::default()
    };
    let viewer = world.join("p2", listener).unwrap();
    let seen: RefCell<Seen> = RefCell::default();
    let mut on_event = |i: usize, event: RoomEvent, at: Duration| {
        if let RoomEvent::VideoFrame {
            participant, frame, ..
        } = event
        {
            seen.borrow_mut()
                .entry((i, participant))
                .or_default()
                .push((at.as_secs_f64(), frame.width()));
        }
    };
    world
        .run_for(Duration::from_secs(6), &mut on_event)
        .unwrap();
    let paused = world.elapsed().as_secs_f64();
    let (n, widths) = window(&seen.borrow(), viewer, "p1", paused - 2.0, paused);
    assert!(n >= 25, "p2 decoded {n} pictures of p1 in 2 s");
    assert_eq!(widths, [640], "p2 sees p1 at full size");

    world.hold_layer(0, 1, true);
    world
        .run_for(Duration::from_secs(4), &mut on_event)
        .unwrap();
    let resumed = world.elapsed().as_secs_f64();
    let pictures = seen.borrow()[&(viewer, "p1".to_owned())].clone();
    let gap = longest_gap(&pictures, paused - 0.5, resumed);
    let small_from = pictures
        .iter()
        .find(|(t, w)| *t >= paused && *w == 320)
        .map(|(t, _)| t - paused);
    eprintln!(
        "full size paused: p2's longest wait for a picture {:.0} ms, small layer {small_from:?} s after",
        gap * 1000.0
    );
    // 15 fps: a picture every 67 ms. The pause is seen after LAYER_STALL (250 ms), the
    // small layer's keyframe comes a round trip and a picture later (~150 ms).
    assert!(gap <= 0.6, "p2's picture of p1 held still {gap:.2} s");
    let (n, widths) = window(&seen.borrow(), viewer, "p1", resumed - 2.0, resumed);
    assert!(n >= 25, "p2 decoded {n} pictures of p1 in 2 s");
    assert_eq!(widths, [320], "p2 sees p1's small layer");

    // The full size comes back: taken again, without a freeze.
    world.hold_layer(0, 1, false);
    world
        .run_for(Duration::from_secs(10), &mut on_event)
        .unwrap();
    let end = world.elapsed().as_secs_f64();
    let pictures = seen.borrow()[&(viewer, "p1".to_owned())].clone();
    let gap = longest_gap(&pictures, resumed, end);
    let (_, widths) = window(&seen.borrow(), viewer, "p1", end - 2.0, end);
    eprintln!(
        "full size resumed: longest wait {:.0} ms, widths at the end {widths:?}",
        gap * 1000.0
    );
    assert_eq!(widths, [640], "p2 sees p1 at full size again");
    assert!(gap <= 0.3, "p2's picture of p1 held still {gap:.2} s");
}

#[test]
fn on_rural_links_everyone_sees_everyone_at_the_small_layer() {
    // Four senior centers on 1 Mbit/s links (1 % loss, 60 ± 20 ms), each publishing
    // 640×360 as simulcast: three others' small layers and voices fit every downlink. Before
    // (small layers at 283 kbit/s, an uplink estimate blind to a full queue whose losses
    // were repaired, resumed layers read at a fraction of their rate): 38.6 % of the
    // pictures shown over 60 s (seed 1), 0.5 s of queue on most links.
    let r = madang::sim::run(&madang::sim::SimConfig {
        participants: 4,
        width: 640,
        height: 360,
        fps: 30,
        bitrate_kbps: 800,
        simulcast: true,
        profile: "rural".parse::<madang::netsim::Profile>().unwrap(),
        seconds: 30.0,
        ..madang::sim::SimConfig::default()
    })
    .unwrap();
    let shown: Vec<f64> = r.pairs.iter().map(|p| 100.0 - p.loss_pct).collect();
    for (p, s) in r.pairs.iter().zip(&shown) {
        eprintln!(
            "rural {}→{}: pictures {s:.1} %, width {}, p95 {:.0} ms, freezes {} ({:.0} ms)",
            p.from, p.to, p.width, p.latency_ms.p95, p.repair.freezes, p.repair.freeze_ms
        );
    }
    for u in &r.uplinks {
        eprintln!(
            "rural uplink {}: sent {:.0} kbit/s, estimate {:.0}",
            u.participant, u.sent_kbps, u.estimate_kbps
        );
    }
    let mean = shown.iter().sum::<f64>() / shown.len() as f64;
    let worst = shown.iter().copied().fold(100.0, f64::min);
    let up = r.network.up;
    let down = r.network.down;
    eprintln!(
        "rural: pictures {mean:.1} % on average, worst pair {worst:.1} %; queue drops up {} of \
         {}, down {} of {}",
        up.queue_drops, up.sent, down.queue_drops, down.sent
    );
    // No publisher overfills its uplink: the queue in front of the 1 Mbit/s cap drops
    // next to nothing.
    assert!(
        up.queue_drops * 100 <= up.sent,
        "{} of {} dropped",
        up.queue_drops,
        up.sent
    );
    assert!(mean >= 85.0, "pictures {mean:.1} % on average");
    assert!(worst >= 50.0, "worst pair {worst:.1} %");
    // The voices stay whole.
    for a in &r.audio {
        assert!(
            a.concealed_ms <= 0.02 * a.frames_sent as f64 * 20.0,
            "{}→{} audio concealed {:.0} ms",
            a.from,
            a.to,
            a.concealed_ms
        );
    }
}
