//! Golden snapshots of composed grids, compared within a tolerance (SIMD paths differ a little
//! between CPUs). Regenerate after an intended change with
//! `MADANG_UPDATE_GOLDENS=1 cargo test -p madang --test grid_golden` and look at the PNGs in
//! `core/tests/data/grid/` before committing them.

use std::collections::HashMap;
use std::path::PathBuf;

use madang::grid::compose::{Compositor, Fit};
use madang::grid::layout::{Layout, LayoutInput, Mode, Person, Viewport};
use madang::media::TestPattern;
use madang::signal::Role;

const W: u32 = 480;
const H: u32 = 270;

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/grid")
        .join(format!("{name}.png"))
}

fn people(n: usize) -> Vec<Person> {
    (0..n)
        .map(|i| {
            let mut p = Person::new(&format!("p{i}"));
            p.name = format!("Office {}", (b'A' + (i % 26) as u8) as char);
            p
        })
        .collect()
}

/// Composes `people` in `mode` with deterministic pictures (grain off, one frame each).
fn compose(people: &[Person], mode: Mode, levels: &HashMap<String, f32>) -> Vec<u8> {
    let layout = Layout::compute(&LayoutInput::new(people, Viewport::new(W, H), mode));
    let mut c = Compositor::new(W, H, Fit::Fit).unwrap();
    for (i, p) in people.iter().enumerate() {
        if p.has_video {
            let pattern = TestPattern::new(320, 180).unwrap().with_grain(0);
            c.update(&p.id, pattern.frame(i as u32 * 7, 0));
        }
    }
    c.compose(&layout, people, levels, 0).to_rgb()
}

fn check(name: &str, rgb: &[u8]) {
    let path = golden_path(name);
    if std::env::var_os("MADANG_UPDATE_GOLDENS").is_some() {
        let file = std::fs::File::create(&path).unwrap();
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), W, H);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .unwrap()
            .write_image_data(rgb)
            .unwrap();
        return;
    }
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (regenerate with MADANG_UPDATE_GOLDENS=1)",
                path.display()
            )
        }),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut golden = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut golden).unwrap();
    assert_eq!((info.width, info.height), (W, H), "{name}: size");
    let golden = &golden[..info.buffer_size()];
    assert_eq!(golden.len(), rgb.len(), "{name}: layout of pixels");
    let diffs: Vec<u32> = golden
        .iter()
        .zip(rgb)
        .map(|(a, b)| (*a as i32 - *b as i32).unsigned_abs())
        .collect();
    let mean = diffs.iter().sum::<u32>() as f64 / diffs.len() as f64;
    let max = diffs.iter().copied().max().unwrap_or(0);
    assert!(
        mean <= 1.0 && max <= 48,
        "{name}: mean difference {mean:.3}, max {max}"
    );
}

#[test]
fn gallery_of_4_9_24() {
    for n in [4, 9, 24] {
        check(
            &format!("gallery_{n}"),
            &compose(&people(n), Mode::Gallery, &HashMap::new()),
        );
    }
}

#[test]
fn speaker_view() {
    let mut p = people(5);
    p[3].speaker_rank = Some(0);
    check("speaker", &compose(&p, Mode::Speaker, &HashMap::new()));
}

#[test]
fn broadcast_view() {
    let mut p = people(6);
    p[0].role = Role::Host;
    for x in &mut p[1..] {
        x.role = Role::Viewer;
    }
    p[2].hand_raised = true;
    p[4].hand_raised = true;
    check("broadcast", &compose(&p, Mode::Broadcast, &HashMap::new()));
}

#[test]
fn placeholder_tiles() {
    let mut p = people(4);
    p[1].has_video = false;
    p[3].has_video = false;
    p[3].name = "Mapo Senior Center".into();
    let levels: HashMap<String, f32> = [("p1".to_string(), 0.3), ("p3".to_string(), 0.8)].into();
    check("placeholders", &compose(&p, Mode::Gallery, &levels));
}
