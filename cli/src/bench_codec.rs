//! `madang bench codec`: codec throughput measured in one process on the same frames.
//!
//! H.264: madang's encoder against the openh264 crate used directly with the same settings,
//! alternating in rounds so both see the same machine load; x264 (through ffmpeg, when on
//! PATH) as an outside reference. Opus: madang against the opus crate used directly.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use madang::codec::{H264Config, H264Decoder, H264Encoder, OpusConfig, OpusDecoder, OpusEncoder};
use madang::media::quality::psnr_y;
use madang::media::{AudioFrame, Channels, SpeechSource, TestPattern, VideoFrame};
use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, Profile, RateControlMode, UsageType,
};
use openh264::formats::YUVSlices;
use serde::Serialize;

use crate::CliResult;
use crate::size::parse_size;

/// Arguments of `madang bench codec`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Seconds of measurement per codec and size (split into alternating rounds).
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Picture sizes to measure.
    #[arg(long, value_delimiter = ',', value_parser = parse_size,
          default_value = "640x360,1280x720,1920x1080")]
    sizes: Vec<(u32, u32)>,
    /// H.264 target bitrate in kbit/s.
    #[arg(long, default_value_t = 1500)]
    bitrate: u32,
    /// Skip x264 even when ffmpeg is on PATH.
    #[arg(long)]
    no_x264: bool,
}

#[derive(Debug, Serialize)]
struct H264Row {
    size: String,
    madang_fps: f64,
    raw_fps: f64,
    ratio: f64,
    psnr_y: f64,
    kbps: f64,
    decode_fps: f64,
    x264_fps: Option<f64>,
    x264_kbps: Option<f64>,
    x264_psnr_y: Option<f64>,
}

#[derive(Debug, Serialize)]
struct OpusRow {
    channels: usize,
    madang_rtf: f64,
    raw_rtf: f64,
    ratio: f64,
    madang_decode_rtf: f64,
    raw_decode_rtf: f64,
    kbps: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    h264: Vec<H264Row>,
    opus: Vec<OpusRow>,
    asm: Option<bool>,
    threads: u16,
    bitrate_kbps: u32,
    fps: u32,
    seconds_per_measurement: f64,
}

/// Distinct frames per size; the encoders cycle through them (the stamps keep counting).
const FRAMES: u32 = 90;
const ROUNDS: u32 = 4;

/// Encodes frames from `next` for `budget` and returns (frames, bytes).
fn timed<F: FnMut(usize) -> usize>(
    budget: Duration,
    start_index: &mut usize,
    mut encode_one: F,
) -> (u64, u64, Duration) {
    let start = Instant::now();
    let (mut frames, mut bytes) = (0u64, 0u64);
    while start.elapsed() < budget {
        bytes += encode_one(*start_index) as u64;
        *start_index += 1;
        frames += 1;
    }
    (frames, bytes, start.elapsed())
}

/// The same settings as madang's encoder, spelled with the openh264 crate's own API. The level
/// is left at OpenH264's default: it labels the stream and does not change how it is coded.
fn raw_config(config: &H264Config) -> EncoderConfig {
    EncoderConfig::new()
        .bitrate(BitRate::from_bps(config.bitrate_bps))
        .max_frame_rate(FrameRate::from_hz(config.max_fps))
        .rate_control_mode(RateControlMode::Bitrate)
        .usage_type(UsageType::CameraVideoRealTime)
        .profile(Profile::Baseline)
        .skip_frames(false)
        .num_threads(1)
}

fn bench_h264(
    args: &Args,
    (w, h): (u32, u32),
) -> Result<H264Row, Box<dyn std::error::Error + Send + Sync>> {
    let pattern = TestPattern::new(w, h)?;
    let frames: Vec<VideoFrame> = (0..FRAMES)
        .map(|i| pattern.frame(i, i as u64 * 33_333))
        .collect();
    let config = H264Config::new(w, h)
        .bitrate_kbps(args.bitrate)
        .max_fps(30.0)
        .threads(1);

    // Quality and bitrate: one pass over the frames with madang's encoder and decoder.
    let mut encoder = H264Encoder::new(config.clone())?;
    let mut decoder = H264Decoder::new()?;
    let (mut psnr_sum, mut bytes) = (0.0, 0usize);
    for f in &frames {
        let unit = encoder.encode(f)?.ok_or("encoder skipped a frame")?;
        bytes += unit.data.len();
        let decoded = decoder
            .decode(&unit.data)?
            .ok_or("decoder gave no picture")?;
        psnr_sum += psnr_y(f, &decoded).ok_or("size mismatch")?;
    }
    let psnr = psnr_sum / frames.len() as f64;
    let kbps = bytes as f64 * 8.0 / (frames.len() as f64 / 30.0) / 1000.0;

    // Decode speed on that stream.
    let mut stream = Vec::new();
    let mut enc2 = H264Encoder::new(config.clone())?;
    for f in &frames {
        stream.push(enc2.encode(f)?.ok_or("encoder skipped a frame")?.data);
    }

    // Throughput, alternating rounds.
    let budget = Duration::from_secs_f64(args.seconds / ROUNDS as f64);
    let mut ours = H264Encoder::new(config.clone())?;
    let mut raw = Encoder::with_api_config(OpenH264API::from_source(), raw_config(&config))?;
    let mut quiet = openh264_sys2::WELS_LOG_QUIET;
    // SAFETY: the trace level is the one option OpenH264 takes before initialisation; it reads
    // a 32-bit level through a pointer that outlives the call. Silences a start-up warning that
    // madang's encoder silences the same way, so both do the same work.
    unsafe {
        raw.raw_api().set_option(
            openh264_sys2::ENCODER_OPTION_TRACE_LEVEL,
            (&raw mut quiet).cast(),
        );
    }
    let (mut ours_frames, mut ours_time, mut raw_frames, mut raw_time) =
        (0u64, Duration::ZERO, 0u64, Duration::ZERO);
    let (mut ours_i, mut raw_i) = (0usize, 0usize);
    let (mut dec_frames, mut dec_time) = (0u64, Duration::ZERO);
    for _ in 0..ROUNDS {
        let (n, _, t) = timed(budget, &mut ours_i, |i| {
            ours.encode(&frames[i % frames.len()])
                .ok()
                .flatten()
                .map_or(0, |u| u.data.len())
        });
        ours_frames += n;
        ours_time += t;
        let (n, _, t) = timed(budget, &mut raw_i, |i| {
            let f = &frames[i % frames.len()];
            let [sy, su, sv] = f.strides();
            let yuv = YUVSlices::new(
                (f.y(), f.u(), f.v()),
                (w as usize, h as usize),
                (sy, su, sv),
            );
            raw.encode(&yuv).map_or(0, |s| s.to_vec().len())
        });
        raw_frames += n;
        raw_time += t;
        // Decoding restarts at the stream's IDR each pass.
        let start = Instant::now();
        let mut d = H264Decoder::new()?;
        for unit in &stream {
            d.decode(unit)?;
        }
        dec_frames += stream.len() as u64;
        dec_time += start.elapsed();
    }
    let madang_fps = ours_frames as f64 / ours_time.as_secs_f64();
    let raw_fps = raw_frames as f64 / raw_time.as_secs_f64();
    let mut row = H264Row {
        size: format!("{w}x{h}"),
        madang_fps,
        raw_fps,
        ratio: madang_fps / raw_fps,
        psnr_y: psnr,
        kbps,
        decode_fps: dec_frames as f64 / dec_time.as_secs_f64(),
        x264_fps: None,
        x264_kbps: None,
        x264_psnr_y: None,
    };
    if let Some(ffmpeg) = find_program("ffmpeg").filter(|_| !args.no_x264) {
        let (fps, kbps, psnr) = bench_x264(&ffmpeg, &frames, (w, h), args)?;
        row.x264_fps = Some(fps);
        row.x264_kbps = Some(kbps);
        row.x264_psnr_y = psnr;
    }
    Ok(row)
}

fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// x264 `ultrafast`, `zerolatency`, one thread, through ffmpeg on the same frames (looped to
/// fill the time budget). Returns (fps, kbps, PSNR-Y of the first pass decoded by madang).
fn bench_x264(
    ffmpeg: &Path,
    frames: &[VideoFrame],
    (w, h): (u32, u32),
    args: &Args,
) -> Result<(f64, f64, Option<f64>), Box<dyn std::error::Error + Send + Sync>> {
    let dir = std::env::temp_dir().join(format!("madang-bench-x264-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("frames.yuv");
    let output = dir.join("x264.h264");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&input)?);
        let mut buf = Vec::new();
        for f in frames {
            buf.clear();
            f.write_packed(&mut buf);
            file.write_all(&buf)?;
        }
        file.flush()?;
    }
    // Calibrate the loop count with a short run so x264 runs for about the budget.
    let run = |loops: u32| -> Result<Duration, Box<dyn std::error::Error + Send + Sync>> {
        let start = Instant::now();
        let out = Command::new(ffmpeg)
            .args([
                "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p",
            ])
            .args([
                "-s",
                &format!("{w}x{h}"),
                "-r",
                "30",
                "-stream_loop",
                &loops.to_string(),
                "-i",
            ])
            .arg(&input)
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
                "-threads",
                "1",
            ])
            .args(["-b:v", &format!("{}k", args.bitrate), "-f", "h264"])
            .arg(&output)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "ffmpeg/x264 failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(start.elapsed())
    };
    let first = run(0)?;
    let single_pass_bytes = std::fs::metadata(&output)?.len();
    let psnr = {
        let stream = std::fs::read(&output)?;
        let mut decoder = H264Decoder::new()?;
        let mut psnrs = Vec::new();
        // Split the Annex-B stream into access units at each slice's first NAL: x264 writes one
        // slice per frame here, preceded by SPS/PPS/SEI on the first.
        let mut au_start = 0;
        let mut index = 0;
        let positions: Vec<usize> = stream
            .windows(4)
            .enumerate()
            .filter(|(_, w)| w[..3] == [0, 0, 1] && matches!(w[3] & 0x1f, 1 | 5))
            .map(|(i, _)| {
                if i > 0 && stream[i - 1] == 0 {
                    i - 1
                } else {
                    i
                }
            })
            .collect();
        for &p in positions
            .iter()
            .skip(1)
            .chain(std::iter::once(&stream.len()))
        {
            if let Ok(Some(pic)) = decoder.decode(&stream[au_start..p]) {
                if let Some(src) = frames.get(index) {
                    psnrs.extend(psnr_y(src, &pic));
                }
                index += 1;
            }
            au_start = p;
        }
        (psnrs.len() == frames.len()).then(|| psnrs.iter().sum::<f64>() / psnrs.len() as f64)
    };
    let loops = ((args.seconds / first.as_secs_f64()).ceil() as u32).clamp(1, 200) - 1;
    let elapsed = if loops > 0 { run(loops)? } else { first };
    let total_frames = frames.len() as f64 * (loops + 1) as f64;
    let kbps = single_pass_bytes as f64 * 8.0 / (frames.len() as f64 / 30.0) / 1000.0;
    let _ = std::fs::remove_dir_all(&dir);
    // Wall time includes ffmpeg's start-up and raw-video reading, which favours madang a
    // little; at these frame counts it is a few percent at most.
    Ok((total_frames / elapsed.as_secs_f64(), kbps, psnr))
}

fn bench_opus(
    args: &Args,
    channels: Channels,
) -> Result<OpusRow, Box<dyn std::error::Error + Send + Sync>> {
    let mut source = SpeechSource::new(channels, 20)?;
    let audio: Vec<AudioFrame> = (0..500).map(|_| source.next_frame()).collect(); // 10 s
    let audio_secs = 10.0;
    let config = OpusConfig::new(channels);
    let budget = Duration::from_secs_f64(args.seconds / ROUNDS as f64 / 2.0);
    let raw_new = || -> Result<opus::Encoder, opus::Error> {
        let ch = match channels {
            Channels::Mono => opus::Channels::Mono,
            Channels::Stereo => opus::Channels::Stereo,
        };
        let mut e = opus::Encoder::new(48_000, ch, opus::Application::Voip)?;
        e.set_bitrate(opus::Bitrate::Bits(config.bitrate_bps as i32))?;
        e.set_complexity(config.complexity as i32)?;
        e.set_inband_fec(config.fec)?;
        e.set_dtx(config.dtx)?;
        e.set_packet_loss_perc(config.expected_loss_pct as i32)?;
        Ok(e)
    };
    let mut ours = OpusEncoder::new(config.clone())?;
    let mut raw = raw_new()?;
    let mut packets = Vec::new();
    let mut out = vec![0u8; 1500];
    let (mut ours_t, mut ours_n, mut raw_t, mut raw_n) =
        (Duration::ZERO, 0u64, Duration::ZERO, 0u64);
    let (mut oi, mut ri) = (0usize, 0usize);
    for _ in 0..ROUNDS {
        let (n, _, t) = timed(budget, &mut oi, |i| {
            ours.encode(&audio[i % audio.len()])
                .ok()
                .flatten()
                .map_or(0, |p| {
                    if packets.len() < audio.len() {
                        packets.push(p.data.clone());
                    }
                    p.data.len()
                })
        });
        ours_n += n;
        ours_t += t;
        let (n, _, t) = timed(budget, &mut ri, |i| {
            raw.encode(audio[i % audio.len()].samples(), &mut out)
                .unwrap_or(0)
        });
        raw_n += n;
        raw_t += t;
    }
    let kbps = packets.iter().map(|p| p.len()).sum::<usize>() as f64 * 8.0
        / (packets.len() as f64 * 0.02)
        / 1000.0;
    // Decoding.
    let ch = match channels {
        Channels::Mono => opus::Channels::Mono,
        Channels::Stereo => opus::Channels::Stereo,
    };
    let mut ours_dec = OpusDecoder::new(channels)?;
    let mut raw_dec = opus::Decoder::new(48_000, ch)?;
    let mut pcm = vec![0i16; 1920];
    let (mut od_t, mut od_n, mut rd_t, mut rd_n) = (Duration::ZERO, 0u64, Duration::ZERO, 0u64);
    let (mut odi, mut rdi) = (0usize, 0usize);
    for _ in 0..ROUNDS {
        let (n, _, t) = timed(budget, &mut odi, |i| {
            ours_dec
                .decode(&packets[i % packets.len()], 0)
                .map_or(0, |f| f.samples().len())
        });
        od_n += n;
        od_t += t;
        let (n, _, t) = timed(budget, &mut rdi, |i| {
            raw_dec
                .decode(&packets[i % packets.len()], &mut pcm, false)
                .unwrap_or(0)
        });
        rd_n += n;
        rd_t += t;
    }
    let rtf = |frames: u64, t: Duration| {
        frames as f64 * (audio_secs / audio.len() as f64) / t.as_secs_f64()
    };
    let (madang_rtf, raw_rtf) = (rtf(ours_n, ours_t), rtf(raw_n, raw_t));
    Ok(OpusRow {
        channels: channels.count(),
        madang_rtf,
        raw_rtf,
        ratio: madang_rtf / raw_rtf,
        madang_decode_rtf: rtf(od_n, od_t),
        raw_decode_rtf: rtf(rd_n, rd_t),
        kbps,
    })
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

/// Runs the benchmark and prints the table or JSON.
pub fn run(args: Args) -> CliResult {
    if !(args.seconds > 0.0 && args.seconds <= 600.0) {
        return Err("--seconds must be within (0, 600]".into());
    }
    let asm = crate::asm::openh264_has_asm();
    let mut h264 = Vec::new();
    for &size in &args.sizes {
        eprintln!(
            "bench codec: H.264 {}x{} ({} s per encoder)…",
            size.0, size.1, args.seconds
        );
        h264.push(bench_h264(&args, size)?);
    }
    let mut opus_rows = Vec::new();
    for channels in [Channels::Mono, Channels::Stereo] {
        eprintln!("bench codec: Opus {} channel(s)…", channels.count());
        opus_rows.push(bench_opus(&args, channels)?);
    }
    let report = Report {
        h264,
        opus: opus_rows,
        asm,
        threads: 1,
        bitrate_kbps: args.bitrate,
        fps: 30,
        seconds_per_measurement: args.seconds,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "H.264 encode, one thread, {} kbps target, 30 fps, test pattern (OpenH264 assembly: {})",
        args.bitrate,
        match asm {
            Some(true) => "yes",
            Some(false) => "NO - install nasm and rebuild openh264-sys2",
            None => "unknown",
        }
    );
    println!(
        "{:>10} {:>11} {:>9} {:>7} {:>8} {:>8} {:>11} {:>9} {:>9} {:>10}",
        "size",
        "madang fps",
        "raw fps",
        "ratio",
        "PSNR-Y",
        "kbps",
        "decode fps",
        "x264 fps",
        "x264 kbps",
        "x264 PSNR"
    );
    for r in &report.h264 {
        println!(
            "{:>10} {:>11.1} {:>9.1} {:>7.3} {:>8.2} {:>8.0} {:>11.1} {:>9} {:>9} {:>10}",
            r.size,
            r.madang_fps,
            r.raw_fps,
            r.ratio,
            r.psnr_y,
            r.kbps,
            r.decode_fps,
            opt(r.x264_fps, 1),
            opt(r.x264_kbps, 0),
            opt(r.x264_psnr_y, 2)
        );
    }
    println!();
    println!(
        "Opus, speech-like source, 20 ms frames (real-time factor: seconds of audio per CPU second)"
    );
    println!(
        "{:>9} {:>12} {:>9} {:>7} {:>13} {:>10} {:>6}",
        "channels", "madang enc", "raw enc", "ratio", "madang dec", "raw dec", "kbps"
    );
    for r in &report.opus {
        println!(
            "{:>9} {:>11.0}x {:>8.0}x {:>7.3} {:>12.0}x {:>9.0}x {:>6.1}",
            r.channels,
            r.madang_rtf,
            r.raw_rtf,
            r.ratio,
            r.madang_decode_rtf,
            r.raw_decode_rtf,
            r.kbps
        );
    }
    Ok(())
}
