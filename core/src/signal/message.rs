//! The message types of the signal protocol.

use serde::{Deserialize, Serialize};

/// What a participant may do in a room; carried in its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Publishes, and controls the room (for example enables the composited grid).
    Host,
    /// Publishes camera, microphone and screen.
    Speaker,
    /// Watches and listens; cannot publish media (may still send data messages).
    Viewer,
}

impl Role {
    /// Whether this role may publish audio or video.
    pub fn can_publish(self) -> bool {
        matches!(self, Role::Host | Role::Speaker)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Host => "host",
            Role::Speaker => "speaker",
            Role::Viewer => "viewer",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        match s {
            "host" => Ok(Role::Host),
            "speaker" => Ok(Role::Speaker),
            "viewer" => Ok(Role::Viewer),
            _ => Err(UnknownRole),
        }
    }
}

/// A role name other than `host`, `speaker` or `viewer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown role: expected host, speaker or viewer")]
pub struct UnknownRole;

/// Audio or video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    /// An Opus track.
    Audio,
    /// An H.264 track.
    Video,
}

/// Where a track comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    /// A camera (or the test pattern).
    Camera,
    /// A microphone (or the speech source).
    Microphone,
    /// A shared screen or document.
    Screen,
    /// The server's composited grid of the room.
    Grid,
}

impl TrackKind {
    /// The wire form: `audio` or `video`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
        }
    }
}

impl TrackSource {
    /// The wire form, also the second half of track ids: `camera`, `microphone`, `screen`,
    /// `grid`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackSource::Camera => "camera",
            TrackSource::Microphone => "microphone",
            TrackSource::Screen => "screen",
            TrackSource::Grid => "grid",
        }
    }

    /// The id of `identity`'s track from this source: `identity/source`.
    pub fn track_id(self, identity: &str) -> String {
        format!("{identity}/{}", self.as_str())
    }
}

/// Which of a client's two peer connections a message is about. Each client publishes on one
/// (it sends, the server receives) and receives on the other; the client makes the offers on
/// both, and the server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerRole {
    /// The connection carrying the client's own tracks to the server.
    Publisher,
    /// The connection carrying other participants' tracks to the client.
    Subscriber,
}

/// A participant as the room sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    /// Unique in the room; from the token.
    pub identity: String,
    /// Display name; from the token, or chosen at join.
    pub name: String,
    /// Role; from the token.
    pub role: Role,
}

/// A published track as the room sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// Server-assigned id, unique in the room (`<identity>/<source>`).
    pub id: String,
    /// Identity of the publisher.
    pub participant: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// Camera, microphone, screen or grid.
    pub source: TrackSource,
    /// Whether the publisher has muted it.
    #[serde(default)]
    pub muted: bool,
}

/// A track the client publishes: which m-line of its offer carries which source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishTrack {
    /// The m-line's `mid` in the client's offer.
    pub mid: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// What it carries.
    pub source: TrackSource,
}

/// A track of a publisher offer the server refused, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedTrack {
    /// The m-line's `mid` in the client's offer.
    pub mid: String,
    /// Why, for people: e.g. the codecs it takes and the ones offered.
    pub reason: String,
}

/// Which m-line of the client's session carries which remote track (sent with each answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackSlot {
    /// The m-line's `mid`.
    pub mid: String,
    /// The remote track it receives, or `None` when the m-line is idle.
    pub track: Option<String>,
}

/// One ICE candidate, in the shape of the browser's `RTCIceCandidateInit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCandidate {
    /// The `candidate:` attribute line (empty means end of candidates).
    pub candidate: String,
    /// The m-line's `mid`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "sdpMid")]
    pub sdp_mid: Option<String>,
    /// The m-line's index.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "sdpMLineIndex"
    )]
    pub sdp_m_line_index: Option<u16>,
}

/// An application message relayed by the server (chat, page sync, file-share control).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataMessage {
    /// Sender's identity; set by the server, whatever the client wrote.
    #[serde(default)]
    pub from: String,
    /// Recipients' identities; empty means everyone else in the room.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// Application-defined topic, e.g. `chat`.
    #[serde(default)]
    pub topic: String,
    /// The payload (text; binary data travels base64-encoded). Shared: the server relays one
    /// copy to every recipient (a 256 KiB message to 520 members was 130 MB as copies).
    pub payload: std::sync::Arc<str>,
}

/// The size of one tile a client shows a video in (see [`ClientMessage::Layout`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileSize {
    /// The video track shown (`identity/camera`, `identity/screen`).
    pub track: String,
    /// Width in pixels on the client's screen.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// What a client shows: its viewport and the size of each video's tile. The server uses
/// it with [`grid::plan`](crate::grid::plan): a video is forwarded at the smallest
/// simulcast layer at least as large as its tile (the largest when none is), a video with
/// no tile (off screen, on another page) not at all. Sides are 1 to [`MAX_TILE_SIDE`], at
/// most [`MAX_TILES`] tiles; anything else is `bad_message`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewLayout {
    /// Viewport width in pixels.
    pub width: u32,
    /// Viewport height in pixels.
    pub height: u32,
    /// The tiles, in any order; a track named twice takes its largest tile.
    pub tiles: Vec<TileSize>,
}

impl ViewLayout {
    /// Whether the sides and the number of tiles are within the limits.
    pub fn is_valid(&self) -> bool {
        let side = |s: u32| (1..=MAX_TILE_SIDE).contains(&s);
        side(self.width)
            && side(self.height)
            && self.tiles.len() <= MAX_TILES
            && self.tiles.iter().all(|t| side(t.width) && side(t.height))
    }
}

/// The largest tile or viewport side a [`ClientMessage::Layout`] may name, pixels.
pub const MAX_TILE_SIDE: u32 = 16_384;

/// The most tiles a [`ClientMessage::Layout`] may list.
pub const MAX_TILES: usize = 1_024;

/// One entry of an active-speaker announcement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Speaker {
    /// Participant identity.
    pub identity: String,
    /// Smoothed audio level, 0.0 (silence) to 1.0 (full scale).
    pub level: f32,
}

/// Whether a display name chosen at join is acceptable: 1 to 64 characters, none of them
/// control characters, not only spaces.
pub fn valid_display_name(name: &str) -> bool {
    let count = name.chars().count();
    (1..=64).contains(&count) && !name.chars().any(char::is_control) && !name.trim().is_empty()
}

/// Why a participant left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// It said `leave`.
    Left,
    /// Its connection failed (ICE failure, closed WebSocket).
    ConnectionLost,
    /// Nothing was heard from it within the timeout.
    Timeout,
    /// The same identity joined again from elsewhere.
    Replaced,
    /// The server closed its session for a protocol error.
    Error,
    /// The server is shutting down.
    ServerShutdown,
    /// A host removed it.
    Removed,
}

impl LeaveReason {
    /// The wire form, e.g. `connection_lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::ConnectionLost => "connection_lost",
            LeaveReason::Timeout => "timeout",
            LeaveReason::Replaced => "replaced",
            LeaveReason::Error => "error",
            LeaveReason::ServerShutdown => "server_shutdown",
            LeaveReason::Removed => "removed",
        }
    }
}

/// Stable error codes. The string forms never change meaning and are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not JSON, or not a known message.
    BadMessage,
    /// Larger than the protocol's limit.
    MessageTooLarge,
    /// The join asked for a protocol version the server does not speak.
    UnsupportedVersion,
    /// A message other than `join` came first.
    NotJoined,
    /// A second `join` on the same session.
    AlreadyJoined,
    /// The token's signature or shape is wrong.
    InvalidToken,
    /// The token has expired.
    TokenExpired,
    /// The token is for another room than the one asked for.
    WrongRoom,
    /// The role does not allow this (a viewer publishing).
    PermissionDenied,
    /// The SDP could not be applied.
    NegotiationFailed,
    /// The room has reached its participant limit.
    RoomFull,
    /// The session was silent for too long.
    Timeout,
    /// The client did not read the server's messages as fast as they came: its queue on the
    /// server filled, and the server closed it rather than buffer without limit.
    TooSlow,
    /// A per-session or per-server limit (the server's `Limits`): the message was
    /// dropped (or the join refused); the session and its room go on.
    LimitReached,
    /// The session went on sending far past its limits after `limit_reached` (a client
    /// in a loop, or a flood): the server closed it.
    Flooding,
    /// A host removed the participant from the room.
    Removed,
    /// A host's command named a participant who is not in the room (not fatal).
    UnknownParticipant,
    /// A `resume` named a session the server no longer holds (it left, timed out, or the
    /// server restarted): join again.
    SessionGone,
    /// Something went wrong inside the server.
    Internal,
}

impl ErrorCode {
    /// The stable string form, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::WrongRoom => "wrong_room",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NegotiationFailed => "negotiation_failed",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::Timeout => "timeout",
            ErrorCode::TooSlow => "too_slow",
            ErrorCode::LimitReached => "limit_reached",
            ErrorCode::Flooding => "flooding",
            ErrorCode::Removed => "removed",
            ErrorCode::UnknownParticipant => "unknown_participant",
            ErrorCode::SessionGone => "session_gone",
            ErrorCode::Internal => "internal",
        }
    }

    /// Whether the server closes the session after sending this error. Only a refused
    /// command (`permission_denied`, `unknown_participant`) and a limit reached leave the
    /// session open.
    pub fn is_fatal(self) -> bool {
        !matches!(
            self,
            ErrorCode::PermissionDenied | ErrorCode::LimitReached | ErrorCode::UnknownParticipant
        )
    }
}

/// The WebSocket close code of a session that ended normally (`leave`).
pub const CLOSE_NORMAL: u16 = 1000;

impl ErrorCode {
    /// The WebSocket close code the server closes a session with after this error (the
    /// close frame's reason is [`as_str`](Self::as_str)): RFC 6455's own where one fits —
    /// 1008 (policy: the token), 1009 (too large), 1011 (internal) — else madang's in the
    /// 4000s, stable like the strings.
    pub fn close_code(self) -> u16 {
        match self {
            ErrorCode::InvalidToken | ErrorCode::TokenExpired | ErrorCode::WrongRoom => 1008,
            ErrorCode::MessageTooLarge => 1009,
            ErrorCode::Internal => 1011,
            ErrorCode::BadMessage => 4000,
            ErrorCode::UnsupportedVersion => 4001,
            ErrorCode::NotJoined => 4002,
            ErrorCode::AlreadyJoined => 4003,
            ErrorCode::PermissionDenied => 4004,
            ErrorCode::NegotiationFailed => 4005,
            ErrorCode::RoomFull => 4006,
            ErrorCode::Timeout => 4007,
            ErrorCode::TooSlow => 4008,
            ErrorCode::LimitReached => 4009,
            ErrorCode::Flooding => 4010,
            ErrorCode::Removed => 4011,
            ErrorCode::UnknownParticipant => 4012,
            ErrorCode::SessionGone => 4013,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Messages from a client to the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientMessage {
    /// First message of every session.
    Join {
        /// Must be [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION).
        protocol: u32,
        /// Signed token naming room, identity, display name and role.
        token: String,
        /// Subscribe to every track in the room as it appears (default true).
        #[serde(default = "default_true")]
        auto_subscribe: bool,
        /// Display name to show instead of the token's (1 to 64 characters, no control
        /// characters); the token still decides identity, room and role.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// Instead of `join`, on a new WebSocket after the last one dropped: takes the session
    /// back that `joined` gave this `resume` key to. Its connections, tracks and place in
    /// the room never went away; the server answers `resumed` with the room as it is now
    /// (and the receive slots, hands and paused videos), or `session_gone` when it no
    /// longer holds that session (join again then).
    Resume {
        /// Must be [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION).
        protocol: u32,
        /// The `resume` key of the `joined` message.
        resume: String,
    },
    /// An SDP offer. On the publisher connection: one send-only m-line per published track,
    /// listed in `publish`. On the subscriber connection: receive-only m-lines (slots) for
    /// what the client is to receive.
    Offer {
        /// Which connection.
        pc: PeerRole,
        /// The SDP.
        sdp: String,
        /// Which of the offer's m-lines carry which published source (publisher only).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        publish: Vec<PublishTrack>,
    },
    /// A trickled ICE candidate.
    Candidate {
        /// Which connection.
        pc: PeerRole,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// Start receiving these tracks.
    Subscribe {
        /// Track ids.
        tracks: Vec<String>,
    },
    /// Stop receiving these tracks.
    Unsubscribe {
        /// Track ids.
        tracks: Vec<String>,
    },
    /// Stop publishing some of the client's own tracks: the room sees them unpublished and
    /// their receive slots are reused. (The client stops sending on their m-lines.)
    Unpublish {
        /// Track ids (`identity/source`).
        tracks: Vec<String>,
    },
    /// Mute or unmute one of the client's own tracks.
    Mute {
        /// Track id.
        track: String,
        /// New state.
        muted: bool,
    },
    /// An application message for the room or some participants.
    Data {
        /// The message (`from` is ignored and set by the server).
        message: DataMessage,
    },
    /// What the client shows (see [`ViewLayout`]): from the first one on, the server
    /// forwards each subscribed video at no larger a simulcast layer than its tile needs,
    /// and a subscribed video with no tile not at all; each one replaces the last.
    Layout(ViewLayout),
    /// A viewer raises (`true`) or lowers its hand to ask to be heard; hosts see the queue
    /// (`hands`). Only viewers raise a hand.
    Hand {
        /// New state.
        raised: bool,
    },
    /// Host only: lowers another participant's raised hand (sends it back).
    LowerHand {
        /// Whose.
        identity: String,
    },
    /// Host only: makes a viewer a speaker, who may publish from then on; its hand is
    /// lowered. Everyone is told (`role_changed`).
    Promote {
        /// Whom.
        identity: String,
    },
    /// Host only: makes a speaker a viewer again; its tracks end for everyone.
    Demote {
        /// Whom.
        identity: String,
    },
    /// Host only: mutes a participant's microphone. The server stops forwarding it and the
    /// room, the participant included, sees it muted (`track_muted`) until the participant
    /// unmutes it itself.
    MuteParticipant {
        /// Whose.
        identity: String,
    },
    /// Host only: removes a participant; its session is closed with `removed`, the room
    /// sees it leave with reason `removed`.
    Remove {
        /// Whom.
        identity: String,
    },
    /// Host only: starts (`true`) or stops recording the room on a server that records
    /// (`madang serve --record DIR`). Everyone is told (`recording_started`,
    /// `recording_stopped`); asking for the state the room is already in changes nothing.
    Record {
        /// Recording from now on or not.
        on: bool,
    },
    /// Keep-alive; the server answers `pong`.
    Ping,
    /// Leaving; the server tells the room and closes the session.
    Leave,
}

fn default_true() -> bool {
    true
}

/// Messages from the server to a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage {
    /// The join succeeded.
    Joined {
        /// The server's protocol version.
        protocol: u32,
        /// Room name.
        room: String,
        /// The client itself, as the others see it.
        participant: ParticipantInfo,
        /// Everyone else already there.
        participants: Vec<ParticipantInfo>,
        /// Tracks already published.
        tracks: Vec<TrackInfo>,
        /// The key that takes this session back over a new WebSocket (`resume`) if this
        /// one drops; secret, like the token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<String>,
    },
    /// The answer to `resume`: the session is back on this WebSocket. The room as it is
    /// now — what happened while the signal was down is in the difference to what the
    /// client knew; `slots`, `renegotiate`, `hands` and `video_paused` follow as needed.
    Resumed {
        /// The client itself.
        participant: ParticipantInfo,
        /// Everyone else there now.
        participants: Vec<ParticipantInfo>,
        /// Tracks published now.
        tracks: Vec<TrackInfo>,
    },
    /// Someone joined.
    ParticipantJoined {
        /// Who.
        participant: ParticipantInfo,
    },
    /// Someone left.
    ParticipantLeft {
        /// Identity.
        identity: String,
        /// Why.
        reason: LeaveReason,
    },
    /// A track was published.
    TrackPublished {
        /// The track.
        track: TrackInfo,
    },
    /// A track ended.
    TrackUnpublished {
        /// Track id.
        track: String,
    },
    /// A track was muted or unmuted by its publisher.
    TrackMuted {
        /// Track id.
        track: String,
        /// New state.
        muted: bool,
    },
    /// The server stopped (`paused: true`) or resumed forwarding a video to this client
    /// because of what the client's downlink carries: its estimate fell below what the
    /// videos take (the least important go first: others before the loudest speakers, and
    /// those before screen shares), or it has room again. Audio is never paused. A resumed
    /// video starts at its next keyframe.
    VideoPaused {
        /// Track id.
        track: String,
        /// New state.
        paused: bool,
    },
    /// The server's answer to one of the client's offers.
    Answer {
        /// Which connection.
        pc: PeerRole,
        /// The SDP.
        sdp: String,
        /// Tracks of a publisher offer the server did not take (their m-lines are rejected,
        /// port 0, in `sdp`): not announced to the room. Absent when every track was taken.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        refused: Vec<RefusedTrack>,
    },
    /// Which receive slot (m-line of the subscriber connection) now carries which remote
    /// track. Sent after each subscriber answer and whenever the mapping changes; slots are
    /// reused without renegotiation.
    Slots {
        /// The full mapping.
        slots: Vec<TrackSlot>,
    },
    /// More receive slots are needed: send a new subscriber offer with at least this many
    /// receive-only m-lines of each kind in total (the server stays the answerer).
    Renegotiate {
        /// Audio slots needed in total.
        audio: u32,
        /// Video slots needed in total.
        video: u32,
    },
    /// A trickled ICE candidate.
    Candidate {
        /// Which connection.
        pc: PeerRole,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// The loudest participants, loudest first.
    ActiveSpeaker {
        /// Speakers with their levels.
        speakers: Vec<Speaker>,
    },
    /// An application message from another participant.
    Data {
        /// The message, `from` filled in by the server.
        message: DataMessage,
    },
    /// To hosts: the raised hands, in the order they were raised. Sent whenever the queue
    /// changes, and at a host's join when it is not empty.
    Hands {
        /// Identities, first raised first.
        queue: Vec<String>,
    },
    /// To a participant whose raised hand a host lowered (or a promotion answered).
    HandLowered,
    /// A host promoted or demoted a participant; to everyone in the room, the participant
    /// included. A viewer made a speaker may publish from then on; a speaker made a viewer
    /// has had its tracks ended.
    RoleChanged {
        /// Whose.
        identity: String,
        /// The new role.
        role: Role,
    },
    /// The room is being recorded from now on: to everyone in it when recording starts,
    /// and to each participant that joins or resumes while it runs.
    RecordingStarted {
        /// The host who started it; absent when the server records the room by its own
        /// configuration, or the recording was already running.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// The room's recording stopped (its files are complete).
    RecordingStopped {
        /// The host who stopped it; absent when the server stopped it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Answer to `ping`.
    Pong,
    /// Something went wrong; when [`ErrorCode::is_fatal`], the server closes afterwards.
    Error {
        /// Stable code.
        code: ErrorCode,
        /// Human-readable detail.
        reason: String,
    },
}
