//! Time and order of RTP streams as a receiver sees them: 16-bit sequence numbers and 32-bit
//! timestamps extended so that they never wrap, and the mapping from media time to the
//! arrival time a packet is expected at. Pure.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The fastest transit is the minimum over this long (two windows), so that it follows a
/// lasting change of route.
const TRANSIT_WINDOW: Duration = Duration::from_secs(5);

/// Extends a `bits`-wide wrapping counter to the 64-bit value closest to `highest` (the
/// highest seen so far, updated). The first value starts at `base` so that a value from
/// before it still has one.
fn extend(highest: &mut Option<u64>, value: u64, bits: u32, base: u64) -> u64 {
    let Some(h) = *highest else {
        let ext = base + value;
        *highest = Some(ext);
        return ext;
    };
    // The signed distance from the highest, modulo 2^bits.
    let modulus = 1i64 << bits;
    let mut delta = (value as i64 - (h as i64 & (modulus - 1))).rem_euclid(modulus);
    if delta >= modulus / 2 {
        delta -= modulus;
    }
    let ext = (h as i64 + delta) as u64;
    *highest = Some(h.max(ext));
    ext
}

/// Extends 16-bit RTP sequence numbers to a monotonic 64-bit count (wraps included).
#[derive(Clone, Copy, Debug, Default)]
pub struct SeqExtender {
    highest: Option<u64>,
}

impl SeqExtender {
    /// The extended number of `seq`: the one closest to the highest seen so far (the first
    /// packet starts at 2^32).
    pub fn extend(&mut self, seq: u16) -> u64 {
        extend(&mut self.highest, seq as u64, 16, 1 << 32)
    }

    /// The highest extended number seen.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

/// Maps media time to arrival time: the fastest transit seen in the last two windows.
#[derive(Debug)]
pub struct PlayoutClock {
    origin: Instant,
    /// RTP ticks per second.
    rate: u64,
    window_start: Instant,
    current_min: i64,
    previous_min: i64,
}

impl PlayoutClock {
    /// A clock for a stream of `rate_hz` RTP ticks per second; nothing arrived yet.
    pub fn new(now: Instant, rate_hz: u64) -> Self {
        Self {
            origin: now,
            rate: rate_hz,
            window_start: now,
            current_min: i64::MAX,
            previous_min: i64::MAX,
        }
    }

    fn media_us(&self, ts: u64) -> i64 {
        (ts as i128 * 1_000_000 / self.rate as i128) as i64
    }

    /// Notes that a packet of media time `ts` (extended ticks) arrived at `now`.
    pub fn arrival(&mut self, now: Instant, ts: u64) {
        if now.duration_since(self.window_start) >= TRANSIT_WINDOW {
            self.previous_min = self.current_min;
            self.current_min = i64::MAX;
            self.window_start = now;
        }
        let transit = now.duration_since(self.origin).as_micros() as i64 - self.media_us(ts);
        self.current_min = self.current_min.min(transit);
    }

    /// When media time `ts` is expected to arrive on the fastest transit.
    pub fn expected(&self, ts: u64) -> Instant {
        let base = self.current_min.min(self.previous_min);
        let base = if base == i64::MAX { 0 } else { base };
        let at = base + self.media_us(ts);
        if at >= 0 {
            self.origin + Duration::from_micros(at as u64)
        } else {
            self.origin
                .checked_sub(Duration::from_micros(at.unsigned_abs()))
                .unwrap_or(self.origin)
        }
    }
}

/// Extends 32-bit RTP timestamps, as [`SeqExtender`] does sequence numbers.
#[derive(Debug, Default)]
pub struct TsExtender {
    highest: Option<u64>,
}

impl TsExtender {
    /// The highest extended timestamp seen.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// The extended value of `ts` (the first starts at 2^40).
    pub fn extend(&mut self, ts: u32) -> u64 {
        extend(&mut self.highest, ts as u64, 32, 1 << 40)
    }
}

/// A playout delay learned from how late recent arrivals were (the jitter and playout
/// buffers each pick a quantile of it as their target): it rises to a target at once and
/// falls by at most 1 ms per step, so one calm second does not undo what a lossy one taught.
#[derive(Debug)]
pub struct PlayoutDelay {
    samples: VecDeque<Duration>,
    window: usize,
    delay: Duration,
}

impl PlayoutDelay {
    /// Learns from the last `window` samples; starts at `initial`.
    pub fn new(window: usize, initial: Duration) -> Self {
        Self {
            samples: VecDeque::with_capacity(window),
            window: window.max(1),
            delay: initial,
        }
    }

    /// One sample of lateness.
    pub fn note(&mut self, late: Duration) {
        if self.samples.len() == self.window {
            self.samples.pop_front();
        }
        self.samples.push_back(late);
    }

    /// The samples in ascending order (empty before the first).
    pub fn sorted(&self) -> Vec<Duration> {
        let mut sorted: Vec<Duration> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        sorted
    }

    /// Whether the window is full.
    pub fn is_full(&self) -> bool {
        self.samples.len() == self.window
    }

    /// Moves towards `target`: up at once, down by at most 1 ms.
    pub fn follow(&mut self, target: Duration) {
        self.delay = if target >= self.delay {
            target
        } else {
            self.delay
                .saturating_sub(Duration::from_millis(1))
                .max(target)
        };
    }

    /// The current delay.
    pub fn get(&self) -> Duration {
        self.delay
    }
}

/// The `percent` quantile of ascending `sorted` samples (none when empty).
pub fn quantile(sorted: &[Duration], percent: usize) -> Option<Duration> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get(last * percent / 100).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_extend_across_the_wrap_and_backwards() {
        let mut x = SeqExtender::default();
        let a = x.extend(65_534);
        assert_eq!(x.extend(65_535), a + 1);
        assert_eq!(x.extend(1), a + 3);
        assert_eq!(x.extend(0), a + 2, "a late packet keeps its place");
        assert_eq!(x.highest(), Some(a + 3));
    }

    #[test]
    fn expected_arrival_follows_the_fastest_transit() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = PlayoutClock::new(t0, 48_000);
        let mut x = TsExtender::default();
        c.arrival(t0 + ms(50), x.extend(0));
        c.arrival(t0 + ms(72), x.extend(960));
        c.arrival(t0 + ms(95), x.extend(1920));
        // Fastest: 50 ms after media time 0; media time 40 ms is expected at 90 ms.
        assert_eq!(c.expected(x.extend(1920)), t0 + ms(90));
        assert_eq!(
            x.extend(u32::MAX),
            x.extend(0) - 1,
            "a timestamp before the first"
        );
    }
}
