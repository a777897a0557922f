//! ffmpeg as an independent H.264 decoder: it must decode madang's bitstream without a single
//! error, and its pictures must match madang's own decoder.

mod common;

use std::process::Command;

use common::{FRAME_US, mean, scratch_dir, which};
use madang::codec::{H264Config, H264Decoder, H264Encoder};
use madang::media::quality::psnr_y;
use madang::media::{TestPattern, VideoFrame};

fn ffmpeg_decodes_like_madang(width: u32, height: u32, kbps: u32) {
    let ffmpeg = which("ffmpeg")
        .expect("ffmpeg not on PATH: scripts/test.sh installs it (apt-get install ffmpeg)");
    let dir = scratch_dir(&format!("ffmpeg-{width}x{height}"));
    let mut pattern = TestPattern::new(width, height).unwrap();
    let mut encoder = H264Encoder::new(H264Config::new(width, height).bitrate_kbps(kbps)).unwrap();
    let mut decoder = H264Decoder::new().unwrap();
    let (mut stream, mut sources, mut ours) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..60u32 {
        // Exercise the run-time paths too: a requested keyframe and a bitrate change.
        if i == 20 {
            encoder.request_keyframe();
        }
        if i == 40 {
            encoder.set_bitrate(kbps * 1000 / 2).unwrap();
        }
        let frame = pattern.next_frame(i as u64 * FRAME_US);
        let unit = encoder.encode(&frame).unwrap().unwrap();
        stream.extend_from_slice(&unit.data);
        ours.push(decoder.decode(&unit.data).unwrap().unwrap());
        sources.push(frame);
    }
    let input = dir.join("madang.h264");
    let output = dir.join("ffmpeg.yuv");
    std::fs::write(&input, &stream).unwrap();
    let result = Command::new(ffmpeg)
        .args([
            "-v",
            "error",
            "-nostdin",
            "-xerror",
            "-err_detect",
            "explode",
            "-f",
            "h264",
            "-i",
        ])
        .arg(&input)
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-y"])
        .arg(&output)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "ffmpeg failed: {stderr}");
    assert!(stderr.trim().is_empty(), "ffmpeg reported: {stderr}");
    let raw = std::fs::read(&output).unwrap();
    let frame_len = (width * height * 3 / 2) as usize;
    assert_eq!(
        raw.len(),
        frame_len * 60,
        "ffmpeg decoded a different number of frames"
    );
    let (mut psnr_ffmpeg, mut psnr_madang) = (Vec::new(), Vec::new());
    for (i, chunk) in raw.chunks_exact(frame_len).enumerate() {
        let theirs = VideoFrame::from_packed(width, height, chunk.to_vec(), 0).unwrap();
        psnr_ffmpeg.push(psnr_y(&sources[i], &theirs).unwrap());
        psnr_madang.push(psnr_y(&sources[i], &ours[i]).unwrap());
        // H.264 decoding is bit-exact: both decoders must produce the same picture.
        assert_eq!(
            theirs.y(),
            ours[i].y(),
            "frame {i}: luma differs between decoders"
        );
        assert_eq!(
            theirs.u(),
            ours[i].u(),
            "frame {i}: chroma differs between decoders"
        );
    }
    let (a, b) = (mean(&psnr_ffmpeg), mean(&psnr_madang));
    println!("{width}x{height}: PSNR-Y ffmpeg {a:.3} dB, madang {b:.3} dB");
    assert!((a - b).abs() < 0.001);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn ffmpeg_decodes_720p_without_errors_and_matches_madang() {
    ffmpeg_decodes_like_madang(1280, 720, 1500);
}

#[test]
fn ffmpeg_decodes_360p_without_errors_and_matches_madang() {
    ffmpeg_decodes_like_madang(640, 360, 300);
}
