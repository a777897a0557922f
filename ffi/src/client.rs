//! Joining a room from C: a configuration, a client that connects, publishes pushed frames and
//! hands out what happens in the room through `madang_client_poll_event` on the caller's own
//! thread.

use std::collections::VecDeque;
use std::ffi::c_char;
use std::time::{Duration, Instant};

use madang::grid::layout::Mode;
use madang::media::{AudioFrame, Channels, VideoFrame, check_dimensions};
use madang::room::{GridView, Room, RoomError, RoomEvent, RoomOptions};
use madang::signal::ParticipantInfo;

use crate::client_config::{Receive, madang_client_config};
use crate::client_events::{Event, Held, c_stats, convert, video_view};
use crate::{madang_result, str_arg};

/// Largest stride accepted for a pushed plane, in bytes (guards the size arithmetic).
const MAX_STRIDE: u32 = 1 << 16;

/// How the composited grid arranges the room. The numbers are stable.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum madang_layout_mode {
    /// Equal tiles in rows and columns.
    MADANG_LAYOUT_GALLERY = 0,
    /// The active speaker large, the others in a strip below.
    MADANG_LAYOUT_SPEAKER = 1,
    /// Pinned participants large (none can be pinned from C yet: like gallery).
    MADANG_LAYOUT_SPOTLIGHT = 2,
    /// The host large, participants talking back beside it, viewers hidden.
    MADANG_LAYOUT_BROADCAST = 3,
}

pub(crate) fn layout_mode(v: u32) -> Option<Mode> {
    Some(match v {
        0 => Mode::Gallery,
        1 => Mode::Speaker,
        2 => Mode::Spotlight,
        3 => Mode::Broadcast,
        _ => return None,
    })
}

/// What `madang_client_poll_event` returned. The numbers are stable.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum madang_event_kind {
    /// This client joined: `participant` and `name` are its own, `text` is the room.
    MADANG_EVENT_JOINED = 1,
    /// Someone is in the room (also sent for everyone already there after `JOINED`):
    /// `participant`, `name`, `text` is the role ("host", "speaker", "viewer").
    MADANG_EVENT_PARTICIPANT_JOINED = 2,
    /// Someone left: `participant`; `text` is why ("left", "connection_lost", "timeout", …).
    MADANG_EVENT_PARTICIPANT_LEFT = 3,
    /// A decoded picture of `participant`'s `track`, in `video`.
    MADANG_EVENT_VIDEO_FRAME = 4,
    /// Decoded audio of `participant`'s `track`, in `audio`.
    MADANG_EVENT_AUDIO_FRAME = 5,
    /// An application message from `participant`: `topic` and `text` (the payload).
    MADANG_EVENT_DATA = 6,
    /// The loudest participant now is `participant` at `level` (0.0–1.0); `participant` is
    /// empty when nobody speaks.
    MADANG_EVENT_ACTIVE_SPEAKER = 7,
    /// Counters of this client, in `stats` (every stats interval).
    MADANG_EVENT_STATS = 8,
    /// The server reported a problem: `text` is its stable code (e.g. "permission_denied"),
    /// `topic` the detail. The session goes on unless `DISCONNECTED` follows.
    MADANG_EVENT_ERROR = 9,
    /// The session ended (the server went away or closed it). Later polls return
    /// `MADANG_RESULT_CLOSED`.
    MADANG_EVENT_DISCONNECTED = 10,
    /// The composited room (grid receive mode), in `video`.
    MADANG_EVENT_GRID_FRAME = 11,
    /// `participant` published `track`; `text` is "audio" or "video".
    MADANG_EVENT_TRACK_PUBLISHED = 12,
    /// `track` ended.
    MADANG_EVENT_TRACK_UNPUBLISHED = 13,
    /// `track` was muted (`muted` true) or unmuted.
    MADANG_EVENT_TRACK_MUTED = 14,
    /// The server stopped (`paused` true) or resumed forwarding the video `track` because
    /// of what this client's downlink carries; audio goes on. Show the placeholder meanwhile.
    MADANG_EVENT_VIDEO_PAUSED = 15,
    /// To hosts: the raised hands, first raised first, in `text`, one identity per line
    /// (empty when none is up).
    MADANG_EVENT_HANDS = 16,
    /// A host lowered this client's raised hand (sent it back, or let it in:
    /// `ROLE_CHANGED` follows then).
    MADANG_EVENT_HAND_LOWERED = 17,
    /// A host promoted or demoted `participant`: `text` is the new role ("speaker",
    /// "viewer"). When it is this client: made a speaker, it starts publishing what its
    /// configuration asks for (push frames from then on); made a viewer, it stopped.
    MADANG_EVENT_ROLE_CHANGED = 18,
    /// The signal connection to the server dropped; the call goes on (media included) while
    /// the client opens a new one to take the session back (for up to 15 s). Messages sent
    /// meanwhile wait for it.
    MADANG_EVENT_RECONNECTING = 19,
    /// The signal connection is back and the session with it; the events for what changed
    /// meanwhile (joins, leaves, tracks) came just before this one.
    MADANG_EVENT_RECONNECTED = 20,
    /// The room's recording started (`text` "started") or stopped ("stopped");
    /// `participant` is the host who switched it, empty when the server did. Also right
    /// after `JOINED` or `RECONNECTED` in a room being recorded.
    MADANG_EVENT_RECORDING = 21,
}

/// An I420 picture: three planes with their strides (bytes per row).
///
/// Pushed by C: the planes are read during the call only. Received in an event: the planes
/// belong to madang and stay valid until the next call on the same client.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct madang_video_frame {
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Luma plane: `stride_y * (height - 1) + width` bytes.
    pub y: *const u8,
    /// Cb plane: `stride_u * (height / 2 - 1) + width / 2` bytes.
    pub u: *const u8,
    /// Cr plane: `stride_v * (height / 2 - 1) + width / 2` bytes.
    pub v: *const u8,
    /// Bytes per luma row, at least `width`.
    pub stride_y: u32,
    /// Bytes per Cb row, at least `width / 2`.
    pub stride_u: u32,
    /// Bytes per Cr row, at least `width / 2`.
    pub stride_v: u32,
    /// Presentation time in microseconds.
    pub pts_us: i64,
}

/// A block of 48 kHz 16-bit PCM, interleaved when stereo. In an event the samples belong to
/// madang and stay valid until the next call on the same client.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct madang_audio_frame {
    /// `samples_per_channel * channels` samples.
    pub samples: *const i16,
    /// 480 (10 ms) or 960 (20 ms).
    pub samples_per_channel: u32,
    /// 1 or 2.
    pub channels: u32,
    /// Always 48000.
    pub sample_rate: u32,
    /// Presentation time in microseconds.
    pub pts_us: i64,
}

/// Counters of one client.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct madang_stats {
    /// Pictures encoded and sent.
    pub video_frames_sent: u64,
    /// Of those, keyframes.
    pub keyframes_sent: u64,
    /// Encoded video bytes sent.
    pub video_bytes_sent: u64,
    /// Audio blocks encoded and sent.
    pub audio_frames_sent: u64,
    /// Round-trip time to the server in ms; negative while unknown.
    pub rtt_ms: f64,
    /// Remote tracks received.
    pub tracks_received: u32,
    /// RTP packets received over all tracks.
    pub packets_received: u64,
    /// Packets missing by sequence number.
    pub packets_lost: u64,
    /// Pictures and audio blocks decoded.
    pub frames_decoded: u64,
    /// Pictures dropped for missing packets or decoder errors.
    pub frames_lost: u64,
    /// Received bitrate over all tracks, kbit/s.
    pub receive_kbps: f64,
    /// Pictures and audio blocks pushed before the publishing connection was up (dropped; the
    /// first picture after is a keyframe).
    pub dropped_before_connected: u64,
    /// Freezes over all video tracks: no new picture for more than three frame
    /// intervals and more than one interval + 150 ms.
    pub freezes: u64,
    /// Total length of those freezes, ms.
    pub freeze_ms: f64,
    /// Keyframe requests this client sent for the pictures it receives.
    pub keyframe_requests_sent: u64,
    /// Packets this client asked for again (NACK entries, repeats included).
    pub nacks_sent: u64,
    /// Packets repaired by retransmission.
    pub packets_recovered: u64,
    /// Audio blocks rebuilt from in-band FEC.
    pub audio_fec_frames: u64,
    /// Audio concealed, ms.
    pub audio_concealed_ms: f64,
    /// Largest current jitter-buffer delay over the video tracks, ms.
    pub video_buffer_delay_ms: f64,
    /// The publishing connection's uplink estimate (congestion control), kbit/s; 0 before
    /// the first picture went out.
    pub uplink_estimate_kbps: f64,
    /// The bitrate the video encoder aims at now (it follows the estimate), kbit/s; 0
    /// without video.
    pub video_target_kbps: f64,
    /// Audio frames played from a copy in a later packet (redundant audio), their own
    /// packet lost.
    pub audio_copy_frames: u64,
}

/// One thing that happened, filled by `madang_client_poll_event`. Strings are never NULL
/// (empty when a field does not apply). Everything it points to belongs to madang and stays
/// valid until the next call on the same client.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct madang_event {
    /// What happened; says which fields apply.
    pub kind: madang_event_kind,
    /// A participant's identity.
    pub participant: *const c_char,
    /// A display name.
    pub name: *const c_char,
    /// A track id ("identity/camera", "identity/microphone", …).
    pub track: *const c_char,
    /// Room name, role, leave reason, data payload or error code (see the kinds).
    pub text: *const c_char,
    /// Data topic, or an error's detail.
    pub topic: *const c_char,
    /// Active speaker's audio level, 0.0–1.0.
    pub level: f32,
    /// Track muted.
    pub muted: bool,
    /// Video paused by the server (`VIDEO_PAUSED`).
    pub paused: bool,
    /// A picture (`VIDEO_FRAME`, `GRID_FRAME`).
    pub video: madang_video_frame,
    /// Audio (`AUDIO_FRAME`).
    pub audio: madang_audio_frame,
    /// Counters (`STATS`).
    pub stats: madang_stats,
    /// Per remote track counters (`STATS`): `track_count` of them, valid until the next call
    /// on the same client; NULL with a count of 0 otherwise.
    pub tracks: *const madang_track_stats,
    /// Entries in `tracks`.
    pub track_count: usize,
}

/// What one remote track delivered (part of a `STATS` event).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct madang_track_stats {
    /// The track id ("identity/camera", "identity/microphone").
    pub track: *const c_char,
    /// A video track (otherwise audio).
    pub video: bool,
    /// RTP packets received.
    pub packets: u64,
    /// Packets that never arrived.
    pub packets_lost: u64,
    /// Pictures displayed, or audio frames played from their own packet.
    pub frames_decoded: u64,
    /// Pictures dropped (missing packets, decoder errors); audio frames concealed or skipped.
    pub frames_lost: u64,
    /// Keyframe requests sent for this track.
    pub keyframe_requests: u64,
    /// Packets asked for again (NACK entries, repeats included).
    pub nacks_sent: u64,
    /// Packets repaired by retransmission.
    pub packets_recovered: u64,
    /// Freezes: no new picture for more than three frame
    /// intervals and more than one interval + 150 ms.
    pub freezes: u64,
    /// Total length of the freezes, ms.
    pub freeze_ms: f64,
    /// Audio frames rebuilt from in-band FEC.
    pub audio_fec_frames: u64,
    /// Audio concealed, ms.
    pub audio_concealed_ms: f64,
    /// Current jitter-buffer (video) or playout-buffer (audio) delay, ms.
    pub buffer_delay_ms: f64,
    /// Inter-arrival jitter, ms; negative while unknown.
    pub jitter_ms: f64,
    /// Received bitrate, kbit/s.
    pub kbps: f64,
    /// Audio frames played from a copy in a later packet (redundant audio), their own
    /// packet lost.
    pub audio_copy_frames: u64,
}

/// Where a client is in its life.
enum State {
    New,
    Joined(Box<Session>),
    /// Left or disconnected; polls return `MADANG_RESULT_CLOSED`.
    Over,
}

/// A joined room and what the poll loop needs.
struct Session {
    room: Room,
    grid: Option<(GridView, Duration)>,
    next_grid: Instant,
    next_stats: Option<Instant>,
    /// Events made at join (the participants and tracks already there).
    backlog: VecDeque<RoomEvent>,
    /// `JOINED` not yet handed out.
    joined: Option<ParticipantInfo>,
    started: Instant,
}

/// A participant in a room.
pub struct madang_client {
    config: madang_client_config,
    runtime: Option<tokio::runtime::Runtime>,
    state: State,
    held: Held,
}

impl std::fmt::Debug for madang_client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("madang_client")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

/// Creates a client from `config` (copied; the caller still frees it) with threads of its own
/// for the network. It does not connect yet. Free it with `madang_client_free`.
///
/// Errors: NULL arguments; `MADANG_RESULT_IO` when threads cannot be started.
///
/// # Safety
/// `config` must come from `madang_client_config_new`; `out_client` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_new(
    config: *const madang_client_config,
    out_client: *mut *mut madang_client,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract, NULL or a live config.
        let Some(config) = (unsafe { config.as_ref() }) else {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        };
        if out_client.is_null() {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        }
        let runtime = match crate::runtime("madang-client") {
            Ok(r) => r,
            Err(e) => return e,
        };
        let client = Box::new(madang_client {
            config: config.clone(),
            runtime: Some(runtime),
            state: State::New,
            held: Held::default(),
        });
        // SAFETY: checked non-NULL; the caller owns the new pointer.
        unsafe { *out_client = Box::into_raw(client) };
        madang_result::MADANG_RESULT_OK
    })
}

fn room_error(e: &RoomError) -> madang_result {
    match e {
        RoomError::Signal(_) => madang_result::MADANG_RESULT_CONNECT_FAILED,
        RoomError::Refused { .. } => madang_result::MADANG_RESULT_REFUSED,
        RoomError::Timeout(_) => madang_result::MADANG_RESULT_TIMEOUT,
        RoomError::NotPublishing(_) => madang_result::MADANG_RESULT_NOT_PUBLISHING,
        RoomError::Closed => madang_result::MADANG_RESULT_CLOSED,
        RoomError::Socket(_) => madang_result::MADANG_RESULT_IO,
        _ => madang_result::MADANG_RESULT_MEDIA,
    }
}

impl madang_client {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("runtime lives until free")
    }

    fn session(&self) -> Result<&Session, madang_result> {
        match &self.state {
            State::Joined(s) => Ok(s),
            State::New => Err(madang_result::MADANG_RESULT_NOT_CONNECTED),
            State::Over => Err(madang_result::MADANG_RESULT_CLOSED),
        }
    }

    fn connect(&mut self) -> madang_result {
        if !matches!(self.state, State::New) {
            return madang_result::MADANG_RESULT_ALREADY_CONNECTED;
        }
        let c = &self.config;
        let options = RoomOptions {
            video: c.video.clone(),
            audio: c.audio,
            name: c.name.clone(),
            trusted_certificates: c.trusted_certificates.clone(),
            ..RoomOptions::default()
        };
        let room = match self
            .runtime()
            .block_on(Room::connect(&c.url, &c.token, options))
        {
            Ok(room) => room,
            Err(e) => {
                tracing::warn!(target: "madang::ffi", "join failed: {e}");
                return room_error(&e);
            }
        };
        let grid = match c.receive {
            Receive::Frames => None,
            Receive::Grid {
                width,
                height,
                mode,
                fps,
            } => match GridView::for_room(&room, width, height, mode) {
                Ok(view) => Some((view, Duration::from_micros(1_000_000 / fps as u64))),
                Err(_) => return madang_result::MADANG_RESULT_INVALID_ARGUMENT,
            },
        };
        let mut backlog: VecDeque<RoomEvent> = room
            .initial_participants()
            .iter()
            .cloned()
            .map(RoomEvent::ParticipantJoined)
            .collect();
        backlog.extend(
            room.initial_tracks()
                .iter()
                .cloned()
                .map(RoomEvent::TrackPublished),
        );
        let now = Instant::now();
        self.state = State::Joined(Box::new(Session {
            joined: Some(room.local().clone()),
            room,
            grid,
            next_grid: now,
            next_stats: c.stats_interval.map(|i| now + i),
            backlog,
            started: now,
        }));
        madang_result::MADANG_RESULT_OK
    }

    /// The next event within `timeout`, with its data held in `self.held`.
    fn poll(&mut self, timeout: Duration) -> Result<madang_event, madang_result> {
        self.held = Held::default();
        let deadline = Instant::now() + timeout;
        let runtime = self.runtime.as_ref().expect("runtime lives until free");
        let session = match &mut self.state {
            State::Joined(s) => s,
            State::New => return Err(madang_result::MADANG_RESULT_NOT_CONNECTED),
            State::Over => return Err(madang_result::MADANG_RESULT_CLOSED),
        };
        let held = &mut self.held;
        if let Some(me) = session.joined.take() {
            let mut e = Event::new(madang_event_kind::MADANG_EVENT_JOINED, held);
            e.participant(&me.identity)
                .name(&me.name)
                .text(session.room.name());
            return Ok(e.done());
        }
        loop {
            let now = Instant::now();
            if let Some((view, interval)) = &mut session.grid
                && now >= session.next_grid
            {
                session.next_grid = (session.next_grid + *interval).max(now);
                let pts = now.duration_since(session.started).as_micros() as i64;
                // The server forwards no larger a layer than each tile needs (sent only when
                // the layout changed; a canvas within the limits always makes a valid one).
                let _ = session.room.set_layout(view.view_layout());
                // The canvas itself: the grid view lives in the session and is only drawn
                // again (or resized) by a later call on this client.
                let mut e = Event::new(madang_event_kind::MADANG_EVENT_GRID_FRAME, held);
                e.track("grid");
                e.event.video = video_view(view.compose(pts));
                return Ok(e.done());
            }
            if let (Some(at), Some(interval)) = (session.next_stats, self.config.stats_interval)
                && now >= at
            {
                session.next_stats = Some((at + interval).max(now));
                let stats = runtime.block_on(session.room.stats());
                let mut e = Event::new(madang_event_kind::MADANG_EVENT_STATS, held);
                e.event.stats = c_stats(&stats);
                e.track_stats(&stats.received);
                return Ok(e.done());
            }
            let mut wake = deadline;
            if session.grid.is_some() {
                wake = wake.min(session.next_grid);
            }
            if let Some(at) = session.next_stats {
                wake = wake.min(at);
            }
            let next = match session.backlog.pop_front() {
                Some(event) => Some(Some(event)),
                None => runtime.block_on(async {
                    tokio::time::timeout_at(wake.into(), session.room.next_event())
                        .await
                        .ok()
                }),
            };
            let event = match next {
                Some(Some(event)) => event,
                // The room's event stream ended: the session is over.
                Some(None) => {
                    self.state = State::Over;
                    return Ok(
                        Event::new(madang_event_kind::MADANG_EVENT_DISCONNECTED, held).done(),
                    );
                }
                None if Instant::now() >= deadline => {
                    return Err(madang_result::MADANG_RESULT_TIMEOUT);
                }
                None => continue,
            };
            let event = match &mut session.grid {
                Some((view, _)) => match view.absorb(event) {
                    Some(e) => e,
                    None => continue,
                },
                None => event,
            };
            if matches!(event, RoomEvent::Disconnected) {
                self.state = State::Over;
                return Ok(Event::new(madang_event_kind::MADANG_EVENT_DISCONNECTED, held).done());
            }
            if let Some(e) = convert(event, held) {
                return Ok(e);
            }
        }
    }
}

/// Runs `f` on the client behind `client`, or returns `MADANG_RESULT_NULL_ARGUMENT`.
///
/// # Safety
/// `client` must be NULL or a live client used by no other thread.
unsafe fn with_client(
    client: *mut madang_client,
    f: impl FnOnce(&mut madang_client) -> madang_result,
) -> madang_result {
    // SAFETY: per the contract.
    match unsafe { client.as_mut() } {
        Some(c) => f(c),
        None => madang_result::MADANG_RESULT_NULL_ARGUMENT,
    }
}

/// Connects to the server, joins the room and sets up publishing; blocks until the server
/// accepted the join (at most 10 s). Then `MADANG_EVENT_JOINED` is the first event, followed
/// by `PARTICIPANT_JOINED` and `TRACK_PUBLISHED` for whoever is already there.
///
/// Errors: `MADANG_RESULT_CONNECT_FAILED` (server unreachable), `MADANG_RESULT_REFUSED` (bad
/// token, wrong room, room full, bad name), `MADANG_RESULT_TIMEOUT` (no answer),
/// `MADANG_RESULT_MEDIA` (WebRTC or encoder setup), `MADANG_RESULT_ALREADY_CONNECTED`.
///
/// # Safety
/// `client` must come from `madang_client_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_connect(client: *mut madang_client) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe { with_client(client, |c| c.connect()) }
    })
}

/// Encodes and sends one picture on the camera track. The planes are copied during the call.
/// Pictures should come at the configured frame rate; `pts_us` should increase.
///
/// Errors: NULL (frame or a plane); `MADANG_RESULT_INVALID_FRAME` when the size differs from
/// the configured one, dimensions are odd, or a stride is shorter than its plane's row;
/// `MADANG_RESULT_NOT_PUBLISHING` without video in the config; `MADANG_RESULT_NOT_CONNECTED`,
/// `MADANG_RESULT_CLOSED`; `MADANG_RESULT_MEDIA` when encoding or sending fails.
///
/// # Safety
/// `client` must come from `madang_client_new`; `frame` must point to a frame whose planes
/// hold the bytes its fields promise.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_push_video_frame(
    client: *mut madang_client,
    frame: *const madang_video_frame,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        let Some(f) = (unsafe { frame.as_ref() }) else {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        };
        // SAFETY: per the contract.
        unsafe {
            with_client(client, |c| {
                let Some(video) = &c.config.video else {
                    return madang_result::MADANG_RESULT_NOT_PUBLISHING;
                };
                if f.y.is_null() || f.u.is_null() || f.v.is_null() {
                    return madang_result::MADANG_RESULT_NULL_ARGUMENT;
                }
                if (f.width, f.height) != (video.width, video.height)
                    || check_dimensions(f.width, f.height).is_err()
                    || f.stride_y < f.width
                    || f.stride_u < f.width / 2
                    || f.stride_v < f.width / 2
                    || [f.stride_y, f.stride_u, f.stride_v]
                        .iter()
                        .any(|&s| s > MAX_STRIDE)
                {
                    return madang_result::MADANG_RESULT_INVALID_FRAME;
                }
                let session = match c.session() {
                    Ok(s) => s,
                    Err(e) => return e,
                };
                let (w, h) = (f.width as usize, f.height as usize);
                let len = |stride: u32, rows: usize, row: usize| stride as usize * (rows - 1) + row;
                // SAFETY: the caller promises each plane holds `stride * (rows - 1) + width`
                // bytes, the size `from_planes` reads.
                let planes = [
                    std::slice::from_raw_parts(f.y, len(f.stride_y, h, w)),
                    std::slice::from_raw_parts(f.u, len(f.stride_u, h / 2, w / 2)),
                    std::slice::from_raw_parts(f.v, len(f.stride_v, h / 2, w / 2)),
                ];
                let strides = [f.stride_y, f.stride_u, f.stride_v].map(|s| s as usize);
                let Ok(picture) =
                    VideoFrame::from_planes(f.width, f.height, planes, strides, f.pts_us)
                else {
                    return madang_result::MADANG_RESULT_INVALID_FRAME;
                };
                match c.runtime().block_on(session.room.publish_video(&picture)) {
                    Ok(()) => madang_result::MADANG_RESULT_OK,
                    Err(e) => room_error(&e),
                }
            })
        }
    })
}

/// Encodes and sends one block of 48 kHz PCM on the microphone track: `samples_per_channel`
/// 480 (10 ms) or 960 (20 ms), `channels` 1 or 2 (interleaved; stereo is mixed down to the
/// mono track). Copied during the call.
///
/// Errors: NULL; `MADANG_RESULT_INVALID_FRAME` for other lengths or channel counts;
/// `MADANG_RESULT_NOT_PUBLISHING` without audio in the config; `MADANG_RESULT_NOT_CONNECTED`,
/// `MADANG_RESULT_CLOSED`, `MADANG_RESULT_MEDIA`.
///
/// # Safety
/// `client` must come from `madang_client_new`; `samples` must hold
/// `samples_per_channel * channels` values.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_push_audio_frame(
    client: *mut madang_client,
    samples: *const i16,
    samples_per_channel: u32,
    channels: u32,
    pts_us: i64,
) -> madang_result {
    ffi_boundary!({
        if samples.is_null() {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        }
        // SAFETY: per the contract.
        unsafe {
            with_client(client, |c| {
                if !c.config.audio {
                    return madang_result::MADANG_RESULT_NOT_PUBLISHING;
                }
                if !matches!(samples_per_channel, 480 | 960) || !matches!(channels, 1 | 2) {
                    return madang_result::MADANG_RESULT_INVALID_FRAME;
                }
                let session = match c.session() {
                    Ok(s) => s,
                    Err(e) => return e,
                };
                let n = (samples_per_channel * channels) as usize;
                // SAFETY: the caller promises `n` samples.
                let input = std::slice::from_raw_parts(samples, n);
                let mono: Vec<i16> = if channels == 2 {
                    input
                        .chunks_exact(2)
                        .map(|lr| ((lr[0] as i32 + lr[1] as i32) / 2) as i16)
                        .collect()
                } else {
                    input.to_vec()
                };
                let Ok(block) = AudioFrame::new(Channels::Mono, mono, pts_us) else {
                    return madang_result::MADANG_RESULT_INVALID_FRAME;
                };
                match c.runtime().block_on(session.room.publish_audio(&block)) {
                    Ok(()) => madang_result::MADANG_RESULT_OK,
                    Err(e) => room_error(&e),
                }
            })
        }
    })
}

/// Sends an application message (UTF-8 text, e.g. JSON) on `topic` to everyone else in the
/// room, reliably and in order. Binary data should be base64-encoded.
///
/// Errors: NULL, invalid UTF-8, `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
///
/// # Safety
/// `client` must come from `madang_client_new`; `topic` and `payload` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_send_data(
    client: *mut madang_client,
    topic: *const c_char,
    payload: *const c_char,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        let (topic, payload) = match unsafe { (str_arg(topic), str_arg(payload)) } {
            (Ok(t), Ok(p)) => (t, p),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        // SAFETY: per the contract.
        unsafe { with_room(client, |room| room.send_data(topic, payload, Vec::new())) }
    })
}

/// Tells the client that the local network changed (a phone moved from LTE to Wi-Fi, a
/// laptop got a new address): both connections move to new UDP sockets bound on
/// `local_ip` (an IPv4 or IPv6 address in text; NULL keeps the address they use now) and
/// restart ICE, keeping every stream, so that media resumes once the new path answers.
/// Call it when the platform reports a change; the client does not watch the network.
///
/// Errors: NULL client, invalid UTF-8, `MADANG_RESULT_INVALID_ADDRESS` (not an IP
/// address), `MADANG_RESULT_IO` (no socket could be bound there),
/// `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
///
/// # Safety
/// `client` must come from `madang_client_new`; `local_ip` NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_network_changed(
    client: *mut madang_client,
    local_ip: *const c_char,
) -> madang_result {
    ffi_boundary!({
        let ip = if local_ip.is_null() {
            None
        } else {
            // SAFETY: per the contract.
            match unsafe { str_arg(local_ip) }.map(|s| s.parse::<std::net::IpAddr>()) {
                Ok(Ok(ip)) => Some(ip),
                Ok(Err(_)) => return madang_result::MADANG_RESULT_INVALID_ADDRESS,
                Err(e) => return e,
            }
        };
        // SAFETY: per the contract.
        unsafe {
            with_client(client, |c| match c.session() {
                Ok(s) => match c.runtime().block_on(s.room.network_changed(ip)) {
                    Ok(()) => madang_result::MADANG_RESULT_OK,
                    Err(e) => room_error(&e),
                },
                Err(e) => e,
            })
        }
    })
}

/// Raises (`raised` true) or lowers this viewer's hand to ask to be heard; the room's
/// hosts get `MADANG_EVENT_HANDS`. Only viewers raise a hand (others get a
/// `MADANG_EVENT_ERROR` "permission_denied").
///
/// Errors: NULL, `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
///
/// # Safety
/// `client` must come from `madang_client_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_raise_hand(
    client: *mut madang_client,
    raised: bool,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe { with_room(client, |room| room.raise_hand(raised)) }
    })
}

/// Host only: sends `identity`'s raised hand back (it gets `MADANG_EVENT_HAND_LOWERED`).
/// The server refuses it from anyone but a host (`MADANG_EVENT_ERROR` "permission_denied")
/// and for someone not in the room ("unknown_participant").
///
/// Errors: NULL, invalid UTF-8, `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
///
/// # Safety
/// `client` must come from `madang_client_new`; `identity` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_lower_hand(
    client: *mut madang_client,
    identity: *const c_char,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe { host_command(client, identity, Room::lower_hand) }
    })
}

/// Host only: lets viewer `identity` in as a speaker (everyone gets
/// `MADANG_EVENT_ROLE_CHANGED`; a madang client then publishes). Refused as
/// `madang_client_lower_hand` is.
///
/// Errors: NULL, invalid UTF-8, `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
///
/// # Safety
/// `client` must come from `madang_client_new`; `identity` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_promote(
    client: *mut madang_client,
    identity: *const c_char,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe { host_command(client, identity, Room::promote) }
    })
}

/// Host only: makes speaker `identity` a viewer again; its tracks end for everyone.
///
/// Errors: NULL, invalid UTF-8, `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
///
/// # Safety
/// `client` must come from `madang_client_new`; `identity` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_demote(
    client: *mut madang_client,
    identity: *const c_char,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe { host_command(client, identity, Room::demote) }
    })
}

/// Host only: mutes `identity`'s microphone for everyone (`MADANG_EVENT_TRACK_MUTED`, to
/// it too; it may unmute itself).
///
/// Errors: NULL, invalid UTF-8, `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
///
/// # Safety
/// `client` must come from `madang_client_new`; `identity` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_mute_participant(
    client: *mut madang_client,
    identity: *const c_char,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe { host_command(client, identity, Room::mute_participant) }
    })
}

/// Host only: starts (`on` true) or stops recording the room, on a server that records
/// (`madang serve --record DIR`); everyone gets `MADANG_EVENT_RECORDING`. The server
/// refuses it from anyone but a host, and where it does not record (`MADANG_EVENT_ERROR`
/// "permission_denied").
///
/// Errors: NULL, `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
///
/// # Safety
/// `client` must come from `madang_client_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_record(
    client: *mut madang_client,
    on: bool,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe { with_room(client, |room| room.record(on)) }
    })
}

/// Host only: removes `identity` from the room (hosts cannot be removed).
///
/// Errors: NULL, invalid UTF-8, `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
///
/// # Safety
/// `client` must come from `madang_client_new`; `identity` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_remove_participant(
    client: *mut madang_client,
    identity: *const c_char,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe { host_command(client, identity, Room::remove_participant) }
    })
}

/// Runs `f` on the room of a connected client.
///
/// # Safety
/// `client` must be NULL or come from `madang_client_new`.
unsafe fn with_room(
    client: *mut madang_client,
    f: impl FnOnce(&Room) -> Result<(), RoomError>,
) -> madang_result {
    // SAFETY: per the contract.
    unsafe {
        with_client(client, |c| match c.session() {
            Ok(s) => match f(&s.room) {
                Ok(()) => madang_result::MADANG_RESULT_OK,
                Err(e) => room_error(&e),
            },
            Err(e) => e,
        })
    }
}

/// A host's command about participant `identity`.
///
/// # Safety
/// As [`with_room`]; `identity` NULL or NUL-terminated.
unsafe fn host_command(
    client: *mut madang_client,
    identity: *const c_char,
    f: impl FnOnce(&Room, &str) -> Result<(), RoomError>,
) -> madang_result {
    // SAFETY: per the contract.
    match unsafe { str_arg(identity) } {
        // SAFETY: per the contract.
        Ok(identity) => unsafe { with_room(client, |room| f(room, identity)) },
        Err(e) => e,
    }
}

/// Runs `f` on the grid view of a connected client in grid receive mode.
fn with_grid(
    c: &mut madang_client,
    f: impl FnOnce(&mut GridView) -> madang_result,
) -> madang_result {
    match &mut c.state {
        State::Joined(s) => match &mut s.grid {
            Some((view, _)) => f(view),
            None => madang_result::MADANG_RESULT_INVALID_ARGUMENT,
        },
        State::New => madang_result::MADANG_RESULT_NOT_CONNECTED,
        State::Over => madang_result::MADANG_RESULT_CLOSED,
    }
}

/// Changes the arrangement of the composited grid (a `madang_layout_mode`). Grid receive mode
/// only.
///
/// Errors: `MADANG_RESULT_INVALID_ARGUMENT` for an unknown mode or a client receiving
/// per-participant frames; `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
///
/// # Safety
/// `client` must come from `madang_client_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_set_layout(
    client: *mut madang_client,
    mode: u32,
) -> madang_result {
    ffi_boundary!({
        let Some(mode) = layout_mode(mode) else {
            return madang_result::MADANG_RESULT_INVALID_ARGUMENT;
        };
        // SAFETY: per the contract.
        unsafe {
            with_client(client, |c| {
                with_grid(c, |view| {
                    view.set_mode(mode);
                    madang_result::MADANG_RESULT_OK
                })
            })
        }
    })
}

/// Changes the size of the composited grid (even, 16..=8192). Grid receive mode only. The
/// previous event's picture is released.
///
/// Errors: `MADANG_RESULT_INVALID_ARGUMENT` for a bad size or a client receiving
/// per-participant frames; `MADANG_RESULT_NOT_CONNECTED`, `MADANG_RESULT_CLOSED`.
///
/// # Safety
/// `client` must come from `madang_client_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_set_viewport(
    client: *mut madang_client,
    width: u32,
    height: u32,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe {
            with_client(client, |c| {
                with_grid(c, |view| match view.set_viewport(width, height) {
                    Ok(()) => madang_result::MADANG_RESULT_OK,
                    Err(_) => madang_result::MADANG_RESULT_INVALID_ARGUMENT,
                })
            })
        }
    })
}

/// Waits up to `timeout_ms` for the next event and writes it to `out_event`. Everything the
/// event points to (strings, planes, samples) stays valid until the next call on this client.
/// Call it on the thread that owns the client; madang never calls back into C.
///
/// Errors: `MADANG_RESULT_TIMEOUT` when nothing happened; `MADANG_RESULT_CLOSED` after the
/// session ended (`DISCONNECTED` was returned, or the client left);
/// `MADANG_RESULT_NOT_CONNECTED`.
///
/// # Safety
/// `client` must come from `madang_client_new`; `out_event` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_poll_event(
    client: *mut madang_client,
    out_event: *mut madang_event,
    timeout_ms: u32,
) -> madang_result {
    ffi_boundary!({
        if out_event.is_null() {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        }
        // SAFETY: per the contract.
        unsafe {
            with_client(client, |c| {
                match c.poll(Duration::from_millis(timeout_ms as u64)) {
                    Ok(event) => {
                        // SAFETY: checked non-NULL.
                        *out_event = event;
                        madang_result::MADANG_RESULT_OK
                    }
                    Err(e) => e,
                }
            })
        }
    })
}

/// Leaves the room: tells the server and closes the connections. Afterwards polls return
/// `MADANG_RESULT_CLOSED`. Leaving twice, or before connecting, is not an error.
///
/// # Safety
/// `client` must come from `madang_client_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_leave(client: *mut madang_client) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe {
            with_client(client, |c| {
                c.held = Held::default();
                if let State::Joined(session) = std::mem::replace(&mut c.state, State::Over) {
                    c.runtime().block_on(session.room.leave());
                }
                madang_result::MADANG_RESULT_OK
            })
        }
    })
}

/// Leaves the room if still in it, stops the client's threads and frees it. NULL is a no-op.
///
/// # Safety
/// `client` must be NULL or come from `madang_client_new`, and not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_free(client: *mut madang_client) {
    ffi_boundary_void!({
        if client.is_null() {
            return;
        }
        // SAFETY: created by Box::into_raw in madang_client_new, freed once.
        let mut c = unsafe { Box::from_raw(client) };
        c.held = Held::default();
        let state = std::mem::replace(&mut c.state, State::Over);
        if let Some(runtime) = c.runtime.take() {
            if let State::Joined(session) = state {
                runtime.block_on(session.room.leave());
            }
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    })
}
