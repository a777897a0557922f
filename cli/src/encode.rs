//! `madang encode`: test pattern or Y4M file → H.264 Annex-B file.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use madang::codec::{H264Config, H264Encoder};
use madang::media::{TestPattern, VideoFrame, Y4mReader};

use crate::CliResult;
use crate::size::parse_size;

/// Yields the frames to encode, then `None`.
type FrameSource = Box<dyn FnMut() -> Result<Option<VideoFrame>, madang::media::MediaError>>;

/// Arguments of `madang encode`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["pattern", "input"])))]
pub struct Args {
    /// Encode the stamped test pattern at this size, e.g. 1280x720.
    #[arg(long, value_parser = parse_size, value_name = "WxH")]
    pattern: Option<(u32, u32)>,
    /// Encode frames from this Y4M (4:2:0) file.
    #[arg(long = "in", value_name = "FILE.y4m")]
    input: Option<PathBuf>,
    /// Number of frames (with --in: at most this many; default all).
    #[arg(long)]
    frames: Option<u32>,
    /// Target bitrate in kbit/s.
    #[arg(long, default_value_t = 1500)]
    bitrate: u32,
    /// Frame rate of the pattern (a Y4M file brings its own).
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Frames between periodic keyframes (0: only the first).
    #[arg(long, default_value_t = 0)]
    keyframe_interval: u32,
    /// Output file (H.264 Annex-B elementary stream).
    #[arg(long, value_name = "FILE.h264")]
    out: PathBuf,
}

/// Runs the command.
pub fn run(args: Args) -> CliResult {
    let (mut next, (w, h), fps): (FrameSource, _, f64) = match (&args.pattern, &args.input) {
        (Some((w, h)), _) => {
            let (w, h) = (*w, *h);
            if args.fps == 0 || args.fps > 240 {
                return Err("--fps must be within 1..=240".into());
            }
            let mut pattern = TestPattern::new(w, h)?;
            let limit = args.frames.unwrap_or(300);
            let frame_us = 1_000_000 / args.fps as u64;
            let mut n = 0u32;
            let next = move || {
                if n >= limit {
                    return Ok(None);
                }
                n += 1;
                Ok(Some(pattern.next_frame((n - 1) as u64 * frame_us)))
            };
            (Box::new(next), (w, h), args.fps as f64)
        }
        (None, Some(path)) => {
            let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut reader = Y4mReader::new(file)?;
            let (w, h) = (reader.width(), reader.height());
            let (num, den) = reader.frame_rate();
            let limit = args.frames.unwrap_or(u32::MAX);
            let mut n = 0u32;
            let next = move || {
                if n >= limit {
                    return Ok(None);
                }
                n += 1;
                reader.read_frame()
            };
            (Box::new(next), (w, h), num as f64 / den as f64)
        }
        // clap's group makes one of them required.
        (None, None) => unreachable!("clap requires --pattern or --in"),
    };
    let config = H264Config::new(w, h)
        .bitrate_kbps(args.bitrate)
        .max_fps(fps.clamp(1.0, 240.0) as f32)
        .keyframe_interval(args.keyframe_interval);
    let mut encoder = H264Encoder::new(config)?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?,
    );
    let start = Instant::now();
    let (mut frames, mut bytes, mut keyframes) = (0u64, 0u64, 0u64);
    while let Some(frame) = next()? {
        if let Some(unit) = encoder.encode(&frame)? {
            out.write_all(&unit.data)?;
            bytes += unit.data.len() as u64;
            keyframes += unit.keyframe as u64;
        }
        frames += 1;
        if frames % 100 == 0 {
            eprint!("\rencoded {frames} frames");
        }
    }
    out.flush()?;
    let secs = start.elapsed().as_secs_f64();
    if frames >= 100 {
        eprintln!();
    }
    let kbps = if frames > 0 {
        bytes as f64 * 8.0 / (frames as f64 / fps) / 1000.0
    } else {
        0.0
    };
    println!(
        "{}: {frames} frames {w}x{h} @ {fps:.2} fps, {bytes} bytes, {kbps:.0} kbps, {keyframes} keyframe(s), encoded at {:.1} fps",
        args.out.display(),
        frames as f64 / secs.max(1e-9)
    );
    Ok(())
}
