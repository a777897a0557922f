//! H.264 encode: madang's encoder against the openh264 crate used directly, same frames and
//! settings (1.5 Mbps, 30 fps, one thread, Constrained Baseline).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use madang::codec::nal::with_parameter_set_id;
use madang::codec::{H264Config, H264Encoder};
use madang_benches::{BITRATE_BPS, SIZES, pattern_frames};
use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, Profile, RateControlMode, UsageType,
};
use openh264::formats::YUVSlices;

fn encode(c: &mut Criterion) {
    for (w, h) in SIZES {
        let frames = pattern_frames(w, h, 60);
        let mut group = c.benchmark_group(format!("h264_encode/{w}x{h}"));
        group.throughput(Throughput::Elements(1));
        group.sample_size(20);

        let mut ours = H264Encoder::new(H264Config::new(w, h).threads(1)).unwrap();
        let mut i = 0;
        group.bench_function("madang", |b| {
            b.iter(|| {
                let unit = ours.encode(&frames[i % frames.len()]).unwrap();
                i += 1;
                unit
            })
        });

        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(BITRATE_BPS))
            .max_frame_rate(FrameRate::from_hz(30.0))
            .rate_control_mode(RateControlMode::Bitrate)
            .usage_type(UsageType::CameraVideoRealTime)
            .profile(Profile::Baseline)
            .skip_frames(false)
            .num_threads(1);
        let mut raw = Encoder::with_api_config(OpenH264API::from_source(), config).unwrap();
        let mut j = 0;
        group.bench_function("raw_openh264", |b| {
            b.iter(|| {
                let f = &frames[j % frames.len()];
                j += 1;
                let [sy, su, sv] = f.strides();
                let yuv = YUVSlices::new(
                    (f.y(), f.u(), f.v()),
                    (w as usize, h as usize),
                    (sy, su, sv),
                );
                raw.encode(&yuv).unwrap().to_vec()
            })
        });
        group.finish();
    }
}

/// Giving a simulcast layer's access units their own parameter-set id (every layer above
/// the smallest goes through it after its encoder): per access unit, keyframes among them.
fn parameter_set_id(c: &mut Criterion) {
    for (w, h) in SIZES {
        let frames = pattern_frames(w, h, 60);
        let mut encoder = H264Encoder::new(H264Config::new(w, h).threads(1)).unwrap();
        let units: Vec<_> = frames
            .iter()
            .filter_map(|f| encoder.encode(f).unwrap())
            .collect();
        let mut group = c.benchmark_group(format!("nal_parameter_set_id/{w}x{h}"));
        group.throughput(Throughput::Elements(1));
        group.sample_size(20);
        let mut i = 0;
        group.bench_function("madang", |b| {
            b.iter(|| {
                let out = with_parameter_set_id(&units[i % units.len()].data, 1);
                i += 1;
                out
            })
        });
        group.finish();
    }
}

criterion_group!(benches, encode, parameter_set_id);
criterion_main!(benches);
