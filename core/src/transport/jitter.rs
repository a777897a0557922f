//! The video receive buffer: H.264 RTP packets in, whole pictures out in decode order, each
//! at its playout time. Pure, on the caller's clock; used by the client's receive slots and
//! by the server's grid mixer.
//!
//! - **Reordering and repair.** Packets are held by extended sequence number. A gap is put
//!   on the [`NackList`] at once (the owner sends the NACKs); a picture waits for its missing
//!   packets until its deadline, and retransmissions that arrive in time complete it.
//! - **Playout.** A complete picture is released at `expected arrival + delay`, where the
//!   expected arrival is the picture's RTP time on the fastest transit seen recently and the
//!   delay is the 99th percentile of how late recent pictures became complete (retransmitted
//!   ones included), so repaired pictures are displayed on time instead of freezing the
//!   picture while they wait (NetEq's rule, applied to pictures), but never more than 3
//!   RTT + 30 ms (at least 100 ms): later than that is a stalled sender, shown as a freeze
//!   rather than added to every later picture. Without losses or jitter the delay is zero.
//!   A grid mixer, which shows no motion of its own, releases pictures as soon as they are
//!   complete (`smooth = false`).
//! - **Giving up.** A picture still incomplete at `expected arrival + max(4 RTT, delay + 2
//!   RTT, 6 RTT up to 600 ms) + 30 ms` (at most [`MAX_WAIT`]: room for a loss on the way
//!   up, repaired by the server, and more rounds if a NACK or its answer is lost too; see
//!   [`CHEAP_ROUNDS`]), or whose missing packets have used up their NACKs, is dropped; the
//!   reference chain is then broken, the buffer skips to the next complete keyframe and
//!   asks for one (at most once per 500 ms; also when 200 ms pass without a keyframe to
//!   start from).
//!
//! Why not webrtc-rs's `JitterBufferInterceptor`: it holds every packet for a fixed depth
//! whether or not anything is missing (every picture pays the depth: 120 ms by default), and
//! releases packets, not pictures, when the depth elapses, whether or not the picture is
//! whole. Here only a picture that lost something waits, and only as long as its repair can
//! take.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;

use super::clock::{PlayoutClock, PlayoutDelay, SeqExtender, TsExtender, quantile};
use super::nack::NackList;
use crate::codec::nal::{
    PictureStart, rtp_payload_picture_start, rtp_payload_sps_frame_num_bits,
    rtp_payload_starts_keyframe,
};

/// Longest a picture may wait for missing packets, counted from its expected arrival. A
/// repair takes at least a round trip, and on a 120 ms link (240 ms round trip, the
/// `disaster` profile) two rounds need more than the 400 ms usually quoted: measured there,
/// a 400 ms bound gave up on half the pictures (each give-up costs a keyframe, 10 to 20
/// pictures and a freeze longer than the wait it saved).
pub const MAX_WAIT: Duration = Duration::from_millis(1000);
/// A picture may wait this many round trips for its missing packets as long as they fit in
/// [`CHEAP_WAIT`]. Each round trip is one NACK and its answer; on `lte` (3 % loss each way)
/// about one round in 16 fails, and a picture given up costs a keyframe request, 17
/// pictures and a 600 ms freeze, so another short round is the cheaper bet. Measured on the
/// simulated `lte` conference (4 × 800 kbit/s, 60 s): with 4 round trips (the rule for
/// long ones), seeds 1, 3, 4 gave up 3, 1 and 2 pictures whose answer was lost twice
/// (worst pair frozen 1.0 %, 1.05 %, 1.73 % of the time); with 6, none (0.66 %, 0.51 %,
/// 0.79 %), latency unchanged. On long round trips more waiting did worse: on 8 % burst loss
/// at 120 ± 40 ms, 6 round trips (up to [`MAX_WAIT`]) froze the worst pair 20 % and 60 % of
/// the time where 4 did 16 % and 23 % (seeds 1, 2): the pictures queued behind a waiting one
/// wait with it.
const CHEAP_ROUNDS: u32 = 6;
/// The longest wait [`CHEAP_ROUNDS`] may reach.
const CHEAP_WAIT: Duration = Duration::from_millis(600);
/// How long past the next picture's playout time a blocked picture nothing refers to may
/// still hold it (see `VideoBuffer::skip_due`): a repair that comes within this shows the
/// picture at the price of a pause too short to count as a freeze (3 frame intervals and
/// more). Passed over at the next one's playout time at once, on simulated `lte` (60 s,
/// 4 × 640×360, two temporal layers) 97 of 21,600 pictures were dropped whose repair came a
/// little later, and the freezes were no shorter (1.2 s against 0.9 s).
const SKIP_GRACE: Duration = Duration::from_millis(100);
/// Shortest wait before giving up on a picture.
const MIN_WAIT: Duration = Duration::from_millis(50);
/// Keyframe requests of one stream are at least this far apart.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// A broken stream waits this long for a keyframe already on its way before asking.
const KEYFRAME_GRACE: Duration = Duration::from_millis(200);
/// Round-trip time assumed until one is measured.
pub const DEFAULT_RTT: Duration = Duration::from_millis(100);
/// The playout delay is never capped below this (however short the round trip).
const MIN_DELAY_CAP: Duration = Duration::from_millis(100);
/// Pictures whose lateness sets the playout delay.
const LATENESS_WINDOW: usize = 300;
/// Most packets held; beyond that the oldest picture is dropped.
const CAPACITY: usize = 2048;

/// A picture the buffer released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Picture {
    /// The access unit, Annex-B.
    pub data: Bytes,
    /// RTP timestamp (90 kHz).
    pub timestamp: u32,
    /// It starts with a keyframe.
    pub keyframe: bool,
}

/// What a buffer counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferStats {
    /// Packets that arrived after being NACKed (repaired by retransmission or reordering).
    pub packets_recovered: u64,
    /// Packets that arrived after the buffer had moved past them.
    pub packets_late: u64,
    /// Duplicates dropped.
    pub packets_duplicate: u64,
    /// Pictures released.
    pub pictures: u64,
    /// Pictures given up (missing packets or skipped to a keyframe).
    pub pictures_dropped: u64,
    /// Keyframe requests asked for.
    pub keyframe_requests: u64,
    /// Packets without payload (a sender's bandwidth-probing padding on the media stream).
    pub packets_padding: u64,
}

struct Held {
    timestamp: u64,
    marker: bool,
    /// Starts an access unit for certain (its first NAL unit is an SPS).
    starts_au: bool,
    keyframe: bool,
    /// It begins a picture, and this is the picture's place among the references.
    start: Option<PictureStart>,
    arrival: Instant,
    payload: Bytes,
}

/// One video stream's receive buffer. See the [module documentation](self).
pub struct VideoBuffer {
    smooth: bool,
    seqs: SeqExtender,
    stamps: TsExtender,
    packets: BTreeMap<u64, Held>,
    /// The held packets that start a keyframe (searched whenever the chain is broken; a
    /// scan of every held packet there made a `disaster` simulation ten times slower).
    keyframes: BTreeSet<u64>,
    /// With the chain broken: nothing arrived since the last search for a keyframe to
    /// resume from found none.
    searched: bool,
    /// Everything up to and including this was released or given up.
    done: Option<u64>,
    /// Timestamp of the last picture released (or padding skipped).
    last_ts: Option<u64>,
    /// The last picture released, where its slice header could be read.
    last_start: Option<PictureStart>,
    /// Width of `frame_num`, from the stream's SPS.
    frame_num_bits: Option<u8>,
    /// The next picture after `done` can be decoded (its references were all released).
    chain: bool,
    /// Since when the chain is broken with no keyframe to resume from.
    broken_since: Option<Instant>,
    last_request: Option<Instant>,
    /// Since when a keyframe request waits to be sent.
    request_pending: Option<Instant>,
    nacks: NackList,
    clock: PlayoutClock,
    rtt: Duration,
    rtt_samples: u32,
    delay: PlayoutDelay,
    stats: BufferStats,
}

impl std::fmt::Debug for VideoBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoBuffer")
            .field("held", &self.packets.len())
            .field("delay", &self.delay.get())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

enum Head {
    /// The picture from `start` to `end` is whole.
    Complete { end: u64 },
    /// Something of the next picture is missing: its timestamp, and the first missing
    /// packet (or none when only its tail has yet to come).
    Blocked { timestamp: u64, gap: Option<u64> },
    /// Nothing held after `done`.
    Empty,
}

impl VideoBuffer {
    /// An empty buffer; `smooth` releases pictures at their playout time, otherwise as soon
    /// as they are whole.
    pub fn new(smooth: bool, now: Instant) -> Self {
        Self {
            smooth,
            seqs: SeqExtender::default(),
            stamps: TsExtender::default(),
            packets: BTreeMap::new(),
            keyframes: BTreeSet::new(),
            searched: false,
            last_ts: None,
            last_start: None,
            frame_num_bits: None,
            done: None,
            chain: false,
            broken_since: None,
            last_request: None,
            request_pending: None,
            nacks: NackList::new(),
            clock: PlayoutClock::new(now, 90_000),
            rtt: DEFAULT_RTT,
            rtt_samples: 0,
            delay: PlayoutDelay::new(LATENESS_WINDOW, Duration::ZERO),
            stats: BufferStats::default(),
        }
    }

    /// The measured round-trip time to the sender (drives NACK resends and how long a
    /// picture may wait).
    /// Samples are taken fast upwards and slowly downwards: one round-trip sample on a
    /// jittery link can be half the typical one (measured on 40 ± 40 ms: samples of 57 ms
    /// where repairs took 150 ms), and a NACK schedule or a deadline built on the low one
    /// gives up on packets that are on their way.
    pub fn set_rtt(&mut self, rtt: Duration) {
        let rtt = rtt.clamp(Duration::from_millis(1), Duration::from_secs(1));
        self.rtt = if rtt >= self.rtt || self.rtt_samples == 0 {
            rtt
        } else {
            self.rtt - (self.rtt - rtt) / 8
        };
        self.rtt_samples += 1;
    }

    /// What was counted so far.
    pub fn stats(&self) -> BufferStats {
        self.stats
    }

    /// NACK entries sent so far.
    pub fn nacks_sent(&self) -> u64 {
        self.nacks.sent
    }

    /// The current playout delay on top of the fastest transit.
    pub fn delay(&self) -> Duration {
        self.delay.get()
    }

    /// One packet arrived at `now`.
    pub fn insert(&mut self, now: Instant, seq: u16, timestamp: u32, marker: bool, payload: Bytes) {
        let highest = self.seqs.highest();
        let ext = self.seqs.extend(seq);
        if self.done.is_some_and(|d| ext <= d) {
            self.stats.packets_late += 1;
            return;
        }
        if self.packets.contains_key(&ext) {
            self.stats.packets_duplicate += 1;
            return;
        }
        let newest = self.stamps.highest();
        let payload_starts_keyframe = rtp_payload_starts_keyframe(&payload);
        let ts = self.stamps.extend(timestamp);
        let recovered = self.nacks.on_packet(now, ext, highest);
        if recovered {
            self.stats.packets_recovered += 1;
        }
        if highest.is_some_and(|h| ext > h + 1)
            && newest.is_some_and(|n| ts > n + MAX_WAIT.as_millis() as u64 * 90)
        {
            // More media missing than any picture waits for (an outage, a stalled
            // sender): nothing in the gap is worth asking for; resume at a keyframe.
            self.nacks.forget_before(ext);
            self.drop_before(ext);
            self.done = Some(ext - 1);
            self.break_chain(now);
            // Unless the packet just in starts a keyframe, nothing decodable can come
            // without one.
            self.request_pending = (!payload_starts_keyframe).then_some(now);
        }
        if payload.is_empty() {
            // Padding: it takes a sequence number (so it fills its place in the order and
            // ends a gap) but belongs to no picture. Chromium sends it on the media stream,
            // after a picture's last packet and with that picture's timestamp, when it
            // probes for bandwidth without RTX: taken for a picture, it broke the chain of
            // references (measured on lte: 11 keyframe requests and 111 of 392 pictures
            // lost in 18 s).
            self.stats.packets_padding += 1;
        } else if !recovered {
            self.clock.arrival(now, ts);
        }
        let first = payload.first().map(|b| b & 0x1f);
        let starts_au = first == Some(7)
            || (first == Some(24) && payload.get(3).is_some_and(|b| b & 0x1f == 7));
        if payload_starts_keyframe {
            self.keyframes.insert(ext);
            if let Some(bits) = rtp_payload_sps_frame_num_bits(&payload) {
                self.frame_num_bits = Some(bits);
            }
        }
        let start = self
            .frame_num_bits
            .and_then(|bits| rtp_payload_picture_start(&payload, bits));
        self.searched = false;
        self.packets.insert(
            ext,
            Held {
                timestamp: ts,
                marker,
                starts_au,
                keyframe: payload_starts_keyframe,
                start,
                arrival: now,
                payload,
            },
        );
        if self.packets.len() > CAPACITY {
            self.give_up(now);
        }
    }

    /// The chain of references broke outside the buffer (the decoder failed): wait for a
    /// keyframe.
    pub fn reference_lost(&mut self, now: Instant) {
        self.break_chain(now);
    }

    /// The 16-bit sequence numbers to NACK now.
    pub fn nacks_due(&mut self, now: Instant) -> Vec<u16> {
        if let Some(done) = self.done {
            self.nacks.forget_before(done + 1);
        }
        self.nacks.due(now, self.rtt + Duration::from_millis(5))
    }

    /// Whether to send a keyframe request now (it is counted as sent).
    pub fn keyframe_request_due(&mut self, now: Instant) -> bool {
        if let Some(since) = self.broken_since
            && now >= since + KEYFRAME_GRACE
        {
            if self.keyframe_on_its_way() {
                // Look again one grace later (or when it is given up).
                self.broken_since = Some(now);
            } else {
                self.request_pending = Some(now);
            }
        }
        if self.request_pending.is_some()
            && self
                .last_request
                .is_none_or(|t| now >= t + KEYFRAME_REQUEST_INTERVAL)
        {
            self.request_pending = None;
            self.broken_since = None;
            self.last_request = Some(now);
            self.stats.keyframe_requests += 1;
            return true;
        }
        false
    }

    /// The next picture due at `now`, if any.
    pub fn poll(&mut self, now: Instant) -> Option<Picture> {
        for _ in 0..CAPACITY {
            if !self.chain && !self.resume_at_keyframe(now) {
                return None;
            }
            let start = self.done.map_or(0, |d| d + 1);
            if let Some(p) = self.packets.get(&start)
                && p.payload.is_empty()
            {
                self.last_ts = Some(p.timestamp);
                self.packets.remove(&start);
                self.done = Some(start);
                continue;
            }
            if let Some(next) = self.only_padding_missing(start) {
                self.nacks.forget_before(next);
                self.done = Some(next - 1);
                continue;
            }
            match self.head(start) {
                Head::Empty => return None,
                Head::Complete { end } => {
                    let ts = self.packets[&start].timestamp;
                    if self.smooth && now < self.playout(ts) {
                        return None;
                    }
                    return Some(self.release(start, end));
                }
                Head::Blocked { timestamp, gap } => {
                    // Early when no NACK is left for the gap: nothing more will come.
                    let hopeless = gap
                        .is_some_and(|g| self.nacks.is_missing(g) && !self.nacks.awaited(g..g + 1));
                    if now < self.give_up_at(timestamp) && !hopeless && !self.skip_due(start, now) {
                        return None;
                    }
                    self.give_up(now);
                }
            }
        }
        None
    }

    /// When [`poll`](Self::poll), [`nacks_due`](Self::nacks_due) or
    /// [`keyframe_request_due`](Self::keyframe_request_due) has something next.
    pub fn next_timeout(&self) -> Option<Instant> {
        let mut next = self.nacks.next_due();
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        if let Some(since) = self.request_pending {
            consider(
                self.last_request
                    .map_or(since, |t| since.max(t + KEYFRAME_REQUEST_INTERVAL)),
            );
        } else if let Some(since) = self.broken_since {
            consider(since + KEYFRAME_GRACE);
        }
        if self.chain {
            let start = self.done.map_or(0, |d| d + 1);
            match self.head(start) {
                Head::Complete { .. } if self.smooth => {
                    consider(self.playout(self.packets[&start].timestamp));
                }
                Head::Blocked { timestamp, .. } => {
                    consider(self.give_up_at(timestamp));
                    if let Some(at) = self.skip_at(start).filter(|_| self.smooth) {
                        consider(at);
                    }
                }
                _ => {}
            }
        }
        next
    }

    // ---- internals ----

    fn playout(&self, ts: u64) -> Instant {
        self.clock.expected(ts) + self.delay.get()
    }

    fn give_up_at(&self, ts: u64) -> Instant {
        let wait = (self.rtt * 4)
            .max(self.delay.get() + self.rtt * 2)
            .max((self.rtt * CHEAP_ROUNDS).min(CHEAP_WAIT))
            .saturating_add(Duration::from_millis(30))
            .clamp(MIN_WAIT, MAX_WAIT);
        self.clock.expected(ts) + wait
    }

    /// With `start` missing right after a whole picture: the next held packet, if what is
    /// missing before it can only be padding. Padding is not retransmitted, so nothing should
    /// wait for it; Chromium sends it in runs of 5 to 10 on the media stream when it probes
    /// for bandwidth without RTX, and measured on lte every picture this buffer gave up on
    /// in 18 s (3 to 11 per run, each costing a keyframe) was waiting for lost padding.
    /// Known when the next packet is padding with the last picture's timestamp (RTP
    /// timestamps do not go back, and that picture is whole), or when it begins a picture
    /// whose `frame_num` says no reference picture came between.
    fn only_padding_missing(&self, start: u64) -> Option<u64> {
        if self.packets.contains_key(&start) {
            return None;
        }
        let (&next, p) = self.packets.range(start..).next()?;
        let padding = p.payload.is_empty() && Some(p.timestamp) == self.last_ts;
        (padding || self.follows_last(next)).then_some(next)
    }

    /// The picture that starts at `start`.
    fn head(&self, start: u64) -> Head {
        let Some(first) = self.packets.get(&start) else {
            // The picture after the gap (padding carries an older picture's timestamp).
            let next = self
                .packets
                .range(start..)
                .find(|(_, p)| !p.payload.is_empty());
            return match next.or_else(|| self.packets.range(start..).next()) {
                Some((_, p)) => Head::Blocked {
                    timestamp: p.timestamp,
                    gap: Some(start),
                },
                None => Head::Empty,
            };
        };
        for (expect, (&seq, p)) in (start..).zip(self.packets.range(start..)) {
            if seq != expect {
                return Head::Blocked {
                    timestamp: first.timestamp,
                    gap: Some(expect),
                };
            }
            if p.timestamp != first.timestamp || (p.payload.is_empty() && seq > start) {
                // The next picture (or padding) began without a marker on this one: this
                // one is whole.
                return Head::Complete { end: seq - 1 };
            }
            if p.marker {
                return Head::Complete { end: seq };
            }
        }
        Head::Blocked {
            timestamp: first.timestamp,
            gap: None,
        }
    }

    /// Whether `seq` certainly begins an access unit: an SPS, what follows the end of a
    /// picture, or the first slice of a picture other than an IDR (whose SPS and PPS come
    /// first; a P picture begins with its slice), known even when the packet before it
    /// was lost.
    fn starts_au(&self, seq: u64) -> bool {
        let Some(p) = self.packets.get(&seq) else {
            return false;
        };
        p.starts_au
            || p.start.is_some_and(|s| !s.idr)
            || self.done == Some(seq - 1)
            || self
                .packets
                .get(&(seq - 1))
                .is_some_and(|prev| prev.marker || prev.timestamp != p.timestamp)
    }

    /// With the chain broken: drops everything before the first whole keyframe and resumes
    /// there. Whether it could.
    fn resume_at_keyframe(&mut self, now: Instant) -> bool {
        let found = if self.searched {
            None
        } else {
            self.searched = true;
            self.keyframes
                .iter()
                .copied()
                .filter(|&seq| self.starts_au(seq))
                .find(|&seq| matches!(self.head(seq), Head::Complete { .. }))
        };
        let Some(seq) = found else {
            if self.broken_since.is_none() && self.request_pending.is_none() {
                self.broken_since = Some(now);
            }
            return false;
        };
        self.drop_before(seq);
        self.done = Some(seq - 1);
        self.chain = true;
        self.broken_since = None;
        self.request_pending = None;
        true
    }

    /// A keyframe's first packet is held and its missing packets are still being asked for.
    fn keyframe_on_its_way(&self) -> bool {
        self.keyframes
            .iter()
            .any(|&seq| self.packets[&seq].starts_au && self.nacks.awaited(seq..seq + 64))
    }

    fn drop_before(&mut self, seq: u64) {
        let kept = self.packets.split_off(&seq);
        let mut last = None;
        for p in self.packets.values() {
            if last != Some(p.timestamp) {
                self.stats.pictures_dropped += 1;
                last = Some(p.timestamp);
            }
        }
        self.packets = kept;
        self.keyframes = self.keyframes.split_off(&seq);
        self.nacks.forget_before(seq);
        // `done` moves: a keyframe after it may now start the chain.
        self.searched = false;
    }

    /// Drops the picture at the head (or everything, when no later picture is known to
    /// start) and breaks the chain.
    fn give_up(&mut self, now: Instant) {
        let start = self.done.map_or(0, |d| d + 1);
        let next_start = self.next_picture(start);
        match next_start {
            Some(seq) => {
                self.drop_before(seq);
                self.done = Some(seq - 1);
            }
            None => {
                if let Some((&last, _)) = self.packets.last_key_value() {
                    self.drop_before(last + 1);
                    self.done = Some(last);
                }
            }
        }
        // A picture no other refers to (`nal_ref_idc` 0: every other one from a sender with
        // two temporal layers) costs only itself: when the next picture follows the last one
        // released, the chain holds.
        if next_start.is_some_and(|seq| self.follows_last(seq)) {
            return;
        }
        self.break_chain(now);
        // Nothing decodable can come without a keyframe: ask now, unless one is arriving.
        self.request_pending = (!self.keyframe_on_its_way()).then_some(now);
    }

    /// The first held packet after `start` that certainly begins an access unit.
    fn next_picture(&self, start: u64) -> Option<u64> {
        self.packets
            .range(start + 1..)
            .map(|(seq, _)| *seq)
            .find(|&seq| self.starts_au(seq))
    }

    /// Whether the blocked picture at `start` is to be passed over now: nothing refers to
    /// it (the picture after it follows the last one released, by its `frame_num`), and
    /// that next picture is whole and due, so waiting longer would hold it too (a freeze
    /// for the sake of one picture). On long round trips it changes little: with 8 % burst
    /// loss at 120 ± 40 ms the playout delay (0.7–0.9 s) already covers most of the wait,
    /// and three seeds froze 254 s in all with it, 259 s without. It matters where the
    /// delay is short next to the give-up time (the grid mixer, which does not wait for
    /// playout, or a repair that never comes on a short link).
    fn skip_due(&self, start: u64, now: Instant) -> bool {
        self.skip_at(start)
            .is_some_and(|at| !self.smooth || now >= at)
    }

    /// When the blocked picture at `start` may be passed over in smooth playout (see
    /// [`skip_due`](Self::skip_due)): [`SKIP_GRACE`] after the next picture's playout time;
    /// `None` while that next picture is not held whole or refers to the blocked one.
    fn skip_at(&self, start: u64) -> Option<Instant> {
        let next = self.next_picture(start)?;
        (self.follows_last(next) && matches!(self.head(next), Head::Complete { .. }))
            .then(|| self.playout(self.packets[&next].timestamp) + SKIP_GRACE)
    }

    /// Whether the picture beginning at `seq` refers to no picture after the last one
    /// released, by its `frame_num`.
    fn follows_last(&self, seq: u64) -> bool {
        match (
            self.last_start,
            self.packets.get(&seq).and_then(|p| p.start),
            self.frame_num_bits,
        ) {
            (Some(last), Some(this), Some(bits)) => last.followed_by(&this, bits),
            _ => false,
        }
    }

    fn break_chain(&mut self, now: Instant) {
        self.chain = false;
        if self.broken_since.is_none() {
            self.broken_since = Some(now);
        }
    }

    fn release(&mut self, start: u64, end: u64) -> Picture {
        self.keyframes = self.keyframes.split_off(&(end + 1));
        let mut rest = self.packets.split_off(&(end + 1));
        std::mem::swap(&mut rest, &mut self.packets);
        let parts = rest.split_off(&start);
        self.done = Some(end);
        self.nacks.forget_before(end + 1);
        let first = &parts[&start];
        let (timestamp, keyframe) = (first.timestamp, first.keyframe);
        self.last_ts = Some(timestamp);
        self.last_start = parts.values().find_map(|p| p.start);
        let complete_at = parts
            .values()
            .map(|p| p.arrival)
            .max()
            .unwrap_or(first.arrival);
        self.note_lateness(timestamp, complete_at);
        let mut depacketizer = H264Packet::default();
        let mut data = BytesMut::new();
        let mut corrupt = false;
        for p in parts.values().filter(|p| !p.payload.is_empty()) {
            if !stap_a_lengths_fit(&p.payload) {
                corrupt = true;
                continue;
            }
            match depacketizer.depacketize(&p.payload) {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(_) => corrupt = true,
            }
        }
        self.stats.pictures += 1;
        if corrupt {
            data.clear();
        }
        Picture {
            data: data.freeze(),
            timestamp: timestamp as u32,
            keyframe,
        }
    }

    /// Keeps the playout delay at the 99th percentile of how late pictures became whole.
    fn note_lateness(&mut self, ts: u64, complete_at: Instant) {
        // Whole milliseconds: RTP's 90 kHz ticks round media time by a few microseconds,
        // which is not lateness.
        let late = complete_at.saturating_duration_since(self.clock.expected(ts));
        let late = Duration::from_millis(late.as_millis() as u64);
        self.delay.note(late.min(MAX_WAIT));
        if !self.smooth {
            return;
        }
        let sorted = self.delay.sorted();
        let (Some(mut target), Some(median)) =
            (quantile(&sorted, 99), sorted.get(sorted.len() / 2))
        else {
            return;
        };
        if self.nacks.sent > 0 && !self.delay.is_full() {
            // Losses seen and too few pictures yet to know the tail: until then, leave
            // room for one repair (a round trip) beyond the usual arrival.
            target = target.max(*median + self.rtt);
        }
        // Repairs take a few round trips; a picture later than that came from a stalled
        // sender (measured: a browser's encoder on a busy machine, half a second once),
        // and holding every later picture back by as much would cost more than the one
        // freeze it avoids.
        target = target.min((self.rtt * 3 + Duration::from_millis(30)).max(MIN_DELAY_CAP));
        self.delay.follow(target);
    }
}

/// Whether an H.264 RTP payload that is a STAP-A (type 24) has whole length fields: `rtc`'s
/// depacketiser (0.21.1) reads the second byte of a length past the end of a STAP-A with
/// one byte left over and panics (fuzzing found it: a 22-byte payload). Other types pass.
fn stap_a_lengths_fit(payload: &[u8]) -> bool {
    if payload.first().is_none_or(|b| b & 0x1f != 24) {
        return true;
    }
    let mut at = 1;
    while at < payload.len() {
        let Some(len) = payload.get(at..at + 2) else {
            return false;
        };
        at += 2 + u16::from_be_bytes([len[0], len[1]]) as usize;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_stap_a_with_a_torn_length_is_a_corrupt_picture_not_a_panic() {
        // Found by fuzzing (fuzz/regressions/video_buffer/stap_a_odd_tail): one byte after
        // the last aggregated unit made `rtc`'s depacketiser index past the end.
        assert!(!stap_a_lengths_fit(&[0x78, 0x00, 0x01, 0x09, 0x00]));
        assert!(stap_a_lengths_fit(&[0x78, 0x00, 0x01, 0x09]));
        assert!(stap_a_lengths_fit(&[0x65, 0x88]));
        let t0 = Instant::now();
        let mut buffer = VideoBuffer::new(false, t0);
        buffer.insert(
            t0,
            1,
            3000,
            true,
            Bytes::from_static(&[0x78, 0x00, 0x01, 0x09, 0x00]),
        );
        let mut released = Vec::new();
        for ms in 0..1000 {
            while let Some(p) = buffer.poll(t0 + ms * MS) {
                released.push(p);
            }
        }
        assert!(released.iter().all(|p| p.data.is_empty()), "{released:?}");
    }

    /// A one-packet slice NAL unit with a real slice header: first_mb_in_slice, slice_type
    /// and pic_parameter_set_id all 0 (ue: 1 1 1), then `frame_num` in 8 bits (the width
    /// [`sps_8_bit_frame_num`] gives) and the stop bit.
    fn slice(nal: u8, frame_num: u8) -> Bytes {
        Bytes::from(vec![
            nal,
            0b1110_0000 | (frame_num >> 3),
            ((frame_num & 7) << 5) | 0x10,
        ])
    }

    /// Sequence number 100, timestamp 0: an SPS whose `frame_num` has 8 bits.
    fn sps_8_bit_frame_num() -> (u16, u32, bool, Bytes) {
        (
            100,
            0,
            false,
            Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1f, 0x94]),
        )
    }

    /// Packets of a stream of pictures: picture `i` at 30 fps, `per` packets each, the
    /// first picture and every `gop`-th a keyframe (SPS first).
    fn stream(pictures: u32, per: u16, gop: u32) -> Vec<(u16, u32, bool, Bytes)> {
        let mut out = Vec::new();
        let mut seq = 100u16;
        for i in 0..pictures {
            let ts = 3000 * i;
            for k in 0..per {
                let payload: Vec<u8> = if i % gop == 0 && k == 0 {
                    vec![0x67, 0x42, 0xc0, 0x1f]
                } else if i % gop == 0 {
                    vec![0x65, i as u8, k as u8]
                } else {
                    vec![0x41, i as u8, k as u8]
                };
                out.push((seq, ts, k == per - 1, Bytes::from(payload)));
                seq = seq.wrapping_add(1);
            }
        }
        out
    }

    /// What a run of a buffer gave.
    #[derive(Default)]
    struct Run {
        /// Released pictures: timestamp, when.
        out: Vec<(u32, Duration)>,
        nacked: Vec<u16>,
        requests: Vec<Duration>,
    }

    /// Feeds `packets` arriving at `arrival(i)` and polls every millisecond.
    fn run(
        buffer: &mut VideoBuffer,
        packets: &[(u16, u32, bool, Bytes)],
        arrival: impl Fn(usize) -> Option<Duration>,
        total: Duration,
    ) -> Run {
        let t0 = Instant::now();
        let mut due: Vec<(Duration, usize)> = (0..packets.len())
            .filter_map(|i| arrival(i).map(|t| (t, i)))
            .collect();
        due.sort();
        let mut r = Run::default();
        let mut next = 0;
        let mut t = Duration::ZERO;
        while t <= total {
            while next < due.len() && due[next].0 <= t {
                let (s, ts, m, p) = &packets[due[next].1];
                buffer.insert(t0 + t, *s, *ts, *m, p.clone());
                next += 1;
            }
            while let Some(p) = buffer.poll(t0 + t) {
                r.out.push((p.timestamp, t));
            }
            r.nacked.extend(buffer.nacks_due(t0 + t));
            if buffer.keyframe_request_due(t0 + t) {
                r.requests.push(t);
            }
            // Serviced at `t`: the next wake-up is later (a timer in the past is a busy loop).
            let wake = buffer.next_timeout();
            assert!(
                wake.is_none_or(|w| w > t0 + t),
                "wake-up at {:?}, serviced at {t:?}",
                wake.map(|w| w - t0)
            );
            t += MS;
        }
        r
    }

    fn at(i: usize, per: usize) -> Duration {
        Duration::from_micros((i / per) as u64 * 33_333 + (i % per) as u64 * 1000) + 40 * MS
    }

    #[test]
    fn padding_between_pictures_fills_its_place_and_breaks_nothing() {
        // Three empty packets with the previous picture's timestamp after every fifth
        // picture, as a sender probing for bandwidth without RTX sends them.
        let mut packets = Vec::new();
        let mut seq = 100u16;
        for (i, (_, ts, marker, payload)) in stream(30, 3, 30).into_iter().enumerate() {
            packets.push((seq, ts, marker, payload));
            seq += 1;
            if marker && (i / 3) % 5 == 4 {
                for _ in 0..3 {
                    packets.push((seq, ts, false, Bytes::new()));
                    seq += 1;
                }
            }
        }
        let padding: Vec<usize> = (0..packets.len())
            .filter(|&i| packets[i].3.is_empty())
            .collect();
        let mut b = VideoBuffer::new(true, Instant::now());
        let clean = run(&mut b, &packets, |i| Some(at(i, 3)), 1500 * MS);
        assert_eq!(clean.out.len(), 30, "every picture, none made of padding");
        assert!(clean.requests.is_empty(), "no keyframe request");
        assert_eq!(b.stats().packets_padding, 18);
        assert_eq!(b.stats().pictures_dropped, 0);
        // Padding is not retransmitted. Lost before more padding of the same picture, it can
        // only have been padding: nothing waits for it.
        let lost = [padding[0], padding[1], padding[4]];
        let mut b = VideoBuffer::new(true, Instant::now());
        let r = run(
            &mut b,
            &packets,
            |i| (!lost.contains(&i)).then(|| at(i, 3)),
            1500 * MS,
        );
        assert!(r.requests.is_empty());
        assert_eq!(r.out, clean.out, "no picture waited for the lost padding");
        // Lost last in its run, it cannot be told from a lost picture: after the usual wait
        // the buffer shows what came before, skips on and asks for a keyframe.
        let mut b = VideoBuffer::new(true, Instant::now());
        let r = run(
            &mut b,
            &packets,
            |i| (i != padding[2]).then(|| at(i, 3)),
            1500 * MS,
        );
        assert_eq!(r.out.len(), 5);
        assert!(!r.requests.is_empty());
    }

    #[test]
    fn frame_num_tells_lost_padding_from_a_lost_picture() {
        // One packet per picture with a real slice header (frame_num in 8 bits, from the
        // SPS), the first an SPS and an IDR; two padding packets after pictures 4, 9, 14.
        let mut packets = vec![sps_8_bit_frame_num()];
        let mut seq = 101u16;
        for i in 0..20u32 {
            let nal = if i == 0 { 0x65 } else { 0x41 };
            packets.push((seq, 3000 * i, true, slice(nal, i as u8)));
            seq += 1;
            if i % 5 == 4 {
                for _ in 0..2 {
                    packets.push((seq, 3000 * i, false, Bytes::new()));
                    seq += 1;
                }
            }
        }
        // Long enough for a give-up: picture 12 is expected at 340 ms and waits 6 round
        // trips of the default 100 ms (600 ms) and 30 ms more.
        let when = |i: usize| Some(Duration::from_micros(i as u64 * 25_000) + 40 * MS);
        let mut b = VideoBuffer::new(true, Instant::now());
        let clean = run(&mut b, &packets, when, 1200 * MS);
        assert_eq!(clean.out.len(), 20);
        let without = |lost: usize| {
            let mut b = VideoBuffer::new(true, Instant::now());
            run(
                &mut b,
                &packets,
                |i| (i != lost).then(|| when(i)).flatten(),
                1200 * MS,
            )
        };
        // The last padding packet of a run lost: the next picture follows the last one.
        let r = without(packets.iter().rposition(|p| p.3.is_empty()).unwrap());
        assert_eq!(r.out, clean.out, "nothing waited for the padding");
        assert!(r.requests.is_empty());
        // A whole picture lost: the next one does not follow, the buffer gives up on it.
        let r = without(packets.iter().position(|p| p.1 == 3000 * 12).unwrap());
        assert_eq!(r.out.len(), 12);
        assert!(!r.requests.is_empty());
    }

    #[test]
    fn a_lost_picture_nothing_refers_to_costs_only_itself() {
        // Two temporal layers: the IDR, then non-reference (`nal_ref_idc` 0) and reference
        // pictures in turn, two slices (packets) each; the SPS first. `frame_num` (8 bits)
        // grows after each reference picture.
        let mut packets = vec![sps_8_bit_frame_num()];
        for i in 0..20u32 {
            let (nal, frame_num) = match i {
                0 => (0x65, 0),
                _ if i % 2 == 1 => (0x01, i.div_ceil(2)),
                _ => (0x41, i / 2),
            };
            for k in 0..2u16 {
                let seq = 101 + 2 * i as u16 + k;
                packets.push((seq, 3000 * i, k == 1, slice(nal, frame_num as u8)));
            }
        }
        let when = |i: usize| Some(Duration::from_micros(i as u64 * 16_000) + 40 * MS);
        let without = |lost: usize| {
            let mut b = VideoBuffer::new(true, Instant::now());
            let r = run(
                &mut b,
                &packets,
                |i| (i != lost).then(|| when(i)).flatten(),
                1500 * MS,
            );
            (r, b.stats())
        };
        let second_slice =
            |picture: u32| packets.iter().rposition(|p| p.1 == 3000 * picture).unwrap();
        // The second slice of non-reference picture 7 never comes: the buffer drops it
        // and goes on with picture 8, asking for no keyframe, soon after picture 8 is due
        // (`SKIP_GRACE`; not at picture 7's give-up time, 600 ms on: that would freeze the
        // pictures behind it).
        let (r, stats) = without(second_slice(7));
        let stamps: Vec<u32> = r.out.iter().map(|(ts, _)| *ts / 3000).collect();
        assert_eq!(stamps, (0..20).filter(|&i| i != 7).collect::<Vec<_>>());
        assert!(r.requests.is_empty(), "{:?}", r.requests);
        assert_eq!(stats.pictures_dropped, 1);
        let (six, eight) = (r.out[6].1, r.out[7].1);
        assert!(
            eight - six < 67 * MS + SKIP_GRACE + 10 * MS,
            "picture 6 at {six:?}, 8 at {eight:?}"
        );
        // The same loss in reference picture 8 breaks the chain: the pictures after it wait
        // for a keyframe, which is asked for.
        let (r, _) = without(second_slice(8));
        assert_eq!(r.out.len(), 8);
        assert!(!r.requests.is_empty());
    }

    #[test]
    fn a_clean_stream_comes_out_whole_without_delay() {
        let packets = stream(30, 3, 30);
        let mut b = VideoBuffer::new(true, Instant::now());
        let r = run(&mut b, &packets, |i| Some(at(i, 3)), 1100 * MS);
        assert_eq!(r.out.len(), 30);
        assert!(r.nacked.is_empty() && r.requests.is_empty());
        // No waiting beyond the spread of a picture's own packets (2 ms here).
        assert!(b.delay() <= 3 * MS, "{:?}", b.delay());
        // Each picture leaves as soon as its last packet is in (polled each millisecond).
        assert!(r.out[1].1 >= at(5, 3) && r.out[1].1 < at(5, 3) + MS);
    }

    #[test]
    fn reordered_packets_are_put_back_in_order() {
        let packets = stream(10, 3, 30);
        let mut b = VideoBuffer::new(true, Instant::now());
        // Packets 4 and 5 swap places.
        let order = |i: usize| match i {
            4 => Some(at(5, 3)),
            5 => Some(at(4, 3)),
            _ => Some(at(i, 3)),
        };
        let r = run(&mut b, &packets, order, 600 * MS);
        let stamps: Vec<u32> = r.out.iter().map(|(ts, _)| *ts).collect();
        assert_eq!(stamps, (0..10).map(|i| i * 3000).collect::<Vec<_>>());
        assert_eq!(b.stats().pictures_dropped, 0);
    }

    #[test]
    fn retransmissions_in_time_repair_pictures_and_the_delay_learns_to_wait_for_them() {
        let packets = stream(150, 3, 150);
        let mut b = VideoBuffer::new(true, Instant::now());
        b.set_rtt(80 * MS);
        // The middle packet of every tenth picture is lost and comes back 70 ms late.
        let lost = |i: usize| i % 30 == 16;
        let r = run(
            &mut b,
            &packets,
            |i| {
                Some(if lost(i) {
                    at(i + 1, 3) + 70 * MS
                } else {
                    at(i, 3)
                })
            },
            5500 * MS,
        );
        assert_eq!(r.out.len(), 150, "every picture released");
        let nacked: Vec<u16> = (0..150 * 3)
            .filter(|&i| lost(i))
            .map(|i| packets[i].0)
            .collect();
        assert_eq!(r.nacked, nacked, "each loss NACKed once, at once");
        assert_eq!(b.stats().packets_recovered, nacked.len() as u64);
        assert_eq!(b.stats().keyframe_requests, 0);
        assert!(b.delay() >= 60 * MS, "delay learned: {:?}", b.delay());
        // Once learned, repaired pictures are on time: no gap of three frame intervals.
        let gaps: Vec<Duration> = r.out[60..].windows(2).map(|w| w[1].1 - w[0].1).collect();
        assert!(gaps.iter().all(|g| *g < 100 * MS), "{gaps:?}");
    }

    #[test]
    fn an_unrepaired_loss_waits_then_skips_to_the_next_keyframe_and_asks_for_one() {
        let packets = stream(90, 3, 45);
        let mut b = VideoBuffer::new(true, Instant::now());
        b.set_rtt(50 * MS);
        let lost = 3 * 10 + 1;
        let r = run(
            &mut b,
            &packets,
            |i| (i != lost).then(|| at(i, 3)),
            3500 * MS,
        );
        let released: Vec<u32> = r.out.iter().map(|(ts, _)| ts / 3000).collect();
        let requests: Vec<u128> = r.requests.iter().map(|t| t.as_millis()).collect();
        // Pictures 0..9 play, 10..44 are lost (no keyframe until 45), 45.. play.
        assert_eq!(released[..10], (0..10).collect::<Vec<_>>()[..]);
        assert_eq!(released[10..], (45..90).collect::<Vec<_>>()[..]);
        assert_eq!(b.stats().pictures_dropped, 35);
        // Asked as soon as the buffer gave up on picture 10 (expected at 373 ms, given up
        // 6 RTT of 50 ms + 30 ms later), then again no sooner than 500 ms later.
        assert!(
            !requests.is_empty() && requests[0] >= 700 && requests[0] < 720,
            "{requests:?}"
        );
        assert!(
            requests.windows(2).all(|w| w[1] - w[0] >= 500),
            "{requests:?}"
        );
    }

    #[test]
    fn after_an_outage_it_asks_for_a_keyframe_at_once_instead_of_nacking_the_gap() {
        let packets = stream(240, 3, 240);
        let mut b = VideoBuffer::new(true, Instant::now());
        // Pictures 60..180 (4 s) never arrive.
        let r = run(
            &mut b,
            &packets,
            |i| (!(180..540).contains(&i)).then(|| at(i, 3)),
            8200 * MS,
        );
        assert!(r.nacked.is_empty(), "{} NACKed", r.nacked.len());
        // Asked within a millisecond of the first packet after the outage, then every
        // 500 ms while no keyframe comes.
        let first = r.requests[0];
        assert!(
            first >= at(540, 3) && first <= at(540, 3) + MS,
            "{:?}",
            r.requests
        );
        assert!(r.requests.windows(2).all(|w| w[1] - w[0] >= 500 * MS));
        assert_eq!(
            r.out.len(),
            60,
            "nothing decodable after it without a keyframe"
        );
    }

    #[test]
    fn a_stream_joined_without_its_first_keyframe_asks_for_one_after_the_grace() {
        let packets = stream(30, 3, 300);
        let mut b = VideoBuffer::new(false, Instant::now());
        let r = run(&mut b, &packets[3..], |i| Some(at(i, 3)), 400 * MS);
        assert!(r.out.is_empty(), "no keyframe, nothing decodable");
        assert_eq!(r.requests.len(), 1, "asked once the grace was over");
        assert!(r.requests[0] >= 200 * MS && r.requests[0] < 300 * MS);
    }
}
