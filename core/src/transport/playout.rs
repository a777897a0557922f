//! The audio playout buffer: Opus RTP packets in, one 20 ms frame out at a time, each at its
//! playout time, with a decision for every frame — decode the packet, rebuild it from the
//! in-band FEC of the packet after it, or conceal it. Pure, on the caller's clock.
//!
//! The playout delay follows the network (NetEq's rule): the 95th percentile of how late
//! recent packets arrived against the fastest transit, plus one frame so that the packet
//! after a lost one is usually in when the lost one is due (its FEC copy can then replace
//! it). It rises at once and falls by at most 1 ms per frame.
//!
//! Copies of earlier frames that a packet carries (redundant audio, [`crate::codec::red`])
//! go in with [`AudioPlayout::insert_copy`]: a copy fills the place of a lost packet and
//! teaches the delay nothing. While copies come, the margin is as many frames as they are
//! back instead of one, so a frame's copy is in when the frame is due.
//!
//! A frame is concealed only when it is known to be missing (a later packet is in). When
//! nothing later has arrived the buffer simply waits: a sender in DTX or muted sends nothing
//! and its silence is not loss. After a pause longer than the delay, playout restarts at
//! the first packet held instead of concealing the whole pause.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::clock::{PlayoutClock, PlayoutDelay, SeqExtender, TsExtender, quantile};

/// Ticks of one 20 ms Opus frame at 48 kHz.
const FRAME_TICKS: u64 = 960;
/// Most playout delay.
pub const MAX_DELAY: Duration = Duration::from_millis(300);
/// Packets whose lateness sets the delay (4 s of 20 ms frames).
const WINDOW: usize = 200;
/// Most packets held.
const CAPACITY: usize = 500;

/// What to play next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioOut {
    /// Decode this packet.
    Packet {
        /// The Opus packet.
        payload: Bytes,
        /// Its RTP timestamp (48 kHz).
        timestamp: u32,
    },
    /// The packet is lost; the next one is in: decode its FEC data for this frame.
    Fec {
        /// The *next* packet (it is played normally after this).
        next: Bytes,
        /// RTP timestamp of the lost frame.
        timestamp: u32,
    },
    /// The packet is lost and nothing can rebuild it: conceal one frame.
    Conceal {
        /// RTP timestamp of the lost frame.
        timestamp: u32,
    },
}

/// What the buffer counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlayoutStats {
    /// Frames played from their own packet.
    pub played: u64,
    /// Frames rebuilt from the next packet's FEC.
    pub fec: u64,
    /// Frames concealed.
    pub concealed: u64,
    /// Packets that came after their frame was due.
    pub late: u64,
    /// Frames lost in a pause longer than the delay, skipped rather than concealed.
    pub skipped: u64,
    /// Frames played from a copy in a later packet (their own packet lost).
    pub copies: u64,
}

struct Held {
    timestamp: u64,
    payload: Bytes,
    /// Came as a copy in a later packet.
    copy: bool,
}

/// How long the margin for copies lasts after the last copy arrived.
const COPY_MEMORY: Duration = Duration::from_secs(5);

/// One audio stream's playout buffer. See the [module documentation](self).
pub struct AudioPlayout {
    seqs: SeqExtender,
    stamps: TsExtender,
    packets: BTreeMap<u64, Held>,
    /// Next sequence number to play and its timestamp.
    next: Option<(u64, u64)>,
    clock: PlayoutClock,
    delay: PlayoutDelay,
    stats: PlayoutStats,
    /// When the last copy arrived, and how many frames back it was.
    last_copy: Option<(Instant, u64)>,
}

impl std::fmt::Debug for AudioPlayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioPlayout")
            .field("held", &self.packets.len())
            .field("delay", &self.delay.get())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl AudioPlayout {
    /// An empty buffer.
    pub fn new(now: Instant) -> Self {
        Self {
            seqs: SeqExtender::default(),
            stamps: TsExtender::default(),
            packets: BTreeMap::new(),
            next: None,
            clock: PlayoutClock::new(now, 48_000),
            delay: PlayoutDelay::new(WINDOW, Duration::from_millis(20)),
            stats: PlayoutStats::default(),
            last_copy: None,
        }
    }

    /// What was counted so far.
    pub fn stats(&self) -> PlayoutStats {
        self.stats
    }

    /// The current playout delay on top of the fastest transit.
    pub fn delay(&self) -> Duration {
        self.delay.get()
    }

    /// One packet arrived at `now`.
    pub fn insert(&mut self, now: Instant, seq: u16, timestamp: u32, payload: Bytes) {
        let ext = self.seqs.extend(seq);
        let ts = self.stamps.extend(timestamp);
        self.clock.arrival(now, ts);
        let late = now.saturating_duration_since(self.clock.expected(ts));
        // Packets too late to play count too: they are what the delay must learn.
        self.delay.note(late.min(MAX_DELAY));
        if self.next.is_some_and(|(n, _)| ext < n) {
            self.stats.late += 1;
            return;
        }
        self.packets.insert(
            ext,
            Held {
                timestamp: ts,
                payload,
                copy: false,
            },
        );
        self.trim();
    }

    /// A copy of frame `(seq, timestamp)` arrived at `now` in a later packet, `back` packets
    /// after it. Kept only when its own packet is neither held nor already due; it does not
    /// count as an arrival for the delay (it is late by design).
    pub fn insert_copy(
        &mut self,
        now: Instant,
        seq: u16,
        timestamp: u32,
        back: u16,
        payload: Bytes,
    ) {
        self.last_copy = Some((now, u64::from(back.max(1))));
        let ext = self.seqs.extend(seq);
        if self.next.is_some_and(|(n, _)| ext < n) || self.packets.contains_key(&ext) {
            return;
        }
        let ts = self.stamps.extend(timestamp);
        self.packets.insert(
            ext,
            Held {
                timestamp: ts,
                payload,
                copy: true,
            },
        );
        self.trim();
    }

    fn trim(&mut self) {
        while self.packets.len() > CAPACITY {
            self.packets.pop_first();
            self.stats.late += 1;
        }
    }

    /// The next frame due at `now`, if any.
    pub fn poll(&mut self, now: Instant) -> Option<AudioOut> {
        let (seq, ts) = match self.next {
            Some(n) => n,
            None => {
                let (&seq, p) = self.packets.first_key_value()?;
                (seq, p.timestamp)
            }
        };
        let (seq, ts) = match self.packets.get(&seq) {
            Some(p) => (seq, p.timestamp),
            None => {
                let (&first, p) = self.packets.first_key_value()?;
                // A pause (DTX, mute, outage) longer than the delay: restart at the first
                // packet held rather than conceal the pause.
                if now > self.playout(ts) + self.delay.get() + Duration::from_millis(60)
                    || p.timestamp > ts + 25 * FRAME_TICKS
                {
                    self.stats.skipped += first - seq;
                    (first, p.timestamp)
                } else {
                    (seq, ts)
                }
            }
        };
        if now < self.playout(ts) {
            self.next = Some((seq, ts));
            return None;
        }
        self.adapt(now);
        let out = match self.packets.remove(&seq) {
            Some(p) => {
                if p.copy {
                    self.stats.copies += 1;
                } else {
                    self.stats.played += 1;
                }
                AudioOut::Packet {
                    payload: p.payload,
                    timestamp: p.timestamp as u32,
                }
            }
            None => match self.packets.get(&(seq + 1)) {
                Some(next) => {
                    self.stats.fec += 1;
                    AudioOut::Fec {
                        next: next.payload.clone(),
                        timestamp: ts as u32,
                    }
                }
                None => {
                    self.stats.concealed += 1;
                    AudioOut::Conceal {
                        timestamp: ts as u32,
                    }
                }
            },
        };
        let next_ts = self
            .packets
            .get(&(seq + 1))
            .map_or(ts + FRAME_TICKS, |p| p.timestamp);
        self.next = Some((seq + 1, next_ts));
        Some(out)
    }

    /// When [`poll`](Self::poll) has something next.
    pub fn next_timeout(&self) -> Option<Instant> {
        let (seq, ts) = match self.next {
            Some(n) => n,
            None => self
                .packets
                .first_key_value()
                .map(|(s, p)| (*s, p.timestamp))?,
        };
        // With nothing held, the next arrival ends the wait (a silent sender is not lost).
        let known = self.packets.range(seq..).next().is_some();
        known.then(|| self.playout(ts))
    }

    fn playout(&self, ts: u64) -> Instant {
        self.clock.expected(ts) + self.delay.get()
    }

    fn adapt(&mut self, now: Instant) {
        // One frame of margin for the next packet's FEC, or as many as copies come back.
        let frames = match self.last_copy {
            Some((at, back)) if now < at + COPY_MEMORY => back,
            _ => 1,
        };
        if let Some(p95) = quantile(&self.delay.sorted(), 95) {
            self.delay
                .follow((p95 + Duration::from_millis(20 * frames)).min(MAX_DELAY));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Plays packets `0..n` arriving at `arrival(i)` (none: lost), polling every ms;
    /// returns what came out with its time.
    fn play(
        n: u16,
        arrival: impl Fn(u16) -> Option<Duration>,
        total: Duration,
    ) -> (AudioPlayout, Vec<(AudioOut, Duration)>) {
        let t0 = Instant::now();
        let mut b = AudioPlayout::new(t0);
        let mut due: Vec<(Duration, u16)> =
            (0..n).filter_map(|i| arrival(i).map(|t| (t, i))).collect();
        due.sort();
        let mut out = Vec::new();
        let mut k = 0;
        let mut t = Duration::ZERO;
        while t <= total {
            while k < due.len() && due[k].0 <= t {
                let i = due[k].1;
                b.insert(t0 + t, 1000 + i, 960 * i as u32, Bytes::from(vec![i as u8]));
                k += 1;
            }
            while let Some(o) = b.poll(t0 + t) {
                out.push((o, t));
            }
            // Serviced at `t`: the next wake-up is later (a timer in the past is a busy loop).
            let wake = b.next_timeout();
            assert!(
                wake.is_none_or(|w| w > t0 + t),
                "wake-up at {:?}, serviced at {t:?}",
                wake.map(|w| w - t0)
            );
            t += MS;
        }
        (b, out)
    }

    #[test]
    fn a_steady_stream_plays_every_frame_twenty_ms_apart() {
        let (b, out) = play(100, |i| Some(30 * MS + 20 * MS * i as u32), 2200 * MS);
        assert_eq!(out.len(), 100);
        assert!(out.windows(2).all(|w| w[1].1 - w[0].1 == 20 * MS));
        assert_eq!(b.stats().played, 100);
        assert_eq!(b.delay(), 20 * MS, "one frame of margin, no jitter");
    }

    #[test]
    fn a_lost_packet_is_rebuilt_from_the_next_ones_fec_and_two_in_a_row_are_concealed() {
        let lost = |i: u16| i == 40 || i == 60 || i == 61;
        let (b, out) = play(
            100,
            |i| (!lost(i)).then(|| 30 * MS + 20 * MS * i as u32),
            2500 * MS,
        );
        assert_eq!(out.len(), 100, "a frame for every packet, lost or not");
        assert!(matches!(out[40].0, AudioOut::Fec { ref next, .. } if next[..] == [41]));
        assert!(matches!(out[60].0, AudioOut::Conceal { .. }));
        assert!(matches!(out[61].0, AudioOut::Fec { .. }));
        assert_eq!(b.stats().fec, 2);
        assert_eq!(b.stats().concealed, 1);
    }

    #[test]
    fn jitter_raises_the_delay_and_reordered_packets_still_play_in_order() {
        // Every third packet 30 ms late (and so behind the next one).
        let (b, out) = play(
            200,
            |i| Some(30 * MS + 20 * MS * i as u32 + if i % 3 == 0 { 30 * MS } else { MS }),
            4500 * MS,
        );
        assert!(b.delay() >= 40 * MS, "{:?}", b.delay());
        let played: Vec<u32> = out
            .iter()
            .filter_map(|(o, _)| match o {
                AudioOut::Packet { timestamp, .. } => Some(timestamp / 960),
                _ => None,
            })
            .collect();
        assert!(played.windows(2).all(|w| w[1] > w[0]));
        // After the delay has learned the jitter, nothing is lost.
        assert!(b.stats().played >= 190, "{:?}", b.stats());
    }

    #[test]
    fn copies_two_packets_back_fill_two_losses_in_a_row_and_widen_the_margin() {
        // Packets 0..200, 20 ms apart, 30 ms transit; 60 and 61 lost. Each packet carries a
        // copy of the one two back, as redundant audio does.
        let t0 = Instant::now();
        let mut b = AudioPlayout::new(t0);
        let mut out = Vec::new();
        for ms in 0..4500u32 {
            let now = t0 + ms * MS;
            if ms >= 30 && (ms - 30) % 20 == 0 && (ms - 30) / 20 < 200 {
                let i = ((ms - 30) / 20) as u16;
                if i != 60 && i != 61 {
                    b.insert(now, i, 960 * u32::from(i), Bytes::from(vec![i as u8]));
                }
                if i >= 2 {
                    let j = i - 2;
                    b.insert_copy(now, j, 960 * u32::from(j), 2, Bytes::from(vec![j as u8]));
                }
            }
            while let Some(o) = b.poll(now) {
                out.push(o);
            }
        }
        assert_eq!(out.len(), 200);
        for i in [60usize, 61] {
            assert!(
                matches!(&out[i], AudioOut::Packet { payload, .. } if payload[..] == [i as u8]),
                "{i}: {:?}",
                out[i]
            );
        }
        let stats = b.stats();
        assert_eq!((stats.played, stats.copies, stats.concealed), (198, 2, 0));
        assert_eq!(b.delay(), 40 * MS, "two frames of margin while copies come");
    }

    #[test]
    fn a_pause_is_not_concealed_and_playout_restarts_after_it() {
        // DTX: packets 0..50, then nothing for 2 s, then 50..100 (consecutive sequence
        // numbers, timestamps jump).
        let t0 = Instant::now();
        let mut b = AudioPlayout::new(t0);
        let mut out = 0;
        for ms in 0..5000u32 {
            let now = t0 + ms * MS;
            if ms % 20 == 0 && ms / 20 < 50 {
                let i = ms / 20;
                b.insert(now, i as u16, 960 * i, Bytes::from_static(&[1]));
            }
            if ms >= 3000 && ms % 20 == 0 && (ms - 3000) / 20 < 50 {
                let i = (ms - 3000) / 20;
                b.insert(
                    now,
                    50 + i as u16,
                    960 * (150 + i),
                    Bytes::from_static(&[2]),
                );
            }
            while b.poll(now).is_some() {
                out += 1;
            }
        }
        assert_eq!(out, 100);
        assert_eq!(b.stats().concealed, 0);
        assert_eq!(b.stats().played, 100);
    }
}
