//! Recording's cost on the server, per packet: one participant's 640×360 H.264 stream
//! (real packets of a 30 fps, 800 kbit/s encoding, one second of them) and its Opus packets
//! through the recorder — receive buffer, MP4 samples, fragments — as the engine's thread
//! pays it. Writing the files is the writer thread's, not measured here.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use madang::codec::rtp::packetize_h264;
use madang::codec::{H264Config, H264Encoder};
use madang::media::TestPattern;
use madang::sfu::forward::InHeader;
use madang::sfu::record::Recorder;
use madang::signal::TrackKind;

/// One second of a participant: (kind, header, payload, offset from the second's start).
fn one_second() -> Vec<(TrackKind, InHeader, Bytes, Duration)> {
    let mut pattern = TestPattern::new(640, 360).unwrap();
    let mut encoder =
        H264Encoder::new(H264Config::new(640, 360).bitrate_kbps(800).max_fps(30.0)).unwrap();
    let mut packets = Vec::new();
    let mut seq = 0u16;
    for frame in 0..30u64 {
        let unit = encoder
            .encode(&pattern.next_frame(frame * 33_333))
            .unwrap()
            .unwrap();
        let payloads = packetize_h264(&unit.data, 1200);
        let n = payloads.len();
        for (i, payload) in payloads.into_iter().enumerate() {
            let header = InHeader {
                ssrc: 1,
                seq,
                timestamp: (frame * 3000) as u32,
                marker: i + 1 == n,
                keyframe_start: false,
                parameter_sets: false,
            };
            seq = seq.wrapping_add(1);
            packets.push((
                TrackKind::Video,
                header,
                payload,
                Duration::from_micros(frame * 33_333),
            ));
        }
    }
    for k in 0..50u64 {
        let header = InHeader {
            ssrc: 2,
            seq: k as u16,
            timestamp: (k * 960) as u32,
            marker: false,
            keyframe_start: true,
            parameter_sets: false,
        };
        let payload = Bytes::from(vec![0x78; 80]);
        packets.push((
            TrackKind::Audio,
            header,
            payload,
            Duration::from_millis(k * 20),
        ));
    }
    packets.sort_by_key(|p| p.3);
    packets
}

fn record(c: &mut Criterion) {
    let second = one_second();
    let video_packets = second.iter().filter(|p| p.0 == TrackKind::Video).count() as u64;
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(second.len() as u64));
    let t0 = Instant::now();
    let mut recorder = Recorder::new("/unused");
    recorder.start("hall", t0, 0);
    let mut round = 0u64;
    group.bench_function("one participant, 1 s of packets", |b| {
        b.iter(|| {
            // Each round is the next second: sequence numbers and timestamps go on.
            let base = Duration::from_secs(round);
            for (kind, h, payload, at) in &second {
                let mut h = *h;
                match kind {
                    TrackKind::Video => {
                        h.seq = h.seq.wrapping_add((round * video_packets) as u16);
                        h.timestamp = h.timestamp.wrapping_add((round * 90_000) as u32);
                    }
                    TrackKind::Audio => {
                        h.seq = h.seq.wrapping_add((round * 50) as u16);
                        h.timestamp = h.timestamp.wrapping_add((round * 48_000) as u32);
                    }
                }
                let now = t0 + base + *at;
                let track = match kind {
                    TrackKind::Video => "p1/camera",
                    TrackKind::Audio => "p1/microphone",
                };
                recorder.input(now, "hall", track, *kind, &h, payload);
            }
            recorder.tick(t0 + base + Duration::from_secs(1), |_, _| true);
            while recorder.poll_output().is_some() {}
            round += 1;
        })
    });
    group.finish();
    // What was measured is recording: every picture written, in fragments.
    let stats = recorder.stats();
    assert_eq!(stats.pictures, 30 * round, "{stats:?}");
    assert!(stats.fragments >= round - 1, "{stats:?}");
    println!("recorded: {stats:?}");
}

criterion_group!(benches, record);
criterion_main!(benches);
