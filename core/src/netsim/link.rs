//! One direction of one network link: what happens to each datagram sent over it.

use std::time::{Duration, Instant};

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// How a link treats the datagrams sent over it. All times are one way.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// Share of datagrams lost, 0.0 … 1.0 (the long-run average, bursts included).
    pub loss: f64,
    /// Mean length of a loss burst in datagrams. `None` or ≤ 1: losses are independent.
    /// Otherwise losses come from a Gilbert–Elliott model (a good state that loses nothing and
    /// a bad state that loses everything) tuned so that the average is [`loss`](Self::loss).
    pub burst: Option<f64>,
    /// Propagation delay.
    pub delay: Duration,
    /// Each datagram's delay varies uniformly within ± this.
    pub jitter: Duration,
    /// Whether jitter may deliver a datagram before one sent earlier (as on a real path with
    /// several queues). When off, deliveries keep the sending order.
    pub reorder: bool,
    /// Capacity in bits per second; `None` is unlimited.
    pub rate_bps: Option<u64>,
    /// Depth of the drop-tail queue in front of the rate cap, in bytes. A datagram that
    /// would make the backlog deeper is dropped.
    pub queue_bytes: usize,
    /// Scheduled blackouts `(start, length)` after the link starts: everything sent during
    /// one is lost.
    pub outages: Vec<(Duration, Duration)>,
    /// Scheduled capacity changes `(at, bits per second)` after the link starts, in time
    /// order.
    pub rate_changes: Vec<(Duration, u64)>,
    /// The first this many datagrams through the link are lost: loss aimed at what starts
    /// a session (ICE checks, the DTLS handshake, the first keyframe, its request).
    pub drop_first: u32,
}

impl Default for LinkConfig {
    /// A perfect link: no loss, no delay, no cap.
    fn default() -> Self {
        Self {
            loss: 0.0,
            burst: None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: true,
            rate_bps: None,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            outages: Vec::new(),
            rate_changes: Vec::new(),
            drop_first: 0,
        }
    }
}

/// Queue depth when none is given: 64 KiB, about 0.5 s at 1 Mbit/s (a DSL modem's buffer).
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024;

impl LinkConfig {
    /// Whether the link changes anything at all.
    pub fn is_perfect(&self) -> bool {
        self.loss <= 0.0
            && self.delay.is_zero()
            && self.jitter.is_zero()
            && self.rate_bps.is_none()
            && self.outages.is_empty()
            && self.rate_changes.is_empty()
            && self.drop_first == 0
    }

    /// The capacity `since` the link started.
    pub fn rate_at(&self, since: Duration) -> Option<u64> {
        self.rate_changes
            .iter()
            .rev()
            .find(|(at, _)| *at <= since)
            .map(|&(_, r)| r)
            .or(self.rate_bps)
    }

    fn in_outage(&self, since: Duration) -> bool {
        self.outages
            .iter()
            .any(|&(start, len)| since >= start && since < start + len)
    }
}

/// Why a datagram did not make it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Drop {
    /// Random or burst loss.
    Loss,
    /// The queue in front of the rate cap was full.
    Queue,
    /// Sent during a scheduled blackout.
    Outage,
}

/// What became of one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// It arrives at this time.
    Deliver(Instant),
    /// It is gone.
    Dropped(Drop),
}

/// Counters of one link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkStats {
    /// Datagrams offered to the link.
    pub sent: u64,
    /// Bytes offered.
    pub bytes: u64,
    /// Datagrams delivered (or on their way).
    pub delivered: u64,
    /// Lost to random or burst loss.
    pub lost: u64,
    /// Dropped by the full queue in front of the rate cap.
    pub queue_drops: u64,
    /// Lost in a blackout.
    pub outage_drops: u64,
}

impl LinkStats {
    /// Every datagram that did not make it.
    pub fn dropped(&self) -> u64 {
        self.lost + self.queue_drops + self.outage_drops
    }

    /// Adds another link's counters.
    pub fn add(&mut self, other: &LinkStats) {
        self.sent += other.sent;
        self.bytes += other.bytes;
        self.delivered += other.delivered;
        self.lost += other.lost;
        self.queue_drops += other.queue_drops;
        self.outage_drops += other.outage_drops;
    }
}

/// One direction of a link, deterministic for a seed: the same datagrams sent at the same
/// times meet the same fates.
#[derive(Debug)]
pub struct Link {
    config: LinkConfig,
    rng: ChaCha8Rng,
    start: Instant,
    /// The rate cap is busy sending earlier datagrams until then.
    busy_until: Instant,
    /// Gilbert–Elliott state.
    bad: bool,
    /// Latest delivery so far (for links that keep order).
    last_delivery: Instant,
    stats: LinkStats,
}

impl Link {
    /// A link that starts at `start` (outages and capacity changes count from it).
    pub fn new(config: LinkConfig, seed: u64, start: Instant) -> Self {
        Self {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            start,
            busy_until: start,
            bad: false,
            last_delivery: start,
            stats: LinkStats::default(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Changes its settings from now on (what is in flight keeps its fate).
    pub fn set_config(&mut self, config: LinkConfig) {
        self.config = config;
    }

    /// How long a datagram sent at `now` would wait behind earlier ones for the rate cap.
    pub fn queue_delay(&self, now: Instant) -> Duration {
        self.busy_until.saturating_duration_since(now)
    }

    /// Its counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Sends a datagram of `bytes` at `now`.
    pub fn send(&mut self, now: Instant, bytes: usize) -> Fate {
        self.stats.sent += 1;
        self.stats.bytes += bytes as u64;
        let since = now.saturating_duration_since(self.start);
        if self.config.in_outage(since) {
            self.stats.outage_drops += 1;
            return Fate::Dropped(Drop::Outage);
        }
        if self.stats.sent <= self.config.drop_first as u64 || self.lose() {
            self.stats.lost += 1;
            return Fate::Dropped(Drop::Loss);
        }
        // The rate cap: a single server working through a drop-tail queue.
        let mut leaves = now;
        if let Some(rate) = self.config.rate_at(since).filter(|&r| r > 0) {
            let backlog = self.busy_until.saturating_duration_since(now);
            let backlog_bytes = (backlog.as_secs_f64() * rate as f64 / 8.0) as usize;
            if backlog_bytes + bytes > self.config.queue_bytes.max(bytes) {
                self.stats.queue_drops += 1;
                return Fate::Dropped(Drop::Queue);
            }
            let serialise = Duration::from_secs_f64(bytes as f64 * 8.0 / rate as f64);
            leaves = self.busy_until.max(now) + serialise;
            self.busy_until = leaves;
        }
        let mut at = leaves + self.config.delay;
        if !self.config.jitter.is_zero() {
            let j = self.config.jitter.as_secs_f64();
            let offset = self.rng.random_range(-j..=j);
            at = if offset >= 0.0 {
                at + Duration::from_secs_f64(offset)
            } else {
                at.checked_sub(Duration::from_secs_f64(-offset))
                    .unwrap_or(at)
                    .max(leaves)
            };
        }
        if !self.config.reorder {
            at = at.max(self.last_delivery);
        }
        self.last_delivery = self.last_delivery.max(at);
        self.stats.delivered += 1;
        Fate::Deliver(at)
    }

    fn lose(&mut self) -> bool {
        let loss = self.config.loss.clamp(0.0, 1.0);
        if loss <= 0.0 {
            return false;
        }
        match self.config.burst.filter(|&b| b > 1.0) {
            None => self.rng.random_bool(loss),
            Some(mean_burst) => {
                // Leave the bad state with 1/burst per datagram; enter it so that the share of
                // time spent there equals the loss rate.
                let leave = 1.0 / mean_burst;
                let enter = if loss >= 1.0 {
                    1.0
                } else {
                    (loss * leave / (1.0 - loss)).min(1.0)
                };
                let flip = if self.bad { leave } else { enter };
                if self.rng.random_bool(flip) {
                    self.bad = !self.bad;
                }
                self.bad
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each datagram's fate: its delay, or why it was dropped.
    fn run(
        config: LinkConfig,
        seed: u64,
        n: u32,
        gap: Duration,
        bytes: usize,
    ) -> Vec<Result<Duration, Drop>> {
        let t0 = Instant::now();
        let mut link = Link::new(config, seed, t0);
        (0..n)
            .map(|i| {
                let sent = t0 + gap * i;
                match link.send(sent, bytes) {
                    Fate::Deliver(at) => Ok(at.duration_since(sent)),
                    Fate::Dropped(why) => Err(why),
                }
            })
            .collect()
    }

    fn delivered(f: &[Result<Duration, Drop>]) -> usize {
        f.iter().filter(|f| f.is_ok()).count()
    }

    #[test]
    fn a_perfect_link_delivers_everything_at_once() {
        let t0 = Instant::now();
        let mut link = Link::new(LinkConfig::default(), 1, t0);
        assert!(link.config().is_perfect());
        assert_eq!(link.send(t0, 1200), Fate::Deliver(t0));
        assert_eq!(link.stats().delivered, 1);
    }

    #[test]
    fn the_first_datagrams_can_be_aimed_at() {
        let t0 = Instant::now();
        let config = LinkConfig {
            drop_first: 3,
            ..LinkConfig::default()
        };
        let mut link = Link::new(config, 1, t0);
        let fates: Vec<bool> = (0..5)
            .map(|_| matches!(link.send(t0, 100), Fate::Deliver(_)))
            .collect();
        assert_eq!(fates, [false, false, false, true, true]);
    }

    #[test]
    fn random_loss_matches_the_rate_and_repeats_for_a_seed() {
        let config = LinkConfig {
            loss: 0.03,
            ..LinkConfig::default()
        };
        let a = run(config.clone(), 7, 20_000, Duration::from_millis(1), 1000);
        let b = run(config.clone(), 7, 20_000, Duration::from_millis(1), 1000);
        assert_eq!(a, b, "same seed, same fates");
        let c = run(config, 8, 20_000, Duration::from_millis(1), 1000);
        assert_ne!(a, c);
        let lost = 20_000 - delivered(&a);
        assert!((480..=720).contains(&lost), "{lost} of 20000 lost at 3 %");
    }

    #[test]
    fn bursts_keep_the_average_and_lengthen_the_runs() {
        let config = LinkConfig {
            loss: 0.08,
            burst: Some(4.0),
            ..LinkConfig::default()
        };
        let fates = run(config, 3, 50_000, Duration::from_millis(1), 500);
        let lost: Vec<bool> = fates.iter().map(|f| *f == Err(Drop::Loss)).collect();
        let total = lost.iter().filter(|&&l| l).count() as f64;
        let share = total / lost.len() as f64;
        assert!((0.065..0.095).contains(&share), "share {share}");
        let runs = lost.windows(2).filter(|w| w[1] && !w[0]).count() as f64;
        let mean_run = total / runs;
        assert!((3.0..5.0).contains(&mean_run), "mean burst {mean_run}");
    }

    #[test]
    fn jitter_reorders_unless_told_not_to() {
        let config = LinkConfig {
            delay: Duration::from_millis(40),
            jitter: Duration::from_millis(15),
            ..LinkConfig::default()
        };
        let at = |f: &Fate| match f {
            Fate::Deliver(t) => *t,
            Fate::Dropped(_) => panic!("no loss configured"),
        };
        let t0 = Instant::now();
        let mut link = Link::new(config.clone(), 1, t0);
        let mut times = Vec::new();
        for i in 0..1000u32 {
            let sent = t0 + Duration::from_millis(2) * i;
            let t = at(&link.send(sent, 100));
            let d = t.duration_since(sent);
            assert!(d >= Duration::from_millis(25) && d <= Duration::from_millis(55));
            times.push(t);
        }
        let inversions = times.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(inversions > 100, "{inversions} reordered");
        let ordered = run(
            LinkConfig {
                reorder: false,
                ..config
            },
            1,
            1000,
            Duration::from_millis(2),
            100,
        );
        // Delivery time = send time (2 ms apart) + delay: never earlier than the previous one.
        let times: Vec<Duration> = ordered
            .iter()
            .enumerate()
            .map(|(i, d)| Duration::from_millis(2) * i as u32 + d.unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn the_rate_cap_queues_then_drops() {
        // 1 Mbit/s, 10 kB queue; 1000-byte datagrams offered at 2 Mbit/s for one second.
        let config = LinkConfig {
            rate_bps: Some(1_000_000),
            queue_bytes: 10_000,
            ..LinkConfig::default()
        };
        let t0 = Instant::now();
        let mut link = Link::new(config, 1, t0);
        let mut last = t0;
        for i in 0..250u32 {
            if let Fate::Deliver(at) = link.send(t0 + Duration::from_millis(4) * i, 1000) {
                // Never more than the queue's worth of waiting (10 kB at 1 Mbit/s = 80 ms).
                let sent = t0 + Duration::from_millis(4) * i;
                assert!(at.duration_since(sent) <= Duration::from_millis(89));
                last = at;
            }
        }
        let s = link.stats();
        // One second at 1 Mbit/s carries 125 datagrams, plus what the queue still holds.
        assert!((125..=137).contains(&s.delivered), "{s:?}");
        assert_eq!(s.delivered + s.queue_drops, 250);
        assert!(last.duration_since(t0) >= Duration::from_millis(990));
    }

    #[test]
    fn outages_and_capacity_changes_follow_the_schedule() {
        let config = LinkConfig {
            rate_bps: Some(1_000_000),
            outages: vec![(Duration::from_secs(5), Duration::from_secs(5))],
            rate_changes: vec![(Duration::from_secs(2), 300_000)],
            ..LinkConfig::default()
        };
        assert_eq!(config.rate_at(Duration::from_secs(1)), Some(1_000_000));
        assert_eq!(config.rate_at(Duration::from_secs(3)), Some(300_000));
        let t0 = Instant::now();
        let mut link = Link::new(config, 1, t0);
        assert!(matches!(link.send(t0, 100), Fate::Deliver(_)));
        assert_eq!(
            link.send(t0 + Duration::from_secs(6), 100),
            Fate::Dropped(Drop::Outage)
        );
        assert!(matches!(
            link.send(t0 + Duration::from_secs(10), 100),
            Fate::Deliver(_)
        ));
        assert_eq!(link.stats().outage_drops, 1);
    }
}
