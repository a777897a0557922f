//! `madang bench sfu`: one publisher → N subscribers through a room server running in its own
//! process, over loopback UDP with SRTP. Reports the server's CPU time per forwarded RTP packet
//! (read from /proc, so only the server counts), packets dropped, and memory per subscriber.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use madang::codec::{H264Config, H264Encoder, OpusConfig, OpusEncoder};
use madang::media::{Channels, EncodedFrame, SpeechSource, TestPattern};
use madang::room::{Room, RoomOptions, VideoOptions, level_dbov};
use madang::sfu::DEV_SECRET;
use madang::sfu::token::{Claims, mint, unix_now};
use madang::signal::Role;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::CliResult;
use crate::size::parse_size;

/// Arguments of `madang bench sfu`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Subscriber counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "10,100,520")]
    subscribers: Vec<usize>,
    /// Seconds of measurement per count.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Published picture size.
    #[arg(long, value_parser = parse_size, default_value = "1280x720", value_name = "WxH")]
    size: (u32, u32),
    /// Published H.264 bitrate, kbit/s.
    #[arg(long, default_value_t = 1500)]
    bitrate: u32,
    /// Longest wait for all subscribers to join and receive, seconds.
    #[arg(long, default_value_t = 90)]
    join_timeout: u64,
}

#[derive(Debug, Serialize)]
struct Run {
    subscribers: usize,
    subscribers_receiving: usize,
    seconds: f64,
    packets_in: u64,
    packets_forwarded: u64,
    forwarded_per_second: f64,
    server_cpu_seconds: f64,
    server_cpu_pct: f64,
    us_per_packet: f64,
    dropped_by_server: u64,
    received_by_subscribers: u64,
    lost_before_subscribers: i64,
    server_rss_mb: f64,
    memory_per_subscriber_kb: f64,
    join_seconds: f64,
    /// The talk-back round: a center let in, and for every other viewer the time from its
    /// first picture sent to the first packet of it received, milliseconds.
    talk_back: TalkBack,
}

/// What the talk-back round measured.
#[derive(Debug, Default, Serialize)]
struct TalkBack {
    /// Viewers that received the promoted center within the round's 15 s.
    viewers_reached: usize,
    /// Viewers asked.
    viewers: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    size: String,
    bitrate_kbps: u32,
    runs: Vec<Run>,
}

/// A `madang serve --dev --broadcast-room bench` child process.
struct ServerProcess {
    child: Child,
    signal_url: String,
    http: String,
}

impl ServerProcess {
    fn start() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "serve",
                "--dev",
                "--http",
                "127.0.0.1:0",
                "--udp",
                "127.0.0.1:0",
                "--timeout",
                "120",
                // The senior-center class: viewers keep an idle slot for a center let in.
                "--broadcast-room",
                "bench",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout from the server")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut signal_url = None;
        for line in lines.by_ref().take(10) {
            let line = line?;
            if let Some(url) = line.trim().strip_prefix("signal:") {
                signal_url = Some(url.trim().to_owned());
                break;
            }
        }
        // Keep draining the pipe so the server never blocks on a full stdout.
        std::thread::spawn(move || for _ in lines {});
        let signal_url = signal_url.ok_or("the server did not print its address")?;
        let http = signal_url
            .trim_start_matches("ws://")
            .trim_end_matches("/signal")
            .to_owned();
        Ok(Self {
            child,
            signal_url,
            http,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU seconds of the server process so far.
    fn cpu_seconds(&self) -> Result<f64, Box<dyn std::error::Error + Send + Sync>> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').ok_or("malformed /proc stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = fields.get(11).ok_or("short stat")?.parse::<f64>()?
            + fields.get(12).ok_or("short stat")?.parse::<f64>()?;
        Ok(ticks / clock_ticks())
    }

    /// Resident memory of the server process in KiB.
    fn rss_kb(&self) -> Result<f64, Box<dyn std::error::Error + Send + Sync>> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .ok_or("no VmRSS")?;
        Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
    }

    /// The server's counters from `/metrics`.
    async fn metric(&self, name: &str) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
        let mut stream = tokio::net::TcpStream::connect(&self.http).await?;
        stream
            .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", self.http).as_bytes())
            .await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .ok_or_else(|| format!("metric {name} missing").into())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn token(
    room: &str,
    identity: &str,
    role: Role,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    Ok(mint(
        DEV_SECRET.as_bytes(),
        &Claims::new(room, identity, identity, role, unix_now(), 3600),
    )?)
}

/// Encoded video access units, and Opus packets with their audio levels.
type Media = (Vec<EncodedFrame>, Vec<(EncodedFrame, u8)>);

/// Pre-encodes a loop of video (IDR every second) and speech so the publisher spends no CPU
/// encoding during the measurement.
fn pre_encode(args: &Args) -> Result<Media, Box<dyn std::error::Error + Send + Sync>> {
    let (w, h) = args.size;
    let pattern = TestPattern::new(w, h)?;
    let mut encoder = H264Encoder::new(
        H264Config::new(w, h)
            .bitrate_kbps(args.bitrate)
            .keyframe_interval(30),
    )?;
    let mut video = Vec::new();
    for i in 0..90 {
        video.push(
            encoder
                .encode(&pattern.frame(i, i as u64 * 33_333))?
                .ok_or("skipped frame")?,
        );
    }
    let mut speech = SpeechSource::new(Channels::Mono, 20)?;
    let mut opus = OpusEncoder::new(OpusConfig::new(Channels::Mono))?;
    let mut audio = Vec::new();
    for _ in 0..150 {
        let frame = speech.next_frame();
        let level = level_dbov(frame.samples());
        audio.push((opus.encode(&frame)?.ok_or("no packet")?, level));
    }
    Ok((video, audio))
}

async fn one_run(
    args: &Args,
    n: usize,
    video: &[EncodedFrame],
    audio: &[(EncodedFrame, u8)],
    quiet: bool,
) -> Result<Run, Box<dyn std::error::Error + Send + Sync>> {
    let server = ServerProcess::start()?;
    let room = "bench";
    let publisher_options = RoomOptions {
        video: Some(VideoOptions {
            width: args.size.0,
            height: args.size.1,
            fps: 30,
            bitrate_kbps: args.bitrate,
            simulcast: false,
        }),
        audio: true,
        auto_subscribe: false,
        decode_video: false,
        decode_audio: false,
        ..RoomOptions::default()
    };
    let publisher = Arc::new(
        Room::connect(
            &server.signal_url,
            &token(room, "city-hall", Role::Host)?,
            publisher_options,
        )
        .await?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let pump = {
        let (publisher, stop) = (publisher.clone(), stop.clone());
        let (video, audio) = (video.to_vec(), audio.to_vec());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let start = Instant::now();
            let (mut v, mut a) = (0usize, 0usize);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let t = start.elapsed().as_millis() as usize;
                while v * 1000 / 30 <= t {
                    let _ = publisher
                        .publish_encoded_video(&video[v % video.len()])
                        .await;
                    v += 1;
                }
                while a * 20 <= t {
                    let (packet, level) = &audio[a % audio.len()];
                    let _ = publisher.publish_encoded_audio(packet, *level).await;
                    a += 1;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = server.rss_kb()?;

    let join_start = Instant::now();
    let deadline = join_start + Duration::from_secs(args.join_timeout);
    let mut subscribers = Vec::with_capacity(n);
    for i in 0..n {
        let options = RoomOptions {
            decode_video: false,
            decode_audio: false,
            event_capacity: 16,
            ..RoomOptions::default()
        };
        let t = token(room, &format!("center-{i:03}"), Role::Viewer)?;
        subscribers.push(Room::connect(&server.signal_url, &t, options).await?);
        if !quiet && (i + 1) % 20 == 0 {
            eprint!("\r  {n} subscribers: {} joined", i + 1);
        }
        if Instant::now() > deadline {
            break;
        }
    }
    // Until everyone receives video (or the deadline).
    let receiving = |subs: &[Room]| {
        subs.iter()
            .filter(|s| {
                s.receive_stats()
                    .iter()
                    .any(|t| t.kind == madang::signal::TrackKind::Video && t.packets > 0)
            })
            .count()
    };
    loop {
        let r = receiving(&subscribers);
        if !quiet {
            eprint!(
                "\r  {n} subscribers: {} joined, {r} receiving      ",
                subscribers.len()
            );
        }
        if r == subscribers.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        for s in &mut subscribers {
            while s.try_next_event().is_some() {}
        }
    }
    let join_seconds = join_start.elapsed().as_secs_f64();
    let receiving_count = receiving(&subscribers);

    let received = |subs: &[Room]| -> u64 {
        subs.iter()
            .flat_map(|s| s.receive_stats())
            .map(|t| t.packets)
            .sum()
    };
    let (cpu0, in0, out0, rec0) = (
        server.cpu_seconds()?,
        server.metric("madang_rtp_packets_in_total").await?,
        server.metric("madang_rtp_packets_out_total").await?,
        received(&subscribers),
    );
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < args.seconds {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for s in &mut subscribers {
            while s.try_next_event().is_some() {}
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    // Read in the same order as at the start, so packets in flight at either edge cancel out.
    let (cpu1, in1, out1, rec1) = (
        server.cpu_seconds()?,
        server.metric("madang_rtp_packets_in_total").await?,
        server.metric("madang_rtp_packets_out_total").await?,
        received(&subscribers),
    );
    let rss_after = server.rss_kb()?;
    let talk_back = talk_back_round(&server, room, &publisher, &mut subscribers, quiet).await?;
    stop.store(true, Ordering::Relaxed);
    let _ = pump.await;
    if !quiet {
        eprintln!();
    }
    for s in subscribers {
        s.leave().await;
    }
    let forwarded = out1 - out0;
    let packets_in = in1 - in0;
    let cpu = cpu1 - cpu0;
    let expected = packets_in * receiving_count as u64;
    Ok(Run {
        subscribers: n,
        subscribers_receiving: receiving_count,
        seconds,
        packets_in,
        packets_forwarded: forwarded,
        forwarded_per_second: forwarded as f64 / seconds,
        server_cpu_seconds: cpu,
        server_cpu_pct: 100.0 * cpu / seconds,
        us_per_packet: if forwarded > 0 {
            cpu * 1e6 / forwarded as f64
        } else {
            0.0
        },
        dropped_by_server: expected.saturating_sub(forwarded),
        received_by_subscribers: rec1 - rec0,
        lost_before_subscribers: forwarded as i64 - (rec1 - rec0) as i64,
        server_rss_mb: rss_after / 1024.0,
        memory_per_subscriber_kb: (rss_after - rss_before).max(0.0) / n.max(1) as f64,
        join_seconds,
        talk_back,
    })
}

/// The talk-back round of a run: a center joins as a viewer with a camera (320×180, 15 fps,
/// encoded live so that it answers keyframe requests), the host lets it in, and every
/// subscriber — each receives it without being asked — is timed from the center's first
/// picture to the first packet of it.
async fn talk_back_round(
    server: &ServerProcess,
    room: &str,
    host: &Room,
    subscribers: &mut [Room],
    quiet: bool,
) -> Result<TalkBack, Box<dyn std::error::Error + Send + Sync>> {
    const CENTER: &str = "talk-back";
    let options = RoomOptions {
        video: Some(VideoOptions {
            width: 320,
            height: 180,
            fps: 15,
            bitrate_kbps: 300,
            simulcast: false,
        }),
        auto_subscribe: false,
        decode_video: false,
        decode_audio: false,
        ..RoomOptions::default()
    };
    let center = Room::connect(
        &server.signal_url,
        &token(room, CENTER, Role::Viewer)?,
        options,
    )
    .await?;
    host.promote(CENTER)?;
    let limit = Instant::now() + Duration::from_secs(15);
    while !center.publishing_ready() && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let track = format!("{CENTER}/camera");
    let mut pattern = TestPattern::new(320, 180)?;
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / 15));
    let (start, mut next_look) = (Instant::now(), Instant::now());
    let mut waits: Vec<Option<Duration>> = vec![None; subscribers.len()];
    while Instant::now() < limit && waits.iter().any(Option::is_none) {
        tick.tick().await;
        let frame = pattern.next_frame(start.elapsed().as_micros() as u64);
        center.publish_video(&frame).await?;
        if Instant::now() < next_look {
            continue;
        }
        next_look = Instant::now() + Duration::from_millis(30);
        for (s, wait) in subscribers.iter_mut().zip(&mut waits) {
            while s.try_next_event().is_some() {}
            if wait.is_none()
                && s.receive_stats()
                    .iter()
                    .any(|t| t.track == track && t.packets > 0)
            {
                *wait = Some(start.elapsed());
            }
        }
        if !quiet {
            let reached = waits.iter().flatten().count();
            eprint!(
                "\r  talk-back: {reached} of {} viewers reached      ",
                waits.len()
            );
        }
    }
    center.leave().await;
    let mut ms: Vec<f64> = waits
        .iter()
        .flatten()
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms.get(((ms.len() as f64 * q) as usize).min(ms.len().saturating_sub(1)));
    Ok(TalkBack {
        viewers_reached: ms.len(),
        viewers: waits.len(),
        p50_ms: at(0.5).copied().unwrap_or(f64::NAN),
        p99_ms: at(0.99).copied().unwrap_or(f64::NAN),
        max_ms: ms.last().copied().unwrap_or(f64::NAN),
    })
}

/// Runs the benchmark.
pub fn run(args: Args) -> CliResult {
    if args.subscribers.is_empty() || args.subscribers.iter().any(|&n| n == 0 || n > 2000) {
        return Err("--subscribers takes counts within 1..=2000".into());
    }
    let (video, audio) = pre_encode(&args)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut runs = Vec::new();
    for &n in &args.subscribers {
        if !args.json {
            eprintln!(
                "bench sfu: 1 publisher ({}x{}, {} kbps + Opus) → {n} subscribers…",
                args.size.0, args.size.1, args.bitrate
            );
        }
        runs.push(runtime.block_on(one_run(&args, n, &video, &audio, args.json))?);
    }
    let report = Report {
        size: format!("{}x{}", args.size.0, args.size.1),
        bitrate_kbps: args.bitrate,
        runs,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "SFU forwarding: 1 publisher {} at {} kbps + Opus → N subscribers, loopback UDP, SRTP; server in its own process",
        report.size, report.bitrate_kbps
    );
    println!(
        "{:>6} {:>9} {:>10} {:>10} {:>8} {:>9} {:>9} {:>11} {:>10} {:>9}",
        "subs",
        "receiving",
        "in pkt/s",
        "out pkt/s",
        "CPU %",
        "µs/pkt",
        "dropped",
        "sub. lost",
        "KB/sub",
        "join s"
    );
    for r in &report.runs {
        println!(
            "{:>6} {:>9} {:>10.0} {:>10.0} {:>8.1} {:>9.2} {:>9} {:>11} {:>10.1} {:>9.1}",
            r.subscribers,
            r.subscribers_receiving,
            r.packets_in as f64 / r.seconds,
            r.forwarded_per_second,
            r.server_cpu_pct,
            r.us_per_packet,
            r.dropped_by_server,
            r.lost_before_subscribers,
            r.memory_per_subscriber_kb,
            r.join_seconds
        );
    }
    for r in &report.runs {
        let t = &r.talk_back;
        println!(
            "talk-back with {} subscribers: a center let in reached {} of {} viewers; from its first picture to their first packet of it p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            r.subscribers, t.viewers_reached, t.viewers, t.p50_ms, t.p99_ms, t.max_ms
        );
    }
    println!(
        "targets: ≤ 5 µs per forwarded packet, 0 dropped, ≤ 200 KB per subscriber; talk-back p50 ≤ 300 ms, p99 ≤ 1 s"
    );
    Ok(())
}
