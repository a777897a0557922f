//! Which packets to ask for again, and when: the NACK policy of every receiver in madang (the
//! client's jitter buffers and the server on a publisher's leg). Pure, on the caller's clock.
//!
//! A gap is NACKed at once, again once per round trip while it stays open, at most
//! [`MAX_NACKS`] times per packet; packets the receiver has stopped waiting for are forgotten.
//!
//! Why not webrtc-rs's `NackGeneratorInterceptor`: it sends on a fixed 100 ms tick (a gap
//! waits 50 ms on average, and up to 100 ms, before its first NACK — on `lte` that is more
//! than the whole round trip the retransmission then needs), ignores the round-trip time,
//! and keeps NACKing packets the jitter buffer has already given up on. The buffer knows
//! both, so the policy sits with it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Most NACKs sent for one packet.
pub const MAX_NACKS: u8 = 10;

/// A gap this many packets wide is a restart of the stream, not loss to repair.
const MAX_GAP: u64 = 1000;

/// Most packets tracked as missing; past it the oldest are forgotten. On `disaster` (a
/// 400 kbit/s link under four 800 kbit/s senders) a receiver saw several hundred open gaps
/// at once before its buffer gave up on them; every operation here stays logarithmic in
/// this bound (a linear scan per timer made a 10 s simulation run longer than 5 minutes).
const MAX_TRACKED: usize = 1000;

/// The open gaps of one stream and their NACK schedule.
#[derive(Debug, Default)]
pub struct NackList {
    /// Missing packets with NACKs left to send: how many were sent, and when the next is due.
    pending: BTreeMap<u64, (u8, Instant)>,
    /// `pending` ordered by due time.
    schedule: BTreeSet<(Instant, u64)>,
    /// Missing packets asked for [`MAX_NACKS`] times.
    exhausted: BTreeSet<u64>,
    /// NACK entries sent (one per packet asked for, resends included).
    pub sent: u64,
}

impl NackList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// A packet arrived with extended number `ext` while `highest` was the highest before
    /// it: the packets between are missing (due for a NACK now). Returns whether `ext` was
    /// one of the missing ones (a retransmission or a late, reordered packet).
    pub fn on_packet(&mut self, now: Instant, ext: u64, highest: Option<u64>) -> bool {
        if let Some(h) = highest
            && ext > h + 1
        {
            if ext - h > MAX_GAP {
                self.clear();
            } else {
                for s in h + 1..ext {
                    self.pending.insert(s, (0, now));
                    self.schedule.insert((now, s));
                }
                let excess = self.len().saturating_sub(MAX_TRACKED);
                if excess > 0 {
                    let cut = self.oldest(excess);
                    self.forget_before(cut);
                }
            }
        }
        self.remove(ext)
    }

    /// Stops asking for everything below `ext` (the receiver moved past it).
    pub fn forget_before(&mut self, ext: u64) {
        let kept = self.pending.split_off(&ext);
        for (s, (_, at)) in std::mem::replace(&mut self.pending, kept) {
            self.schedule.remove(&(at, s));
        }
        self.exhausted = self.exhausted.split_off(&ext);
    }

    /// Packets in `range` still missing with NACKs left to send (the receiver may wait
    /// for them).
    pub fn awaited(&self, range: std::ops::Range<u64>) -> bool {
        self.pending.range(range).next().is_some()
    }

    /// Whether the packet was asked for and is still missing.
    pub fn is_missing(&self, ext: u64) -> bool {
        self.pending.contains_key(&ext) || self.exhausted.contains(&ext)
    }

    /// The 16-bit sequence numbers to NACK now, in sequence order; each is asked for again
    /// one `rtt` later.
    pub fn due(&mut self, now: Instant, rtt: Duration) -> Vec<u16> {
        let mut asked = Vec::new();
        while let Some(&(at, s)) = self.schedule.first()
            && at <= now
        {
            self.schedule.pop_first();
            let entry = self
                .pending
                .get_mut(&s)
                .expect("scheduled packets are pending");
            entry.0 += 1;
            if entry.0 < MAX_NACKS {
                entry.1 = now + rtt;
                self.schedule.insert((now + rtt, s));
            } else {
                self.pending.remove(&s);
                self.exhausted.insert(s);
            }
            asked.push(s);
        }
        asked.sort_unstable();
        self.sent += asked.len() as u64;
        asked.into_iter().map(|s| s as u16).collect()
    }

    /// When [`due`](Self::due) has something next.
    pub fn next_due(&self) -> Option<Instant> {
        self.schedule.first().map(|&(at, _)| at)
    }

    fn len(&self) -> usize {
        self.pending.len() + self.exhausted.len()
    }

    /// The packet number above the `n` oldest missing ones (a merge of the two sorted sets).
    fn oldest(&self, n: usize) -> u64 {
        let mut a = self.pending.keys().peekable();
        let mut b = self.exhausted.iter().peekable();
        let mut last = 0;
        for _ in 0..n {
            last = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x < y => a.next().copied(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next().copied(),
                (Some(_), None) => a.next().copied(),
                (None, None) => None,
            }
            .unwrap_or(last);
        }
        last + 1
    }

    fn remove(&mut self, ext: u64) -> bool {
        if let Some((_, at)) = self.pending.remove(&ext) {
            self.schedule.remove(&(at, ext));
            true
        } else {
            self.exhausted.remove(&ext)
        }
    }

    fn clear(&mut self) {
        self.pending.clear();
        self.schedule.clear();
        self.exhausted.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_is_nacked_at_once_then_once_per_rtt_at_most_ten_times() {
        let t0 = Instant::now();
        let rtt = Duration::from_millis(80);
        let mut list = NackList::new();
        assert!(!list.on_packet(t0, 10, None));
        assert!(!list.on_packet(t0, 13, Some(10)));
        assert_eq!(list.due(t0, rtt), vec![11, 12]);
        assert!(list.due(t0 + Duration::from_millis(79), rtt).is_empty());
        assert_eq!(list.next_due(), Some(t0 + rtt));
        assert!(list.on_packet(t0 + rtt, 11, Some(13)), "11 was missing");
        let mut asked = 1;
        while let Some(next) = list.next_due() {
            assert_eq!(list.due(next, rtt), vec![12]);
            asked += 1;
        }
        assert_eq!(asked, MAX_NACKS);
        assert!(!list.awaited(0..100), "nothing left to ask for");
        assert!(list.is_missing(12));
        list.forget_before(13);
        assert!(!list.is_missing(12) && list.next_due().is_none());
        assert_eq!(list.sent, 11);
    }

    #[test]
    fn at_most_a_thousand_packets_are_tracked_the_oldest_go_first() {
        let t0 = Instant::now();
        let rtt = Duration::from_millis(50);
        let mut list = NackList::new();
        list.on_packet(t0, 0, None);
        let mut highest = 0;
        for ext in (10..3000).step_by(10) {
            list.on_packet(t0, ext, Some(highest));
            highest = ext;
        }
        assert_eq!(list.len(), MAX_TRACKED);
        assert!(!list.is_missing(1) && list.is_missing(2999 - 10));
        let asked = list.due(t0, rtt);
        assert_eq!(asked.len(), MAX_TRACKED);
        assert!(asked.windows(2).all(|w| w[0] < w[1]), "in sequence order");
        assert_eq!(list.next_due(), Some(t0 + rtt));
    }

    #[test]
    fn a_huge_jump_is_a_restart_not_a_thousand_nacks() {
        let t0 = Instant::now();
        let mut list = NackList::new();
        list.on_packet(t0, 5, Some(3));
        list.on_packet(t0, 50_000, Some(5));
        assert!(!list.is_missing(4) && !list.is_missing(49_999));
    }
}
