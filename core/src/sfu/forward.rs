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

use std::collections::VecDeque;
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
    /// Whether it carries the stream's SPS (see
    /// [`rtp_payload_carries_sps`](crate::codec::nal::rtp_payload_carries_sps)): the first
    /// packet of a keyframe, the one a switch between streams starts at.
    pub parameter_sets: bool,
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
    /// Dropped: a simulcast layer other than the one forwarded (see
    /// [`DownTrack::switch_layer`]).
    OtherLayer,
}

/// Sequence-number and timestamp mapping of one source epoch (one publisher SSRC).
#[derive(Clone, Copy, Debug)]
struct Epoch {
    in_ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
    highest_in_seq: u16,
    /// The first sequence number sent on the leg in this epoch.
    first_out_seq: u16,
}

impl Epoch {
    /// Whether `out_seq` was sent in this epoch (given it is not older than `last_out`).
    fn covers(&self, out_seq: u16) -> bool {
        out_seq == self.first_out_seq || seq_after(out_seq, self.first_out_seq)
    }
}

/// One subscriber's view of one published track.
#[derive(Clone, Debug)]
pub struct DownTrack {
    out_ssrc: u32,
    payload_type: u8,
    video: bool,
    paused: bool,
    epoch: Option<Epoch>,
    /// The epoch before the current one, with the last sequence number sent in it: NACKs for
    /// its packets are still answered after a switch.
    previous: Option<(Epoch, u16)>,
    /// Simulcast: the layer (publisher SSRC) to switch to at its next keyframe.
    target: Option<u32>,
    /// Simulcast: only the current layer and the target are forwarded; another SSRC is not
    /// a restart of the stream but another layer.
    layered: bool,
    /// Simulcast: the current layer stops at once, not at the target's keyframe (a switch
    /// down on a congested link).
    cut: bool,
    /// Last sent sequence number and timestamp on the leg (for rebasing), and when.
    last_out: Option<(u16, u32)>,
    last_out_at: Option<Instant>,
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
            previous: None,
            target: None,
            layered: false,
            cut: false,
            last_out: None,
            last_out_at: None,
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
        if paused
            && !self.paused
            && let Some(old) = self.epoch.take()
            && let Some((last, _)) = self.last_out
        {
            // Repairs of what was sent before the pause are still answered.
            self.previous = Some((old, last));
        }
        self.paused = paused;
    }

    /// Whether this down-track cannot send until a keyframe arrives (of the layer it
    /// switches to, when it switches).
    pub fn needs_keyframe(&self) -> bool {
        self.video && !self.paused && (self.epoch.is_none() || self.target.is_some())
    }

    /// Simulcast: forward the layer the publisher sends with `ssrc` from that layer's next
    /// keyframe on (ask the publisher for one). Until it comes the current layer goes on, so
    /// the picture never stops for a switch; the sequence numbers and timestamps on the leg
    /// continue across it. From the first call on, packets of any other SSRC are
    /// [`Forwarding::OtherLayer`].
    pub fn switch_layer(&mut self, ssrc: u32) {
        self.layered = true;
        self.target = (self.epoch.map(|e| e.in_ssrc) != Some(ssrc)).then_some(ssrc);
        self.cut = false;
    }

    /// Simulcast: like [`switch_layer`](Self::switch_layer), but the current layer stops
    /// at once ([`Forwarding::OtherLayer`]): the picture holds still until the target's
    /// keyframe. For a switch down on a congested link, where every packet of the layer
    /// the link cannot carry adds to the queue (measured: going on until the smaller
    /// layer's keyframe kept a full-size layer on an 800 kbit/s link 2 s longer, and the
    /// loss that caused paused the other video).
    pub fn switch_layer_at_once(&mut self, ssrc: u32) {
        self.switch_layer(ssrc);
        self.cut = self.target.is_some();
    }

    /// Simulcast: whether a layer was chosen ([`switch_layer`](Self::switch_layer)).
    pub fn layered(&self) -> bool {
        self.layered
    }

    /// Simulcast: the layer (publisher SSRC) forwarded now.
    pub fn layer(&self) -> Option<u32> {
        self.epoch.map(|e| e.in_ssrc)
    }

    /// Simulcast: the layer waiting for its keyframe, if a switch is under way.
    pub fn switching_to(&self) -> Option<u32> {
        self.target
    }

    /// Simulcast: the layer this down-track is switching to, or else the one it forwards.
    pub fn wanted_layer(&self) -> Option<u32> {
        self.switching_to().or(self.layer())
    }

    /// Packets sent and dropped so far.
    pub fn counters(&self) -> (u64, u64) {
        (self.packets_sent, self.packets_dropped)
    }

    /// Decides about one packet and rewrites its header.
    pub fn forward(&mut self, h: &InHeader, now: Instant) -> Forwarding {
        if self.paused {
            self.packets_dropped += 1;
            return Forwarding::Paused;
        }
        if self.cut && self.epoch.is_some_and(|e| e.in_ssrc == h.ssrc) {
            self.packets_dropped += 1;
            return Forwarding::OtherLayer;
        }
        // Video goes on from another stream (a simulcast switch, a publisher's restart) at
        // the first packet of a keyframe, the one with its SPS: started at a later packet of
        // it, with the SPS reordered behind, the SPS was mapped onto a sequence number the
        // stream before had used, and the receiver took it for a duplicate and decoded the
        // new layer with the old layer's SPS. Measured on `rural` links (± 20 ms of
        // jitter): Chromium decoded a 640×360 layer as 320×180 pictures for 75 s, asking
        // for nothing. A subscriber's first stream has nothing before it to collide with,
        // and a stream resumed after a pause has its own SPS at the receiver already: any
        // packet that starts a keyframe starts those. (Asking the SPS of them too raised the
        // keyframe requests of a simulated conference on 8 % burst loss, worst pair, from
        // 12 to 17 in 60 s.)
        let sent_before = self.epoch.or(self.previous.map(|(e, _)| e));
        let same_stream = sent_before.is_none_or(|e| e.in_ssrc == h.ssrc);
        let starts = h.keyframe_start && (h.parameter_sets || same_stream);
        let switch = self.target == Some(h.ssrc) && starts;
        let epoch = match self.epoch {
            Some(e) if e.in_ssrc == h.ssrc && !switch => e,
            _ => {
                if self.layered && self.target != Some(h.ssrc) {
                    self.packets_dropped += 1;
                    return Forwarding::OtherLayer;
                }
                // A new source epoch: the first packet for this subscriber, the publisher
                // restarted its stream, or a switch to another layer. Video can only start
                // on a keyframe.
                if self.video && !starts {
                    self.packets_dropped += 1;
                    return Forwarding::WaitingForKeyframe;
                }
                // The timestamp goes on by the time that passed since the last packet sent
                // (at least one frame): a video resumed after seconds off screen with a
                // timestamp one frame on looked to the receiver as if every picture came
                // seconds late (measured: its jitter jumped to 580 ms and 40 % of the
                // pictures were dropped as late for 5 s).
                let (next_seq, next_ts) = match self.last_out {
                    Some((seq, ts)) => {
                        let rate = if self.video { 90_000.0 } else { 48_000.0 };
                        let passed = self
                            .last_out_at
                            .map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
                        let gap = ((passed * rate) as u32).max(self.epoch_gap);
                        (seq.wrapping_add(1), ts.wrapping_add(gap))
                    }
                    None => (h.seq, h.timestamp),
                };
                let e = Epoch {
                    in_ssrc: h.ssrc,
                    seq_offset: next_seq.wrapping_sub(h.seq),
                    ts_offset: next_ts.wrapping_sub(h.timestamp),
                    highest_in_seq: h.seq.wrapping_sub(1),
                    first_out_seq: next_seq,
                };
                if let (Some(old), Some((last, _))) = (self.epoch, self.last_out) {
                    self.previous = Some((old, last));
                }
                self.epoch = Some(e);
                self.target = None;
                self.cut = false;
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
            self.last_out_at = Some(now);
        }
        self.packets_sent += 1;
        Forwarding::Send(out)
    }

    /// The sequence number of the newest packet sent, if any.
    pub fn last_out_seq(&self) -> Option<u16> {
        self.last_out.map(|(seq, _)| seq)
    }

    /// The publisher's SSRC and sequence number behind a sequence number this subscriber
    /// NACKed, if it was sent in the current epoch or the one before (a sequence number
    /// from before a switch maps to the layer it came from, never to the layer after it).
    pub fn publisher_seq(&self, out_seq: u16) -> Option<(u32, u16)> {
        let e = self.epoch_of(out_seq)?;
        Some((e.in_ssrc, out_seq.wrapping_sub(e.seq_offset)))
    }

    fn epoch_of(&self, out_seq: u16) -> Option<Epoch> {
        let current = self.epoch?;
        if current.covers(out_seq) {
            return Some(current);
        }
        let (old, last) = self.previous?;
        let within = out_seq == last || seq_after(last, out_seq);
        (old.covers(out_seq) && within).then_some(old)
    }

    /// The header to resend a cached packet with (same mapping as the original send).
    pub fn rewrite(&self, h: &InHeader) -> Option<OutHeader> {
        let e = [self.epoch, self.previous.map(|(e, _)| e)]
            .into_iter()
            .flatten()
            .find(|e| e.in_ssrc == h.ssrc)?;
        Some(OutHeader {
            ssrc: self.out_ssrc,
            seq: h.seq.wrapping_add(e.seq_offset),
            timestamp: h.timestamp.wrapping_add(e.ts_offset),
            payload_type: self.payload_type,
            marker: h.marker,
        })
    }
}

/// Recent packets of one published track, by sequence number, for retransmission: the
/// last `capacity` packets, and of those only the ones younger than [`RETRANSMIT_AGE`].
#[derive(Clone, Debug)]
pub struct RetransmitCache {
    slots: Vec<Option<(InHeader, Bytes)>>,
    /// When each cached packet came, oldest first, to forget it when it is too old.
    order: VecDeque<(Instant, u16)>,
}

/// How long a packet stays in a [`RetransmitCache`]. A retransmission is of use while the
/// receiver's jitter buffer waits for it (400 ms at most) and NACKs repeat once per round
/// trip; two seconds cover ten round trips of a slow link. Bounded by count alone, a
/// cache kept 1,024 packets of each layer however slowly it sent: 46 s of a 180p layer,
/// 2.5 MB for one simulcast camera, where two seconds of it are ~0.6 MB.
pub const RETRANSMIT_AGE: Duration = Duration::from_secs(2);

impl RetransmitCache {
    /// Keeps the last `capacity` packets (rounded up to a power of two).
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: vec![None; capacity.next_power_of_two().clamp(16, 1 << 15)],
            order: VecDeque::new(),
        }
    }

    fn index(&self, seq: u16) -> usize {
        seq as usize & (self.slots.len() - 1)
    }

    /// Remembers a packet that came at `now`; the payload is shared, not copied. Packets
    /// older than [`RETRANSMIT_AGE`] are forgotten.
    pub fn insert(&mut self, now: Instant, header: InHeader, payload: Bytes) {
        while let Some(&(at, seq)) = self.order.front() {
            if now.saturating_duration_since(at) <= RETRANSMIT_AGE
                && self.order.len() < self.slots.len()
            {
                break;
            }
            self.order.pop_front();
            let i = self.index(seq);
            if self.slots[i].as_ref().is_some_and(|(h, _)| h.seq == seq) {
                self.slots[i] = None;
            }
        }
        let i = self.index(header.seq);
        self.slots[i] = Some((header, payload));
        self.order.push_back((now, header.seq));
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

    /// One instant for packets whose arrival time does not matter.
    fn t0() -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    fn pkt(ssrc: u32, seq: u16, ts: u32, key: bool) -> InHeader {
        InHeader {
            ssrc,
            seq,
            timestamp: ts,
            marker: false,
            keyframe_start: key,
            parameter_sets: key,
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
            d.forward(&pkt(1, 100, 9000, false), t0()),
            Forwarding::WaitingForKeyframe
        );
        assert_eq!(
            d.forward(&pkt(1, 101, 9000, false), t0()),
            Forwarding::WaitingForKeyframe
        );
        let first = sent(d.forward(&pkt(1, 102, 12000, true), t0()));
        assert_eq!((first.ssrc, first.payload_type), (0xaaaa, 102));
        let second = sent(d.forward(&pkt(1, 103, 12000, false), t0()));
        assert_eq!(second.seq, first.seq.wrapping_add(1));
        assert!(!d.needs_keyframe());
        assert_eq!(d.counters(), (2, 2));
    }

    #[test]
    fn publisher_restart_continues_numbering() {
        let mut d = DownTrack::new(7, 96, true);
        let a = sent(d.forward(&pkt(1, 65534, 1000, true), t0()));
        let b = sent(d.forward(&pkt(1, 65535, 4000, false), t0()));
        let c = sent(d.forward(&pkt(1, 0, 7000, false), t0()));
        assert_eq!(
            (b.seq, c.seq),
            (a.seq.wrapping_add(1), a.seq.wrapping_add(2))
        );
        // New SSRC: wait for its keyframe, then continue where we left off.
        assert_eq!(
            d.forward(&pkt(2, 500, 123, false), t0()),
            Forwarding::WaitingForKeyframe
        );
        let e = sent(d.forward(&pkt(2, 501, 456, true), t0()));
        assert_eq!(e.seq, c.seq.wrapping_add(1));
        assert_eq!(e.timestamp, c.timestamp.wrapping_add(3000));
        assert_eq!(d.publisher_seq(e.seq), Some((2, 501)));
    }

    #[test]
    fn audio_needs_no_keyframe_and_duplicates_are_dropped() {
        let mut d = DownTrack::new(9, 111, false);
        assert!(!d.needs_keyframe());
        let a = sent(d.forward(&pkt(5, 10, 960, false), t0()));
        assert_eq!(d.forward(&pkt(5, 10, 960, false), t0()), Forwarding::Stale);
        // Reordering within the epoch keeps the exact mapping.
        let c = sent(d.forward(&pkt(5, 12, 2880, false), t0()));
        let b = sent(d.forward(&pkt(5, 11, 1920, false), t0()));
        assert_eq!((b.seq, c.seq), (a.seq + 1, a.seq + 2));
    }

    #[test]
    fn a_video_resumed_after_seconds_has_its_timestamp_seconds_on() {
        let mut d = DownTrack::new(9, 96, true);
        let a = sent(d.forward(&pkt(5, 1, 1000, true), t0()));
        d.set_paused(true);
        d.set_paused(false);
        // Off screen for 12 s; the publisher's clock went on (its own offset is no help
        // across layers, so the leg's clock follows the time that passed).
        let later = t0() + Duration::from_secs(12);
        let b = sent(d.forward(&pkt(5, 400, 1000 + 12 * 90_000, true), later));
        assert_eq!(b.seq, a.seq + 1);
        assert_eq!(b.timestamp.wrapping_sub(a.timestamp), 12 * 90_000);
        // A switch right away still leaves one frame between the epochs.
        d.switch_layer(6);
        let c = sent(d.forward(&pkt(6, 50, 7, true), later));
        assert_eq!(c.timestamp.wrapping_sub(b.timestamp), 3000);
    }

    #[test]
    fn pausing_resumes_at_a_keyframe() {
        let mut d = DownTrack::new(9, 96, true);
        sent(d.forward(&pkt(5, 1, 0, true), t0()));
        d.set_paused(true);
        assert_eq!(d.forward(&pkt(5, 2, 0, false), t0()), Forwarding::Paused);
        d.set_paused(false);
        assert_eq!(
            d.forward(&pkt(5, 3, 0, false), t0()),
            Forwarding::WaitingForKeyframe
        );
        let r = sent(d.forward(&pkt(5, 4, 3000, true), t0()));
        assert_eq!(r.seq, 2, "numbering continues without the paused packets");
    }

    #[test]
    fn a_switch_down_at_once_stops_the_current_layer_before_the_keyframe() {
        let mut d = DownTrack::new(0xbeef, 96, true);
        d.switch_layer(20);
        let a = sent(d.forward(&pkt(20, 500, 90_000, true), t0()));
        d.switch_layer_at_once(10);
        assert_eq!(
            d.forward(&pkt(20, 501, 93_000, false), t0()),
            Forwarding::OtherLayer
        );
        assert_eq!(
            d.forward(&pkt(10, 100, 93_000, false), t0()),
            Forwarding::WaitingForKeyframe
        );
        let b = sent(d.forward(&pkt(10, 101, 96_000, true), t0()));
        assert_eq!((d.layer(), b.seq), (Some(10), a.seq.wrapping_add(1)));
        // Switched: the cut is over, the new layer flows.
        sent(d.forward(&pkt(10, 102, 99_000, false), t0()));
        // Asking at once for the layer already forwarded changes nothing.
        d.switch_layer_at_once(10);
        sent(d.forward(&pkt(10, 103, 102_000, false), t0()));
    }

    #[test]
    fn a_layer_switch_waits_for_the_keyframe_and_leaves_no_gap() {
        // Three layers: 10 (low), 20 (mid), 30 (high), each with its own numbering.
        let mut d = DownTrack::new(0xbeef, 96, true);
        d.switch_layer(10);
        assert!(d.needs_keyframe());
        assert_eq!(
            d.forward(&pkt(20, 500, 90_000, true), t0()),
            Forwarding::OtherLayer
        );
        let a = sent(d.forward(&pkt(10, 100, 90_000, true), t0()));
        let b = sent(d.forward(&pkt(10, 101, 93_000, false), t0()));
        assert_eq!(d.layer(), Some(10));
        assert!(!d.needs_keyframe());
        // Up to the middle layer: the low one goes on until the middle one's keyframe.
        d.switch_layer(20);
        assert!(d.needs_keyframe());
        assert_eq!(d.switching_to(), Some(20));
        assert_eq!(
            d.forward(&pkt(20, 510, 96_000, false), t0()),
            Forwarding::WaitingForKeyframe
        );
        let c = sent(d.forward(&pkt(10, 102, 96_000, false), t0()));
        assert_eq!(
            d.forward(&pkt(30, 7, 96_000, true), t0()),
            Forwarding::OtherLayer
        );
        let e = sent(d.forward(&pkt(20, 511, 99_000, true), t0()));
        assert_eq!(d.layer(), Some(20));
        assert_eq!(d.switching_to(), None);
        let f = sent(d.forward(&pkt(20, 512, 99_000, false), t0()));
        // One sequence on the leg, one SSRC, timestamps moving on by a frame at the switch.
        let seqs = [a.seq, b.seq, c.seq, e.seq, f.seq];
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1), "{seqs:?}");
        }
        assert!([a, b, c, e, f].iter().all(|h| h.ssrc == 0xbeef));
        assert_eq!(e.timestamp, c.timestamp.wrapping_add(3000));
        // The low layer is not forwarded any more.
        assert_eq!(
            d.forward(&pkt(10, 103, 99_000, false), t0()),
            Forwarding::OtherLayer
        );
        // NACKs map to the layer each packet came from.
        assert_eq!(d.publisher_seq(b.seq), Some((10, 101)));
        assert_eq!(d.publisher_seq(c.seq), Some((10, 102)));
        assert_eq!(d.publisher_seq(e.seq), Some((20, 511)));
        assert_eq!(d.rewrite(&pkt(10, 102, 96_000, false)).unwrap().seq, c.seq);
        // Asking for the layer already forwarded is no switch.
        d.switch_layer(20);
        assert!(!d.needs_keyframe());
    }

    #[test]
    fn a_switch_starts_at_the_sps_even_when_the_keyframe_came_reordered() {
        let mut d = DownTrack::new(0xbeef, 96, true);
        d.switch_layer(10);
        let a = sent(d.forward(&pkt(10, 100, 90_000, true), t0()));
        d.switch_layer(20);
        // The new layer's keyframe: SPS and PPS at 500, its IDR slices from 501; the IDR's
        // first fragment comes first. It starts the keyframe but is no place to switch.
        let idr = InHeader {
            parameter_sets: false,
            ..pkt(20, 501, 93_000, true)
        };
        assert_eq!(d.forward(&idr, t0()), Forwarding::WaitingForKeyframe);
        let b = sent(d.forward(&pkt(10, 101, 93_000, false), t0()));
        let sps = sent(d.forward(&pkt(20, 500, 93_000, true), t0()));
        assert_eq!(d.layer(), Some(20));
        // The SPS follows the old layer's last packet; the IDR fragment held back maps
        // right after it (the receiver asks for it again, answered from the cache).
        assert_eq!(sps.seq, b.seq.wrapping_add(1));
        assert_eq!(d.rewrite(&idr).unwrap().seq, sps.seq.wrapping_add(1));
        assert_eq!(b.seq, a.seq.wrapping_add(1));
    }

    #[test]
    fn a_stream_resumed_after_a_pause_starts_at_any_packet_starting_a_keyframe() {
        let mut d = DownTrack::new(0xbeef, 96, true);
        let a = sent(d.forward(&pkt(10, 100, 90_000, true), t0()));
        d.set_paused(true);
        d.set_paused(false);
        assert!(d.needs_keyframe());
        // The same stream's keyframe, its SPS lost on the way: the IDR's first fragment
        // starts it (the receiver has this stream's SPS).
        let idr = InHeader {
            parameter_sets: false,
            ..pkt(10, 201, 99_000, true)
        };
        let b = sent(d.forward(&idr, t0()));
        assert_eq!(b.seq, a.seq.wrapping_add(1));
        // A publisher's restart (another SSRC) still waits for the SPS.
        let other = InHeader {
            parameter_sets: false,
            ..pkt(11, 5, 1_000, true)
        };
        assert_eq!(d.forward(&other, t0()), Forwarding::WaitingForKeyframe);
        assert!(matches!(
            d.forward(&pkt(11, 4, 1_000, true), t0()),
            Forwarding::Send(_)
        ));
    }

    #[test]
    fn a_nack_from_before_a_restart_is_not_answered_with_the_new_stream() {
        let mut d = DownTrack::new(7, 96, true);
        let a = sent(d.forward(&pkt(1, 10, 0, true), t0()));
        sent(d.forward(&pkt(1, 11, 0, false), t0()));
        // Before the epochs were remembered, a sequence number from well before the restart
        // mapped into the new SSRC's numbering.
        sent(d.forward(&pkt(2, 1000, 3000, true), t0()));
        assert_eq!(d.publisher_seq(a.seq), Some((1, 10)));
        assert_eq!(d.publisher_seq(a.seq.wrapping_sub(5)), None);
    }

    #[test]
    fn retransmit_cache_finds_recent_packets_only() {
        let mut c = RetransmitCache::new(64);
        for seq in 0..100u16 {
            c.insert(t0(), pkt(1, seq, 0, false), Bytes::from(vec![seq as u8]));
        }
        assert_eq!(c.get(1, 99).unwrap().1[0], 99);
        assert!(c.get(1, 20).is_none(), "evicted");
        assert!(c.get(2, 99).is_none(), "other SSRC");
        assert_eq!(
            c.order.len(),
            64,
            "the order is bounded by the capacity too"
        );
    }

    /// A slow stream: a packet a second. What came more than two seconds ago is gone (its
    /// payload freed), however much room is left.
    #[test]
    fn retransmit_cache_forgets_packets_older_than_two_seconds() {
        let mut c = RetransmitCache::new(1024);
        let payload = Bytes::from(vec![7u8; 1000]);
        for seq in 0..10u16 {
            let at = t0() + Duration::from_secs(seq as u64);
            c.insert(at, pkt(1, seq, 0, false), payload.clone());
        }
        // At 9 s: 7, 8 and 9 are within two seconds; 6 came 3 s before the last insert.
        assert!(c.get(1, 9).is_some() && c.get(1, 7).is_some());
        assert!(c.get(1, 6).is_none());
        assert_eq!(c.slots.iter().flatten().count(), 3);
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
