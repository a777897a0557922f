//! Shared inputs of the criterion benchmarks: the same frames `madang bench codec` uses.

use madang::media::{AudioFrame, Channels, SpeechSource, TestPattern, VideoFrame};

/// The sizes every video benchmark covers.
pub const SIZES: [(u32, u32); 3] = [(640, 360), (1280, 720), (1920, 1080)];

/// Target bitrate of the H.264 benchmarks, bits per second.
pub const BITRATE_BPS: u32 = 1_500_000;

/// `n` frames of the stamped test pattern at 30 fps.
pub fn pattern_frames(width: u32, height: u32, n: u32) -> Vec<VideoFrame> {
    let pattern = TestPattern::new(width, height).expect("benchmark sizes are valid");
    (0..n)
        .map(|i| pattern.frame(i, i as u64 * 33_333))
        .collect()
}

/// `n` 20 ms frames of the speech-like source.
pub fn speech_frames(channels: Channels, n: usize) -> Vec<AudioFrame> {
    let mut source = SpeechSource::new(channels, 20).expect("20 ms is valid");
    (0..n).map(|_| source.next_frame()).collect()
}
