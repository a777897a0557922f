//! The recorder's naming and file policy, on simulated time.

use super::*;
use crate::codec::rtp::packetize_h264;
use crate::codec::{H264Config, H264Encoder};
use crate::media::TestPattern;

#[test]
fn file_names_stay_in_their_directory_and_say_when() {
    assert_eq!(stem_of("jongno/camera"), ("jongno".into(), true));
    assert_eq!(stem_of("jongno/microphone"), ("jongno".into(), true));
    assert_eq!(stem_of("jongno/screen"), ("jongno-screen".into(), false));
    assert_eq!(stem_of(GRID_TRACK), ("grid".into(), false));
    assert_eq!(stem_of("../../etc/camera"), ("_._.._etc".into(), true));
    assert_eq!(file_safe("종로구"), "___");
    assert_eq!(file_safe(""), "_");
    assert_eq!(utc_stamp(0), "19700101T000000Z");
    assert_eq!(utc_stamp(1_800_000_000), "20270115T080000Z");
    assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
}

fn audio_packet(recorder: &mut Recorder, now: Instant, n: u32) {
    audio_packet_of(recorder, now, n, 2, 0);
}

/// Audio packet `n` of the stream `ssrc` whose timestamps start at `base`.
fn audio_packet_of(recorder: &mut Recorder, now: Instant, n: u32, ssrc: u32, base: u32) {
    let header = InHeader {
        ssrc,
        seq: n as u16,
        timestamp: base.wrapping_add(n * 960),
        marker: false,
        keyframe_start: true,
        parameter_sets: false,
    };
    // CELT, 20 ms, mono: a table-of-contents byte and some bytes.
    let payload = Bytes::from_static(&[0xf8, 1, 2, 3]);
    recorder.input(
        now,
        "hall",
        "jongno/microphone",
        TrackKind::Audio,
        &header,
        &payload,
    );
}

fn opened(outputs: &[RecordOutput]) -> Vec<&PathBuf> {
    outputs
        .iter()
        .filter_map(|o| match o {
            RecordOutput::Open { path, .. } => Some(path),
            _ => None,
        })
        .collect()
}

fn drain(recorder: &mut Recorder) -> Vec<RecordOutput> {
    std::iter::from_fn(|| recorder.poll_output()).collect()
}

#[test]
fn a_pair_waits_for_its_camera_then_opens_without_it_and_a_late_camera_starts_part_two() {
    let t0 = Instant::now();
    let mut recorder = Recorder::new("/rec");
    recorder.start("hall", t0, 1_800_000_000);
    // Sound alone: the file waits for the camera for OPEN_WAIT.
    for n in 0..99 {
        audio_packet(
            &mut recorder,
            t0 + Duration::from_millis(20 * u64::from(n)),
            n,
        );
    }
    recorder.tick(t0 + Duration::from_millis(1990), |_, _| true);
    assert!(opened(&drain(&mut recorder)).is_empty());
    for n in 99..150 {
        audio_packet(
            &mut recorder,
            t0 + Duration::from_millis(20 * u64::from(n)),
            n,
        );
    }
    let out = drain(&mut recorder);
    assert_eq!(
        opened(&out),
        [&PathBuf::from("/rec/hall/jongno-20270115T080000Z.mp4")]
    );

    // The camera comes at 3 s: the sound-only part closes, the next takes both.
    let mut encoder = H264Encoder::new(H264Config::new(160, 96)).unwrap();
    let mut pattern = TestPattern::new(160, 96).unwrap();
    let at = t0 + Duration::from_secs(3);
    let unit = encoder.encode(&pattern.next_frame(0)).unwrap().unwrap();
    let payloads = packetize_h264(&unit.data, 1200);
    let n = payloads.len();
    for (i, payload) in payloads.into_iter().enumerate() {
        let header = InHeader {
            ssrc: 1,
            seq: i as u16,
            timestamp: 0,
            marker: i + 1 == n,
            keyframe_start: i == 0,
            parameter_sets: i == 0,
        };
        recorder.input(
            at,
            "hall",
            "jongno/camera",
            TrackKind::Video,
            &header,
            &payload,
        );
    }
    audio_packet(&mut recorder, at, 150);
    let out = drain(&mut recorder);
    let closed = out
        .iter()
        .filter_map(|o| match o {
            RecordOutput::Close { duration_ms, .. } => Some(*duration_ms),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(closed.len(), 1, "{out:?}");
    // The sound of the first 2.8 s (the last 200 ms still in the reorder window then).
    assert!((2_780..=3_000).contains(&closed[0]), "{closed:?}");
    assert_eq!(
        opened(&out),
        [&PathBuf::from(
            "/rec/hall/jongno-20270115T080003Z-part2.mp4"
        )]
    );

    // The tracks end: the file closes with what it holds.
    recorder.tick(at + Duration::from_millis(500), |_, _| false);
    let out = drain(&mut recorder);
    assert!(
        matches!(out.last(), Some(RecordOutput::Close { .. })),
        "{out:?}"
    );
    assert_eq!(recorder.stats().files, 2);
    assert_eq!(recorder.stats().pictures, 1);
}

#[test]
fn a_restarted_stream_goes_on_where_it_arrives_not_where_its_timestamps_say() {
    let t0 = Instant::now();
    let mut recorder = Recorder::new("/rec");
    recorder.start("hall", t0, 1_800_000_000);
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    // 3 s of sound, then the publisher's connection restarts: a new SSRC whose timestamps
    // start 10 hours further on; 2 s more.
    for n in 0..150 {
        audio_packet_of(&mut recorder, at(20 * u64::from(n)), n, 2, 0);
    }
    for n in 0..100 {
        let t = 3_000 + 20 * u64::from(n);
        audio_packet_of(&mut recorder, at(t), n, 9, 48_000 * 36_000);
    }
    recorder.stop("hall", at(5_000));
    let out = drain(&mut recorder);
    let durations: Vec<u64> = out
        .iter()
        .filter_map(|o| match o {
            RecordOutput::Close { duration_ms, .. } => Some(*duration_ms),
            _ => None,
        })
        .collect();
    assert_eq!(durations.len(), 1, "one file: {out:?}");
    assert!((4_900..=5_100).contains(&durations[0]), "{durations:?}");
    assert_eq!(recorder.stats().audio_packets, 250);
}
