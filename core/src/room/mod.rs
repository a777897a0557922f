//! The room client: join a room on a madang server, publish video and audio, receive and
//! decode everyone else's.
//!
//! [`RoomState`] (who is in the room, their tracks, the receive slots, the speakers) is pure
//! and also builds for wasm32, where the browser module uses it; the rest needs the feature
//! `net`: `session::Session` is the sans-I/O client core and `Room` its tokio driver.
//!
//! ```no_run
//! # async fn run() -> Result<(), madang::room::RoomError> {
//! use madang::media::TestPattern;
//! use madang::room::{Room, RoomEvent, RoomOptions, VideoOptions};
//! let options = RoomOptions { video: Some(VideoOptions::new(640, 360)), ..RoomOptions::default() };
//! let mut room = Room::connect("ws://127.0.0.1:8080/signal", "<token>", options).await?;
//! let mut pattern = TestPattern::new(640, 360).unwrap();
//! room.publish_video(&pattern.next_frame(0)).await?;
//! while let Some(event) = room.next_event().await {
//!     if let RoomEvent::VideoFrame { participant, frame, .. } = event {
//!         println!("{participant}: {}x{}", frame.width(), frame.height());
//!     }
//! }
//! # Ok(()) }
//! ```

#[cfg(feature = "net")]
mod client;
#[cfg(feature = "net")]
mod grid;
#[cfg(feature = "net")]
pub mod session;
pub mod state;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::codec::CodecError;
use crate::media::{AudioFrame, VideoFrame};
use crate::signal::{DataMessage, ErrorCode, LeaveReason, ParticipantInfo, Speaker, TrackInfo};

#[cfg(feature = "net")]
pub use crate::codec::rtp::level_dbov;
#[cfg(feature = "net")]
pub use client::Room;
#[cfg(feature = "net")]
pub use grid::GridView;
#[cfg(feature = "net")]
pub use session::{AudioTarget, EstimateDetail, TrackStats};
pub use state::RoomState;

/// What to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoOptions {
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames per second the source delivers.
    pub fps: u32,
    /// H.264 target bitrate in kbit/s (of the full-size layer with simulcast).
    pub bitrate_kbps: u32,
    /// Send simulcast: the full size and halves of it, each its own stream (see
    /// [`simulcast_layers`](crate::codec::simulcast_layers)), so that the server can send
    /// each receiver the size its link and screen take. Off by default.
    pub simulcast: bool,
}

impl VideoOptions {
    /// 30 fps at a bitrate suited to the size (about 0.1 bit per pixel per frame).
    pub fn new(width: u32, height: u32) -> Self {
        let kbps = ((width as u64 * height as u64 * 30) / 10_000).clamp(150, 4000) as u32;
        Self {
            width,
            height,
            fps: 30,
            bitrate_kbps: kbps,
            simulcast: false,
        }
    }

    /// The layers the camera is sent as, smallest first: one without simulcast.
    pub fn layers(&self) -> Vec<crate::codec::VideoLayer> {
        let bps = self.bitrate_kbps.saturating_mul(1000);
        crate::codec::camera_layers(self.width, self.height, bps, self.simulcast)
    }
}

/// How to join.
#[derive(Clone, Debug)]
pub struct RoomOptions {
    /// Publish a camera track of this shape (frames pushed with [`Room::publish_video`]).
    pub video: Option<VideoOptions>,
    /// Publish a microphone track (frames pushed with [`Room::publish_audio`]).
    pub audio: bool,
    /// Receive every track in the room as it appears.
    pub auto_subscribe: bool,
    /// Display name shown to the others instead of the token's (1 to 64 characters).
    pub name: Option<String>,
    /// Decode received video into [`RoomEvent::VideoFrame`]s. When off, packets are only
    /// counted in [`Room::receive_stats`] (load testing).
    pub decode_video: bool,
    /// Decode received audio into [`RoomEvent::AudioFrame`]s. When off, only counted.
    pub decode_audio: bool,
    /// Local address the WebRTC sockets bind to (loopback by default; unspecified binds the
    /// address the system routes to the server from).
    pub bind_ip: IpAddr,
    /// How many decoded pictures and audio blocks may wait unread before new ones are
    /// dropped (other events are never dropped, and never hold up the session).
    pub event_capacity: usize,
    /// How long to wait for the server to accept the join.
    pub join_timeout: Duration,
    /// Certificates (PEM) to trust for a `wss://` server besides the web's public roots: a
    /// self-signed certificate or a city's own CA. `None`: the public roots only.
    pub trusted_certificates: Option<Vec<u8>>,
    /// How long to keep trying to take the session back over a new signal connection when
    /// the WebSocket drops (media goes on meanwhile; see [`RoomEvent::Reconnecting`]).
    /// Zero: a dropped WebSocket ends the session.
    pub reconnect: Duration,
}

impl Default for RoomOptions {
    fn default() -> Self {
        Self {
            video: None,
            audio: false,
            auto_subscribe: true,
            name: None,
            decode_video: true,
            decode_audio: true,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            event_capacity: 256,
            join_timeout: Duration::from_secs(10),
            trusted_certificates: None,
            reconnect: Duration::from_secs(15),
        }
    }
}

/// Something that happened in the room.
#[derive(Debug)]
#[non_exhaustive]
pub enum RoomEvent {
    /// Someone joined.
    ParticipantJoined(ParticipantInfo),
    /// Someone left.
    ParticipantLeft {
        /// Identity.
        identity: String,
        /// Why.
        reason: LeaveReason,
    },
    /// A track appeared.
    TrackPublished(TrackInfo),
    /// A track ended.
    TrackUnpublished(String),
    /// A track was muted or unmuted.
    TrackMuted {
        /// Track id.
        track: String,
        /// New state.
        muted: bool,
    },
    /// The server paused (or resumed) forwarding a video to this participant because its
    /// downlink cannot carry it (or can again); the audio goes on. Show the participant's
    /// placeholder meanwhile.
    VideoPaused {
        /// Track id.
        track: String,
        /// New state.
        paused: bool,
    },
    /// A decoded picture from another participant.
    VideoFrame {
        /// Publisher identity.
        participant: String,
        /// Track id.
        track: String,
        /// The picture; its pts is the RTP capture time in µs on the sender's media clock.
        frame: VideoFrame,
    },
    /// Decoded audio from another participant.
    AudioFrame {
        /// Publisher identity.
        participant: String,
        /// Track id.
        track: String,
        /// The audio.
        frame: AudioFrame,
    },
    /// An application message.
    Data(DataMessage),
    /// The loudest participants, loudest first.
    ActiveSpeaker(Vec<Speaker>),
    /// To hosts: the raised hands, first raised first (whenever the queue changes).
    Hands(Vec<String>),
    /// A host lowered this participant's raised hand (sent it back, or let it in: a
    /// [`RoleChanged`](RoomEvent::RoleChanged) follows then).
    HandLowered,
    /// A host promoted or demoted someone. When it is this participant: made a speaker, it
    /// starts publishing what [`RoomOptions`] asks for; made a viewer, it has stopped (its
    /// tracks ended for everyone).
    RoleChanged {
        /// Whose role.
        identity: String,
        /// The new role.
        role: crate::signal::Role,
    },
    /// The room's recording started (`on`) or stopped, by host `by` or by the server's
    /// configuration (`None`); also right after joining or reconnecting to a room being
    /// recorded.
    Recording {
        /// Recorded from now on or not.
        on: bool,
        /// The host who switched it.
        by: Option<String>,
    },
    /// The server reported an error.
    Error {
        /// Stable code.
        code: ErrorCode,
        /// Detail.
        reason: String,
    },
    /// The signal connection dropped; the session goes on (media included) and a new
    /// connection is being opened to take it back (`Reconnected`, or `Disconnected` when
    /// that fails for [`SessionConfig::reconnect`](session::SessionConfig::reconnect)).
    /// Messages sent meanwhile wait and go out on the new connection.
    Reconnecting,
    /// The signal connection is back and the server took the session back; events for
    /// what changed meanwhile (joins, leaves, tracks) came just before.
    Reconnected,
    /// The session ended.
    Disconnected,
}

/// Why joining or publishing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// The WebSocket could not be opened or broke.
    #[error("signal connection: {0}")]
    Signal(String),
    /// The server refused.
    #[error("server refused ({code}): {reason}")]
    Refused {
        /// Stable code.
        code: ErrorCode,
        /// Detail.
        reason: String,
    },
    /// The server did not answer in time.
    #[error("no answer from the server within {0:?}")]
    Timeout(Duration),
    /// WebRTC setup failed.
    #[error("WebRTC: {0}")]
    WebRtc(String),
    /// Encoding failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// `publish_video` or `publish_audio` without that track in the options.
    #[error("no {0} track was set up for publishing")]
    NotPublishing(&'static str),
    /// The room session is over.
    #[error("the room session has ended")]
    Closed,
    /// A layout outside the limits of [`ViewLayout::is_valid`](crate::signal::ViewLayout).
    #[error("invalid layout: {0}")]
    InvalidLayout(String),
    /// A local UDP socket could not be bound (no such local address, none free).
    #[error("local socket: {0}")]
    Socket(String),
    /// A simulcast layer the published video does not have.
    #[error("no video layer {layer}: the published video has {layers}")]
    NoSuchLayer {
        /// The layer asked for.
        layer: usize,
        /// How many the video has.
        layers: usize,
    },
}

/// Counters of what this client sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendStats {
    /// Video frames encoded and sent.
    pub video_frames: u64,
    /// Of those, keyframes.
    pub keyframes: u64,
    /// Keyframe requests received from the server.
    pub keyframe_requests: u64,
    /// Video bytes sent (encoded).
    pub video_bytes: u64,
    /// Audio frames sent.
    pub audio_frames: u64,
    /// Audio bytes sent (encoded).
    pub audio_bytes: u64,
    /// The Opus encoder's target when the last audio frame was sent (bit/s; see
    /// [`AudioTarget`]).
    pub audio_target_bps: u64,
    /// Pictures and audio blocks pushed before the publishing connection was up, and dropped
    /// (the first picture sent once it is up is a keyframe).
    pub dropped_before_connected: u64,
    /// Publishing connections replaced because they did not come up in time.
    pub publisher_restarts: u64,
    /// Receiving connections replaced because they did not come up in time (counted with
    /// what was sent, as connection health rather than per track).
    pub subscriber_restarts: u64,
    /// ICE restarts after a change of network (`Session::network_changed`), both
    /// connections counted.
    pub ice_restarts: u64,
    /// The uplink bandwidth estimate (bit/s) when the last picture was sent; 0 before one.
    pub uplink_estimate_bps: u64,
    /// Its delay-based half then (bit/s).
    pub uplink_delay_based_bps: u64,
    /// Its loss-based half then (bit/s).
    pub uplink_loss_based_bps: u64,
    /// The video encoder's target then (bit/s).
    pub video_target_bps: u64,
    /// Simulcast layers the uplink carries now (the others are paused).
    pub video_layers_on: u32,
}

#[cfg(feature = "net")]
/// A snapshot of [`Room::stats`].
#[derive(Clone, Debug, PartialEq)]
pub struct RoomStats {
    /// What was sent.
    pub sent: SendStats,
    /// Round-trip time to the server on the publishing connection, ms.
    pub publish_rtt_ms: Option<f64>,
    /// Per remote track.
    pub received: Vec<TrackStats>,
}
