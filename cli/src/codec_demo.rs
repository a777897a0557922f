//! `madang codec-demo`: the test pattern and speech through madang's codecs and back, written to
//! files, with a report of what arrived: the codecs alone, without the network.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use madang::codec::{H264Config, H264Decoder, H264Encoder, OpusConfig, OpusDecoder, OpusEncoder};
use madang::media::quality::psnr_y;
use madang::media::{Channels, SpeechSource, TestPattern, WavWriter, Y4mWriter, read_stamp};
use serde::Serialize;

use crate::CliResult;
use crate::size::parse_size;

/// Arguments of `madang codec-demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Picture size.
    #[arg(long, value_parser = parse_size, default_value = "640x360", value_name = "WxH")]
    size: (u32, u32),
    /// Seconds of media (30 fps video, 20 ms audio frames).
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// H.264 bitrate in kbit/s.
    #[arg(long, default_value_t = 800)]
    bitrate: u32,
    /// Where the decoded video goes.
    #[arg(long, default_value = "madang-codec-demo.y4m")]
    out: PathBuf,
    /// Where the decoded audio goes.
    #[arg(long, default_value = "madang-codec-demo.wav")]
    audio_out: PathBuf,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct VideoReport {
    size: String,
    frames_sent: u64,
    frames_decoded: u64,
    stamps_read: u64,
    psnr_y_mean: f64,
    psnr_y_min: f64,
    kbps: f64,
    keyframes: u64,
    encode_ms_per_frame: f64,
    decode_ms_per_frame: f64,
    file: String,
}

#[derive(Debug, Serialize)]
struct AudioReport {
    frames_sent: u64,
    frames_decoded: u64,
    kbps: f64,
    file: String,
}

#[derive(Debug, Serialize)]
struct Report {
    seconds: u32,
    video: VideoReport,
    audio: AudioReport,
}

/// Runs the demo.
pub fn run(args: Args) -> CliResult {
    if args.seconds == 0 || args.seconds > 3600 {
        return Err("--seconds must be within 1..=3600".into());
    }
    let (w, h) = args.size;
    let frames = args.seconds as u64 * 30;
    let mut pattern = TestPattern::new(w, h)?;
    let mut encoder = H264Encoder::new(H264Config::new(w, h).bitrate_kbps(args.bitrate))?;
    let mut decoder = H264Decoder::new()?;
    let file =
        std::fs::File::create(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let mut writer = Y4mWriter::new(std::io::BufWriter::new(file), w, h, 30, 1)?;
    let (mut enc_time, mut dec_time) = (Duration::ZERO, Duration::ZERO);
    let (mut bytes, mut keyframes, mut decoded_n, mut stamps) = (0u64, 0u64, 0u64, 0u64);
    let mut psnrs = Vec::new();
    let status_every = 30;
    for i in 0..frames {
        let frame = pattern.next_frame(i * 33_333);
        let t = Instant::now();
        let Some(unit) = encoder.encode(&frame)? else {
            continue;
        };
        enc_time += t.elapsed();
        bytes += unit.data.len() as u64;
        keyframes += unit.keyframe as u64;
        let t = Instant::now();
        let decoded = decoder.decode_frame(&unit)?;
        dec_time += t.elapsed();
        if let Some(d) = decoded {
            decoded_n += 1;
            if read_stamp(&d).is_some_and(|s| s.seq as u64 == i) {
                stamps += 1;
            }
            psnrs.push(psnr_y(&frame, &d).unwrap_or(0.0));
            writer.write_frame(&d)?;
        }
        if !args.json && (i + 1) % status_every == 0 {
            eprint!(
                "\rvideo: {}/{frames} frames, {} decoded, {} stamps read",
                i + 1,
                decoded_n,
                stamps
            );
        }
    }
    writer.finish()?;
    if !args.json {
        eprintln!();
    }

    let mut speech = SpeechSource::new(Channels::Mono, 20)?;
    let mut opus_enc = OpusEncoder::new(OpusConfig::new(Channels::Mono))?;
    let mut opus_dec = OpusDecoder::new(Channels::Mono)?;
    let wav = std::fs::File::create(&args.audio_out)
        .map_err(|e| format!("{}: {e}", args.audio_out.display()))?;
    let mut wav = WavWriter::new(std::io::BufWriter::new(wav), Channels::Mono)?;
    let audio_frames = args.seconds as u64 * 50;
    let (mut audio_bytes, mut audio_decoded) = (0u64, 0u64);
    for _ in 0..audio_frames {
        if let Some(p) = opus_enc.encode(&speech.next_frame())? {
            audio_bytes += p.data.len() as u64;
            wav.write_frame(&opus_dec.decode(&p.data, p.pts_us)?)?;
            audio_decoded += 1;
        }
    }
    wav.finish()?;

    let secs = args.seconds as f64;
    let report = Report {
        seconds: args.seconds,
        video: VideoReport {
            size: format!("{w}x{h}"),
            frames_sent: frames,
            frames_decoded: decoded_n,
            stamps_read: stamps,
            psnr_y_mean: psnrs.iter().sum::<f64>() / psnrs.len().max(1) as f64,
            psnr_y_min: psnrs.iter().copied().fold(f64::INFINITY, f64::min),
            kbps: bytes as f64 * 8.0 / secs / 1000.0,
            keyframes,
            encode_ms_per_frame: enc_time.as_secs_f64() * 1000.0 / frames as f64,
            decode_ms_per_frame: dec_time.as_secs_f64() * 1000.0 / decoded_n.max(1) as f64,
            file: args.out.display().to_string(),
        },
        audio: AudioReport {
            frames_sent: audio_frames,
            frames_decoded: audio_decoded,
            kbps: audio_bytes as f64 * 8.0 / secs / 1000.0,
            file: args.audio_out.display().to_string(),
        },
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let v = &report.video;
    println!(
        "madang codec-demo: {} s of test pattern and speech through H.264 and Opus",
        args.seconds
    );
    println!(
        "  video {}: {} frames sent, {} decoded, {} stamps read back ({:.1} %)",
        v.size,
        v.frames_sent,
        v.frames_decoded,
        v.stamps_read,
        100.0 * v.stamps_read as f64 / v.frames_sent as f64
    );
    println!(
        "         {:.0} kbps (target {}), PSNR-Y mean {:.2} dB, min {:.2} dB, {} keyframe(s)",
        v.kbps, args.bitrate, v.psnr_y_mean, v.psnr_y_min, v.keyframes
    );
    println!(
        "         encode {:.2} ms/frame, decode {:.2} ms/frame → {}",
        v.encode_ms_per_frame, v.decode_ms_per_frame, v.file
    );
    let a = &report.audio;
    println!(
        "  audio: {} Opus frames sent, {} decoded, {:.1} kbps → {}",
        a.frames_sent, a.frames_decoded, a.kbps, a.file
    );
    println!(
        "  play them back with: ffplay {}   ffplay {}",
        v.file, a.file
    );
    Ok(())
}
