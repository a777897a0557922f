//! Recording on simulated time: a publisher's real H.264 and Opus packets, as the server
//! receives them, into the recorder; its files written by the server's own writer; read
//! back by ffprobe and decoded by ffmpeg, the pictures' stamps checked in order. And a
//! simulcast publisher in a simulated conference, recorded at its largest layer flowing
//! while its uplink narrows and widens again.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{scratch_dir, which};
use madang::codec::rtp::packetize_h264;
use madang::codec::{H264Config, H264Encoder, OpusConfig, OpusEncoder};
use madang::media::read_stamp;
use madang::media::{Channels, SpeechSource, TestPattern, VideoFrame};
use madang::netsim::{Direction, LinkConfig};
use madang::room::RoomEvent;
use madang::sfu::forward::InHeader;
use madang::sfu::record::RecordConfig;
use madang::sfu::record::{FileWriter, RecordOutput, RecordStats, Recorder};
use madang::signal::TrackKind;
use madang::sim::{JoinOptions, World};

const WIDTH: u32 = 320;
const HEIGHT: u32 = 180;
const FPS: u64 = 15;
/// One-way delay of every packet.
const DELAY: Duration = Duration::from_millis(40);

/// What a publisher sent and what became of it.
struct Run {
    /// The recording's files.
    files: Vec<PathBuf>,
    /// Pictures encoded.
    sent: u32,
    /// Pictures one of whose packets the network dropped, by stamp.
    hit: BTreeSet<u32>,
    stats: RecordStats,
    /// Every output, in order (for the crash test).
    outputs: Vec<RecordOutput>,
}

/// A publisher in room `hall` as `jongno` for `seconds`: 320×180 at 15 fps and speech in
/// 20 ms Opus packets, each arriving 40 ms after capture. `lose(n)` drops the n-th video
/// packet; `swap` delivers every 7th video packet after the one behind it (reordering).
/// Keyframes the recorder asks for are made at the next picture.
fn publish(name: &str, seconds: u64, lose: impl Fn(u64) -> bool, swap: bool) -> Run {
    let dir = scratch_dir(name);
    let t0 = Instant::now();
    let mut recorder = Recorder::new(&dir);
    recorder.start("hall", t0, 1_800_000_000);
    let mut pattern = TestPattern::new(WIDTH, HEIGHT).unwrap();
    let mut encoder = H264Encoder::new(
        H264Config::new(WIDTH, HEIGHT)
            .bitrate_kbps(300)
            .max_fps(FPS as f32),
    )
    .unwrap();
    let mut speech = SpeechSource::new(Channels::Mono, 20).unwrap();
    let mut opus = OpusEncoder::new(OpusConfig::new(Channels::Mono)).unwrap();
    let (mut video_seq, mut audio_seq, mut sent_packets) = (0u16, 0u16, 0u64);
    let mut hit = BTreeSet::new();
    let mut held: Option<(InHeader, Bytes)> = None;
    let mut outputs = Vec::new();
    let end_ms = seconds * 1000;
    let mut next_tick = 0;
    let frame_ms = 1000.0 / FPS as f64;
    let mut frame = 0u64;
    for ms in (0..end_ms).step_by(20) {
        let now = t0 + Duration::from_millis(ms) + DELAY;
        // Audio: one packet each 20 ms.
        let packet = opus.encode(&speech.next_frame()).unwrap();
        if let Some(packet) = packet {
            let header = InHeader {
                ssrc: 2,
                seq: audio_seq,
                timestamp: (ms * 48) as u32,
                marker: false,
                keyframe_start: true,
                parameter_sets: false,
            };
            audio_seq = audio_seq.wrapping_add(1);
            let payload = Bytes::from(packet.data.to_vec());
            recorder.input(
                now,
                "hall",
                "jongno/microphone",
                TrackKind::Audio,
                &header,
                &payload,
            );
        }
        // Video: the pictures captured by now.
        while (frame as f64 * frame_ms) as u64 <= ms {
            let capture_us = (frame as f64 * frame_ms * 1000.0) as u64;
            let seq = pattern.next_seq();
            let unit = encoder
                .encode(&pattern.next_frame(capture_us))
                .unwrap()
                .unwrap();
            let payloads = packetize_h264(&unit.data, 1200);
            let n = payloads.len();
            for (i, payload) in payloads.into_iter().enumerate() {
                let header = InHeader {
                    ssrc: 1,
                    seq: video_seq,
                    timestamp: (capture_us * 9 / 100) as u32,
                    marker: i + 1 == n,
                    keyframe_start: false,
                    parameter_sets: false,
                };
                video_seq = video_seq.wrapping_add(1);
                sent_packets += 1;
                if lose(sent_packets) {
                    hit.insert(seq);
                    continue;
                }
                let mut deliver = |h: &InHeader, p: &Bytes| {
                    recorder.input(now, "hall", "jongno/camera", TrackKind::Video, h, p)
                };
                if swap && sent_packets.is_multiple_of(7) && held.is_none() {
                    held = Some((header, payload));
                    continue;
                }
                deliver(&header, &payload);
                if let Some((h, p)) = held.take() {
                    deliver(&h, &p);
                }
            }
            frame += 1;
        }
        if ms >= next_tick {
            next_tick += 100;
            recorder.tick(now, |_, _| true);
            if !recorder.keyframes_due(now).is_empty() {
                encoder.request_keyframe();
            }
        }
        while let Some(o) = recorder.poll_output() {
            outputs.push(o);
        }
    }
    recorder.stop("hall", t0 + Duration::from_millis(end_ms) + DELAY);
    while let Some(o) = recorder.poll_output() {
        outputs.push(o);
    }
    let files = write(outputs.clone());
    Run {
        files,
        sent: frame as u32,
        hit,
        stats: recorder.stats(),
        outputs,
    }
}

/// Carries out a recorder's outputs with the server's writer: the files, in order.
fn write(outputs: Vec<RecordOutput>) -> Vec<PathBuf> {
    let mut writer = FileWriter::new();
    let mut files = Vec::new();
    for o in outputs {
        if let Some(path) = writer.apply(o).unwrap()
            && !files.contains(&path)
        {
            files.push(path);
        }
    }
    files
}

/// The lines ffprobe prints for `entries` of `file` (CSV without names), of the streams
/// `streams` selects (all without).
fn ffprobe(file: &Path, streams: Option<&str>, entries: &str) -> Vec<String> {
    let ffprobe = which("ffprobe").expect("ffprobe not on PATH: scripts/test.sh installs ffmpeg");
    let mut cmd = Command::new(ffprobe);
    cmd.args(["-v", "error", "-show_entries", entries]);
    if let Some(streams) = streams {
        cmd.args(["-select_streams", streams]);
    }
    let out = cmd.args(["-of", "csv=p=0"]).arg(file).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_owned())
        .collect()
}

/// `(codec, duration seconds)` of each stream ffprobe finds.
fn probe(file: &Path) -> Vec<(String, f64)> {
    ffprobe(file, None, "stream=codec_name,duration")
        .iter()
        .map(|l| {
            let (codec, duration) = l.split_once(',').unwrap();
            (codec.to_owned(), duration.parse().unwrap_or(0.0))
        })
        .collect()
}

/// Decodes a file's pictures with ffmpeg (`strict`: any error fails it): the stamps read
/// from them, in order, and ffmpeg's complaints.
fn decoded_stamps(file: &Path, strict: bool) -> (Vec<u32>, String) {
    let ffmpeg = which("ffmpeg").expect("ffmpeg not on PATH: scripts/test.sh installs it");
    let raw = file.with_extension("yuv");
    let mut cmd = Command::new(ffmpeg);
    cmd.args(["-v", "error", "-nostdin"]);
    if strict {
        cmd.args(["-xerror", "-err_detect", "explode"]);
    }
    let out = cmd
        .arg("-i")
        .arg(file)
        .args([
            "-map",
            "0:v",
            "-fps_mode",
            "passthrough",
            "-enc_time_base:v",
            "-1",
        ])
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-y"])
        .arg(&raw)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "ffmpeg failed on {}: {stderr}",
        file.display()
    );
    let bytes = std::fs::read(&raw).unwrap();
    let size = (WIDTH * HEIGHT) as usize;
    let stamps = bytes
        .chunks_exact(size * 3 / 2)
        .map(|p| {
            let (y, uv) = p.split_at(size);
            let (u, v) = uv.split_at(size / 4);
            let w = WIDTH as usize;
            let frame =
                VideoFrame::from_planes(WIDTH, HEIGHT, [y, u, v], [w, w / 2, w / 2], 0).unwrap();
            read_stamp(&frame)
                .expect("every recorded picture carries its stamp")
                .seq
        })
        .collect();
    (stamps, stderr)
}

/// Seconds of audio ffmpeg decodes from a file.
fn decoded_audio_seconds(file: &Path) -> f64 {
    let ffmpeg = which("ffmpeg").unwrap();
    let pcm = file.with_extension("pcm");
    let out = Command::new(ffmpeg)
        .args(["-v", "error", "-nostdin", "-xerror", "-i"])
        .arg(file)
        .args([
            "-map", "0:a", "-f", "s16le", "-ac", "1", "-ar", "48000", "-y",
        ])
        .arg(&pcm)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::metadata(&pcm).unwrap().len() as f64 / 2.0 / 48_000.0
}

#[test]
fn a_recording_plays_in_ffmpeg_with_every_picture_in_order() {
    let run = publish("record-clean", 10, |_| false, true);
    assert_eq!(
        run.files.len(),
        1,
        "one file for camera and microphone: {:?}",
        run.files
    );
    let file = &run.files[0];
    assert!(file.starts_with(std::env::temp_dir()));
    assert!(
        file.to_string_lossy()
            .contains("/hall/jongno-20270115T080000Z"),
        "{file:?}"
    );
    let streams = probe(file);
    let codecs: Vec<&str> = streams.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(codecs, ["h264", "opus"]);
    for (codec, duration) in &streams {
        assert!(
            (duration - 10.0).abs() <= 0.5,
            "{codec}: {duration} s of 10"
        );
    }
    let (stamps, stderr) = decoded_stamps(file, true);
    assert!(stderr.trim().is_empty(), "ffmpeg reported: {stderr}");
    // Reordered packets and all: every picture, in order.
    assert_eq!(stamps, (0..run.sent).collect::<Vec<_>>());
    assert_eq!(run.stats.pictures, u64::from(run.sent));
    let audio = decoded_audio_seconds(file);
    assert!((audio - 10.0).abs() <= 0.3, "{audio} s of audio");
    assert!(
        run.stats.fragments >= 5,
        "fragments of at most 2 s: {:?}",
        run.stats
    );
}

#[test]
fn pictures_the_network_lost_leave_gaps_only_there_and_the_rest_decodes() {
    // Three video packets lost for good (no retransmission reaches the recorder).
    let lost = [40u64, 200, 330];
    let run = publish("record-lossy", 10, |n| lost.contains(&n), false);
    assert_eq!(run.hit.len(), lost.len());
    let file = &run.files[0];
    let (stamps, stderr) = decoded_stamps(file, true);
    assert!(stderr.trim().is_empty(), "ffmpeg reported: {stderr}");
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "in order: {stamps:?}"
    );
    // Each gap begins at a picture that lost a packet (then runs to the keyframe asked for).
    let kept: BTreeSet<u32> = stamps.iter().copied().collect();
    for seq in 0..run.sent {
        if !kept.contains(&seq) && (seq == 0 || kept.contains(&(seq - 1))) {
            assert!(
                run.hit.contains(&seq),
                "picture {seq} missing, but nothing of it was lost"
            );
        }
    }
    // A loss costs the wait for a repair that never comes (4 round trips of the assumed
    // 100 ms, and 30 ms) and the keyframe asked for then: within a second of pictures.
    let missing = run.sent as usize - stamps.len();
    assert!(
        missing <= lost.len() * FPS as usize,
        "{missing} of {} pictures missing after {} losses",
        run.sent,
        lost.len()
    );
    assert!(run.stats.pictures_dropped >= lost.len() as u64);
    println!(
        "lossy: {} of {} pictures recorded, {} given up",
        stamps.len(),
        run.sent,
        run.stats.pictures_dropped
    );
}

#[test]
fn a_file_cut_short_by_a_crash_plays_up_to_its_last_whole_fragment() {
    let run = publish("record-crash", 8, |_| false, false);
    // What a killed server left: the init segment and fragments, the last one half written,
    // and no close (the duration never filled in).
    let appends = run
        .outputs
        .iter()
        .filter(|o| matches!(o, RecordOutput::Append { .. }))
        .count();
    let keep = appends - 2;
    let mut bytes = Vec::new();
    let mut whole = 0;
    for o in &run.outputs {
        match o {
            RecordOutput::Open { init, .. } => bytes.extend_from_slice(init),
            RecordOutput::Append { bytes: b, .. } if whole < keep => {
                bytes.extend_from_slice(b);
                whole += 1;
            }
            RecordOutput::Append { bytes: b, .. } if whole == keep => {
                bytes.extend_from_slice(&b[..b.len() / 2]);
                whole += 1;
            }
            _ => {}
        }
    }
    let cut = run.files[0].with_file_name("cut.mp4");
    std::fs::write(&cut, &bytes).unwrap();
    let streams = probe(&cut);
    assert_eq!(streams.len(), 2, "{streams:?}");
    let (stamps, _) = decoded_stamps(&cut, false);
    let (all, _) = decoded_stamps(&run.files[0], true);
    // Every picture of the whole fragments, in order from the first.
    assert_eq!(stamps[..], all[..stamps.len()]);
    let lost = all.len() - stamps.len();
    let per_fragment = all.len() / appends;
    assert!(
        lost <= 2 * per_fragment + 2,
        "{lost} pictures lost of {}, fragments of ~{per_fragment}",
        all.len()
    );
    println!(
        "cut: {} of {} pictures play ({} fragments whole of {appends})",
        stamps.len(),
        all.len(),
        keep
    );
}

/// The picture width of every frame of a file's video, in order, as ffprobe decodes them.
fn frame_widths(file: &Path) -> Vec<u32> {
    ffprobe(file, Some("v"), "frame=width")
        .iter()
        .filter_map(|l| l.parse().ok())
        .collect()
}

#[test]
fn a_simulcast_publisher_is_recorded_at_its_largest_layer_flowing() {
    let dir = scratch_dir("record-simulcast");
    let mut config = World::engine_config();
    config.record = Some(RecordConfig {
        dir: dir.clone(),
        rooms: Vec::new(),
    });
    let mut world = World::new("delay=30ms".parse().unwrap(), 5, config);
    let publisher = JoinOptions {
        video: Some((640, 360, 15, 600)),
        simulcast: true,
        audio: true,
        ..JoinOptions::default()
    };
    world.join("p1", publisher).unwrap();
    let listener = JoinOptions {
        video: None,
        ..JoinOptions::default()
    };
    world.join("p2", listener).unwrap();
    let mut ignore = |_: usize, _: RoomEvent, _: Duration| {};
    let wide = LinkConfig {
        delay: Duration::from_millis(30),
        ..LinkConfig::default()
    };
    world.run_for(Duration::from_secs(6), &mut ignore).unwrap();
    // The publisher's uplink narrows: it pauses its full-size layer, the recording goes on
    // with the half-size one; the link widens again and the full size comes back.
    let narrow = LinkConfig {
        rate_bps: Some(300_000),
        queue_bytes: 30_000,
        ..wide.clone()
    };
    world.set_link(0, Direction::Up, narrow);
    world.run_for(Duration::from_secs(10), &mut ignore).unwrap();
    world.set_link(0, Direction::Up, wide);
    world.run_for(Duration::from_secs(20), &mut ignore).unwrap();
    world.leave(0);
    world.run_for(Duration::from_secs(1), &mut ignore).unwrap();
    let files = write(world.take_recording());
    // p2 speaks: its own file, sound only.
    assert_eq!(files.len(), 2, "{files:?}");
    let file = files
        .iter()
        .find(|f| f.file_name().unwrap().to_string_lossy().starts_with("p1-"))
        .unwrap();
    let widths = frame_widths(file);
    // Runs of one width, in order: (width, pictures).
    let mut runs: Vec<(u32, usize)> = Vec::new();
    for w in &widths {
        match runs.last_mut() {
            Some((last, n)) if last == w => *n += 1,
            _ => runs.push((*w, 1)),
        }
    }
    println!("recorded layers: {runs:?}");
    // The full size from the first second on (before its size is known, the small layer
    // is the largest known).
    let before_full: usize = runs.iter().take_while(|r| r.0 != 640).map(|r| r.1).sum();
    assert!(before_full <= 15, "the full size first: {runs:?}");
    assert!(
        runs.iter().any(|r| r.0 < 640),
        "the smaller layer while the uplink was narrow"
    );
    assert_eq!(
        runs.last().map(|r| r.0),
        Some(640),
        "the full size again at the end"
    );
    // Every picture decodes, across the switches.
    let ffmpeg = which("ffmpeg").unwrap();
    let out = Command::new(ffmpeg)
        .args([
            "-v",
            "error",
            "-nostdin",
            "-xerror",
            "-err_detect",
            "explode",
            "-i",
        ])
        .arg(&files[0])
        .args([
            "-map",
            "0:v",
            "-fps_mode",
            "passthrough",
            "-enc_time_base:v",
            "-1",
        ])
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
    // About 15 pictures a second from the first to the leave (37 s; switches wait for
    // keyframes, a narrow link loses some).
    assert!(widths.len() >= 15 * 30, "{} pictures", widths.len());
}
