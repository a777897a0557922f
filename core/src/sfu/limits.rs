//! What one signal session may ask of the server, and the token buckets that hold it to
//! that: pure code on the time passed in. Past a limit the session gets `limit_reached`
//! (not fatal: the message is dropped, the session and its room go on). A session that goes
//! on far past its limits — its dropped messages outrun a patience of
//! [`PATIENCE_SECONDS`] seconds of the signal rate, refilled at a tenth of it — is closed
//! with `flooding`: at 1,000 messages a second against the default 100 that takes 0.56 s,
//! at twice the rate 5.3 s; a client 10 % over its rate is never closed.

use std::time::Instant;

/// Per-session and per-server limits ([`ServerConfig::limits`](super::ServerConfig::limits)).
/// The defaults leave room for any client madang knows — a browser trickling its
/// candidates, a grid re-laid out on every resize, a chat at typing speed — and stop a
/// client that loops.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Signal messages a second, any type (twice as many in a burst).
    pub signal_per_second: u32,
    /// `data` messages a second (twice as many in a burst).
    pub data_per_second: u32,
    /// `data` payload bytes a second (twice as many in a burst, and at least one message of
    /// the protocol's largest size).
    pub data_bytes_per_second: u32,
    /// Receive slots (tracks received) per session; subscriptions past it wait for a slot.
    pub subscriptions: usize,
    /// Rooms on the server; a join that would open one more is refused.
    pub rooms: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            signal_per_second: 100,
            data_per_second: 20,
            data_bytes_per_second: 512 * 1024,
            subscriptions: 256,
            rooms: 1000,
        }
    }
}

/// A token bucket: `rate` a second, up to `burst` saved.
#[derive(Clone, Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    /// A full bucket of `burst`.
    pub(crate) fn full(burst: f64) -> Self {
        Self {
            tokens: burst,
            last: None,
        }
    }

    /// Takes `amount` at `now` if the bucket holds it.
    pub(crate) fn take(&mut self, now: Instant, rate: f64, burst: f64, amount: f64) -> bool {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * rate;
            self.tokens = (self.tokens + refill).min(burst);
        }
        self.last = Some(now);
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }
}

/// How many seconds' worth of the signal rate a session may have dropped (beyond what the
/// patience refills) before it is closed for flooding.
pub const PATIENCE_SECONDS: f64 = 3.0;

/// One session's buckets.
#[derive(Clone, Debug)]
pub(crate) struct SessionBuckets {
    signal: Bucket,
    data: Bucket,
    data_bytes: Bucket,
    /// Dropped messages take from it; empty means flooding.
    patience: Bucket,
}

impl SessionBuckets {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            signal: Bucket::full(2.0 * limits.signal_per_second as f64),
            data: Bucket::full(2.0 * limits.data_per_second as f64),
            data_bytes: Bucket::full(data_bytes_burst(limits)),
            patience: Bucket::full(patience_burst(limits)),
        }
    }

    /// A message was dropped at `now`; whether the session may stay (false: it is flooding).
    pub(crate) fn dropped(&mut self, limits: &Limits, now: Instant) -> bool {
        let rate = limits.signal_per_second as f64 / 10.0;
        self.patience.take(now, rate, patience_burst(limits), 1.0)
    }

    /// Whether one more signal message is allowed at `now`.
    pub(crate) fn signal(&mut self, limits: &Limits, now: Instant) -> bool {
        let rate = limits.signal_per_second as f64;
        self.signal.take(now, rate, 2.0 * rate, 1.0)
    }

    /// Whether one more data message of `bytes` is allowed at `now` (both buckets are
    /// taken from only when both allow it).
    pub(crate) fn data(&mut self, limits: &Limits, now: Instant, bytes: usize) -> bool {
        let rate = limits.data_per_second as f64;
        let byte_rate = limits.data_bytes_per_second as f64;
        let burst = data_bytes_burst(limits);
        let mut bytes_bucket = self.data_bytes.clone();
        if !bytes_bucket.take(now, byte_rate, burst, bytes as f64) {
            self.data_bytes = bytes_bucket;
            return false;
        }
        if !self.data.take(now, rate, 2.0 * rate, 1.0) {
            return false;
        }
        self.data_bytes = bytes_bucket;
        true
    }
}

fn patience_burst(limits: &Limits) -> f64 {
    PATIENCE_SECONDS * limits.signal_per_second as f64
}

fn data_bytes_burst(limits: &Limits) -> f64 {
    (2.0 * limits.data_bytes_per_second as f64).max(crate::signal::MAX_MESSAGE_BYTES as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Messages sent at `per_second` for up to `seconds`, as `Rooms` takes them: the
    /// seconds after which the session was found flooding, if it was.
    fn flooding_after(per_second: u32, seconds: u32) -> Option<f64> {
        let limits = Limits::default();
        let t0 = Instant::now();
        let mut s = SessionBuckets::new(&limits);
        for i in 0..per_second * seconds {
            let at = i as f64 / per_second as f64;
            let now = t0 + Duration::from_secs_f64(at);
            if !s.signal(&limits, now) && !s.dropped(&limits, now) {
                return Some(at);
            }
        }
        None
    }

    #[test]
    fn a_flood_is_found_within_a_second_and_a_client_a_little_over_its_rate_never() {
        let flood = flooding_after(1000, 10).expect("1000 a second is flooding");
        assert!(flood < 1.0, "found after {flood} s");
        let loop_ = flooding_after(200, 30).expect("twice the rate is flooding");
        assert!((2.0..10.0).contains(&loop_), "found after {loop_} s");
        assert_eq!(flooding_after(110, 60), None);
        assert_eq!(flooding_after(100, 60), None);
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(4.0);
        assert!((0..4).all(|_| b.take(t0, 2.0, 4.0, 1.0)));
        assert!(!b.take(t0, 2.0, 4.0, 1.0), "burst spent");
        assert!(b.take(t0 + Duration::from_millis(500), 2.0, 4.0, 1.0));
        assert!(!b.take(t0 + Duration::from_millis(500), 2.0, 4.0, 1.0));
        // A long pause refills to the burst, no further.
        let later = t0 + Duration::from_secs(60);
        assert!((0..4).all(|_| b.take(later, 2.0, 4.0, 1.0)));
        assert!(!b.take(later, 2.0, 4.0, 1.0));
    }

    #[test]
    fn data_is_held_to_messages_and_bytes_a_second() {
        let t0 = Instant::now();
        let limits = Limits {
            data_per_second: 10,
            data_bytes_per_second: 100_000,
            ..Limits::default()
        };
        let mut s = SessionBuckets::new(&limits);
        // Bytes: one message of the protocol's largest size passes, the next waits.
        assert!(s.data(&limits, t0, 250_000));
        assert!(!s.data(&limits, t0, 20_000));
        // A second later 100 kB more have come.
        let t1 = t0 + Duration::from_secs(1);
        assert!(s.data(&limits, t1, 90_000));
        // Messages: small ones, 20 in a burst (one was taken above, one refused took none).
        let t2 = t1 + Duration::from_secs(10);
        let passed = (0..40).filter(|_| s.data(&limits, t2, 10)).count();
        assert_eq!(passed, 20);
    }

    #[test]
    fn signal_messages_are_held_to_their_rate() {
        let t0 = Instant::now();
        let limits = Limits::default();
        let mut s = SessionBuckets::new(&limits);
        let burst = (0..1000).filter(|_| s.signal(&limits, t0)).count();
        assert_eq!(burst, 200);
        // Over ten seconds at a steady 200 a second, 100 a second pass.
        let passed = (1..=2000)
            .filter(|i| s.signal(&limits, t0 + Duration::from_millis(5 * i)))
            .count();
        assert!((995..=1005).contains(&passed), "{passed}");
    }
}
