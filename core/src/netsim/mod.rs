//! A simulated network: links with delay, jitter, loss (random or in bursts), a rate cap with
//! a drop-tail queue, scheduled outages and capacity changes. Pure and seeded: the same seed
//! and the same datagrams sent at the same times give the same run, bit for bit.
//!
//! Time is whatever `Instant`s the caller passes; nothing here reads the clock. Tests drive it
//! on simulated time; the room server's UDP layer drives it on the wall clock to impair real
//! sockets (`madang serve --network lte`).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use madang::netsim::{Direction, Network, Profile};
//!
//! let profile: Profile = "loss=0%,delay=40ms".parse().unwrap();
//! let t0 = Instant::now();
//! let mut net = Network::new(profile, t0);
//! net.send(t0, Direction::Up, 1u32, 1200, "hello");
//! assert_eq!(net.poll_timeout(), Some(t0 + Duration::from_millis(40)));
//! assert_eq!(net.pop(t0 + Duration::from_millis(39)), None);
//! assert_eq!(net.pop(t0 + Duration::from_millis(40)), Some((Direction::Up, 1, "hello")));
//! ```

mod link;
mod profile;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

pub use link::{DEFAULT_QUEUE_BYTES, Drop, Fate, Link, LinkConfig, LinkStats};
pub use profile::{DEFAULT_SEED, PRESETS, Profile, ProfileError};

/// Which way a datagram travels on a participant's access link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the participant towards the server.
    Up,
    /// From the server towards the participant.
    Down,
}

/// A datagram on its way, ordered by arrival time, then by sending order.
#[derive(Debug)]
struct InFlight<K, T> {
    at: Instant,
    order: u64,
    direction: Direction,
    peer: K,
    item: T,
}

impl<K, T> PartialEq for InFlight<K, T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl<K, T> Eq for InFlight<K, T> {}
impl<K, T> PartialOrd for InFlight<K, T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K, T> Ord for InFlight<K, T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// Every participant's access link, both directions, under one [`Profile`]. Participants are
/// told apart by a key `K` (a socket address, an index); each gets its own pair of links,
/// seeded from the profile's seed and the order in which participants first appear.
#[derive(Debug)]
pub struct Network<K, T> {
    profile: Profile,
    start: Instant,
    links: BTreeMap<(K, Direction), Link>,
    flight: BinaryHeap<Reverse<InFlight<K, T>>>,
    next_order: u64,
    next_link: u64,
}

/// Counters of a [`Network`], per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NetworkStats {
    /// Towards the server.
    pub up: LinkStats,
    /// Towards the participants.
    pub down: LinkStats,
}

impl<K: Ord + Copy, T> Network<K, T> {
    /// A network whose links start at `start` (outages and capacity changes count from it).
    pub fn new(profile: Profile, start: Instant) -> Self {
        Self {
            profile,
            start,
            links: BTreeMap::new(),
            flight: BinaryHeap::new(),
            next_order: 0,
            next_link: 0,
        }
    }

    /// The conditions it applies.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Gives one participant's link in one direction its own conditions (a field phone's
    /// uplink in a room of office links), from now on; its counters are kept.
    pub fn set_link(&mut self, peer: K, direction: Direction, config: LinkConfig) {
        let link = self.link(peer, direction);
        link.set_config(config);
    }

    /// How long a datagram sent now on this link would wait in the queue in front of its
    /// rate cap (zero on a link without one, or that has carried nothing yet).
    pub fn queue_delay(&self, peer: K, direction: Direction, now: Instant) -> Duration {
        self.links
            .get(&(peer, direction))
            .map_or(Duration::ZERO, |l| l.queue_delay(now))
    }

    fn link(&mut self, peer: K, direction: Direction) -> &mut Link {
        match self.links.entry((peer, direction)) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                self.next_link += 1;
                let seed = splitmix64(self.profile.seed ^ splitmix64(self.next_link));
                e.insert(Link::new(self.profile.link.clone(), seed, self.start))
            }
        }
    }

    /// Sends `item` of `bytes` from or to `peer`; returns its fate.
    pub fn send(
        &mut self,
        now: Instant,
        direction: Direction,
        peer: K,
        bytes: usize,
        item: T,
    ) -> Fate {
        let fate = self.link(peer, direction).send(now, bytes);
        if let Fate::Deliver(at) = fate {
            self.next_order += 1;
            self.flight.push(Reverse(InFlight {
                at,
                order: self.next_order,
                direction,
                peer,
                item,
            }));
        }
        fate
    }

    /// When the next datagram arrives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.flight.peek().map(|Reverse(f)| f.at)
    }

    /// A datagram that has arrived by `now`, earliest first.
    pub fn pop(&mut self, now: Instant) -> Option<(Direction, K, T)> {
        if self.poll_timeout()? > now {
            return None;
        }
        let Reverse(f) = self.flight.pop()?;
        Some((f.direction, f.peer, f.item))
    }

    /// Datagrams still on their way.
    pub fn in_flight(&self) -> usize {
        self.flight.len()
    }

    /// Totals over every participant's links.
    pub fn stats(&self) -> NetworkStats {
        let mut s = NetworkStats::default();
        for ((_, direction), link) in &self.links {
            match direction {
                Direction::Up => s.up.add(&link.stats()),
                Direction::Down => s.down.add(&link.stats()),
            }
        }
        s
    }

    /// Counters of one participant's link.
    pub fn link_stats(&self, peer: K, direction: Direction) -> Option<LinkStats> {
        self.links.get(&(peer, direction)).map(Link::stats)
    }
}

/// SplitMix64: spreads small seeds (1, 2, 3 …) over the whole seed space.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn deliveries_come_out_in_time_order_and_repeat_for_a_seed() {
        let run = |seed: u64| {
            let mut profile: Profile = "lte".parse().unwrap();
            profile.seed = seed;
            let t0 = Instant::now();
            let mut net: Network<u8, u32> = Network::new(profile, t0);
            let mut out = Vec::new();
            let mut last = t0;
            for i in 0..2000u32 {
                let now = t0 + Duration::from_millis(i as u64);
                for peer in 0..3u8 {
                    let dir = if i % 2 == 0 {
                        Direction::Up
                    } else {
                        Direction::Down
                    };
                    net.send(now, dir, peer, 1000, i);
                }
                while let Some((d, p, item)) = net.pop(now) {
                    out.push((d, p, item));
                    assert!(now >= last);
                    last = now;
                }
            }
            (out, net.stats())
        };
        let (a, sa) = run(5);
        let (b, sb) = run(5);
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        let (c, _) = run(6);
        assert_ne!(a, c);
        assert_eq!(sa.up.sent, 3000);
        assert!(sa.up.lost > 40 && sa.down.lost > 40, "{sa:?}");
    }

    #[test]
    fn participants_get_their_own_links() {
        let profile: Profile = "rate=1mbit,queue=3000b".parse().unwrap();
        let t0 = Instant::now();
        let mut net: Network<u8, ()> = Network::new(profile, t0);
        // Each participant's queue holds three 1000-byte datagrams: the fourth is dropped,
        // whatever the other participant sends.
        for peer in [1u8, 2] {
            for i in 0..4 {
                let fate = net.send(t0, Direction::Up, peer, 1000, ());
                assert_eq!(matches!(fate, Fate::Dropped(Drop::Queue)), i == 3);
            }
        }
        assert_eq!(net.link_stats(1, Direction::Up).unwrap().queue_drops, 1);
        assert_eq!(net.stats().up.queue_drops, 2);
        assert!(net.link_stats(1, Direction::Down).is_none());
    }
}
