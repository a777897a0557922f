//! Which videos one subscriber's downlink carries, and at which simulcast layer: pure
//! policy on the server's estimate of that downlink, no I/O, time passed in. The same
//! policy decides which of its own layers a simulcast publisher's uplink carries (its
//! layers are the "videos", the upper ones the least important).
//!
//! Audio is never paused: the budget for video is the estimate less what the audio takes.
//! Each video has one layer or more (simulcast), each with the rate it arrives at; a video
//! is forwarded at one of them or paused. The smallest layers of all videos come first, in
//! priority order (screen shares, then the loudest speakers, then the rest), then larger
//! ones in the same order, never above what the subscriber shows (`Video::max_layer`). The
//! rules, each for a reason:
//!
//! - **A video is lowered or paused only after the estimate fell** (overuse seen in the
//!   delay trend, or loss) below what is being sent; what fits in the rate that arrived
//!   before the fall (the estimate / 0.85, GCC's decrease) stays, layers going down before
//!   any video is paused. The estimate of a link that was never congested says little about
//!   its capacity — GCC lets it rise to no more than 1.5 × what arrives — so a budget that
//!   merely has not grown yet is no reason to take a picture away.
//! - **Raises wait for a hold after a fall** (10 s, doubled after each probe that did not
//!   last, up to 60 s). After it, whatever the estimate has room for is raised; without
//!   room, one step up (a paused video's smallest layer first) as a probe — the one way to
//!   learn whether the link carries more, since the estimate cannot rise above what is
//!   sent. A probe that brings the estimate down, or loss over [`PROBE_LOSS`], is undone
//!   alone at once (the rest was carried before it), and for [`UNDO_GRACE`] the estimate's
//!   further fall lowers nothing more; a probe that lasts resets the hold.
//! - **With padding probes** ([`Allocator::set_padding_probes`]: the subscriber negotiated
//!   a retransmission stream to carry them) no raise is a probe. A raise past what is
//!   known to arrive — 1.5 × what is sent (GCC's own ceiling) or a rate a probe proved in
//!   the last [`PROVED_FOR`] — is asked for as [`Change::Probe`] first: the caller sends
//!   that much more as padding for a moment, measures whether the path delivered it, and
//!   tells [`Allocator::probe_done`]; carried, the next decision raises up to what was
//!   proved. A probe that was not carried costs no picture: the next waits a [`HOLD`]
//!   (one that proved nothing either way, [`Allocator::probe_unsure`], a shorter wait).
//!   Measured on a 300 kbit/s downlink (one 720p simulcast publisher): a raise to the
//!   640×360 layer as the probe overfilled the link for seconds each time (369 of 600
//!   pictures shown, 5 freezes, 13.5 s); see `core/tests/narrow_720p.rs` for the figures
//!   with padding.

use std::time::{Duration, Instant};

/// The shortest time between pausing a video and resuming one.
pub const HOLD: Duration = Duration::from_secs(10);

/// The longest hold, reached by doubling after resumes that did not last.
pub const MAX_HOLD: Duration = Duration::from_secs(60);

/// How long after a probe was undone a further fall of the estimate lowers nothing more:
/// the queue the probe built takes a moment to drain, and the receiver reports' loss is
/// smoothed over seconds (`transport::cc::LossWindow`), so the
/// loss-based half goes on falling after the probe is gone. Measured on a 800 kbit/s
/// downlink with two small layers: after a probe of a full-size layer was undone, the
/// reported loss took 5 s to fall from 27 % to under 5 %, and with a grace of 4 s the
/// estimate's fall (to 196 kbit/s) paused both videos.
pub const UNDO_GRACE: Duration = Duration::from_secs(8);

/// Loss (after repairs, as the receiver reports it) that undoes a probe under way, whether
/// or not the estimate fell yet. A probe of a full-size layer on an 800 kbit/s link filled
/// the queue with its first keyframe and kept it full: the delay-based half never saw a
/// queue grow, and the estimate fell only with the loss-based half, 4 s and up to 36 %
/// loss later; the loss crossed 5 % 3 s sooner.
pub const PROBE_LOSS: f64 = 0.05;

/// How long a rate a padding probe proved is trusted for raises (while the estimate does
/// not fall): a tile that shrank and grows back needs no new probe.
pub const PROVED_FOR: Duration = Duration::from_secs(30);

/// The shortest time between a probe that carried and the next: a raise that waited for a
/// probe may need another step (640×360 after 320×180, then 1280×720).
pub const PROBE_AGAIN: Duration = Duration::from_millis(500);

/// A probe that proved this multiple of what was known to arrive before it is followed by
/// the next soon ([`PROBE_AGAIN`]) even when it carried less than it asked for: the path has
/// room beyond what was known, and a probe's reading on a jittery path is noisy (its
/// arrival-on-departure slope, over ~20 packets and 200 ms with ± 40 ms of jitter, reads
/// ± 9 %). Measured on 8 % burst loss at 120 ± 40 ms (two temporal layers, seed 1): the last
/// participant to join, its three videos paused at the start, climbed 215 → 385 → 514
/// kbit/s in probes half a second apart, then waited a hold because the last carried 514 of
/// the 576 it asked for (89 %), and had its videos back 26 s into the minute.
pub const PROBE_GAIN: f64 = 1.2;

/// The first wait after a probe that proved nothing either way ([`Allocator::probe_unsure`]),
/// doubled after each such probe up to a [`HOLD`]. On a link with 8 % loss in bursts of four,
/// the few packets of a probe that starts from a voice alone (~15 in its 200 ms) lose a burst
/// one time in three: judged not carried and followed by a hold, a subscriber whose every
/// video was paused took minutes to prove room for one.
pub const UNSURE_RETRY: Duration = Duration::from_secs(1);

/// A probe asks for at most this multiple of what is sent (or was proved, if more): a
/// link with no room is overfilled by half what is sent, for the padding's 200 ms (~100 ms
/// of queue), and a wide one is found in a few steps (320×180 to 1280×720 in six, about a
/// second each). Twice what is sent, as first written, doubled what a probe cost on a
/// link without room.
pub const PROBE_GROWTH: f64 = 1.5;

/// A probe asks for this much more than the raise it is for: a layer's rate is measured as
/// it arrives from its publisher and grows with the scene and its keyframes; probed at its
/// bare rate, a just-started layer went past what the probe proved before it was raised.
pub const PROBE_HEADROOM: f64 = 1.2;

/// Above what is sent, the share an estimate may be trusted for without a probe (GCC's own
/// ceiling: its estimate rises to no more than 1.5 × what arrives).
const TRUSTED_SHARE: f64 = 1.5;

/// A fall of the estimate smaller than this share is noise, not congestion.
const FALL: f64 = 0.02;

/// What stays when the estimate falls: videos that fit in the estimate divided by this.
/// GCC's decrease goes to 0.85 × what arrived, below the capacity on purpose so that the
/// queue drains; allocated against that figure, a subscriber on a 1.2 Mbit/s link lost its
/// one 800 kbit/s video too (its estimate settled at 0.94 Mbit/s, the video and three
/// voices took 1.0).
const DECREASE_SHARE: f64 = 0.85;

/// One video a subscriber receives, as the allocator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Video {
    /// The subscriber's slot carrying it (the allocator's key).
    pub slot: usize,
    /// Lower goes first: 0 for screen shares, then the speaker ranking, then the rest.
    pub priority: u32,
    /// What each layer it can be forwarded at takes, bits per second (measured as it
    /// arrives from the publisher), lowest first: one without simulcast.
    pub layers: Vec<f64>,
    /// The layer forwarded now (an index into `layers`), `None` while paused (the caller
    /// keeps that state and carries out each [`Change`]).
    pub layer: Option<usize>,
    /// The highest layer worth forwarding (what the subscriber's tile shows).
    pub max_layer: usize,
}

impl Video {
    /// What it takes at `layer`.
    fn bps(&self, layer: Option<usize>) -> f64 {
        layer
            .and_then(|l| self.layers.get(l))
            .copied()
            .unwrap_or(0.0)
    }

    /// The layer one step above `layer` (a paused video's smallest), if it may be raised.
    fn above(&self, layer: Option<usize>) -> Option<usize> {
        let top = self.layers.len().checked_sub(1)?.min(self.max_layer);
        let up = layer.map_or(0, |l| l + 1);
        (up <= top).then_some(up)
    }
}

/// A change for one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Stop forwarding this slot's video.
    Pause(usize),
    /// Forward this slot's video at this layer (from that layer's next keyframe): a resume
    /// when it was paused, a switch when it was at another layer.
    Forward(usize, usize),
    /// Prove first that the downlink carries this many more bits per second than it is sent
    /// now (padding); the caller answers with [`Allocator::probe_done`].
    Probe(u64),
}

/// The allocation of one subscriber. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Allocator {
    /// The estimate the last decision saw.
    last_estimate: Option<f64>,
    /// When a video was last paused or lowered.
    lowered_at: Option<Instant>,
    /// When a video was last raised without room for it (a probe), until that has lasted a
    /// hold.
    probed_at: Option<Instant>,
    /// The probe under way: the slot raised and the layer it had before.
    probe: Option<(usize, Option<usize>)>,
    /// When a probe was last undone.
    undone_at: Option<Instant>,
    /// The estimate when the probe under way began.
    probe_estimate: Option<f64>,
    /// The estimate to go back to, after a probe that hurt was undone
    /// ([`take_restore`](Allocator::take_restore)).
    restore: Option<f64>,
    hold: Duration,
    /// Raises past what is known to arrive are proved by padding first.
    padding: bool,
    /// A padding probe is under way.
    probing: bool,
    /// No padding probe before this.
    next_probe: Option<Instant>,
    /// The rate the last padding probe that carried proved, and when.
    proved: Option<(f64, Instant)>,
    /// What the probe under way asks the link to carry in all, bits per second.
    probe_total: f64,
    /// What was known to arrive when it began (sent, or proved before), bits per second.
    probe_base: f64,
    /// The wait after the next probe that proves nothing.
    unsure_retry: Duration,
}

impl Default for Allocator {
    fn default() -> Self {
        Self {
            last_estimate: None,
            lowered_at: None,
            probed_at: None,
            probe: None,
            undone_at: None,
            probe_estimate: None,
            restore: None,
            hold: HOLD,
            padding: false,
            probing: false,
            next_probe: None,
            proved: None,
            probe_total: 0.0,
            probe_base: 0.0,
            unsure_retry: UNSURE_RETRY,
        }
    }
}

impl Allocator {
    /// After a probe that brought the estimate down (or loss over [`PROBE_LOSS`]) was
    /// undone: the estimate from before it, once. The loss the probe caused says nothing of
    /// the link without it, but GCC's loss-based half, which rises only under 2 % loss, keeps
    /// it for many seconds: measured on a 300 kbit/s downlink, a probe of a 530 kbit/s layer
    /// brought the loss-based half from 450 to 71 kbit/s, and the smallest layer (190) was
    /// paused 5 s after the probe was undone. The caller puts the estimate back.
    pub fn take_restore(&mut self) -> Option<f64> {
        self.restore.take()
    }

    /// The current hold before a raise.
    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// Proves raises by padding ([`Change::Probe`]) rather than by raising (see the
    /// [module documentation](self)): where the subscriber's connection can carry padding.
    pub fn set_padding_probes(&mut self, on: bool) {
        self.padding = on;
    }

    /// Whether raises are proved by padding.
    pub fn padding_probes(&self) -> bool {
        self.padding
    }

    /// The padding probe asked for is over: the rate it proved the downlink carries
    /// (bits per second, everything sent included), or `None` when it was not carried.
    /// The next probe comes after [`PROBE_AGAIN`] when it carried (nearly) all it asked for
    /// or [`PROBE_GAIN`] × what was known to arrive before it, else after a [`HOLD`].
    pub fn probe_done(&mut self, now: Instant, carried_bps: Option<f64>) {
        self.probing = false;
        if let Some(bps) = carried_bps {
            self.proved = Some((bps, now));
            self.unsure_retry = UNSURE_RETRY;
        }
        let more = carried_bps.is_some_and(|bps| {
            bps >= 0.9 * self.probe_total || bps >= PROBE_GAIN * self.probe_base
        });
        self.next_probe = Some(now + if more { PROBE_AGAIN } else { HOLD });
    }

    /// The padding probe asked for is over and proved nothing either way: too few of its
    /// packets were reported, or only its loss spoke against it (a burst of random loss
    /// reads the same in a few packets; a queue that grows is what `probe_done(_, None)`
    /// is for). The next comes after [`UNSURE_RETRY`], doubled each time up to a [`HOLD`].
    pub fn probe_unsure(&mut self, now: Instant) {
        self.probing = false;
        self.next_probe = Some(now + self.unsure_retry);
        self.unsure_retry = (self.unsure_retry * 2).min(HOLD);
    }

    /// Whether a padding probe is under way.
    pub fn probing(&self) -> bool {
        self.probing
    }

    /// Decides with the downlink `estimate_bps` and the `loss` the receiver reports (0–1),
    /// of which `audio_bps` is taken by audio, over the `videos` the subscriber is
    /// subscribed to; returns what changes.
    pub fn decide(
        &mut self,
        now: Instant,
        estimate_bps: f64,
        loss: f64,
        audio_bps: f64,
        videos: &[Video],
    ) -> Vec<Change> {
        let mut order: Vec<&Video> = videos.iter().collect();
        order.sort_by_key(|v| (v.priority, v.slot));
        let fell = self
            .last_estimate
            .is_some_and(|last| estimate_bps < last * (1.0 - FALL));
        self.last_estimate = Some(estimate_bps);
        let budget = (estimate_bps - audio_bps).max(0.0);
        let sending: f64 = order.iter().map(|v| v.bps(v.layer)).sum();
        if fell {
            // What a probe proved is of a link that has less room now.
            self.proved = None;
        }
        let grace = self.undone_at.is_some_and(|t| now < t + UNDO_GRACE);
        let probe_hurts = self.probe.is_some() && loss > PROBE_LOSS;
        if ((fell && sending > budget) || probe_hurts) && !grace {
            let undo = self
                .probe
                .take()
                .filter(|(slot, had)| videos.iter().any(|v| v.slot == *slot && v.layer != *had));
            let changes = match undo {
                // The probe brought the estimate down: it alone is undone, the rest was
                // carried before it (lowered afresh from the fallen estimate, a probe of a
                // full-size layer on a 600 kbit/s link paused the other video's small one).
                Some((slot, Some(had))) => vec![Change::Forward(slot, had)],
                Some((slot, None)) => vec![Change::Pause(slot)],
                None => lower(&order, (estimate_bps / DECREASE_SHARE - audio_bps).max(0.0)),
            };
            if undo.is_some() {
                self.undone_at = Some(now);
                self.restore = self.probe_estimate.take();
            }
            if !changes.is_empty() {
                if self.probed_at.is_some_and(|t| now < t + self.hold) {
                    // The last probe did not last: wait longer before the next.
                    self.hold = (self.hold * 2).min(MAX_HOLD);
                }
                self.lowered_at = Some(now);
                self.probed_at = None;
            }
            return changes;
        }
        if let Some(t) = self.probed_at
            && now >= t + self.hold
        {
            // The last probe lasted.
            self.hold = HOLD;
            self.probed_at = None;
            self.probe = None;
        }
        let waited = [self.lowered_at, self.probed_at]
            .into_iter()
            .flatten()
            .all(|t| now >= t + self.hold);
        if !waited {
            return Vec::new();
        }
        if self.padding {
            return self.raise_or_probe(now, &order, budget, audio_bps, sending);
        }
        // Raise what the estimate has room for, the lowest layers first, by priority.
        let levels = raised(&order, budget - sending);
        let mut changes = forwards(&order, &levels);
        if changes.is_empty() {
            // No room: one step up as a probe (the estimate cannot rise above what is
            // sent), a paused video first.
            let probe = (0..order.len())
                .filter_map(|i| Some((order[i].above(order[i].layer)?, i)))
                .min();
            if let Some((up, i)) = probe {
                self.probed_at = Some(now);
                self.probe_estimate = Some(estimate_bps);
                self.probe = Some((order[i].slot, order[i].layer));
                changes.push(Change::Forward(order[i].slot, up));
            }
        }
        changes
    }
}

impl Allocator {
    /// The raise with padding probes: what fits both the estimate and what is known to
    /// arrive, else a probe for more.
    fn raise_or_probe(
        &mut self,
        now: Instant,
        order: &[&Video],
        budget: f64,
        audio_bps: f64,
        sending: f64,
    ) -> Vec<Change> {
        if self.probing {
            return Vec::new();
        }
        let proved = self
            .proved
            .filter(|&(_, at)| now < at + PROVED_FOR)
            .map_or(0.0, |(bps, _)| bps);
        let trusted = (TRUSTED_SHARE * (sending + audio_bps)).max(proved) - audio_bps;
        let changes = forwards(order, &raised(order, budget.min(trusted) - sending));
        if !changes.is_empty() || self.next_probe.is_some_and(|t| now < t) {
            return changes;
        }
        // Nothing more fits what is known: prove more, towards every video at the largest
        // layer its tile needs (what the estimate says is no limit: it cannot rise above
        // 1.5 × what arrives by itself).
        let levels = raised(order, f64::INFINITY);
        if levels.iter().zip(order).all(|(l, v)| *l == v.layer) {
            return Vec::new();
        }
        // Raises go a layer at a time: the most any layer on the way takes (a layer's rate
        // is what arrives from its publisher, and an upper one held back by the publisher's
        // uplink may take less than the one below).
        let wanted: f64 = order
            .iter()
            .zip(&levels)
            .map(|(v, &to)| {
                let from = v.layer.map_or(0, |l| l + 1);
                (from..=to.unwrap_or(0))
                    .map(|l| v.bps(Some(l)))
                    .fold(v.bps(v.layer), f64::max)
            })
            .sum();
        let total = ((wanted + audio_bps) * PROBE_HEADROOM)
            .min(PROBE_GROWTH * (sending + audio_bps).max(proved));
        let padding = total - sending - audio_bps;
        if padding <= 0.0 {
            return Vec::new();
        }
        self.probing = true;
        self.probe_total = total;
        self.probe_base = (sending + audio_bps).max(proved);
        vec![Change::Probe(padding as u64)]
    }
}

/// Each video's layer after raising the lowest layers first, by priority, while `room`
/// (bits per second) lasts.
fn raised(order: &[&Video], mut room: f64) -> Vec<Option<usize>> {
    let mut levels: Vec<Option<usize>> = order.iter().map(|v| v.layer).collect();
    loop {
        let next = (0..order.len())
            .filter_map(|i| {
                let v = order[i];
                let up = v.above(levels[i])?;
                (v.bps(Some(up)) - v.bps(levels[i]) <= room).then_some((up, i))
            })
            .min();
        let Some((up, i)) = next else { break };
        room -= order[i].bps(Some(up)) - order[i].bps(levels[i]);
        levels[i] = Some(up);
    }
    levels
}

/// The changes that take each video of `order` to its layer in `levels` (only raises).
fn forwards(order: &[&Video], levels: &[Option<usize>]) -> Vec<Change> {
    (0..order.len())
        .filter(|&i| levels[i] != order[i].layer)
        .filter_map(|i| Some(Change::Forward(order[i].slot, levels[i]?)))
        .collect()
}

/// What stays after the estimate fell to `budget` for video: each video's lowest layer in
/// priority order while it fits, the rest paused; then the kept ones raised back, in
/// priority order, up to the layer they had while it fits. Only lowers.
fn lower(order: &[&Video], budget: f64) -> Vec<Change> {
    let mut used = 0.0;
    let mut levels: Vec<Option<usize>> = Vec::with_capacity(order.len());
    for v in order {
        let lowest = v
            .layer
            .map(|_| 0)
            .filter(|&l| used + v.bps(Some(l)) <= budget);
        used += v.bps(lowest);
        levels.push(lowest);
    }
    for (i, v) in order.iter().enumerate() {
        while let (Some(l), Some(had)) = (levels[i], v.layer)
            && l < had
            && used + v.bps(Some(l + 1)) - v.bps(Some(l)) <= budget
        {
            used += v.bps(Some(l + 1)) - v.bps(Some(l));
            levels[i] = Some(l + 1);
        }
    }
    order
        .iter()
        .zip(levels)
        .filter(|(v, l)| *l != v.layer)
        .map(|(v, l)| match l {
            Some(l) => Change::Forward(v.slot, l),
            None => Change::Pause(v.slot),
        })
        .collect()
}

/// The rate of one incoming track: bytes counted as they arrive, read as a smoothed rate.
#[derive(Clone, Debug, Default)]
pub struct Meter {
    bytes: u64,
    since: Option<Instant>,
    bps: Option<f64>,
    /// The rate before the readings that counted nothing (the track, a simulcast layer its
    /// publisher's uplink paused, stopped), while they last.
    before_idle: Option<f64>,
}

impl Meter {
    /// Counts a packet of `bytes`.
    pub fn add(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }

    /// Takes in what was counted up to `now`: each reading over at least 500 ms weighs a
    /// quarter against what came before (a keyframe every few seconds is averaged in, not
    /// taken for the rate). A track that stopped decays towards 0 and, when it comes back,
    /// is read at no less than its rate before it stopped: a layer its publisher resumed,
    /// read as climbing from the rate it decayed to (and from the part of a reading it
    /// was back for), looked a quarter of its size for a second and took 4 s to reach
    /// nine tenths. Measured on simulated `rural` with simulcast: a subscriber's allocation
    /// raised two videos to their 640×360 layers read at 106 and 132 kbit/s that grew to
    /// ~500 each, and its 1 Mbit/s downlink was overfilled for 5 s.
    pub fn update(&mut self, now: Instant) {
        let since = *self.since.get_or_insert(now);
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        if elapsed >= 0.5 {
            let fresh = self.bytes as f64 * 8.0 / elapsed;
            // Stopped: remember the rate it stopped at (once); back: take that rate out.
            let back = if self.bytes == 0 {
                self.before_idle = self.before_idle.or(self.bps);
                None
            } else {
                self.before_idle.take()
            };
            self.bps = Some(match (self.bps, back) {
                (_, Some(before)) => fresh.max(before),
                (Some(old), None) => old + (fresh - old) / 4.0,
                (None, None) => fresh,
            });
            self.bytes = 0;
            self.since = Some(now);
        }
    }

    /// The rate at the last [`update`](Self::update), bits per second (0 before one).
    pub fn bps(&self) -> f64 {
        self.bps.unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_reads_a_steady_rate() {
        let t0 = Instant::now();
        let mut m = Meter::default();
        m.update(t0);
        assert_eq!(m.bps(), 0.0);
        // 100 packets of 1000 bytes a second: 800 kbit/s.
        for i in 1..=300u64 {
            m.add(1000);
            if i % 50 == 0 {
                m.update(t0 + Duration::from_millis(i * 10));
            }
        }
        m.update(t0 + Duration::from_secs(3));
        let bps = m.bps();
        assert!((bps - 800_000.0).abs() < 1.0, "{bps}");
    }

    #[test]
    fn the_meter_reads_a_track_that_resumed_at_once() {
        let t0 = Instant::now();
        let mut m = Meter::default();
        m.update(t0);
        let mut ms = 0;
        // One reading of 500 ms with `bytes` counted.
        let mut read = |m: &mut Meter, bytes: usize| {
            m.add(bytes);
            ms += 500;
            m.update(t0 + Duration::from_millis(ms));
            m.bps()
        };
        // 800 kbit/s for 2 s, then stopped for 2 s: it decays.
        for _ in 0..4 {
            read(&mut m, 50_000);
        }
        for _ in 0..4 {
            read(&mut m, 0);
        }
        assert!(m.bps() < 800_000.0 * 0.4, "{}", m.bps());
        // Back for part of a reading: read at its rate before it stopped, not a climb from
        // the decay; then smoothed towards what it sends now (400 kbit/s).
        assert_eq!(read(&mut m, 10_000), 800_000.0);
        assert_eq!(read(&mut m, 25_000), 700_000.0);
        // Stopped again, and back faster than before: read at once.
        for _ in 0..4 {
            read(&mut m, 0);
        }
        assert_eq!(read(&mut m, 100_000), 1_600_000.0);
    }

    fn videos(n: usize, bps: f64) -> Vec<Video> {
        (0..n)
            .map(|slot| Video {
                slot,
                priority: slot as u32,
                layers: vec![bps],
                layer: Some(0),
                max_layer: 0,
            })
            .collect()
    }

    /// Decides, and carries the changes out on `v` as the engine does.
    fn step(a: &mut Allocator, v: &mut [Video], at: Instant, est: f64, audio: f64) -> Vec<Change> {
        let changes = a.decide(at, est, 0.0, audio, v);
        for c in &changes {
            let (slot, layer) = match *c {
                Change::Pause(s) => (s, None),
                Change::Forward(s, l) => (s, Some(l)),
                Change::Probe(_) => continue,
            };
            v.iter_mut().find(|v| v.slot == slot).unwrap().layer = layer;
        }
        changes
    }

    fn paused(v: &[Video]) -> usize {
        v.iter().filter(|v| v.layer.is_none()).count()
    }

    #[test]
    fn a_fall_below_what_is_sent_pauses_the_least_important_first() {
        let t0 = Instant::now();
        let mut a = Allocator::default();
        let mut v = videos(3, 800_000.0);
        assert!(step(&mut a, &mut v, t0, 5_000_000.0, 100_000.0).is_empty());
        // The estimate fell to 1.8 Mbit/s: 1.7 for video keeps two of three.
        let c = step(
            &mut a,
            &mut v,
            t0 + Duration::from_secs(1),
            1_800_000.0,
            100_000.0,
        );
        assert_eq!(c, vec![Change::Pause(2)]);
        // Lower still: only the first stays.
        let c = step(
            &mut a,
            &mut v,
            t0 + Duration::from_secs(2),
            1_000_000.0,
            100_000.0,
        );
        assert_eq!(c, vec![Change::Pause(1)]);
        assert_eq!(paused(&v), 2);
    }

    #[test]
    fn a_low_estimate_that_did_not_fall_pauses_nothing() {
        let t0 = Instant::now();
        let mut a = Allocator::default();
        let mut v = videos(3, 800_000.0);
        // A fresh estimate of 1 Mbit/s, rising: nothing was congested yet.
        for i in 0..10 {
            let est = 1_000_000.0 + i as f64 * 50_000.0;
            let at = t0 + Duration::from_millis(500 * i);
            assert!(step(&mut a, &mut v, at, est, 100_000.0).is_empty());
        }
    }

    #[test]
    fn priorities_decide_who_stays() {
        let t0 = Instant::now();
        let mut a = Allocator::default();
        let mut v = videos(3, 500_000.0);
        v[2].priority = 0; // a screen share in the last slot
        v[0].priority = 5;
        step(&mut a, &mut v, t0, 3_000_000.0, 0.0);
        let c = step(&mut a, &mut v, t0 + Duration::from_secs(1), 600_000.0, 0.0);
        assert_eq!(c, vec![Change::Pause(1), Change::Pause(0)]);
    }

    #[test]
    fn resumes_wait_for_the_hold_one_at_a_time_and_back_off_when_they_fail() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut a = Allocator::default();
        let mut v = videos(3, 800_000.0);
        step(&mut a, &mut v, t0, 5_000_000.0, 0.0);
        assert_eq!(step(&mut a, &mut v, t0 + s(1), 900_000.0, 0.0).len(), 2);
        // Within the hold nothing comes back, even with room.
        assert!(step(&mut a, &mut v, t0 + s(5), 900_000.0, 0.0).is_empty());
        // After it, the more important one comes back, alone (a probe: no room for it).
        assert_eq!(
            step(&mut a, &mut v, t0 + s(11), 950_000.0, 0.0),
            vec![Change::Forward(1, 0)]
        );
        assert!(step(&mut a, &mut v, t0 + s(12), 960_000.0, 0.0).is_empty());
        // The probe brought the estimate down: undone, and the hold doubles.
        assert_eq!(
            step(&mut a, &mut v, t0 + s(13), 850_000.0, 0.0),
            vec![Change::Pause(1)]
        );
        assert_eq!(a.hold(), s(20));
        assert!(step(&mut a, &mut v, t0 + s(25), 850_000.0, 0.0).is_empty());
        assert_eq!(
            step(&mut a, &mut v, t0 + s(34), 860_000.0, 0.0),
            vec![Change::Forward(1, 0)]
        );
        // This one lasts: after the hold the hold is back to its start, and the next
        // video comes back.
        assert!(step(&mut a, &mut v, t0 + s(40), 1_700_000.0, 0.0).is_empty());
        assert_eq!(
            step(&mut a, &mut v, t0 + s(54), 2_500_000.0, 0.0),
            vec![Change::Forward(2, 0)]
        );
        assert_eq!(a.hold(), HOLD);
        assert_eq!(paused(&v), 0);
    }

    fn simulcast(n: usize) -> Vec<Video> {
        (0..n)
            .map(|slot| Video {
                slot,
                priority: slot as u32,
                layers: vec![150_000.0, 500_000.0, 2_000_000.0],
                layer: Some(0),
                max_layer: 2,
            })
            .collect()
    }

    #[test]
    fn room_raises_the_lowest_layers_first_by_priority_up_to_the_tile() {
        let t0 = Instant::now();
        let mut a = Allocator::default();
        let mut v = simulcast(3);
        v[2].max_layer = 0; // a tile too small for more
        // 3 Mbit/s for video: both others to the middle layer, then the first to the top.
        let c = step(&mut a, &mut v, t0, 3_100_000.0, 100_000.0);
        assert_eq!(c, vec![Change::Forward(0, 2), Change::Forward(1, 1)]);
        // Nothing more fits; the second is raised as a probe once the hold has passed
        // (nothing was lowered: at once), and then not again within the hold.
        let c = step(&mut a, &mut v, t0 + HOLD, 3_100_000.0, 100_000.0);
        assert_eq!(c, vec![Change::Forward(1, 2)]);
        assert!(step(&mut a, &mut v, t0 + HOLD * 3 / 2, 3_100_000.0, 100_000.0).is_empty());
    }

    #[test]
    fn a_fall_lowers_layers_before_it_pauses_and_the_important_keep_the_most() {
        let t0 = Instant::now();
        let mut a = Allocator::default();
        let mut v = simulcast(2);
        v[0].layer = Some(2);
        v[1].layer = Some(2);
        step(&mut a, &mut v, t0, 5_000_000.0, 0.0);
        // 1.1 Mbit/s: 1.29 before the decrease: both lowest (0.3), the first to the middle
        // (0.65), the second to the middle too (1.0).
        let c = step(
            &mut a,
            &mut v,
            t0 + Duration::from_secs(1),
            1_100_000.0,
            0.0,
        );
        assert_eq!(c, vec![Change::Forward(0, 1), Change::Forward(1, 1)]);
        // 0.6 Mbit/s (0.71): both lowest, the first in the middle.
        let c = step(&mut a, &mut v, t0 + Duration::from_secs(2), 600_000.0, 0.0);
        assert_eq!(c, vec![Change::Forward(1, 0)]);
        // 0.2 (0.24): the second is paused, the first keeps its lowest layer.
        let c = step(&mut a, &mut v, t0 + Duration::from_secs(3), 200_000.0, 0.0);
        assert_eq!(c, vec![Change::Forward(0, 0), Change::Pause(1)]);
        // After the hold, probes: the paused video's lowest layer before any raise.
        let later = t0 + Duration::from_secs(3) + HOLD;
        let c = step(&mut a, &mut v, later, 210_000.0, 0.0);
        assert_eq!(c, vec![Change::Forward(1, 0)]);
    }

    #[test]
    fn with_padding_a_raise_past_what_arrives_is_proved_first_and_a_failed_probe_waits_a_hold() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut a = Allocator::default();
        a.set_padding_probes(true);
        let mut v = simulcast(1);
        // 150 kbit/s sent, the estimate says 3 Mbit/s (never tested): 1.5 × 150 is trusted,
        // so no raise, but a probe towards the top layer: 1.5 × what is sent.
        let c = step(&mut a, &mut v, t0, 3_000_000.0, 0.0);
        assert_eq!(c, vec![Change::Probe(75_000)]);
        assert!(a.probing());
        assert_eq!(v[0].layer, Some(0));
        // Nothing more while it runs.
        assert!(step(&mut a, &mut v, t0 + s(1), 3_000_000.0, 0.0).is_empty());
        // Not carried: no probe again within the hold.
        a.probe_done(t0 + s(1), None);
        assert!(step(&mut a, &mut v, t0 + s(5), 3_000_000.0, 0.0).is_empty());
        let c = step(&mut a, &mut v, t0 + s(12), 3_000_000.0, 0.0);
        assert_eq!(c, vec![Change::Probe(75_000)]);
        // Carried: 300 kbit/s proved, not enough for the middle layer; the next probe soon
        // after, 1.5 × what was proved.
        a.probe_done(t0 + s(13), Some(300_000.0));
        assert!(step(&mut a, &mut v, t0 + s(13), 3_000_000.0, 0.0).is_empty());
        let c = step(&mut a, &mut v, t0 + s(13) + PROBE_AGAIN, 3_000_000.0, 0.0);
        assert_eq!(c, vec![Change::Probe(300_000)]);
        // Carried at 2.5 Mbit/s: both steps up fit what was proved, raised at once.
        a.probe_done(t0 + s(14), Some(2_500_000.0));
        let c = step(&mut a, &mut v, t0 + s(14), 3_000_000.0, 0.0);
        assert_eq!(c, vec![Change::Forward(0, 2)]);
        assert!(!a.probing());
    }

    #[test]
    fn a_probe_that_proved_a_fifth_more_than_was_known_is_followed_soon() {
        let t0 = Instant::now();
        let mut a = Allocator::default();
        a.set_padding_probes(true);
        let mut v = simulcast(1);
        // 150 kbit/s known; the probe asks for 225 in all.
        assert_eq!(
            step(&mut a, &mut v, t0, 3_000_000.0, 0.0),
            vec![Change::Probe(75_000)]
        );
        // 190 carried: less than 0.9 × 225, but 1.27 × what was known: again soon.
        a.probe_done(t0, Some(190_000.0));
        let c = step(&mut a, &mut v, t0 + PROBE_AGAIN, 3_000_000.0, 0.0);
        assert!(matches!(c[..], [Change::Probe(_)]), "{c:?}");
        // 200 carried of the 285 asked (1.5 × 190): not a fifth more, a hold.
        a.probe_done(t0 + PROBE_AGAIN, Some(200_000.0));
        let later = t0 + PROBE_AGAIN * 2;
        assert!(step(&mut a, &mut v, later, 3_000_000.0, 0.0).is_empty());
        let c = step(&mut a, &mut v, t0 + PROBE_AGAIN + HOLD, 3_000_000.0, 0.0);
        assert!(matches!(c[..], [Change::Probe(_)]), "{c:?}");
    }

    #[test]
    fn a_probe_that_proved_nothing_is_tried_again_sooner_each_wait_doubled() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut a = Allocator::default();
        a.set_padding_probes(true);
        let mut v = simulcast(1);
        let mut at = t0;
        assert_eq!(
            step(&mut a, &mut v, at, 3_000_000.0, 0.0),
            vec![Change::Probe(75_000)]
        );
        // Unsure three times: 1, 2 and 4 s later again.
        for wait in [1_000, 2_000, 4_000] {
            a.probe_unsure(at);
            assert!(step(&mut a, &mut v, at + ms(wait - 100), 3_000_000.0, 0.0).is_empty());
            at += ms(wait);
            let c = step(&mut a, &mut v, at, 3_000_000.0, 0.0);
            assert_eq!(c, vec![Change::Probe(75_000)], "{wait} ms after");
        }
        // One carried: the wait after the next unsure one is 1 s again.
        a.probe_done(at, Some(225_000.0));
        at += PROBE_AGAIN;
        assert!(matches!(
            step(&mut a, &mut v, at, 3_000_000.0, 0.0)[..],
            [Change::Probe(_)]
        ));
        a.probe_unsure(at);
        let c = step(&mut a, &mut v, at + ms(1_000), 3_000_000.0, 0.0);
        assert!(matches!(c[..], [Change::Probe(_)]), "{c:?}");
    }

    #[test]
    fn with_padding_a_step_without_room_is_probed_not_raised() {
        let t0 = Instant::now();
        let mut a = Allocator::default();
        a.set_padding_probes(true);
        let mut v = simulcast(1);
        v[0].layers[1] = 180_000.0;
        v[0].max_layer = 1;
        // The estimate has no room for the middle layer: proved by padding, a fifth above
        // what it takes (less than 1.5 × what is sent).
        let c = step(&mut a, &mut v, t0, 190_000.0, 20_000.0);
        let padding = ((180_000.0 + 20_000.0) * PROBE_HEADROOM - 170_000.0) as u64;
        assert_eq!(c, vec![Change::Probe(padding)]);
        a.probe_done(t0 + Duration::from_secs(1), Some(330_000.0));
        // The estimate is raised to what was proved by the caller.
        let c = step(
            &mut a,
            &mut v,
            t0 + Duration::from_secs(1),
            330_000.0,
            20_000.0,
        );
        assert_eq!(c, vec![Change::Forward(0, 1)]);
    }

    #[test]
    fn hold_is_bounded() {
        let t0 = Instant::now();
        let mut a = Allocator::default();
        let mut v = videos(2, 800_000.0);
        let mut at = t0;
        let mut est = 2_000_000.0;
        step(&mut a, &mut v, at, est, 0.0);
        for _ in 0..20 {
            est *= 0.5;
            at += Duration::from_secs(1);
            step(&mut a, &mut v, at, est, 0.0);
            at += a.hold();
            est *= 1.9;
            step(&mut a, &mut v, at, est, 0.0);
        }
        assert!(a.hold() <= MAX_HOLD);
    }
}
