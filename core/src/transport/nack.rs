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

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Most NACKs sent for one packet.
pub const MAX_NACKS: u8 = 10;

/// A gap this many packets wide is a restart of the stream, not loss to repair.
const MAX_GAP: u64 = 1000;

#[derive(Clone, Copy, Debug)]
struct Missing {
    sent: u8,
    next_at: Instant,
}

/// The open gaps of one stream and their NACK schedule.
#[derive(Debug, Default)]
pub struct NackList {
    missing: BTreeMap<u64, Missing>,
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
                self.missing.clear();
            } else {
                for s in h + 1..ext {
                    self.missing.insert(
                        s,
                        Missing {
                            sent: 0,
                            next_at: now,
                        },
                    );
                }
            }
        }
        self.missing.remove(&ext).is_some()
    }

    /// Stops asking for everything below `ext` (the receiver moved past it).
    pub fn forget_before(&mut self, ext: u64) {
        self.missing = self.missing.split_off(&ext);
    }

    /// Packets in `range` still missing with NACKs left to send (the receiver may wait
    /// for them).
    pub fn awaited(&self, range: std::ops::Range<u64>) -> bool {
        self.missing.range(range).any(|(_, m)| m.sent < MAX_NACKS)
    }

    /// Whether the packet was asked for and is still missing.
    pub fn is_missing(&self, ext: u64) -> bool {
        self.missing.contains_key(&ext)
    }

    /// The 16-bit sequence numbers to NACK now; each is asked for again one `rtt` later.
    pub fn due(&mut self, now: Instant, rtt: Duration) -> Vec<u16> {
        let mut out = Vec::new();
        for (ext, m) in self.missing.iter_mut() {
            if m.sent < MAX_NACKS && m.next_at <= now {
                m.sent += 1;
                m.next_at = now + rtt;
                out.push(*ext as u16);
            }
        }
        self.sent += out.len() as u64;
        out
    }

    /// When [`due`](Self::due) has something next.
    pub fn next_due(&self) -> Option<Instant> {
        self.missing
            .values()
            .filter(|m| m.sent < MAX_NACKS)
            .map(|m| m.next_at)
            .min()
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
    fn a_huge_jump_is_a_restart_not_a_thousand_nacks() {
        let t0 = Instant::now();
        let mut list = NackList::new();
        list.on_packet(t0, 5, Some(3));
        list.on_packet(t0, 50_000, Some(5));
        assert!(!list.is_missing(4) && !list.is_missing(49_999));
    }
}
