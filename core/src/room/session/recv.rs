//! The receiving side of one subscriber slot: RTP packets in (already decrypted and in
//! arrival order), access units reassembled, pictures and audio decoded, loss counted, and
//! the decision to ask for a keyframe. Pure: the caller passes `now`.

use std::time::{Duration, Instant};

use rtc::rtp;

use crate::codec::rtp::{Assembled, FrameAssembler};
use crate::codec::{H264Decoder, OpusDecoder};
use crate::media::Channels;
use crate::room::RoomEvent;
use crate::signal::TrackKind;

/// What one remote track delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackStats {
    /// Track id (`identity/source`).
    pub track: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// RTP packets received.
    pub packets: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Packets missing by sequence number.
    pub packets_lost: u64,
    /// Pictures (or audio frames) decoded.
    pub frames_decoded: u64,
    /// Pictures dropped for missing packets or decoder errors.
    pub frames_lost: u64,
    /// Keyframe requests sent.
    pub keyframes_requested: u64,
    /// Seconds between the first and the last packet.
    pub seconds: f64,
    /// Inter-arrival jitter in ms (RFC 3550).
    pub jitter_ms: Option<f64>,
    /// Round-trip time to the server on the receiving connection in ms, filled by
    /// [`Room::stats`](crate::room::Room::stats).
    pub rtt_ms: Option<f64>,
}

impl TrackStats {
    pub(crate) fn new(track: &str, kind: TrackKind) -> Self {
        Self {
            track: track.to_owned(),
            kind,
            packets: 0,
            bytes: 0,
            packets_lost: 0,
            frames_decoded: 0,
            frames_lost: 0,
            keyframes_requested: 0,
            seconds: 0.0,
            jitter_ms: None,
            rtt_ms: None,
        }
    }

    /// Average received bitrate in kbit/s.
    pub fn kbps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 * 8.0 / self.seconds / 1000.0
        } else {
            0.0
        }
    }

    /// Average decoded frame rate.
    pub fn fps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.frames_decoded as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// RFC 3550 inter-arrival jitter, in milliseconds. webrtc-rs's own statistics do not fill
/// this in, so the receiver computes it from arrival times and RTP timestamps.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct JitterEstimator {
    last: Option<(Instant, u32)>,
    jitter_ms: f64,
}

impl JitterEstimator {
    /// Feeds one packet that arrived at `arrival` with RTP timestamp `ts` on a `clock_khz`
    /// clock; returns the current estimate.
    pub fn update(&mut self, arrival: Instant, ts: u32, clock_khz: f64) -> f64 {
        if let Some((prev_arrival, prev_ts)) = self.last {
            let arrival_ms = arrival
                .saturating_duration_since(prev_arrival)
                .as_secs_f64()
                * 1000.0;
            let media_ms = ts.wrapping_sub(prev_ts) as i32 as f64 / clock_khz;
            let d = (arrival_ms - media_ms).abs();
            self.jitter_ms += (d - self.jitter_ms) / 16.0;
        }
        self.last = Some((arrival, ts));
        self.jitter_ms
    }
}

/// Rate limit for keyframe requests from one receiver.
const PLI_INTERVAL: Duration = Duration::from_millis(200);

/// One receive slot's pipeline.
pub(crate) struct RecvSlot {
    kind: TrackKind,
    assembler: FrameAssembler,
    video: Option<H264Decoder>,
    audio: Option<OpusDecoder>,
    last_pli: Option<Instant>,
    expected_audio_seq: Option<u16>,
    first_packet: Option<Instant>,
    jitter: JitterEstimator,
}

impl RecvSlot {
    pub fn new(kind: TrackKind) -> Self {
        Self {
            kind,
            assembler: FrameAssembler::new(),
            video: None,
            audio: None,
            last_pli: None,
            expected_audio_seq: None,
            first_packet: None,
            jitter: JitterEstimator::default(),
        }
    }

    /// Takes one packet of `track_id`; decoded pictures and audio go to `events` (when
    /// `decode` is on; otherwise packets are only counted), counters to `stats`. Returns
    /// whether to send a keyframe request now.
    pub fn on_packet(
        &mut self,
        now: Instant,
        track_id: &str,
        packet: &rtp::Packet,
        decode: bool,
        stats: &mut TrackStats,
        events: &mut Vec<RoomEvent>,
    ) -> bool {
        let first = *self.first_packet.get_or_insert(now);
        let clock_khz = match self.kind {
            TrackKind::Video => 90.0,
            TrackKind::Audio => 48.0,
        };
        stats.jitter_ms = Some(self.jitter.update(now, packet.header.timestamp, clock_khz));
        stats.packets += 1;
        stats.bytes += packet.payload.len() as u64;
        stats.seconds = now.duration_since(first).as_secs_f64();
        if !decode {
            // Counting only (load tests): no reassembly, no decoding.
            return false;
        }
        let participant = track_id.split('/').next().unwrap_or_default();
        let mut want_keyframe = false;
        match self.kind {
            TrackKind::Video => {
                let lost_before = self.assembler.packets_lost();
                for item in self.assembler.push(
                    packet.header.sequence_number,
                    packet.header.timestamp,
                    packet.header.marker,
                    &packet.payload,
                ) {
                    match item {
                        Assembled::Frame { data, timestamp } => {
                            if self.video.is_none() {
                                self.video = H264Decoder::new().ok();
                            }
                            let Some(decoder) = self.video.as_mut() else {
                                continue;
                            };
                            match decoder.decode(&data) {
                                Ok(Some(mut frame)) => {
                                    frame.set_pts_us(timestamp as i64 * 1000 / 90);
                                    stats.frames_decoded += 1;
                                    events.push(RoomEvent::VideoFrame {
                                        participant: participant.to_owned(),
                                        track: track_id.to_owned(),
                                        frame,
                                    });
                                }
                                Ok(None) => {}
                                Err(_) => {
                                    stats.frames_lost += 1;
                                    want_keyframe = true;
                                }
                            }
                        }
                        Assembled::Lost { .. } => {
                            stats.frames_lost += 1;
                            want_keyframe = true;
                        }
                    }
                }
                stats.packets_lost += self.assembler.packets_lost() - lost_before;
                if self.video.as_ref().is_some_and(|d| d.keyframe_needed()) {
                    want_keyframe = true;
                }
            }
            TrackKind::Audio => {
                let seq = packet.header.sequence_number;
                let mut lost = 0;
                if let Some(expected) = self.expected_audio_seq {
                    let gap = seq.wrapping_sub(expected);
                    if gap >= 0x8000 {
                        return false; // late
                    }
                    lost = gap as u64;
                }
                stats.packets_lost += lost;
                self.expected_audio_seq = Some(seq.wrapping_add(1));
                if self.audio.is_none() {
                    self.audio = OpusDecoder::new(Channels::Mono).ok();
                }
                if let Some(decoder) = self.audio.as_mut() {
                    let pts = packet.header.timestamp as i64 * 1000 / 48;
                    for _ in 0..lost.min(10) {
                        let _ = decoder.conceal(960, pts);
                    }
                    if let Ok(frame) = decoder.decode(&packet.payload, pts) {
                        stats.frames_decoded += 1;
                        events.push(RoomEvent::AudioFrame {
                            participant: participant.to_owned(),
                            track: track_id.to_owned(),
                            frame,
                        });
                    }
                }
            }
        }
        if want_keyframe
            && self
                .last_pli
                .is_none_or(|t| now.duration_since(t) >= PLI_INTERVAL)
        {
            self.last_pli = Some(now);
            stats.keyframes_requested += 1;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_zero_for_a_steady_stream_and_grows_with_variation() {
        let t0 = Instant::now();
        let mut j = JitterEstimator::default();
        for i in 0..100u32 {
            j.update(t0 + Duration::from_millis(20 * i as u64), i * 960, 48.0);
        }
        assert!(j.jitter_ms < 1e-6);
        let mut k = JitterEstimator::default();
        for i in 0..200u32 {
            let wobble = if i % 2 == 0 { 0 } else { 10 };
            k.update(
                t0 + Duration::from_millis(20 * i as u64 + wobble),
                i * 960,
                48.0,
            );
        }
        // Alternating 10 ms late and on time: |D| is 10 ms every packet.
        assert!((k.jitter_ms - 10.0).abs() < 0.5, "{}", k.jitter_ms);
    }
}
