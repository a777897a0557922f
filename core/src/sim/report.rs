//! What a measured conference delivered, per ordered pair of participants: the report
//! `madang demo` prints, on real sockets or on simulated time.

use serde::Serialize;

use crate::room::{SendStats, TrackStats};

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    /// Percentiles of `samples` (ms); zeros when empty.
    pub fn of(samples: &mut [f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Self {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
        }
    }
}

/// What one participant received of another's video during the measured period.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PairReport {
    /// Publisher.
    pub from: String,
    /// Receiver.
    pub to: String,
    /// Pictures the publisher sent in the period.
    pub frames_sent: u64,
    /// Pictures that arrived (decoded or dropped as incomplete).
    pub frames_received: u64,
    /// Pictures decoded with their stamp read back.
    pub frames_decoded: u64,
    /// Share of sent pictures not decoded, percent.
    pub loss_pct: f64,
    /// Glass-to-glass latency: capture time in the stamp → decoded picture.
    pub latency_ms: Percentiles,
    /// Received video bitrate, kbit/s.
    pub kbps: f64,
    /// Width of the last picture decoded: the simulcast layer received at the end (0 when
    /// none came).
    pub width: u32,
    /// Inter-arrival jitter of the video at the receiver, ms.
    pub jitter_ms: Option<f64>,
    /// Round-trip time between the receiver and the server, ms.
    pub rtt_ms: Option<f64>,
    /// What the receiver did about loss.
    #[serde(flatten)]
    pub repair: VideoRepair,
}

/// What a receiver did about loss on one video track during the measured period.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct VideoRepair {
    /// Freezes: no new picture for more than three frame intervals
    /// and more than one interval + 150 ms.
    pub freezes: u64,
    /// Total length of the freezes, ms.
    pub freeze_ms: f64,
    /// Keyframe requests the receiver sent.
    pub keyframe_requests: u64,
    /// NACK entries the receiver sent.
    pub nacks_sent: u64,
    /// Packets repaired by retransmission.
    pub packets_recovered: u64,
    /// Jitter-buffer delay at the end, ms.
    pub buffer_delay_ms: f64,
}

impl VideoRepair {
    /// The change from `start` to `end` (counters), and the delay at `end`.
    pub fn between(start: Option<&TrackStats>, end: Option<&TrackStats>) -> Self {
        let Some(end) = end else {
            return Self::default();
        };
        let zero = TrackStats::new(&end.track, end.kind);
        let start = start.unwrap_or(&zero);
        Self {
            freezes: end.freezes - start.freezes,
            freeze_ms: end.freeze_ms - start.freeze_ms,
            keyframe_requests: end.keyframes_requested - start.keyframes_requested,
            nacks_sent: end.nacks_sent - start.nacks_sent,
            packets_recovered: end.packets_recovered - start.packets_recovered,
            buffer_delay_ms: end.buffer_delay_ms,
        }
    }
}

/// What one participant received of another's audio.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AudioPairReport {
    /// Publisher.
    pub from: String,
    /// Receiver.
    pub to: String,
    /// 20 ms frames the publisher sent in the period.
    pub frames_sent: u64,
    /// Frames played by the receiver in the period (from their own packet or rebuilt from
    /// FEC; concealed ones not counted).
    pub frames_received: u64,
    /// Share not played, percent.
    pub loss_pct: f64,
    /// Frames rebuilt from in-band FEC.
    pub fec_frames: u64,
    /// Frames played from a copy in a later packet (redundant audio).
    pub copy_frames: u64,
    /// Audio concealed, ms.
    pub concealed_ms: f64,
    /// Playout delay at the end, ms.
    pub buffer_delay_ms: f64,
}

/// Chat messages.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct DataReport {
    /// Messages sent (each to everyone else).
    pub sent: u64,
    /// Deliveries received.
    pub received: u64,
    /// Deliveries expected (sent × (participants − 1)).
    pub expected: u64,
}

/// Result of a synthetic conference.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ConferenceReport {
    /// Participants.
    pub participants: usize,
    /// Measured seconds.
    pub seconds: f64,
    /// Seconds it took until everyone saw everyone.
    pub warmup_seconds: f64,
    /// Video, per ordered pair.
    pub pairs: Vec<PairReport>,
    /// Audio, per ordered pair.
    pub audio: Vec<AudioPairReport>,
    /// Chat.
    pub data_messages: DataReport,
    /// Each publisher's uplink at the end.
    pub uplinks: Vec<UplinkReport>,
    /// Each subscriber's downlink as the server saw it at the end (empty where the server
    /// is not in reach).
    pub downlinks: Vec<DownlinkReport>,
}

impl UplinkReport {
    /// The line of `participant`, from what its session reports of its publishing
    /// connection, with what it offered its link (`sent_kbps`).
    pub fn new(participant: &str, sent: &SendStats, sent_kbps: f64) -> Self {
        let kbps = |bps: u64| bps as f64 / 1000.0;
        Self {
            participant: participant.to_owned(),
            estimate_kbps: kbps(sent.uplink_estimate_bps),
            delay_based_kbps: kbps(sent.uplink_delay_based_bps),
            loss_based_kbps: kbps(sent.uplink_loss_based_bps),
            video_target_kbps: kbps(sent.video_target_bps),
            audio_target_kbps: kbps(sent.audio_target_bps),
            sent_kbps,
        }
    }
}

/// The server's estimate of one subscriber's downlink at the end of a run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DownlinkReport {
    /// The subscriber.
    pub participant: String,
    /// The estimate, kbit/s.
    pub estimate_kbps: f64,
    /// Its delay-based half, kbit/s.
    pub delay_based_kbps: f64,
    /// Its loss-based half, kbit/s.
    pub loss_based_kbps: f64,
    /// Videos it is subscribed to.
    pub videos: usize,
    /// Of those, paused by the server because the downlink could not carry them.
    pub paused: usize,
    /// Of those forwarded, at a smaller simulcast layer than the one its tile needs (the
    /// largest flowing without a layout).
    pub lowered: usize,
}

/// A publisher's uplink under congestion control at the end of a run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct UplinkReport {
    /// The publisher.
    pub participant: String,
    /// The uplink estimate, kbit/s.
    pub estimate_kbps: f64,
    /// Its delay-based half, kbit/s.
    pub delay_based_kbps: f64,
    /// Its loss-based half, kbit/s.
    pub loss_based_kbps: f64,
    /// The video encoder's target, kbit/s.
    pub video_target_kbps: f64,
    /// The Opus encoder's target, kbit/s (16 under pressure, else 32; 0 without audio).
    pub audio_target_kbps: f64,
    /// What the publisher offered its link over the measured seconds, kbit/s (media,
    /// repairs, control).
    pub sent_kbps: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<f64> = (1..=100).map(|i| i as f64).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p95, p.p99), (51.0, 95.0, 99.0));
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
    }
}
