//! Each subscriber's downlink: the server's send-side estimate of it (TWCC feedback and
//! receiver reports on the subscribing connection), and the allocation that pauses videos
//! the estimate cannot carry (see [`crate::sfu::allocate`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::published::Layer;
use super::{Engine, Published, SessionId, SlotRtc};
use crate::grid::layout::{Layout, Person};
use crate::grid::plan::plan;
use crate::sfu::allocate::{Change, Video};
use crate::signal::{ServerMessage, Speaker, TrackKind, TrackSource};
use crate::transport::cc::EstimateDetail;
use crate::transport::fraction_lost_for;

/// How often each subscriber's allocation is decided.
pub(super) const ALLOCATE_EVERY: Duration = Duration::from_millis(500);

/// RTP header and header extensions, bytes, added to a payload for its rate.
pub(super) const RTP_OVERHEAD: usize = 20;

/// One subscriber's downlink as the server sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Downlink {
    /// The subscriber.
    pub identity: String,
    /// The send-side estimate and its halves.
    pub estimate: EstimateDetail,
    /// Videos it is subscribed to.
    pub videos: usize,
    /// Of those, paused because the downlink cannot carry them.
    pub paused: usize,
    /// Of those forwarded, at a smaller simulcast layer than the one its tile needs (the
    /// largest flowing, before the client sent a layout).
    pub lowered: usize,
    /// Of those, not forwarded because the client's layout has no tile for them.
    pub off_screen: usize,
}

/// Priority of a video (lower goes first): screen shares, then the loudest speakers in
/// order, then the others in slot order.
fn priority(source: TrackSource, speaker_rank: Option<usize>, slot: usize) -> u32 {
    match (source, speaker_rank) {
        (TrackSource::Screen, _) => 0,
        (_, Some(rank)) => 1 + rank as u32,
        _ => 1_000 + slot as u32,
    }
}

/// The highest of a video's `available` layers (smallest first) worth forwarding to a
/// client whose last layout is `layout`: the one [`grid::plan`](crate::grid::plan) picks
/// for its tile, the largest without a layout; `None` when the layout has no tile for it.
fn tile_cap(layout: Option<&Layout>, track: &str, available: &[&Layer]) -> Option<usize> {
    let top = available.len().saturating_sub(1);
    let Some(layout) = layout else {
        return Some(top);
    };
    let sizes: Vec<(u32, u32)> = available.iter().filter_map(|l| l.size).collect();
    let want = plan(layout, &[Person::new(track)], &sizes).pop()?;
    want.tile?;
    Some(
        want.layer
            .and_then(|size| sizes.iter().position(|&s| s == size))
            .map_or(top, |i| i.min(top)),
    )
}

impl Engine {
    /// The state of every joined subscriber's downlink, in session order.
    pub fn downlinks(&self) -> Vec<Downlink> {
        self.peers
            .iter()
            .filter_map(|(&id, peer)| {
                let (room, identity) = self.rooms.member(id)?;
                let estimate = peer.subscriber.as_ref()?.estimate.as_ref()?;
                let videos = (0..peer.slots.len())
                    .filter(|&i| {
                        peer.slots[i].kind == TrackKind::Video
                            && self.rooms.slot_track(id, i).is_some()
                    })
                    .count();
                let paused = peer
                    .slots
                    .iter()
                    .filter(|s| s.paused_track.is_some())
                    .count();
                let layout = self.rooms.layout(id);
                let lowered = (0..peer.slots.len())
                    .filter(|&i| {
                        let slot = &peer.slots[i];
                        let Some(track) = self.rooms.slot_track(id, i) else {
                            return false;
                        };
                        let Some(available) = self
                            .published(room, track)
                            .filter(|p| p.simulcast)
                            .map(|p| p.available(self.now))
                        else {
                            return false;
                        };
                        let needed = tile_cap(layout, track, &available);
                        let at = available
                            .iter()
                            .position(|l| Some(l.ssrc) == slot.down.wanted_layer());
                        slot.paused_track.is_none()
                            && !slot.off_screen
                            && at.zip(needed).is_some_and(|(at, needed)| at < needed)
                    })
                    .count();
                let off_screen = peer.slots.iter().filter(|s| s.off_screen).count();
                Some(Downlink {
                    identity: identity.to_owned(),
                    estimate: estimate.detail(),
                    videos,
                    paused,
                    lowered,
                    off_screen,
                })
            })
            .collect()
    }

    /// Takes in a subscriber's receiver reports (the loss-based half of its estimate): the
    /// loss of its videos, as the publisher's uplink takes it — what is left after repairs.
    /// Audio is not repaired; counted in, the 8 % burst loss of a link with no rate cap
    /// (`loss=8%,burst=4`) brought the estimate from 5 Mbit/s to 0.2–1.7 Mbit/s in 30 s and
    /// paused two or three of three videos for every subscriber.
    pub(super) fn on_subscriber_reports(
        &mut self,
        id: SessionId,
        packets: &[Box<dyn rtc::rtcp::Packet>],
        now: Instant,
    ) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        for slot in &mut peer.slots {
            if let Some(red) = slot.red.as_mut()
                && let Some(lost) = fraction_lost_for(packets, slot.down.out_ssrc())
            {
                red.on_report(lost);
            }
        }
        let videos: Vec<u32> = peer
            .slots
            .iter()
            .filter(|s| s.kind == TrackKind::Video)
            .map(|s| s.down.out_ssrc())
            .collect();
        if let Some(loss) = peer.losses.add(now, packets, |ssrc| videos.contains(&ssrc))
            && let Some(estimate) = peer.subscriber.as_ref().and_then(|pc| pc.estimate.as_ref())
        {
            estimate.on_receiver_report(loss);
        }
    }

    /// Decides every subscriber's allocation and carries out what changes.
    pub(super) fn allocate_downlinks(&mut self, now: Instant) {
        // Simulcast layers that flow but whose size no keyframe told yet (their first one was
        // lost on the way up) are asked for one: a layer is offered to no one until its size
        // is known, and no one would ask. Measured on simulated `rural`: a publisher's small
        // layer never known, its full size paused by its own uplink, and its video reached
        // no one for 60 s.
        let mut no_size = Vec::new();
        for (&id, peer) in self.peers.iter_mut() {
            for (track_id, published) in peer.published.iter_mut() {
                published.update_meters(now);
                if published.simulcast {
                    no_size.extend(
                        published
                            .unsized_layers(now)
                            .map(|ssrc| (id, track_id.clone(), ssrc)),
                    );
                }
            }
        }
        for (id, track_id, ssrc) in no_size {
            self.request_keyframe(id, &track_id, Some(ssrc), now);
        }
        // Each room's speaker ranking, once for all its subscribers.
        let mut speakers: HashMap<String, Vec<Speaker>> = HashMap::new();
        let ids: Vec<SessionId> = self.peers.keys().copied().collect();
        for id in ids {
            let Some((room, _)) = self.rooms.member(id) else {
                continue;
            };
            let room = room.to_owned();
            if !speakers.contains_key(&room) {
                speakers.insert(room.clone(), self.rooms.speakers(&room, now));
            }
            self.allocate(id, &room, &speakers[&room], now);
        }
    }

    /// The published track behind a room track.
    fn published(&self, room: &str, track: &str) -> Option<&Published> {
        self.rooms
            .publisher_of(room, track)
            .and_then(|p| self.peers.get(&p))
            .and_then(|p| p.published.values().find(|t| *t.room_track == *track))
    }

    fn allocate(&mut self, id: SessionId, room: &str, speakers: &[Speaker], now: Instant) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let Some(detail) = peer
            .subscriber
            .as_ref()
            .filter(|pc| pc.connected)
            .and_then(|pc| pc.estimate.as_ref())
            .map(|e| e.detail())
        else {
            return;
        };
        let Some(estimate) = detail.bps() else {
            return;
        };
        let mut audio_bps = 0.0;
        // What the audio would take with copies on every slot that negotiated them.
        let mut audio_with_copies = 0.0;
        let mut videos = Vec::new();
        // The SSRCs of each video's layers, as `videos[i].layers` lists them.
        let mut layer_ssrcs: Vec<Vec<u32>> = Vec::new();
        let mut stale = Vec::new();
        // Slots whose layer stopped (its publisher paused it), or above what its tile needs:
        // moved to the best left, or down to what the tile needs.
        let mut moves = Vec::new();
        // Slots the layout took off screen, and those it put back (at their smallest layer).
        let mut hide = Vec::new();
        let mut show = Vec::new();
        let layout = self.rooms.layout(id);
        for (slot, rtc) in peer.slots.iter().enumerate() {
            let track = self.rooms.slot_track(id, slot);
            if rtc.paused_track.is_some() && rtc.paused_track.as_deref() != track {
                // Paused with a track it no longer carries.
                stale.push(slot);
            }
            let Some(track) = track else { continue };
            let Some(published) = self.published(room, track) else {
                continue;
            };
            if rtc.kind == TrackKind::Audio {
                // With copies (redundant audio) each packet carries two frames: the audio
                // takes its rate again less the packets' headers (one per 20 ms).
                let bps = published.bps();
                let copy_bps = (bps - 50.0 * 8.0 * RTP_OVERHEAD as f64).max(0.0);
                audio_bps += bps;
                if rtc.red.as_ref().is_some_and(|r| r.sending()) {
                    audio_bps += copy_bps;
                }
                audio_with_copies += bps + copy_bps;
                continue;
            }
            let Some(info) = self.rooms.track(room, track) else {
                continue;
            };
            let available = published.available(now);
            let Some(best) = available.last() else {
                continue;
            };
            let ssrcs: Vec<u32> = available.iter().map(|l| l.ssrc).collect();
            let Some(max_layer) = tile_cap(layout, track, &available) else {
                if !rtc.off_screen {
                    hide.push(slot);
                }
                continue;
            };
            let simulcast = published.simulcast && rtc.down.layered();
            let mut layer = if rtc.paused_track.as_deref() == Some(track) {
                None
            } else if rtc.off_screen {
                show.push((slot, simulcast.then_some(ssrcs[0])));
                Some(0)
            } else if simulcast {
                let at = rtc.down.wanted_layer();
                let i = at.and_then(|at| ssrcs.iter().position(|&s| s == at));
                if i.is_none() {
                    moves.push((slot, best.ssrc));
                }
                Some(i.unwrap_or(ssrcs.len() - 1))
            } else {
                Some(0)
            };
            if simulcast && layer.is_some_and(|l| l > max_layer) {
                // The tile shrank (or the video just came): down to what it needs, at the
                // smaller layer's keyframe — not congestion, so no hurry.
                moves.retain(|&(s, _)| s != slot);
                moves.push((slot, ssrcs[max_layer]));
                layer = Some(max_layer);
            }
            let rank = speakers.iter().position(|s| s.identity == info.participant);
            videos.push(Video {
                slot,
                priority: priority(info.source, rank, slot),
                layers: available.iter().map(|l| l.meter.bps()).collect(),
                layer,
                max_layer,
            });
            layer_ssrcs.push(ssrcs);
        }
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        for slot in stale {
            let rtc = &mut peer.slots[slot];
            rtc.paused_track = None;
            rtc.kept.clear();
            rtc.down.set_paused(rtc.off_screen);
        }
        for &slot in &hide {
            let rtc = &mut peer.slots[slot];
            rtc.off_screen = true;
            rtc.down.set_paused(true);
        }
        for &(slot, smallest) in &show {
            let rtc = &mut peer.slots[slot];
            rtc.off_screen = false;
            rtc.down.set_paused(false);
            if let Some(ssrc) = smallest {
                moves.push((slot, ssrc));
            }
        }
        for &(slot, ssrc) in &moves {
            peer.slots[slot].down.switch_layer(ssrc);
        }
        let padding = self.can_pad(id);
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.allocator.set_padding_probes(padding);
        // Copies only where they take at most half of what the queues allow (the delay-based
        // half of the estimate): on a link that loses because it is full, more audio would
        // only lose more. Not the whole estimate: its loss-based half falls with random
        // loss, where copies help most (see `room_for_copies`).
        let room_for_copies = crate::codec::red::room_for_copies(&detail, audio_with_copies);
        for slot in &mut peer.slots {
            if let Some(red) = slot.red.as_mut() {
                red.room = room_for_copies;
            }
        }
        let changes = peer
            .allocator
            .decide(now, estimate as f64, detail.loss, audio_bps, &videos);
        if let Some(before) = peer.allocator.take_restore()
            && let Some(estimate) = peer.subscriber.as_ref().and_then(|pc| pc.estimate.as_ref())
        {
            // The probe that hurt is undone: its loss is not the link's.
            estimate.restore_loss_based(before);
            peer.losses.forget();
        }
        let moved: Vec<u32> = moves
            .iter()
            .map(|&(slot, _)| slot)
            .chain(show.iter().map(|&(slot, _)| slot))
            .map(|slot| peer.slots[slot].down.out_ssrc())
            .collect::<std::collections::BTreeSet<u32>>()
            .into_iter()
            .collect();
        for out_ssrc in moved {
            self.on_subscriber_keyframe_request(id, out_ssrc, now);
        }
        let none_flowing = !self.video_flows(id);
        for change in changes {
            let (slot, layer) = match change {
                Change::Pause(slot) => (slot, None),
                Change::Forward(slot, layer) => (slot, Some(layer)),
                Change::Probe(bps) => {
                    self.start_probe(id, bps, now);
                    continue;
                }
            };
            let Some(track) = self.rooms.slot_track(id, slot).map(str::to_owned) else {
                continue;
            };
            let kept = if layer.is_none() {
                self.last_forwarded(id, slot)
            } else {
                Vec::new()
            };
            let Some(rtc) = self.peers.get_mut(&id).and_then(|p| p.slots.get_mut(slot)) else {
                continue;
            };
            let was_paused = rtc.paused_track.is_some();
            let Some(v) = videos.iter().position(|v| v.slot == slot) else {
                continue;
            };
            let ssrc = layer.and_then(|l| layer_ssrcs[v].get(l).copied());
            // The allocation lowers only when the estimate fell: a layer down stops the one
            // above at once.
            let lower = layer < videos[v].layer;
            match ssrc {
                Some(ssrc) if rtc.down.layered() && lower => rtc.down.switch_layer_at_once(ssrc),
                Some(ssrc) if rtc.down.layered() => rtc.down.switch_layer(ssrc),
                _ => {}
            }
            let paused = layer.is_none();
            rtc.down.set_paused(paused);
            rtc.paused_track = paused.then(|| track.clone());
            if !paused || !was_paused {
                rtc.kept = kept;
            }
            let out_ssrc = rtc.down.out_ssrc();
            if was_paused && !paused {
                let next = rtc.down.last_out_seq().map_or(0, |s| s.wrapping_add(1));
                self.resuming(id, out_ssrc, next, none_flowing);
            }
            if !paused {
                self.on_subscriber_keyframe_request(id, out_ssrc, now);
            }
            if paused == was_paused {
                self.stats.layer_switches += 1;
                tracing::debug!(
                    "session {id}: video {track} to layer {layer:?} (downlink estimate {} kbit/s)",
                    estimate / 1000
                );
                continue;
            }
            if paused {
                self.stats.videos_paused += 1;
            } else {
                self.stats.videos_resumed += 1;
            }
            tracing::info!(
                "session {id}: video {track} {} (downlink estimate {} kbit/s)",
                if paused { "paused" } else { "resumed" },
                estimate / 1000
            );
            self.send(id, ServerMessage::VideoPaused { track, paused });
        }
    }

    /// Whether a video of `id` flows (neither paused nor off screen).
    fn video_flows(&self, id: SessionId) -> bool {
        self.peers
            .get(&id)
            .is_some_and(|peer| peer.slots.iter().any(SlotRtc::video_flows))
    }

    /// `id`'s video forwarded as `ssrc` resumes at sequence number `seq`: its loss before the
    /// pause is not counted (see [`LossWindow::rebase`](crate::transport::cc::LossWindow::rebase)),
    /// and when no other video flowed, no loss the receiver reported before is either: its
    /// reports had nothing new to say while every video was paused, and what they said last (a
    /// link overfilled before the pause) would greet the video resumed. Measured on a 64
    /// kbit/s downlink widened to no cap with 8 % burst loss: the loss read while the video
    /// overfilled it (90 %), smoothed, paused the video again a second after a probe proved
    /// room for it.
    fn resuming(&mut self, id: SessionId, ssrc: u32, seq: u16, none_flowing: bool) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if none_flowing {
            peer.losses.forget();
            if let Some(estimate) = peer.subscriber.as_ref().and_then(|pc| pc.estimate.as_ref()) {
                estimate.forget_loss();
            }
        }
        peer.losses.rebase(ssrc, seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screens_then_speakers_then_the_rest() {
        let screen = priority(TrackSource::Screen, None, 7);
        let loudest = priority(TrackSource::Camera, Some(0), 5);
        let second = priority(TrackSource::Camera, Some(1), 0);
        let quiet = priority(TrackSource::Camera, None, 0);
        let quieter = priority(TrackSource::Camera, None, 1);
        assert!(screen < loudest && loudest < second && second < quiet && quiet < quieter);
    }
}
