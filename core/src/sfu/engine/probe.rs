//! Padding probes on subscribers' downlinks: before a raise past what is known to arrive,
//! the allocator asks for [`Change::Probe`](crate::sfu::allocate::Change::Probe), and the
//! server sends that much more for [`PADDING_TIME`] as padding — packets the subscriber
//! already has, again in its retransmission stream (RFC 4588; libwebrtc pads the same way):
//! the newest of a video that flows, or, while every video is paused, the last a paused one
//! forwarded (kept when it was paused).
//! Whether the path delivered them comes from the subscriber's transport-wide feedback
//! ([`ProbeWindow`](crate::transport::cc::ProbeWindow)).
//!
//! Why padding and not a raise: a larger layer raised to find out whether it fits costs
//! pictures when it does not (its keyframe alone overfills a narrow link), and the estimate
//! learns of it only seconds later. Padding that does not fit costs a few tens of
//! milliseconds of queue: the probe stops as soon as what arrives falls behind what left.
//! Why not RTP padding on the media stream: `rtc` writes at most a few bytes of padding to a
//! packet, and a padding packet on the media SSRC that is lost is a gap the receiver's
//! jitter buffer waits for.

use std::time::{Duration, Instant};

use rtc::rtp;

use super::{Engine, SessionId, SlotRtc};
use crate::signal::PeerRole;
use crate::transport::cc::{ProbeReading, ProbeWindow};

/// How long a probe sends padding. What a probe costs where the link has no room is its
/// padding, queued: sent until the verdict (the feedback takes a round trip and more), a
/// probe at twice what was sent added ~0.3–0.6 s of queue on a 400 kbit/s link with 240 ms
/// of round trip, which drained for seconds behind the media, and the voices in it came
/// late (measured on `disaster`, three seeds: the worst pair's audio not played 12.8 /
/// 10.6 / 12.8 % with padding until the verdict, 11.2 / 10.6 / 11.1 % with no padding,
/// 10.5 / 9.5 / 10.2 % with 200 ms of padding at 1.5 × what is sent). Padding for a fixed
/// time bounds it: the probe's verdict is on what left within it.
pub const PADDING_TIME: Duration = Duration::from_millis(200);

/// How long a probe waits for its verdict at most.
pub const PROBE_TIME: Duration = Duration::from_millis(600);

/// Padding leaves in steps this far apart.
pub(super) const PROBE_STEP: Duration = Duration::from_millis(20);

/// After [`EARLY`], a probe whose path delivers less than this share of what leaves stops:
/// a narrow link queues the probe from its first packets, and every step more adds delay.
const PROBE_SHORT: f64 = 0.7;

/// From [`CARRIED_AFTER`] on (and at the end), what a probe needs to have delivered.
const PROBE_CARRIED: f64 = 0.85;

/// When a probe may first be judged [`PROBE_SHORT`].
const EARLY: Duration = Duration::from_millis(100);

/// When [`PROBE_CARRIED`] applies.
const CARRIED_AFTER: Duration = Duration::from_millis(300);

/// From [`CARRIED_AFTER`] on, a probe whose feedback covers [`SURE_SPAN`] of it and shows
/// this share delivered is over: carried.
const PROBE_SURE: f64 = 0.95;

/// See [`PROBE_SURE`]: most of what left within [`PADDING_TIME`].
const SURE_SPAN: Duration = Duration::from_millis(150);

/// Loss a probe may add to what the transport-wide feedback reported before it: more, and
/// it is over, unsure (a link that drops what it cannot carry without queuing first reads
/// so, and so does a burst of random loss in a probe's few packets: it is tried again soon,
/// and less often each time).
/// The loss of a probe's few hundred milliseconds is noisy: on a link with 8 % loss in
/// bursts of four, ~60 packets read 8 ± 5 %.
const PADDING_LOSS: f64 = 0.10;

/// The most padding packets one step sends.
const MAX_PER_STEP: usize = 32;

/// Recent packets of each slot padding is taken from.
const PADDING_DEPTH: u16 = 8;

/// How a padding probe ended.
#[derive(Clone, Copy, Debug)]
enum Verdict {
    /// The path delivered it: this many bits per second, everything sent included.
    Carried(f64),
    /// What arrived fell behind what left: a queue grew.
    Short,
    /// Too little came back to tell, or only loss spoke against it (see
    /// [`Allocator::probe_unsure`](crate::sfu::allocate::Allocator::probe_unsure)).
    Unsure,
}

/// A padding probe under way on a subscriber's downlink.
#[derive(Clone, Debug)]
pub(super) struct PaddingProbe {
    started: Instant,
    /// Padding to send, bits per second.
    padding_bps: f64,
    /// Padding sent so far, bytes.
    sent: usize,
    /// The loss the transport-wide feedback reported before the probe (a link with random
    /// loss has it whether or not there is a probe).
    loss_before: f64,
}

/// The newest sequence number a slot was forwarded with, if padding can be taken from it: a
/// video on screen and not paused, forwarded in a retransmission stream the subscriber
/// negotiated.
fn pads_from(slot: &SlotRtc) -> Option<u16> {
    (slot.rtx.is_some() && slot.video_flows())
        .then(|| slot.down.last_out_seq())
        .flatten()
}

/// Whether a slot the allocation paused can pad: it kept its last packets, and the
/// subscriber negotiated a retransmission stream for it. Without this a subscriber whose
/// every video is paused had nothing to probe with, and the resume that stood in for a probe
/// was judged by the estimate, which on a lossy link falls whatever is sent: measured on 8 %
/// burst loss, the last participant to join kept all three videos paused for the rest of
/// the minute with its downlink estimate at ~300 kbit/s.
fn pads_kept(slot: &SlotRtc) -> bool {
    slot.rtx.is_some() && slot.paused_track.is_some() && !slot.kept.is_empty()
}

impl Engine {
    /// Whether padding can go to `id` now: one of its video slots is forwarded in a
    /// retransmission stream it negotiated, or kept its last packets when it was paused.
    pub(super) fn can_pad(&self, id: SessionId) -> bool {
        self.peers.get(&id).is_some_and(|peer| {
            peer.slots
                .iter()
                .any(|s| pads_from(s).is_some() || pads_kept(s))
        })
    }

    /// The last packets the slot at `index` of `id` forwarded, as they were sent (for a
    /// slot about to be paused: see [`pads_kept`]).
    pub(super) fn last_forwarded(&self, id: SessionId, index: usize) -> Vec<rtp::Packet> {
        self.peers
            .get(&id)
            .and_then(|peer| peer.slots.get(index))
            .and_then(|slot| slot.down.last_out_seq())
            .map_or_else(Vec::new, |last| self.sent_before(id, index, last))
    }

    /// The [`PADDING_DEPTH`] packets the slot at `index` of `id` sent up to sequence number
    /// `last`, as they were sent (those still in the cache).
    fn sent_before(&self, id: SessionId, index: usize, last: u16) -> Vec<rtp::Packet> {
        let seqs: Vec<u16> = (0..PADDING_DEPTH).map(|k| last.wrapping_sub(k)).collect();
        self.sent_again(id, index, &seqs).unwrap_or_default()
    }

    /// Starts a probe of `padding_bps` more on `id`'s downlink.
    pub(super) fn start_probe(&mut self, id: SessionId, padding_bps: u64, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(estimate) = peer.subscriber.as_ref().and_then(|pc| pc.estimate.as_ref()) else {
            peer.allocator.probe_done(now, None);
            return;
        };
        estimate.begin_probe(now, PADDING_TIME);
        peer.probe = Some(PaddingProbe {
            started: now,
            padding_bps: padding_bps as f64,
            sent: 0,
            loss_before: estimate.feedback_loss(),
        });
        self.stats.probes += 1;
        self.next_probe_step.get_or_insert(now);
        tracing::debug!("session {id}: probing {} kbit/s more", padding_bps / 1000);
    }

    /// Sends each probe's padding due by `now` and ends those judged.
    pub(super) fn step_probes(&mut self, now: Instant) {
        let ids: Vec<SessionId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.probe.is_some())
            .map(|(&id, _)| id)
            .collect();
        for &id in &ids {
            match self.probe_verdict(id, now) {
                Some(verdict) => self.end_probe(id, verdict, now),
                None => self.send_padding(id, now),
            }
        }
        self.next_probe_step = self
            .peers
            .values()
            .any(|p| p.probe.is_some())
            .then_some(now + PROBE_STEP);
    }

    /// `None` while `id`'s probe goes on; else its verdict.
    fn probe_verdict(&self, id: SessionId, now: Instant) -> Option<Verdict> {
        let peer = self.peers.get(&id)?;
        let probe = peer.probe.as_ref()?;
        let Some(estimate) = peer.subscriber.as_ref().and_then(|pc| pc.estimate.as_ref()) else {
            return Some(Verdict::Unsure);
        };
        let elapsed = now.saturating_duration_since(probe.started);
        let reading = estimate.probe_reading(ProbeWindow::MIN_PACKETS);
        let queued = reading.is_some_and(|r| {
            (elapsed >= EARLY && r.delivered < PROBE_SHORT)
                || (elapsed >= CARRIED_AFTER && r.delivered < PROBE_CARRIED)
        });
        if queued {
            return Some(Verdict::Short);
        }
        if !self.can_pad(id) {
            return Some(Verdict::Unsure);
        }
        // Loss is judged on all the feedback: a packet overtaken by one sent after it is
        // reported lost, and arrived in the next report (`DelayBased::on_late`).
        let lossy = |r: &ProbeReading| r.loss > probe.loss_before + PADDING_LOSS;
        let sure = reading.is_some_and(|r| {
            elapsed >= CARRIED_AFTER
                && r.span >= SURE_SPAN
                && r.delivered >= PROBE_SURE
                && !lossy(&r)
        });
        if elapsed < PROBE_TIME && !sure {
            return None;
        }
        // At the end, fewer packets do: a probe on top of one video at a low frame rate
        // sends few (see `ProbeWindow::FINAL_PACKETS`).
        Some(
            match reading.or_else(|| estimate.probe_reading(ProbeWindow::FINAL_PACKETS)) {
                Some(r) if r.delivered < PROBE_CARRIED => Verdict::Short,
                Some(r) if !lossy(&r) => Verdict::Carried(r.carried_bps()),
                _ => Verdict::Unsure,
            },
        )
    }

    fn end_probe(&mut self, id: SessionId, verdict: Verdict, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.probe = None;
        if let Some(estimate) = peer.subscriber.as_ref().and_then(|pc| pc.estimate.as_ref()) {
            estimate.end_probe();
            if let Verdict::Carried(bps) = verdict {
                estimate.raise_to(bps);
            }
        }
        match verdict {
            Verdict::Carried(bps) => {
                peer.allocator.probe_done(now, Some(bps));
                self.stats.probes_carried += 1;
            }
            Verdict::Short => peer.allocator.probe_done(now, None),
            Verdict::Unsure => peer.allocator.probe_unsure(now),
        }
        tracing::debug!("session {id}: probe {verdict:?}");
    }

    /// Sends the padding due on `id`'s probe: its slots' newest packets again, in their
    /// retransmission streams.
    fn send_padding(&mut self, id: SessionId, now: Instant) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let Some(probe) = peer.probe.as_ref() else {
            return;
        };
        let elapsed = now
            .saturating_duration_since(probe.started)
            .min(PADDING_TIME)
            .as_secs_f64();
        let mut due = (probe.padding_bps * elapsed / 8.0) as usize;
        due = due.saturating_sub(probe.sent);
        if due == 0 {
            return;
        }
        let mut packets = Vec::new();
        for (index, slot) in peer.slots.iter().enumerate() {
            if pads_kept(slot) {
                packets.extend(slot.kept.iter().map(|p| (index, p.clone())));
                continue;
            }
            if let Some(last) = pads_from(slot) {
                let sent = self.sent_before(id, index, last);
                packets.extend(sent.into_iter().map(|p| (index, p)));
            }
        }
        if packets.is_empty() {
            return;
        }
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(pc) = peer.subscriber.as_mut() else {
            return;
        };
        let mut sent = 0;
        for (index, packet) in packets.iter().cycle().take(MAX_PER_STEP) {
            if sent >= due {
                break;
            }
            let Some(rtx) = peer.slots[*index].rtx.as_mut() else {
                continue;
            };
            if super::media::write_rtx(pc, rtx, packet, now).is_ok() {
                sent += packet.payload.len() + super::downlink::RTP_OVERHEAD;
                self.stats.padding_packets += 1;
            }
        }
        if let Some(probe) = peer.probe.as_mut() {
            probe.sent += sent;
        }
        self.dirty.insert((id, PeerRole::Subscriber));
    }
}
