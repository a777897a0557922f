//! H.264 decode of a madang-encoded stream (1.5 Mbps test pattern) with madang's decoder.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use madang::codec::{H264Config, H264Decoder, H264Encoder};
use madang_benches::{SIZES, pattern_frames};

fn decode(c: &mut Criterion) {
    for (w, h) in SIZES {
        let frames = pattern_frames(w, h, 60);
        let mut encoder = H264Encoder::new(H264Config::new(w, h)).unwrap();
        let stream: Vec<Bytes> = frames
            .iter()
            .map(|f| encoder.encode(f).unwrap().unwrap().data)
            .collect();
        let mut group = c.benchmark_group(format!("h264_decode/{w}x{h}"));
        group.throughput(Throughput::Elements(stream.len() as u64));
        group.sample_size(10);
        group.bench_function("madang", |b| {
            b.iter(|| {
                // Each pass starts a fresh decoder at the stream's IDR.
                let mut decoder = H264Decoder::new().unwrap();
                for unit in &stream {
                    decoder.decode(unit).unwrap();
                }
                decoder.frames_decoded()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
