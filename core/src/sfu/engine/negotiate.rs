//! Signalling work of the server core: answering offers on both connections of a session,
//! trickled candidates, and learning which published track arrives on which m-line.

use std::collections::HashSet;
use std::time::Instant;

use rand::Rng;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtp_transceiver::RTCRtpReceiverId;
use rtc::sansio::Protocol;

use super::{Engine, Pc, Published, RedOut, RtxOut, SessionId, SlotRtc, sdp_m_lines};
use crate::sfu::forward::DownTrack;
use crate::sfu::peer::{SUBSCRIBER_MAX_BPS, SUBSCRIBER_START_BPS, new_peer_connection};
use crate::signal::{
    ErrorCode, IceCandidate, PeerRole, PublishTrack, RefusedTrack, ServerMessage, TrackKind,
};
use crate::transport::cc::SendSide;
use crate::transport::dtls::HandshakeGuard;
use crate::transport::rtx::RTX_MIME_TYPE;
use crate::transport::{
    AUDIO_LEVEL_URI, PLAYOUT_DELAY_URI, h264_codec, made_by_madang, media_track, opus_codec,
    red_payload_type,
};
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;

impl Engine {
    pub(super) fn on_offer(
        &mut self,
        id: SessionId,
        role: PeerRole,
        sdp: String,
        publish: Vec<PublishTrack>,
        now: Instant,
    ) {
        let remote_ufrag = sdp_ice_ufrag(&sdp);
        self.replace_stuck(id, role, remote_ufrag.as_deref());
        // madang's clients name themselves in an `a=tool` line; the others are browsers
        // (libwebrtc), WHIP encoders and the like.
        let madang = made_by_madang(&sdp);
        if let Err(e) = self.ensure_pc(id, role, !madang, now) {
            return self.rooms.fail(id, ErrorCode::Internal, &e);
        }
        if let Some(pc) = self.peers.get_mut(&id).and_then(|p| p.pc_mut(role)) {
            // New credentials on a live connection: the client restarts ICE (its network
            // changed); the connection and everything on it stay.
            pc.ice_restarting |= pc.remote_ufrag.is_some() && pc.remote_ufrag != remote_ufrag;
            pc.remote_ufrag = remote_ufrag;
        }
        match role {
            PeerRole::Publisher => match self.answer_publisher(id, sdp, &publish, now) {
                Ok((answer, refused)) => {
                    for r in &refused {
                        tracing::info!(
                            "session {id}: refused the track of m-line {}: {}",
                            r.mid,
                            r.reason
                        );
                    }
                    let accepted: Vec<PublishTrack> = publish
                        .into_iter()
                        .filter(|p| !refused.iter().any(|r| r.mid == p.mid))
                        .collect();
                    self.send(
                        id,
                        ServerMessage::Answer {
                            pc: role,
                            sdp: answer,
                            refused,
                        },
                    );
                    self.dirty.insert((id, role));
                    self.rooms.published(id, &accepted);
                }
                Err(e) => self.rooms.fail(id, ErrorCode::NegotiationFailed, &e),
            },
            PeerRole::Subscriber => {
                let m_lines = sdp_m_lines(&sdp);
                // Slots this connection already has keep their place; new m-lines are new slots.
                let known: HashSet<String> = self.known_mids(id);
                match self.answer_subscriber(id, sdp, &m_lines, now, &known) {
                    Ok((answer, added)) => {
                        self.send(
                            id,
                            ServerMessage::Answer {
                                pc: role,
                                sdp: answer,
                                refused: Vec::new(),
                            },
                        );
                        self.dirty.insert((id, role));
                        self.rooms.slots_added(id, added);
                    }
                    Err(e) => self.rooms.fail(id, ErrorCode::NegotiationFailed, &e),
                }
            }
        }
    }

    /// A client whose connection never came up (its DTLS handshake can stall for good when
    /// its first flights are lost) offers a new one, with new ICE credentials: the old
    /// connection is dropped with what came with it — what it published, or its receive
    /// slots, which the new offer's m-lines replace and the room assigns again — and the
    /// offer gets a fresh one.
    fn replace_stuck(&mut self, id: SessionId, role: PeerRole, remote_ufrag: Option<&str>) {
        let stuck = self
            .peers
            .get_mut(&id)
            .and_then(|p| p.pc_mut(role))
            .is_some_and(|pc| {
                !pc.connected
                    && pc.remote_ufrag.is_some()
                    && pc.remote_ufrag.as_deref() != remote_ufrag
            });
        if !stuck {
            return;
        }
        self.drop_pc(id, role);
        match role {
            PeerRole::Publisher => self.stats.publisher_restarts += 1,
            PeerRole::Subscriber => self.stats.subscriber_restarts += 1,
        }
        tracing::info!("session {id}: {role:?} connection replaced (it never connected)");
    }

    /// Closes a session's `role` connection with what came with it: what it published, or
    /// its receive slots (the room is told to assign them again).
    pub(super) fn drop_pc(&mut self, id: SessionId, role: PeerRole) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let pc = match role {
            PeerRole::Publisher => &mut peer.publisher,
            PeerRole::Subscriber => &mut peer.subscriber,
        };
        if let Some(mut old) = pc.take() {
            let _ = old.pc.close();
            self.by_ufrag.remove(&old.ufrag);
        }
        match role {
            PeerRole::Publisher => {
                peer.published.clear();
                peer.publish_mids.clear();
            }
            PeerRole::Subscriber => {
                peer.slots.clear();
                self.rooms.slots_reset(id);
            }
        }
    }

    /// Mids of the subscriber connection's existing slots.
    fn known_mids(&self, id: SessionId) -> HashSet<String> {
        self.peers
            .get(&id)
            .map(|p| p.slots.iter().map(|s| s.mid.clone()).collect())
            .unwrap_or_default()
    }

    /// Creates the session's `role` connection unless it has one; `counts_feedback_loss`:
    /// its peer is not a madang client (see [`new_peer_connection`]).
    fn ensure_pc(
        &mut self,
        id: SessionId,
        role: PeerRole,
        counts_feedback_loss: bool,
        now: Instant,
    ) -> Result<(), String> {
        let exists = self
            .peers
            .get_mut(&id)
            .is_some_and(|s| s.pc_mut(role).is_some());
        if exists {
            return Ok(());
        }
        let ufrag = self.random_string(16);
        let pwd = self.random_string(32);
        let congestion = (role == PeerRole::Subscriber)
            .then(|| SendSide::starting_at(SUBSCRIBER_START_BPS, SUBSCRIBER_MAX_BPS));
        let pc = new_peer_connection(
            role,
            (&ufrag, &pwd),
            self.local,
            now,
            congestion.as_ref(),
            &self.rtx_received,
            counts_feedback_loss,
        )
        .map_err(|e| e.to_string())?;
        let Some(peer) = self.peers.get_mut(&id) else {
            return Err("session gone".into());
        };
        let slot = match role {
            PeerRole::Publisher => &mut peer.publisher,
            PeerRole::Subscriber => &mut peer.subscriber,
        };
        *slot = Some(Pc {
            pc: Box::new(pc),
            ufrag: ufrag.clone(),
            remote_ufrag: None,
            connected: false,
            deadline: None,
            estimate: congestion.map(|c| c.estimate),
            sent_to: None,
            ice_restarting: false,
            handshake: HandshakeGuard::new(),
        });
        self.by_ufrag.insert(ufrag, (id, role));
        Ok(())
    }

    /// The answer to a publisher offer, and the announced tracks whose m-lines it rejects
    /// (no codec the server takes); those are not kept as published.
    fn answer_publisher(
        &mut self,
        id: SessionId,
        sdp: String,
        publish: &[PublishTrack],
        now: Instant,
    ) -> Result<(String, Vec<RefusedTrack>), String> {
        let peer = self.peers.get_mut(&id).ok_or("session gone")?;
        let pc = peer.publisher.as_mut().ok_or("no publisher connection")?;
        let offer = RTCSessionDescription::offer(sdp.clone()).map_err(|e| e.to_string())?;
        pc.pc
            .set_remote_description(now, offer)
            .map_err(|e| e.to_string())?;
        let answer = pc.pc.create_answer(None).map_err(|e| e.to_string())?;
        let text = answer.sdp.clone();
        pc.pc
            .set_local_description(now, answer)
            .map_err(|e| e.to_string())?;
        let answer = pc.pc.local_description().map(|d| d.sdp).unwrap_or(text);
        let refused = refused_tracks(&sdp, &answer, publish);
        for p in publish {
            if !refused.iter().any(|r| r.mid == p.mid) {
                peer.publish_mids.insert(p.mid.clone(), p.clone());
            }
        }
        Ok((candidates_in_accepted_section(&answer), refused))
    }

    fn answer_subscriber(
        &mut self,
        id: SessionId,
        sdp: String,
        m_lines: &[(TrackKind, String)],
        now: Instant,
        known: &HashSet<String>,
    ) -> Result<(String, Vec<(TrackKind, String)>), String> {
        let identity = self
            .rooms
            .member(id)
            .map(|(_, i)| i.to_owned())
            .unwrap_or_default();
        let peer = self.peers.get_mut(&id).ok_or("session gone")?;
        let pc = peer.subscriber.as_mut().ok_or("no subscriber connection")?;
        let madang = made_by_madang(&sdp);
        let sections = sdp_sections(&sdp);
        let offers_rtx = |mid: &str| {
            sections
                .iter()
                .find(|section| section_mid(section) == Some(mid))
                .is_some_and(|section| section_offers_rtx(section))
        };
        let offer = RTCSessionDescription::offer(sdp.clone()).map_err(|e| e.to_string())?;
        pc.pc
            .set_remote_description(now, offer)
            .map_err(|e| e.to_string())?;
        let mut new_slots = Vec::new();
        for (kind, mid) in m_lines.iter().filter(|(_, mid)| !known.contains(mid)) {
            let ssrc = self.rng.random::<u32>() | 1;
            // Drawn from the media SSRC, not the random source: a seeded run draws the same
            // numbers whether or not its clients offer RTX.
            let rtx_ssrc =
                (*kind == TrackKind::Video && offers_rtx(mid)).then_some(ssrc ^ RTX_SSRC_BIT);
            let payload_type = match kind {
                TrackKind::Audio => opus_codec().payload_type,
                TrackKind::Video => h264_codec().payload_type,
            };
            let track = media_track(
                format!("madang-{identity}"),
                format!("slot-{mid}"),
                *kind,
                ssrc,
                rtx_ssrc,
            );
            let sender = pc.pc.add_track(track).map_err(|e| e.to_string())?;
            let got_mid = pc
                .pc
                .rtp_transceiver(sender.into())
                .and_then(|t| t.mid().clone())
                .unwrap_or_default();
            if &got_mid != mid {
                tracing::debug!("slot for mid {mid} landed on {got_mid}");
            }
            new_slots.push((
                got_mid.clone(),
                SlotRtc {
                    kind: *kind,
                    mid: got_mid,
                    sender,
                    down: DownTrack::new(ssrc, payload_type, *kind == TrackKind::Video),
                    playout_delay: None,
                    paused_track: None,
                    kept: Vec::new(),
                    off_screen: false,
                    negotiated: false,
                    rtx: rtx_ssrc.map(|ssrc| RtxOut {
                        ssrc,
                        payload_type: 0,
                        seq: (ssrc >> 16) as u16,
                    }),
                    red: None,
                },
            ));
        }
        let answer = pc.pc.create_answer(None).map_err(|e| e.to_string())?;
        let text = answer.sdp.clone();
        pc.pc
            .set_local_description(now, answer)
            .map_err(|e| e.to_string())?;
        // The payload type actually negotiated on each new slot.
        for (_, slot) in &mut new_slots {
            if let Some(mut s) = pc.pc.rtp_sender(slot.sender) {
                let parameters = &s.get_parameters().rtp_parameters;
                if let Some(codec) = parameters.codecs.first() {
                    slot.down = DownTrack::new(
                        slot.down.out_ssrc(),
                        codec.payload_type,
                        slot.kind == TrackKind::Video,
                    );
                    slot.negotiated = true;
                    // Retransmissions in their own stream only where the answer took the
                    // offered RTX format for the video's payload type.
                    let apt = format!("apt={}", codec.payload_type);
                    let rtx_type = parameters
                        .codecs
                        .iter()
                        .find(|c| {
                            c.rtp_codec.mime_type.eq_ignore_ascii_case(RTX_MIME_TYPE)
                                && c.rtp_codec
                                    .sdp_fmtp_line
                                    .split(';')
                                    .any(|p| p.trim() == apt)
                        })
                        .map(|c| c.payload_type);
                    slot.rtx = slot.rtx.take().and_then(|rtx| {
                        Some(RtxOut {
                            payload_type: rtx_type?,
                            ..rtx
                        })
                    });
                    // Redundant audio to madang's clients (browsers decode it too, but
                    // whether theirs pays off under their own playout is not measured).
                    slot.red = (madang && slot.kind == TrackKind::Audio)
                        .then(|| red_payload_type(&parameters.codecs, codec.payload_type))
                        .flatten()
                        .map(RedOut::new);
                }
                slot.playout_delay = parameters
                    .header_extensions
                    .iter()
                    .find(|e| e.uri == PLAYOUT_DELAY_URI)
                    .map(|e| e.id as u8);
            }
        }
        let sdp = pc.pc.local_description().map(|d| d.sdp).unwrap_or(text);
        let added = new_slots
            .iter()
            .map(|(mid, s)| (s.kind, mid.clone()))
            .collect();
        peer.slots.extend(new_slots.into_iter().map(|(_, s)| s));
        Ok((sdp, added))
    }

    pub(super) fn on_candidate(&mut self, id: SessionId, role: PeerRole, candidate: IceCandidate) {
        if candidate.candidate.is_empty() {
            return;
        }
        let Some(pc) = self.peers.get_mut(&id).and_then(|s| s.pc_mut(role)) else {
            return;
        };
        let init = RTCIceCandidateInit {
            candidate: candidate.candidate,
            sdp_mid: candidate.sdp_mid,
            sdp_mline_index: candidate.sdp_m_line_index,
            username_fragment: None,
            url: None,
        };
        if let Err(e) = pc.pc.add_remote_candidate(init) {
            tracing::debug!("session {id}: bad candidate: {e}");
        }
        self.dirty.insert((id, role));
    }

    pub(super) fn on_publisher_track(
        &mut self,
        id: SessionId,
        track_id: String,
        receiver: RTCRtpReceiverId,
        ssrc: u32,
        rid: Option<String>,
    ) {
        let Some(identity) = self.rooms.member(id).map(|(_, i)| i.to_owned()) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(pc) = peer.publisher.as_mut() else {
            return;
        };
        if let Some(track) = peer.published.get_mut(&track_id) {
            // Another simulcast layer of a track already flowing.
            track.add_layer(ssrc, rid);
            return;
        }
        let index: usize = receiver.into();
        let mid = pc
            .pc
            .rtp_transceiver(index)
            .and_then(|t| t.mid().clone())
            .unwrap_or_default();
        let Some(publish) = peer.publish_mids.get(&mid) else {
            tracing::debug!("session {id}: track on unannounced mid {mid:?}");
            return;
        };
        let (audio_level_id, red_payload_type) = pc
            .pc
            .rtp_receiver(receiver)
            .map(|mut r| {
                let parameters = &r.get_parameters().rtp_parameters;
                let level = parameters
                    .header_extensions
                    .iter()
                    .find(|e| e.uri == AUDIO_LEVEL_URI)
                    .map(|e| e.id as u8);
                let opus = parameters
                    .codecs
                    .iter()
                    .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS));
                let red = opus.and_then(|o| red_payload_type(&parameters.codecs, o.payload_type));
                (level, red)
            })
            .unwrap_or_default();
        let room_track = publish.source.track_id(&identity).into();
        let mut track = Published::new(
            room_track,
            publish.kind,
            receiver,
            audio_level_id,
            ssrc,
            rid,
        );
        track.red_payload_type = red_payload_type;
        peer.published.insert(track_id, track);
    }
}

/// The `a=ice-ufrag` of an SDP.
fn sdp_ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(str::to_owned)
}

/// The m-sections of an SDP, each as its lines (the `m=` line first).
fn sdp_sections(sdp: &str) -> Vec<Vec<&str>> {
    let mut sections: Vec<Vec<&str>> = Vec::new();
    for line in sdp.lines() {
        if line.starts_with("m=") {
            sections.push(vec![line]);
        } else if let Some(s) = sections.last_mut() {
            s.push(line);
        }
    }
    sections
}

/// The `a=mid` of an m-section.
fn section_mid<'a>(section: &[&'a str]) -> Option<&'a str> {
    section
        .iter()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .map(str::trim)
}

/// A slot's retransmission SSRC is its media SSRC with this bit flipped (both odd).
const RTX_SSRC_BIT: u32 = 0x8000_0000;

/// Whether an offer's m-section offers a retransmission format (RFC 4588 `rtx`).
fn section_offers_rtx(section: &[&str]) -> bool {
    section.iter().any(|line| {
        line.strip_prefix("a=rtpmap:")
            .and_then(|rest| rest.split_whitespace().nth(1))
            .is_some_and(|format| format.to_ascii_lowercase().starts_with("rtx/"))
    })
}

/// Whether an answer's m-section is rejected (port 0).
fn section_rejected(section: &[&str]) -> bool {
    section[0].split_whitespace().nth(1) == Some("0")
}

/// The tracks of `publish` whose m-lines `answer` rejects or that `offer` does not have,
/// each with the codecs the server takes and those the offer had.
pub(super) fn refused_tracks(
    offer: &str,
    answer: &str,
    publish: &[PublishTrack],
) -> Vec<RefusedTrack> {
    let offered = sdp_sections(offer);
    let answered = sdp_sections(answer);
    publish
        .iter()
        .filter_map(|p| {
            let accepted = answered
                .iter()
                .any(|s| section_mid(s) == Some(p.mid.as_str()) && !section_rejected(s));
            if accepted {
                return None;
            }
            let Some(section) = offered
                .iter()
                .find(|s| section_mid(s) == Some(p.mid.as_str()))
            else {
                return Some(RefusedTrack {
                    mid: p.mid.clone(),
                    reason: "the offer has no m-line with this mid".into(),
                });
            };
            let mut codecs: Vec<&str> = section
                .iter()
                .filter_map(|l| l.strip_prefix("a=rtpmap:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.split('/').next())
                .filter(|c| !matches!(c.to_ascii_lowercase().as_str(), "rtx" | "red" | "ulpfec"))
                .collect();
            codecs.dedup();
            let takes = match p.kind {
                TrackKind::Video => {
                    "video as H.264 Constrained Baseline (profile-level-id 42e01f or 42001f, packetization-mode=1)"
                }
                TrackKind::Audio => "audio as Opus (48000/2)",
            };
            let offered = if codecs.is_empty() {
                "none".to_owned()
            } else {
                codecs.join(", ")
            };
            Some(RefusedTrack {
                mid: p.mid.clone(),
                reason: format!("madang takes {takes}; offered: {offered}"),
            })
        })
        .collect()
}

/// `answer` with its ICE candidates in its first accepted m-section. The bundle's transport
/// is one, but a client looks for the candidates where the bundle is: `rtc` writes them into
/// the first m-section even when that one is rejected (port 0), and a client that ignores a
/// rejected section found no candidate at all.
pub(super) fn candidates_in_accepted_section(answer: &str) -> String {
    let sections = sdp_sections(answer);
    let Some(first) = sections.iter().position(|s| !section_rejected(s)) else {
        return answer.to_owned();
    };
    let is_candidate = |l: &&str| l.starts_with("a=candidate:") || *l == "a=end-of-candidates";
    let misplaced: Vec<&str> = sections
        .iter()
        .filter(|s| section_rejected(s))
        .flat_map(|s| s.iter().copied().filter(is_candidate))
        .collect();
    if misplaced.is_empty() {
        return answer.to_owned();
    }
    let mut out = String::with_capacity(answer.len());
    let session = answer.lines().take_while(|l| !l.starts_with("m="));
    for line in session {
        out.push_str(line);
        out.push_str("\r\n");
    }
    for (i, section) in sections.iter().enumerate() {
        let rejected = section_rejected(section);
        for line in section {
            if !(rejected && is_candidate(line)) {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        if i == first {
            let already: HashSet<&str> = section.iter().copied().collect();
            for line in &misplaced {
                if !already.contains(line) {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
            }
        }
    }
    out
}

/// Every SDP helper of this module on `offer` and `answer` (fuzzing).
#[cfg(feature = "fuzzing")]
pub(super) fn fuzz_helpers(offer: &str, answer: &str, publish: &[PublishTrack]) -> usize {
    let _ = sdp_ice_ufrag(offer);
    let refused = refused_tracks(offer, answer, publish);
    candidates_in_accepted_section(answer).len() + refused.len()
}
