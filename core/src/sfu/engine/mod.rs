//! The server core: every participant's sans-I/O peer connection, the room policy and the
//! media routing, as one state machine with no sockets, threads or clock.
//!
//! It is driven like str0m or quinn-proto: feed it inputs with an explicit `now` —
//! [`handle_command`](Engine::handle_command) (signal sessions),
//! [`handle_datagram`](Engine::handle_datagram) (UDP), [`handle_timeout`](Engine::handle_timeout)
//! — then drain its outputs — [`poll_transmit`](Engine::poll_transmit) (datagrams to send),
//! [`poll_event`](Engine::poll_event) (messages for signal sessions) — until
//! [`poll_timeout`](Engine::poll_timeout) says when to call it next. The tokio driver
//! (`Server`) owns the socket and the clock; tests drive it on simulated time over a
//! simulated network.
//!
//! Decisions come from the pure policies — [`rooms`](super::rooms) (membership, tracks, slots,
//! speakers, timeouts) and [`forward`](super::forward) (per-packet rewriting, retransmission,
//! keyframe limits). Effects are drained in a fixed order (sessions and connections in
//! ascending id), so a run is reproducible.
//!
//! ```
//! use std::time::Instant;
//! use madang::sfu::engine::{Command, Engine, EngineConfig, Event};
//! use madang::signal::{ClientMessage, PROTOCOL_VERSION, ServerMessage};
//!
//! let now = Instant::now();
//! let mut engine = Engine::new(EngineConfig::new("secret"), "127.0.0.1:7880".parse().unwrap(), now);
//! engine.handle_command(now, Command::Open { session: 1, room: None });
//! engine.handle_command(now, Command::Message {
//!     session: 1,
//!     message: ClientMessage::Join {
//!         protocol: PROTOCOL_VERSION,
//!         token: "not a token".into(),
//!         auto_subscribe: true,
//!         name: None,
//!     },
//! });
//! assert!(matches!(engine.poll_event(), Some(Event::Send(1, ServerMessage::Error { .. }))));
//! assert!(matches!(engine.poll_event(), Some(Event::Close(1))));
//! ```

mod downlink;
mod media;
mod negotiate;
mod probe;
mod published;
mod record;

pub use downlink::Downlink;
pub use probe::PROBE_TIME;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;

use super::allocate::Allocator;
use super::forward::{DownTrack, RetransmitCache};
use super::mixer::{GridConfig, GridRunner};
use super::peer::stun_server_ufrag;
pub use super::rooms::SessionId;
use super::rooms::{Effect, Rooms, RoomsConfig, Work};
use crate::signal::{
    ClientMessage, ErrorCode, LeaveReason, PeerRole, PublishTrack, ServerMessage, TrackKind,
};
use crate::transport::cc::{LossWindow, SendEstimate};
use crate::transport::dtls::HandshakeGuard;
use published::Published;

/// An input from a signal session (one WebSocket, or one simulated client).
#[derive(Clone, Debug)]
pub enum Command {
    /// A session opened; `room` is the room named in its URL, if any.
    Open {
        /// Its id, unique for the engine's lifetime, chosen by the driver.
        session: SessionId,
        /// `?room=` of the URL.
        room: Option<String>,
    },
    /// A message from the client.
    Message {
        /// From which session.
        session: SessionId,
        /// The message.
        message: ClientMessage,
    },
    /// The session closed, or its driver gave up on it with `code`.
    Closed {
        /// Which.
        session: SessionId,
        /// Why, when it was an error.
        code: Option<ErrorCode>,
    },
}

/// An output for a signal session.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Send this message to the session.
    Send(SessionId, ServerMessage),
    /// Close the session (after the messages already sent to it).
    Close(SessionId),
    /// Session `session` resumed over the WebSocket opened as `via`: send its messages
    /// there from now on (and close its old WebSocket if still open).
    Resume {
        /// The session resumed.
        session: SessionId,
        /// The WebSocket that took it over.
        via: SessionId,
    },
}

/// A datagram to send from the server's UDP port.
#[derive(Debug)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddr,
    /// The bytes.
    pub data: BytesMut,
}

/// Settings of an [`Engine`].
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Secret that signs tokens.
    pub secret: Vec<u8>,
    /// A participant silent for this long (no signal message, no media) is removed.
    pub silence_timeout: Duration,
    /// Participants per room.
    pub max_participants: usize,
    /// Per-session and per-server limits.
    pub limits: crate::sfu::Limits,
    /// Testing aid: drop every n-th video packet towards subscribers.
    pub simulate_loss_every: Option<u32>,
    /// Rooms with a composited grid (MCU mode).
    pub grid_rooms: Vec<String>,
    /// Broadcast rooms (only hosts and promoted speakers publish).
    pub broadcast_rooms: Vec<String>,
    /// Canvas, frame rate and bitrate of those grids.
    pub grid: GridConfig,
    /// Seed of ICE credentials and SSRCs. `None` (the default) seeds from the operating
    /// system's random source; a fixed seed makes simulated runs repeatable.
    pub seed: Option<u64>,
    /// Decode, compose and encode each grid on a thread of its own (the default), so that a
    /// busy grid room never delays forwarding; off, grids work inline (deterministic, for
    /// simulation).
    pub grid_thread: bool,
    /// How long a session whose WebSocket dropped waits for a `resume` while its media
    /// flows (a session silent for [`DETACHED_SILENCE`](super::rooms::DETACHED_SILENCE)
    /// leaves sooner); zero: it leaves at once.
    pub resume_grace: Duration,
    /// Where the server records, and which rooms from their start; `None`: it does not
    /// record. The files are written by whoever drains [`Engine::poll_record`].
    pub record: Option<super::record::RecordConfig>,
}

impl EngineConfig {
    /// Defaults (15 s silence timeout, 1000 participants per room, no grid rooms) with
    /// `secret`.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
            silence_timeout: Duration::from_secs(15),
            max_participants: 1000,
            limits: crate::sfu::Limits::default(),
            simulate_loss_every: None,
            grid_rooms: Vec::new(),
            broadcast_rooms: Vec::new(),
            grid: GridConfig::default(),
            seed: None,
            grid_thread: true,
            resume_grace: Duration::from_secs(15),
            record: None,
        }
    }
}

/// Counters the server reports.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    /// RTP packets received from publishers.
    pub packets_in: u64,
    /// RTP packets written towards subscribers.
    pub packets_out: u64,
    /// Packets of a track that a connected subscriber's slot carries but that were not
    /// written to it because its video was paused (downlink estimate, paused by the
    /// subscriber, off screen) or the packet came stale (older than what was sent).
    pub packets_not_forwarded: u64,
    /// Packets not written to a subscriber's slot because it waited for a keyframe: a
    /// video starting, or switching to another simulcast layer. Packets of a layer other
    /// than the slot's are not counted.
    pub packets_awaiting_keyframe: u64,
    /// Datagrams the operating system refused to send (filled by the driver).
    pub send_failures: u64,
    /// Datagrams that matched no connection.
    pub unroutable: u64,
    /// Keyframe requests sent to publishers.
    pub keyframe_requests: u64,
    /// Packets resent to subscribers from the retransmission caches (answers to NACKs).
    pub retransmitted: u64,
    /// NACK entries sent to publishers for packets lost on their way to the server.
    pub upstream_nacks: u64,
    /// Audio packets lost on their way to the server and rebuilt from the copy a later
    /// packet carried (redundant audio, RFC 2198), then forwarded.
    pub audio_copies_used: u64,
    /// Audio packets sent to subscribers with a copy of an earlier one (redundant audio,
    /// to madang clients whose downlink loses).
    pub audio_copies_sent: u64,
    /// Packets a publisher resent in a retransmission stream of its own (RTX, RFC 4588:
    /// browsers), restored to the stream they repair: repairs the server asked for, and the
    /// old packets a browser resends in it to probe for bandwidth.
    pub rtx_received: u64,
    /// Retransmissions sent to subscribers in a retransmission stream (RTX, negotiated
    /// with subscribers that offered it: browsers); part of `retransmitted`.
    pub rtx_sent: u64,
    /// Publishing connections replaced by a new offer because they never came up.
    pub publisher_restarts: u64,
    /// Subscribing connections replaced because the client offered a new one while this one
    /// was not up.
    pub subscriber_restarts: u64,
    /// Participants currently joined.
    pub participants: usize,
    /// Rooms currently open (a room closes with its last participant).
    pub rooms: usize,
    /// Sessions the core holds: joined or not yet (each with its connections, if any).
    pub sessions: usize,
    /// Grid input packets dropped because a grid's thread fell behind.
    pub grid_dropped: u64,
    /// What the simulated network of `ServerConfig::network` did, per direction (filled by
    /// the driver; `None` without impairment).
    pub network: Option<crate::netsim::NetworkStats>,
    /// Videos paused towards a subscriber because its downlink could not carry them.
    pub videos_paused: u64,
    /// Videos resumed after a pause.
    pub videos_resumed: u64,
    /// Simulcast layer changes decided for subscribers (each switches at the new layer's
    /// keyframe).
    pub layer_switches: u64,
    /// Padding probes sent to subscribers before raising what they receive (see
    /// [`crate::sfu::allocate`]).
    pub probes: u64,
    /// Of those, the ones their downlink carried.
    pub probes_carried: u64,
    /// Padding packets the probes sent (older packets again, in retransmission streams).
    pub padding_packets: u64,
    /// Each subscriber's downlink (filled by the driver; see [`Engine::downlinks`]).
    pub downlinks: Vec<Downlink>,
    /// Signal sessions closed because they did not read their messages as fast as they
    /// came (their bounded queue filled; filled by the driver).
    pub slow_sessions_closed: u64,
    /// Remote UDP addresses the core knows (each a connection's ICE-checked path): bogus
    /// datagrams never add one.
    pub addresses: usize,
}

type PcKey = (SessionId, PeerRole);

struct Pc {
    /// Boxed: an `RTCPeerConnection` is several kilobytes inline, and the session map's
    /// B-tree nodes hold eleven peers each — with two of these inline per peer, the nodes
    /// took ~30 KB a viewer (measured with massif, 40 viewers).
    pc: Box<RTCPeerConnection>,
    ufrag: String,
    /// The client's ICE username fragment from its last offer.
    remote_ufrag: Option<String>,
    /// DTLS and SRTP are up: media written now reaches the peer.
    connected: bool,
    /// Deadline currently registered in the timer heap.
    deadline: Option<Instant>,
    /// The send-side estimate towards the client (subscribing connections).
    estimate: Option<SendEstimate>,
    /// Where its datagrams went last: the address is (re)registered for incoming datagrams
    /// only when it changes, not once per packet.
    sent_to: Option<SocketAddr>,
    /// The client restarted ICE (new credentials on a live connection) and the new path is
    /// not up yet.
    ice_restarting: bool,
    /// Keeps its DTLS handshake's retransmission timer alive (see [`HandshakeGuard`]).
    handshake: HandshakeGuard,
}

/// A receive slot's WebRTC side; which track it carries is the room policy's business.
struct SlotRtc {
    kind: TrackKind,
    mid: String,
    sender: RTCRtpSenderId,
    down: DownTrack,
    /// Id of the playout-delay header extension, where the subscriber negotiated it.
    playout_delay: Option<u8>,
    /// The track this slot's video was paused with by the allocation, while it is (the one
    /// record of it: the allocator is told, and `down` is paused alongside).
    paused_track: Option<String>,
    /// While the allocation has it paused: the last packets it forwarded, which padding
    /// probes send again (see `probe::padding_of`; the publisher's cache moves on).
    kept: Vec<rtc::rtp::Packet>,
    /// Its video is not forwarded because the client's layout has no tile for it.
    off_screen: bool,
    /// The subscriber's answer took a codec for it: `down` writes that payload type from
    /// the SSRC its sender was created with, and what is forwarded is written to the
    /// connection directly (see `send_to_carriers`).
    negotiated: bool,
    /// Its retransmission stream, where the subscriber negotiated one (browsers).
    rtx: Option<RtxOut>,
    /// Redundant audio, where a madang subscriber negotiated it.
    red: Option<RedOut>,
}

impl SlotRtc {
    /// Whether it carries a video that flows: neither paused by the allocation nor off
    /// screen.
    fn video_flows(&self) -> bool {
        self.kind == TrackKind::Video && self.paused_track.is_none() && !self.off_screen
    }
}

/// Redundant audio (RFC 2198) to one subscriber's audio slot: switched on while its
/// receiver reports loss (see [`crate::codec::red`]).
struct RedOut {
    /// The payload type the answer gave it.
    payload_type: u8,
    history: crate::codec::red::RedHistory,
    /// The subscriber's estimate has room for them (set at each allocation).
    room: bool,
    /// The slot's loss as its receiver reports it, and whether that calls for copies.
    loss: crate::codec::red::RedSwitch,
}

impl RedOut {
    fn new(payload_type: u8) -> Self {
        Self {
            payload_type,
            history: Default::default(),
            room: true,
            loss: Default::default(),
        }
    }

    /// A receiver report's fraction lost (0..=255) for the slot.
    fn on_report(&mut self, fraction_lost: u8) {
        self.loss.on_report(fraction_lost);
    }

    /// Copies go out now.
    fn sending(&self) -> bool {
        self.loss.wanted() && self.room
    }

    /// The payload to write for `out` carrying `frame`: with a copy of an earlier frame
    /// while copies go out; `None` (the frame alone, remembered) otherwise.
    fn packet(
        &mut self,
        out: &crate::sfu::forward::OutHeader,
        frame: &bytes::Bytes,
    ) -> Option<bytes::Bytes> {
        if !self.sending() {
            self.history.remember(out.seq, out.timestamp, frame);
            return None;
        }
        Some(
            self.history
                .wrap(out.payload_type, out.seq, out.timestamp, frame),
        )
    }
}

/// A subscriber's retransmission stream (RTX, RFC 4588) for one video slot.
#[derive(Clone, Copy, Debug)]
struct RtxOut {
    ssrc: u32,
    /// The payload type the answer gave it.
    payload_type: u8,
    /// The next packet's sequence number in its own numbering.
    seq: u16,
}

/// The WebRTC side of one session.
#[derive(Default)]
struct Peer {
    publisher: Option<Pc>,
    subscriber: Option<Pc>,
    /// Published m-lines announced in offers, by mid.
    publish_mids: HashMap<String, PublishTrack>,
    /// Published tracks by the connection's track id, once media flows.
    published: BTreeMap<String, Published>,
    /// Receive slots, in the same order as the room policy's.
    slots: Vec<SlotRtc>,
    /// When the subscribing connection last asked for a retransmission.
    nacked_at: Option<Instant>,
    /// Which videos its downlink carries.
    allocator: Allocator,
    /// Its receiver reports, gathered for the loss-based half of its estimate.
    losses: LossWindow,
    /// The padding probe under way on its downlink.
    probe: Option<probe::PaddingProbe>,
}

impl Peer {
    fn pc_mut(&mut self, role: PeerRole) -> Option<&mut Pc> {
        match role {
            PeerRole::Publisher => self.publisher.as_mut(),
            PeerRole::Subscriber => self.subscriber.as_mut(),
        }
    }
}

/// Period of the room policy's housekeeping (speaker announcements, silence timeouts).
const TICK: Duration = Duration::from_millis(100);

/// Most rounds of draining connections per settle: a connection's output can make another
/// connection dirty (a publisher's packet fans out to subscribers), never in a cycle longer
/// than this.
const SETTLE_ROUNDS: usize = 8;

/// The server core. See the [module documentation](self).
pub struct Engine {
    local: SocketAddr,
    rooms: Rooms,
    peers: BTreeMap<SessionId, Peer>,
    by_ufrag: HashMap<String, PcKey>,
    by_addr: HashMap<SocketAddr, PcKey>,
    timers: BinaryHeap<Reverse<(Instant, PcKey)>>,
    /// Connections touched since they were last drained.
    dirty: BTreeSet<PcKey>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// The latest `now` an input carried.
    now: Instant,
    next_tick: Instant,
    /// When a NACK to a publisher is due next.
    next_nack: Option<Instant>,
    /// Round-trip time assumed on publishers' legs (refreshed every few seconds).
    upstream_rtt: Duration,
    next_rtt_update: Instant,
    next_grid: Instant,
    next_allocation: Instant,
    /// When the padding probes under way send their next step.
    next_probe_step: Option<Instant>,
    rng: ChaCha20Rng,
    /// A resumed session's WebSocket → the session it carries.
    resumed_via: HashMap<SessionId, SessionId>,
    /// While set, keyframe requests pass the publishers' limiters (see
    /// `request_keyframes_past_limit`).
    keyframes_past_limit: bool,
    simulate_loss_every: Option<u32>,
    video_written: u64,
    grid: GridConfig,
    mixers: BTreeMap<String, GridRunner>,
    /// The grids' recent packets, to answer subscribers' NACKs, by room.
    grid_caches: BTreeMap<String, RetransmitCache>,
    /// Grids compose on threads of their own (off in simulation: inline is deterministic).
    grid_thread: bool,
    /// Recorded rooms' files, when the server records.
    recorder: Option<super::record::Recorder>,
    /// The layer of each recorded simulcast video that goes into its file, by room and room
    /// track.
    recorded_layers: HashMap<(std::sync::Arc<str>, std::sync::Arc<str>), DownTrack>,
    stats: EngineStats,
    /// Packets every publisher leg's [`RepairFlows`](crate::transport::rtx::RepairFlows)
    /// restored (read into `stats` on each tick).
    rtx_received: Arc<AtomicU64>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("local", &self.local)
            .field("sessions", &self.peers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The SDP helpers on an offer and an answer (fuzzing entry point).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_sdp(offer: &str, answer: &str) {
    use crate::signal::{PublishTrack, TrackSource};
    let lines = sdp_m_lines(offer);
    let publish: Vec<PublishTrack> = lines
        .iter()
        .map(|(kind, mid)| PublishTrack {
            mid: mid.clone(),
            kind: *kind,
            source: TrackSource::Camera,
        })
        .collect();
    let _ = negotiate::fuzz_helpers(offer, answer, &publish);
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
    /// A server core whose UDP port is (announced as) `local`, starting at `now`.
    pub fn new(config: EngineConfig, local: SocketAddr, now: Instant) -> Self {
        let rng = match config.seed {
            Some(seed) => ChaCha20Rng::seed_from_u64(seed),
            None => ChaCha20Rng::from_os_rng(),
        };
        Self {
            local,
            rooms: Rooms::new(RoomsConfig {
                secret: config.secret,
                silence_timeout: config.silence_timeout,
                max_participants: config.max_participants,
                limits: config.limits,
                grid_rooms: config.grid_rooms,
                broadcast_rooms: config.broadcast_rooms,
                resume_grace: config.resume_grace,
                // Its own stream: the engine's draws stay as they were.
                seed: config.seed.map(|s| s ^ 0x5245_5355_4d45),
                record: config.record.clone(),
            }),
            peers: BTreeMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            timers: BinaryHeap::new(),
            dirty: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            now,
            next_tick: now + TICK,
            next_nack: None,
            upstream_rtt: crate::transport::jitter::DEFAULT_RTT,
            next_rtt_update: now,
            next_grid: now,
            next_allocation: now + downlink::ALLOCATE_EVERY,
            next_probe_step: None,
            rng,
            resumed_via: HashMap::new(),
            keyframes_past_limit: false,
            simulate_loss_every: config.simulate_loss_every.filter(|&n| n > 0),
            video_written: 0,
            grid: config.grid,
            mixers: BTreeMap::new(),
            grid_caches: BTreeMap::new(),
            grid_thread: config.grid_thread,
            recorder: config.record.map(|r| super::record::Recorder::new(r.dir)),
            recorded_layers: HashMap::new(),
            stats: EngineStats::default(),
            rtx_received: Arc::default(),
        }
    }

    // ---- getters ----

    /// The UDP address announced to peers.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Counters (participants updated on every tick).
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    // ---- inputs ----

    /// A signal session opened, sent a message, or closed.
    pub fn handle_command(&mut self, now: Instant, command: Command) {
        self.advance(now);
        match command {
            Command::Open { session, room } => {
                self.rooms.open(session, room, now);
                self.peers.insert(session, Peer::default());
            }
            Command::Closed { session, code } => {
                let session = match self.resumed_via.remove(&session) {
                    Some(resumed) => resumed,
                    // The old WebSocket of a session resumed elsewhere: nothing to do.
                    None if self.resumed_via.values().any(|s| *s == session) => return,
                    None => session,
                };
                let reason = if code.is_some() {
                    LeaveReason::Error
                } else {
                    LeaveReason::ConnectionLost
                };
                self.rooms.signal_closed(session, reason, now);
                self.apply_effects();
                // A session that never joined has no room to leave, but still has a peer;
                // one kept for a resume keeps its connections.
                if !self.rooms.contains(session) {
                    self.teardown(session);
                }
            }
            Command::Message { session, message } => {
                let session = self.resumed_via.get(&session).copied().unwrap_or(session);
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
        self.settle();
    }

    /// A datagram arrived on the UDP port from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.advance(now);
        let key = match self.by_addr.get(&from) {
            Some(k) => *k,
            None => {
                let Some(key) = stun_server_ufrag(data).and_then(|u| self.by_ufrag.get(u).copied())
                else {
                    self.stats.unroutable += 1;
                    return;
                };
                self.by_addr.insert(from, key);
                key
            }
        };
        let local = self.local;
        self.rooms.heard(key.0, now);
        let Some(pc) = self.peers.get_mut(&key.0).and_then(|p| p.pc_mut(key.1)) else {
            return;
        };
        if !pc.handshake.admit(data) {
            return;
        }
        let msg = crate::transport::datagram(now, local, from, data);
        if let Err(e) = pc.pc.handle_read(msg) {
            tracing::debug!("session {} {:?}: read: {e}", key.0, key.1);
        }
        self.dirty.insert(key);
        // Not settled here: several arrivals in a row share one drain of every connection
        // they touched (the driver takes a few datagrams, then polls).
    }

    /// Time passed: connection timers, the room policy's tick, the grids' frame clock.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
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
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.rooms.tick(now);
            self.tick_recorder(now);
            self.stats.participants = self.rooms.participant_count();
            self.stats.rooms = self.rooms.room_count();
            self.stats.sessions = self.peers.len();
            self.stats.addresses = self.by_addr.len();
            self.stats.rtx_received = self.rtx_received.load(Ordering::Relaxed);
        }
        if self.next_nack.is_some_and(|t| t <= now) {
            self.send_upstream_nacks(now);
        }
        if now >= self.next_rtt_update {
            self.next_rtt_update = now + Duration::from_secs(2);
            self.refresh_upstream_rtt(now);
        }
        if self.next_probe_step.is_some_and(|t| t <= now) {
            self.step_probes(now);
        }
        if now >= self.next_allocation {
            self.next_allocation = now + downlink::ALLOCATE_EVERY;
            self.allocate_downlinks(now);
        }
        if !self.mixers.is_empty() && now >= self.next_grid {
            self.next_grid = now + self.grid_interval();
            self.on_grid_tick(now);
        }
        self.settle();
    }

    /// Tells every participant the server is going away and closes every session.
    pub fn shutdown(&mut self, now: Instant) {
        self.advance(now);
        let ids: Vec<SessionId> = self.peers.keys().copied().collect();
        for id in ids {
            self.rooms.closed(id, LeaveReason::ServerShutdown);
        }
        self.settle();
    }

    // ---- outputs ----

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.settle();
        self.transmits.pop_front()
    }

    /// The next message or close for a signal session.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.settle();
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.settle();
        let mut next = self.next_tick.min(self.next_allocation);
        if let Some(Reverse((t, _))) = self.timers.peek() {
            next = next.min(*t);
        }
        if !self.mixers.is_empty() {
            next = next.min(self.next_grid);
        }
        if let Some(t) = self.next_nack {
            next = next.min(t);
        }
        if let Some(t) = self.next_probe_step {
            next = next.min(t);
        }
        Some(next)
    }

    // ---- internals ----

    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn grid_interval(&self) -> Duration {
        Duration::from_micros(1_000_000 / self.grid.fps.max(1) as u64)
    }

    fn random_string(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..len)
            .map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    }

    /// A random nonzero SSRC.
    fn random_ssrc(&mut self) -> u32 {
        self.rng.random::<u32>() | 1
    }

    /// Drains every connection touched since the last settle — datagrams to send, events,
    /// incoming media — and carries out the room policy's decisions, until nothing is left.
    fn settle(&mut self) {
        self.apply_effects();
        // Each round: what the grids produced (frames mark their subscribers' connections
        // dirty), then every connection touched since. One round more than SETTLE_ROUNDS, so
        // grid frames of the last round still leave with this pass.
        for _ in 0..=SETTLE_ROUNDS {
            let now = self.now;
            self.drain_grids(now);
            if self.dirty.is_empty() {
                break;
            }
            let keys = std::mem::take(&mut self.dirty);
            for key in keys {
                self.drain_pc(key);
            }
            self.apply_effects();
        }
    }

    /// Carries out the room policy's decisions.
    fn apply_effects(&mut self) {
        while let Some(effect) = self.rooms.poll_effect() {
            match effect {
                Effect::Send(id, message) => {
                    if self.peers.contains_key(&id) {
                        self.events.push_back(Event::Send(id, message));
                    }
                }
                Effect::Close(id) => self.teardown(id),
                Effect::EndPublishing(id) => self.end_publishing(id),
                Effect::Record { room, on } => {
                    let now = self.now;
                    self.on_record(&room, on, now);
                }
                Effect::Resume { session, via } => self.resumed(session, via),
            }
        }
    }

    /// Session `session` goes on over WebSocket `via`: `via`'s own (empty) peer goes, the
    /// driver moves the session's messages there, and the videos paused for it are said
    /// again (the client may have missed it).
    fn resumed(&mut self, session: SessionId, via: SessionId) {
        self.peers.remove(&via);
        self.resumed_via.retain(|_, s| *s != session);
        self.resumed_via.insert(via, session);
        self.events.push_back(Event::Resume { session, via });
        let paused: Vec<String> = self
            .peers
            .get(&session)
            .map(|p| {
                p.slots
                    .iter()
                    .filter_map(|s| s.paused_track.clone())
                    .collect()
            })
            .unwrap_or_default();
        for track in paused {
            self.send(
                session,
                ServerMessage::VideoPaused {
                    track,
                    paused: true,
                },
            );
        }
    }

    /// Closes a session's publishing connection with what it published (a host demoted
    /// it): a later promotion starts a new one.
    fn end_publishing(&mut self, id: SessionId) {
        self.drop_pc(id, PeerRole::Publisher);
        self.by_addr.retain(|_, k| *k != (id, PeerRole::Publisher));
        self.dirty.remove(&(id, PeerRole::Publisher));
    }

    /// Sends a message to a session now (answers that the policy does not produce).
    fn send(&mut self, id: SessionId, message: ServerMessage) {
        if self.peers.contains_key(&id) {
            self.events.push_back(Event::Send(id, message));
        }
    }

    /// Closes a session's connections and its signal session.
    fn teardown(&mut self, id: SessionId) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        self.resumed_via.retain(|_, s| *s != id);
        for pc in [peer.publisher.take(), peer.subscriber.take()]
            .into_iter()
            .flatten()
        {
            self.by_ufrag.remove(&pc.ufrag);
            let mut pc = pc;
            let _ = pc.pc.close();
        }
        self.by_addr.retain(|_, k| k.0 != id);
        self.dirty.retain(|k| k.0 != id);
        self.events.push_back(Event::Close(id));
    }

    fn drain_pc(&mut self, key: PcKey) {
        let now = self.now;
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
            // Reading can raise events — a new track with its first packet: handled before
            // that packet, or the packet finds no track (measured with `madang bench sfu`:
            // a center let in lost its first packet at every viewer in three runs of four,
            // and its first picture waited for a keyframe request, 160-200 ms instead of
            // 20-45).
            while let Some(ev) = pc.pc.poll_event() {
                events.push(ev);
            }
            while let Some(out) = pc.pc.poll_write() {
                if pc.sent_to != Some(out.transport.peer_addr) {
                    pc.sent_to = Some(out.transport.peer_addr);
                    self.by_addr.insert(out.transport.peer_addr, key);
                }
                pc.handshake.on_sent(&out.message);
                self.transmits.push_back(Transmit {
                    to: out.transport.peer_addr,
                    data: out.message,
                });
            }
            if let Some(t) = pc.pc.poll_timeout()
                && pc.deadline != Some(t)
            {
                pc.deadline = Some(t);
                self.timers.push(Reverse((t, key)));
            }
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
                match state {
                    RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed => {
                        tracing::info!("session {}: {:?} connection {state}", key.0, key.1)
                    }
                    _ => tracing::debug!("session {}: {:?} connection {state}", key.0, key.1),
                }
                // `Disconnected` is ICE noticing silence (5 s without a packet: an outage, a
                // phone between cells), not death: keep sending, so media is there the
                // moment the path is; `Failed` or `Closed` ends it.
                if state != RTCPeerConnectionState::Disconnected
                    && let Some(pc) = self.peers.get_mut(&key.0).and_then(|p| p.pc_mut(key.1))
                {
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
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                rtc::peer_connection::state::RTCIceConnectionState::Connected,
            ) => {
                let restarted = self
                    .peers
                    .get_mut(&key.0)
                    .and_then(|p| p.pc_mut(key.1))
                    .is_some_and(|pc| std::mem::take(&mut pc.ice_restarting));
                if restarted && key.1 == PeerRole::Subscriber {
                    // A new path after an ICE restart: what went down the old one is lost.
                    self.request_keyframes_past_limit(key.0, now);
                }
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init))
                if key.1 == PeerRole::Publisher =>
            {
                self.on_publisher_track(
                    key.0,
                    init.track_id,
                    init.receiver_id,
                    init.ssrc,
                    init.rid,
                );
            }
            _ => {}
        }
    }

    fn on_pc_message(&mut self, key: PcKey, message: RTCMessage, now: Instant) {
        match (key.1, message) {
            (PeerRole::Publisher, RTCMessage::RtpPacket(track_id, packet)) => {
                self.forward(key.0, &track_id, packet, now);
            }
            (PeerRole::Subscriber, RTCMessage::RtcpPacket(_, packets)) => {
                self.on_subscriber_reports(key.0, &packets, now);
                for p in &packets {
                    if let Some(nack) = p.as_any().downcast_ref::<TransportLayerNack>() {
                        let lost: Vec<u16> =
                            nack.nacks.iter().flat_map(|n| n.packet_list()).collect();
                        if let Some(peer) = self.peers.get_mut(&key.0) {
                            peer.nacked_at = Some(now);
                        }
                        self.retransmit(key.0, nack.media_ssrc, &lost, now);
                    }
                }
                // A FIR that names no SSRC reads as 0, which no slot sends with (the
                // server's SSRCs are odd): ignored.
                for ssrc in crate::transport::keyframe_requests(&packets) {
                    self.on_subscriber_keyframe_request(key.0, ssrc, now);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
