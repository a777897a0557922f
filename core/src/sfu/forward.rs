//! Forwarding policy for one published track to its subscribers: pure code, no I/O, time
//! passed in.
//!
//! - [`DownTrack`] rewrites each packet's SSRC, sequence number, timestamp and payload type
//!   for one subscriber, so that the subscriber sees one continuous stream: no gap it cannot
//!   explain when it starts mid-stream (video waits for a keyframe, and numbering starts
//!   there) or when the publisher's stream restarts with a new SSRC.
//! - [`RetransmitCache`] keeps the publisher's recent packets to answer NACKs.
//! - [`KeyframeLimiter`] coalesces keyframe requests from many subscribers into at most one
//!   per interval towards the publisher.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::rtp::seq_after;

/// The fields of an incoming RTP packet that forwarding reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InHeader {
    /// Publisher's SSRC.
    pub ssrc: u32,
    /// Publisher's sequence number.
    pub seq: u16,
    /// Publisher's RTP timestamp.
    pub timestamp: u32,
    /// Marker bit (last packet of a video frame).
    pub marker: bool,
    /// Whether this packet starts a keyframe (see
    /// [`rtp_payload_starts_keyframe`](crate::codec::nal::rtp_payload_starts_keyframe)); always
    /// true for audio.
    pub keyframe_start: bool,
}

/// The rewritten header fields for one subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutHeader {
    /// The SSRC negotiated on the subscriber's leg.
    pub ssrc: u32,
    /// Continuous sequence number on that leg.
    pub seq: u16,
    /// Continuous timestamp on that leg.
    pub timestamp: u32,
    /// The payload type negotiated on that leg.
    pub payload_type: u8,
    /// Marker bit, unchanged.
    pub marker: bool,
}

/// What happened to a packet offered to a [`DownTrack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forwarding {
    /// Send it with these header fields.
    Send(OutHeader),
    /// Dropped: the subscriber waits for a keyframe (ask the publisher for one).
    WaitingForKeyframe,
    /// Dropped: older than what was already sent (reordered or duplicate).
    Stale,
    /// Dropped: the subscriber paused this track.
    Paused,
}

/// Sequence-number and timestamp mapping of one source epoch (one publisher SSRC).
#[derive(Clone, Copy, Debug)]
struct Epoch {
    in_ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
    highest_in_seq: u16,
}

/// One subscriber's view of one published track.
#[derive(Clone, Debug)]
pub struct DownTrack {
    out_ssrc: u32,
    payload_type: u8,
    video: bool,
    paused: bool,
    epoch: Option<Epoch>,
    /// Last sent sequence number and timestamp on the leg (for rebasing).
    last_out: Option<(u16, u32)>,
    /// Timestamp step to leave between epochs (one frame at 30 fps, or 20 ms of audio).
    epoch_gap: u32,
    packets_sent: u64,
    packets_dropped: u64,
}

impl DownTrack {
    /// A video (`video = true`) or audio down-track sending with `out_ssrc` and `payload_type`
    /// on the subscriber's leg.
    pub fn new(out_ssrc: u32, payload_type: u8, video: bool) -> Self {
        Self {
            out_ssrc,
            payload_type,
            video,
            paused: false,
            epoch: None,
            last_out: None,
            epoch_gap: if video { 3000 } else { 960 },
            packets_sent: 0,
            packets_dropped: 0,
        }
    }

    /// The SSRC this down-track sends with.
    pub fn out_ssrc(&self) -> u32 {
        self.out_ssrc
    }

    /// Stops (or resumes) sending; on resume video waits for a keyframe again.
    pub fn set_paused(&mut self, paused: bool) {
        if paused && !self.paused {
            self.epoch = None;
        }
        self.paused = paused;
    }

    /// Whether this down-track cannot send until a keyframe arrives.
    pub fn needs_keyframe(&self) -> bool {
        self.video && !self.paused && self.epoch.is_none()
    }

    /// Packets sent and dropped so far.
    pub fn counters(&self) -> (u64, u64) {
        (self.packets_sent, self.packets_dropped)
    }

    /// Decides about one packet and rewrites its header.
    pub fn forward(&mut self, h: &InHeader) -> Forwarding {
        if self.paused {
            self.packets_dropped += 1;
            return Forwarding::Paused;
        }
        let epoch = match self.epoch {
            Some(e) if e.in_ssrc == h.ssrc => e,
            _ => {
                // A new source epoch: the first packet for this subscriber, or the publisher
                // restarted its stream. Video can only start on a keyframe.
                if self.video && !h.keyframe_start {
                    self.packets_dropped += 1;
                    return Forwarding::WaitingForKeyframe;
                }
                let (next_seq, next_ts) = match self.last_out {
                    Some((seq, ts)) => (seq.wrapping_add(1), ts.wrapping_add(self.epoch_gap)),
                    None => (h.seq, h.timestamp),
                };
                let e = Epoch {
                    in_ssrc: h.ssrc,
                    seq_offset: next_seq.wrapping_sub(h.seq),
                    ts_offset: next_ts.wrapping_sub(h.timestamp),
                    highest_in_seq: h.seq.wrapping_sub(1),
                };
                self.epoch = Some(e);
                e
            }
        };
        if seq_after(h.seq, epoch.highest_in_seq) {
            if let Some(e) = &mut self.epoch {
                e.highest_in_seq = h.seq;
            }
        } else if h.seq == epoch.highest_in_seq || epoch.highest_in_seq.wrapping_sub(h.seq) > 1000 {
            // A duplicate of the newest packet, or far older than anything recent. A packet
            // reordered on the way in is still mapped exactly and goes through.
            self.packets_dropped += 1;
            return Forwarding::Stale;
        }
        let out = OutHeader {
            ssrc: self.out_ssrc,
            seq: h.seq.wrapping_add(epoch.seq_offset),
            timestamp: h.timestamp.wrapping_add(epoch.ts_offset),
            payload_type: self.payload_type,
            marker: h.marker,
        };
        if self.last_out.is_none_or(|(seq, _)| seq_after(out.seq, seq)) {
            self.last_out = Some((out.seq, out.timestamp));
        }
        self.packets_sent += 1;
        Forwarding::Send(out)
    }

    /// The publisher's sequence number behind a sequence number this subscriber NACKed, if it
    /// belongs to the current epoch.
    pub fn publisher_seq(&self, out_seq: u16) -> Option<(u32, u16)> {
        let e = self.epoch?;
        Some((e.in_ssrc, out_seq.wrapping_sub(e.seq_offset)))
    }

    /// The header to resend a cached packet with (same mapping as the original send).
    pub fn rewrite(&self, h: &InHeader) -> Option<OutHeader> {
        let e = self.epoch.filter(|e| e.in_ssrc == h.ssrc)?;
        Some(OutHeader {
            ssrc: self.out_ssrc,
            seq: h.seq.wrapping_add(e.seq_offset),
            timestamp: h.timestamp.wrapping_add(e.ts_offset),
            payload_type: self.payload_type,
            marker: h.marker,
        })
    }
}

/// Recent packets of one published track, by sequence number, for retransmission.
#[derive(Clone, Debug)]
pub struct RetransmitCache {
    slots: Vec<Option<(InHeader, Bytes)>>,
}

impl RetransmitCache {
    /// Keeps the last `capacity` packets (rounded up to a power of two).
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: vec![None; capacity.next_power_of_two().clamp(16, 1 << 15)],
        }
    }

    fn index(&self, seq: u16) -> usize {
        seq as usize & (self.slots.len() - 1)
    }

    /// Remembers a packet; the payload is shared, not copied.
    pub fn insert(&mut self, header: InHeader, payload: Bytes) {
        let i = self.index(header.seq);
        self.slots[i] = Some((header, payload));
    }

    /// The packet with this SSRC and sequence number, if still cached.
    pub fn get(&self, ssrc: u32, seq: u16) -> Option<&(InHeader, Bytes)> {
        self.slots[self.index(seq)]
            .as_ref()
            .filter(|(h, _)| h.seq == seq && h.ssrc == ssrc)
    }
}

/// Lets keyframe requests through to a publisher at most once per interval.
#[derive(Clone, Debug)]
pub struct KeyframeLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl KeyframeLimiter {
    /// At most one request per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether a request arriving at `now` goes to the publisher.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                false
            }
            _ => {
                self.last = Some(now);
                true
            }
        }
    }

    /// Requests coalesced away so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(ssrc: u32, seq: u16, ts: u32, key: bool) -> InHeader {
        InHeader {
            ssrc,
            seq,
            timestamp: ts,
            marker: false,
            keyframe_start: key,
        }
    }

    fn sent(f: Forwarding) -> OutHeader {
        match f {
            Forwarding::Send(h) => h,
            other => panic!("expected Send, got {other:?}"),
        }
    }

    #[test]
    fn video_starts_at_a_keyframe_without_a_gap() {
        let mut d = DownTrack::new(0xaaaa, 102, true);
        assert!(d.needs_keyframe());
        assert_eq!(
            d.forward(&pkt(1, 100, 9000, false)),
            Forwarding::WaitingForKeyframe
        );
        assert_eq!(
            d.forward(&pkt(1, 101, 9000, false)),
            Forwarding::WaitingForKeyframe
        );
        let first = sent(d.forward(&pkt(1, 102, 12000, true)));
        assert_eq!((first.ssrc, first.payload_type), (0xaaaa, 102));
        let second = sent(d.forward(&pkt(1, 103, 12000, false)));
        assert_eq!(second.seq, first.seq.wrapping_add(1));
        assert!(!d.needs_keyframe());
        assert_eq!(d.counters(), (2, 2));
    }

    #[test]
    fn publisher_restart_continues_numbering() {
        let mut d = DownTrack::new(7, 96, true);
        let a = sent(d.forward(&pkt(1, 65534, 1000, true)));
        let b = sent(d.forward(&pkt(1, 65535, 4000, false)));
        let c = sent(d.forward(&pkt(1, 0, 7000, false)));
        assert_eq!(
            (b.seq, c.seq),
            (a.seq.wrapping_add(1), a.seq.wrapping_add(2))
        );
        // New SSRC: wait for its keyframe, then continue where we left off.
        assert_eq!(
            d.forward(&pkt(2, 500, 123, false)),
            Forwarding::WaitingForKeyframe
        );
        let e = sent(d.forward(&pkt(2, 501, 456, true)));
        assert_eq!(e.seq, c.seq.wrapping_add(1));
        assert_eq!(e.timestamp, c.timestamp.wrapping_add(3000));
        assert_eq!(d.publisher_seq(e.seq), Some((2, 501)));
    }

    #[test]
    fn audio_needs_no_keyframe_and_duplicates_are_dropped() {
        let mut d = DownTrack::new(9, 111, false);
        assert!(!d.needs_keyframe());
        let a = sent(d.forward(&pkt(5, 10, 960, false)));
        assert_eq!(d.forward(&pkt(5, 10, 960, false)), Forwarding::Stale);
        // Reordering within the epoch keeps the exact mapping.
        let c = sent(d.forward(&pkt(5, 12, 2880, false)));
        let b = sent(d.forward(&pkt(5, 11, 1920, false)));
        assert_eq!((b.seq, c.seq), (a.seq + 1, a.seq + 2));
    }

    #[test]
    fn pausing_resumes_at_a_keyframe() {
        let mut d = DownTrack::new(9, 96, true);
        sent(d.forward(&pkt(5, 1, 0, true)));
        d.set_paused(true);
        assert_eq!(d.forward(&pkt(5, 2, 0, false)), Forwarding::Paused);
        d.set_paused(false);
        assert_eq!(
            d.forward(&pkt(5, 3, 0, false)),
            Forwarding::WaitingForKeyframe
        );
        let r = sent(d.forward(&pkt(5, 4, 3000, true)));
        assert_eq!(r.seq, 2, "numbering continues without the paused packets");
    }

    #[test]
    fn retransmit_cache_finds_recent_packets_only() {
        let mut c = RetransmitCache::new(64);
        for seq in 0..100u16 {
            c.insert(pkt(1, seq, 0, false), Bytes::from(vec![seq as u8]));
        }
        assert_eq!(c.get(1, 99).unwrap().1[0], 99);
        assert!(c.get(1, 20).is_none(), "evicted");
        assert!(c.get(2, 99).is_none(), "other SSRC");
    }

    #[test]
    fn keyframe_requests_are_coalesced() {
        let t0 = Instant::now();
        let mut l = KeyframeLimiter::new(Duration::from_millis(500));
        assert!(l.allow(t0));
        assert!(!l.allow(t0 + Duration::from_millis(100)));
        assert!(!l.allow(t0 + Duration::from_millis(499)));
        assert!(l.allow(t0 + Duration::from_millis(500)));
        assert_eq!(l.suppressed(), 2);
    }
}
