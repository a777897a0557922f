//! Which packets to ask for again, and when: the NACK policy of every receiver in madang (the
//! client's jitter buffers and the server on a publisher's leg). Pure, on the caller's clock.
//!
//! A gap is NACKed once it has been open longer than packets of this stream are usually
//! late by reordering (learned: the 90th percentile of how late reordered packets came, at
//! most a quarter of the round trip and 10 ms, zero on a link that does not reorder), again
//! once per round trip while it stays open, at most [`MAX_NACKS`] times per packet; packets
//! the receiver has stopped waiting for are forgotten.
//!
//! Why wait for reordering: NACKed at once, every reordered packet was asked for and sent
//! twice. Measured on `lte` (± 15 ms jitter reorders paced packets): 10 NACK entries per
//! packet really lost, and retransmissions added about half the media rate again (Chromium
//! answered 1088 NACKs in 18 s for about 100 lost packets).
//!
//! Why not webrtc-rs's `NackGeneratorInterceptor`: it sends on a fixed 100 ms tick (a gap
//! waits 50 ms on average, and up to 100 ms, before its first NACK — on `lte` that is more
//! than the whole round trip the retransmission then needs), ignores the round-trip time,
//! and keeps NACKing packets the jitter buffer has already given up on. The buffer knows
//! both, so the policy sits with it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
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

/// Longest a new gap waits for a reordered packet before its first NACK.
const MAX_HOLD: Duration = Duration::from_millis(10);

/// Reordering delays remembered.
const REORDER_WINDOW: usize = 128;

#[derive(Clone, Copy, Debug)]
struct Pending {
    sent: u8,
    next_at: Instant,
    /// When the gap was seen.
    since: Instant,
}

/// The open gaps of one stream and their NACK schedule.
#[derive(Debug, Default)]
pub struct NackList {
    /// Missing packets with NACKs left to send.
    pending: BTreeMap<u64, Pending>,
    /// `pending` ordered by due time.
    schedule: BTreeSet<(Instant, u64)>,
    /// Missing packets asked for [`MAX_NACKS`] times.
    exhausted: BTreeSet<u64>,
    /// How late recent reordered packets came after their gap was seen.
    reorder: VecDeque<Duration>,
    /// How long a new gap waits before its first NACK.
    hold: Duration,
    /// The round trip last given to [`due`](Self::due).
    rtt: Option<Duration>,
    /// NACK entries sent (one per packet asked for, resends included).
    pub sent: u64,
}

impl NackList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// A packet arrived with extended number `ext` while `highest` was the highest before
    /// it: the packets between are missing (due for a NACK once the reordering hold has
    /// passed). Returns whether `ext` had been NACKed (a retransmission, or a packet late
    /// enough to be asked for).
    pub fn on_packet(&mut self, now: Instant, ext: u64, highest: Option<u64>) -> bool {
        if let Some(h) = highest
            && ext > h + 1
        {
            if ext - h > MAX_GAP {
                self.clear();
            } else {
                let at = now + self.hold;
                for s in h + 1..ext {
                    self.pending.insert(
                        s,
                        Pending {
                            sent: 0,
                            next_at: at,
                            since: now,
                        },
                    );
                    self.schedule.insert((at, s));
                }
                let excess = self.len().saturating_sub(MAX_TRACKED);
                if excess > 0 {
                    let cut = self.oldest(excess);
                    self.forget_before(cut);
                }
            }
        }
        self.remove(now, ext)
    }

    /// Stops asking for everything below `ext` (the receiver moved past it).
    pub fn forget_before(&mut self, ext: u64) {
        let kept = self.pending.split_off(&ext);
        for (s, p) in std::mem::replace(&mut self.pending, kept) {
            self.schedule.remove(&(p.next_at, s));
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
        self.rtt = Some(rtt);
        let mut asked = Vec::new();
        while let Some(&(at, s)) = self.schedule.first()
            && at <= now
        {
            self.schedule.pop_first();
            let entry = self
                .pending
                .get_mut(&s)
                .expect("scheduled packets are pending");
            entry.sent += 1;
            if entry.sent < MAX_NACKS {
                entry.next_at = now + rtt;
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

    /// How long new gaps wait for reordered packets.
    #[cfg(test)]
    fn hold(&self) -> Duration {
        self.hold
    }

    fn remove(&mut self, now: Instant, ext: u64) -> bool {
        if let Some(p) = self.pending.remove(&ext) {
            self.schedule.remove(&(p.next_at, ext));
            // Sooner than a retransmission could come: the packet was reordered, not lost.
            let late = now.saturating_duration_since(p.since);
            let rtt = self.rtt.unwrap_or(super::jitter::DEFAULT_RTT);
            if p.sent == 0 || late < rtt / 2 {
                self.learn_reordering(late, rtt);
            }
            p.sent > 0
        } else {
            self.exhausted.remove(&ext)
        }
    }

    fn learn_reordering(&mut self, late: Duration, rtt: Duration) {
        if self.reorder.len() == REORDER_WINDOW {
            self.reorder.pop_front();
        }
        self.reorder.push_back(late);
        let mut sorted: Vec<Duration> = self.reorder.iter().copied().collect();
        sorted.sort_unstable();
        let p90 = super::clock::quantile(&sorted, 90).unwrap_or_default();
        // At most 10 ms: a picture that needs several repair rounds on a long, lossy link
        // should not pay more (measured on 8 % burst loss at 120 ± 40 ms, where the 90th
        // percentile reached 60 ms: 2-4 points fewer pictures with a quarter round trip as
        // the only bound; on `lte` the 10 ms bound keeps two thirds of the NACKs saved by
        // 25 ms).
        self.hold = p90.min(rtt / 4).min(MAX_HOLD);
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
    fn reordered_packets_are_learned_and_not_asked_for_while_losses_still_are() {
        // Every fifth packet comes 8 ms late (behind the next one); every 50th is lost.
        let t0 = Instant::now();
        let rtt = Duration::from_millis(100);
        let ms = Duration::from_millis;
        let mut list = NackList::new();
        let mut arrivals: Vec<(Duration, u64)> = Vec::new();
        for i in 0..2000u64 {
            if i % 50 == 49 {
                continue;
            }
            let late = if i % 5 == 2 { ms(8) } else { ms(0) };
            arrivals.push((ms(5 * i) + late, i));
        }
        arrivals.sort();
        let (mut highest, mut asked) = (None::<u64>, Vec::new());
        let mut next = 0;
        for tick in 0..10_100u64 {
            let now = t0 + ms(tick);
            while next < arrivals.len() && t0 + arrivals[next].0 <= now {
                let ext = arrivals[next].1;
                list.on_packet(now, ext, highest);
                highest = highest.max(Some(ext));
                next += 1;
            }
            if tick >= 5000 {
                asked.extend(list.due(now, rtt));
            } else {
                list.due(now, rtt);
            }
        }
        // Learned: wait a little longer than the reordering, far less than a round trip.
        assert!(
            list.hold() >= ms(3) && list.hold() <= rtt / 4,
            "{:?}",
            list.hold()
        );
        // In the second half: no reordered packet asked for, every loss asked for.
        let reordered = asked.iter().filter(|&&s| s % 5 == 2).count();
        let lost: BTreeSet<u16> = asked.iter().copied().filter(|s| s % 50 == 49).collect();
        assert_eq!(reordered, 0, "{asked:?}");
        assert!(lost.len() >= 19, "{lost:?}");
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
