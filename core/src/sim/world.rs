//! [`World`]: the server core and any number of client sessions over a simulated network, on
//! simulated time, driven step by step. Participants join, leave or vanish at any point; the
//! caller sees every room event as it happens.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::codec::{OpusConfig, OpusEncoder, SimulcastEncoder, camera_layers};
use crate::media::{Channels, SpeechSource, TestPattern};
use crate::netsim::{Direction, LinkConfig, Network, Profile, splitmix64};
use crate::room::session::{Phase, Session, SessionConfig};
use crate::room::{RoomEvent, level_dbov};
use crate::sfu::engine::{Command, Engine, EngineConfig, Event, SessionId};
use crate::sfu::token::{Claims, mint, unix_now};
use crate::signal::{ClientMessage, Role, ServerMessage};

use super::SimError;

/// The secret a [`World`]'s server signs tokens with.
pub const SECRET: &str = "madang-sim-secret";

/// What a participant publishes, and how it joins.
#[derive(Clone, Debug)]
pub struct JoinOptions {
    /// Room to join.
    pub room: String,
    /// Role in the token.
    pub role: Role,
    /// Publish the stamped test pattern: `(width, height, fps, kbit/s)`.
    pub video: Option<(u32, u32, u32, u32)>,
    /// Publish the video as simulcast (see
    /// [`simulcast_layers`](crate::codec::simulcast_layers); the kbit/s are the full
    /// size's).
    pub simulcast: bool,
    /// Publish speech-like audio.
    pub audio: bool,
    /// Receive every track as it appears.
    pub auto_subscribe: bool,
    /// Join with this token instead of a valid one for `room`, identity and role.
    pub token: Option<String>,
}

impl Default for JoinOptions {
    /// Room `sim`, a speaker publishing 320×180 at 15 fps and 300 kbit/s with audio.
    fn default() -> Self {
        Self {
            room: "sim".into(),
            role: Role::Speaker,
            video: Some((320, 180, 15, 300)),
            simulcast: false,
            audio: true,
            auto_subscribe: true,
            token: None,
        }
    }
}

struct Media {
    encoder: Option<SimulcastEncoder>,
    pattern: Option<TestPattern>,
    frame_interval: Duration,
    opus: Option<OpusEncoder>,
    speech: SpeechSource,
    next_video: Instant,
    next_audio: Instant,
    /// Simulcast layers not sent whatever the uplink carries ([`World::hold_layer`]).
    held: Vec<usize>,
}

/// One simulated participant.
pub struct Participant {
    identity: String,
    session: Session,
    media: Media,
    gone: bool,
    video_sent: u32,
    audio_sent: u64,
    /// Its local addresses now (publishing, receiving).
    addrs: (SocketAddr, SocketAddr),
    /// The server's id of its signal connection now (a new one after each reconnect).
    socket: SessionId,
    /// Its signal connection carries messages (false from a drop until a new one opens).
    signal_up: bool,
    /// A new signal connection is on its way.
    reopening: bool,
    /// No new signal connection opens before this (the network is down until then).
    reopen_not_before: Instant,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("identity", &self.identity)
            .field("phase", self.session.phase())
            .finish_non_exhaustive()
    }
}

impl Participant {
    /// Its identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Its session (phase, counters).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Its session, to send protocol messages.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// Pictures captured so far (the next picture's stamp number).
    pub fn video_sent(&self) -> u32 {
        self.video_sent
    }

    /// Audio frames captured so far.
    pub fn audio_sent(&self) -> u64 {
        self.audio_sent
    }
}

/// A message on the way between a session and the server (signal is reliable and ordered:
/// it only takes the link's base delay).
/// Each names the signal connection (the server's session id) it travels on; a message on a
/// connection that dropped is lost.
enum Hop {
    ToServer(SessionId, ClientMessage),
    ToClient(SessionId, ServerMessage),
    /// The server closed it on purpose (`true`: a close frame) or it dropped.
    CloseClient(SessionId, bool),
    ServerClosed(SessionId),
    /// Participant `i` has a new signal connection.
    Reopen(usize),
}

/// The server core, the participants and the network between them. See the
/// [module documentation](self).
pub struct World {
    t0: Instant,
    now: Instant,
    seed: u64,
    engine: Engine,
    network: Network<usize, Vec<u8>>,
    signal_delay: Duration,
    signals: VecDeque<(Instant, Hop)>,
    /// Signal connection (the server's session id) → participant.
    sockets: HashMap<SessionId, usize>,
    /// A resumed session → the signal connection that carries it now.
    routes: HashMap<SessionId, SessionId>,
    next_socket: SessionId,
    by_addr: HashMap<SocketAddr, usize>,
    participants: Vec<Participant>,
    /// Wake-ups whose due time had already passed when the world settled: a component
    /// asking to be woken in the past spins its driver (see [`World::late_wakeups`]).
    late_wakeups: u64,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("elapsed", &self.elapsed())
            .field("participants", &self.participants)
            .finish_non_exhaustive()
    }
}

fn server_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 7880)
}

/// A participant's two local addresses: 10.1.x.y:5000 (publishing) and :5001 (receiving).
fn client_addrs(i: usize) -> (SocketAddr, SocketAddr) {
    let ip = IpAddr::V4(Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250) as u8 + 1));
    (SocketAddr::new(ip, 5000), SocketAddr::new(ip, 5001))
}

/// Bytes of the address in front of a simulated datagram.
const ADDR_BYTES: usize = 18;

/// A datagram on a participant's link carries the participant-side address it belongs to
/// (the network is keyed by participant, the session by local address). Only the simulation
/// sees this framing.
fn frame_datagram(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ADDR_BYTES + data.len());
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    out.extend_from_slice(&ip.octets());
    out.extend_from_slice(&addr.port().to_be_bytes());
    out.extend_from_slice(data);
    out
}

fn framed_addr(data: &[u8]) -> SocketAddr {
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&data[..16]);
    let ip = std::net::Ipv6Addr::from(ip);
    let ip = ip
        .to_ipv4_mapped()
        .map(IpAddr::V4)
        .unwrap_or(IpAddr::V6(ip));
    SocketAddr::new(ip, u16::from_be_bytes([data[16], data[17]]))
}

/// What a datagram costs on a simulated rate-capped link.
///
/// DTLS handshake records differ by a few bytes from run to run — ECDSA signatures with a
/// random nonce, DER-encoded in 70–72 bytes (measured: the same conference twice differed by
/// 3 bytes in its first DTLS flight). Charged at their true size, they would shift delivery
/// times by microseconds and two runs of one seed would drift apart. So every DTLS datagram
/// (first byte 20–63, RFC 7983) is charged as a full 1200-byte one; everything else (STUN,
/// SRTP, SRTCP) has a size that follows from the seed and is charged as it is.
fn charged_len(data: &[u8]) -> usize {
    const DTLS_CHARGE: usize = 1200;
    match data.first() {
        Some(20..=63) => DTLS_CHARGE.max(data.len().div_ceil(DTLS_CHARGE) * DTLS_CHARGE),
        _ => data.len(),
    }
}

impl World {
    /// An empty world under `profile`, the server configured by `engine` (its seed is set
    /// from `seed`).
    pub fn new(profile: Profile, seed: u64, mut engine: EngineConfig) -> Self {
        let t0 = Instant::now();
        engine.seed = Some(seed);
        engine.grid_thread = false;
        Self {
            t0,
            now: t0,
            seed,
            engine: Engine::new(engine, server_addr(), t0),
            signal_delay: profile.link.delay,
            sockets: HashMap::new(),
            routes: HashMap::new(),
            next_socket: 1_000_001,
            network: Network::new(profile, t0),
            signals: VecDeque::new(),
            by_addr: HashMap::new(),
            participants: Vec::new(),
            late_wakeups: 0,
        }
    }

    /// Server settings of a world: [`SECRET`] and defaults.
    pub fn engine_config() -> EngineConfig {
        EngineConfig::new(SECRET)
    }

    // ---- getters ----

    /// Simulated time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now.duration_since(self.t0)
    }

    /// The server core.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What the server's recorder has for its writer so far (with
    /// [`EngineConfig::record`]), in order.
    pub fn take_recording(&mut self) -> Vec<crate::sfu::record::RecordOutput> {
        std::iter::from_fn(|| self.engine.poll_record()).collect()
    }

    /// The network.
    pub fn network(&self) -> &Network<usize, Vec<u8>> {
        &self.network
    }

    /// Gives participant `i`'s link in `direction` its own conditions from now on (the
    /// others keep the world's profile).
    pub fn set_link(&mut self, i: usize, direction: Direction, config: LinkConfig) {
        self.network.set_link(i, direction, config);
    }

    /// Bytes participant `i` has offered its uplink so far (media, repairs, control).
    pub fn uplink_bytes(&self, i: usize) -> u64 {
        self.network
            .link_stats(i, Direction::Up)
            .map_or(0, |l| l.bytes)
    }

    /// Participant `i` (in joining order).
    pub fn participant(&self, i: usize) -> &Participant {
        &self.participants[i]
    }

    /// Participant `i`, mutable.
    pub fn participant_mut(&mut self, i: usize) -> &mut Participant {
        &mut self.participants[i]
    }

    /// Participants so far, in joining order.
    pub fn participants(&self) -> &[Participant] {
        &self.participants
    }

    /// A token for `room` signed by the world's server.
    pub fn token(&self, room: &str, identity: &str, role: Role) -> Result<String, SimError> {
        let claims = Claims::new(room, identity, identity, role, unix_now(), 3600);
        Ok(mint(SECRET.as_bytes(), &claims)?)
    }

    // ---- what participants do ----

    /// A new participant opens a signal session and sends its join; returns its index.
    pub fn join(&mut self, identity: &str, options: JoinOptions) -> Result<usize, SimError> {
        let i = self.participants.len();
        let token = match options.token {
            Some(t) => t,
            None => self.token(&options.room, identity, options.role)?,
        };
        let (pub_addr, sub_addr) = client_addrs(i);
        self.by_addr.insert(pub_addr, i);
        self.by_addr.insert(sub_addr, i);
        let fps = options.video.map_or(30, |v| v.2.max(1));
        let layers = options.video.map_or_else(Vec::new, |(w, h, _, kbps)| {
            camera_layers(w, h, kbps * 1000, options.simulcast)
        });
        let config = SessionConfig {
            video: options.video.is_some(),
            audio: options.audio,
            fps,
            auto_subscribe: options.auto_subscribe,
            seed: Some(splitmix64(self.seed ^ (i as u64 + 1))),
            video_bitrate_bps: options.video.map_or(0, |v| v.3 * 1000),
            video_layers: layers.clone(),
            ..SessionConfig::new(token)
        };
        let (encoder, pattern) = match options.video {
            Some((w, h, fps, _)) => (
                Some(SimulcastEncoder::new(&layers, fps.max(1) as f32)?),
                Some(TestPattern::new(w, h).map_err(|_| SimError::Config("picture size"))?),
            ),
            None => (None, None),
        };
        let opus = match options.audio {
            true => Some(OpusEncoder::new(OpusConfig::new(Channels::Mono))?),
            false => None,
        };
        let frame_interval = Duration::from_micros(1_000_000 / fps as u64);
        let socket = i as SessionId + 1;
        self.sockets.insert(socket, i);
        self.engine.handle_command(
            self.now,
            Command::Open {
                session: socket,
                room: None,
            },
        );
        self.participants.push(Participant {
            identity: identity.to_owned(),
            session: Session::new(config, pub_addr, sub_addr, self.now),
            media: Media {
                encoder,
                pattern,
                frame_interval,
                opus,
                speech: SpeechSource::new(Channels::Mono, 20)
                    .map_err(|_| SimError::Config("audio frames"))?,
                // Spread the participants' capture clocks over one frame interval.
                next_video: self.now
                    + Duration::from_micros(i as u64 * 7_919 % frame_interval.as_micros() as u64),
                next_audio: self.now,
                held: Vec::new(),
            },
            gone: false,
            video_sent: 0,
            audio_sent: 0,
            addrs: (pub_addr, sub_addr),
            socket,
            signal_up: true,
            reopening: false,
            reopen_not_before: self.now,
        });
        Ok(i)
    }

    /// Participant `i` leaves: its leave message goes out, its connections close.
    pub fn leave(&mut self, i: usize) {
        self.participants[i].session.leave(self.now);
    }

    /// Participant `i` vanishes without a word (power cut, phone in a tunnel): it sends and
    /// receives nothing from now on, and its signal session stays open until the server
    /// notices the silence.
    pub fn vanish(&mut self, i: usize) {
        self.participants[i].gone = true;
    }

    /// Participant `i` stops sending its simulcast layer `layer` (0 the smallest) whatever
    /// its uplink carries, or sends it again, as a browser pauses a layer when its own
    /// estimate falls. The layer resumes with a keyframe.
    pub fn hold_layer(&mut self, i: usize, layer: usize, held: bool) {
        let media = &mut self.participants[i].media;
        media.held.retain(|&l| l != layer);
        if held {
            media.held.push(layer);
        }
    }

    /// Participant `i`'s signal connection drops (its process died): the server hears the
    /// WebSocket close after the link's delay; nothing more comes from it.
    pub fn disconnect(&mut self, i: usize) {
        self.participants[i].gone = true;
        let socket = self.participants[i].socket;
        self.schedule(self.now + self.signal_delay, Hop::ServerClosed(socket));
    }

    /// Participant `i`'s signal connection drops (a proxy or NAT reset it) while its media
    /// goes on: both ends hear the close after the link's delay, what was on its way is
    /// lost, and the participant opens a new one two round trips after it noticed, but not
    /// before `down_for` has passed.
    pub fn drop_signal(&mut self, i: usize, down_for: Duration) {
        let p = &mut self.participants[i];
        p.signal_up = false;
        p.reopen_not_before = self.now + down_for;
        let socket = p.socket;
        let at = self.now + self.signal_delay;
        self.schedule(at, Hop::ServerClosed(socket));
        self.schedule(at, Hop::CloseClient(socket, false));
    }

    /// The participant on signal connection `socket`, if that is still its connection.
    fn on_socket(&mut self, socket: SessionId) -> Option<&mut Participant> {
        let i = *self.sockets.get(&socket)?;
        let p = &mut self.participants[i];
        (!p.gone && p.socket == socket).then_some(p)
    }

    /// Queues `hop` for `at`, after everything due at or before it.
    fn schedule(&mut self, at: Instant, hop: Hop) {
        let i = self.signals.partition_point(|(t, _)| *t <= at);
        self.signals.insert(i, (at, hop));
    }

    /// Participant `i` moves to another network (a phone from LTE to Wi-Fi): its local
    /// addresses change (new ports on its address), datagrams to the old ones and messages
    /// on its signal connection are lost from now on, including those on their way, and its
    /// session is told ([`Session::network_changed`]): it opens a new signal connection and
    /// restarts ICE over it.
    pub fn change_network(&mut self, i: usize) {
        let p = &mut self.participants[i];
        let (old_pub, old_sub) = p.addrs;
        let moved = |a: SocketAddr| SocketAddr::new(a.ip(), a.port().wrapping_add(2));
        p.addrs = (moved(old_pub), moved(old_sub));
        self.by_addr.remove(&old_pub);
        self.by_addr.remove(&old_sub);
        self.by_addr.insert(p.addrs.0, i);
        self.by_addr.insert(p.addrs.1, i);
        // The signal connection's path is gone as well (the server does not notice: no
        // close reaches it).
        p.signal_up = false;
        p.session.network_changed(self.now, p.addrs.0, p.addrs.1);
    }

    /// Participant `i` sends a protocol message.
    pub fn send(&mut self, i: usize, message: ClientMessage) {
        let _ = self.participants[i].session.send_signal(message);
    }

    // ---- time ----

    /// Runs for `duration` of simulated time; `on_event(participant, event, elapsed)` sees
    /// every room event (decoded pictures included) as it happens.
    pub fn run_for(
        &mut self,
        duration: Duration,
        on_event: &mut dyn FnMut(usize, RoomEvent, Duration),
    ) -> Result<(), SimError> {
        let until = self.now + duration;
        self.run_until(until, on_event)
    }

    /// Runs until `until`.
    pub fn run_until(
        &mut self,
        until: Instant,
        on_event: &mut dyn FnMut(usize, RoomEvent, Duration),
    ) -> Result<(), SimError> {
        loop {
            self.capture()?;
            self.settle(on_event);
            if self.now >= until {
                return Ok(());
            }
            let next = self.next_instant().min(until);
            if next <= self.now {
                self.late_wakeups += 1;
            }
            self.now = next.max(self.now + Duration::from_micros(1));
            let now = self.now;
            self.engine.handle_timeout(now);
            for p in self.participants.iter_mut().filter(|p| !p.gone) {
                p.session.handle_timeout(now);
            }
        }
    }

    /// Pictures and audio of every joined participant whose frame clock is due.
    fn capture(&mut self) -> Result<(), SimError> {
        let now = self.now;
        let micros = now.duration_since(self.t0).as_micros() as u64;
        for p in &mut self.participants {
            if p.gone || p.session.phase() != &Phase::Joined {
                continue;
            }
            let m = &mut p.media;
            if let (Some(encoder), Some(pattern)) = (m.encoder.as_mut(), m.pattern.as_mut())
                && now >= m.next_video
            {
                // Catch up after joining instead of sending a burst of stale pictures.
                m.next_video = (m.next_video + m.frame_interval).max(now + m.frame_interval);
                let keyframes = p.session.take_layer_keyframe_requests();
                for (layer, _) in keyframes.iter().enumerate().filter(|(_, k)| **k) {
                    encoder.request_keyframe(layer);
                }
                let frame = pattern.next_frame(micros);
                let mut targets = p.session.video_layer_targets();
                for &layer in &m.held {
                    if let Some(target) = targets.get_mut(layer) {
                        *target = None;
                    }
                }
                let units = encoder.encode(&frame, &targets)?;
                for (layer, unit) in &units {
                    if !p
                        .session
                        .send_video_layer(now, *layer, unit)
                        .unwrap_or(false)
                    {
                        encoder.request_keyframe(*layer);
                    }
                }
                if !units.is_empty() {
                    p.video_sent = pattern.next_seq();
                }
            }
            if let Some(opus) = m.opus.as_mut()
                && now >= m.next_audio
            {
                if let Some(pct) = p.session.expected_audio_loss_pct()
                    && pct != opus.config().expected_loss_pct
                {
                    let _ = opus.set_expected_loss_pct(pct);
                }
                let _ = opus.follow(p.session.audio_target());
                let interval = Duration::from_millis(20);
                m.next_audio = (m.next_audio + interval).max(now + interval);
                let pcm = m.speech.next_frame();
                if let Some(packet) = opus.encode(&pcm)? {
                    let _ = p
                        .session
                        .send_audio(now, &packet, level_dbov(pcm.samples()));
                    p.audio_sent += 1;
                }
            }
        }
        Ok(())
    }

    /// The next instant anything is due.
    /// How often a component asked to be woken at or before the instant the world had
    /// just settled. Every such wake-up is a busy loop in a real driver; a handful (two
    /// timers falling due at one instant, one serviced after the other) is normal.
    pub fn late_wakeups(&self) -> u64 {
        self.late_wakeups
    }

    fn next_instant(&mut self) -> Instant {
        let mut next = self.now + Duration::from_secs(3600);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = next.min(t);
            }
        };
        consider(self.engine.poll_timeout());
        consider(self.network.poll_timeout());
        consider(self.signals.front().map(|(at, _)| *at));
        for p in self.participants.iter_mut().filter(|p| !p.gone) {
            consider(p.session.poll_timeout());
            if p.session.phase() == &Phase::Joined {
                if p.media.encoder.is_some() {
                    consider(Some(p.media.next_video));
                }
                if p.media.opus.is_some() {
                    consider(Some(p.media.next_audio));
                }
            }
        }
        next
    }

    /// Everything due now, until nothing more happens at this instant.
    fn settle(&mut self, on_event: &mut dyn FnMut(usize, RoomEvent, Duration)) {
        let now = self.now;
        let elapsed = self.elapsed();
        loop {
            let mut progress = false;
            while self.signals.front().is_some_and(|(at, _)| *at <= now) {
                let Some((_, hop)) = self.signals.pop_front() else {
                    break;
                };
                progress = true;
                match hop {
                    Hop::ToServer(socket, message) => self.engine.handle_command(
                        now,
                        Command::Message {
                            session: socket,
                            message,
                        },
                    ),
                    Hop::ServerClosed(socket) => self.engine.handle_command(
                        now,
                        Command::Closed {
                            session: socket,
                            code: None,
                        },
                    ),
                    Hop::ToClient(socket, message) => {
                        if let Some(p) = self.on_socket(socket)
                            && p.signal_up
                        {
                            p.session.handle_signal(now, message)
                        }
                    }
                    Hop::CloseClient(socket, on_purpose) => {
                        if let Some(p) = self.on_socket(socket) {
                            if on_purpose {
                                p.session.handle_server_close(now)
                            } else {
                                p.session.handle_signal_closed(now)
                            }
                        }
                    }
                    Hop::Reopen(i) => {
                        let socket = self.next_socket;
                        self.next_socket += 1;
                        self.sockets.insert(socket, i);
                        let p = &mut self.participants[i];
                        p.reopening = false;
                        if p.gone || !p.session.signal_down() {
                            continue;
                        }
                        p.socket = socket;
                        p.signal_up = true;
                        self.engine.handle_command(
                            now,
                            Command::Open {
                                session: socket,
                                room: None,
                            },
                        );
                        self.participants[i].session.signal_reopened(now);
                    }
                }
            }
            while let Some((direction, i, data)) = self.network.pop(now) {
                progress = true;
                let addr = framed_addr(&data);
                match direction {
                    Direction::Up => self.engine.handle_datagram(now, addr, &data[ADDR_BYTES..]),
                    Direction::Down if !self.participants[i].gone => self.participants[i]
                        .session
                        .handle_datagram(now, addr, server_addr(), &data[ADDR_BYTES..]),
                    Direction::Down => {}
                }
            }
            while let Some(event) = self.engine.poll_event() {
                progress = true;
                let route = |id| self.routes.get(&id).copied().unwrap_or(id);
                let hop = match event {
                    Event::Send(id, m) => Hop::ToClient(route(id), m),
                    Event::Close(id) => Hop::CloseClient(route(id), true),
                    Event::Resume { session, via } => {
                        self.routes.insert(session, via);
                        continue;
                    }
                };
                self.schedule(now + self.signal_delay, hop);
            }
            while let Some(t) = self.engine.poll_transmit() {
                progress = true;
                if let Some(&i) = self.by_addr.get(&t.to) {
                    let framed = frame_datagram(t.to, &t.data);
                    self.network
                        .send(now, Direction::Down, i, charged_len(&t.data), framed);
                }
            }
            // Scheduled once the participants are polled (`schedule` needs all of `self`).
            let mut hops = Vec::new();
            for (i, p) in self.participants.iter_mut().enumerate() {
                if p.gone {
                    continue;
                }
                while p.signal_up
                    && let Some(m) = p.session.poll_signal()
                {
                    progress = true;
                    let leaving = matches!(m, ClientMessage::Leave);
                    let at = now + self.signal_delay;
                    hops.push((at, Hop::ToServer(p.socket, m)));
                    if leaving {
                        // The client closes its WebSocket after the leave.
                        hops.push((at, Hop::ServerClosed(p.socket)));
                    }
                }
                if p.session.signal_down() && !p.reopening {
                    // A new TCP connection and WebSocket upgrade: two round trips.
                    p.reopening = true;
                    let at = (now + self.signal_delay * 4).max(p.reopen_not_before);
                    hops.push((at, Hop::Reopen(i)));
                }
                while let Some(t) = p.session.poll_transmit() {
                    progress = true;
                    let framed = frame_datagram(t.from, &t.data);
                    self.network
                        .send(now, Direction::Up, i, charged_len(&t.data), framed);
                }
                while let Some(event) = p.session.poll_event() {
                    progress = true;
                    on_event(i, event, elapsed);
                }
            }
            for (at, hop) in hops {
                self.schedule(at, hop);
            }
            if !progress {
                break;
            }
        }
    }
}
