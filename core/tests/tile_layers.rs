//! The layout message on simulated time: a senior center's 1280×720 screen shows 24 district
//! offices, each publishing simulcast (640×360 and 320×180). Told the layout, the server
//! forwards each office at the layer its tile needs — the small one for a gallery of 24,
//! the full size for the speaker's large tile, nothing for offices off screen — and the
//! downlink carries what `grid::plan` predicts.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use madang::codec::simulcast_layers;
use madang::grid::layout::{Layout, LayoutInput, Mode, Person, Viewport};
use madang::grid::plan::{plan, view_layout};
use madang::room::RoomEvent;
use madang::sfu::engine::Downlink;
use madang::signal::{ClientMessage, TrackKind};
use madang::sim::{JoinOptions, World};

const OFFICES: usize = 24;
const CAPTURE: (u32, u32, u32, u32) = (640, 360, 10, 600);

/// Pictures the center decoded: office → [(at s, width)].
type Seen = BTreeMap<String, Vec<(f64, u32)>>;

/// The widths of `from`'s pictures decoded in `from_s..to_s`, and how many there were.
fn window(seen: &Seen, from: &str, from_s: f64, to_s: f64) -> (usize, Vec<u32>) {
    let pictures: Vec<u32> = seen
        .get(from)
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

/// Video bytes the center received so far, by track.
fn video_bytes(world: &World, center: usize) -> BTreeMap<String, u64> {
    world
        .participant(center)
        .session()
        .receive_stats()
        .into_iter()
        .filter(|t| t.kind == TrackKind::Video)
        .map(|t| (t.track, t.bytes))
        .collect()
}

/// The layout of the offices on the center's screen, what it tells the server, and the
/// bit rate `grid::plan` predicts for it: the nominal rate of each office's planned layer.
fn screen(people: &[Person], mode: Mode) -> (Layout, ClientMessage, f64) {
    let viewport = Viewport::new(1280, 720);
    let layout = Layout::compute(&LayoutInput::new(people, viewport, mode));
    let view = view_layout(&layout, viewport, |p| vec![format!("{p}/camera")]);
    let (w, h, _, kbps) = CAPTURE;
    let layers = simulcast_layers(w, h, kbps * 1000);
    let sizes: Vec<(u32, u32)> = layers.iter().map(|l| (l.width, l.height)).collect();
    let predicted: f64 = plan(&layout, people, &sizes)
        .iter()
        .filter_map(|want| want.layer)
        .filter_map(|size| layers.iter().find(|l| (l.width, l.height) == size))
        .map(|l| l.bitrate_bps as f64)
        .sum();
    (layout, ClientMessage::Layout(view), predicted)
}

/// Sends `message` as `center`'s layout, lets 4 s settle and measures 8 s: the window (s),
/// the video bit rate received in it, and `center`'s downlink at its end.
fn settle_and_measure(
    world: &mut World,
    center: usize,
    message: ClientMessage,
    on_event: &mut dyn FnMut(usize, RoomEvent, Duration),
) -> (f64, f64, f64, Downlink) {
    world.send(center, message);
    world.run_for(Duration::from_secs(4), on_event).unwrap();
    let from_s = world.elapsed().as_secs_f64();
    let bytes_before = video_bytes(world, center);
    world.run_for(Duration::from_secs(8), on_event).unwrap();
    let to_s = world.elapsed().as_secs_f64();
    let received: u64 = video_bytes(world, center)
        .iter()
        .map(|(t, b)| b - bytes_before.get(t).copied().unwrap_or(0))
        .sum();
    let bps = received as f64 * 8.0 / (to_s - from_s);
    let downlink = world
        .engine()
        .downlinks()
        .into_iter()
        .find(|d| d.identity == world.participant(center).identity())
        .unwrap();
    (from_s, to_s, bps, downlink)
}

#[test]
fn the_server_forwards_each_office_at_the_layer_its_tile_needs() {
    let mut world = World::new("delay=20ms".parse().unwrap(), 7, World::engine_config());
    let mut people = Vec::new();
    for i in 0..OFFICES {
        let id = format!("office-{i:02}");
        world
            .join(
                &id,
                JoinOptions {
                    video: Some(CAPTURE),
                    simulcast: true,
                    // One voice: office-00 is the active speaker.
                    audio: i == 0,
                    auto_subscribe: false,
                    ..JoinOptions::default()
                },
            )
            .unwrap();
        people.push(Person::new(&id));
    }
    let center = world
        .join(
            "center",
            JoinOptions {
                video: None,
                audio: false,
                ..JoinOptions::default()
            },
        )
        .unwrap();
    let seen: RefCell<Seen> = RefCell::default();
    let mut on_event = |i: usize, event: RoomEvent, at: Duration| {
        if let RoomEvent::VideoFrame {
            participant, frame, ..
        } = event
            && i == center
        {
            seen.borrow_mut()
                .entry(participant)
                .or_default()
                .push((at.as_secs_f64(), frame.width()));
        }
    };

    // Before any layout the server does not know the screen: it raises layers while the
    // downlink has room.
    world
        .run_for(Duration::from_secs(6), &mut on_event)
        .unwrap();

    // Gallery: 24 tiles of about 250×140, so the 320×180 layer of every office.
    let (gallery, message, predicted) = screen(&people, Mode::Gallery);
    assert_eq!(gallery.tiles.len(), OFFICES);
    let (from_s, to_s, bps, downlink) =
        settle_and_measure(&mut world, center, message, &mut on_event);
    eprintln!(
        "gallery: {bps:.0} bit/s of video received, grid::plan predicts {predicted:.0}; {downlink:?}"
    );
    for p in &people {
        let (n, widths) = window(&seen.borrow(), &p.id, from_s, to_s);
        // 10 fps for 8 s.
        assert!(n >= 72, "{}: {n} pictures in 8 s", p.id);
        assert_eq!(widths, [320], "{} at the small layer", p.id);
    }
    assert_eq!(downlink.videos, OFFICES);
    assert_eq!(
        (downlink.paused, downlink.off_screen),
        (0, 0),
        "{downlink:?}"
    );
    assert!(
        (bps - predicted).abs() <= 0.2 * predicted,
        "received {bps:.0} bit/s, grid::plan predicts {predicted:.0}"
    );

    // Speaker layout: office-00 large, a filmstrip of a few, the rest off screen.
    people[0].speaker_rank = Some(0);
    let (speaker, message, predicted) = screen(&people, Mode::Speaker);
    let shown: Vec<String> = speaker
        .tiles
        .iter()
        .map(|t| t.participant.clone())
        .collect();
    assert!(shown.len() < OFFICES && shown.contains(&people[0].id));
    let (from_s, to_s, bps, downlink) =
        settle_and_measure(&mut world, center, message, &mut on_event);
    eprintln!(
        "speaker: {} tiles, {bps:.0} bit/s of video received, grid::plan predicts \
         {predicted:.0}; {downlink:?}",
        shown.len()
    );
    for p in &people {
        let (n, widths) = window(&seen.borrow(), &p.id, from_s, to_s);
        if p.id == people[0].id {
            assert!(n >= 72, "the speaker: {n} pictures in 8 s");
            assert_eq!(widths, [640], "the speaker at full size");
        } else if shown.contains(&p.id) {
            assert!(n >= 72, "{}: {n} pictures in 8 s", p.id);
            assert_eq!(
                widths,
                [320],
                "{} in the filmstrip at the small layer",
                p.id
            );
        } else {
            assert_eq!(n, 0, "{} is off screen but arrived", p.id);
        }
    }
    assert_eq!(downlink.off_screen, OFFICES - shown.len(), "{downlink:?}");
    assert_eq!(downlink.paused, 0, "{downlink:?}");
    assert!(
        (bps - predicted).abs() <= 0.2 * predicted,
        "received {bps:.0} bit/s, grid::plan predicts {predicted:.0}"
    );

    // Back to the gallery: the offices that were off screen come back (at their next
    // keyframe), the speaker goes down to the small layer.
    let (_, message, _) = screen(&people, Mode::Gallery);
    let sent_s = world.elapsed().as_secs_f64();
    world.send(center, message);
    world
        .run_for(Duration::from_secs(2), &mut on_event)
        .unwrap();
    let back: Vec<f64> = people
        .iter()
        .filter(|p| !shown.contains(&p.id))
        .map(|p| {
            seen.borrow()[&p.id]
                .iter()
                .find(|(t, _)| *t > sent_s)
                .map_or(f64::INFINITY, |(t, _)| t - sent_s)
        })
        .collect();
    let slowest = back.iter().copied().fold(0.0, f64::max);
    eprintln!("back on screen: the first pictures after {slowest:.2} s at most");
    // The layout's way to the server, the next allocation (≤ 500 ms), a keyframe's way
    // back from each publisher.
    assert!(slowest <= 1.5, "an office came back after {slowest:.2} s");
    let from_s = world.elapsed().as_secs_f64();
    world
        .run_for(Duration::from_secs(3), &mut on_event)
        .unwrap();
    let to_s = world.elapsed().as_secs_f64();
    for p in &people {
        let (n, widths) = window(&seen.borrow(), &p.id, from_s, to_s);
        assert!(n >= 27, "{}: {n} pictures in 3 s back in the gallery", p.id);
        assert_eq!(widths, [320], "{} back at the small layer", p.id);
    }
    let downlink = world
        .engine()
        .downlinks()
        .into_iter()
        .find(|d| d.identity == "center")
        .unwrap();
    assert_eq!(downlink.off_screen, 0, "{downlink:?}");
}

#[test]
fn a_hundred_layer_switches_decode_cleanly() {
    // One office, one viewer whose tile changes size every second: each change moves the
    // video to the other layer (down at once by the tile, up by the allocation as the link
    // has room), always at a keyframe, with continuous numbering.
    let mut world = World::new("delay=20ms".parse().unwrap(), 11, World::engine_config());
    world
        .join(
            "office",
            JoinOptions {
                video: Some(CAPTURE),
                simulcast: true,
                audio: false,
                auto_subscribe: false,
                ..JoinOptions::default()
            },
        )
        .unwrap();
    let viewer = world
        .join(
            "viewer",
            JoinOptions {
                video: None,
                audio: false,
                ..JoinOptions::default()
            },
        )
        .unwrap();
    let widths: RefCell<Vec<u32>> = RefCell::default();
    let mut on_event = |i: usize, event: RoomEvent, _: Duration| {
        if let RoomEvent::VideoFrame { frame, .. } = event
            && i == viewer
        {
            widths.borrow_mut().push(frame.width());
        }
    };
    world
        .run_for(Duration::from_secs(3), &mut on_event)
        .unwrap();
    let tile = |width, height| {
        ClientMessage::Layout(madang::signal::ViewLayout {
            width: 1280,
            height: 720,
            tiles: vec![madang::signal::TileSize {
                track: "office/camera".into(),
                width,
                height,
            }],
        })
    };
    let mut switches = 0;
    let mut round = 0;
    while switches < 100 && round < 160 {
        let small = round % 2 == 0;
        world.send(
            viewer,
            if small {
                tile(256, 144)
            } else {
                tile(1280, 720)
            },
        );
        world
            .run_for(Duration::from_millis(1500), &mut on_event)
            .unwrap();
        let seen = widths.borrow();
        switches = seen.windows(2).filter(|w| w[0] != w[1]).count();
        round += 1;
    }
    let stats = world
        .participant(viewer)
        .session()
        .receive_stats()
        .into_iter()
        .find(|t| t.track == "office/camera")
        .unwrap();
    eprintln!(
        "{switches} switches in {round} layout changes; {} pictures decoded, {} lost, {} freezes \
         ({:.0} ms), {} keyframe requests",
        stats.frames_decoded,
        stats.frames_lost,
        stats.freezes,
        stats.freeze_ms,
        stats.keyframes_requested
    );
    assert!(
        switches >= 100,
        "{switches} switches in {round} layout changes"
    );
    // No picture failed to decode or went missing around a switch, and none froze.
    assert_eq!(stats.frames_lost, 0, "{stats:?}");
    assert_eq!(stats.keyframes_requested, 0, "{stats:?}");
    assert_eq!(stats.freezes, 0, "{stats:?}");
}
