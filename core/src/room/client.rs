//! [`Room`]: the tokio driver around the client core ([`Session`]). It owns the signal
//! WebSocket, two UDP sockets (one per peer connection) and the clock; encoding happens on
//! the caller's thread, everything else in one task per room.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use super::session::{Phase, Session, SessionConfig, TrackStats};
use super::{AudioTarget, RoomError, RoomEvent, RoomOptions, RoomStats, SendStats, level_dbov};
use crate::codec::{OpusConfig, OpusEncoder, SimulcastEncoder};
use crate::media::{AudioFrame, Channels, EncodedFrame, VideoFrame};
use crate::signal::{
    ClientMessage, DataMessage, MAX_TILE_SIDE, MAX_TILES, ParticipantInfo, PeerRole, TrackInfo,
    TrackKind, TrackSource, ViewLayout, decode_server, encode,
};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the room's methods ask of its task.
enum Command {
    /// An access unit of one layer of the camera track.
    Video(usize, EncodedFrame),
    Audio(EncodedFrame, u8),
    Signal(ClientMessage),
    Stats(oneshot::Sender<RoomStats>),
    Leave(oneshot::Sender<()>),
    /// The network changed: new sockets on this address (or the current one), ICE restarts.
    NetworkChanged(Option<IpAddr>, oneshot::Sender<Result<(), RoomError>>),
}

/// What the task tells the methods without being asked.
#[derive(Default)]
struct Shared {
    /// The publishing connection is up.
    ready: AtomicBool,
    /// Per simulcast layer (bit `i`: layer `i`; one layer without simulcast): its next
    /// picture should be a keyframe.
    keyframes: std::sync::atomic::AtomicU32,
    /// The session is over.
    closed: AtomicBool,
    /// Packet loss (percent) the audio encoder should expect, from the server's reports;
    /// `NO_LOSS_REPORT` until one came.
    audio_loss: std::sync::atomic::AtomicU8,
    /// [`Session::video_layer_targets`] after every pass of the task.
    layer_targets: Mutex<Vec<Option<u32>>>,
    /// [`Session::audio_target`] after every pass of the task.
    audio_target: Mutex<AudioTarget>,
    /// Copies of the session's counters after every pass of the task.
    stats: Mutex<(SendStats, Vec<TrackStats>)>,
    /// Pictures and audio blocks waiting in the event queue, and how many may.
    frames_queued: std::sync::atomic::AtomicUsize,
    frame_capacity: usize,
}

/// `Shared::audio_loss` before the server reported any.
const NO_LOSS_REPORT: u8 = u8::MAX;

struct VideoOut {
    encoder: Mutex<SimulcastEncoder>,
}

struct AudioOut {
    encoder: Mutex<OpusEncoder>,
}

/// A joined room.
///
/// Dropping it leaves the room: its task sends `leave`, closes both connections and ends.
pub struct Room {
    room: String,
    local: ParticipantInfo,
    participants: Vec<ParticipantInfo>,
    tracks: Vec<TrackInfo>,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<RoomEvent>,
    shared: Arc<Shared>,
    video: Option<VideoOut>,
    audio: Option<AudioOut>,
    /// Counted here: frames never handed to the task.
    dropped_before_connected: std::sync::atomic::AtomicU64,
    /// The layout last sent.
    layout: Mutex<Option<ViewLayout>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("room", &self.room)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// The local address to bind when `ip` is unspecified: the one the system routes to the
/// signal server's host from (so that it can be announced as a candidate).
async fn local_ip_towards(ip: IpAddr, url: &str) -> IpAddr {
    if !ip.is_unspecified() {
        return ip;
    }
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let target = tokio::net::lookup_host(&host)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next());
    if let Some(target) = target {
        let any: SocketAddr = if target.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        if let Ok(probe) = std::net::UdpSocket::bind(any)
            && probe.connect(target).is_ok()
            && let Ok(local) = probe.local_addr()
        {
            return local.ip();
        }
    }
    ip
}

async fn bind(ip: IpAddr) -> Result<(UdpSocket, SocketAddr), RoomError> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .map_err(|e| RoomError::Socket(format!("cannot bind UDP on {ip}: {e}")))?;
    let addr = socket
        .local_addr()
        .map_err(|e| RoomError::WebRtc(e.to_string()))?;
    Ok((socket, addr))
}

/// A TLS client trusting the web's public roots and the certificates in `pem`.
fn tls_trusting(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, RoomError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |e: String| RoomError::Signal(format!("trusted certificates: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad("no CERTIFICATE in the PEM".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Room {
    /// Connects to `url` (`ws://host:port/signal`, or `wss://` to a server with TLS), joins with `token`, and sets up
    /// publishing as `options` asks. Returns once the server accepted the join.
    pub async fn connect(url: &str, token: &str, options: RoomOptions) -> Result<Room, RoomError> {
        let connector = match &options.trusted_certificates {
            Some(pem) => Some(tokio_tungstenite::Connector::Rustls(tls_trusting(pem)?)),
            None => None,
        };
        let mut ws = open_signal(url, connector.clone()).await?;
        let ip = local_ip_towards(options.bind_ip, url).await;
        let (pub_socket, pub_addr) = bind(ip).await?;
        let (sub_socket, sub_addr) = bind(ip).await?;
        let config = SessionConfig {
            name: options.name.clone(),
            auto_subscribe: options.auto_subscribe,
            video: options.video.is_some(),
            fps: options.video.as_ref().map_or(30, |v| v.fps.max(1)),
            audio: options.audio,
            decode_video: options.decode_video,
            decode_audio: options.decode_audio,
            video_bitrate_bps: options
                .video
                .as_ref()
                .map_or(0, |v| v.bitrate_kbps.saturating_mul(1000)),
            video_layers: options
                .video
                .as_ref()
                .map(super::VideoOptions::layers)
                .unwrap_or_default(),
            reconnect: options.reconnect,
            ..SessionConfig::new(token)
        };
        let mut session = Session::new(config, pub_addr, sub_addr, Instant::now());
        // The join, and the answer to it.
        while let Some(m) = session.poll_signal() {
            ws.send(Message::Text(encode(&m).into()))
                .await
                .map_err(|e| RoomError::Signal(e.to_string()))?;
        }
        let deadline = tokio::time::Instant::now() + options.join_timeout;
        while session.phase() == &Phase::Joining {
            let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => return Err(RoomError::Timeout(options.join_timeout)),
                Ok(None) | Ok(Some(Ok(Message::Close(_)))) => {
                    return Err(RoomError::Signal("closed before joining".into()));
                }
                Ok(Some(Err(e))) => return Err(RoomError::Signal(e.to_string())),
                Ok(Some(Ok(Message::Text(t)))) => t,
                Ok(Some(Ok(_))) => continue,
            };
            let message =
                decode_server(msg.as_str()).map_err(|e| RoomError::Signal(e.to_string()))?;
            session.handle_signal(Instant::now(), message);
        }
        if let Phase::Refused { code, reason } = session.phase() {
            return Err(RoomError::Refused {
                code: *code,
                reason: reason.clone(),
            });
        }
        let joined = session
            .joined()
            .cloned()
            .ok_or_else(|| RoomError::Signal("joined without room details".into()))?;
        // Publishing that could not even start is an error of connect.
        let mut early = Vec::new();
        while let Some(e) = session.poll_event() {
            if let RoomEvent::Error {
                code: crate::signal::ErrorCode::NegotiationFailed,
                reason,
            } = &e
            {
                return Err(RoomError::WebRtc(reason.clone()));
            }
            early.push(e);
        }

        let video = match &options.video {
            Some(v) => Some(VideoOut {
                encoder: Mutex::new(SimulcastEncoder::new(&v.layers(), v.fps.max(1) as f32)?),
            }),
            None => None,
        };
        let audio = match options.audio {
            true => Some(AudioOut {
                encoder: Mutex::new(OpusEncoder::new(OpusConfig::new(Channels::Mono))?),
            }),
            false => None,
        };
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        for e in early {
            let _ = events_tx.send(e);
        }
        let shared = Arc::new(Shared {
            frame_capacity: options.event_capacity.max(16),
            audio_loss: std::sync::atomic::AtomicU8::new(NO_LOSS_REPORT),
            ..Shared::default()
        });
        let driver = Driver {
            session,
            ws: Some(ws),
            url: url.to_owned(),
            connector,
            connecting: None,
            next_attempt: Instant::now(),
            attempts: 0,
            pub_socket,
            sub_socket,
            pub_addr,
            sub_addr,
            commands: commands_rx,
            events: events_tx,
            shared: shared.clone(),
        };
        let task = tokio::spawn(driver.run());
        Ok(Room {
            room: joined.room,
            local: joined.local,
            participants: joined.participants,
            tracks: joined.tracks,
            commands,
            events,
            shared,
            video,
            audio,
            dropped_before_connected: Default::default(),
            layout: Mutex::new(None),
            task: Some(task),
        })
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.room
    }

    /// This participant as the others saw it when it joined (a host may change its role
    /// since: [`RoomEvent::RoleChanged`]).
    pub fn local(&self) -> &ParticipantInfo {
        &self.local
    }

    /// Participants present when this one joined.
    pub fn initial_participants(&self) -> &[ParticipantInfo] {
        &self.participants
    }

    /// Tracks published when this one joined.
    pub fn initial_tracks(&self) -> &[TrackInfo] {
        &self.tracks
    }

    /// The next event; `None` once the session is over and every event was read.
    pub async fn next_event(&mut self) -> Option<RoomEvent> {
        let e = self.events.recv().await;
        self.taken(&e);
        e
    }

    /// Counts a picture or audio block the application took off the queue.
    fn taken(&self, e: &Option<RoomEvent>) {
        if e.as_ref().is_some_and(droppable) {
            self.shared.frames_queued.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// An event if one is waiting.
    pub fn try_next_event(&mut self) -> Option<RoomEvent> {
        let e = self.events.try_recv().ok();
        self.taken(&e);
        e
    }

    /// Whether the publishing connection is up. Until it is, pushed pictures and audio are
    /// dropped (counted in [`SendStats::dropped_before_connected`]) rather than encoded into
    /// packets the connection would discard.
    pub fn publishing_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Relaxed)
    }

    fn command(&self, command: Command) -> Result<(), RoomError> {
        self.commands.send(command).map_err(|_| RoomError::Closed)
    }

    fn drop_before_connected(&self) {
        self.dropped_before_connected
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Encodes and sends one picture of the published video track. Its pts (µs) becomes the
    /// RTP timestamp, so a receiver can measure latency against it. Before the publishing
    /// connection is up the picture is dropped, and the first one after is a keyframe.
    pub async fn publish_video(&self, frame: &VideoFrame) -> Result<(), RoomError> {
        let video = self
            .video
            .as_ref()
            .ok_or(RoomError::NotPublishing("video"))?;
        if self.shared.closed.load(Ordering::Relaxed) {
            return Err(RoomError::Closed);
        }
        if !self.publishing_ready() {
            self.shared.keyframes.store(u32::MAX, Ordering::Relaxed);
            self.drop_before_connected();
            return Ok(());
        }
        let units = {
            // The encoder is only ever used from here; a poisoned lock means an earlier encode
            // panicked, which is a bug, not input.
            let mut encoder = video.encoder.lock().expect("encoder lock");
            let keyframes = self.shared.keyframes.swap(0, Ordering::Relaxed);
            for layer in 0..encoder.layers().len() {
                if keyframes & (1 << layer) != 0 {
                    encoder.request_keyframe(layer);
                }
            }
            // Each layer follows its share of the uplink estimate; paused layers are not
            // encoded.
            let targets = self
                .shared
                .layer_targets
                .lock()
                .expect("targets lock")
                .clone();
            let targets = if targets.is_empty() {
                encoder
                    .layers()
                    .iter()
                    .map(|l| Some(l.bitrate_bps))
                    .collect()
            } else {
                targets
            };
            encoder.encode(frame, &targets)?
        };
        for (layer, unit) in units {
            self.command(Command::Video(layer, unit))?;
        }
        Ok(())
    }

    /// Sends an already encoded H.264 access unit (Annex-B) on the published video track, for
    /// applications with their own encoder or recorded streams. Keyframe requests from the
    /// server then cannot be honoured here; send IDRs regularly.
    pub async fn publish_encoded_video(&self, unit: &EncodedFrame) -> Result<(), RoomError> {
        if self.video.is_none() {
            return Err(RoomError::NotPublishing("video"));
        }
        self.command(Command::Video(0, unit.clone()))
    }

    /// Sends an already encoded H.264 access unit on one simulcast layer of the published
    /// video track (`layer` 0 is the smallest, as in [`VideoOptions::layers`]), for
    /// applications that encode each layer themselves. As with
    /// [`publish_encoded_video`](Self::publish_encoded_video), keyframe requests and the
    /// uplink estimate's layer targets are the application's to follow (see
    /// [`Room::stats`]).
    ///
    /// [`VideoOptions::layers`]: super::VideoOptions::layers
    pub async fn publish_encoded_video_layer(
        &self,
        layer: usize,
        unit: &EncodedFrame,
    ) -> Result<(), RoomError> {
        let video = self
            .video
            .as_ref()
            .ok_or(RoomError::NotPublishing("video"))?;
        let layers = video.encoder.lock().expect("encoder lock").layers().len();
        if layer >= layers {
            return Err(RoomError::NoSuchLayer { layer, layers });
        }
        self.command(Command::Video(layer, unit.clone()))
    }

    /// Sends an already encoded 20 ms Opus packet on the published audio track, with the given
    /// RFC 6464 level (dBov, 127 = silence).
    pub async fn publish_encoded_audio(
        &self,
        packet: &EncodedFrame,
        level_dbov: u8,
    ) -> Result<(), RoomError> {
        if self.audio.is_none() {
            return Err(RoomError::NotPublishing("audio"));
        }
        self.command(Command::Audio(packet.clone(), level_dbov.min(127)))
    }

    /// Encodes and sends one block of the published audio track (with its RFC 6464 level, so
    /// the server can tell who is speaking). Dropped before the publishing connection is up.
    pub async fn publish_audio(&self, frame: &AudioFrame) -> Result<(), RoomError> {
        let audio = self
            .audio
            .as_ref()
            .ok_or(RoomError::NotPublishing("audio"))?;
        if self.shared.closed.load(Ordering::Relaxed) {
            return Err(RoomError::Closed);
        }
        if !self.publishing_ready() {
            self.drop_before_connected();
            return Ok(());
        }
        let packet = {
            let mut encoder = audio.encoder.lock().expect("encoder lock");
            // In-band FEC follows the loss the server reports on the way up.
            let loss = self.shared.audio_loss.load(Ordering::Relaxed);
            if loss != NO_LOSS_REPORT && loss != encoder.config().expected_loss_pct {
                let _ = encoder.set_expected_loss_pct(loss);
            }
            let target = *self.shared.audio_target.lock().expect("target lock");
            let _ = encoder.follow(target);
            encoder.encode(frame)?
        };
        match packet {
            Some(p) => self.command(Command::Audio(p, level_dbov(frame.samples()))),
            None => Ok(()),
        }
    }

    /// Sends an application message to everyone else (`to` empty) or to some identities.
    pub fn send_data(&self, topic: &str, payload: &str, to: Vec<String>) -> Result<(), RoomError> {
        self.send_raw(ClientMessage::Data {
            message: DataMessage {
                from: String::new(),
                to,
                topic: topic.to_owned(),
                payload: payload.into(),
            },
        })
    }

    /// Tells the room this participant's camera or microphone is muted (or not). The caller
    /// stops (or resumes) pushing frames; the others get a `TrackMuted` event.
    pub fn set_muted(&self, kind: TrackKind, muted: bool) -> Result<(), RoomError> {
        let source = match kind {
            TrackKind::Video => TrackSource::Camera,
            TrackKind::Audio => TrackSource::Microphone,
        };
        self.send_raw(ClientMessage::Mute {
            track: source.track_id(&self.local.identity),
            muted,
        })
    }

    /// Starts receiving these tracks (with `auto_subscribe` off, nothing is received
    /// otherwise).
    pub fn subscribe(&self, tracks: Vec<String>) -> Result<(), RoomError> {
        self.send_raw(ClientMessage::Subscribe { tracks })
    }

    /// Stops receiving these tracks; their receive slots are reused for others.
    pub fn unsubscribe(&self, tracks: Vec<String>) -> Result<(), RoomError> {
        self.send_raw(ClientMessage::Unsubscribe { tracks })
    }

    /// Tells the server what this client shows (see [`ViewLayout`]): each video at no
    /// larger a simulcast layer than its tile needs, a video with no tile not at all. A
    /// layout equal to the last one sent is not sent again. [`GridView::view_layout`]
    /// gives the layout of a composited grid.
    ///
    /// [`GridView::view_layout`]: super::GridView::view_layout
    pub fn set_layout(&self, layout: ViewLayout) -> Result<(), RoomError> {
        if !layout.is_valid() {
            return Err(RoomError::InvalidLayout(format!(
                "viewport and tiles are 1 to {MAX_TILE_SIDE} pixels a side, at most \
                 {MAX_TILES} tiles"
            )));
        }
        let mut last = self.layout.lock().expect("layout lock");
        if last.as_ref() == Some(&layout) {
            return Ok(());
        }
        self.send_raw(ClientMessage::Layout(layout.clone()))?;
        *last = Some(layout);
        Ok(())
    }

    /// Raises (or lowers) this viewer's hand to ask to be heard; the room's hosts get
    /// [`RoomEvent::Hands`]. Only viewers raise a hand (others get a `permission_denied`
    /// error event).
    pub fn raise_hand(&self, raised: bool) -> Result<(), RoomError> {
        self.send_raw(ClientMessage::Hand { raised })
    }

    /// Host only: sends `identity`'s raised hand back.
    pub fn lower_hand(&self, identity: &str) -> Result<(), RoomError> {
        self.send_raw(ClientMessage::LowerHand {
            identity: identity.to_owned(),
        })
    }

    /// Host only: lets viewer `identity` in as a speaker; a madang client then publishes
    /// what its options ask for.
    pub fn promote(&self, identity: &str) -> Result<(), RoomError> {
        self.send_raw(ClientMessage::Promote {
            identity: identity.to_owned(),
        })
    }

    /// Host only: makes speaker `identity` a viewer again; its tracks end for everyone.
    pub fn demote(&self, identity: &str) -> Result<(), RoomError> {
        self.send_raw(ClientMessage::Demote {
            identity: identity.to_owned(),
        })
    }

    /// Host only: mutes `identity`'s microphone for everyone (it may unmute itself).
    pub fn mute_participant(&self, identity: &str) -> Result<(), RoomError> {
        self.send_raw(ClientMessage::MuteParticipant {
            identity: identity.to_owned(),
        })
    }

    /// Host only: removes `identity` from the room (hosts cannot be removed).
    pub fn remove_participant(&self, identity: &str) -> Result<(), RoomError> {
        self.send_raw(ClientMessage::Remove {
            identity: identity.to_owned(),
        })
    }

    /// Host only: starts (`true`) or stops recording the room, on a server that records
    /// (`madang serve --record DIR`); everyone sees [`RoomEvent::Recording`].
    pub fn record(&self, on: bool) -> Result<(), RoomError> {
        self.send_raw(ClientMessage::Record { on })
    }

    /// Sends any protocol message as is (for tools and tests that need the raw protocol).
    pub fn send_raw(&self, message: ClientMessage) -> Result<(), RoomError> {
        self.command(Command::Signal(message))
    }

    /// What this client has sent.
    pub fn send_stats(&self) -> SendStats {
        let mut s = self.shared.stats.lock().expect("stats lock").0.clone();
        s.dropped_before_connected += self.dropped_before_connected.load(Ordering::Relaxed);
        s
    }

    /// What this client received, per remote track.
    pub fn receive_stats(&self) -> Vec<TrackStats> {
        self.shared.stats.lock().expect("stats lock").1.clone()
    }

    /// Everything this client knows about its media: what it sent, and per remote track what
    /// it received, with the round-trip times from the connections' ICE statistics.
    pub async fn stats(&self) -> RoomStats {
        let (tx, rx) = oneshot::channel();
        let answer = match self.command(Command::Stats(tx)) {
            Ok(()) => rx.await.ok(),
            Err(_) => None,
        };
        let mut stats = answer.unwrap_or_else(|| RoomStats {
            sent: SendStats::default(),
            publish_rtt_ms: None,
            received: self.receive_stats(),
        });
        stats.sent.dropped_before_connected +=
            self.dropped_before_connected.load(Ordering::Relaxed);
        stats
    }

    /// Tells the room that the local network changed (a phone moved from LTE to Wi-Fi, a
    /// laptop got a new address): both connections move to new UDP sockets bound on
    /// `local_ip` (the address they use now when `None`) and restart ICE, keeping DTLS,
    /// SRTP and every stream, so that media resumes as soon as the new path answers
    /// (about a round trip and the server's answer: under a second on `lte`).
    ///
    /// An application learns of a change from its platform (Android's
    /// `ConnectivityManager`, iOS's `NWPathMonitor`, Linux's netlink); madang does not
    /// watch the network itself.
    pub async fn network_changed(&self, local_ip: Option<IpAddr>) -> Result<(), RoomError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::NetworkChanged(local_ip, tx))?;
        rx.await.map_err(|_| RoomError::Closed)?
    }

    /// Leaves the room: tells the server, closes the connections, and waits (at most two
    /// seconds) until the leave message is out and the task has ended.
    pub async fn leave(mut self) {
        let (tx, rx) = oneshot::channel();
        if self.command(Command::Leave(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        // The task sees its command channel close and leaves by itself; nothing to wait for.
        if let Some(task) = self.task.take() {
            drop(task);
        }
    }
}

/// Opens the signal WebSocket to `url` (at most [`SIGNAL_CONNECT_TIMEOUT`]).
async fn open_signal(
    url: &str,
    connector: Option<tokio_tungstenite::Connector>,
) -> Result<Ws, RoomError> {
    let connect = tokio_tungstenite::connect_async_tls_with_config(url, None, false, connector);
    match tokio::time::timeout(SIGNAL_CONNECT_TIMEOUT, connect).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(RoomError::Signal(format!("{url}: {e}"))),
        Err(_) => Err(RoomError::Signal(format!(
            "{url}: no connection within {SIGNAL_CONNECT_TIMEOUT:?}"
        ))),
    }
}

/// How long one attempt to open the signal WebSocket may take.
const SIGNAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause after the first failed attempt to reopen the signal connection; doubled after
/// each further one, up to [`RECONNECT_PAUSE_MAX`].
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);
const RECONNECT_PAUSE_MAX: Duration = Duration::from_secs(2);

/// The next message of the signal connection; never, without one.
async fn next_message(
    ws: &mut Option<Ws>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

/// The outcome of the attempt to reopen the signal connection; never, without one.
async fn reopened(
    attempt: &mut Option<tokio::task::JoinHandle<Result<Ws, RoomError>>>,
) -> Result<Ws, RoomError> {
    match attempt {
        Some(handle) => handle
            .await
            .unwrap_or_else(|e| Err(RoomError::Signal(e.to_string()))),
        None => std::future::pending().await,
    }
}

/// The task that owns the session and its I/O.
struct Driver {
    session: Session,
    /// The signal connection, while there is one.
    ws: Option<Ws>,
    url: String,
    connector: Option<tokio_tungstenite::Connector>,
    /// An attempt to reopen the signal connection, under way.
    connecting: Option<tokio::task::JoinHandle<Result<Ws, RoomError>>>,
    /// When the next attempt may start, and how many failed in a row.
    next_attempt: Instant,
    attempts: u32,
    pub_socket: UdpSocket,
    sub_socket: UdpSocket,
    pub_addr: SocketAddr,
    sub_addr: SocketAddr,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<RoomEvent>,
    shared: Arc<Shared>,
}

/// Pictures a slow application may miss; other events are never dropped.
fn droppable(e: &RoomEvent) -> bool {
    matches!(
        e,
        RoomEvent::VideoFrame { .. } | RoomEvent::AudioFrame { .. }
    )
}

impl Driver {
    async fn run(mut self) {
        let mut pub_buf = vec![0u8; 2048];
        let mut sub_buf = vec![0u8; 2048];
        let mut leaving: Option<oneshot::Sender<()>> = None;
        loop {
            self.flush().await;
            if let Some(ack) = leaving.take() {
                let _ = ack.send(());
                break;
            }
            if self.session.phase() == &Phase::Closed {
                break;
            }
            self.tend_signal();
            let mut deadline = self
                .session
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            if self.session.signal_down() && self.connecting.is_none() {
                deadline = deadline.min(self.next_attempt);
            }
            tokio::select! {
                msg = next_message(&mut self.ws) => match msg {
                    Some(Ok(Message::Text(text))) => match decode_server(text.as_str()) {
                        Ok(m) => self.session.handle_signal(Instant::now(), m),
                        Err(e) => tracing::debug!("undecodable server message: {e}"),
                    },
                    Some(Ok(Message::Close(_))) => {
                        self.ws = None;
                        self.session.handle_server_close(Instant::now());
                    }
                    Some(Err(_)) | None => {
                        self.ws = None;
                        self.session.handle_signal_closed(Instant::now());
                    }
                    Some(Ok(_)) => {}
                },
                opened = reopened(&mut self.connecting) => {
                    self.connecting = None;
                    match opened {
                        Ok(ws) => {
                            self.ws = Some(ws);
                            self.attempts = 0;
                            self.session.signal_reopened(Instant::now());
                        }
                        Err(e) => {
                            let pause = RECONNECT_PAUSE
                                .saturating_mul(1 << self.attempts.min(8))
                                .min(RECONNECT_PAUSE_MAX);
                            tracing::info!("signal connection: {e}; next attempt in {pause:?}");
                            self.attempts += 1;
                            self.next_attempt = Instant::now() + pause;
                        }
                    }
                },
                r = self.pub_socket.recv_from(&mut pub_buf) => if let Ok((n, from)) = r {
                    let local = self.pub_addr;
                    self.session.handle_datagram(Instant::now(), local, from, &pub_buf[..n]);
                },
                r = self.sub_socket.recv_from(&mut sub_buf) => if let Ok((n, from)) = r {
                    let local = self.sub_addr;
                    self.session.handle_datagram(Instant::now(), local, from, &sub_buf[..n]);
                },
                command = self.commands.recv() => match command {
                    Some(Command::NetworkChanged(ip, ack)) => {
                        let _ = ack.send(self.move_network(ip).await);
                    }
                    Some(c) => {
                        if let Some(ack) = self.on_command(c) {
                            leaving = Some(ack);
                        }
                    }
                    None => {
                        // The room was dropped: leave.
                        self.session.leave(Instant::now());
                        self.flush().await;
                        break;
                    }
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    self.session.handle_timeout(Instant::now());
                }
            }
        }
        self.shared.closed.store(true, Ordering::Relaxed);
        self.shared.ready.store(false, Ordering::Relaxed);
        if let Some(connecting) = self.connecting.take() {
            connecting.abort();
        }
        if let Some(mut ws) = self.ws.take() {
            let _ = ws.close(None).await;
        }
    }

    /// While the session waits for a new signal connection: the old one (if any) is
    /// dropped, and an attempt to open a new one starts when it is time.
    fn tend_signal(&mut self) {
        if !self.session.signal_down() {
            return;
        }
        // Dropping it closes the TCP connection; nothing more is read from it.
        self.ws = None;
        if self.connecting.is_none() && Instant::now() >= self.next_attempt {
            let (url, connector) = (self.url.clone(), self.connector.clone());
            self.connecting = Some(tokio::spawn(
                async move { open_signal(&url, connector).await },
            ));
        }
    }

    /// Moves both connections to new sockets on `ip` (the current address when `None`)
    /// and lets the session restart ICE from them.
    async fn move_network(&mut self, ip: Option<IpAddr>) -> Result<(), RoomError> {
        let ip = ip.unwrap_or(self.pub_addr.ip());
        let (pub_socket, pub_addr) = bind(ip).await?;
        let (sub_socket, sub_addr) = bind(ip).await?;
        tracing::info!("network changed: now {pub_addr} and {sub_addr}");
        (self.pub_socket, self.pub_addr) = (pub_socket, pub_addr);
        (self.sub_socket, self.sub_addr) = (sub_socket, sub_addr);
        self.session
            .network_changed(Instant::now(), pub_addr, sub_addr);
        Ok(())
    }

    /// Carries out one command; a leave returns its acknowledgement, sent once flushed.
    fn on_command(&mut self, command: Command) -> Option<oneshot::Sender<()>> {
        let now = Instant::now();
        match command {
            Command::Video(layer, unit) => {
                if let Err(e) = self.session.send_video_layer(now, layer, &unit) {
                    tracing::debug!("video: {e}");
                }
            }
            Command::Audio(packet, level) => {
                if let Err(e) = self.session.send_audio(now, &packet, level) {
                    tracing::debug!("audio: {e}");
                }
            }
            Command::Signal(m) => {
                let _ = self.session.send_signal(m);
            }
            Command::Stats(tx) => {
                let received = {
                    let rtt = self.session.rtt_ms(PeerRole::Subscriber);
                    let mut r = self.session.receive_stats();
                    for t in &mut r {
                        t.rtt_ms = rtt;
                    }
                    r
                };
                let _ = tx.send(RoomStats {
                    sent: self.session.send_stats().clone(),
                    publish_rtt_ms: self.session.rtt_ms(PeerRole::Publisher),
                    received,
                });
            }
            Command::Leave(ack) => {
                self.session.leave(now);
                return Some(ack);
            }
            // `run` handles it: binding sockets awaits.
            Command::NetworkChanged(..) => {}
        }
        None
    }

    /// Sends what the session wants sent and hands its events on. A signal connection that
    /// fails to take a message is closed (the session resumes or ends, as it can).
    async fn flush(&mut self) {
        while let Some(ws) = self.ws.as_mut() {
            let Some(m) = self.session.poll_signal() else {
                break;
            };
            let leaving = matches!(m, ClientMessage::Leave);
            if ws.send(Message::Text(encode(&m).into())).await.is_err() {
                self.ws = None;
                self.session.handle_signal_closed(Instant::now());
                break;
            }
            if leaving {
                let _ = ws.close(None).await;
            }
        }
        while let Some(t) = self.session.poll_transmit() {
            let socket = if t.from == self.pub_addr {
                &self.pub_socket
            } else if t.from == self.sub_addr {
                &self.sub_socket
            } else {
                // From an address given up after a change of network.
                continue;
            };
            if let Err(e) = socket.send_to(&t.data, t.to).await {
                tracing::trace!("udp send to {}: {e}", t.to);
            }
        }
        while let Some(e) = self.session.poll_event() {
            // Never wait for the application: pictures and audio beyond the room's event
            // capacity are dropped, everything else (rare, small) is always queued. A task
            // blocked on a full queue could not even leave (measured: a benchmark's 100
            // silent viewers each filled with 16 departures of the others, and leaving them
            // took minutes).
            if droppable(&e) {
                let queued = self.shared.frames_queued.load(Ordering::Relaxed);
                if queued >= self.shared.frame_capacity {
                    continue;
                }
                self.shared.frames_queued.fetch_add(1, Ordering::Relaxed);
            }
            let _ = self.events.send(e);
        }
        let keyframes = self
            .session
            .take_layer_keyframe_requests()
            .iter()
            .enumerate()
            .fold(0u32, |bits, (i, &k)| bits | (u32::from(k) << i));
        if keyframes != 0 {
            self.shared.keyframes.fetch_or(keyframes, Ordering::Relaxed);
        }
        if let Some(pct) = self.session.expected_audio_loss_pct() {
            self.shared.audio_loss.store(pct, Ordering::Relaxed);
        }
        *self.shared.layer_targets.lock().expect("targets lock") =
            self.session.video_layer_targets();
        *self.shared.audio_target.lock().expect("target lock") = self.session.audio_target();
        self.shared
            .ready
            .store(self.session.publishing_ready(), Ordering::Relaxed);
        {
            let mut stats = self.shared.stats.lock().expect("stats lock");
            stats.0 = self.session.send_stats().clone();
            stats.1 = self.session.receive_stats();
        }
    }
}
