//! The client core: one participant's session in a room as a sans-I/O state machine — the
//! signal protocol, both peer connections (publishing and receiving) on webrtc-rs's `rtc`
//! core, the roster and receive slots, RTP packetising and depacketising, decoding, and
//! counters. No sockets, threads or clock.
//!
//! Inputs: [`handle_signal`](Session::handle_signal) (a message from the server),
//! [`handle_datagram`](Session::handle_datagram) (UDP, on one of the session's two local
//! addresses), [`handle_timeout`](Session::handle_timeout), and media to send
//! ([`send_video`](Session::send_video), [`send_audio`](Session::send_audio)). Outputs, drained
//! after every input: [`poll_signal`](Session::poll_signal) (messages for the server),
//! [`poll_transmit`](Session::poll_transmit) (datagrams), [`poll_event`](Session::poll_event)
//! (room events with decoded pictures and audio), and [`poll_timeout`](Session::poll_timeout).
//!
//! [`Room`](super::Room) drives it with tokio, a WebSocket and two UDP sockets; the C ABI sits
//! on `Room`; tests drive many sessions and the server core on simulated time over a
//! simulated network.
//!
//! Each session uses two local UDP addresses, one per peer connection: the server tells its
//! connections apart by the remote address, so two connections cannot share one.

mod pc;
mod recv;
mod send;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpReceiverId;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::sansio::Protocol;

use super::{RoomError, RoomEvent, RoomState, SendStats};
use crate::codec::VideoLayer;
use crate::codec::red::RedSwitch;
use crate::sfu::allocate::Allocator;
use crate::signal::{
    ClientMessage, ErrorCode, PROTOCOL_VERSION, ParticipantInfo, PeerRole, PublishTrack,
    ServerMessage, TrackInfo, TrackKind,
};
pub use crate::transport::cc::EstimateDetail;
use crate::transport::cc::SendEstimate;
use crate::transport::{fraction_lost_for, keyframe_requests};
use pc::ClientPc;
use recv::RecvSlot;
pub use recv::TrackStats;
use send::Outgoing;

/// Interval of keep-alive pings on the signal connection (the server drops silent sessions).
const KEEPALIVE: Duration = Duration::from_secs(5);

/// Nothing from the server for this long (it answers every ping): the signal connection is
/// taken for dead and a new one resumes the session. Long enough that TCP rides out a 5 s
/// blackout on its own.
const SIGNAL_SILENCE: Duration = Duration::from_secs(12);

/// The state of the signal connection of a joined session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SignalLink {
    Up,
    /// Dropped at `since`: the driver opens a new one.
    Down {
        since: Instant,
    },
    /// A new one is open and the `resume` is out.
    Resuming {
        since: Instant,
    },
}

/// What a [`Session`] publishes and receives.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The join token.
    pub token: String,
    /// Display name instead of the token's.
    pub name: Option<String>,
    /// Receive every track in the room as it appears.
    pub auto_subscribe: bool,
    /// Publish a camera track.
    pub video: bool,
    /// Nominal frame rate of the camera track (RTP timestamps of frames without a usable pts).
    pub fps: u32,
    /// Publish a microphone track.
    pub audio: bool,
    /// Decode received video (otherwise only counted).
    pub decode_video: bool,
    /// Decode received audio (otherwise only counted).
    pub decode_audio: bool,
    /// Seed of SSRCs and RTP offsets; `None` seeds from the operating system.
    pub seed: Option<u64>,
    /// Bitrate of the camera track (bit/s) when the uplink can carry it: congestion
    /// control lowers the encoder's target below it (see
    /// [`Session::video_target_bps`]), never above. Without simulcast only.
    pub video_bitrate_bps: u32,
    /// Simulcast: the camera's layers, smallest first (see
    /// [`simulcast_layers`](crate::codec::simulcast_layers)), each sent with
    /// [`Session::send_video_layer`]. Empty (the default) or one layer: one stream at
    /// `video_bitrate_bps`.
    pub video_layers: Vec<VideoLayer>,
    /// How long to try to take the session back over a new signal connection after the
    /// last one dropped (see [`Session::handle_signal_closed`]); the server keeps a session
    /// that long by default (15 s). Zero: a dropped signal connection ends the session.
    pub reconnect: Duration,
}

impl SessionConfig {
    /// Receive everything, decode everything, publish nothing.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            name: None,
            auto_subscribe: true,
            video: false,
            fps: 30,
            audio: false,
            decode_video: true,
            decode_audio: true,
            seed: None,
            video_bitrate_bps: DEFAULT_VIDEO_BITRATE_BPS,
            video_layers: Vec::new(),
            reconnect: Duration::from_secs(15),
        }
    }
}

/// Where a session stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    /// The join is out, no answer yet.
    Joining,
    /// In the room.
    Joined,
    /// The server refused the join.
    Refused {
        /// Stable code.
        code: ErrorCode,
        /// Detail.
        reason: String,
    },
    /// The signal connection is gone (or the session left).
    Closed,
}

/// The room as the server described it at join time.
#[derive(Clone, Debug, PartialEq)]
pub struct Joined {
    /// Room name.
    pub room: String,
    /// This participant.
    pub local: ParticipantInfo,
    /// Participants present.
    pub participants: Vec<ParticipantInfo>,
    /// Tracks published.
    pub tracks: Vec<TrackInfo>,
}

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    /// The session's local address it leaves from.
    pub from: SocketAddr,
    /// Destination.
    pub to: SocketAddr,
    /// The bytes.
    pub data: BytesMut,
}

/// Which connection a datagram or timer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Which {
    Publisher,
    Subscriber,
}

/// A remote track as the subscriber connection delivers it.
struct Incoming {
    mid: String,
    kind: TrackKind,
    receiver: RTCRtpReceiverId,
}

/// [`SessionConfig::video_bitrate_bps`] unless set: 640×360 at 30 fps.
pub const DEFAULT_VIDEO_BITRATE_BPS: u32 = 800_000;

/// Uplink set aside for the microphone track: Opus at up to 32 kbit/s plus 50 packets a
/// second of RTP, SRTP, UDP and IP headers (~60 bytes each: 24 kbit/s).
const AUDIO_ALLOWANCE_BPS: f64 = 56_000.0;

/// What the Opus encoder aims at, from [`Session::audio_target`]: audio is the last to give
/// way, and under pressure it gives way a little.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioTarget {
    /// Bitrate, bit/s: [`AUDIO_BPS`], or [`AUDIO_PRESSURE_BPS`] under pressure.
    pub bitrate_bps: u32,
    /// Discontinuous transmission: in silence, send nothing (on under pressure).
    pub dtx: bool,
}

impl Default for AudioTarget {
    /// [`AUDIO_BPS`] without DTX: the uplink has room.
    fn default() -> Self {
        Self {
            bitrate_bps: AUDIO_BPS,
            dtx: false,
        }
    }
}

/// The Opus bitrate when the uplink has room (mono speech, full band).
pub const AUDIO_BPS: u32 = 32_000;

/// The Opus bitrate under pressure: wideband speech stays clear at 16 kbit/s, and the 16
/// kbit/s saved (with DTX's silences, about half of a conversation) go to keeping the
/// smallest video layer.
pub const AUDIO_PRESSURE_BPS: u32 = 16_000;

/// Below the audio allowance plus this, a publisher with video is under pressure: its video
/// is down to its smallest layer at a rate where OpenH264 starts dropping pictures.
const PRESSURE_VIDEO_BPS: f64 = 100_000.0;

/// Share of the video bitrate that goes to headers (RTP, SRTP tag, TWCC extension, UDP, IP:
/// ~70 bytes on ~1,100-byte packets) and to retransmissions on a lossy uplink.
const VIDEO_OVERHEAD: f64 = 0.10;

/// The lowest target given to the video encoder: below it OpenH264 holds its rate only by
/// dropping pictures, and the server pauses video for the receivers anyway.
const MIN_VIDEO_BPS: f64 = 30_000.0;

/// How long a connection may take to come up after its answer before it is replaced.
const CONNECT_RETRY: Duration = Duration::from_secs(4);

/// One participant's session. See the [module documentation](self).
pub struct Session {
    config: SessionConfig,
    phase: Phase,
    joined: Option<Joined>,
    local_pub: SocketAddr,
    local_sub: SocketAddr,
    publisher: Option<ClientPc>,
    subscriber: Option<ClientPc>,
    /// The camera's streams: one, or one per simulcast layer (smallest first).
    video_out: Vec<Outgoing>,
    audio_out: Option<Outgoing>,
    /// Which simulcast layers the uplink carries.
    uplink_layers: Allocator,
    next_layer_decision: Instant,
    /// Receive slots the server asked for, `(audio, video)`.
    want_slots: (u32, u32),
    /// The roster and the receive slots, from the server's messages.
    state: RoomState,
    /// The subscriber connection's track ids → where they arrive.
    incoming: HashMap<String, Incoming>,
    recv: BTreeMap<String, RecvSlot>,
    /// Per connection ([`Which`]): when the server answered its current offer, while it is
    /// not up yet.
    answered: [Option<Instant>; 2],
    /// Per connection: an ICE restart waits for the answer to the offer that is out.
    restart_pending: [bool; 2],
    /// The publishing connection restarted ICE and the new path is not up yet (its
    /// pictures start again at a keyframe once it is).
    publisher_restarting: bool,
    /// The tracks the publishing connection's offer announced (sent again with an ICE
    /// restart's offer).
    publish: Vec<PublishTrack>,
    /// Per connection: the offer sent last, until its answer came (sent again after a
    /// resume: the answer may have been lost with the signal connection).
    last_offer: [Option<ClientMessage>; 2],
    /// The key that resumes this session over a new signal connection.
    resume_key: Option<String>,
    signal: SignalLink,
    /// When the server was last heard on the signal connection.
    last_heard: Instant,
    /// The publishing connection's uplink estimate (kept across its replacements).
    send_estimate: SendEstimate,
    /// Audio loss on the way to the server, smoothed over its receiver reports, and whether
    /// it calls for redundant audio.
    uplink_audio: RedSwitch,
    /// Round-trip time on the receiving connection, refreshed once a second.
    subscriber_rtt: Duration,
    next_rtt_update: Instant,
    receive_stats: BTreeMap<String, TrackStats>,
    send_stats: SendStats,
    signal_out: VecDeque<ClientMessage>,
    events: VecDeque<RoomEvent>,
    transmits: VecDeque<Transmit>,
    dirty: [bool; 2],
    deadlines: [Option<Instant>; 2],
    now: Instant,
    next_keepalive: Instant,
    rng: ChaCha20Rng,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("phase", &self.phase)
            .field("local_pub", &self.local_pub)
            .field("local_sub", &self.local_sub)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session that joins with `config.token`; its publishing connection uses
    /// `publisher_addr` and its receiving connection `subscriber_addr` (two distinct local
    /// UDP addresses). The join message is ready in [`poll_signal`](Self::poll_signal).
    pub fn new(
        config: SessionConfig,
        publisher_addr: SocketAddr,
        subscriber_addr: SocketAddr,
        now: Instant,
    ) -> Self {
        let rng = match config.seed {
            Some(seed) => ChaCha20Rng::seed_from_u64(seed),
            None => ChaCha20Rng::from_os_rng(),
        };
        let mut signal_out = VecDeque::new();
        signal_out.push_back(ClientMessage::Join {
            protocol: PROTOCOL_VERSION,
            token: config.token.clone(),
            auto_subscribe: config.auto_subscribe,
            name: config.name.clone(),
        });
        Self {
            config,
            phase: Phase::Joining,
            joined: None,
            local_pub: publisher_addr,
            local_sub: subscriber_addr,
            publisher: None,
            subscriber: None,
            video_out: Vec::new(),
            audio_out: None,
            uplink_layers: Allocator::default(),
            next_layer_decision: now,
            want_slots: (0, 0),
            state: RoomState::default(),
            incoming: HashMap::new(),
            recv: BTreeMap::new(),
            answered: [None; 2],
            restart_pending: [false; 2],
            publisher_restarting: false,
            publish: Vec::new(),
            last_offer: [None, None],
            resume_key: None,
            signal: SignalLink::Up,
            last_heard: now,
            send_estimate: SendEstimate::default(),
            uplink_audio: RedSwitch::default(),
            subscriber_rtt: crate::transport::jitter::DEFAULT_RTT,
            next_rtt_update: now,
            receive_stats: BTreeMap::new(),
            send_stats: SendStats::default(),
            signal_out,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            dirty: [false; 2],
            deadlines: [None; 2],
            now,
            next_keepalive: now + KEEPALIVE,
            rng,
        }
    }

    // ---- getters ----

    /// Where the session stands.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The room now: people, tracks, receive slots, speakers.
    pub fn state(&self) -> &RoomState {
        &self.state
    }

    /// The room as it was at join time, once joined.
    pub fn joined(&self) -> Option<&Joined> {
        self.joined.as_ref()
    }

    /// Whether the publishing connection is up, so media sent now reaches the server.
    pub fn publishing_ready(&self) -> bool {
        self.publisher.as_ref().is_some_and(|p| p.connected)
    }

    /// Whether the receiving connection is up.
    pub fn receiving_ready(&self) -> bool {
        self.subscriber.as_ref().is_some_and(|p| p.connected)
    }

    /// Whether the next picture should be a keyframe (the server asked, or sending started
    /// again); reading it clears it. With simulcast: of any layer (see
    /// [`take_layer_keyframe_requests`](Self::take_layer_keyframe_requests)).
    pub fn take_keyframe_request(&mut self) -> bool {
        self.take_layer_keyframe_requests().contains(&true)
    }

    /// Per simulcast layer (smallest first; one without simulcast): whether its next
    /// picture should be a keyframe. Reading clears them.
    pub fn take_layer_keyframe_requests(&mut self) -> Vec<bool> {
        self.video_out
            .iter_mut()
            .map(|o| std::mem::take(&mut o.keyframe))
            .collect()
    }

    /// The camera's layers as configured, smallest first: one without simulcast.
    pub fn video_layers(&self) -> Vec<VideoLayer> {
        match self.config.video_layers.len() {
            0 | 1 => crate::codec::single_layer(0, 0, self.config.video_bitrate_bps),
            _ => self.config.video_layers.clone(),
        }
    }

    /// What was sent.
    pub fn send_stats(&self) -> &SendStats {
        &self.send_stats
    }

    /// What was received, per remote track, in track order.
    pub fn receive_stats(&self) -> Vec<TrackStats> {
        self.receive_stats.values().cloned().collect()
    }

    /// The uplink estimate of the publishing connection (GCC on the server's transport-wide
    /// feedback and receiver reports: [`EstimateDetail::bps`]) with its delay- and
    /// loss-based halves and the loss it saw.
    pub fn uplink_estimate(&self) -> EstimateDetail {
        self.send_estimate.detail()
    }

    /// The bitrate (bit/s) the video encoder should aim at now: the uplink estimate less the
    /// audio's share and packet overhead, within 30 kbit/s and
    /// [`SessionConfig::video_bitrate_bps`]. `None` without a camera track or an estimate.
    /// Drivers pass it to [`H264Encoder::follow_bitrate`](crate::codec::H264Encoder::follow_bitrate)
    /// before each picture. With simulcast: all layers' targets together (see
    /// [`video_layer_targets`](Self::video_layer_targets)).
    pub fn video_target_bps(&self) -> Option<u32> {
        self.send_estimate.bps()?;
        let targets = self.video_layer_targets();
        (!targets.is_empty()).then(|| targets.iter().flatten().sum())
    }

    /// Per simulcast layer (smallest first; one without simulcast): the bitrate its encoder
    /// should aim at now, or `None` while the uplink cannot carry it (not encoded; see
    /// [`SimulcastEncoder::encode`](crate::codec::SimulcastEncoder::encode)). The layers
    /// the uplink carries get their configured bitrates from the smallest up, the highest
    /// of them what is left of the estimate (less the audio and the overhead), at least
    /// 30 kbit/s; before an estimate, the configured bitrates. Empty without a camera.
    pub fn video_layer_targets(&self) -> Vec<Option<u32>> {
        let mut left = self
            .send_estimate
            .bps()
            .map(|e| (e as f64 - self.audio_allowance()) * (1.0 - VIDEO_OVERHEAD));
        let top_on = self.video_out.iter().rposition(|o| o.on);
        self.video_out
            .iter()
            .enumerate()
            .map(|(i, out)| {
                if !out.on && i > 0 {
                    return None;
                }
                let nominal = out.nominal_bps as f64;
                let Some(budget) = left.as_mut() else {
                    return Some(out.nominal_bps);
                };
                let target = if Some(i) == top_on {
                    budget.clamp(MIN_VIDEO_BPS, nominal.max(MIN_VIDEO_BPS))
                } else {
                    nominal.min(budget.max(MIN_VIDEO_BPS))
                };
                *budget -= target;
                Some(target as u32)
            })
            .collect()
    }

    /// What the Opus encoder should aim at now. Under pressure — an uplink estimate below
    /// the audio allowance (56 kbit/s) plus 100 kbit/s with video, or below three quarters of
    /// the allowance without — [`AUDIO_PRESSURE_BPS`] with DTX; else [`AUDIO_BPS`] without.
    /// Drivers pass it to [`OpusEncoder::set_bitrate`](crate::codec::OpusEncoder::set_bitrate)
    /// and [`set_dtx`](crate::codec::OpusEncoder::set_dtx) before each frame.
    pub fn audio_target(&self) -> AudioTarget {
        let floor = if self.config.video {
            AUDIO_ALLOWANCE_BPS + PRESSURE_VIDEO_BPS
        } else {
            AUDIO_ALLOWANCE_BPS * 0.75
        };
        let pressure = self.send_estimate.bps().is_some_and(|e| (e as f64) < floor);
        if pressure {
            AudioTarget {
                bitrate_bps: AUDIO_PRESSURE_BPS,
                dtx: true,
            }
        } else {
            AudioTarget::default()
        }
    }

    /// Uplink set aside for the microphone track, when there is one: more while its
    /// packets carry copies of earlier frames (redundant audio, on a lossy uplink), as much
    /// again as the Opus bitrate.
    fn audio_allowance(&self) -> f64 {
        match &self.audio_out {
            Some(out) if out.red_on => self.audio_allowance_with_copies(),
            Some(_) => AUDIO_ALLOWANCE_BPS,
            None => 0.0,
        }
    }

    /// What the microphone track takes while its packets carry copies: the Opus bitrate
    /// again on top of the allowance.
    fn audio_allowance_with_copies(&self) -> f64 {
        AUDIO_ALLOWANCE_BPS + f64::from(self.audio_target().bitrate_bps)
    }

    /// The estimate the publishing connection starts from and may not exceed: the configured
    /// video bitrate with its overhead, plus the audio with room for copies of its frames
    /// (redundant audio, sent while the uplink loses): capped without that room, copies took
    /// their bits from the video (on `lte` a 320×180 camera's 172 kbit/s fell to 143).
    fn max_uplink_bps(&self) -> f64 {
        let video = if self.config.video {
            let nominal: u32 = self.video_layers().iter().map(|l| l.bitrate_bps).sum();
            nominal as f64 / (1.0 - VIDEO_OVERHEAD)
        } else {
            0.0
        };
        video
            + if self.config.audio {
                AUDIO_ALLOWANCE_BPS + f64::from(AUDIO_BPS)
            } else {
                0.0
            }
    }

    /// The packet loss (percent) to tell the Opus encoder to expect, once the server has
    /// reported on the published audio: twice the loss on the way up (the way down to the
    /// others is assumed no better, and the server does not repair audio), at most 30.
    /// `None` until a report came; the encoder's configured value applies until then.
    pub fn expected_audio_loss_pct(&self) -> Option<u8> {
        self.uplink_audio
            .loss()
            .map(|loss| (200.0 * loss).round().clamp(0.0, 30.0) as u8)
    }

    /// Round-trip time (ms) of the publishing or receiving connection's ICE pair.
    pub fn rtt_ms(&mut self, role: PeerRole) -> Option<f64> {
        let now = self.now;
        let pc = match role {
            PeerRole::Publisher => self.publisher.as_mut()?,
            PeerRole::Subscriber => self.subscriber.as_mut()?,
        };
        crate::transport::ice_rtt(&mut pc.pc, now).map(|rtt| rtt.as_secs_f64() * 1000.0)
    }

    // ---- inputs ----

    /// A message from the server.
    pub fn handle_signal(&mut self, now: Instant, message: ServerMessage) {
        self.advance(now);
        self.last_heard = now;
        self.state.apply(&message);
        let event = match message {
            ServerMessage::Joined {
                room,
                participant,
                participants,
                tracks,
                resume,
                ..
            } => {
                self.resume_key = resume;
                let can_publish = participant.role.can_publish();
                self.joined = Some(Joined {
                    room,
                    local: participant,
                    participants,
                    tracks,
                });
                self.phase = Phase::Joined;
                // A viewer publishes nothing until a host promotes it.
                if can_publish {
                    self.publish_now(now);
                }
                None
            }
            ServerMessage::Answer { pc, sdp, refused } => {
                self.on_answer(now, pc, sdp);
                // Only a build whose codecs the server does not take gets here.
                for r in refused {
                    self.events.push_back(RoomEvent::Error {
                        code: ErrorCode::NegotiationFailed,
                        reason: format!(
                            "the server refused the track of m-line {}: {}",
                            r.mid, r.reason
                        ),
                    });
                }
                None
            }
            ServerMessage::Candidate { pc, candidate } => {
                let (conn, which) = match pc {
                    PeerRole::Publisher => (self.publisher.as_mut(), Which::Publisher),
                    PeerRole::Subscriber => (self.subscriber.as_mut(), Which::Subscriber),
                };
                if let Some(conn) = conn
                    && let Err(e) = conn.add_candidate(candidate)
                {
                    tracing::debug!("{pc:?} candidate: {e}");
                }
                self.dirty[which as usize] = true;
                None
            }
            ServerMessage::Renegotiate { audio, video } => {
                self.want_slots = (self.want_slots.0.max(audio), self.want_slots.1.max(video));
                if !self.subscriber.as_ref().is_some_and(|s| s.offer_pending) {
                    self.renegotiate(now);
                }
                None
            }
            ServerMessage::ParticipantJoined { participant } => {
                Some(RoomEvent::ParticipantJoined(participant))
            }
            ServerMessage::ParticipantLeft { identity, reason } => {
                Some(RoomEvent::ParticipantLeft { identity, reason })
            }
            ServerMessage::TrackPublished { track } => Some(RoomEvent::TrackPublished(track)),
            ServerMessage::TrackUnpublished { track } => Some(RoomEvent::TrackUnpublished(track)),
            ServerMessage::TrackMuted { track, muted } => {
                Some(RoomEvent::TrackMuted { track, muted })
            }
            ServerMessage::VideoPaused { track, paused } => {
                Some(RoomEvent::VideoPaused { track, paused })
            }
            ServerMessage::ActiveSpeaker { speakers } => Some(RoomEvent::ActiveSpeaker(speakers)),
            ServerMessage::Hands { queue } => Some(RoomEvent::Hands(queue)),
            ServerMessage::HandLowered => Some(RoomEvent::HandLowered),
            ServerMessage::RoleChanged { identity, role } => {
                if self.state.is_local(&identity) {
                    self.on_own_role(now, role);
                }
                Some(RoomEvent::RoleChanged { identity, role })
            }
            ServerMessage::Data { message } => Some(RoomEvent::Data(message)),
            ServerMessage::RecordingStarted { by } => Some(RoomEvent::Recording { on: true, by }),
            ServerMessage::RecordingStopped { by } => Some(RoomEvent::Recording { on: false, by }),
            resumed @ ServerMessage::Resumed { .. } => {
                self.on_resumed(now, &resumed);
                Some(RoomEvent::Reconnected)
            }
            ServerMessage::Error { code, reason } => {
                if self.phase == Phase::Joining {
                    self.phase = Phase::Refused {
                        code,
                        reason: reason.clone(),
                    };
                }
                if code.is_fatal() {
                    // The server closes the session after this: nothing to resume.
                    self.resume_key = None;
                }
                if code == ErrorCode::SessionGone {
                    // Too late to resume: the session is over (join again).
                    self.events.push_back(RoomEvent::Error { code, reason });
                    self.end(now);
                    return;
                }
                Some(RoomEvent::Error { code, reason })
            }
            _ => None,
        };
        if let Some(e) = event {
            self.events.push_back(e);
        }
    }

    /// The signal connection dropped without the server closing it (no close frame: a
    /// reset, a dead path). A joined session that can resume ([`SessionConfig::reconnect`])
    /// carries on — its media never used that connection — and asks its driver for a new
    /// one ([`signal_down`](Self::signal_down)); otherwise the session is over.
    pub fn handle_signal_closed(&mut self, now: Instant) {
        self.advance(now);
        if !self.resumable() {
            return self.end(now);
        }
        match self.signal {
            SignalLink::Up => {
                tracing::info!("signal connection lost: resuming");
                self.signal = SignalLink::Down { since: now };
                // Offers whose answers have not come go out again after the resume: the
                // answers may have been lost with the connection.
                for offer in self.last_offer.iter().flatten().rev() {
                    self.signal_out.push_front(offer.clone());
                }
                self.events.push_back(RoomEvent::Reconnecting);
            }
            SignalLink::Resuming { since } => self.signal = SignalLink::Down { since },
            SignalLink::Down { .. } => {}
        }
    }

    /// The server closed the signal connection on purpose (a close frame: the session was
    /// left, removed, timed out, or the server shuts down): the session is over.
    pub fn handle_server_close(&mut self, now: Instant) {
        self.end(now);
    }

    /// Whether a lost signal connection can be replaced without ending the session.
    fn resumable(&self) -> bool {
        self.phase == Phase::Joined && self.resume_key.is_some() && !self.config.reconnect.is_zero()
    }

    /// Whether the signal connection is gone and the session waits for a new one: the
    /// driver closes the old one if it is still open, opens a new one (retrying with a
    /// pause while this holds) and calls [`signal_reopened`](Self::signal_reopened).
    pub fn signal_down(&self) -> bool {
        matches!(self.signal, SignalLink::Down { .. }) && self.phase == Phase::Joined
    }

    /// A new signal connection is open: the `resume` goes out on it first, then what
    /// waited.
    pub fn signal_reopened(&mut self, now: Instant) {
        self.advance(now);
        let (SignalLink::Down { since }, Some(key)) = (self.signal, self.resume_key.clone()) else {
            return;
        };
        self.signal = SignalLink::Resuming { since };
        self.last_heard = now;
        self.signal_out.push_front(ClientMessage::Resume {
            protocol: PROTOCOL_VERSION,
            resume: key,
        });
    }

    /// The server took the session back: the room as it is now becomes events.
    fn on_resumed(&mut self, now: Instant, resumed: &ServerMessage) {
        tracing::info!("signal connection back: session resumed");
        self.signal = SignalLink::Up;
        for missed in self.state.catch_up(resumed) {
            self.handle_signal(now, missed);
        }
    }

    /// The session is over: connections closed, `Disconnected`.
    fn end(&mut self, now: Instant) {
        self.advance(now);
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.close_connections();
            self.events.push_back(RoomEvent::Disconnected);
        }
    }

    /// The local network changed (a phone moved from LTE to Wi-Fi, a laptop got a new
    /// address): from now on the publishing connection's datagrams leave from `publisher`
    /// and the receiving connection's from `subscriber`. Each connection restarts ICE (new
    /// credentials, a host candidate for the new address, a new offer to the server; one
    /// whose offer is out restarts when its answer comes). DTLS, SRTP and the streams carry
    /// on, so media resumes once the first check on the new path succeeds. The signal
    /// connection's TCP path went with the old network too: when the session can resume,
    /// its driver opens a new one ([`signal_down`](Self::signal_down)) and the offers go
    /// out on it.
    pub fn network_changed(&mut self, now: Instant, publisher: SocketAddr, subscriber: SocketAddr) {
        self.advance(now);
        self.local_pub = publisher;
        self.local_sub = subscriber;
        for which in [Which::Publisher, Which::Subscriber] {
            self.restart_pending[which as usize] = true;
            self.restart_ice(now, which);
        }
        if self.resumable() {
            self.handle_signal_closed(now);
        }
    }

    /// Restarts ICE on connection `which` if a restart is pending and no offer is out.
    fn restart_ice(&mut self, now: Instant, which: Which) {
        let local = match which {
            Which::Publisher => self.local_pub,
            Which::Subscriber => self.local_sub,
        };
        let pending = std::mem::take(&mut self.restart_pending[which as usize]);
        let Some(conn) = self.conn(which) else {
            return;
        };
        if !pending || conn.offer_pending {
            self.restart_pending[which as usize] = pending;
            return;
        }
        match conn.restart_ice(now, local) {
            Ok(sdp) => {
                let (pc, publish) = match which {
                    Which::Publisher => (PeerRole::Publisher, self.publish.clone()),
                    Which::Subscriber => (PeerRole::Subscriber, Vec::new()),
                };
                self.signal_out
                    .push_back(ClientMessage::Offer { pc, sdp, publish });
                self.publisher_restarting |= which == Which::Publisher;
                self.send_stats.ice_restarts += 1;
                tracing::info!("{which:?}: ICE restarted from {local}");
            }
            Err(e) => tracing::warn!("{which:?}: ICE restart: {e}"),
        }
        self.dirty[which as usize] = true;
    }

    /// A datagram arrived at the local address `local` from `from`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
    ) {
        self.advance(now);
        let which = if local == self.local_pub {
            Which::Publisher
        } else if local == self.local_sub {
            Which::Subscriber
        } else {
            return;
        };
        let Some(conn) = self.conn(which) else {
            return;
        };
        if !conn.handshake.admit(data) {
            return;
        }
        let msg = crate::transport::datagram(now, local, from, data);
        if let Err(e) = conn.pc.handle_read(msg) {
            tracing::debug!("{which:?} read: {e}");
        }
        self.dirty[which as usize] = true;
    }

    /// Time passed: connection timers and the keep-alive.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        for which in [Which::Publisher, Which::Subscriber] {
            let due = self.deadlines[which as usize].is_some_and(|t| t <= now);
            if due && let Some(conn) = self.conn(which) {
                if let Err(e) = conn.pc.handle_timeout(now) {
                    tracing::debug!("{which:?} timeout: {e}");
                }
                self.deadlines[which as usize] = None;
                self.dirty[which as usize] = true;
            }
        }
        self.service_slots(now);
        self.replace_stuck_connections(now);
        match self.signal {
            SignalLink::Up
                if self.phase == Phase::Joined && now >= self.last_heard + SIGNAL_SILENCE =>
            {
                tracing::info!("nothing from the server for {SIGNAL_SILENCE:?}");
                self.handle_signal_closed(now);
            }
            SignalLink::Down { since } | SignalLink::Resuming { since }
                if now >= since + self.config.reconnect =>
            {
                tracing::info!("no signal connection for {:?}: over", self.config.reconnect);
                self.end(now);
            }
            _ => {}
        }
        if now >= self.next_keepalive {
            self.next_keepalive = now + KEEPALIVE;
            if self.phase == Phase::Joined && self.signal == SignalLink::Up {
                self.signal_out.push_back(ClientMessage::Ping);
            }
        }
    }

    /// Queues a protocol message for the server (data, mute, subscribe, leave …).
    pub fn send_signal(&mut self, message: ClientMessage) -> Result<(), RoomError> {
        if matches!(self.phase, Phase::Closed | Phase::Refused { .. }) {
            return Err(RoomError::Closed);
        }
        self.signal_out.push_back(message);
        Ok(())
    }

    /// Leaves: the leave message is queued and both connections close.
    pub fn leave(&mut self, now: Instant) {
        self.advance(now);
        if self.phase == Phase::Joined || self.phase == Phase::Joining {
            self.signal_out.push_back(ClientMessage::Leave);
        }
        self.close_connections();
        self.phase = Phase::Closed;
    }

    // ---- outputs ----

    /// The next message for the server.
    pub fn poll_signal(&mut self) -> Option<ClientMessage> {
        self.settle();
        if self.signal_down() {
            return None;
        }
        let message = self.signal_out.pop_front()?;
        if let ClientMessage::Offer { pc, .. } = &message {
            self.last_offer[*pc as usize] = Some(message.clone());
        }
        Some(message)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.settle();
        self.transmits.pop_front()
    }

    /// The next room event.
    pub fn poll_event(&mut self) -> Option<RoomEvent> {
        self.settle();
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.settle();
        let signal = match self.signal {
            SignalLink::Up => self.last_heard + SIGNAL_SILENCE,
            SignalLink::Down { since } | SignalLink::Resuming { since } => {
                since + self.config.reconnect
            }
        };
        let mut next = (self.phase == Phase::Joined).then_some(self.next_keepalive.min(signal));
        let retry = self
            .answered
            .into_iter()
            .flatten()
            .map(|t| t + CONNECT_RETRY);
        let slots = self
            .recv
            .values()
            .filter_map(RecvSlot::next_timeout)
            .chain(retry);
        for t in self.deadlines.into_iter().flatten().chain(slots) {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        next
    }

    // ---- internals ----

    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn conn(&mut self, which: Which) -> Option<&mut ClientPc> {
        match which {
            Which::Publisher => self.publisher.as_mut(),
            Which::Subscriber => self.subscriber.as_mut(),
        }
    }

    fn close_connections(&mut self) {
        for which in [Which::Publisher, Which::Subscriber] {
            if let Some(conn) = self.conn(which) {
                let _ = conn.pc.close();
                conn.connected = false;
            }
            self.dirty[which as usize] = true;
        }
    }

    fn on_answer(&mut self, now: Instant, role: PeerRole, sdp: String) {
        let which = match role {
            PeerRole::Publisher => Which::Publisher,
            PeerRole::Subscriber => Which::Subscriber,
        };
        self.last_offer[which as usize] = None;
        let Some(conn) = self.conn(which) else {
            return;
        };
        if let Err(e) = conn.apply_answer(now, sdp) {
            tracing::warn!("applying {role:?} answer: {e}");
        }
        if !conn.connected {
            self.answered[which as usize].get_or_insert(now);
        }
        self.dirty[which as usize] = true;
        match role {
            PeerRole::Publisher => self.learn_send_parameters(),
            PeerRole::Subscriber => self.renegotiate(now),
        }
        self.restart_ice(now, which);
    }

    /// Starts the publishing connection; a failure is an event.
    fn publish_now(&mut self, now: Instant) {
        if let Err(e) = self.start_publishing(now) {
            self.events.push_back(RoomEvent::Error {
                code: ErrorCode::NegotiationFailed,
                reason: e.to_string(),
            });
        }
    }

    /// A host changed this participant's role: a speaker (or host) publishes what the
    /// configuration asks for, a viewer stops (the server has ended its tracks and its side
    /// of the publishing connection).
    fn on_own_role(&mut self, now: Instant, role: crate::signal::Role) {
        if let Some(joined) = self.joined.as_mut() {
            joined.local.role = role;
        }
        if role.can_publish() {
            if self.publisher.is_none() {
                self.publish_now(now);
            }
        } else {
            self.drop_publisher();
        }
    }

    /// Closes the publishing connection and forgets its streams.
    fn drop_publisher(&mut self) {
        self.drop_conn(Which::Publisher);
        self.video_out.clear();
        self.audio_out = None;
    }

    /// Closes and drops connection `which`, with its timer and answer time.
    fn drop_conn(&mut self, which: Which) {
        self.answered[which as usize] = None;
        self.deadlines[which as usize] = None;
        let slot = match which {
            Which::Publisher => &mut self.publisher,
            Which::Subscriber => &mut self.subscriber,
        };
        if let Some(mut old) = slot.take() {
            let _ = old.pc.close();
        }
    }

    /// A connection still not up [`CONNECT_RETRY`] after its answer is replaced by a new one
    /// (new ICE credentials, new DTLS), and the server replaces its side on the new offer: a
    /// DTLS handshake whose first flights were lost can stall for good. Measured on simulated
    /// `lte,loss=10%`: one publisher in eight never connected; in two seeds of eight, two
    /// participants of four received nothing at all; once in eight Chromium runs on `lte`,
    /// the Rust participant never received the browser. A new receiving connection offers
    /// every slot the server asked for; the server assigns them again.
    fn replace_stuck_connections(&mut self, now: Instant) {
        if self.stuck(Which::Publisher, now) {
            self.drop_publisher();
            self.send_stats.publisher_restarts += 1;
            tracing::info!(
                "publishing connection not up {CONNECT_RETRY:?} after its answer: replaced"
            );
            self.publish_now(now);
        }
        if self.stuck(Which::Subscriber, now) {
            self.drop_conn(Which::Subscriber);
            self.incoming.clear();
            self.recv.clear();
            self.send_stats.subscriber_restarts += 1;
            tracing::info!(
                "receiving connection not up {CONNECT_RETRY:?} after its answer: replaced"
            );
            self.renegotiate(now);
        }
    }

    /// Whether connection `which` is still not up [`CONNECT_RETRY`] after its answer (the
    /// caller drops it and offers a new one).
    fn stuck(&mut self, which: Which, now: Instant) -> bool {
        let Some(answered) = self.answered[which as usize] else {
            return false;
        };
        if self.conn(which).is_some_and(|c| c.connected) {
            self.answered[which as usize] = None;
            return false;
        }
        now >= answered + CONNECT_RETRY && self.phase == Phase::Joined
    }

    /// Makes sure the receiving connection has the slots the server asked for; sends an
    /// offer when some had to be added.
    fn renegotiate(&mut self, now: Instant) {
        let (audio, video) = self.want_slots;
        if audio == 0 && video == 0 {
            return;
        }
        if self.subscriber.is_none() {
            match ClientPc::new(self.local_sub, now, None) {
                Ok(conn) => self.subscriber = Some(conn),
                Err(e) => {
                    tracing::warn!("receiving connection: {e}");
                    return;
                }
            }
        }
        let Some(conn) = self.subscriber.as_mut() else {
            return;
        };
        let offered = conn.ensure_recv_slots(audio, video).and_then(|added| {
            if added {
                conn.offer(now).map(Some)
            } else {
                Ok(None)
            }
        });
        match offered {
            Ok(Some(sdp)) => {
                self.signal_out.push_back(ClientMessage::Offer {
                    pc: PeerRole::Subscriber,
                    sdp,
                    publish: vec![],
                });
                self.dirty[Which::Subscriber as usize] = true;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("subscriber renegotiation: {e}"),
        }
    }

    /// Drains both connections until nothing is left to do.
    fn settle(&mut self) {
        for _ in 0..4 {
            if !self.dirty.iter().any(|d| *d) {
                break;
            }
            for which in [Which::Publisher, Which::Subscriber] {
                if std::mem::take(&mut self.dirty[which as usize]) {
                    self.drain(which);
                }
            }
        }
    }

    fn drain(&mut self, which: Which) {
        let now = self.now;
        let mut events = Vec::new();
        let mut messages = Vec::new();
        {
            let Some(conn) = self.conn(which) else {
                return;
            };
            while let Some(ev) = conn.pc.poll_event() {
                events.push(ev);
            }
            while let Some(m) = conn.pc.poll_read() {
                messages.push(m.message);
            }
            let from = conn.local;
            let mut out = Vec::new();
            while let Some(w) = conn.pc.poll_write() {
                conn.handshake.on_sent(&w.message);
                out.push(Transmit {
                    from,
                    to: w.transport.peer_addr,
                    data: w.message,
                });
            }
            let deadline = conn.pc.poll_timeout();
            self.transmits.extend(out);
            self.deadlines[which as usize] = deadline;
        }
        for ev in events {
            self.on_pc_event(which, ev);
        }
        for m in messages {
            self.on_pc_message(now, which, m);
        }
    }

    fn on_pc_event(&mut self, which: Which, ev: RTCPeerConnectionEvent) {
        match ev {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                tracing::debug!("{which:?}: {state}");
                let connected = state == RTCPeerConnectionState::Connected;
                // `Disconnected` is silence (an outage), not death: keep sending so media
                // is there the moment the path is.
                if state != RTCPeerConnectionState::Disconnected
                    && let Some(conn) = self.conn(which)
                {
                    conn.connected = connected;
                }
                if connected && which == Which::Publisher {
                    for out in &mut self.video_out {
                        out.keyframe = true;
                    }
                }
            }
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                RTCIceConnectionState::Connected,
            ) if which == Which::Publisher && std::mem::take(&mut self.publisher_restarting) => {
                // The new path is up after a change of network: what the old one lost is
                // stale, so receivers start again at a keyframe. (Towards this client the
                // server asks its publishers for keyframes itself.)
                for out in &mut self.video_out {
                    out.keyframe = true;
                }
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init))
                if which == Which::Subscriber =>
            {
                let Some(conn) = self.subscriber.as_mut() else {
                    return;
                };
                let mid = conn
                    .pc
                    .rtp_transceiver(init.receiver_id.into())
                    .and_then(|t| t.mid().clone())
                    .unwrap_or_default();
                let kind = match conn.pc.rtp_receiver(init.receiver_id) {
                    Some(r) if r.track().kind() == RtpCodecKind::Audio => TrackKind::Audio,
                    _ => TrackKind::Video,
                };
                self.incoming.insert(
                    init.track_id,
                    Incoming {
                        mid,
                        kind,
                        receiver: init.receiver_id,
                    },
                );
            }
            _ => {}
        }
    }

    fn on_pc_message(&mut self, now: Instant, which: Which, message: RTCMessage) {
        match (which, message) {
            (Which::Subscriber, RTCMessage::RtpPacket(track_id, packet)) => {
                self.on_rtp(now, &track_id, packet);
            }
            (Which::Publisher, RTCMessage::RtcpPacket(_, packets)) => {
                for ssrc in keyframe_requests(&packets) {
                    // A request for an SSRC not sent (or a FIR without one): every layer.
                    let known = self.video_out.iter().any(|o| o.ssrc == ssrc);
                    for out in &mut self.video_out {
                        out.keyframe |= !known || out.ssrc == ssrc;
                    }
                    self.send_stats.keyframe_requests += 1;
                }
                // The uplink estimate's loss-based half: the loss of the video (more packets,
                // a steadier figure), or of the audio when there is no video.
                if let Some(ssrc) = self
                    .video_out
                    .first()
                    .or(self.audio_out.as_ref())
                    .map(Outgoing::ssrc)
                    && let Some(lost) = fraction_lost_for(&packets, ssrc)
                {
                    self.send_estimate.on_receiver_report(lost as f64 / 256.0);
                }
                if let Some(ssrc) = self.audio_out.as_ref().map(Outgoing::ssrc)
                    && let Some(lost) = fraction_lost_for(&packets, ssrc)
                {
                    self.uplink_audio.on_report(lost);
                    // Copies only while the uplink's queues allow twice what the audio takes
                    // with them: on a link that loses because it is full, more audio would
                    // only lose more.
                    let with_copies = self.audio_allowance_with_copies();
                    let detail = self.send_estimate.detail();
                    let room = detail.bps().is_none()
                        || crate::codec::red::room_for_copies(&detail, with_copies);
                    if let Some(out) = self.audio_out.as_mut() {
                        out.red_on = room && self.uplink_audio.wanted();
                    }
                }
            }
            _ => {}
        }
    }

    fn on_rtp(&mut self, now: Instant, track_id: &str, packet: rtp::Packet) {
        let Some(incoming) = self.incoming.get(track_id) else {
            return;
        };
        let (mid, kind, receiver) = (incoming.mid.clone(), incoming.kind, incoming.receiver);
        let Some(room_track) = self.state.slot_track(&mid).map(str::to_owned) else {
            return;
        };
        let decode = match kind {
            TrackKind::Video => self.config.decode_video,
            TrackKind::Audio => self.config.decode_audio,
        };
        let rtt = self.subscriber_rtt;
        let slot = self.recv.entry(mid.clone()).or_insert_with(|| {
            let mut slot = RecvSlot::new(kind, receiver, now);
            slot.set_rtt(rtt);
            slot
        });
        let stats = self
            .receive_stats
            .entry(room_track.clone())
            .or_insert_with(|| TrackStats::new(&room_track, kind));
        slot.on_packet(now, &packet, decode, stats);
        if decode {
            self.service_slot(now, &mid);
        }
    }

    /// Plays out what a receive slot has due and sends its feedback (NACKs, keyframe
    /// requests).
    fn service_slot(&mut self, now: Instant, mid: &str) {
        let Some(slot) = self.recv.get_mut(mid) else {
            return;
        };
        let Some(room_track) = self.state.slot_track(mid) else {
            return;
        };
        let Some(stats) = self.receive_stats.get_mut(room_track) else {
            return;
        };
        let mut decoded = Vec::new();
        let feedback = slot.poll(now, room_track, stats, &mut decoded);
        self.events.extend(decoded);
        let (ssrc, receiver) = (slot.ssrc, slot.receiver);
        let mut rtcp: Vec<Box<dyn rtc::rtcp::Packet>> = Vec::new();
        if !feedback.nacks.is_empty() {
            rtcp.push(crate::transport::nack(ssrc, &feedback.nacks));
        }
        if feedback.keyframe {
            rtcp.push(Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: ssrc,
            }));
        }
        if !rtcp.is_empty()
            && let Some(conn) = self.subscriber.as_mut()
            && let Some(mut r) = conn.pc.rtp_receiver(receiver)
        {
            let _ = r.write_rtcp(now, rtcp);
            self.dirty[Which::Subscriber as usize] = true;
        }
    }

    /// Plays out every receive slot that is due; refreshes their round-trip time once a
    /// second.
    fn service_slots(&mut self, now: Instant) {
        if now >= self.next_rtt_update {
            self.next_rtt_update = now + Duration::from_secs(1);
            if let Some(rtt) = self
                .subscriber
                .as_mut()
                .and_then(|c| crate::transport::ice_rtt(&mut c.pc, now))
            {
                self.subscriber_rtt = rtt;
                for slot in self.recv.values_mut() {
                    slot.set_rtt(self.subscriber_rtt);
                }
            }
        }
        let due: Vec<String> = self
            .recv
            .iter()
            .filter(|(_, slot)| slot.next_timeout().is_some_and(|t| t <= now))
            .map(|(mid, _)| mid.clone())
            .collect();
        for mid in due {
            self.service_slot(now, &mid);
        }
    }
}
