//! One publisher's uplink under congestion control, second by second, on simulated time:
//! what it sent, what it estimated, what its encoder aimed at, and the queue its link built;
//! and RFC 8867 §5.1's capacity steps measured on it ([`rfc8867`]).
//!
//! ```no_run
//! // Four 5-second phases of RFC 8867 §5.1 (the RFC's are 40/20/20/20 s).
//! let report = madang::sim::uplink::rfc8867(5).unwrap();
//! println!("under the new capacity {:?} s after the drop", report.drop.under_capacity_after_s);
//! ```

use std::time::Duration;

use serde::Serialize;

use super::{JoinOptions, SimError, World};
use crate::netsim::{Direction, LinkConfig, Profile};
use crate::signal::{Role, TrackKind};

/// What [`run`] does.
#[derive(Clone, Debug)]
pub struct UplinkConfig {
    /// Conditions of every other link (the viewer's, the signal's).
    pub profile: Profile,
    /// The publisher's uplink, when it differs from `profile`.
    pub uplink: Option<LinkConfig>,
    /// The publisher's camera: width, height, fps, kbit/s (with audio).
    pub video: (u32, u32, u32, u32),
    /// Seconds to run (from the publisher's join).
    pub seconds: u32,
    /// Seed of the run.
    pub seed: u64,
}

/// One second of the uplink.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct UplinkSecond {
    /// End of the second, seconds since the start.
    pub t: f64,
    /// The link's capacity, kbit/s (0: no cap).
    pub capacity_kbps: f64,
    /// What the publisher offered the link, kbit/s.
    pub sent_kbps: f64,
    /// The uplink estimate, kbit/s.
    pub estimate_kbps: f64,
    /// Its delay-based half, kbit/s.
    pub delay_based_kbps: f64,
    /// Its loss-based half, kbit/s.
    pub loss_based_kbps: f64,
    /// The video encoder's target, kbit/s.
    pub video_target_kbps: f64,
    /// The longest queueing delay on the link in this second (sampled every 10 ms), ms.
    pub queue_max_ms: f64,
}

/// What [`run`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct UplinkRun {
    /// Second by second.
    pub seconds: Vec<UplinkSecond>,
    /// Queueing delay every 10 ms: (seconds since the start, ms).
    pub queue: Vec<(f64, f64)>,
    /// Audio packets the viewer received.
    pub audio_received: u64,
    /// Audio packets the viewer counted lost.
    pub audio_lost: u64,
}

impl UplinkRun {
    /// Share of the audio lost on the way, 0–1.
    pub fn audio_loss(&self) -> f64 {
        self.audio_lost as f64 / (self.audio_received + self.audio_lost).max(1) as f64
    }

    /// The `q`-quantile of the queueing delay sampled in `from..to` seconds, ms.
    pub fn queue_quantile(&self, from: f64, to: f64, q: f64) -> f64 {
        let mut values: Vec<f64> = self
            .queue
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|s| s.1)
            .collect();
        if values.is_empty() {
            return 0.0;
        }
        values.sort_by(f64::total_cmp);
        values[((values.len() - 1) as f64 * q).round() as usize]
    }
}

/// A publisher ("field", camera and microphone) and a viewer ("hall") in one room; the
/// publisher's uplink as `config.uplink` says. Runs `config.seconds` and samples the uplink.
pub fn run(config: &UplinkConfig) -> Result<UplinkRun, SimError> {
    let mut world = World::new(config.profile.clone(), config.seed, World::engine_config());
    let field = world.join(
        "field",
        JoinOptions {
            video: Some(config.video),
            audio: true,
            ..JoinOptions::default()
        },
    )?;
    let hall = world.join(
        "hall",
        JoinOptions {
            role: Role::Viewer,
            video: None,
            audio: false,
            ..JoinOptions::default()
        },
    )?;
    if let Some(link) = &config.uplink {
        world.set_link(field, Direction::Up, link.clone());
    }
    let uplink = config.uplink.clone();
    let mut seconds = Vec::new();
    let mut queue = Vec::new();
    let mut last_bytes = 0;
    for s in 1..=config.seconds {
        let mut queue_max: f64 = 0.0;
        for _ in 0..100 {
            world.run_for(Duration::from_millis(10), &mut |_, _, _| {})?;
            let q = world
                .network()
                .queue_delay(field, Direction::Up, world.now())
                .as_secs_f64()
                * 1000.0;
            queue.push((world.elapsed().as_secs_f64(), q));
            queue_max = queue_max.max(q);
        }
        let bytes = world.uplink_bytes(field);
        let session = world.participant(field).session();
        let estimate = session.uplink_estimate();
        // The capacity in the middle of the second (a step falls on a whole second).
        let capacity = uplink
            .as_ref()
            .unwrap_or(&config.profile.link)
            .rate_at(world.elapsed().saturating_sub(Duration::from_millis(500)))
            .unwrap_or(0);
        seconds.push(UplinkSecond {
            t: s as f64,
            capacity_kbps: capacity as f64 / 1000.0,
            sent_kbps: bytes.saturating_sub(last_bytes) as f64 * 8.0 / 1000.0,
            estimate_kbps: estimate.bps().unwrap_or(0) as f64 / 1000.0,
            delay_based_kbps: estimate.delay_based_bps / 1000.0,
            loss_based_kbps: estimate.loss_based_bps / 1000.0,
            video_target_kbps: session.video_target_bps().unwrap_or(0) as f64 / 1000.0,
            queue_max_ms: queue_max,
        });
        last_bytes = bytes;
    }
    let (audio_received, audio_lost) = world
        .participant(hall)
        .session()
        .receive_stats()
        .iter()
        .filter(|t| t.kind == TrackKind::Audio)
        .fold((0, 0), |(r, l), t| (r + t.packets, l + t.packets_lost));
    Ok(UplinkRun {
        seconds,
        queue,
        audio_received,
        audio_lost,
    })
}

/// RFC 8867 §5.1's capacity steps, each phase `phase` seconds long (the RFC's are
/// 40/20/20/20 s): 1.0 → 2.5 → 0.6 → 1.0 Mbit/s, 50 ms one way, a drop-tail queue of
/// 300 ms at 1 Mbit/s.
pub fn rfc8867_link(phase: u64) -> LinkConfig {
    let s = Duration::from_secs;
    LinkConfig {
        delay: Duration::from_millis(50),
        rate_bps: Some(1_000_000),
        queue_bytes: 37_500,
        rate_changes: vec![
            (s(phase), 2_500_000),
            (s(2 * phase), 600_000),
            (s(3 * phase), 1_000_000),
        ],
        ..LinkConfig::default()
    }
}

/// How the sender met a capacity drop.
#[derive(Clone, Debug, Serialize)]
pub struct DropReport {
    /// Capacity before and after, kbit/s.
    pub from_kbps: f64,
    /// Capacity after, kbit/s.
    pub to_kbps: f64,
    /// Seconds from the drop until a whole second sent no more than the new capacity.
    pub under_capacity_after_s: Option<f64>,
    /// What was sent on average from 2 s after the drop to the end of the phase, kbit/s.
    pub mean_sent_kbps: f64,
    /// Queueing delay p95 from 2 s after the drop to the end of the phase, ms.
    pub queue_p95_ms: f64,
}

/// How the sender met a capacity rise.
#[derive(Clone, Debug, Serialize)]
pub struct RiseReport {
    /// Capacity before, kbit/s.
    pub from_kbps: f64,
    /// Capacity after, kbit/s.
    pub to_kbps: f64,
    /// Seconds from the rise until a whole second used 80 % of the new capacity.
    pub used_80_after_s: Option<f64>,
    /// What was sent in the last 5 s of the phase, as a share of the capacity.
    pub utilisation_end: f64,
}

/// RFC 8867 §5.1 on a madang publisher (1280×720 at up to 2.5 Mbit/s, with audio).
#[derive(Clone, Debug, Serialize)]
pub struct Rfc8867Report {
    /// Seconds per phase.
    pub phase_seconds: u64,
    /// 1.0 → 2.5 Mbit/s.
    pub first_rise: RiseReport,
    /// 2.5 → 0.6 Mbit/s.
    pub drop: DropReport,
    /// 0.6 → 1.0 Mbit/s.
    pub second_rise: RiseReport,
    /// Audio packets lost on the way, percent.
    pub audio_loss_pct: f64,
    /// The run itself.
    pub run: UplinkRun,
}

/// Runs RFC 8867 §5.1's steps with `phase`-second phases and measures each step.
pub fn rfc8867(phase: u64) -> Result<Rfc8867Report, SimError> {
    let phase = phase.max(5);
    let run = run(&UplinkConfig {
        profile: Profile::lan(),
        uplink: Some(rfc8867_link(phase)),
        video: (1280, 720, 30, 2500),
        seconds: 4 * phase as u32,
        seed: 1,
    })?;
    let sent = |t: u64| run.seconds[t as usize - 1].sent_kbps;
    let rise = |start: u64, from: f64, to: f64| RiseReport {
        from_kbps: from,
        to_kbps: to,
        used_80_after_s: (start + 1..=start + phase)
            .find(|&t| sent(t) >= 0.8 * to)
            .map(|t| (t - start) as f64),
        utilisation_end: (start + phase - 4..=start + phase).map(sent).sum::<f64>() / 5.0 / to,
    };
    let drop_at = 2 * phase;
    let drop = DropReport {
        from_kbps: 2500.0,
        to_kbps: 600.0,
        under_capacity_after_s: (drop_at + 1..=3 * phase)
            .find(|&t| sent(t) <= 600.0)
            .map(|t| (t - drop_at) as f64),
        mean_sent_kbps: (drop_at + 3..=3 * phase).map(sent).sum::<f64>() / (phase - 2) as f64,
        queue_p95_ms: run.queue_quantile((drop_at + 2) as f64, (3 * phase) as f64, 0.95),
    };
    Ok(Rfc8867Report {
        phase_seconds: phase,
        first_rise: rise(phase, 1000.0, 2500.0),
        drop,
        second_rise: rise(3 * phase, 600.0, 1000.0),
        audio_loss_pct: 100.0 * run.audio_loss(),
        run,
    })
}
