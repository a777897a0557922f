//! Named field conditions (`lte`, `rural`, …) and the custom form
//! `loss=3%,delay=40ms,jitter=15ms,rate=1mbit`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::link::{DEFAULT_QUEUE_BYTES, LinkConfig};

/// Network conditions applied to both directions of every participant's link.
///
/// Parsed from a profile name, a custom list of `key=value` parts, or a name followed by
/// overrides (`lte,loss=5%`):
///
/// | part | meaning | example |
/// |---|---|---|
/// | `loss` | share of datagrams lost (long-run average) | `loss=3%`, `loss=0.03` |
/// | `burst` | mean loss burst length in datagrams (Gilbert–Elliott) | `burst=4` |
/// | `delay` | one-way delay | `delay=40ms` |
/// | `jitter` | delay varies uniformly within ± this | `jitter=15ms` |
/// | `reorder` | whether jitter may reorder (`yes`/`no`) | `reorder=no` |
/// | `rate` | capacity | `rate=1mbit`, `rate=400kbit`, `rate=5000000` (bit/s) |
/// | `queue` | drop-tail queue before the cap, bytes or time at the rate | `queue=64kb`, `queue=200ms` |
/// | `outage` | blackout `START+LENGTH`, repeatable | `outage=5s+5s` |
/// | `rate@T` | capacity from time `T` on, repeatable | `rate@10s=300kbit` |
/// | `seed` | seed of the random choices | `seed=7` |
///
/// ```
/// use madang::netsim::Profile;
/// let lte: Profile = "lte".parse().unwrap();
/// assert_eq!(lte.link.loss, 0.03);
/// let custom: Profile = "loss=1%,delay=60ms,jitter=20ms,rate=1mbit".parse().unwrap();
/// assert_eq!(custom.link.rate_bps, Some(1_000_000));
/// let err = "lte,delay=fast".parse::<Profile>().unwrap_err();
/// assert!(err.to_string().contains("delay=fast"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// The text it was parsed from (or the preset's name).
    pub name: String,
    /// What each direction of a link does.
    pub link: LinkConfig,
    /// Seed of the random choices (loss, jitter).
    pub seed: u64,
}

/// The named presets, for help texts.
pub const PRESETS: [(&str, &str); 5] = [
    ("lan", "no impairment (city hall LAN)"),
    (
        "lte",
        "3 % random loss, 40 ± 15 ms one way, 5 Mbit/s (field phones)",
    ),
    (
        "rural",
        "1 % loss, 60 ± 20 ms, 1 Mbit/s (senior centers on DSL)",
    ),
    (
        "disaster",
        "8 % loss in bursts, 120 ± 40 ms, 400 kbit/s (a typhoon)",
    ),
    (
        "outage",
        "lte with a 5 s blackout at 5 s (a phone changing cells)",
    ),
];

/// Seed used when a profile names none.
pub const DEFAULT_SEED: u64 = 1;

impl Profile {
    /// No impairment.
    pub fn lan() -> Self {
        Self::preset("lan").expect("lan is a preset")
    }

    /// One of [`PRESETS`] by name.
    pub fn preset(name: &str) -> Option<Self> {
        let ms = Duration::from_millis;
        let lte = LinkConfig {
            loss: 0.03,
            delay: ms(40),
            jitter: ms(15),
            rate_bps: Some(5_000_000),
            queue_bytes: 128 * 1024,
            ..LinkConfig::default()
        };
        let link = match name {
            "lan" => LinkConfig::default(),
            "lte" => lte,
            "rural" => LinkConfig {
                loss: 0.01,
                delay: ms(60),
                jitter: ms(20),
                rate_bps: Some(1_000_000),
                queue_bytes: DEFAULT_QUEUE_BYTES,
                ..LinkConfig::default()
            },
            "disaster" => LinkConfig {
                loss: 0.08,
                burst: Some(4.0),
                delay: ms(120),
                jitter: ms(40),
                rate_bps: Some(400_000),
                queue_bytes: 32 * 1024,
                ..LinkConfig::default()
            },
            "outage" => LinkConfig {
                outages: vec![(Duration::from_secs(5), Duration::from_secs(5))],
                ..lte
            },
            _ => return None,
        };
        Some(Self {
            name: name.to_owned(),
            link,
            seed: DEFAULT_SEED,
        })
    }
}

/// Why a profile string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The text is empty.
    #[error("empty network profile (presets: lan, lte, rural, disaster, outage)")]
    Empty,
    /// A part is neither a preset nor `key=value`.
    #[error("`{0}` is not a preset (lan, lte, rural, disaster, outage) nor key=value")]
    UnknownPreset(String),
    /// A key nobody knows.
    #[error(
        "unknown setting in `{0}` (loss, burst, delay, jitter, reorder, rate, queue, outage, rate@T, seed)"
    )]
    UnknownKey(String),
    /// A value that does not parse or is out of range.
    #[error("bad value in `{part}`: {expected}")]
    BadValue {
        /// The `key=value` part.
        part: String,
        /// What would have been right.
        expected: &'static str,
    },
}

impl FromStr for Profile {
    type Err = ProfileError;

    fn from_str(text: &str) -> Result<Self, ProfileError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ProfileError::Empty);
        }
        let mut profile = Profile {
            name: text.to_owned(),
            link: LinkConfig::default(),
            seed: DEFAULT_SEED,
        };
        for (i, part) in text.split(',').map(str::trim).enumerate() {
            let Some((key, value)) = part.split_once('=') else {
                match (i, Profile::preset(part)) {
                    (0, Some(preset)) => {
                        profile.link = preset.link;
                        continue;
                    }
                    _ => return Err(ProfileError::UnknownPreset(part.to_owned())),
                }
            };
            let bad = |expected| ProfileError::BadValue {
                part: part.to_owned(),
                expected,
            };
            let (key, value) = (key.trim(), value.trim());
            let link = &mut profile.link;
            match key {
                "loss" => {
                    link.loss = parse_share(value).ok_or_else(|| bad("a share like 3% or 0.03"))?
                }
                "burst" => {
                    let b: f64 = value
                        .parse()
                        .ok()
                        .filter(|b: &f64| b.is_finite() && *b >= 1.0)
                        .ok_or_else(|| bad("a mean burst length ≥ 1 (datagrams)"))?;
                    link.burst = Some(b);
                }
                "delay" => {
                    link.delay = parse_duration(value).ok_or_else(|| bad("a time like 40ms"))?
                }
                "jitter" => {
                    link.jitter = parse_duration(value).ok_or_else(|| bad("a time like 15ms"))?
                }
                "head" => {
                    link.drop_first = value
                        .parse()
                        .map_err(|_| bad("a number of datagrams lost at the start"))?
                }
                "reorder" => {
                    link.reorder = match value {
                        "yes" | "on" | "true" => true,
                        "no" | "off" | "false" => false,
                        _ => return Err(bad("yes or no")),
                    }
                }
                "rate" => {
                    link.rate_bps =
                        Some(parse_rate(value).ok_or_else(|| bad("a rate like 1mbit or 400kbit"))?)
                }
                "queue" => {
                    link.queue_bytes = parse_queue(value, link.rate_bps)
                        .ok_or_else(|| bad("bytes like 64kb, or a time like 200ms after rate="))?
                }
                "outage" => {
                    let (start, len) = value
                        .split_once('+')
                        .and_then(|(s, l)| Some((parse_duration(s)?, parse_duration(l)?)))
                        .ok_or_else(|| bad("START+LENGTH like 5s+5s"))?;
                    link.outages.push((start, len));
                }
                "seed" => profile.seed = value.parse().map_err(|_| bad("a whole number"))?,
                _ => match key.strip_prefix("rate@") {
                    Some(at) => {
                        let at = parse_duration(at)
                            .ok_or_else(|| bad("rate@TIME=RATE like rate@10s=300kbit"))?;
                        let rate = parse_rate(value).ok_or_else(|| bad("a rate like 300kbit"))?;
                        link.rate_changes.push((at, rate));
                        link.rate_changes.sort_by_key(|&(t, _)| t);
                    }
                    None => return Err(ProfileError::UnknownKey(part.to_owned())),
                },
            }
        }
        Ok(profile)
    }
}

impl fmt::Display for Profile {
    /// The settings in the custom form, so the output can be fed back in.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.link;
        write!(f, "loss={}%", trim(l.loss * 100.0))?;
        if let Some(b) = l.burst {
            write!(f, ",burst={}", trim(b))?;
        }
        write!(
            f,
            ",delay={}ms,jitter={}ms",
            l.delay.as_millis(),
            l.jitter.as_millis()
        )?;
        if !l.reorder {
            f.write_str(",reorder=no")?;
        }
        if let Some(r) = l.rate_bps {
            write!(f, ",rate={}kbit,queue={}b", r / 1000, l.queue_bytes)?;
        }
        for (start, len) in &l.outages {
            write!(f, ",outage={}ms+{}ms", start.as_millis(), len.as_millis())?;
        }
        for (at, r) in &l.rate_changes {
            write!(f, ",rate@{}ms={}kbit", at.as_millis(), r / 1000)?;
        }
        if l.drop_first > 0 {
            write!(f, ",head={}", l.drop_first)?;
        }
        write!(f, ",seed={}", self.seed)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn parse_share(v: &str) -> Option<f64> {
    let share = match v.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok()? / 100.0,
        None => v.parse::<f64>().ok()?,
    };
    (share.is_finite() && (0.0..=1.0).contains(&share)).then_some(share)
}

/// `40ms`, `1.5s`, `250us`; a bare number is milliseconds.
pub(crate) fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (number, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else {
        (v, 1e-3)
    };
    let x: f64 = number.trim().parse().ok()?;
    (x.is_finite() && x >= 0.0 && x * scale <= 86_400.0).then(|| Duration::from_secs_f64(x * scale))
}

/// `1mbit`, `400kbit`, `2.5mbps`, `5000000` (bit/s).
fn parse_rate(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let units = [
        ("gbit", 1e9),
        ("gbps", 1e9),
        ("mbit", 1e6),
        ("mbps", 1e6),
        ("kbit", 1e3),
        ("kbps", 1e3),
        ("bit", 1.0),
        ("bps", 1.0),
    ];
    let (number, scale) = units
        .iter()
        .find_map(|(u, s)| v.strip_suffix(u).map(|n| (n, *s)))
        .unwrap_or((v.as_str(), 1.0));
    let x: f64 = number.trim().parse().ok()?;
    let bps = x * scale;
    (1000.0..=1e11).contains(&bps).then_some(bps as u64)
}

fn parse_queue(v: &str, rate: Option<u64>) -> Option<usize> {
    let lower = v.trim().to_ascii_lowercase();
    let bytes = if let Some(n) = lower.strip_suffix("kb") {
        n.trim().parse::<f64>().ok()? * 1024.0
    } else if let Some(n) = lower.strip_suffix("mb") {
        n.trim().parse::<f64>().ok()? * 1024.0 * 1024.0
    } else if let Some(n) = lower.strip_suffix('b') {
        n.trim().parse::<f64>().ok()?
    } else if lower.ends_with('s') {
        let t = parse_duration(&lower)?;
        t.as_secs_f64() * rate? as f64 / 8.0
    } else {
        return None;
    };
    (1500.0..=1e9).contains(&bytes).then_some(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_the_field_conditions() {
        let lte = Profile::preset("lte").unwrap();
        assert_eq!(lte.link.loss, 0.03);
        assert_eq!(lte.link.delay, Duration::from_millis(40));
        assert_eq!(lte.link.jitter, Duration::from_millis(15));
        assert_eq!(lte.link.rate_bps, Some(5_000_000));
        let rural: Profile = "rural".parse().unwrap();
        assert_eq!(
            (rural.link.loss, rural.link.rate_bps),
            (0.01, Some(1_000_000))
        );
        let disaster: Profile = "disaster".parse().unwrap();
        assert_eq!(disaster.link.burst, Some(4.0));
        assert_eq!(disaster.link.rate_bps, Some(400_000));
        let outage: Profile = "outage".parse().unwrap();
        assert_eq!(
            outage.link.outages,
            vec![(Duration::from_secs(5), Duration::from_secs(5))]
        );
        assert_eq!(outage.link.loss, 0.03);
        assert!(Profile::lan().link.is_perfect());
        for (name, _) in PRESETS {
            assert!(Profile::preset(name).is_some(), "{name}");
        }
    }

    #[test]
    fn custom_form_and_overrides() {
        let p: Profile =
            "loss=3%,delay=40ms,jitter=15ms,rate=1mbit,burst=3,queue=200ms,outage=2s+1.5s,rate@10s=300kbit,reorder=no,head=12,seed=9"
                .parse()
                .unwrap();
        let l = &p.link;
        assert_eq!(l.loss, 0.03);
        assert_eq!(l.burst, Some(3.0));
        assert_eq!(l.delay, Duration::from_millis(40));
        assert_eq!(l.rate_bps, Some(1_000_000));
        assert_eq!(l.queue_bytes, 25_000);
        assert_eq!(
            l.outages,
            vec![(Duration::from_secs(2), Duration::from_millis(1500))]
        );
        assert_eq!(l.rate_changes, vec![(Duration::from_secs(10), 300_000)]);
        assert!(!l.reorder);
        assert_eq!(l.drop_first, 12);
        assert_eq!(p.seed, 9);
        let over: Profile = "lte,loss=5%".parse().unwrap();
        assert_eq!(over.link.loss, 0.05);
        assert_eq!(over.link.delay, Duration::from_millis(40));
        // The printed form parses back to the same settings.
        let again: Profile = p.to_string().parse().unwrap();
        assert_eq!(again.link, p.link);
        assert_eq!(again.seed, p.seed);
    }

    #[test]
    fn bad_parts_are_named() {
        let cases = [
            ("", "empty"),
            ("typhoon", "`typhoon` is not a preset"),
            ("lte,fast", "`fast` is not a preset"),
            ("loss=3%,lte", "`lte` is not a preset"),
            ("loss=300%", "`loss=300%`"),
            ("delay=soon", "`delay=soon`"),
            ("rate=fast", "`rate=fast`"),
            ("rate=10bit", "`rate=10bit`"),
            ("speed=1mbit", "unknown setting in `speed=1mbit`"),
            ("outage=5s", "`outage=5s`"),
            ("queue=200ms", "`queue=200ms`"),
            ("burst=0.5", "`burst=0.5`"),
            ("rate@soon=1mbit", "`rate@soon=1mbit`"),
        ];
        for (text, want) in cases {
            let err = text.parse::<Profile>().unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
