//! The SFU's per-packet routing decision without I/O: one incoming video packet offered to the
//! down-tracks of 10, 100 and 520 subscribers (header rewrite, keyframe gating) plus the
//! retransmission-cache insert. The whole-server figure, with SRTP and sockets, is
//! `madang bench sfu`; this isolates the pure policy's share of it.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use madang::sfu::forward::{DownTrack, Forwarding, InHeader, RetransmitCache};

fn forward(c: &mut Criterion) {
    let payload = Bytes::from(vec![0u8; 1100]);
    for n in [10usize, 100, 520] {
        let mut downs: Vec<DownTrack> = (0..n)
            .map(|i| DownTrack::new(1000 + i as u32, 102, true))
            .collect();
        let mut cache = RetransmitCache::new(1024);
        let mut seq = 0u16;
        let mut ts = 0u32;
        let mut group = c.benchmark_group(format!("sfu_forward/{n}"));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function("policy", |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                if seq.is_multiple_of(5) {
                    ts = ts.wrapping_add(3000);
                }
                let h = InHeader {
                    ssrc: 7,
                    seq,
                    timestamp: ts,
                    marker: seq % 5 == 4,
                    keyframe_start: seq % 150 == 1,
                    parameter_sets: seq % 150 == 1,
                };
                let now = std::time::Instant::now();
                cache.insert(now, h, payload.clone());
                let mut sent = 0u32;
                for d in &mut downs {
                    if let Forwarding::Send(out) = d.forward(&h, now) {
                        sent = sent.wrapping_add(out.seq as u32);
                    }
                }
                sent
            })
        });
        group.finish();
    }
}

criterion_group!(benches, forward);
criterion_main!(benches);
