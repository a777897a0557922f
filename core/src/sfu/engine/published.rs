//! A published track as the server holds it: one stream, or one per simulcast layer, each
//! with its retransmission cache, upstream repair, keyframe limiter and rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::rtp_transceiver::RTCRtpReceiverId;

use crate::sfu::allocate::Meter;
use crate::sfu::forward::{KeyframeLimiter, RetransmitCache};
use crate::signal::TrackKind;
use crate::transport::clock::SeqExtender;
use crate::transport::nack::NackList;

/// A layer that sent nothing for this long is not offered to subscribers: its publisher
/// paused it (its uplink cannot carry it) or stopped. A 15 fps layer sends a picture every
/// 67 ms; a second is many pictures missed, never one late picture.
pub(super) const LAYER_TIMEOUT: Duration = Duration::from_secs(1);

/// A simulcast layer that sent nothing for this long while another layer of its track sent
/// a new packet is paused by its publisher: the layers of one camera carry the same
/// pictures, so a gap in one alone is no network's doing. Seen sooner than
/// [`LAYER_TIMEOUT`] and acted on at once (not at the next allocation), a subscriber
/// forwarded it moves to a layer still flowing sooner: measured on simulated time
/// (`tests/simulcast.rs`, 15 fps, 40 ms each way), the subscriber's picture held still
/// 1,133 ms → 400 ms. Chromium pauses its large layer whenever its own estimate falls, and
/// each pause froze madang's view of it (CI runs of the lte simulcast interop test: 1.7 s
/// and 3.7 s in 18 s). Several pictures long at 15–30 fps, so a picture late by the link's
/// jitter or a keyframe's pacing is not taken for a pause.
pub(super) const LAYER_STALL: Duration = Duration::from_millis(250);

pub(super) struct Published {
    /// Shared, so forwarding holds it per packet without allocating.
    pub room_track: Arc<str>,
    pub kind: TrackKind,
    pub receiver: RTCRtpReceiverId,
    pub audio_level_id: Option<u8>,
    /// The payload type of redundant audio (RFC 2198) on the publishing connection, where
    /// it was negotiated: such packets are taken apart on arrival.
    pub red_payload_type: Option<u8>,
    /// Sent as simulcast: its streams came with RTP stream ids, each one a layer.
    pub simulcast: bool,
    /// Its streams, in the order they first arrived.
    pub layers: Vec<Layer>,
    /// SSRCs of the layers whose picture size is known, smallest picture first.
    order: Vec<u32>,
}

/// One stream of a published track (the only one, or a simulcast layer).
pub(super) struct Layer {
    pub ssrc: u32,
    /// Its RTP stream id (simulcast).
    pub rid: Option<String>,
    /// Picture size in its last sequence parameter set (simulcast video).
    pub size: Option<(u32, u32)>,
    pub cache: RetransmitCache,
    pub limiter: KeyframeLimiter,
    /// Losses on the way up from the publisher, NACKed to it (video only).
    pub upstream: Option<Upstream>,
    /// Its rate as it arrives (read at each allocation).
    pub meter: Meter,
    /// When its last new packet came (retransmissions do not count).
    pub last_packet: Option<Instant>,
    /// Paused by its publisher: another layer sent [`stall_after`](Self::stall_after)
    /// after its last packet.
    stalled: bool,
    /// How long a silence while another layer sends means a pause: [`LAYER_STALL`], twice
    /// as long after each silence it ended with no keyframe, up to [`LAYER_TIMEOUT`].
    stall_after: Duration,
}

/// The gaps in a published video stream as it reaches the server, and their NACK schedule:
/// a lossy uplink is repaired once here instead of every subscriber missing the packet.
pub(super) struct Upstream {
    pub seqs: SeqExtender,
    pub nacks: NackList,
}

impl Published {
    /// A track whose first stream arrived with `ssrc` (and `rid` for simulcast).
    pub fn new(
        room_track: Arc<str>,
        kind: TrackKind,
        receiver: RTCRtpReceiverId,
        audio_level_id: Option<u8>,
        ssrc: u32,
        rid: Option<String>,
    ) -> Self {
        let mut track = Self {
            room_track,
            kind,
            receiver,
            audio_level_id,
            red_payload_type: None,
            simulcast: rid.is_some(),
            layers: Vec::new(),
            order: Vec::new(),
        };
        track.add_layer(ssrc, rid);
        track
    }

    /// Another stream of the track: a simulcast layer.
    pub fn add_layer(&mut self, ssrc: u32, rid: Option<String>) {
        if self.layers.iter().any(|l| l.ssrc == ssrc) {
            return;
        }
        let video = self.kind == TrackKind::Video;
        self.layers.push(Layer {
            ssrc,
            rid,
            size: None,
            cache: RetransmitCache::new(if video { 1024 } else { 64 }),
            limiter: KeyframeLimiter::new(Duration::from_millis(300)),
            upstream: video.then(|| Upstream {
                seqs: SeqExtender::default(),
                nacks: NackList::new(),
            }),
            meter: Meter::default(),
            last_packet: None,
            stalled: false,
            stall_after: LAYER_STALL,
        });
    }

    /// The stream a packet with `ssrc` belongs to. A track sent without simulcast that
    /// changes SSRC restarted its stream: its one layer takes the new SSRC. A simulcast
    /// SSRC not seen before becomes a layer of its own.
    pub fn layer_for(&mut self, ssrc: u32) -> &mut Layer {
        if let Some(i) = self.layers.iter().position(|l| l.ssrc == ssrc) {
            return &mut self.layers[i];
        }
        if !self.simulcast && !self.layers.is_empty() {
            self.layers.truncate(1);
            self.layers[0].ssrc = ssrc;
            return &mut self.layers[0];
        }
        self.add_layer(ssrc, None);
        let last = self.layers.len() - 1;
        &mut self.layers[last]
    }

    /// The stream sent with `ssrc`.
    pub fn layer(&self, ssrc: u32) -> Option<&Layer> {
        self.layers.iter().find(|l| l.ssrc == ssrc)
    }

    /// The stream sent with `ssrc`, to change.
    pub fn layer_mut(&mut self, ssrc: u32) -> Option<&mut Layer> {
        self.layers.iter_mut().find(|l| l.ssrc == ssrc)
    }

    /// A new packet of the stream `ssrc` came at `now` (not a retransmission; `keyframe`:
    /// a packet of a keyframe). Returns whether that shows another layer of a simulcast
    /// track paused by its publisher ([`LAYER_STALL`]) that was flowing until now:
    /// subscribers forwarded it are to move.
    ///
    /// A paused layer comes back with a keyframe. One that comes back without was only
    /// short of pictures (its encoder skipped some to keep its rate: madang's publishers
    /// on a narrow uplink), and waits twice as long before it counts as paused again:
    /// taken for pauses, such gaps cost simulated `rural --simulcast` keyframe requests
    /// (moves down and back up) and pictures.
    pub fn on_fresh_packet(&mut self, ssrc: u32, keyframe: bool, now: Instant) -> bool {
        let simulcast = self.simulcast;
        let mut stopped = false;
        for layer in &mut self.layers {
            if layer.ssrc == ssrc {
                if layer.stalled && !keyframe {
                    layer.stall_after = (layer.stall_after * 2).min(LAYER_TIMEOUT);
                }
                layer.last_packet = Some(now);
                layer.stalled = false;
            } else if simulcast
                && !layer.stalled
                && let Some(t) = layer.last_packet
            {
                let silent = now.saturating_duration_since(t);
                if silent >= layer.stall_after {
                    layer.stalled = true;
                    stopped |= silent < LAYER_TIMEOUT;
                }
            }
        }
        stopped
    }

    /// The picture size a keyframe of the layer `ssrc` announced: the layers' order follows.
    /// Returns the layer's rid when the size is new.
    pub fn set_size(&mut self, ssrc: u32, size: (u32, u32)) -> Option<String> {
        let layer = self.layer_mut(ssrc)?;
        if layer.size == Some(size) {
            return None;
        }
        layer.size = Some(size);
        let rid = layer.rid.clone().unwrap_or_default();
        let mut sized: Vec<(u64, usize, u32)> = self
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.size.map(|(w, h)| (w as u64 * h as u64, i, l.ssrc)))
            .collect();
        sized.sort_unstable();
        self.order = sized.into_iter().map(|(_, _, ssrc)| ssrc).collect();
        Some(rid)
    }

    /// The SSRC keyframe requests and the grid use when no subscriber named a layer: the
    /// smallest layer of a simulcast track (once its size is known), the one stream of
    /// another.
    pub fn default_ssrc(&self) -> Option<u32> {
        if self.simulcast {
            self.order.first().copied()
        } else {
            self.layers.first().map(|l| l.ssrc)
        }
    }

    /// The layers a subscriber can be forwarded now, smallest first: those whose size is
    /// known that sent within [`LAYER_TIMEOUT`] and did not stall while another layer sent
    /// ([`LAYER_STALL`]); every stream of a track without simulcast.
    pub fn available(&self, now: Instant) -> Vec<&Layer> {
        if !self.simulcast {
            return self.layers.iter().take(1).collect();
        }
        self.order
            .iter()
            .filter_map(|&ssrc| self.layer(ssrc))
            .filter(|l| flowing(l, now))
            .collect()
    }

    /// SSRCs of the layers that sent within [`LAYER_TIMEOUT`] but whose picture size is not
    /// known yet.
    pub fn unsized_layers(&self, now: Instant) -> impl Iterator<Item = u32> + '_ {
        self.layers
            .iter()
            .filter(move |l| l.size.is_none() && flowing(l, now))
            .map(|l| l.ssrc)
    }

    /// Its rate as it arrives, all layers together, bits per second.
    pub fn bps(&self) -> f64 {
        self.layers.iter().map(|l| l.meter.bps()).sum()
    }

    /// Reads every layer's meter.
    pub fn update_meters(&mut self, now: Instant) {
        for l in &mut self.layers {
            l.meter.update(now);
        }
    }
}

/// Whether `layer` sent within [`LAYER_TIMEOUT`] of `now` and is not seen paused.
fn flowing(layer: &Layer, now: Instant) -> bool {
    !layer.stalled
        && layer
            .last_packet
            .is_some_and(|t| now.saturating_duration_since(t) < LAYER_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(rid: Option<&str>) -> Published {
        Published::new(
            "a/camera".into(),
            TrackKind::Video,
            RTCRtpReceiverId::from(0),
            None,
            10,
            rid.map(str::to_owned),
        )
    }

    #[test]
    fn simulcast_layers_are_ordered_by_picture_size_and_offered_while_they_flow() {
        let t0 = Instant::now();
        let mut t = track(Some("f"));
        t.add_layer(20, Some("q".into()));
        t.add_layer(30, Some("h".into()));
        // Sizes not known yet: nothing to offer, no default; those flowing are to be asked
        // for a keyframe.
        assert_eq!(t.default_ssrc(), None);
        t.layer_for(20).last_packet = Some(t0);
        assert_eq!(t.unsized_layers(t0).collect::<Vec<_>>(), [20]);
        for (ssrc, size) in [(10, (1280, 720)), (20, (320, 180)), (30, (640, 360))] {
            t.layer_for(ssrc).last_packet = Some(t0);
            t.set_size(ssrc, size);
        }
        let ssrcs = |t: &Published, at| t.available(at).iter().map(|l| l.ssrc).collect::<Vec<_>>();
        assert_eq!(ssrcs(&t, t0), [20, 30, 10]);
        assert_eq!(t.unsized_layers(t0).count(), 0);
        assert_eq!(t.default_ssrc(), Some(20));
        // The top layer stops (its publisher paused it): no longer offered.
        let later = t0 + LAYER_TIMEOUT;
        t.layer_for(20).last_packet = Some(later);
        t.layer_for(30).last_packet = Some(later);
        assert_eq!(ssrcs(&t, later), [20, 30]);
        // An SSRC not seen before is another layer, not a restart.
        t.layer_for(40);
        assert_eq!(t.layers.len(), 4);
    }

    #[test]
    fn a_layer_silent_while_another_sends_is_seen_paused_at_once() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = track(Some("q"));
        t.add_layer(20, Some("h".into()));
        t.set_size(10, (320, 180));
        t.set_size(20, (640, 360));
        let ssrcs =
            |t: &Published, now| t.available(now).iter().map(|l| l.ssrc).collect::<Vec<_>>();
        // Both layers carry every picture (15 fps), the large one's packets a little late.
        for ms in (0..=200).step_by(67) {
            assert!(!t.on_fresh_packet(10, false, at(ms)));
            assert!(!t.on_fresh_packet(20, false, at(ms + 40)));
        }
        assert_eq!(ssrcs(&t, at(241)), [10, 20]);
        // The large layer stops after its packet at 241 ms; the small one goes on. A
        // picture later it still counts as flowing, not at 241 + LAYER_STALL: told once.
        assert!(!t.on_fresh_packet(10, false, at(268)));
        assert!(!t.on_fresh_packet(10, false, at(335)));
        assert_eq!(ssrcs(&t, at(335)), [10, 20]);
        assert!(t.on_fresh_packet(10, false, at(491)));
        assert_eq!(ssrcs(&t, at(491)), [10]);
        assert!(!t.on_fresh_packet(10, false, at(558)));
        // Its publisher resumes it (with a keyframe): offered again at its first new
        // packet.
        assert!(!t.on_fresh_packet(10, false, at(2000)));
        assert!(!t.on_fresh_packet(20, true, at(2040)));
        assert_eq!(ssrcs(&t, at(2040)), [10, 20]);
        // Silent again, and back without a keyframe: its encoder skipped pictures, it
        // was not paused. The next silence counts as a pause only after twice as long.
        assert!(t.on_fresh_packet(10, false, at(2300)));
        assert!(!t.on_fresh_packet(20, false, at(2340)));
        assert!(!t.on_fresh_packet(10, false, at(2700)));
        assert_eq!(ssrcs(&t, at(2700)), [10, 20]);
        assert!(t.on_fresh_packet(10, false, at(2850)));
        assert_eq!(ssrcs(&t, at(2850)), [10]);
        // A layer already past LAYER_TIMEOUT is not news.
        assert!(!t.on_fresh_packet(20, true, at(4000)));
        assert_eq!(ssrcs(&t, at(4000)), [20]);
    }

    #[test]
    fn a_single_stream_that_changes_ssrc_restarted() {
        let mut t = track(None);
        t.layer_for(11).meter.add(100);
        assert_eq!(t.layers.len(), 1);
        assert_eq!(t.default_ssrc(), Some(11));
        assert_eq!(t.available(Instant::now()).len(), 1);
    }
}
