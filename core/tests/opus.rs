//! Opus encoder and decoder: fidelity, concealment, FEC.

use madang::codec::{CodecError, OpusConfig, OpusDecoder, OpusEncoder};
use madang::media::{AudioFrame, Channels, EncodedFrame, SpeechSource, Tone};

fn speech(channels: Channels, frames: usize) -> Vec<AudioFrame> {
    let mut src = SpeechSource::new(channels, 20).unwrap();
    (0..frames).map(|_| src.next_frame()).collect()
}

fn encode(config: OpusConfig, frames: &[AudioFrame]) -> Vec<EncodedFrame> {
    let mut enc = OpusEncoder::new(config).unwrap();
    frames
        .iter()
        .map(|f| enc.encode(f).unwrap().expect("DTX off"))
        .collect()
}

/// Best normalised cross-correlation of `b` against `a` over delays 0..max_delay, and the delay.
fn best_correlation(a: &[i16], b: &[i16], max_delay: usize) -> (f64, usize) {
    let n = a.len() - max_delay;
    (0..max_delay)
        .map(|d| {
            let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
            for i in 0..n {
                let (x, y) = (a[i] as f64, b[i + d] as f64);
                ab += x * y;
                aa += x * x;
                bb += y * y;
            }
            (ab / (aa * bb).sqrt().max(1.0), d)
        })
        .fold((f64::MIN, 0), |best, c| if c.0 > best.0 { c } else { best })
}

fn snr_db(reference: &[i16], test: &[i16]) -> f64 {
    let signal: f64 = reference.iter().map(|&v| (v as f64).powi(2)).sum();
    let noise: f64 = reference
        .iter()
        .zip(test)
        .map(|(&r, &t)| (r as f64 - t as f64).powi(2))
        .sum();
    10.0 * (signal / noise.max(1.0)).log10()
}

#[test]
fn speech_round_trip_keeps_the_waveform() {
    for channels in [Channels::Mono, Channels::Stereo] {
        let source = speech(channels, 250);
        let packets = encode(OpusConfig::new(channels), &source);
        let mut dec = OpusDecoder::new(channels).unwrap();
        let decoded: Vec<i16> = packets
            .iter()
            .flat_map(|p| dec.decode(&p.data, p.pts_us).unwrap().into_samples())
            .collect();
        let original: Vec<i16> = source.iter().flat_map(|f| f.samples().to_vec()).collect();
        assert_eq!(decoded.len(), original.len());
        // Compare the left (or only) channel after finding the codec delay.
        let left = |s: &[i16]| {
            s.iter()
                .step_by(channels.count())
                .copied()
                .collect::<Vec<i16>>()
        };
        let (a, b) = (left(&original), left(&decoded));
        let (corr, delay) = best_correlation(&a, &b, 1000);
        let snr = snr_db(&a[..a.len() - delay], &b[delay..]);
        println!("{channels:?}: correlation {corr:.4} at delay {delay} samples, SNR {snr:.1} dB");
        assert!(corr > 0.95, "correlation {corr}");
        assert!(snr > 10.0, "SNR {snr} dB");
        let kbps = packets.iter().map(|p| p.data.len()).sum::<usize>() as f64 * 8.0 / 5.0 / 1000.0;
        println!("{channels:?}: {kbps:.1} kbps");
    }
}

#[test]
fn concealment_fills_a_gap_with_the_right_length() {
    let source = speech(Channels::Stereo, 20);
    let packets = encode(OpusConfig::new(Channels::Stereo), &source);
    let mut dec = OpusDecoder::new(Channels::Stereo).unwrap();
    for p in &packets[..10] {
        dec.decode(&p.data, p.pts_us).unwrap();
    }
    let filled = dec.conceal(960, 200_000).unwrap();
    assert_eq!(filled.samples_per_channel(), 960);
    assert_eq!(filled.samples().len(), 1920);
    assert_eq!(filled.pts_us(), 200_000);
    let filled = dec.conceal(480, 220_000).unwrap();
    assert_eq!(filled.samples_per_channel(), 480);
    assert!(matches!(
        dec.conceal(100, 0),
        Err(CodecError::UnsupportedPacketDuration { samples: 100 })
    ));
}

#[test]
fn fec_recovers_lost_packets_better_than_concealment() {
    let source = speech(Channels::Mono, 500);
    let config = OpusConfig::new(Channels::Mono)
        .fec(true)
        .expected_loss_pct(20);
    let packets = encode(config, &source);
    // Reference: every packet decoded.
    let mut reference_dec = OpusDecoder::new(Channels::Mono).unwrap();
    let reference: Vec<Vec<i16>> = packets
        .iter()
        .map(|p| {
            reference_dec
                .decode(&p.data, p.pts_us)
                .unwrap()
                .into_samples()
        })
        .collect();
    let lost = |i: usize| i % 7 == 3;
    let (mut fec_dec, mut plc_dec) = (
        OpusDecoder::new(Channels::Mono).unwrap(),
        OpusDecoder::new(Channels::Mono).unwrap(),
    );
    let (mut fec_err, mut plc_err, mut energy) = (0f64, 0f64, 0f64);
    for (i, p) in packets.iter().enumerate().take(packets.len() - 1) {
        if lost(i) {
            let with_fec = fec_dec.decode_fec(&packets[i + 1].data, p.pts_us).unwrap();
            let with_plc = plc_dec.conceal(960, p.pts_us).unwrap();
            for ((&r, &f), &c) in reference[i]
                .iter()
                .zip(with_fec.samples())
                .zip(with_plc.samples())
            {
                fec_err += (r as f64 - f as f64).powi(2);
                plc_err += (r as f64 - c as f64).powi(2);
                energy += (r as f64).powi(2);
            }
        } else {
            fec_dec.decode(&p.data, p.pts_us).unwrap();
            plc_dec.decode(&p.data, p.pts_us).unwrap();
        }
    }
    let fec_snr = 10.0 * (energy / fec_err).log10();
    let plc_snr = 10.0 * (energy / plc_err).log10();
    println!("lost packets: FEC SNR {fec_snr:.1} dB, PLC SNR {plc_snr:.1} dB");
    assert!(
        fec_snr > plc_snr + 3.0,
        "FEC {fec_snr:.1} dB vs PLC {plc_snr:.1} dB"
    );
}

#[test]
fn dtx_sends_nothing_in_silence() {
    let mut enc = OpusEncoder::new(OpusConfig::new(Channels::Mono).dtx(true)).unwrap();
    let silence = AudioFrame::silence(Channels::Mono, 20, 0).unwrap();
    // libopus needs a few hundred ms of silence before it enters DTX, then sends a small
    // keep-alive packet every 400 ms.
    for _ in 0..20 {
        enc.encode(&silence).unwrap();
    }
    let sent = (0..100)
        .filter(|_| enc.encode(&silence).unwrap().is_some())
        .count();
    assert!(sent <= 10, "{sent} of 100 silent frames sent");
    let mut tone = Tone::new(300.0, 0.5, Channels::Mono, 20).unwrap();
    let sent = (0..20)
        .filter(|_| enc.encode(&tone.next_frame()).unwrap().is_some())
        .count();
    assert_eq!(sent, 20);
}

#[test]
fn bad_input_gives_errors() {
    let mut dec = OpusDecoder::new(Channels::Mono).unwrap();
    assert!(matches!(dec.decode(&[], 0), Err(CodecError::EmptyInput)));
    // TOC byte for a 60 ms CELT frame: a valid packet of a duration madang does not use.
    assert!(dec.decode(&[0xfb, 0, 0], 0).is_err());
    assert!(matches!(
        OpusEncoder::new(OpusConfig::new(Channels::Mono).bitrate_kbps(1)),
        Err(CodecError::InvalidBitrate { .. })
    ));
    assert!(matches!(
        OpusEncoder::new(OpusConfig::new(Channels::Mono).complexity(11)),
        Err(CodecError::InvalidOpusSetting)
    ));
    let mut enc = OpusEncoder::new(OpusConfig::new(Channels::Mono)).unwrap();
    let stereo = AudioFrame::silence(Channels::Stereo, 20, 0).unwrap();
    assert!(matches!(
        enc.encode(&stereo),
        Err(CodecError::ChannelMismatch)
    ));
}
