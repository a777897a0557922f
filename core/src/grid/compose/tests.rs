use std::collections::HashMap;

use super::*;
use crate::grid::layout::{LayoutInput, Mode, Viewport};
use crate::media::{TestPattern, read_stamp};

/// The pixels of `r` copied out of `frame`.
fn crop(frame: &VideoFrame, r: Rect) -> VideoFrame {
    let r = even_rect(r);
    let mut out = VideoFrame::black(r.w, r.h).unwrap();
    for plane in 0..3 {
        let d = if plane == 0 { 1 } else { 2 };
        let stride = out.stride(plane);
        let (w, h) = out.plane_size(plane);
        for row in 0..h {
            let src = frame.row(plane, (r.y / d) as usize + row);
            let x0 = (r.x / d) as usize;
            out.plane_mut(plane)[row * stride..row * stride + w].copy_from_slice(&src[x0..x0 + w]);
        }
    }
    out
}

fn people(n: usize) -> Vec<Person> {
    (0..n).map(|i| Person::new(&format!("p{i}"))).collect()
}

#[test]
fn every_tile_shows_its_participant_scaled_with_a_readable_stamp() {
    let p = people(4);
    let layout = Layout::compute(&LayoutInput::new(
        &p,
        Viewport::new(1280, 720),
        Mode::Gallery,
    ));
    let mut c = Compositor::new(1280, 720, Fit::Fit).unwrap();
    for (i, person) in p.iter().enumerate() {
        let pattern = TestPattern::new(640, 360).unwrap();
        c.update(&person.id, pattern.frame(100 + i as u32, 5_000 + i as u64));
    }
    let canvas = c.compose(&layout, &p, &HashMap::new(), 42).clone();
    assert_eq!(canvas.pts_us(), 42);
    for tile in &layout.tiles {
        let i: u32 = tile.participant[1..].parse().unwrap();
        let stamp = read_stamp(&crop(&canvas, tile.rect)).expect("stamp readable in the tile");
        assert_eq!((stamp.seq, stamp.capture_us), (100 + i, 5_000 + i as u64));
    }
}

#[test]
fn placeholders_borders_and_held_frames() {
    let mut p = people(2);
    p[1].has_video = false;
    p[1].name = "Mapo Office".into();
    p[0].speaker_rank = Some(0);
    let layout = Layout::compute(&LayoutInput::new(
        &p,
        Viewport::new(640, 360),
        Mode::Gallery,
    ));
    let mut c = Compositor::new(640, 360, Fit::Fit).unwrap();
    c.update("p0", TestPattern::new(320, 180).unwrap().frame(1, 1));
    let levels: HashMap<String, f32> = [("p1".to_string(), 0.5)].into();
    let first = c.compose(&layout, &p, &levels, 0).clone();
    let t1 = layout.tiles.iter().find(|t| t.participant == "p1").unwrap();
    let tile = crop(&first, t1.rect);
    assert!(tile.y().contains(&TEXT.0), "initials drawn");
    assert!(tile.y().contains(&LEVEL.0), "audio-level bar drawn");
    assert!(tile.y().contains(&PLACEHOLDER.0));
    let t0 = layout.tiles.iter().find(|t| t.participant == "p0").unwrap();
    assert!(t0.highlight);
    let r = even_rect(t0.rect);
    assert_eq!(
        first.row(0, r.y as usize)[(r.x + r.w / 2) as usize],
        BORDER.0,
        "border on the speaker"
    );
    // No new frame: the last one is held.
    let second = c.compose(&layout, &p, &levels, 1);
    assert_eq!(second.y(), first.y());
    // Paused by the server: "LOW BANDWIDTH" under the initials (more text drawn, below
    // the middle of the tile).
    let text_rows = |f: &VideoFrame| {
        let t = crop(f, t1.rect);
        (0..t.height() as usize)
            .filter(|&r| t.row(0, r)[..t.width() as usize].contains(&TEXT.0))
            .collect::<Vec<_>>()
    };
    let plain = text_rows(&first);
    p[1].video_paused = true;
    let paused = c.compose(&layout, &p, &levels, 2).clone();
    let marked = text_rows(&paused);
    assert!(marked.len() > plain.len(), "{plain:?} vs {marked:?}");
    assert!(
        marked.last() > plain.last(),
        "the mark is below the initials"
    );
    assert_eq!(initials("Mapo Office"), "MO");
    assert_eq!(initials("jongno"), "J");
}

#[test]
fn fill_covers_the_whole_tile() {
    let p = people(1);
    let mut input = LayoutInput::new(&p, Viewport::new(640, 640), Mode::Gallery);
    input.gap = 0;
    let mut layout = Layout::compute(&input);
    // Ask for a square tile: Fill must crop the 16:9 picture to cover it.
    layout.tiles[0].rect = Rect {
        x: 0,
        y: 0,
        w: 640,
        h: 640,
    };
    let mut c = Compositor::new(640, 640, Fit::Fill).unwrap();
    c.update("p0", TestPattern::new(640, 360).unwrap().frame(3, 3));
    let canvas = c.compose(&layout, &p, &HashMap::new(), 0);
    // Every row has picture content (the background is exactly 16; the pattern's grain
    // keeps its luma off that value almost everywhere).
    for row in [0usize, 320, 639] {
        let non_bg = canvas
            .row(0, row)
            .iter()
            .filter(|&&v| v != BACKGROUND.0)
            .count();
        assert!(non_bg > 500, "row {row}: {non_bg}");
    }
}
