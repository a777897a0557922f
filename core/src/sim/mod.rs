//! Whole conferences in one thread on simulated time: the server core, client sessions with
//! real codecs (the stamped test pattern through OpenH264, speech through Opus), and a
//! simulated network between them. Nothing sleeps and nothing reads the clock, so it runs
//! faster than real time and the same seed gives the same run.
//!
//! [`World`] is the harness: participants join, leave, vanish or send protocol messages at
//! any point, and every room event is handed to the caller as it happens. [`run`] is a
//! ready-made measurement on top of it (what `madang demo --simulate` prints).
//!
//! ```no_run
//! use madang::netsim::Profile;
//! use madang::sim::{SimConfig, run};
//! let report = run(&SimConfig { profile: "lte".parse().unwrap(), ..SimConfig::default() }).unwrap();
//! for pair in &report.pairs {
//!     println!("{} → {}: {:.1} % lost", pair.from, pair.to, pair.loss_pct);
//! }
//! ```
//!
//! ```
//! use std::time::Duration;
//! use madang::room::RoomEvent;
//! use madang::sim::{JoinOptions, World};
//!
//! let mut world = World::new("lan".parse().unwrap(), 1, World::engine_config());
//! let audio_only = JoinOptions { video: None, ..JoinOptions::default() };
//! world.join("alice", audio_only.clone()).unwrap();
//! world.join("bob", audio_only).unwrap();
//! let mut heard = 0;
//! world
//!     .run_for(Duration::from_secs(2), &mut |_, event, _| {
//!         if let RoomEvent::AudioFrame { .. } = event {
//!             heard += 1;
//!         }
//!     })
//!     .unwrap();
//! assert!(heard > 100, "{heard} audio frames in 2 simulated seconds");
//! ```

mod report;
pub mod uplink;
mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::codec::CodecError;
use crate::media::read_stamp;
use crate::netsim::{NetworkStats, Profile};
use crate::room::session::Phase;
use crate::room::{RoomEvent, TrackStats};
use crate::sfu::token::TokenError;
use crate::signal::TrackSource;

pub use report::{
    AudioPairReport, ConferenceReport, DataReport, DownlinkReport, PairReport, Percentiles,
    UplinkReport, VideoRepair,
};
pub use world::{JoinOptions, Participant, SECRET, World};

/// Shape of a simulated conference.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Participants, all publishing and all receiving.
    pub participants: usize,
    /// Picture size.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// H.264 bitrate per participant, kbit/s (of the full-size layer with simulcast).
    pub bitrate_kbps: u32,
    /// Publish the video as simulcast.
    pub simulcast: bool,
    /// Publish audio too.
    pub audio: bool,
    /// Conditions on every participant's link, both directions.
    pub profile: Profile,
    /// Seed of everything random in the run (the network's own seed comes from the profile).
    pub seed: u64,
    /// Longest simulated wait for everyone to see everyone before measuring.
    pub warmup_timeout: Duration,
    /// Simulated seconds measured.
    pub seconds: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            participants: 4,
            width: 640,
            height: 360,
            fps: 30,
            bitrate_kbps: 800,
            simulcast: false,
            audio: true,
            profile: Profile::lan(),
            seed: 1,
            warmup_timeout: Duration::from_secs(10),
            seconds: 10.0,
        }
    }
}

/// What a simulated conference delivered.
#[derive(Clone, Debug, Serialize)]
pub struct SimReport {
    /// Participants.
    pub participants: usize,
    /// The network conditions, in the custom form (feed it back with `--network`).
    pub profile: String,
    /// Simulated seconds until everyone saw everyone (or the warm-up gave up).
    pub warmup_seconds: f64,
    /// Simulated seconds measured.
    pub seconds: f64,
    /// Simulated seconds of the whole run, warm-up and drain included.
    pub simulated_seconds: f64,
    /// Real seconds the run took.
    pub real_seconds: f64,
    /// Video, per ordered pair.
    pub pairs: Vec<PairReport>,
    /// Audio, per ordered pair.
    pub audio: Vec<AudioPairReport>,
    /// What the network did, per direction.
    pub network: NetworkStats,
    /// Keyframe requests the server sent to publishers.
    pub keyframe_requests: u64,
    /// Packets the server resent in answer to NACKs.
    pub retransmitted: u64,
    /// Publishing connections the server replaced because a client offered a new one while
    /// the old one had never come up.
    pub publishers_replaced: u64,
    /// The same for receiving connections.
    pub subscribers_replaced: u64,
    /// Each publisher's uplink at the end, in joining order.
    pub uplinks: Vec<UplinkReport>,
    /// Each subscriber's downlink as the server estimated it at the end.
    pub downlinks: Vec<DownlinkReport>,
}

/// Why a simulated conference could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// Fewer than two participants, or a bad size.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// An encoder could not be made.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A token could not be minted.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A participant was refused or never joined.
    #[error("participant {0} did not join")]
    Join(String),
}

/// Per receiving participant: what arrived from whom.
#[derive(Default)]
struct Received {
    /// Publisher → (picture seq, latency ms) decoded.
    video: BTreeMap<String, Vec<(u32, f64)>>,
    /// Publisher → audio frames decoded while measuring.
    audio: BTreeMap<String, u64>,
    /// Publishers seen at least once.
    seen: BTreeSet<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Warmup,
    Measuring,
}

/// Runs a simulated conference and reports per-pair delivery.
pub fn run(config: &SimConfig) -> Result<SimReport, SimError> {
    if config.participants < 2 {
        return Err(SimError::Config("at least two participants"));
    }
    if config.fps == 0 || config.seconds <= 0.0 {
        return Err(SimError::Config("fps and seconds must be positive"));
    }
    let real_start = Instant::now();
    let mut world = World::new(config.profile.clone(), config.seed, World::engine_config());
    let ids: Vec<String> = (0..config.participants)
        .map(|i| format!("p{}", i + 1))
        .collect();
    for id in &ids {
        world.join(
            id,
            JoinOptions {
                video: Some((config.width, config.height, config.fps, config.bitrate_kbps)),
                simulcast: config.simulcast,
                audio: config.audio,
                ..JoinOptions::default()
            },
        )?;
    }
    let n = ids.len();
    let mut received: Vec<Received> = (0..n).map(|_| Received::default()).collect();
    let mut window_start: Vec<(u32, u64)> = vec![(0, 0); n];
    let mut stage = Stage::Warmup;
    // Warm-up: until everyone sees everyone, in steps of 100 ms.
    let pairs_total = n * (n - 1);
    let warmup_end = world.now() + config.warmup_timeout;
    let mut seen = 0;
    while seen < pairs_total && world.now() < warmup_end {
        world.run_for(Duration::from_millis(100), &mut |i, e, t| {
            record(&mut received, &ids, i, e, t, stage, &window_start)
        })?;
        if let Some(p) = world
            .participants()
            .iter()
            .find(|p| matches!(p.session().phase(), Phase::Refused { .. }))
        {
            return Err(SimError::Join(p.identity().to_owned()));
        }
        seen = received.iter().map(|r| r.seen.len()).sum();
    }
    let warmup_seconds = world.elapsed().as_secs_f64();

    // Measuring.
    stage = Stage::Measuring;
    window_start = world
        .participants()
        .iter()
        .map(|p| (p.video_sent(), p.audio_sent()))
        .collect();
    let stats_start: Vec<Vec<TrackStats>> = world
        .participants()
        .iter()
        .map(|p| p.session().receive_stats())
        .collect();
    let uplink_bytes_at_start: Vec<u64> = (0..n).map(|i| world.uplink_bytes(i)).collect();
    world.run_for(Duration::from_secs_f64(config.seconds), &mut |i, e, t| {
        record(&mut received, &ids, i, e, t, stage, &window_start)
    })?;
    let window_end: Vec<(u32, u64)> = world
        .participants()
        .iter()
        .map(|p| (p.video_sent(), p.audio_sent()))
        .collect();
    // Draining: what was in flight arrives; nothing new is counted.
    world.run_for(
        Duration::from_millis(500) + config.profile.link.delay * 4,
        &mut |i, e, t| record(&mut received, &ids, i, e, t, stage, &window_start),
    )?;

    let mut pairs = Vec::new();
    let mut audio = Vec::new();
    for (ri, receiver) in world.participants().iter().enumerate() {
        for (pi, publisher) in ids.iter().enumerate() {
            if pi == ri {
                continue;
            }
            let (from_seq, from_audio) = window_start[pi];
            let (to_seq, to_audio) = window_end[pi];
            let frames_sent = to_seq.saturating_sub(from_seq) as u64;
            let got: Vec<&(u32, f64)> = received[ri]
                .video
                .get(publisher)
                .map(|v| {
                    v.iter()
                        .filter(|(s, _)| *s >= from_seq && *s < to_seq)
                        .collect()
                })
                .unwrap_or_default();
            let unique: BTreeSet<u32> = got.iter().map(|(s, _)| *s).collect();
            let mut latencies: Vec<f64> = got.iter().map(|(_, l)| *l).collect();
            let decoded = unique.len() as u64;
            let end_stats = receiver.session().receive_stats();
            let find = |list: &[TrackStats], source: TrackSource| {
                let id = source.track_id(publisher);
                list.iter().find(|t| t.track == id).cloned()
            };
            let stats = find(&end_stats, TrackSource::Camera);
            let start = find(&stats_start[ri], TrackSource::Camera);
            let mic = find(&end_stats, TrackSource::Microphone);
            let mic_start = find(&stats_start[ri], TrackSource::Microphone);
            pairs.push(PairReport {
                from: publisher.clone(),
                to: receiver.identity().to_owned(),
                frames_sent,
                frames_received: decoded + stats.as_ref().map_or(0, |s| s.frames_lost),
                frames_decoded: decoded,
                loss_pct: loss_pct(frames_sent, decoded),
                latency_ms: Percentiles::of(&mut latencies),
                kbps: stats.as_ref().map_or(0.0, |s| s.kbps()),
                width: stats.as_ref().map_or(0, |s| s.frame_size.0),
                jitter_ms: stats.as_ref().and_then(|s| s.jitter_ms),
                rtt_ms: None,
                repair: VideoRepair::between(start.as_ref(), stats.as_ref()),
            });
            if config.audio {
                let sent = to_audio.saturating_sub(from_audio);
                let counter =
                    |t: &Option<TrackStats>, f: fn(&TrackStats) -> f64| t.as_ref().map_or(0.0, f);
                let concealed_ms = counter(&mic, |t| t.audio_concealed_ms)
                    - counter(&mic_start, |t| t.audio_concealed_ms);
                let fec = counter(&mic, |t| t.audio_fec_frames as f64)
                    - counter(&mic_start, |t| t.audio_fec_frames as f64);
                let copies = counter(&mic, |t| t.audio_copy_frames as f64)
                    - counter(&mic_start, |t| t.audio_copy_frames as f64);
                // Events include concealed frames; played ones are the rest.
                let got = received[ri]
                    .audio
                    .get(publisher)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub((concealed_ms / 20.0).round() as u64)
                    .min(sent);
                audio.push(AudioPairReport {
                    from: publisher.clone(),
                    to: receiver.identity().to_owned(),
                    frames_sent: sent,
                    frames_received: got,
                    loss_pct: loss_pct(sent, got),
                    fec_frames: fec as u64,
                    copy_frames: copies as u64,
                    concealed_ms,
                    buffer_delay_ms: counter(&mic, |t| t.buffer_delay_ms),
                });
            }
        }
    }
    let uplinks = world
        .participants()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let bytes = world
                .uplink_bytes(i)
                .saturating_sub(uplink_bytes_at_start[i]);
            let sent_kbps = bytes as f64 * 8.0 / 1000.0 / config.seconds.max(1e-9);
            UplinkReport::new(p.identity(), p.session().send_stats(), sent_kbps)
        })
        .collect();
    let downlinks = downlink_reports(&world.engine().downlinks());
    let server = world.engine().stats();
    Ok(SimReport {
        participants: config.participants,
        profile: config.profile.to_string(),
        warmup_seconds,
        seconds: config.seconds,
        simulated_seconds: world.elapsed().as_secs_f64(),
        real_seconds: real_start.elapsed().as_secs_f64(),
        pairs,
        audio,
        network: world.network().stats(),
        keyframe_requests: server.keyframe_requests,
        publishers_replaced: server.publisher_restarts,
        subscribers_replaced: server.subscriber_restarts,
        retransmitted: server.retransmitted,
        uplinks,
        downlinks,
    })
}

/// Downlink lines from the server's view of its subscribers.
pub fn downlink_reports(downlinks: &[crate::sfu::engine::Downlink]) -> Vec<DownlinkReport> {
    downlinks
        .iter()
        .map(|d| DownlinkReport {
            participant: d.identity.clone(),
            estimate_kbps: d.estimate.bps().unwrap_or(0) as f64 / 1000.0,
            delay_based_kbps: d.estimate.delay_based_bps / 1000.0,
            loss_based_kbps: d.estimate.loss_based_bps / 1000.0,
            videos: d.videos,
            paused: d.paused,
            lowered: d.lowered,
        })
        .collect()
}

/// Notes what participant `i` received.
fn record(
    received: &mut [Received],
    ids: &[String],
    i: usize,
    event: RoomEvent,
    elapsed: Duration,
    stage: Stage,
    window_start: &[(u32, u64)],
) {
    let r = &mut received[i];
    match event {
        RoomEvent::VideoFrame {
            participant, frame, ..
        } => {
            let Some(stamp) = read_stamp(&frame) else {
                return;
            };
            r.seen.insert(participant.clone());
            let Some(pi) = ids.iter().position(|id| *id == participant) else {
                return;
            };
            if stage == Stage::Warmup || stamp.seq < window_start[pi].0 {
                return;
            }
            let latency =
                (elapsed.as_micros() as u64).saturating_sub(stamp.capture_us) as f64 / 1000.0;
            r.video
                .entry(participant)
                .or_default()
                .push((stamp.seq, latency));
        }
        RoomEvent::AudioFrame { participant, .. } if stage == Stage::Measuring => {
            *r.audio.entry(participant).or_default() += 1;
        }
        _ => {}
    }
}

fn loss_pct(sent: u64, got: u64) -> f64 {
    if sent == 0 {
        0.0
    } else {
        100.0 * sent.saturating_sub(got) as f64 / sent as f64
    }
}
