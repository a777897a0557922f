//! Active-speaker detection from RFC 6464 audio levels: pure, time passed in.
//!
//! Every forwarded audio packet carries its sender's level in dBov (0 = loudest, 127 =
//! silence) in a header extension. Levels are averaged over a short window per participant;
//! whoever is above the voice threshold is ranked, loudest first, and the ranking is announced
//! when it changes (at most once per interval, so a room is not flooded).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::signal::Speaker;

pub use crate::codec::rtp::VOICE_THRESHOLD_DBOV;

/// Tracks levels and decides when to announce speakers.
#[derive(Debug)]
pub struct ActiveSpeakers {
    window: Duration,
    interval: Duration,
    levels: HashMap<String, VecDeque<(Instant, u8)>>,
    last_emit: Option<Instant>,
    last_order: Vec<String>,
}

/// Linear amplitude (0.0–1.0) of a level in dBov.
pub fn dbov_to_linear(dbov: u8) -> f32 {
    10f32.powf(-(dbov.min(127) as f32) / 20.0)
}

impl ActiveSpeakers {
    /// Averages over `window`, announces at most every `interval`.
    pub fn new(window: Duration, interval: Duration) -> Self {
        Self {
            window,
            interval,
            levels: HashMap::new(),
            last_emit: None,
            last_order: Vec::new(),
        }
    }

    /// Records the level of one audio packet from `identity`.
    pub fn observe(&mut self, identity: &str, level_dbov: u8, now: Instant) {
        let q = self.levels.entry(identity.to_owned()).or_default();
        q.push_back((now, level_dbov.min(127)));
        while q
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > self.window)
        {
            q.pop_front();
        }
    }

    /// Forgets a participant that left.
    pub fn remove(&mut self, identity: &str) {
        self.levels.remove(identity);
    }

    /// Current ranking: participants above the voice threshold, loudest first.
    pub fn ranking(&self, now: Instant) -> Vec<Speaker> {
        let mut speakers: Vec<Speaker> = self
            .levels
            .iter()
            .filter_map(|(identity, q)| {
                let recent: Vec<u8> = q
                    .iter()
                    .filter(|(t, _)| now.saturating_duration_since(*t) <= self.window)
                    .map(|(_, l)| *l)
                    .collect();
                if recent.is_empty() {
                    return None;
                }
                let mean_dbov = recent.iter().map(|&l| l as f32).sum::<f32>() / recent.len() as f32;
                (mean_dbov < VOICE_THRESHOLD_DBOV as f32).then(|| Speaker {
                    identity: identity.clone(),
                    level: dbov_to_linear(mean_dbov.round() as u8),
                })
            })
            .collect();
        speakers.sort_by(|a, b| {
            b.level
                .total_cmp(&a.level)
                .then_with(|| a.identity.cmp(&b.identity))
        });
        speakers
    }

    /// The ranking to announce now, if the interval has passed and the order changed.
    pub fn poll(&mut self, now: Instant) -> Option<Vec<Speaker>> {
        if self
            .last_emit
            .is_some_and(|t| now.saturating_duration_since(t) < self.interval)
        {
            return None;
        }
        let ranking = self.ranking(now);
        let order: Vec<String> = ranking.iter().map(|s| s.identity.clone()).collect();
        if order == self.last_order {
            return None;
        }
        self.last_order = order;
        self.last_emit = Some(now);
        Some(ranking)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(s: &mut ActiveSpeakers, who: &str, dbov: u8, from: Instant, ms: u64) {
        for i in 0..ms / 20 {
            s.observe(who, dbov, from + Duration::from_millis(i * 20));
        }
    }

    #[test]
    fn loudest_first_and_silence_ignored() {
        let t0 = Instant::now();
        let mut s = ActiveSpeakers::new(Duration::from_millis(500), Duration::from_millis(300));
        feed(&mut s, "jongno", 20, t0, 1000);
        feed(&mut s, "gangnam", 35, t0, 1000);
        feed(&mut s, "mapo", 127, t0, 1000);
        let now = t0 + Duration::from_millis(1000);
        let ranking = s.poll(now).unwrap();
        let ids: Vec<&str> = ranking.iter().map(|s| s.identity.as_str()).collect();
        assert_eq!(ids, ["jongno", "gangnam"]);
        assert!(ranking[0].level > ranking[1].level);
        // Unchanged order: nothing new to say.
        assert!(s.poll(now + Duration::from_millis(400)).is_none());
    }

    #[test]
    fn changes_are_announced_but_rate_limited() {
        let t0 = Instant::now();
        let mut s = ActiveSpeakers::new(Duration::from_millis(500), Duration::from_millis(300));
        feed(&mut s, "a", 20, t0, 600);
        assert_eq!(
            s.poll(t0 + Duration::from_millis(600)).unwrap()[0].identity,
            "a"
        );
        // b starts talking, a goes quiet.
        let t1 = t0 + Duration::from_millis(600);
        feed(&mut s, "b", 10, t1, 700);
        feed(&mut s, "a", 127, t1, 700);
        assert!(
            s.poll(t1 + Duration::from_millis(100)).is_none(),
            "within the interval"
        );
        let r = s.poll(t1 + Duration::from_millis(700)).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].identity, "b");
        s.remove("b");
        assert!(s.ranking(t1 + Duration::from_millis(700)).is_empty());
    }

    #[test]
    fn level_conversion() {
        assert!((dbov_to_linear(0) - 1.0).abs() < 1e-6);
        assert!((dbov_to_linear(20) - 0.1).abs() < 1e-6);
        assert!(dbov_to_linear(127) < 1e-6);
    }
}
