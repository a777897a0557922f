//! One process of `madang bench sfu`'s viewers: it joins its share of them, each doing no
//! more than a viewer must to count and check what arrives (WebRTC with SRTP, packets
//! counted by sequence number, pictures not decoded: a keyframe that arrived whole is
//! what counts as a picture, see [`TrackStats::first_picture`]), and answers the
//! benchmark's questions, one JSON line per command read on stdin:
//!
//! - `status` → `{"joined":n,"receiving":r,"at_size":s}`: viewers receiving the watched
//!   video, and receiving it at the size of their tile;
//! - `mark` → `{"viewers":[[video packets, video lost, audio packets, audio lost], …]}`
//!   for the host's tracks, one entry per viewer;
//! - `first TRACK` → `{"first_picture_us":[…]}`: per viewer, when the first picture of
//!   `TRACK` was there (µs since the Unix epoch, `null` before);
//! - `leave` → the viewers leave and the process ends.
//!
//! [`TrackStats::first_picture`]: madang::room::TrackStats::first_picture

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use madang::room::{Room, RoomOptions, TrackStats};
use madang::signal::{Role, TileSize, TrackKind, ViewLayout};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::token;
use crate::CliResult;
use crate::size::parse_size;

/// Arguments of a viewers' process (started by `madang bench sfu`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server's signal URL.
    #[arg(long)]
    signal: String,
    /// The room.
    #[arg(long)]
    room: String,
    /// Number of the first viewer (identities `center-NNN`).
    #[arg(long)]
    first: usize,
    /// Viewers in this process.
    #[arg(long)]
    count: usize,
    /// The host's video track, shown in a tile of `--tile` size.
    #[arg(long)]
    watch: String,
    /// The tile the host's video is shown in.
    #[arg(long, value_parser = parse_size, value_name = "WxH")]
    tile: (u32, u32),
    /// A track that may appear (a center let in), shown in a tile of `--extra-tile` size.
    #[arg(long)]
    extra: String,
    /// The tile of `--extra`.
    #[arg(long, value_parser = parse_size, value_name = "WxH")]
    extra_tile: (u32, u32),
}

/// Microseconds since the Unix epoch at `at` (a monotonic instant of this process): the
/// clock the benchmark's processes share.
pub(super) fn unix_us(at: Instant) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let back = Instant::now().saturating_duration_since(at);
    now.saturating_sub(back).as_micros() as u64
}

fn track<'a>(stats: &'a [TrackStats], name: &str) -> Option<&'a TrackStats> {
    stats.iter().find(|t| t.track == name)
}

/// Runs the viewers' process.
pub fn run(args: Args) -> CliResult {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(viewers(args))
}

async fn viewers(args: Args) -> CliResult {
    let layout = ViewLayout {
        width: args.tile.0,
        height: args.tile.1,
        tiles: vec![
            TileSize {
                track: args.watch.clone(),
                width: args.tile.0,
                height: args.tile.1,
            },
            TileSize {
                track: args.extra.clone(),
                width: args.extra_tile.0,
                height: args.extra_tile.1,
            },
        ],
    };
    let mut rooms = Vec::with_capacity(args.count);
    for i in args.first..args.first + args.count {
        let options = RoomOptions {
            decode_video: false,
            decode_audio: false,
            event_capacity: 16,
            ..RoomOptions::default()
        };
        let t = token(&args.room, &format!("center-{i:03}"), Role::Viewer)?;
        let room = Room::connect(&args.signal, &t, options).await?;
        room.set_layout(layout.clone())?;
        rooms.push(room);
    }
    let audio = args
        .watch
        .rsplit_once('/')
        .map(|(who, _)| format!("{who}/microphone"))
        .unwrap_or_default();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                let answer = match line.split_once(' ').unwrap_or((line.as_str(), "")) {
                    ("status", _) => {
                        let watched: Vec<Option<TrackStats>> = rooms
                            .iter()
                            .map(|r| track(&r.receive_stats(), &args.watch).cloned())
                            .collect();
                        let receiving = watched.iter().flatten().filter(|t| t.packets > 0).count();
                        let at_size = watched
                            .iter()
                            .flatten()
                            .filter(|t| t.frame_size == args.tile)
                            .count();
                        json!({"joined": rooms.len(), "receiving": receiving, "at_size": at_size})
                    }
                    ("mark", _) => {
                        let viewers: Vec<[u64; 4]> = rooms
                            .iter()
                            .map(|r| {
                                let stats = r.receive_stats();
                                let count = |name: &str| {
                                    track(&stats, name)
                                        .map_or((0, 0), |t| (t.packets, t.packets_lost))
                                };
                                let (v, vl) = count(&args.watch);
                                let (a, al) = count(&audio);
                                [v, vl, a, al]
                            })
                            .collect();
                        json!({"viewers": viewers})
                    }
                    ("first", name) => {
                        let first: Vec<Option<u64>> = rooms
                            .iter()
                            .map(|r| {
                                track(&r.receive_stats(), name)
                                    .filter(|t| t.kind == TrackKind::Video)
                                    .and_then(|t| t.first_picture)
                                    .map(unix_us)
                            })
                            .collect();
                        json!({"first_picture_us": first})
                    }
                    ("leave", _) => break,
                    (other, _) => json!({"error": format!("unknown command {other:?}")}),
                };
                println!("{answer}");
            }
            _ = tick.tick() => {
                for r in &mut rooms {
                    while r.try_next_event().is_some() {}
                }
            }
        }
    }
    for r in rooms {
        r.leave().await;
    }
    Ok(())
}
