//! `madang bench sfu`: the senior-center class at full scale. One host publishes a 720p
//! simulcast camera (three layers, pre-encoded so that publishing costs little) and Opus
//! into a broadcast room of a room server running in its own process; N viewers, spread
//! over several processes of their own ([`receivers`]), show it in a 640×360 tile and so
//! take the 360p layer. Over loopback UDP with SRTP. Halfway through the measurement a
//! center is let in and publishes, and every other viewer is timed from the center's first
//! packet to its first picture.
//!
//! Reported: the server's CPU time per forwarded RTP packet (from /proc, so only the server
//! counts), packets it held back or could not send, what each viewer received of its layer,
//! memory per viewer, and the talk-back times.

pub mod receivers;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use madang::codec::{H264Config, H264Encoder, OpusConfig, OpusEncoder, VideoLayer, camera_layers};
use madang::media::{Channels, EncodedFrame, SpeechSource, TestPattern};
use madang::room::{Room, RoomOptions, VideoOptions, level_dbov};
use madang::sfu::DEV_SECRET;
use madang::sfu::token::{Claims, mint, unix_now};
use madang::signal::Role;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::CliResult;
use crate::size::parse_size;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The host's identity, and its camera's track.
const HOST: &str = "city-hall";
/// The center let in during the talk-back round.
const CENTER: &str = "talk-back";
/// The tile a viewer shows the host in: the 360p layer is what it needs.
const TILE: (u32, u32) = (640, 360);
/// The tile a viewer shows a center let in.
const CENTER_TILE: (u32, u32) = (320, 180);

/// Arguments of `madang bench sfu`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Viewer counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "100,520")]
    subscribers: Vec<usize>,
    /// Seconds of measurement per count (the talk-back round is at the middle).
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// The host's camera: the top simulcast layer (the others are halves of it).
    #[arg(long, value_parser = parse_size, default_value = "1280x720", value_name = "WxH")]
    size: (u32, u32),
    /// The top layer's H.264 bitrate, kbit/s.
    #[arg(long, default_value_t = 1500)]
    bitrate: u32,
    /// Most viewers in one process.
    #[arg(long, default_value_t = 100)]
    per_process: usize,
    /// Longest wait for all viewers to join and receive their layer, seconds.
    #[arg(long, default_value_t = 120)]
    join_timeout: u64,
    /// Measure a server already running (to profile it, e.g. under `perf` or `valgrind`):
    /// its signal URL. It must be in development mode with a broadcast room `bench`
    /// (`madang serve --dev --broadcast-room bench`); one count only.
    #[arg(long, value_name = "URL", requires = "pid")]
    attach: Option<String>,
    /// The process id of the server of `--attach`, whose CPU time and memory are read.
    #[arg(long)]
    pid: Option<u32>,
}

#[derive(Debug, Serialize)]
struct Run {
    subscribers: usize,
    receiver_processes: usize,
    /// Viewers receiving the host's video at their tile's layer when the measurement began.
    subscribers_receiving: usize,
    seconds: f64,
    packets_in: u64,
    packets_forwarded: u64,
    forwarded_per_second: f64,
    server_cpu_seconds: f64,
    server_cpu_pct: f64,
    us_per_packet: f64,
    /// Packets the server held back from a viewer (its video paused, or stale) or could
    /// not send.
    dropped_by_server: u64,
    /// Packets not sent to a viewer waiting for a keyframe (a layer switch: the allocation
    /// followed a downlink estimate).
    awaiting_keyframe: u64,
    /// Packets of the host's tracks the viewers received over the measurement, and those
    /// they missed (by sequence number).
    received_by_subscribers: u64,
    lost_before_subscribers: u64,
    /// The viewer that received the least of its layer: percent of the packets sent to it.
    worst_viewer_pct: f64,
    /// Viewers that received less than 99.5 % of their layer's packets.
    viewers_below_99_5: usize,
    server_rss_mb: f64,
    memory_per_subscriber_kb: f64,
    join_seconds: f64,
    /// The talk-back round: a center let in, and for every other viewer the time from the
    /// center's first packet to its first picture there, milliseconds.
    talk_back: TalkBack,
}

/// What the talk-back round measured.
#[derive(Debug, Default, Serialize)]
struct TalkBack {
    /// Viewers that had a picture of the promoted center within the round's 15 s.
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
    layers: Vec<String>,
    runs: Vec<Run>,
}

/// A `madang serve --dev --broadcast-room bench` child process.
struct ServerProcess {
    /// The server this benchmark started (none when attached to one, see `--attach`).
    child: Option<std::process::Child>,
    pid: u32,
    signal_url: String,
    http: String,
}

impl ServerProcess {
    fn start() -> Result<Self, BoxError> {
        let mut child = std::process::Command::new(std::env::current_exe()?)
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
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
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
            pid: child.id(),
            child: Some(child),
            signal_url,
            http,
        })
    }

    /// A server already running: its signal URL and process id.
    fn attach(signal_url: &str, pid: u32) -> Self {
        let http = signal_url
            .trim_start_matches("ws://")
            .trim_end_matches("/signal")
            .to_owned();
        Self {
            child: None,
            pid,
            signal_url: signal_url.to_owned(),
            http,
        }
    }

    fn pid(&self) -> u32 {
        self.pid
    }

    /// User + system CPU seconds of the server process so far.
    fn cpu_seconds(&self) -> Result<f64, BoxError> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').ok_or("malformed /proc stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = fields.get(11).ok_or("short stat")?.parse::<f64>()?
            + fields.get(12).ok_or("short stat")?.parse::<f64>()?;
        Ok(ticks / clock_ticks())
    }

    /// Resident memory of the server process in KiB.
    fn rss_kb(&self) -> Result<f64, BoxError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .ok_or("no VmRSS")?;
        Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
    }

    /// The server's counters `names` from one read of `/metrics`, in that order.
    async fn metrics(&self, names: &[&str]) -> Result<Vec<u64>, BoxError> {
        let mut stream = tokio::net::TcpStream::connect(&self.http).await?;
        stream
            .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", self.http).as_bytes())
            .await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        names
            .iter()
            .map(|name| {
                body.lines()
                    .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
                    .ok_or_else(|| format!("metric {name} missing").into())
            })
            .collect()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A development token for the benchmark's room.
pub(crate) fn token(room: &str, identity: &str, role: Role) -> Result<String, BoxError> {
    Ok(mint(
        DEV_SECRET.as_bytes(),
        &Claims::new(room, identity, identity, role, unix_now(), 3600),
    )?)
}

/// A pre-encoded loop of each simulcast layer (IDR every second), smallest first, and of
/// speech with its levels: publishing them costs the host no encoding.
struct Media {
    layers: Vec<VideoLayer>,
    video: Vec<Vec<EncodedFrame>>,
    audio: Vec<(EncodedFrame, u8)>,
}

fn pre_encode(args: &Args) -> Result<Media, BoxError> {
    let layers = camera_layers(args.size.0, args.size.1, args.bitrate * 1000, true);
    let mut video = Vec::new();
    for layer in &layers {
        let pattern = TestPattern::new(layer.width, layer.height)?;
        let mut encoder = H264Encoder::new(
            H264Config::new(layer.width, layer.height)
                .bitrate_kbps(layer.bitrate_bps / 1000)
                .keyframe_interval(30),
        )?;
        let mut frames = Vec::new();
        for i in 0..90 {
            frames.push(
                encoder
                    .encode(&pattern.frame(i, i as u64 * 33_333))?
                    .ok_or("skipped frame")?,
            );
        }
        video.push(frames);
    }
    let mut speech = SpeechSource::new(Channels::Mono, 20)?;
    let mut opus = OpusEncoder::new(OpusConfig::new(Channels::Mono))?;
    let mut audio = Vec::new();
    for _ in 0..150 {
        let frame = speech.next_frame();
        let level = level_dbov(frame.samples());
        audio.push((opus.encode(&frame)?.ok_or("no packet")?, level));
    }
    Ok(Media {
        layers,
        video,
        audio,
    })
}

/// One process of viewers ([`receivers`]), asked questions over its stdin.
struct Viewers {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    count: usize,
}

impl Viewers {
    fn start(
        server: &ServerProcess,
        room: &str,
        first: usize,
        count: usize,
    ) -> Result<Self, BoxError> {
        let size = |(w, h): (u32, u32)| format!("{w}x{h}");
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "bench",
                "sfu-receivers",
                "--signal",
                &server.signal_url,
                "--room",
                room,
            ])
            .args(["--first", &first.to_string(), "--count", &count.to_string()])
            .args(["--watch", &format!("{HOST}/camera"), "--tile", &size(TILE)])
            .args([
                "--extra",
                &format!("{CENTER}/camera"),
                "--extra-tile",
                &size(CENTER_TILE),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin to the viewers")?;
        let stdout =
            BufReader::new(child.stdout.take().ok_or("no stdout from the viewers")?).lines();
        Ok(Self {
            child,
            stdin,
            stdout,
            count,
        })
    }

    /// Sends a command and reads its answer (the first answer comes once every viewer of
    /// the process has joined).
    async fn ask(&mut self, command: &str, limit: Duration) -> Result<Value, BoxError> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        let line = tokio::time::timeout(limit, self.stdout.next_line())
            .await
            .map_err(|_| format!("the viewers did not answer {command:?} within {limit:?}"))??
            .ok_or("the viewers' process ended")?;
        Ok(serde_json::from_str(&line)?)
    }

    async fn leave(mut self) {
        let _ = self.stdin.write_all(b"leave\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }
}

/// Asks every process the same question; the answers in process order.
async fn ask_all(
    viewers: &mut [Viewers],
    command: &str,
    limit: Duration,
) -> Result<Vec<Value>, BoxError> {
    let mut answers = Vec::with_capacity(viewers.len());
    for v in viewers.iter_mut() {
        answers.push(v.ask(command, limit).await?);
    }
    Ok(answers)
}

/// Per viewer, `[video packets, video lost, audio packets, audio lost]` of the host's tracks.
async fn mark(viewers: &mut [Viewers]) -> Result<Vec<[u64; 4]>, BoxError> {
    let mut all = Vec::new();
    for answer in ask_all(viewers, "mark", Duration::from_secs(30)).await? {
        let list: Vec<[u64; 4]> = serde_json::from_value(answer["viewers"].clone())?;
        all.extend(list);
    }
    Ok(all)
}

async fn one_run(args: &Args, n: usize, media: &Media, quiet: bool) -> Result<Run, BoxError> {
    let server = match &args.attach {
        Some(url) => ServerProcess::attach(url, args.pid.ok_or("--attach needs --pid")?),
        None => ServerProcess::start()?,
    };
    let room = "bench";
    let top = media.layers.last().ok_or("no layers")?;
    let publisher_options = RoomOptions {
        video: Some(VideoOptions {
            width: top.width,
            height: top.height,
            fps: 30,
            bitrate_kbps: args.bitrate,
            simulcast: true,
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
            &token(room, HOST, Role::Host)?,
            publisher_options,
        )
        .await?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let pump = {
        let (publisher, stop) = (publisher.clone(), stop.clone());
        let (video, audio) = (media.video.clone(), media.audio.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let start = Instant::now();
            let (mut v, mut a) = (0usize, 0usize);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let t = start.elapsed().as_millis() as usize;
                while v * 1000 / 30 <= t {
                    for (layer, frames) in video.iter().enumerate() {
                        let _ = publisher
                            .publish_encoded_video_layer(layer, &frames[v % frames.len()])
                            .await;
                    }
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

    // The viewers, in processes of at most `per_process`, joining side by side.
    let join_start = Instant::now();
    let deadline = join_start + Duration::from_secs(args.join_timeout);
    let processes = n.div_ceil(args.per_process.max(1));
    let mut viewers = Vec::with_capacity(processes);
    for p in 0..processes {
        let first = p * n / processes;
        let count = (p + 1) * n / processes - first;
        viewers.push(Viewers::start(&server, room, first, count)?);
    }
    let mut at_size;
    loop {
        let limit = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let answers = ask_all(&mut viewers, "status", limit).await?;
        let sum = |key: &str| {
            answers
                .iter()
                .map(|a| a[key].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        at_size = sum("at_size") as usize;
        if !quiet {
            eprint!(
                "\r  {n} viewers in {processes} processes: {} joined, {} receiving, {at_size} at {}x{}      ",
                sum("joined"),
                sum("receiving"),
                TILE.0,
                TILE.1
            );
        }
        if at_size == n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let join_seconds = join_start.elapsed().as_secs_f64();

    const COUNTERS: &[&str] = &[
        "madang_rtp_packets_in_total",
        "madang_rtp_packets_out_total",
        "madang_rtp_packets_not_forwarded_total",
        "madang_udp_send_failures_total",
        "madang_rtp_packets_awaiting_keyframe_total",
    ];
    let (cpu0, m0, v0) = (
        server.cpu_seconds()?,
        server.metrics(COUNTERS).await?,
        mark(&mut viewers).await?,
    );
    let t0 = Instant::now();
    let half = Duration::from_secs_f64(args.seconds / 2.0);
    tokio::time::sleep(half).await;
    let talk_back = talk_back_round(&server, room, &publisher, &mut viewers, quiet).await?;
    let rest = Duration::from_secs_f64(args.seconds).saturating_sub(t0.elapsed());
    tokio::time::sleep(rest).await;
    let seconds = t0.elapsed().as_secs_f64();
    // Read in the same order as at the start, so packets in flight at either edge cancel out.
    let (cpu1, m1, v1) = (
        server.cpu_seconds()?,
        server.metrics(COUNTERS).await?,
        mark(&mut viewers).await?,
    );
    let rss_after = server.rss_kb()?;
    stop.store(true, Ordering::Relaxed);
    let _ = pump.await;
    if !quiet {
        eprintln!();
    }
    for v in viewers {
        v.leave().await;
    }
    let delta = |i: usize| m1[i].saturating_sub(m0[i]);
    let (packets_in, forwarded) = (delta(0), delta(1));
    let cpu = cpu1 - cpu0;
    let (mut received, mut lost, mut worst, mut below) = (0u64, 0u64, 100.0f64, 0usize);
    for (a, b) in v0.iter().zip(&v1) {
        let got = (b[0] - a[0]) + (b[2] - a[2]);
        let missed = b[1].saturating_sub(a[1]) + b[3].saturating_sub(a[3]);
        received += got;
        lost += missed;
        let pct = if got + missed > 0 {
            100.0 * got as f64 / (got + missed) as f64
        } else {
            0.0
        };
        worst = worst.min(pct);
        if pct < 99.5 {
            below += 1;
        }
    }
    Ok(Run {
        subscribers: n,
        receiver_processes: processes,
        subscribers_receiving: at_size,
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
        dropped_by_server: delta(2) + delta(3),
        awaiting_keyframe: delta(4),
        received_by_subscribers: received,
        lost_before_subscribers: lost,
        worst_viewer_pct: worst,
        viewers_below_99_5: below,
        server_rss_mb: rss_after / 1024.0,
        memory_per_subscriber_kb: (rss_after - rss_before).max(0.0) / n.max(1) as f64,
        join_seconds,
        talk_back,
    })
}

/// The talk-back round: a center joins as a viewer with a camera (320×180, 15 fps, encoded
/// live so that it answers keyframe requests), the host lets it in, and every viewer is
/// timed from the center's first packet (taken as the moment its first picture was handed
/// to its connection: on loopback it is at the server within a millisecond) to the first
/// picture of it there.
async fn talk_back_round(
    server: &ServerProcess,
    room: &str,
    host: &Room,
    viewers: &mut [Viewers],
    quiet: bool,
) -> Result<TalkBack, BoxError> {
    let options = RoomOptions {
        video: Some(VideoOptions {
            width: CENTER_TILE.0,
            height: CENTER_TILE.1,
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
    let total: usize = viewers.iter().map(|v| v.count).sum();
    let mut pattern = TestPattern::new(CENTER_TILE.0, CENTER_TILE.1)?;
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / 15));
    let (start, mut next_look) = (Instant::now(), Instant::now());
    let mut first_packet = None;
    let mut firsts: Vec<Option<u64>> = vec![None; total];
    while Instant::now() < limit && firsts.iter().any(Option::is_none) {
        tick.tick().await;
        let frame = pattern.next_frame(start.elapsed().as_micros() as u64);
        center.publish_video(&frame).await?;
        first_packet.get_or_insert_with(|| receivers::unix_us(Instant::now()));
        if Instant::now() < next_look {
            continue;
        }
        next_look = Instant::now() + Duration::from_millis(100);
        firsts.clear();
        for answer in ask_all(viewers, &format!("first {track}"), Duration::from_secs(10)).await? {
            let list: Vec<Option<u64>> =
                serde_json::from_value(answer["first_picture_us"].clone())?;
            firsts.extend(list);
        }
        if !quiet {
            let reached = firsts.iter().flatten().count();
            eprint!(
                "\r  talk-back: {reached} of {total} viewers have a picture of the center      "
            );
        }
    }
    center.leave().await;
    let sent = first_packet.unwrap_or(0);
    let mut ms: Vec<f64> = firsts
        .iter()
        .flatten()
        .map(|&at| at.saturating_sub(sent) as f64 / 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms.get(((ms.len() as f64 * q) as usize).min(ms.len().saturating_sub(1)));
    Ok(TalkBack {
        viewers_reached: ms.len(),
        viewers: total,
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
    if !(1.0..=3600.0).contains(&args.seconds) {
        return Err("--seconds takes 1 to 3600".into());
    }
    if args.per_process == 0 {
        return Err("--per-process takes at least 1".into());
    }
    if args.attach.is_some() && args.subscribers.len() != 1 {
        return Err("--attach measures one count of --subscribers".into());
    }
    let media = pre_encode(&args)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut runs = Vec::new();
    for &n in &args.subscribers {
        if !args.json {
            eprintln!(
                "bench sfu: host ({}x{} simulcast, {} kbps at the top + Opus) → {n} viewers at {}x{}, {} s…",
                args.size.0, args.size.1, args.bitrate, TILE.0, TILE.1, args.seconds
            );
        }
        runs.push(runtime.block_on(one_run(&args, n, &media, args.json))?);
    }
    let report = Report {
        size: format!("{}x{}", args.size.0, args.size.1),
        bitrate_kbps: args.bitrate,
        layers: media
            .layers
            .iter()
            .map(|l| format!("{}x{} {} kbps", l.width, l.height, l.bitrate_bps / 1000))
            .collect(),
        runs,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "SFU forwarding: host {} simulcast ({}) + Opus → N viewers at {}x{}, loopback UDP, SRTP; server and viewers in their own processes",
        report.size,
        report.layers.join(", "),
        TILE.0,
        TILE.1
    );
    println!(
        "{:>6} {:>5} {:>9} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>10} {:>8}",
        "subs",
        "procs",
        "receiving",
        "out pkt/s",
        "CPU %",
        "µs/pkt",
        "dropped",
        "kf wait",
        "sub. lost",
        "worst %",
        "<99.5 %",
        "KB/sub",
        "join s"
    );
    for r in &report.runs {
        println!(
            "{:>6} {:>5} {:>9} {:>10.0} {:>8.1} {:>9.2} {:>9} {:>9} {:>9} {:>8.2} {:>8} {:>10.1} {:>8.1}",
            r.subscribers,
            r.receiver_processes,
            r.subscribers_receiving,
            r.forwarded_per_second,
            r.server_cpu_pct,
            r.us_per_packet,
            r.dropped_by_server,
            r.awaiting_keyframe,
            r.lost_before_subscribers,
            r.worst_viewer_pct,
            r.viewers_below_99_5,
            r.memory_per_subscriber_kb,
            r.join_seconds
        );
    }
    for r in &report.runs {
        let t = &r.talk_back;
        println!(
            "talk-back with {} viewers: a center let in was seen by {} of {} others; from its first packet to their first picture of it p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            r.subscribers, t.viewers_reached, t.viewers, t.p50_ms, t.p99_ms, t.max_ms
        );
    }
    println!(
        "targets: ≤ 5 µs per forwarded packet, 0 dropped, every viewer ≥ 99.5 %, ≤ 200 KB per viewer; talk-back p50 ≤ 300 ms, p99 ≤ 1 s"
    );
    println!(
        "(dropped: held back by the server — video paused, stale — or refused by the socket; kf wait: not sent while a viewer's video waited for a keyframe, a layer switch)"
    );
    Ok(())
}
