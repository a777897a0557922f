//! The server's side of adaptive quality on simulated time: a subscriber whose downlink
//! narrows gets its least important videos paused, keeps every voice, and gets the videos
//! back when the link widens (`sfu::allocate`, the downlink estimate of each subscribing
//! connection).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use madang::netsim::{Direction, LinkConfig};
use madang::room::{RoomEvent, TrackStats};
use madang::sfu::engine::Downlink;
use madang::signal::TrackKind;
use madang::sim::{JoinOptions, World};

/// Audio concealed per publisher at participant `i` so far, ms.
fn concealed(world: &World, i: usize) -> BTreeMap<String, f64> {
    world
        .participant(i)
        .session()
        .receive_stats()
        .into_iter()
        .filter(|t: &TrackStats| t.kind == TrackKind::Audio)
        .map(|t| (t.track, t.audio_concealed_ms))
        .collect()
}

/// The server's view of `identity`'s downlink.
fn downlink_of(world: &World, identity: &str) -> Downlink {
    world
        .engine()
        .downlinks()
        .into_iter()
        .find(|d| d.identity == identity)
        .unwrap()
}

/// A room on 30 ms links where each of `ids` publishes 640×360 at 800 kbit/s.
fn conference(ids: &[&str]) -> World {
    let mut world = World::new("delay=30ms".parse().unwrap(), 1, World::engine_config());
    for id in ids {
        world
            .join(
                id,
                JoinOptions {
                    video: Some((640, 360, 30, 800)),
                    ..JoinOptions::default()
                },
            )
            .unwrap();
    }
    world
}

#[test]
fn a_narrow_downlink_pauses_videos_keeps_every_voice_and_resumes_when_it_widens() {
    let link = LinkConfig {
        delay: Duration::from_millis(30),
        ..LinkConfig::default()
    };
    let mut world = conference(&["p1", "p2", "p3", "p4"]);
    let narrow = 4; // p4, the last to join
    // What p4 sees: pauses and resumes, and when each publisher's pictures arrive.
    let pauses: RefCell<Vec<(f64, String, bool)>> = RefCell::default();
    let pictures: RefCell<BTreeMap<String, Vec<f64>>> = RefCell::default();
    let mut on_event = |i: usize, event: RoomEvent, at: Duration| {
        if i + 1 != narrow {
            return;
        }
        let at = at.as_secs_f64();
        match event {
            RoomEvent::VideoPaused { track, paused } => {
                pauses.borrow_mut().push((at, track, paused))
            }
            RoomEvent::VideoFrame { participant, .. } => pictures
                .borrow_mut()
                .entry(participant)
                .or_default()
                .push(at),
            _ => {}
        }
    };
    world
        .run_for(Duration::from_secs(8), &mut on_event)
        .unwrap();
    let start = world.elapsed().as_secs_f64();
    assert_eq!(
        pictures.borrow().len(),
        3,
        "p4 sees everyone before the link narrows"
    );

    // The downlink narrows to 1.2 Mbit/s with 200 ms of queue: room for one 800 kbit/s
    // video and three voices, not for three videos.
    world.set_link(
        narrow - 1,
        Direction::Down,
        LinkConfig {
            rate_bps: Some(1_200_000),
            queue_bytes: 30_000,
            ..link.clone()
        },
    );
    world
        .run_for(Duration::from_secs(10), &mut on_event)
        .unwrap();
    let settled = concealed(&world, narrow - 1);
    let settled_at = world.elapsed().as_secs_f64();
    world
        .run_for(Duration::from_secs(20), &mut on_event)
        .unwrap();
    let narrow_end = world.elapsed().as_secs_f64();
    let after = concealed(&world, narrow - 1);
    let downlink = downlink_of(&world, "p4");
    let seen = pauses.borrow().clone();
    eprintln!(
        "narrow: downlink {downlink:?}; pauses {seen:?}; audio concealed from {settled:?} to {after:?}"
    );
    let paused_once = seen.iter().any(|(t, _, p)| *p && *t >= start);
    assert!(paused_once, "no video was paused: {seen:?}");
    assert!(
        downlink.paused >= 1 && downlink.paused < 3,
        "{downlink:?}: one video at least stays, one at least is paused"
    );
    // Every voice plays: at most 3 % concealed over the last 20 s of the narrow phase.
    let span_ms = (narrow_end - settled_at) * 1000.0;
    for (track, ms) in &after {
        let share = (ms - settled.get(track).copied().unwrap_or(0.0)) / span_ms;
        assert!(share <= 0.03, "{track}: {:.1} % concealed", share * 100.0);
    }
    // The video that stays keeps moving: at least one publisher's pictures arrive at 20 fps
    // or more over the last 20 s.
    let best = pictures
        .borrow()
        .values()
        .map(|t| t.iter().filter(|&&t| t >= settled_at).count())
        .max()
        .unwrap_or(0);
    eprintln!("narrow: the best video showed {best} pictures in 20 s");
    assert!(best >= 400, "best video: {best} pictures in 20 s");

    // The link widens again: every video comes back, one at a time.
    world.set_link(narrow - 1, Direction::Down, link);
    world
        .run_for(Duration::from_secs(40), &mut on_event)
        .unwrap();
    let end = world.elapsed().as_secs_f64();
    let downlink = downlink_of(&world, "p4");
    let resumes: Vec<f64> = pauses
        .borrow()
        .iter()
        .filter(|(t, _, p)| !p && *t >= narrow_end)
        .map(|(t, _, _)| t - narrow_end)
        .collect();
    eprintln!("wide again: {downlink:?}; resumed after {resumes:?} s");
    assert_eq!(downlink.paused, 0, "{downlink:?}");
    for (who, times) in pictures.borrow().iter() {
        let recent = times.iter().filter(|&&t| t >= end - 5.0).count();
        assert!(recent >= 100, "{who}: {recent} pictures in the last 5 s");
    }
}

#[test]
fn a_subscriber_with_every_video_paused_probes_its_way_back_on_a_lossy_link() {
    // A senior center's line: 64 kbit/s at first, then wide but losing 8 % in bursts (120 ±
    // 40 ms, reordering).
    let lossy = LinkConfig {
        loss: 0.08,
        burst: Some(4.0),
        delay: Duration::from_millis(120),
        jitter: Duration::from_millis(40),
        ..LinkConfig::default()
    };
    let mut world = conference(&["hall", "center"]);
    let center = 1;
    world.set_link(
        center,
        Direction::Down,
        LinkConfig {
            rate_bps: Some(64_000),
            queue_bytes: 4_000,
            delay: Duration::from_millis(30),
            ..LinkConfig::default()
        },
    );
    let pauses: RefCell<Vec<(f64, bool)>> = RefCell::default();
    let pictures: RefCell<Vec<f64>> = RefCell::default();
    let mut on_event = |i: usize, event: RoomEvent, at: Duration| {
        if i != center {
            return;
        }
        match event {
            RoomEvent::VideoPaused { paused, .. } => {
                pauses.borrow_mut().push((at.as_secs_f64(), paused))
            }
            RoomEvent::VideoFrame { .. } => pictures.borrow_mut().push(at.as_secs_f64()),
            _ => {}
        }
    };
    world
        .run_for(Duration::from_secs(10), &mut on_event)
        .unwrap();
    let settled = concealed(&world, center);
    world
        .run_for(Duration::from_secs(10), &mut on_event)
        .unwrap();
    let after = concealed(&world, center);
    let narrow_end = world.elapsed().as_secs_f64();
    let downlink = downlink_of(&world, "center");
    eprintln!("64 kbit/s: {downlink:?}; pauses {:?}", pauses.borrow());
    assert_eq!(downlink.paused, 1, "{downlink:?}: the video is paused");
    let voice = after.values().sum::<f64>() - settled.values().sum::<f64>();
    // At least 99 % of the voice's frames played over the last 10 s.
    eprintln!("64 kbit/s: {voice:.0} ms of 10 s concealed");
    assert!(
        voice <= 100.0,
        "{voice:.0} ms of the voice concealed in 10 s"
    );

    // The cap lifts; the loss stays. The estimate of a link that carries only a voice cannot
    // rise by itself, and on this loss it falls whatever is sent: padding probes find the room.
    world.set_link(center, Direction::Down, lossy);
    world
        .run_for(Duration::from_secs(40), &mut on_event)
        .unwrap();
    let end = world.elapsed().as_secs_f64();
    let downlink = downlink_of(&world, "center");
    let resumed = pauses
        .borrow()
        .iter()
        .find(|(t, p)| !p && *t >= narrow_end)
        .map(|(t, _)| t - narrow_end);
    let recent = pictures
        .borrow()
        .iter()
        .filter(|&&t| t >= end - 10.0)
        .count();
    eprintln!(
        "wide and lossy: {downlink:?}; resumed after {resumed:?} s; {recent} pictures in the last 10 s; {} probes, {} carried",
        world.engine().stats().probes,
        world.engine().stats().probes_carried
    );
    assert_eq!(downlink.paused, 0, "{downlink:?}");
    assert!(
        resumed.is_some_and(|s| s <= 25.0),
        "resumed after {resumed:?} s"
    );
    assert!(recent >= 200, "{recent} pictures in the last 10 s");
}
