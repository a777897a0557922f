//! `madang demo`: a conference of synthetic participants over real WebRTC on loopback,
//! through an embedded room server, with loss and glass-to-glass latency per pair.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::synthetic::{ConferenceConfig, ConferenceReport, GridSink, run_conference_with_grid};
use madang::media::{VideoFrame, Y4mWriter};
use madang::sfu::{Server, ServerConfig};
use madang::sim::DownlinkReport;

use crate::CliResult;
use crate::size::parse_size;

/// Arguments of `madang demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of participants, each publishing and receiving everyone else.
    #[arg(long, default_value_t = 4)]
    participants: usize,
    /// Seconds to measure (after everyone sees everyone).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Picture size of every participant.
    #[arg(long, value_parser = parse_size, default_value = "640x360", value_name = "WxH")]
    size: (u32, u32),
    /// H.264 bitrate per participant, kbit/s.
    #[arg(long, default_value_t = 800)]
    bitrate: u32,
    /// Video only.
    #[arg(long)]
    no_audio: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Write what participant 1 last received from participant 2 (.png or .y4m).
    #[arg(long, value_name = "FILE")]
    snapshot: Option<PathBuf>,
    /// Write the grid participant 1 sees (everyone, composed live, itself as self view) as Y4M.
    #[arg(long, value_name = "FILE.y4m")]
    grid: Option<PathBuf>,
    /// Size of the --grid canvas.
    #[arg(long, value_parser = parse_size, default_value = "1280x720", value_name = "WxH")]
    grid_size: (u32, u32),
    /// Network conditions on every participant's link, both directions, applied in the room
    /// server's UDP layer: a preset — lan (none), lte (3 % loss, 40 ± 15 ms, 5 Mbit/s), rural
    /// (1 %, 60 ± 20 ms, 1 Mbit/s), disaster (8 % in bursts, 120 ± 40 ms, 400 kbit/s), outage
    /// (lte with a 5 s blackout at 5 s) — or parts such as
    /// `loss=3%,burst=4,delay=40ms,jitter=15ms,reorder=no,rate=1mbit,queue=200ms,outage=5s+5s,rate@10s=300kbit,head=10,seed=7`,
    /// optionally after a preset (`lte,loss=5%`).
    #[arg(long, value_name = "PROFILE", default_value = "lan")]
    network: madang::netsim::Profile,
    /// Run on simulated time: the server core and the participants in one thread over a
    /// simulated network, no sockets, faster than real time, the same run for the same seed.
    #[arg(long)]
    simulate: bool,
    /// Seed of the simulated run (with --simulate).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Frames per second of every participant.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Every participant publishes simulcast (the picture size and halves of it); the
    /// server forwards each receiver the layer its downlink carries.
    #[arg(long)]
    simulcast: bool,
    /// Record the conference into this directory (as `madang serve --record`): one
    /// fragmented MP4 per participant, H.264 + Opus as the server received them.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
}

/// What the network did in a demo on real sockets.
#[derive(serde::Serialize)]
struct NetworkReport {
    /// The profile's name as given.
    name: String,
    /// Its settings.
    profile: String,
    /// Datagrams towards the server: sent, delivered, lost, queue and outage drops.
    up: madang::netsim::LinkStats,
    /// Datagrams towards the participants.
    down: madang::netsim::LinkStats,
}

/// The JSON of `madang demo --json`: the conference report plus the network's.
#[derive(serde::Serialize)]
struct DemoJson<'a> {
    #[serde(flatten)]
    report: &'a ConferenceReport,
    network: NetworkReport,
    /// The files `--record` wrote.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    recordings: Vec<PathBuf>,
}

/// The files under `dir`, sorted (the recordings of a run: `dir/room/*.mp4`).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn write_snapshot(path: &Path, frame: &VideoFrame) -> CliResult {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let writer = std::io::BufWriter::new(file);
    match path.extension().and_then(|e| e.to_str()) {
        Some("y4m") => {
            let mut w = Y4mWriter::new(writer, frame.width(), frame.height(), 30, 1)?;
            w.write_frame(frame)?;
            w.finish()?;
        }
        _ => {
            let mut encoder = png::Encoder::new(writer, frame.width(), frame.height());
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut w = encoder.write_header()?;
            w.write_image_data(&frame.to_rgb())?;
            w.finish()?;
        }
    }
    Ok(())
}

fn print_table(r: &ConferenceReport, config: &ConferenceConfig) {
    println!(
        "madang demo: {} participants, {}x{} @ {} fps, {} kbps each, {:.1} s measured (warm-up {:.1} s)",
        r.participants,
        config.width,
        config.height,
        config.fps,
        config.bitrate_kbps,
        r.seconds,
        r.warmup_seconds
    );
    println!(
        "{:>5} {:>5} {:>6} {:>8} {:>7} {:>7} {:>7} {:>7} {:>6} {:>5} {:>6} {:>7} {:>7} {:>4} {:>5} {:>5} {:>6}",
        "from",
        "to",
        "sent",
        "decoded",
        "loss %",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "kbps",
        "width",
        "jit ms",
        "freezes",
        "frz ms",
        "kf",
        "nack",
        "rtx",
        "buf ms"
    );
    for p in &r.pairs {
        let q = &p.repair;
        println!(
            "{:>5} {:>5} {:>6} {:>8} {:>7.2} {:>7.1} {:>7.1} {:>7.1} {:>6.0} {:>5} {:>6} {:>7} {:>7.0} {:>4} {:>5} {:>5} {:>6.0}",
            p.from,
            p.to,
            p.frames_sent,
            p.frames_decoded,
            p.loss_pct,
            p.latency_ms.p50,
            p.latency_ms.p95,
            p.latency_ms.p99,
            p.kbps,
            p.width,
            p.jitter_ms.map_or("-".into(), |j| format!("{j:.1}")),
            q.freezes,
            q.freeze_ms,
            q.keyframe_requests,
            q.nacks_sent,
            q.packets_recovered,
            q.buffer_delay_ms,
        );
    }
    println!(
        "  (width: of the last picture decoded, the simulcast layer received; freezes: no new picture for > 3 frame intervals and > 1 + 150 ms; kf: keyframe requests; nack: \
         packets asked for again; rtx: packets repaired by retransmission; buf: jitter-buffer delay)"
    );
    if !r.audio.is_empty() {
        let sent: u64 = r.audio.iter().map(|a| a.frames_sent).sum();
        let got: u64 = r.audio.iter().map(|a| a.frames_received).sum();
        let worst = r.audio.iter().map(|a| a.loss_pct).fold(0.0, f64::max);
        let fec: u64 = r.audio.iter().map(|a| a.fec_frames).sum();
        let copies: u64 = r.audio.iter().map(|a| a.copy_frames).sum();
        let concealed: f64 = r.audio.iter().map(|a| a.concealed_ms).sum();
        println!(
            "audio: {got}/{sent} frames of 20 ms played across {} pairs (worst pair {worst:.2} % \
             not played); {fec} rebuilt from FEC, {copies} from copies in later packets, \
             {concealed:.0} ms concealed",
            r.audio.len()
        );
    }
    if r.data_messages.expected > 0 {
        println!(
            "chat: {} messages sent, {} of {} deliveries received",
            r.data_messages.sent, r.data_messages.received, r.data_messages.expected
        );
    }
    for u in &r.uplinks {
        println!(
            "uplink {}: sent {:.0} kbit/s, estimate {:.0} kbit/s (delay-based {:.0}, loss-based {:.0}), video encoder at {:.0} kbit/s, Opus at {:.0}",
            u.participant,
            u.sent_kbps,
            u.estimate_kbps,
            u.delay_based_kbps,
            u.loss_based_kbps,
            u.video_target_kbps,
            u.audio_target_kbps
        );
    }
    print_downlinks(&r.downlinks);
}

/// One line per subscriber: what the server estimated its downlink carries.
fn print_downlinks(downlinks: &[DownlinkReport]) {
    for d in downlinks {
        println!(
            "downlink {}: server's estimate {:.0} kbit/s (delay-based {:.0}, loss-based {:.0}), {} of {} videos paused, {} at a smaller simulcast layer",
            d.participant,
            d.estimate_kbps,
            d.delay_based_kbps,
            d.loss_based_kbps,
            d.paused,
            d.videos,
            d.lowered
        );
    }
}

fn print_network(n: &NetworkReport) {
    if n.up.sent + n.down.sent == 0 {
        return;
    }
    println!("network {} ({}):", n.name, n.profile);
    for (dir, s) in [("up", &n.up), ("down", &n.down)] {
        println!(
            "  {dir:>4}: {} datagrams, {} delivered, {} lost, {} dropped by the queue, {} in outages",
            s.sent, s.delivered, s.lost, s.queue_drops, s.outage_drops
        );
    }
}

/// The conference the arguments ask for.
fn conference_config(args: &Args) -> ConferenceConfig {
    ConferenceConfig {
        participants: args.participants,
        seconds: args.seconds,
        width: args.size.0,
        height: args.size.1,
        fps: args.fps,
        bitrate_kbps: args.bitrate,
        simulcast: args.simulcast,
        audio: !args.no_audio,
        ..ConferenceConfig::default()
    }
}

/// The demo on simulated time.
fn simulate(args: &Args) -> CliResult {
    let config = madang::sim::SimConfig {
        participants: args.participants,
        width: args.size.0,
        height: args.size.1,
        fps: args.fps,
        bitrate_kbps: args.bitrate,
        simulcast: args.simulcast,
        audio: !args.no_audio,
        profile: args.network.clone(),
        seed: args.seed,
        seconds: args.seconds,
        ..madang::sim::SimConfig::default()
    };
    if !args.json {
        eprintln!(
            "simulating {} participants on {} ({})…",
            args.participants, args.network.name, args.network
        );
    }
    let report = madang::sim::run(&config)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let table = ConferenceReport {
        participants: report.participants,
        seconds: report.seconds,
        warmup_seconds: report.warmup_seconds,
        pairs: report.pairs.clone(),
        audio: report.audio.clone(),
        data_messages: Default::default(),
        uplinks: report.uplinks.clone(),
        downlinks: report.downlinks.clone(),
    };
    print_table(&table, &conference_config(args));
    print_network(&NetworkReport {
        name: args.network.name.clone(),
        profile: report.profile.clone(),
        up: report.network.up,
        down: report.network.down,
    });
    println!(
        "simulated {:.1} s in {:.1} s of real time ({:.1}x); server: {} keyframe requests, {} retransmissions, {} stalled connections replaced",
        report.simulated_seconds,
        report.real_seconds,
        report.simulated_seconds / report.real_seconds.max(1e-9),
        report.keyframe_requests,
        report.retransmitted,
        report.publishers_replaced + report.subscribers_replaced
    );
    Ok(())
}

/// Runs the demo.
pub fn run(args: Args) -> CliResult {
    if args.participants < 2 || args.participants > 32 {
        return Err("--participants must be within 2..=32".into());
    }
    if !(args.seconds > 0.0 && args.seconds <= 3600.0) {
        return Err("--seconds must be within (0, 3600]".into());
    }
    if args.fps == 0 || args.fps > 60 {
        return Err("--fps must be within 1..=60".into());
    }
    if args.record.is_some() && args.simulate {
        return Err("--record records the server on real sockets: not with --simulate".into());
    }
    if args.simulate {
        return simulate(&args);
    }
    let config = conference_config(&args);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let server = Server::bind(ServerConfig {
            network: Some(args.network.clone()),
            record: args
                .record
                .clone()
                .map(|dir| madang::sfu::record::RecordConfig {
                    dir,
                    rooms: Vec::new(),
                }),
            ..ServerConfig::dev()
        })
        .await?;
        if !args.json {
            eprintln!(
                "room server on {} (signal) and udp {} (media); {} participants joining…",
                server.signal_url(),
                server.udp_addr(),
                args.participants
            );
        }
        let bar = if args.json {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new_spinner()
        };
        bar.enable_steady_tick(Duration::from_millis(200));
        // The grid goes to a file from a blocking task, so writing never stalls the call.
        let (grid, grid_writer) = match &args.grid {
            Some(path) => {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<VideoFrame>(8);
                let file =
                    std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let (gw, gh) = args.grid_size;
                let mut writer =
                    Y4mWriter::new(std::io::BufWriter::new(file), gw, gh, config.fps, 1)?;
                let task = tokio::task::spawn_blocking(
                    move || -> Result<u64, madang::media::MediaError> {
                        let mut n = 0;
                        while let Some(frame) = rx.blocking_recv() {
                            writer.write_frame(&frame)?;
                            n += 1;
                        }
                        writer.finish()?;
                        Ok(n)
                    },
                );
                (
                    Some(GridSink {
                        width: gw,
                        height: gh,
                        frames: tx,
                    }),
                    Some(task),
                )
            }
            None => (None, None),
        };
        let (report, snapshot) = run_conference_with_grid(
            &server,
            &config,
            |p| {
                let msg = match p.phase {
                    "warmup" => format!(
                        "warming up {:.1} s: {}/{} pairs see each other",
                        p.elapsed, p.frames_decoded, p.frames_sent
                    ),
                    _ => format!(
                        "measuring {:.1}/{:.0} s: {} of {} pictures decoded",
                        p.elapsed, config.seconds, p.frames_decoded, p.frames_sent
                    ),
                };
                bar.set_message(msg);
            },
            grid,
        )
        .await?;
        let grid_frames = match grid_writer {
            Some(task) => Some(task.await.map_err(|e| e.to_string())??),
            None => None,
        };
        bar.finish_and_clear();
        let stats = server.stats();
        server.shutdown().await;
        if let (Some(path), Some(frame)) = (&args.snapshot, &snapshot) {
            write_snapshot(path, frame)?;
        }
        let net = stats.network.unwrap_or_default();
        let network = NetworkReport {
            name: args.network.name.clone(),
            profile: args.network.to_string(),
            up: net.up,
            down: net.down,
        };
        if args.json {
            println!(
                "{}",
                serde_json::to_string(&DemoJson {
                    report: &report,
                    network,
                    recordings: args.record.as_deref().map(files_under).unwrap_or_default(),
                })?
            );
        } else {
            print_table(&report, &config);
            print_network(&network);
            println!(
                "server: {} RTP packets in, {} out, {} keyframe requests relayed",
                stats.packets_in, stats.packets_out, stats.keyframe_requests
            );
            if let (Some(path), Some(_)) = (&args.snapshot, &snapshot) {
                println!("snapshot of what p1 received from p2: {}", path.display());
            }
            for file in args.record.as_deref().map(files_under).unwrap_or_default() {
                let size = std::fs::metadata(&file).map_or(0, |m| m.len());
                println!("recorded: {} ({} KB)", file.display(), size / 1000);
            }
            if let (Some(path), Some(n)) = (&args.grid, grid_frames) {
                println!(
                    "grid p1 sees: {} ({n} frames {}x{}; ffplay {0})",
                    path.display(),
                    args.grid_size.0,
                    args.grid_size.1
                );
            }
        }
        Ok(())
    })
}
