//! H.264 encoder and decoder against each other: quality, stamps, keyframes, bitrate, errors.

mod common;

use common::{FRAME_US, decode_all, encode_pattern, mean};
use madang::codec::nal::{self, NAL_IDR, NAL_PPS, NAL_SPS};
use madang::codec::{CodecError, H264Config, H264Decoder, H264Encoder};
use madang::media::quality::psnr_y;
use madang::media::{TestPattern, VideoFrame, read_stamp};

/// PSNR-Y of each decoded picture against its source.
fn psnrs(sources: &[VideoFrame], decoded: &[VideoFrame]) -> Vec<f64> {
    sources
        .iter()
        .zip(decoded)
        .map(|(s, d)| psnr_y(s, d).unwrap())
        .collect()
}

fn round_trip_psnr(width: u32, height: u32, kbps: u32, frames: u32) -> (f64, f64) {
    let (sources, units) =
        encode_pattern(H264Config::new(width, height).bitrate_kbps(kbps), frames);
    let psnrs = psnrs(&sources, &decode_all(&units));
    let min = psnrs.iter().copied().fold(f64::INFINITY, f64::min);
    (mean(&psnrs), min)
}

#[test]
fn round_trip_720p_at_1500_kbps_keeps_quality() {
    let (avg, min) = round_trip_psnr(1280, 720, 1500, 60);
    println!("720p 1.5 Mbps: mean PSNR-Y {avg:.2} dB, min {min:.2} dB");
    assert!(avg >= 33.0, "mean PSNR-Y {avg:.2} dB below 33");
    assert!(min >= 30.0, "worst frame PSNR-Y {min:.2} dB below 30");
}

#[test]
fn round_trip_360p_at_800_kbps_keeps_quality() {
    let (avg, min) = round_trip_psnr(640, 360, 800, 60);
    println!("360p 800 kbps: mean PSNR-Y {avg:.2} dB, min {min:.2} dB");
    assert!(avg >= 33.0, "mean PSNR-Y {avg:.2} dB below 33");
    assert!(min >= 30.0, "worst frame PSNR-Y {min:.2} dB below 30");
}

#[test]
fn stamps_survive_360p_at_300_kbps() {
    let frames = 150;
    let (sources, units) = encode_pattern(H264Config::new(640, 360).bitrate_kbps(300), frames);
    let decoded = decode_all(&units);
    assert_eq!(decoded.len(), frames as usize);
    for (i, (src, dec)) in sources.iter().zip(&decoded).enumerate() {
        let stamp = read_stamp(dec).unwrap_or_else(|| panic!("frame {i}: stamp unreadable"));
        assert_eq!(stamp.seq, i as u32);
        assert_eq!(stamp.capture_us, src.pts_us() as u64);
        assert_eq!(dec.pts_us(), src.pts_us());
    }
    let bytes: usize = units.iter().map(|u| u.data.len()).sum();
    let kbps = bytes as f64 * 8.0 / (frames as f64 / 30.0) / 1000.0;
    println!("360p at 300 kbps target: {kbps:.0} kbps, 100% stamps");
}

#[test]
fn bitstream_is_constrained_baseline_with_parameter_sets_before_every_idr() {
    let (_, units) = encode_pattern(H264Config::new(640, 360).keyframe_interval(10), 35);
    let mut idrs = 0;
    for (i, unit) in units.iter().enumerate() {
        let types: Vec<u8> = nal::nal_units(&unit.data)
            .filter_map(nal::nal_type)
            .collect();
        assert!(unit.data.starts_with(&[0, 0, 0, 1]) || unit.data.starts_with(&[0, 0, 1]));
        if unit.keyframe {
            idrs += 1;
            let idr_at = types.iter().position(|&t| t == NAL_IDR).expect("IDR slice");
            let sps_at = types
                .iter()
                .position(|&t| t == NAL_SPS)
                .expect("SPS before IDR");
            let pps_at = types
                .iter()
                .position(|&t| t == NAL_PPS)
                .expect("PPS before IDR");
            assert!(sps_at < idr_at && pps_at < idr_at, "frame {i}: {types:?}");
            let [profile, constraints, level] = nal::profile_level_id(&unit.data).unwrap();
            assert_eq!(profile, 0x42, "Baseline profile_idc");
            assert_ne!(
                constraints & 0x40,
                0,
                "constraint_set1_flag makes it Constrained Baseline"
            );
            assert_eq!(level, 31, "level 3.1 as in 42e01f");
        } else {
            assert!(
                !types.contains(&NAL_IDR),
                "frame {i} not flagged keyframe but has IDR"
            );
        }
    }
    assert_eq!(idrs, 4, "IDR at 0, 10, 20, 30");
}

#[test]
fn frame_num_counts_every_reference_picture_and_restarts_at_each_idr() {
    // What the receive buffer relies on to tell a lost picture from lost padding.
    let (_, units) = encode_pattern(H264Config::new(320, 180).keyframe_interval(10), 25);
    let mut bits = None;
    let mut previous: Option<nal::PictureStart> = None;
    for (i, unit) in units.iter().enumerate() {
        // Each NAL unit as a single-NAL-unit RTP payload.
        for u in nal::nal_units(&unit.data) {
            bits = nal::rtp_payload_sps_frame_num_bits(u).or(bits);
        }
        let bits = bits.expect("an SPS came first");
        let start = nal::nal_units(&unit.data)
            .find_map(|u| nal::rtp_payload_picture_start(u, bits))
            .expect("every picture has a first slice");
        assert_eq!(start.idr, unit.keyframe, "picture {i}");
        assert!(
            start.reference,
            "picture {i}: baseline pictures are all references"
        );
        if let Some(p) = previous {
            assert!(
                p.followed_by(&start, bits),
                "picture {i}: {p:?} then {start:?}"
            );
            if i != 10 && i != 20 {
                assert_eq!(
                    start.frame_num,
                    (p.frame_num + 1) % (1 << bits),
                    "picture {i}"
                );
            }
        }
        if i >= 2 && !unit.keyframe && !units[i - 1].keyframe {
            // With a reference picture left out, the next does not follow.
            let before = nal::nal_units(&units[i - 2].data)
                .find_map(|u| nal::rtp_payload_picture_start(u, bits))
                .unwrap();
            assert!(!before.followed_by(&start, bits), "picture {i}");
        }
        previous = Some(start);
    }
}

#[test]
fn two_temporal_layers_make_every_other_picture_one_a_receiver_may_lose() {
    let frames = 60;
    let (sources, units) = encode_pattern(
        H264Config::new(640, 360)
            .bitrate_kbps(800)
            .temporal_layers(2),
        frames,
    );
    assert!(units[0].keyframe, "the first picture is the IDR");
    assert_eq!(units.iter().filter(|u| u.keyframe).count(), 1);
    let mut bits = None;
    let mut starts = Vec::new();
    for unit in &units {
        for u in nal::nal_units(&unit.data) {
            bits = nal::rtp_payload_sps_frame_num_bits(u).or(bits);
        }
        let bits = bits.expect("an SPS came first");
        starts.push(
            nal::nal_units(&unit.data)
                .find_map(|u| nal::rtp_payload_picture_start(u, bits))
                .expect("every picture has a first slice"),
        );
    }
    let bits = bits.unwrap();
    // The IDR, then non-reference and reference pictures in turn.
    for (i, start) in starts.iter().enumerate() {
        assert_eq!(start.reference, i % 2 == 0, "picture {i}: {start:?}");
    }
    // Every picture decodes, and as well as with one layer.
    let decoded = decode_all(&units);
    let psnr = psnrs(&sources, &decoded);
    let (one_layer, _) = round_trip_psnr(640, 360, 800, frames);
    let bytes: usize = units.iter().map(|u| u.data.len()).sum();
    let kbps = bytes as f64 * 8.0 / (frames as f64 / 30.0) / 1000.0;
    println!(
        "two temporal layers, 360p at 800 kbps: mean PSNR-Y {:.2} dB (one layer {one_layer:.2}), \
         {kbps:.0} kbps",
        mean(&psnr)
    );
    assert!(mean(&psnr) >= 33.0, "mean PSNR-Y {:.2} dB", mean(&psnr));
    // Without every non-reference picture the rest still follow each other and decode to
    // the same pictures.
    let mut decoder = H264Decoder::new().unwrap();
    let mut previous: Option<nal::PictureStart> = None;
    for (i, unit) in units.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        if let Some(p) = previous {
            assert!(p.followed_by(&starts[i], bits), "picture {i}");
        }
        previous = Some(starts[i]);
        let picture = decoder
            .decode_frame(unit)
            .unwrap()
            .expect("one picture per access unit");
        assert_eq!(
            psnr_y(&decoded[i], &picture).unwrap(),
            f64::INFINITY,
            "picture {i}"
        );
    }
    // A reference picture left out is seen as such.
    assert!(!starts[0].followed_by(&starts[3], bits));
    assert!(matches!(
        H264Encoder::new(H264Config::new(640, 360).temporal_layers(3)),
        Err(CodecError::InvalidTemporalLayers { layers: 3 })
    ));
}

#[test]
fn requested_keyframe_arrives_on_the_next_frame() {
    let mut pattern = TestPattern::new(640, 360).unwrap();
    let mut encoder = H264Encoder::new(H264Config::new(640, 360)).unwrap();
    for i in 0..20u32 {
        if i == 12 {
            encoder.request_keyframe();
        }
        let unit = encoder
            .encode(&pattern.next_frame(i as u64 * FRAME_US))
            .unwrap()
            .unwrap();
        assert_eq!(unit.keyframe, i == 0 || i == 12, "frame {i}");
        assert_eq!(unit.keyframe, nal::is_keyframe(&unit.data));
    }
}

/// Output bitrate in kbps of `seconds` of 30 fps pattern from `encoder`, starting at `first`.
fn measure_kbps(
    encoder: &mut H264Encoder,
    pattern: &mut TestPattern,
    first: u32,
    seconds: u32,
) -> f64 {
    let mut bytes = 0;
    for i in first..first + seconds * 30 {
        bytes += encoder
            .encode(&pattern.next_frame(i as u64 * FRAME_US))
            .unwrap()
            .unwrap()
            .data
            .len();
    }
    bytes as f64 * 8.0 / seconds as f64 / 1000.0
}

#[test]
fn set_bitrate_takes_effect_while_encoding() {
    let mut pattern = TestPattern::new(640, 360).unwrap();
    let mut encoder = H264Encoder::new(H264Config::new(640, 360).bitrate_kbps(1200)).unwrap();
    let before = measure_kbps(&mut encoder, &mut pattern, 0, 5);
    encoder.set_bitrate(400_000).unwrap();
    let after = measure_kbps(&mut encoder, &mut pattern, 150, 5);
    encoder.set_bitrate(900_000).unwrap();
    let raised = measure_kbps(&mut encoder, &mut pattern, 300, 5);
    println!("1200 kbps target: {before:.0}; 400 target: {after:.0}; 900 target: {raised:.0}");
    assert!((before - 1200.0).abs() <= 240.0, "before {before:.0} kbps");
    assert!(
        (after - 400.0).abs() <= 80.0,
        "after lowering {after:.0} kbps"
    );
    assert!(
        (raised - 900.0).abs() <= 180.0,
        "after raising {raised:.0} kbps"
    );
    assert_eq!(encoder.config().bitrate_bps, 900_000);
    assert!(matches!(
        encoder.set_bitrate(1),
        Err(CodecError::InvalidBitrate { bps: 1 })
    ));
}

#[test]
fn decoder_drops_until_idr_after_corruption_and_recovers() {
    let (sources, units) = encode_pattern(H264Config::new(640, 360).keyframe_interval(30), 45);
    let mut decoder = H264Decoder::new().unwrap();
    // A decoder that joins mid-stream waits for an IDR.
    assert!(matches!(
        decoder.decode(&units[5].data),
        Err(CodecError::NeedKeyframe)
    ));
    assert!(decoder.keyframe_needed());
    for unit in &units[..10] {
        decoder.decode_frame(unit).unwrap().unwrap();
    }
    assert!(!decoder.keyframe_needed());
    // Frame 10 arrives cut in half.
    let cut = &units[10].data[..units[10].data.len() / 2];
    assert!(
        decoder.decode(cut).is_err(),
        "a truncated access unit must not decode cleanly"
    );
    assert!(decoder.keyframe_needed());
    // Until the IDR at 30 nothing is shown...
    for unit in &units[11..30] {
        assert!(matches!(
            decoder.decode(&unit.data),
            Err(CodecError::NeedKeyframe)
        ));
    }
    // ...then pictures are right again.
    for (src, unit) in sources[30..].iter().zip(&units[30..]) {
        let frame = decoder.decode_frame(unit).unwrap().unwrap();
        assert_eq!(
            read_stamp(&frame).unwrap().seq,
            read_stamp(src).unwrap().seq
        );
        assert!(psnr_y(src, &frame).unwrap() > 30.0);
    }
    assert!(!decoder.keyframe_needed());
}

#[test]
fn decoder_rejects_junk_with_errors() {
    let mut decoder = H264Decoder::new().unwrap();
    assert!(matches!(decoder.decode(&[]), Err(CodecError::EmptyInput)));
    assert!(matches!(
        decoder.decode(b"definitely not h264"),
        Err(CodecError::NotAnnexB)
    ));
    assert!(matches!(
        decoder.decode(&[0, 0, 1, 0xff, 1, 2]),
        Err(CodecError::NotAnnexB)
    ));
}

#[test]
fn encoder_refuses_bad_settings_and_frames() {
    assert!(matches!(
        H264Encoder::new(H264Config::new(641, 360)),
        Err(CodecError::Media(_))
    ));
    assert!(matches!(
        H264Encoder::new(H264Config::new(4096, 2160)),
        Err(CodecError::UnsupportedSize { .. })
    ));
    assert!(matches!(
        H264Encoder::new(H264Config::new(640, 360).max_fps(0.0)),
        Err(CodecError::InvalidFrameRate)
    ));
    let mut encoder = H264Encoder::new(H264Config::new(640, 360)).unwrap();
    let small = TestPattern::new(320, 180).unwrap().next_frame(0);
    assert!(matches!(
        encoder.encode(&small),
        Err(CodecError::FrameSizeMismatch { .. })
    ));
}
