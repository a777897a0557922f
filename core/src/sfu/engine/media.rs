//! The media plane of the server core: forwarding each publisher packet to the subscriber
//! slots that carry its track, answering NACKs from the retransmission caches, relaying
//! keyframe requests, and the composited grid of MCU rooms.

use std::time::{Duration, Instant};

use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::sansio::Protocol;

use super::{Engine, SessionId};
use crate::codec::nal::{
    rtp_payload_carries_sps, rtp_payload_in_keyframe, rtp_payload_sps, rtp_payload_starts_keyframe,
};
use crate::codec::red::Red;
use crate::codec::rtp::audio_level_dbov;
use crate::sfu::forward::{Forwarding, InHeader, OutHeader, RetransmitCache};
use crate::sfu::mixer::{GridRunner, MixerOutput};
use crate::sfu::rooms::{GRID_SESSION, GRID_TRACK};
use crate::signal::{PeerRole, TrackKind};
use crate::transport::rtx;

impl Engine {
    /// A packet from a publisher's track: cached, recorded, mixed and sent on to the
    /// subscribers.
    pub(super) fn forward(
        &mut self,
        publisher: SessionId,
        track_id: &str,
        packet: rtp::Packet,
        now: Instant,
    ) {
        self.stats.packets_in += 1;
        self.forward_packet(publisher, track_id, packet, now);
    }

    /// [`forward`](Self::forward) without the count; whether the packet was new (audio that
    /// already came, first as a copy or twice, is dropped).
    fn forward_packet(
        &mut self,
        publisher: SessionId,
        track_id: &str,
        packet: rtp::Packet,
        now: Instant,
    ) -> bool {
        // Room and track ids are shared (`Arc<str>`): no allocation per packet.
        let Some(room) = self.rooms.member_room(publisher) else {
            return false;
        };
        let Some(published) = self
            .peers
            .get_mut(&publisher)
            .and_then(|p| p.published.get_mut(track_id))
        else {
            return false;
        };
        let video = published.kind == TrackKind::Video;
        if !video && published.red_payload_type == Some(packet.header.payload_type) {
            self.forward_red(publisher, track_id, packet, now);
            return true;
        }
        let ssrc = packet.header.ssrc;
        let keyframe_start = !video || rtp_payload_starts_keyframe(&packet.payload);
        let layer = published.layer_for(ssrc);
        if !video
            && layer
                .cache
                .get(ssrc, packet.header.sequence_number)
                .is_some()
        {
            // Audio already forwarded: its copy came first (redundant audio) or it came twice.
            return false;
        }
        layer
            .meter
            .add(packet.payload.len() + super::downlink::RTP_OVERHEAD);
        // A layer flows while new packets come: a retransmission of a layer its publisher
        // paused is not it coming back. Counted as flowing, the paused full size of a
        // recorded simulcast camera looked back when repairs of it came after the pause, the
        // recording switched to it at a repaired keyframe, and had nothing for 5 s, until the
        // publisher resumed it.
        let mut fresh = true;
        if let Some(up) = layer.upstream.as_mut() {
            let highest = up.seqs.highest();
            let ext = up.seqs.extend(packet.header.sequence_number);
            fresh = highest.is_none_or(|h| ext > h);
            up.nacks.on_packet(now, ext, highest);
            // Packets more than a second old are no use to anyone.
            up.nacks.forget_before(ext.saturating_sub(100));
            if let Some(t) = up.nacks.next_due() {
                self.next_nack = Some(self.next_nack.map_or(t, |n| n.min(t)));
            }
        }
        let header = InHeader {
            ssrc,
            seq: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            keyframe_start,
            parameter_sets: keyframe_start && video && rtp_payload_carries_sps(&packet.payload),
        };
        layer.cache.insert(now, header, packet.payload.clone());
        // Only a simulcast layer's pauses look at it (see `Published::on_fresh_packet`).
        let keyframe = keyframe_start
            || (video && published.simulcast && rtp_payload_in_keyframe(&packet.payload));
        if fresh && published.on_fresh_packet(ssrc, keyframe, now) {
            // Another layer stopped: its subscribers move now, not at the next allocation.
            self.next_allocation = self.next_allocation.min(now);
        }
        if video
            && keyframe_start
            && published.simulcast
            && let Some(sps) = rtp_payload_sps(&packet.payload)
            && let Some(rid) = published.set_size(ssrc, (sps.width, sps.height))
        {
            tracing::debug!(
                "session {publisher}: {} layer {rid:?} is {}x{}",
                published.room_track,
                sps.width,
                sps.height
            );
        }
        let level = published
            .audio_level_id
            .and_then(|id| packet.header.get_extension(id))
            .and_then(|ext| audio_level_dbov(&ext));
        let room_track = published.room_track.clone();
        let default_ssrc = published.default_ssrc();
        let layering = match (video, published.simulcast) {
            (false, _) => Layering::Audio,
            (true, false) => Layering::Single,
            (true, true) => Layering::Simulcast {
                start: default_ssrc,
            },
        };
        // The grid decodes one layer of each track: the smallest (a tile of a grid).
        let to_grid = video && default_ssrc == Some(ssrc);
        // A recording takes the largest layer flowing (looked up only then: it allocates).
        let recording = self
            .recorder
            .as_ref()
            .is_some_and(|r| r.is_recording(&room));
        let largest = match layering {
            Layering::Simulcast { .. } if recording => {
                published.available(now).last().map(|l| l.ssrc)
            }
            _ => None,
        };
        if let Some(level) = level {
            self.rooms.audio_level(publisher, level, now);
        }
        // Recorded as received: audio, the one stream of a video, a simulcast video's
        // largest layer.
        if recording {
            match layering {
                Layering::Audio | Layering::Single => {
                    let kind = if video {
                        TrackKind::Video
                    } else {
                        TrackKind::Audio
                    };
                    self.record(&room, &room_track, kind, &header, &packet.payload, now)
                }
                Layering::Simulcast { .. } => {
                    let layer = super::record::Layer {
                        publisher,
                        track_id,
                        room: &room,
                        room_track: &room_track,
                        largest,
                    };
                    self.record_largest_layer(layer, &header, &packet.payload, now)
                }
            }
        }
        if to_grid && self.rooms.is_grid_room(&room) {
            let identity = self
                .rooms
                .member(publisher)
                .map(|(_, i)| i.to_owned())
                .unwrap_or_default();
            if let Some(mixer) = self.mixer(&room, now) {
                mixer.input(now, &room_track, &identity, &header, &packet.payload);
            }
        }
        let want_keyframe =
            self.send_to_carriers(&room, &room_track, &header, &packet.payload, layering, now);
        if let Some(ssrc) = want_keyframe {
            self.request_keyframe(publisher, track_id, Some(ssrc), now);
        }
        true
    }

    /// A publisher's redundant audio (RFC 2198): the copies of earlier frames it carries
    /// first, oldest first — each forwarded only when its own packet was lost on the way
    /// up — then the packet's own frame, all as plain Opus packets (what every subscriber,
    /// the recorder and the grid take; madang subscribers get copies of the server's own).
    fn forward_red(
        &mut self,
        publisher: SessionId,
        track_id: &str,
        packet: rtp::Packet,
        now: Instant,
    ) {
        let Ok(red) = Red::parse(&packet.payload) else {
            return;
        };
        let h = &packet.header;
        let plain = |seq: u16, timestamp: u32, payload: bytes::Bytes, own: bool| rtp::Packet {
            header: rtp::header::Header {
                payload_type: red.payload_type,
                sequence_number: seq,
                timestamp,
                // A copy's frame is older than the packet's audio level and marker.
                marker: own && h.marker,
                extension: own && h.extension,
                extensions: if own {
                    h.extensions.clone()
                } else {
                    Vec::new()
                },
                ..h.clone()
            },
            payload,
        };
        for (seq, timestamp, frame) in red.redundant_packets(h.sequence_number, h.timestamp) {
            let copy = plain(seq, timestamp, frame, false);
            if self.forward_packet(publisher, track_id, copy, now) {
                self.stats.audio_copies_used += 1;
            }
        }
        let own = plain(h.sequence_number, h.timestamp, red.primary.clone(), true);
        self.forward_packet(publisher, track_id, own, now);
    }

    /// Sends the NACKs due to publishers for packets lost on their way up; notes when the
    /// next are due.
    pub(super) fn send_upstream_nacks(&mut self, now: Instant) {
        let rtt = self.upstream_rtt + Duration::from_millis(5);
        let mut next: Option<Instant> = None;
        for (&id, peer) in self.peers.iter_mut() {
            for published in peer.published.values_mut() {
                for layer in &mut published.layers {
                    let Some(up) = layer.upstream.as_mut() else {
                        continue;
                    };
                    let due = up.nacks.due(now, rtt);
                    if let Some(t) = up.nacks.next_due() {
                        next = Some(next.map_or(t, |n| n.min(t)));
                    }
                    if due.is_empty() {
                        continue;
                    }
                    if let Some(pc) = peer.publisher.as_mut()
                        && let Some(mut r) = pc.pc.rtp_receiver(published.receiver)
                    {
                        let nack = crate::transport::nack(layer.ssrc, &due);
                        let _ = r.write_rtcp(now, vec![nack]);
                        self.stats.upstream_nacks += due.len() as u64;
                        self.dirty.insert((id, PeerRole::Publisher));
                    }
                }
            }
        }
        self.next_nack = next;
    }

    /// Takes the round-trip time of a publisher's leg as the NACK resend interval for all
    /// uplinks (the largest measured: a resend too early costs a duplicate, too late a
    /// frozen picture for everyone).
    pub(super) fn refresh_upstream_rtt(&mut self, now: Instant) {
        let mut worst: Option<Duration> = None;
        for peer in self.peers.values_mut() {
            if peer.published.values().all(|p| p.kind != TrackKind::Video) {
                continue;
            }
            if let Some(rtt) = peer
                .publisher
                .as_mut()
                .and_then(|pc| crate::transport::ice_rtt(&mut pc.pc, now))
            {
                worst = Some(worst.map_or(rtt, |w| w.max(rtt)));
            }
        }
        if let Some(rtt) = worst {
            self.upstream_rtt = rtt.clamp(Duration::from_millis(1), Duration::from_secs(1));
        }
    }

    /// Asks `publisher` for a keyframe of the stream `ssrc` of its track `track_id` (`None`:
    /// its [default](Published::default_ssrc) stream), at most once per limiter interval
    /// per stream.
    pub(super) fn request_keyframe(
        &mut self,
        publisher: SessionId,
        track_id: &str,
        ssrc: Option<u32>,
        now: Instant,
    ) {
        let Some(session) = self.peers.get_mut(&publisher) else {
            return;
        };
        let Some(published) = session.published.get_mut(track_id) else {
            return;
        };
        if published.kind != TrackKind::Video {
            return;
        }
        let Some(ssrc) = ssrc.or(published.default_ssrc()) else {
            return;
        };
        let receiver = published.receiver;
        let past_limit = self.keyframes_past_limit;
        let Some(layer) = published.layer_mut(ssrc) else {
            return;
        };
        // Counted as the last request either way: those that follow coalesce with it.
        if !layer.limiter.allow(now) && !past_limit {
            // Often (every subscriber's loss asks): details only.
            tracing::debug!("session {publisher}: keyframe of {track_id} rate-limited");
            return;
        }
        if let Some(pc) = session.publisher.as_mut()
            && let Some(mut r) = pc.pc.rtp_receiver(receiver)
        {
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: ssrc,
            };
            if r.write_rtcp(now, vec![Box::new(pli)]).is_ok() {
                self.stats.keyframe_requests += 1;
                tracing::debug!("session {publisher}: keyframe of {track_id} requested");
            }
            self.dirty.insert((publisher, PeerRole::Publisher));
        }
    }

    /// Writes one packet to every subscriber slot carrying `track`, each with its own header
    /// rewrite. Returns the stream a subscriber waits for a keyframe of, if one does.
    fn send_to_carriers(
        &mut self,
        room: &str,
        room_track: &str,
        header: &InHeader,
        payload: &bytes::Bytes,
        layering: Layering,
        now: Instant,
    ) -> Option<u32> {
        let mut want_keyframe = None;
        let video = !matches!(layering, Layering::Audio);
        for &(sub_id, slot_index) in self.rooms.carriers(room, room_track) {
            // `Rooms` changes a slot's track and its carrier lists in one place; checked in
            // tests only (a lookup and a string comparison per packet and subscriber).
            debug_assert_eq!(self.rooms.slot_track(sub_id, slot_index), Some(room_track));
            let Some(sub) = self.peers.get_mut(&sub_id) else {
                continue;
            };
            if !sub.subscriber.as_ref().is_some_and(|p| p.connected) {
                // Written before DTLS is up, a packet would vanish while the down-track thinks
                // it was sent; wait, and start at the keyframe requested on connect.
                continue;
            }
            let Some(slot) = sub.slots.get_mut(slot_index) else {
                continue;
            };
            if let Layering::Simulcast { start } = layering
                && !slot.down.layered()
            {
                // A subscriber new to a simulcast track starts at its smallest layer (a
                // small keyframe, soon there); the allocation raises it.
                match start {
                    Some(ssrc) => slot.down.switch_layer(ssrc),
                    None => {
                        // No layer's size is known yet: its first keyframe (the SPS) was
                        // lost on the way up, and without a request no other may come.
                        // Measured on simulated `rural` and `disaster`: a publisher whose
                        // pictures nobody ever received.
                        want_keyframe = Some(header.ssrc);
                        continue;
                    }
                }
            }
            let switching = slot.down.switching_to();
            match slot.down.forward(header, now) {
                Forwarding::Send(out) => {
                    if switching.is_some() && slot.down.switching_to().is_none() {
                        tracing::debug!(
                            "session {sub_id}: {room_track} switched to stream {}",
                            header.ssrc
                        );
                    }
                    if video && let Some(n) = self.simulate_loss_every {
                        self.video_written += 1;
                        if self.video_written.is_multiple_of(n as u64) {
                            continue;
                        }
                    }
                    if !slot.negotiated {
                        continue;
                    }
                    let mut packet = out_packet(&out, payload.clone());
                    if let Some(red) = slot.red.as_mut()
                        && let Some(with_copy) = red.packet(&out, payload)
                    {
                        packet.payload = with_copy;
                        packet.header.payload_type = red.payload_type;
                        self.stats.audio_copies_sent += 1;
                    }
                    if video
                        && let Some(id) = slot.playout_delay
                        && sub.nacked_at.is_some_and(|t| now < t + REPAIR_MEMORY)
                    {
                        set_playout_delay(&mut packet, id);
                    }
                    let Some(pc) = sub.subscriber.as_mut() else {
                        continue;
                    };
                    // Straight into the connection's pipeline, not through
                    // `RTCRtpSender::write_rtp`: that checks the SSRC, payload type and
                    // header extensions against the sender's parameters, which it builds
                    // anew (and the track id it copies) for every packet — 3 % of the
                    // server's CPU at 520 subscribers (`madang bench sfu`). Here they are
                    // right by construction: `down` was made from the sender's SSRC and
                    // the negotiated payload type, the playout delay's id from the
                    // negotiated extensions.
                    match write_direct(pc, packet, now) {
                        Ok(()) => self.stats.packets_out += 1,
                        Err(e) => tracing::trace!("write to session {sub_id}: {e}"),
                    }
                    self.dirty.insert((sub_id, PeerRole::Subscriber));
                }
                Forwarding::WaitingForKeyframe => {
                    self.stats.packets_awaiting_keyframe += 1;
                    want_keyframe = Some(header.ssrc);
                }
                Forwarding::Paused | Forwarding::Stale => self.stats.packets_not_forwarded += 1,
                Forwarding::OtherLayer => {}
            }
        }
        want_keyframe
    }

    /// The room's grid, created on first use.
    fn mixer(&mut self, room: &str, now: Instant) -> Option<&mut GridRunner> {
        if !self.mixers.contains_key(room) {
            let ssrc = self.random_ssrc();
            match GridRunner::new(self.grid, ssrc, now, self.grid_thread) {
                Ok(m) => {
                    self.mixers.insert(room.to_owned(), m);
                }
                Err(e) => {
                    tracing::warn!("grid for room {room}: {e}");
                    return None;
                }
            }
        }
        self.mixers.get_mut(room)
    }

    /// Asks every room's grid for a frame (composed, encoded and sent when it is done).
    pub(super) fn on_grid_tick(&mut self, now: Instant) {
        let rooms: Vec<String> = self.mixers.keys().cloned().collect();
        for room in rooms {
            let people = self.rooms.publishers(&room);
            if people.is_empty() {
                self.mixers.remove(&room);
                self.grid_caches.remove(&room);
                continue;
            }
            if let Some(mixer) = self.mixers.get_mut(&room) {
                mixer.tick(people, now);
            }
        }
    }

    /// Acts on what the grids produced: frames go to their subscribers, a participant the
    /// grid lost gets a keyframe request. A grid on its own thread delivers here at the
    /// engine's next pass (datagrams arrive continuously in a grid room; at the latest, the
    /// next grid tick).
    pub(super) fn drain_grids(&mut self, now: Instant) {
        if self.mixers.is_empty() {
            return;
        }
        let rooms: Vec<String> = self.mixers.keys().cloned().collect();
        for room in rooms {
            while let Some(output) = self.mixers.get_mut(&room).and_then(|m| m.poll_output()) {
                match output {
                    MixerOutput::Packets(packets) => {
                        let mut want_keyframe = false;
                        let cache = self
                            .grid_caches
                            .entry(room.clone())
                            .or_insert_with(|| RetransmitCache::new(1024));
                        for (header, payload) in &packets {
                            cache.insert(now, *header, payload.clone());
                        }
                        if self.recording(&room) {
                            for (header, payload) in &packets {
                                self.record(
                                    &room,
                                    GRID_TRACK,
                                    TrackKind::Video,
                                    header,
                                    payload,
                                    now,
                                );
                            }
                        }
                        for (header, payload) in &packets {
                            want_keyframe |= self
                                .send_to_carriers(
                                    &room,
                                    GRID_TRACK,
                                    header,
                                    payload,
                                    Layering::Single,
                                    now,
                                )
                                .is_some();
                        }
                        if want_keyframe && let Some(mixer) = self.mixers.get_mut(&room) {
                            mixer.request_keyframe();
                        }
                    }
                    MixerOutput::NeedKeyframe(track) => {
                        if let Some(publisher) = self.rooms.publisher_of(&room, &track) {
                            self.request_keyframe_of_track(publisher, &track, None, now);
                        }
                    }
                }
            }
        }
        self.stats.grid_dropped = self.mixers.values().map(GridRunner::dropped).sum();
    }

    /// The room track a subscriber's slot (found by its sending SSRC) carries, and that
    /// track's publisher.
    fn slot_source(
        &self,
        subscriber: SessionId,
        out_ssrc: u32,
    ) -> Option<(usize, String, SessionId)> {
        let slot = self.slot_by_ssrc(subscriber, out_ssrc)?;
        let (track, publisher) = self.slot_origin(subscriber, slot)?;
        Some((slot, track, publisher))
    }

    /// The index of a subscriber's slot by the SSRC it is sent with.
    fn slot_by_ssrc(&self, subscriber: SessionId, out_ssrc: u32) -> Option<usize> {
        self.peers
            .get(&subscriber)?
            .slots
            .iter()
            .position(|s| s.down.out_ssrc() == out_ssrc)
    }

    /// The room track a subscriber's slot carries, and its publisher.
    fn slot_origin(&self, subscriber: SessionId, slot: usize) -> Option<(String, SessionId)> {
        let room = self.rooms.member(subscriber)?.0;
        let track = self.rooms.slot_track(subscriber, slot)?.to_owned();
        let publisher = self.rooms.publisher_of(room, &track)?;
        Some((track, publisher))
    }

    /// Answers a subscriber's NACK from the publisher's retransmission cache, with the same
    /// header rewrite the original packets had.
    pub(super) fn retransmit(
        &mut self,
        subscriber: SessionId,
        out_ssrc: u32,
        lost: &[u16],
        now: Instant,
    ) {
        let Some(slot_index) = self.slot_by_ssrc(subscriber, out_ssrc) else {
            return;
        };
        let Some(packets) = self.sent_again(subscriber, slot_index, lost) else {
            return;
        };
        let Some(sub) = self.peers.get_mut(&subscriber) else {
            return;
        };
        let slot = &mut sub.slots[slot_index];
        let Some(pc) = sub.subscriber.as_mut() else {
            return;
        };
        match slot.rtx.as_mut() {
            // In the retransmission stream the subscriber negotiated.
            Some(rtx) => {
                for p in packets {
                    if write_rtx(pc, rtx, &p, now).is_ok() {
                        self.stats.retransmitted += 1;
                        self.stats.rtx_sent += 1;
                    }
                }
            }
            None => {
                let Some(mut s) = pc.pc.rtp_sender(slot.sender) else {
                    return;
                };
                for p in packets {
                    if s.write_rtp(now, p).is_ok() {
                        self.stats.retransmitted += 1;
                    }
                }
            }
        }
        self.dirty.insert((subscriber, PeerRole::Subscriber));
    }

    /// The packets a subscriber's slot was sent with sequence numbers `seqs`, rebuilt from
    /// the publisher's retransmission cache (or its room grid's) with the same header
    /// rewrite they had: those still cached (`None` when the slot's track is gone).
    pub(super) fn sent_again(
        &self,
        subscriber: SessionId,
        slot_index: usize,
        seqs: &[u16],
    ) -> Option<Vec<rtp::Packet>> {
        let (track, publisher) = self.slot_origin(subscriber, slot_index)?;
        let grid_cache = if publisher == GRID_SESSION {
            self.rooms
                .member(subscriber)
                .and_then(|(room, _)| self.grid_caches.get(room))
        } else {
            None
        };
        let track = self
            .peers
            .get(&publisher)
            .and_then(|pubs| pubs.published.values().find(|p| *p.room_track == *track));
        let cache_of =
            |ssrc: u32| grid_cache.or_else(|| track.and_then(|t| t.layer(ssrc)).map(|l| &l.cache));
        let down = &self.peers.get(&subscriber)?.slots.get(slot_index)?.down;
        let packets = seqs
            .iter()
            .filter_map(|&out_seq| {
                let (ssrc, in_seq) = down.publisher_seq(out_seq)?;
                let (header, payload) = cache_of(ssrc)?.get(ssrc, in_seq)?;
                Some(out_packet(&down.rewrite(header)?, payload.clone()))
            })
            .collect();
        Some(packets)
    }

    /// Asks the publishers of a subscriber's videos for keyframes past their limit of one
    /// per 300 ms, when its ICE restart's new path is up: a keyframe asked for by others a
    /// moment earlier went down the old path. Measured on simulated `lte`, a participant
    /// whose network changed (3 seeds): another's picture came back 1.13-1.23 s after the
    /// move without this (its own request coalesced with that one, the next waiting out the
    /// receiver's 500 ms limit), 0.71-1.15 s with it. One per restart, and a restart takes
    /// an offer.
    pub(super) fn request_keyframes_past_limit(&mut self, subscriber: SessionId, now: Instant) {
        self.keyframes_past_limit = true;
        self.request_keyframes_for_slots(subscriber, now);
        self.keyframes_past_limit = false;
    }

    pub(super) fn request_keyframes_for_slots(&mut self, subscriber: SessionId, now: Instant) {
        let Some(peer) = self.peers.get(&subscriber) else {
            return;
        };
        let ssrcs: Vec<u32> = peer
            .slots
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                s.kind == TrackKind::Video && self.rooms.slot_track(subscriber, *i).is_some()
            })
            .map(|(_, s)| s.down.out_ssrc())
            .collect();
        for ssrc in ssrcs {
            self.on_subscriber_keyframe_request(subscriber, ssrc, now);
        }
    }

    pub(super) fn on_subscriber_keyframe_request(
        &mut self,
        subscriber: SessionId,
        out_ssrc: u32,
        now: Instant,
    ) {
        let Some((slot, track, publisher)) = self.slot_source(subscriber, out_ssrc) else {
            return;
        };
        let Some(down) = self
            .peers
            .get(&subscriber)
            .and_then(|p| p.slots.get(slot))
            .filter(|s| s.paused_track.is_none() && !s.off_screen)
            .map(|s| &s.down)
        else {
            // Paused or off screen: nothing is forwarded to it until the allocation resumes
            // it (with a request).
            return;
        };
        let layer = down.wanted_layer();
        if publisher == GRID_SESSION {
            if let Some(room) = self.rooms.member(subscriber).map(|(r, _)| r.to_owned())
                && let Some(mixer) = self.mixers.get_mut(&room)
            {
                mixer.request_keyframe();
            }
            return;
        }
        self.request_keyframe_of_track(publisher, &track, layer, now);
    }

    /// Asks `publisher` for a keyframe of the stream `ssrc` (or the default one) of its room
    /// track `track`.
    pub(super) fn request_keyframe_of_track(
        &mut self,
        publisher: SessionId,
        track: &str,
        ssrc: Option<u32>,
        now: Instant,
    ) {
        let track_id = self.peers.get(&publisher).and_then(|p| {
            p.published
                .iter()
                .find(|(_, pubd)| *pubd.room_track == *track)
                .map(|(id, _)| id.clone())
        });
        if let Some(track_id) = track_id {
            self.request_keyframe(publisher, &track_id, ssrc, now);
        }
    }
}

/// How a track's packets reach its subscribers.
#[derive(Clone, Copy, Debug)]
enum Layering {
    /// Audio: every packet to every subscriber.
    Audio,
    /// Video sent as one stream.
    Single,
    /// Video sent as simulcast: each subscriber is forwarded one layer, starting at the
    /// `start` layer's SSRC (unknown until a keyframe told the layers' sizes).
    Simulcast { start: Option<u32> },
}

/// How long after its last NACK a subscriber is still told to hold pictures for repairs.
const REPAIR_MEMORY: Duration = Duration::from_secs(10);

/// Least playout delay asked of a subscriber that repairs losses: room for a retransmission
/// from the server and one from the publisher on links like `lte`. Chromium otherwise sizes
/// its buffer from the jitter alone (measured on `lte`: 63 ms), so every repaired picture
/// came too late and froze the picture (10 freezes, 2.3 s, in 23 s).
const REPAIR_PLAYOUT_DELAY: Duration = Duration::from_millis(200);

/// Marks a picture's packet with the playout-delay extension: at least
/// [`REPAIR_PLAYOUT_DELAY`], at most 1 s (12 bits each, in 10 ms units).
fn set_playout_delay(packet: &mut rtp::Packet, id: u8) {
    let min = (REPAIR_PLAYOUT_DELAY.as_millis() / 10) as u32;
    let max = 100u32;
    let value = (min << 12) | max;
    let bytes = bytes::Bytes::copy_from_slice(&value.to_be_bytes()[1..]);
    packet.header.extension = true;
    packet.header.extension_profile = rtp::header::EXTENSION_PROFILE_ONE_BYTE;
    let _ = packet.header.set_extension(id, bytes);
}

/// Writes an RTP packet straight into a subscriber's connection, past
/// `RTCRtpSender::write_rtp` (see `send_to_carriers` for why; a retransmission stream's
/// SSRC is one that takes none).
fn write_direct(
    pc: &mut super::Pc,
    packet: rtp::Packet,
    now: Instant,
) -> Result<(), rtc::shared::error::Error> {
    pc.pc.handle_write(TaggedRTCMessage {
        now,
        message: RTCMessage::RtpPacket(String::new(), packet),
    })
}

/// Writes `packet` again in a subscriber's retransmission stream `rtx` (RFC 4588), as a
/// repair or as padding.
pub(super) fn write_rtx(
    pc: &mut super::Pc,
    rtx: &mut super::RtxOut,
    packet: &rtp::Packet,
    now: Instant,
) -> Result<(), rtc::shared::error::Error> {
    let wrapped = rtx::wrap(packet, rtx.ssrc, rtx.payload_type, rtx.seq);
    rtx.seq = rtx.seq.wrapping_add(1);
    write_direct(pc, wrapped, now)
}

/// An RTP packet with the rewritten header of one subscriber leg; the payload is shared.
fn out_packet(out: &OutHeader, payload: bytes::Bytes) -> rtp::Packet {
    rtp::Packet {
        header: rtp::header::Header {
            version: 2,
            marker: out.marker,
            payload_type: out.payload_type,
            sequence_number: out.seq,
            timestamp: out.timestamp,
            ssrc: out.ssrc,
            ..Default::default()
        },
        payload,
    }
}
