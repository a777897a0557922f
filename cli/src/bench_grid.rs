//! `madang bench grid`: composing layouts into a canvas, against a plain copy of the canvas
//! as the floor.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use madang::grid::compose::{Compositor, Fit, Quality};
use madang::grid::layout::{Layout, LayoutInput, Mode, Person, Viewport};
use madang::media::{TestPattern, VideoFrame};
use serde::Serialize;

use crate::CliResult;

/// Arguments of `madang bench grid`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Seconds per case.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct Case {
    name: String,
    ms: f64,
    floor_ms: f64,
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    cases: Vec<Case>,
    target_ms: f64,
}

/// Mean milliseconds per call of `f` over about `budget`.
fn time_it(budget: Duration, mut f: impl FnMut()) -> f64 {
    f(); // warm caches and buffers
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget || n < 5 {
        f();
        n += 1;
    }
    start.elapsed().as_secs_f64() * 1000.0 / n as f64
}

fn case(
    name: &str,
    tiles: usize,
    (sw, sh): (u32, u32),
    (cw, ch): (u32, u32),
    quality: Quality,
    budget: Duration,
) -> Result<Case, Box<dyn std::error::Error + Send + Sync>> {
    let people: Vec<Person> = (0..tiles).map(|i| Person::new(&format!("p{i}"))).collect();
    let mut input = LayoutInput::new(&people, Viewport::new(cw, ch), Mode::Gallery);
    input.page_size = tiles;
    let layout = Layout::compute(&input);
    let mut compositor = Compositor::new(cw, ch, Fit::Fit)?;
    compositor.set_quality(quality);
    let pattern = TestPattern::new(sw, sh)?;
    for (i, p) in people.iter().enumerate() {
        compositor.update(&p.id, pattern.frame(i as u32, 0));
    }
    let levels = HashMap::new();
    let ms = time_it(budget, || {
        std::hint::black_box(compositor.compose(&layout, &people, &levels, 0));
    });
    // The floor: copying a canvas of the same size once.
    let src = VideoFrame::black(cw, ch)?;
    let mut dst = VideoFrame::black(cw, ch)?;
    let floor_ms = time_it(budget, || {
        for p in 0..3 {
            dst.plane_mut(p).copy_from_slice(src.plane(p));
        }
        std::hint::black_box(&dst);
    });
    Ok(Case {
        name: name.to_owned(),
        ms,
        floor_ms,
        ratio: ms / floor_ms,
    })
}

/// Runs the benchmark.
pub fn run(args: Args) -> CliResult {
    if !(args.seconds > 0.0 && args.seconds <= 600.0) {
        return Err("--seconds must be within (0, 600]".into());
    }
    let budget = Duration::from_secs_f64(args.seconds);
    let cases = vec![
        case(
            "24x360p->1080p",
            24,
            (640, 360),
            (1920, 1080),
            Quality::Smooth,
            budget,
        )?,
        case(
            "24x180p->1080p",
            24,
            (320, 180),
            (1920, 1080),
            Quality::Smooth,
            budget,
        )?,
        case(
            "24x360p->1080p fast",
            24,
            (640, 360),
            (1920, 1080),
            Quality::Fast,
            budget,
        )?,
        case(
            "4x720p->1080p",
            4,
            (1280, 720),
            (1920, 1080),
            Quality::Smooth,
            budget,
        )?,
        case(
            "9x360p->720p",
            9,
            (640, 360),
            (1280, 720),
            Quality::Smooth,
            budget,
        )?,
    ];
    let report = Report {
        cases,
        target_ms: 2.0,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!("Grid composition, one thread (target: 24 tiles into 1080p in ≤ 2 ms)");
    println!(
        "{:>16} {:>10} {:>12} {:>8}",
        "case", "ms", "copy ms", "ratio"
    );
    for c in &report.cases {
        println!(
            "{:>16} {:>10.3} {:>12.3} {:>8.1}",
            c.name, c.ms, c.floor_ms, c.ratio
        );
    }
    Ok(())
}
