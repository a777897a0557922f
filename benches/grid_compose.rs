//! Grid composition: 24 tiles of 360p into a 1080p canvas (target ≤ 2 ms) and 4 tiles of
//! 720p, bilinear and nearest, with a plain 1080p canvas copy as the floor.

use std::collections::HashMap;

use criterion::{Criterion, criterion_group, criterion_main};
use madang::grid::compose::{Compositor, Fit, Quality};
use madang::grid::layout::{Layout, LayoutInput, Mode, Person, Viewport};
use madang::media::VideoFrame;
use madang_benches::pattern_frames;

fn compose(c: &mut Criterion) {
    let mut group = c.benchmark_group("grid_compose");
    group.sample_size(30);
    for (name, tiles, (sw, sh)) in [
        ("24x360p_1080p", 24usize, (640u32, 360u32)),
        ("4x720p_1080p", 4, (1280, 720)),
    ] {
        let people: Vec<Person> = (0..tiles).map(|i| Person::new(&format!("p{i}"))).collect();
        let layout = Layout::compute(&LayoutInput::new(
            &people,
            Viewport::new(1920, 1080),
            Mode::Gallery,
        ));
        let frames = pattern_frames(sw, sh, 1);
        for quality in [Quality::Smooth, Quality::Fast] {
            let mut compositor = Compositor::new(1920, 1080, Fit::Fit).unwrap();
            compositor.set_quality(quality);
            for p in &people {
                compositor.update(&p.id, frames[0].clone());
            }
            let levels = HashMap::new();
            group.bench_function(format!("{name}/{quality:?}"), |b| {
                b.iter(|| compositor.compose(&layout, &people, &levels, 0).width())
            });
        }
    }
    let src = VideoFrame::black(1920, 1080).unwrap();
    let mut dst = VideoFrame::black(1920, 1080).unwrap();
    group.bench_function("floor_copy_1080p", |b| {
        b.iter(|| {
            for p in 0..3 {
                dst.plane_mut(p).copy_from_slice(src.plane(p));
            }
            dst.width()
        })
    });
    group.finish();
}

criterion_group!(benches, compose);
criterion_main!(benches);
