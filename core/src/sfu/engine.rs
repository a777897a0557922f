//! The server's media engine: one task owning the shared UDP socket and every participant's
//! sans-I/O peer connections. Signal sessions talk to it through commands; datagrams, timers
//! and commands drive it. It is the thin driver: decisions come from the pure policies —
//! [`rooms`](super::rooms) (membership, tracks, slots, speakers, timeouts) and
//! [`forward`](super::forward) (per-packet rewriting, retransmission, keyframe limits).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp;
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::forward::{
    DownTrack, Forwarding, InHeader, KeyframeLimiter, OutHeader, RetransmitCache,
};
use super::mixer::{GridConfig, Mixer};
use super::peer::{new_peer_connection, stun_server_ufrag};
pub(crate) use super::rooms::SessionId;
use super::rooms::{Effect, GRID_SESSION, GRID_TRACK, Rooms, RoomsConfig, Work};
use crate::codec::nal::rtp_payload_starts_keyframe;
use crate::signal::{
    ClientMessage, ErrorCode, IceCandidate, LeaveReason, PeerRole, PublishTrack, ServerMessage,
    TrackKind,
};
use crate::transport::{AUDIO_LEVEL_URI, audio_level_dbov, h264_codec, media_track, opus_codec};

/// What a signal session asks of the engine.
#[derive(Debug)]
pub(crate) enum Command {
    /// A WebSocket opened; `room` is the room named in its URL, if any.
    Open {
        session: SessionId,
        room: Option<String>,
        tx: mpsc::UnboundedSender<Outbound>,
    },
    /// A message from the client.
    Message {
        session: SessionId,
        message: ClientMessage,
    },
    /// The WebSocket closed, or its task gave up on it with `code`.
    Closed {
        session: SessionId,
        code: Option<ErrorCode>,
    },
}

/// What the engine sends to a signal session.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Send this message.
    Message(ServerMessage),
    /// Close the WebSocket.
    Close,
}

/// Settings the engine runs with.
#[derive(Clone, Debug)]
pub(crate) struct EngineConfig {
    pub secret: Vec<u8>,
    pub silence_timeout: Duration,
    pub max_participants: usize,
    pub simulate_loss_every: Option<u32>,
    pub grid_rooms: Vec<String>,
    pub grid: GridConfig,
}

/// Counters the server reports.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    /// RTP packets received from publishers.
    pub packets_in: u64,
    /// RTP packets written towards subscribers.
    pub packets_out: u64,
    /// Datagrams that matched no connection.
    pub unroutable: u64,
    /// Keyframe requests sent to publishers.
    pub keyframe_requests: u64,
    /// Packets resent to subscribers from the retransmission caches (answers to NACKs).
    pub retransmitted: u64,
    /// Participants currently joined.
    pub participants: usize,
}

type PcKey = (SessionId, PeerRole);

struct Pc {
    pc: RTCPeerConnection,
    ufrag: String,
    /// DTLS and SRTP are up: media written now reaches the peer.
    connected: bool,
    /// Deadline currently registered in the timer heap.
    deadline: Option<Instant>,
}

struct Published {
    room_track: String,
    kind: TrackKind,
    receiver: RTCRtpReceiverId,
    ssrc: Option<u32>,
    audio_level_id: Option<u8>,
    cache: RetransmitCache,
    limiter: KeyframeLimiter,
}

/// A receive slot's WebRTC side; which track it carries is the room policy's business.
struct SlotRtc {
    kind: TrackKind,
    mid: String,
    sender: RTCRtpSenderId,
    down: DownTrack,
}

/// The WebRTC side of one session.
struct Peer {
    tx: mpsc::UnboundedSender<Outbound>,
    publisher: Option<Pc>,
    subscriber: Option<Pc>,
    /// Published m-lines announced in offers, by mid.
    publish_mids: HashMap<String, PublishTrack>,
    /// Published tracks by the connection's track id, once media flows.
    published: HashMap<String, Published>,
    /// Receive slots, in the same order as the room policy's.
    slots: Vec<SlotRtc>,
}

impl Peer {
    fn send(&self, message: ServerMessage) {
        let _ = self.tx.send(Outbound::Message(message));
    }

    fn pc_mut(&mut self, role: PeerRole) -> Option<&mut Pc> {
        match role {
            PeerRole::Publisher => self.publisher.as_mut(),
            PeerRole::Subscriber => self.subscriber.as_mut(),
        }
    }
}

/// Most datagrams taken from the socket before the connections are drained and the batch of
/// sends goes out.
const RECEIVE_BATCH: usize = 8;

pub(crate) struct Engine {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    rooms: Rooms,
    peers: HashMap<SessionId, Peer>,
    by_ufrag: HashMap<String, PcKey>,
    by_addr: HashMap<SocketAddr, PcKey>,
    timers: BinaryHeap<Reverse<(Instant, PcKey)>>,
    dirty: HashSet<PcKey>,
    /// Datagrams the connections produced during this pass, sent together at its end.
    outbox: Vec<(BytesMut, SocketAddr)>,
    next_ufrag: u64,
    simulate_loss_every: Option<u32>,
    video_written: u64,
    grid: GridConfig,
    mixers: HashMap<String, Mixer>,
    stats: EngineStats,
    stats_tx: tokio::sync::watch::Sender<EngineStats>,
}

fn random_string(len: usize, seed: u64) -> String {
    // Unguessable enough for ICE credentials on loopback and LAN deployments: mixes the
    // process's random hasher keys with a counter.
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let state = std::collections::hash_map::RandomState::new();
    let mut out = String::with_capacity(len);
    let mut i = 0u64;
    while out.len() < len {
        let mut h = state.build_hasher();
        h.write_u64(seed);
        h.write_u64(i);
        let mut v = h.finish();
        for _ in 0..8 {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[(v % ALPHABET.len() as u64) as usize] as char);
            v /= ALPHABET.len() as u64;
        }
        i += 1;
    }
    out
}

fn random_u32(seed: u64) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(seed);
    (h.finish() >> 16) as u32 | 1
}

/// `(kind, mid)` of each m-line in an SDP, in order.
pub(crate) fn sdp_m_lines(sdp: &str) -> Vec<(TrackKind, String)> {
    let mut out = Vec::new();
    let mut current: Option<TrackKind> = None;
    for line in sdp.lines() {
        if let Some(rest) = line.strip_prefix("m=") {
            current = if rest.starts_with("audio") {
                Some(TrackKind::Audio)
            } else if rest.starts_with("video") {
                Some(TrackKind::Video)
            } else {
                None
            };
        } else if let (Some(kind), Some(mid)) = (current, line.strip_prefix("a=mid:")) {
            out.push((kind, mid.trim().to_owned()));
            current = None;
        }
    }
    out
}

impl Engine {
    pub(crate) fn new(
        socket: Arc<UdpSocket>,
        local: SocketAddr,
        config: EngineConfig,
        stats_tx: tokio::sync::watch::Sender<EngineStats>,
    ) -> Self {
        Self {
            socket,
            local,
            rooms: Rooms::new(RoomsConfig {
                secret: config.secret,
                silence_timeout: config.silence_timeout,
                max_participants: config.max_participants,
                grid_rooms: config.grid_rooms,
            }),
            peers: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            timers: BinaryHeap::new(),
            dirty: HashSet::new(),
            outbox: Vec::new(),
            next_ufrag: 0,
            simulate_loss_every: config.simulate_loss_every,
            video_written: 0,
            grid: config.grid,
            mixers: HashMap::new(),
            stats: EngineStats::default(),
            stats_tx,
        }
    }

    /// Runs until `commands` closes or `shutdown` fires.
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut buf = vec![0u8; 2048];
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut grid_tick = tokio::time::interval(Duration::from_micros(
            1_000_000 / self.grid.fps.max(1) as u64,
        ));
        grid_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            self.flush().await;
            let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
            let sleep = tokio::time::sleep_until(
                next_timer
                    .map(tokio::time::Instant::from_std)
                    .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => {
                        let now = Instant::now();
                        self.on_datagram(&buf[..n], from, now);
                        // Take what else is already waiting before the next flush, so one
                        // pass (and one batch of sends) serves several arrivals. Few: every
                        // arrival fans out to each subscriber's queue until the flush, and
                        // a deep batch shows up as memory.
                        for _ in 1..RECEIVE_BATCH {
                            match self.socket.try_recv_from(&mut buf) {
                                Ok((n, from)) => self.on_datagram(&buf[..n], from, now),
                                Err(_) => break,
                            }
                        }
                    }
                    Err(e) => tracing::debug!("udp receive: {e}"),
                },
                command = commands.recv() => match command {
                    Some(c) => self.on_command(c, Instant::now()),
                    None => break,
                },
                _ = sleep => self.on_timers(Instant::now()),
                _ = tick.tick() => self.on_tick(Instant::now()),
                _ = grid_tick.tick(), if !self.mixers.is_empty() => self.on_grid_tick(Instant::now()),
                _ = shutdown.changed() => break,
            }
        }
        let ids: Vec<SessionId> = self.peers.keys().copied().collect();
        for id in ids {
            self.rooms.closed(id, LeaveReason::ServerShutdown);
        }
        self.flush().await;
    }

    // ---- I/O ----

    fn on_datagram(&mut self, data: &[u8], from: SocketAddr, now: Instant) {
        let key = match self.by_addr.get(&from) {
            Some(k) => Some(*k),
            None => stun_server_ufrag(data).and_then(|u| self.by_ufrag.get(u).copied()),
        };
        let Some(key) = key else {
            self.stats.unroutable += 1;
            return;
        };
        self.by_addr.insert(from, key);
        let local = self.local;
        self.rooms.heard(key.0, now);
        let Some(peer) = self.peers.get_mut(&key.0) else {
            return;
        };
        let Some(pc) = peer.pc_mut(key.1) else {
            return;
        };
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        if let Err(e) = pc.pc.handle_read(msg) {
            tracing::debug!("session {} {:?}: read: {e}", key.0, key.1);
        }
        self.dirty.insert(key);
    }

    fn on_timers(&mut self, now: Instant) {
        while let Some(Reverse((t, key))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(pc) = self.peers.get_mut(&key.0).and_then(|s| s.pc_mut(key.1)) else {
                continue;
            };
            if pc.deadline != Some(t) {
                continue; // superseded by a newer deadline
            }
            pc.deadline = None;
            if let Err(e) = pc.pc.handle_timeout(now) {
                tracing::debug!("session {} {:?}: timeout: {e}", key.0, key.1);
            }
            self.dirty.insert(key);
        }
    }

    fn on_tick(&mut self, now: Instant) {
        self.rooms.tick(now);
        self.stats.participants = self.rooms.participant_count();
        let _ = self.stats_tx.send(self.stats.clone());
    }

    /// Carries out the room policy's decisions.
    fn apply_effects(&mut self) {
        while let Some(effect) = self.rooms.poll_effect() {
            match effect {
                Effect::Send(id, message) => {
                    if let Some(peer) = self.peers.get(&id) {
                        peer.send(message);
                    }
                }
                Effect::Close(id) => self.teardown(id),
            }
        }
    }

    /// Closes a session's connections and its WebSocket.
    fn teardown(&mut self, id: SessionId) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        for pc in [peer.publisher.take(), peer.subscriber.take()]
            .into_iter()
            .flatten()
        {
            self.by_ufrag.remove(&pc.ufrag);
            let mut pc = pc;
            let _ = pc.pc.close();
        }
        self.by_addr.retain(|_, k| k.0 != id);
        let _ = peer.tx.send(Outbound::Close);
    }

    /// Drains every connection touched since the last flush: datagrams to send, events,
    /// incoming media; then re-arms its timer.
    async fn flush(&mut self) {
        self.apply_effects();
        let mut rounds = 0;
        while !self.dirty.is_empty() && rounds < 8 {
            rounds += 1;
            let keys: Vec<PcKey> = self.dirty.drain().collect();
            for key in keys {
                self.drain_pc(key);
            }
            self.apply_effects();
        }
        if !self.outbox.is_empty() {
            let outbox = std::mem::take(&mut self.outbox);
            super::udp::send_all(&self.socket, &outbox).await;
            // Keep the allocation for the next pass.
            self.outbox = outbox;
            self.outbox.clear();
        }
    }

    fn drain_pc(&mut self, key: PcKey) {
        let now = Instant::now();
        let mut datagrams = Vec::new();
        let mut events = Vec::new();
        let mut messages = Vec::new();
        {
            let Some(pc) = self.peers.get_mut(&key.0).and_then(|s| s.pc_mut(key.1)) else {
                return;
            };
            while let Some(ev) = pc.pc.poll_event() {
                events.push(ev);
            }
            while let Some(m) = pc.pc.poll_read() {
                messages.push(m.message);
            }
            while let Some(out) = pc.pc.poll_write() {
                datagrams.push(out);
            }
            if let Some(t) = pc.pc.poll_timeout()
                && pc.deadline != Some(t)
            {
                pc.deadline = Some(t);
                self.timers.push(Reverse((t, key)));
            }
        }
        for out in datagrams {
            self.by_addr.insert(out.transport.peer_addr, key);
            self.outbox.push((out.message, out.transport.peer_addr));
        }
        for ev in events {
            self.on_pc_event(key, ev, now);
        }
        for m in messages {
            self.on_pc_message(key, m, now);
        }
    }

    fn on_pc_event(&mut self, key: PcKey, ev: RTCPeerConnectionEvent, now: Instant) {
        match ev {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                tracing::debug!("session {} {:?}: {state}", key.0, key.1);
                if let Some(pc) = self.peers.get_mut(&key.0).and_then(|p| p.pc_mut(key.1)) {
                    pc.connected = state == RTCPeerConnectionState::Connected;
                }
                if state == RTCPeerConnectionState::Connected && key.1 == PeerRole::Subscriber {
                    // Media can flow now: every video slot starts at a fresh keyframe.
                    self.request_keyframes_for_slots(key.0, now);
                }
                if matches!(
                    state,
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
                ) && self.rooms.member(key.0).is_some()
                {
                    self.rooms.closed(key.0, LeaveReason::ConnectionLost);
                }
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init))
                if key.1 == PeerRole::Publisher =>
            {
                self.on_publisher_track(key.0, init.track_id, init.receiver_id, init.ssrc);
            }
            _ => {}
        }
    }

    fn on_publisher_track(
        &mut self,
        id: SessionId,
        track_id: String,
        receiver: RTCRtpReceiverId,
        ssrc: u32,
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
        let audio_level_id = pc.pc.rtp_receiver(receiver).and_then(|mut r| {
            r.get_parameters()
                .rtp_parameters
                .header_extensions
                .iter()
                .find(|e| e.uri == AUDIO_LEVEL_URI)
                .map(|e| e.id as u8)
        });
        let room_track = publish.source.track_id(&identity);
        let video = publish.kind == TrackKind::Video;
        peer.published.insert(
            track_id,
            Published {
                room_track,
                kind: publish.kind,
                receiver,
                ssrc: Some(ssrc),
                audio_level_id,
                cache: RetransmitCache::new(if video { 1024 } else { 64 }),
                limiter: KeyframeLimiter::new(Duration::from_millis(300)),
            },
        );
    }

    fn on_pc_message(&mut self, key: PcKey, message: RTCMessage, now: Instant) {
        match (key.1, message) {
            (PeerRole::Publisher, RTCMessage::RtpPacket(track_id, packet)) => {
                self.forward(key.0, &track_id, packet, now);
            }
            (PeerRole::Subscriber, RTCMessage::RtcpPacket(_, packets)) => {
                for p in &packets {
                    if let Some(nack) = p.as_any().downcast_ref::<TransportLayerNack>() {
                        let lost: Vec<u16> =
                            nack.nacks.iter().flat_map(|n| n.packet_list()).collect();
                        self.retransmit(key.0, nack.media_ssrc, &lost, now);
                    }
                    let media_ssrc =
                        if let Some(pli) = p.as_any().downcast_ref::<PictureLossIndication>() {
                            Some(pli.media_ssrc)
                        } else {
                            p.as_any()
                                .downcast_ref::<FullIntraRequest>()
                                .and_then(|fir| fir.fir.first().map(|e| e.ssrc))
                        };
                    if let Some(ssrc) = media_ssrc {
                        self.on_subscriber_keyframe_request(key.0, ssrc, now);
                    }
                }
            }
            _ => {}
        }
    }

    // ---- media ----

    fn forward(&mut self, publisher: SessionId, track_id: &str, packet: rtp::Packet, now: Instant) {
        self.stats.packets_in += 1;
        let Some(room) = self.rooms.member(publisher).map(|(r, _)| r.to_owned()) else {
            return;
        };
        let Some(published) = self
            .peers
            .get_mut(&publisher)
            .and_then(|p| p.published.get_mut(track_id))
        else {
            return;
        };
        published.ssrc = Some(packet.header.ssrc);
        let video = published.kind == TrackKind::Video;
        let header = InHeader {
            ssrc: packet.header.ssrc,
            seq: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            keyframe_start: !video || rtp_payload_starts_keyframe(&packet.payload),
        };
        published.cache.insert(header, packet.payload.clone());
        let level = published
            .audio_level_id
            .and_then(|id| packet.header.get_extension(id))
            .and_then(|ext| audio_level_dbov(&ext));
        let room_track = published.room_track.clone();
        if let Some(level) = level {
            self.rooms.audio_level(publisher, level, now);
        }
        if video && self.rooms.is_grid_room(&room) {
            let identity = self
                .rooms
                .member(publisher)
                .map(|(_, i)| i.to_owned())
                .unwrap_or_default();
            if let Some(mixer) = self.mixer(&room, now) {
                mixer.input(&room_track, &identity, &header, &packet.payload);
                if mixer.needs_keyframe(&room_track) {
                    self.request_keyframe(publisher, track_id, now);
                }
            }
        }
        let want_keyframe =
            self.send_to_carriers(&room, &room_track, &header, &packet.payload, video, now);
        if want_keyframe {
            self.request_keyframe(publisher, track_id, now);
        }
    }

    /// Writes one packet to every subscriber slot carrying `track`, each with its own header
    /// rewrite. Returns whether a subscriber waits for a keyframe.
    fn send_to_carriers(
        &mut self,
        room: &str,
        room_track: &str,
        header: &InHeader,
        payload: &bytes::Bytes,
        video: bool,
        now: Instant,
    ) -> bool {
        let mut want_keyframe = false;
        for &(sub_id, slot_index) in self.rooms.carriers(room, room_track) {
            if self.rooms.slot_track(sub_id, slot_index) != Some(room_track) {
                continue;
            }
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
            match slot.down.forward(header) {
                Forwarding::Send(out) => {
                    if video && let Some(n) = self.simulate_loss_every {
                        self.video_written += 1;
                        if self.video_written.is_multiple_of(n as u64) {
                            continue;
                        }
                    }
                    let sender = slot.sender;
                    let Some(pc) = sub.subscriber.as_mut() else {
                        continue;
                    };
                    if let Some(mut s) = pc.pc.rtp_sender(sender) {
                        match s.write_rtp(now, out_packet(&out, payload.clone())) {
                            Ok(()) => self.stats.packets_out += 1,
                            Err(e) => tracing::trace!("write_rtp to session {sub_id}: {e}"),
                        }
                    }
                    self.dirty.insert((sub_id, PeerRole::Subscriber));
                }
                Forwarding::WaitingForKeyframe => want_keyframe = true,
                _ => {}
            }
        }
        want_keyframe
    }

    /// The room's grid mixer, created on first use.
    fn mixer(&mut self, room: &str, now: Instant) -> Option<&mut Mixer> {
        if !self.mixers.contains_key(room) {
            self.next_ufrag += 1;
            match Mixer::new(self.grid, random_u32(self.next_ufrag ^ 0x6d69_7865), now) {
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

    /// Composes, encodes and sends one frame of every room's grid.
    fn on_grid_tick(&mut self, now: Instant) {
        let rooms: Vec<String> = self.mixers.keys().cloned().collect();
        for room in rooms {
            let people = self.rooms.publishers(&room);
            if people.is_empty() {
                self.mixers.remove(&room);
                continue;
            }
            let Some(mixer) = self.mixers.get_mut(&room) else {
                continue;
            };
            mixer.retain_tracks(|t| people.iter().any(|p| t.starts_with(&format!("{}/", p.id))));
            let packets = mixer.produce(&people, now);
            let mut want_keyframe = false;
            for (header, payload) in &packets {
                want_keyframe |=
                    self.send_to_carriers(&room, GRID_TRACK, header, payload, true, now);
            }
            if want_keyframe && let Some(mixer) = self.mixers.get_mut(&room) {
                mixer.request_keyframe();
            }
        }
    }

    /// The room track a subscriber's slot (found by its sending SSRC) carries, and that
    /// track's publisher.
    fn slot_source(
        &self,
        subscriber: SessionId,
        out_ssrc: u32,
    ) -> Option<(usize, String, SessionId)> {
        let room = self.rooms.member(subscriber)?.0;
        let slot = self
            .peers
            .get(&subscriber)?
            .slots
            .iter()
            .position(|s| s.down.out_ssrc() == out_ssrc)?;
        let track = self.rooms.slot_track(subscriber, slot)?.to_owned();
        let publisher = self.rooms.publisher_of(room, &track)?;
        Some((slot, track, publisher))
    }

    /// Answers a subscriber's NACK from the publisher's retransmission cache, with the same
    /// header rewrite the original packets had.
    fn retransmit(&mut self, subscriber: SessionId, out_ssrc: u32, lost: &[u16], now: Instant) {
        let Some((slot_index, track, publisher)) = self.slot_source(subscriber, out_ssrc) else {
            return;
        };
        let mut packets = Vec::new();
        if let (Some(pubs), Some(sub)) = (self.peers.get(&publisher), self.peers.get(&subscriber))
            && let Some(published) = pubs.published.values().find(|p| p.room_track == track)
        {
            let down = &sub.slots[slot_index].down;
            for &out_seq in lost {
                if let Some((ssrc, in_seq)) = down.publisher_seq(out_seq)
                    && let Some((header, payload)) = published.cache.get(ssrc, in_seq)
                    && let Some(out) = down.rewrite(header)
                {
                    packets.push(out_packet(&out, payload.clone()));
                }
            }
        }
        if let Some(sub) = self.peers.get_mut(&subscriber) {
            let sender = sub.slots[slot_index].sender;
            if let Some(pc) = sub.subscriber.as_mut()
                && let Some(mut s) = pc.pc.rtp_sender(sender)
            {
                for p in packets {
                    if s.write_rtp(now, p).is_ok() {
                        self.stats.retransmitted += 1;
                    }
                }
                self.dirty.insert((subscriber, PeerRole::Subscriber));
            }
        }
    }

    fn request_keyframes_for_slots(&mut self, subscriber: SessionId, now: Instant) {
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

    fn on_subscriber_keyframe_request(
        &mut self,
        subscriber: SessionId,
        out_ssrc: u32,
        now: Instant,
    ) {
        let Some((_, track, publisher)) = self.slot_source(subscriber, out_ssrc) else {
            return;
        };
        if publisher == GRID_SESSION {
            if let Some(room) = self.rooms.member(subscriber).map(|(r, _)| r.to_owned())
                && let Some(mixer) = self.mixers.get_mut(&room)
            {
                mixer.request_keyframe();
            }
            return;
        }
        let track_id = self.peers.get(&publisher).and_then(|p| {
            p.published
                .iter()
                .find(|(_, pubd)| pubd.room_track == track)
                .map(|(id, _)| id.clone())
        });
        if let Some(track_id) = track_id {
            self.request_keyframe(publisher, &track_id, now);
        }
    }

    // ---- signalling ----

    fn on_command(&mut self, command: Command, now: Instant) {
        match command {
            Command::Open { session, room, tx } => {
                self.rooms.open(session, room, now);
                self.peers.insert(
                    session,
                    Peer {
                        tx,
                        publisher: None,
                        subscriber: None,
                        publish_mids: HashMap::new(),
                        published: HashMap::new(),
                        slots: Vec::new(),
                    },
                );
            }
            Command::Closed { session, code } => {
                let reason = if code.is_some() {
                    LeaveReason::Error
                } else {
                    LeaveReason::ConnectionLost
                };
                self.rooms.closed(session, reason);
                // A session that never joined has no room to leave, but still has a peer.
                self.teardown(session);
            }
            Command::Message { session, message } => {
                let unix_now = super::token::unix_now();
                match self.rooms.message(session, message, now, unix_now) {
                    Some(Work::Offer { pc, sdp, publish }) => {
                        self.on_offer(session, pc, sdp, publish, now)
                    }
                    Some(Work::Candidate { pc, candidate }) => {
                        self.on_candidate(session, pc, candidate)
                    }
                    None => {}
                }
            }
        }
    }

    fn on_offer(
        &mut self,
        id: SessionId,
        role: PeerRole,
        sdp: String,
        publish: Vec<PublishTrack>,
        now: Instant,
    ) {
        if let Err(e) = self.ensure_pc(id, role, now) {
            return self.rooms.fail(id, ErrorCode::Internal, &e);
        }
        match role {
            PeerRole::Publisher => match self.answer_publisher(id, sdp, &publish, now) {
                Ok(answer) => {
                    if let Some(p) = self.peers.get(&id) {
                        p.send(ServerMessage::Answer {
                            pc: role,
                            sdp: answer,
                        });
                    }
                    self.dirty.insert((id, role));
                    self.rooms.published(id, &publish);
                }
                Err(e) => self.rooms.fail(id, ErrorCode::NegotiationFailed, &e),
            },
            PeerRole::Subscriber => {
                let m_lines = sdp_m_lines(&sdp);
                // Slots this connection already has keep their place; new m-lines are new slots.
                let known: HashSet<String> = self.known_mids(id);
                match self.answer_subscriber(id, sdp, &m_lines, now, &known) {
                    Ok((answer, added)) => {
                        if let Some(p) = self.peers.get(&id) {
                            p.send(ServerMessage::Answer {
                                pc: role,
                                sdp: answer,
                            });
                        }
                        self.dirty.insert((id, role));
                        self.rooms.slots_added(id, added);
                    }
                    Err(e) => self.rooms.fail(id, ErrorCode::NegotiationFailed, &e),
                }
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

    fn request_keyframe(&mut self, publisher: SessionId, track_id: &str, now: Instant) {
        let Some(session) = self.peers.get_mut(&publisher) else {
            return;
        };
        let Some(published) = session.published.get_mut(track_id) else {
            return;
        };
        let (Some(ssrc), true) = (published.ssrc, published.kind == TrackKind::Video) else {
            return;
        };
        if !published.limiter.allow(now) {
            return;
        }
        let receiver = published.receiver;
        if let Some(pc) = session.publisher.as_mut()
            && let Some(mut r) = pc.pc.rtp_receiver(receiver)
        {
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: ssrc,
            };
            if r.write_rtcp(now, vec![Box::new(pli)]).is_ok() {
                self.stats.keyframe_requests += 1;
            }
            self.dirty.insert((publisher, PeerRole::Publisher));
        }
    }

    fn ensure_pc(&mut self, id: SessionId, role: PeerRole, now: Instant) -> Result<(), String> {
        let exists = self
            .peers
            .get_mut(&id)
            .is_some_and(|s| s.pc_mut(role).is_some());
        if exists {
            return Ok(());
        }
        self.next_ufrag += 1;
        let ufrag = random_string(16, self.next_ufrag);
        let pwd = random_string(32, self.next_ufrag ^ 0x5a5a);
        let pc =
            new_peer_connection(role, &ufrag, &pwd, self.local, now).map_err(|e| e.to_string())?;
        let Some(peer) = self.peers.get_mut(&id) else {
            return Err("session gone".into());
        };
        let slot = match role {
            PeerRole::Publisher => &mut peer.publisher,
            PeerRole::Subscriber => &mut peer.subscriber,
        };
        *slot = Some(Pc {
            pc,
            ufrag: ufrag.clone(),
            connected: false,
            deadline: None,
        });
        self.by_ufrag.insert(ufrag, (id, role));
        Ok(())
    }

    fn answer_publisher(
        &mut self,
        id: SessionId,
        sdp: String,
        publish: &[PublishTrack],
        now: Instant,
    ) -> Result<String, String> {
        let peer = self.peers.get_mut(&id).ok_or("session gone")?;
        for p in publish {
            peer.publish_mids.insert(p.mid.clone(), p.clone());
        }
        let pc = peer.publisher.as_mut().ok_or("no publisher connection")?;
        let offer = RTCSessionDescription::offer(sdp).map_err(|e| e.to_string())?;
        pc.pc
            .set_remote_description(now, offer)
            .map_err(|e| e.to_string())?;
        let answer = pc.pc.create_answer(None).map_err(|e| e.to_string())?;
        let text = answer.sdp.clone();
        pc.pc
            .set_local_description(now, answer)
            .map_err(|e| e.to_string())?;
        Ok(pc.pc.local_description().map(|d| d.sdp).unwrap_or(text))
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
        let offer = RTCSessionDescription::offer(sdp).map_err(|e| e.to_string())?;
        pc.pc
            .set_remote_description(now, offer)
            .map_err(|e| e.to_string())?;
        let mut new_slots = Vec::new();
        for (kind, mid) in m_lines.iter().filter(|(_, mid)| !known.contains(mid)) {
            let n = session_slot_seed(id, mid);
            let ssrc = random_u32(n);
            let payload_type = match kind {
                TrackKind::Audio => opus_codec().payload_type,
                TrackKind::Video => h264_codec().payload_type,
            };
            let track = media_track(
                format!("madang-{identity}"),
                format!("slot-{mid}"),
                *kind,
                ssrc,
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
            if let Some(mut s) = pc.pc.rtp_sender(slot.sender)
                && let Some(codec) = s.get_parameters().rtp_parameters.codecs.first()
            {
                slot.down = DownTrack::new(
                    slot.down.out_ssrc(),
                    codec.payload_type,
                    slot.kind == TrackKind::Video,
                );
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

    fn on_candidate(&mut self, id: SessionId, role: PeerRole, candidate: IceCandidate) {
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

fn session_slot_seed(id: SessionId, mid: &str) -> u64 {
    mid.bytes()
        .fold(id.wrapping_mul(0x9e37_79b9_7f4a_7c15), |h, b| {
            h.rotate_left(5) ^ b as u64
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m_lines_in_order() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";
        assert_eq!(
            sdp_m_lines(sdp),
            vec![
                (TrackKind::Video, "0".to_string()),
                (TrackKind::Audio, "1".to_string())
            ]
        );
    }

    #[test]
    fn random_strings() {
        let a = random_string(16, 1);
        assert_eq!(a.len(), 16);
        assert_ne!(a, random_string(16, 2));
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
