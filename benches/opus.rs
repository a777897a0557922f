//! Opus encode and decode, mono and stereo: madang against the opus crate used directly.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use madang::codec::{OpusConfig, OpusDecoder, OpusEncoder};
use madang::media::Channels;
use madang_benches::speech_frames;

fn raw_encoder(channels: Channels, config: &OpusConfig) -> opus::Encoder {
    let ch = match channels {
        Channels::Mono => opus::Channels::Mono,
        Channels::Stereo => opus::Channels::Stereo,
    };
    let mut e = opus::Encoder::new(48_000, ch, opus::Application::Voip).unwrap();
    e.set_bitrate(opus::Bitrate::Bits(config.bitrate_bps as i32))
        .unwrap();
    e.set_complexity(config.complexity as i32).unwrap();
    e.set_inband_fec(config.fec).unwrap();
    e.set_packet_loss_perc(config.expected_loss_pct as i32)
        .unwrap();
    e
}

fn opus_codec(c: &mut Criterion) {
    for channels in [Channels::Mono, Channels::Stereo] {
        let audio = speech_frames(channels, 250);
        let config = OpusConfig::new(channels);
        let name = format!("opus/{}ch", channels.count());
        let mut group = c.benchmark_group(&name);
        // One element = one 20 ms frame, so elements/s ÷ 50 is the real-time factor.
        group.throughput(Throughput::Elements(1));

        let mut ours = OpusEncoder::new(config.clone()).unwrap();
        let mut i = 0;
        group.bench_function("encode_madang", |b| {
            b.iter(|| {
                i += 1;
                ours.encode(&audio[i % audio.len()]).unwrap()
            })
        });
        let mut raw = raw_encoder(channels, &config);
        let mut out = vec![0u8; 1500];
        let mut j = 0;
        group.bench_function("encode_raw_libopus", |b| {
            b.iter(|| {
                j += 1;
                raw.encode(audio[j % audio.len()].samples(), &mut out)
                    .unwrap()
            })
        });

        let mut enc = OpusEncoder::new(config.clone()).unwrap();
        let packets: Vec<_> = audio
            .iter()
            .map(|f| enc.encode(f).unwrap().unwrap().data)
            .collect();
        let mut ours_dec = OpusDecoder::new(channels).unwrap();
        let mut k = 0;
        group.bench_function("decode_madang", |b| {
            b.iter(|| {
                k += 1;
                ours_dec.decode(&packets[k % packets.len()], 0).unwrap()
            })
        });
        let ch = match channels {
            Channels::Mono => opus::Channels::Mono,
            Channels::Stereo => opus::Channels::Stereo,
        };
        let mut raw_dec = opus::Decoder::new(48_000, ch).unwrap();
        let mut pcm = vec![0i16; 1920];
        let mut l = 0;
        group.bench_function("decode_raw_libopus", |b| {
            b.iter(|| {
                l += 1;
                raw_dec
                    .decode(&packets[l % packets.len()], &mut pcm, false)
                    .unwrap()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, opus_codec);
criterion_main!(benches);
