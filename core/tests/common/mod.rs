//! Shared helpers for the integration tests.
#![allow(dead_code)]

use madang::codec::{H264Config, H264Decoder, H264Encoder};
use madang::media::{EncodedFrame, TestPattern, VideoFrame};

/// Frame interval at 30 fps, µs.
pub const FRAME_US: u64 = 33_333;

/// Encodes `frames` frames of the test pattern with `config`; returns sources and units.
pub fn encode_pattern(config: H264Config, frames: u32) -> (Vec<VideoFrame>, Vec<EncodedFrame>) {
    let mut pattern = TestPattern::new(config.width, config.height).unwrap();
    let mut encoder = H264Encoder::new(config).unwrap();
    let mut sources = Vec::new();
    let mut units = Vec::new();
    for i in 0..frames {
        let frame = pattern.next_frame(i as u64 * FRAME_US);
        units.push(
            encoder
                .encode(&frame)
                .unwrap()
                .expect("frame skipping is off"),
        );
        sources.push(frame);
    }
    (sources, units)
}

/// Decodes every unit with madang's decoder; each must give a picture.
pub fn decode_all(units: &[EncodedFrame]) -> Vec<VideoFrame> {
    let mut decoder = H264Decoder::new().unwrap();
    units
        .iter()
        .map(|u| {
            decoder
                .decode_frame(u)
                .unwrap()
                .expect("one picture per access unit")
        })
        .collect()
}

/// Mean of a slice.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Path of a program on PATH, if any.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// A fresh scratch directory for one test.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("madang-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
