//! What `madang_client_poll_event` hands out: room events turned into `madang_event`s whose
//! strings and planes stay valid until the next call on the client.

use std::ffi::{CString, c_char};

use madang::media::{AudioFrame, VideoFrame};
use madang::room::{RoomEvent, RoomStats, TrackStats};
use madang::signal::TrackKind;

use crate::client::{
    madang_audio_frame, madang_event, madang_event_kind, madang_stats, madang_track_stats,
    madang_video_frame,
};

/// What the last event's pointers point into.
#[derive(Default)]
pub(crate) struct Held {
    pub(crate) strings: Vec<CString>,
    pub(crate) tracks: Vec<madang_track_stats>,
    pub(crate) video: Option<VideoFrame>,
    pub(crate) audio: Option<AudioFrame>,
}

pub(crate) fn c_stats(s: &RoomStats) -> madang_stats {
    let mut out = madang_stats {
        video_frames_sent: s.sent.video_frames,
        keyframes_sent: s.sent.keyframes,
        video_bytes_sent: s.sent.video_bytes,
        audio_frames_sent: s.sent.audio_frames,
        dropped_before_connected: s.sent.dropped_before_connected,
        rtt_ms: s
            .publish_rtt_ms
            .or_else(|| s.received.iter().find_map(|t| t.rtt_ms))
            .unwrap_or(-1.0),
        tracks_received: s.received.len() as u32,
        uplink_estimate_kbps: s.sent.uplink_estimate_bps as f64 / 1000.0,
        video_target_kbps: s.sent.video_target_bps as f64 / 1000.0,
        ..Default::default()
    };
    for t in &s.received {
        out.packets_received += t.packets;
        out.packets_lost += t.packets_lost;
        out.frames_decoded += t.frames_decoded;
        out.frames_lost += t.frames_lost;
        out.receive_kbps += t.kbps();
        out.freezes += t.freezes;
        out.freeze_ms += t.freeze_ms;
        out.keyframe_requests_sent += t.keyframes_requested;
        out.nacks_sent += t.nacks_sent;
        out.packets_recovered += t.packets_recovered;
        out.audio_fec_frames += t.audio_fec_frames;
        out.audio_copy_frames += t.audio_copy_frames;
        out.audio_concealed_ms += t.audio_concealed_ms;
        if t.kind == TrackKind::Video {
            out.video_buffer_delay_ms = out.video_buffer_delay_ms.max(t.buffer_delay_ms);
        }
    }
    out
}

/// Builds a `madang_event` whose strings and media live in a [`Held`].
pub(crate) struct Event<'a> {
    pub(crate) event: madang_event,
    pub(crate) held: &'a mut Held,
}

static EMPTY: &[u8] = b"\0";

pub(crate) fn null_video() -> madang_video_frame {
    madang_video_frame {
        width: 0,
        height: 0,
        y: std::ptr::null(),
        u: std::ptr::null(),
        v: std::ptr::null(),
        stride_y: 0,
        stride_u: 0,
        stride_v: 0,
        pts_us: 0,
    }
}

/// The C view of `f`: its planes, borrowed.
pub(crate) fn video_view(f: &VideoFrame) -> madang_video_frame {
    let [sy, su, sv] = f.strides();
    madang_video_frame {
        width: f.width(),
        height: f.height(),
        y: f.plane(0).as_ptr(),
        u: f.plane(1).as_ptr(),
        v: f.plane(2).as_ptr(),
        stride_y: sy as u32,
        stride_u: su as u32,
        stride_v: sv as u32,
        pts_us: f.pts_us(),
    }
}

impl<'a> Event<'a> {
    pub(crate) fn new(kind: madang_event_kind, held: &'a mut Held) -> Self {
        let empty = EMPTY.as_ptr().cast();
        Self {
            event: madang_event {
                kind,
                participant: empty,
                name: empty,
                track: empty,
                text: empty,
                topic: empty,
                level: 0.0,
                muted: false,
                paused: false,
                video: null_video(),
                audio: madang_audio_frame {
                    samples: std::ptr::null(),
                    samples_per_channel: 0,
                    channels: 0,
                    sample_rate: 0,
                    pts_us: 0,
                },
                stats: madang_stats::default(),
                tracks: std::ptr::null(),
                track_count: 0,
            },
            held,
        }
    }

    /// A held NUL-terminated copy of `s` (an interior NUL cuts it short).
    pub(crate) fn hold(&mut self, s: &str) -> *const c_char {
        let s = s.split('\0').next().unwrap_or_default();
        let c = CString::new(s).expect("no interior NUL after the split");
        let p = c.as_ptr();
        self.held.strings.push(c);
        p
    }

    pub(crate) fn participant(&mut self, s: &str) -> &mut Self {
        self.event.participant = self.hold(s);
        self
    }

    pub(crate) fn name(&mut self, s: &str) -> &mut Self {
        self.event.name = self.hold(s);
        self
    }

    /// Per-track counters, held until the next call.
    pub(crate) fn track_stats(&mut self, received: &[TrackStats]) -> &mut Self {
        let mut tracks = Vec::with_capacity(received.len());
        for t in received {
            tracks.push(madang_track_stats {
                track: self.hold(&t.track),
                video: t.kind == TrackKind::Video,
                packets: t.packets,
                packets_lost: t.packets_lost,
                frames_decoded: t.frames_decoded,
                frames_lost: t.frames_lost,
                keyframe_requests: t.keyframes_requested,
                nacks_sent: t.nacks_sent,
                packets_recovered: t.packets_recovered,
                freezes: t.freezes,
                freeze_ms: t.freeze_ms,
                audio_fec_frames: t.audio_fec_frames,
                audio_concealed_ms: t.audio_concealed_ms,
                buffer_delay_ms: t.buffer_delay_ms,
                jitter_ms: t.jitter_ms.unwrap_or(-1.0),
                kbps: t.kbps(),
                audio_copy_frames: t.audio_copy_frames,
            });
        }
        self.held.tracks = tracks;
        if !self.held.tracks.is_empty() {
            self.event.tracks = self.held.tracks.as_ptr();
            self.event.track_count = self.held.tracks.len();
        }
        self
    }

    pub(crate) fn track(&mut self, s: &str) -> &mut Self {
        self.event.track = self.hold(s);
        self
    }

    pub(crate) fn text(&mut self, s: &str) -> &mut Self {
        self.event.text = self.hold(s);
        self
    }

    pub(crate) fn topic(&mut self, s: &str) -> &mut Self {
        self.event.topic = self.hold(s);
        self
    }

    /// The finished event, its video and audio pointing into the held frames.
    pub(crate) fn done(mut self) -> madang_event {
        if let Some(f) = &self.held.video {
            self.event.video = video_view(f);
        }
        if let Some(a) = &self.held.audio {
            let channels = a.channels().count() as u32;
            self.event.audio = madang_audio_frame {
                samples: a.samples().as_ptr(),
                samples_per_channel: a.samples().len() as u32 / channels,
                channels,
                sample_rate: madang::media::AUDIO_SAMPLE_RATE,
                pts_us: a.pts_us(),
            };
        }
        self.event
    }
}

/// The C form of a room event; `None` for events C does not see.
pub(crate) fn convert(event: RoomEvent, held: &mut Held) -> Option<madang_event> {
    use madang_event_kind::*;
    Some(match event {
        RoomEvent::ParticipantJoined(p) => {
            let mut e = Event::new(MADANG_EVENT_PARTICIPANT_JOINED, held);
            e.participant(&p.identity)
                .name(&p.name)
                .text(&p.role.to_string());
            e.done()
        }
        RoomEvent::ParticipantLeft { identity, reason } => {
            let mut e = Event::new(MADANG_EVENT_PARTICIPANT_LEFT, held);
            e.participant(&identity).text(reason.as_str());
            e.done()
        }
        RoomEvent::TrackPublished(t) => {
            let mut e = Event::new(MADANG_EVENT_TRACK_PUBLISHED, held);
            e.participant(&t.participant)
                .track(&t.id)
                .text(t.kind.as_str());
            e.event.muted = t.muted;
            e.done()
        }
        RoomEvent::TrackUnpublished(track) => {
            let mut e = Event::new(MADANG_EVENT_TRACK_UNPUBLISHED, held);
            e.track(&track);
            e.done()
        }
        RoomEvent::TrackMuted { track, muted } => {
            let mut e = Event::new(MADANG_EVENT_TRACK_MUTED, held);
            e.track(&track);
            e.event.muted = muted;
            e.done()
        }
        RoomEvent::VideoPaused { track, paused } => {
            let mut e = Event::new(MADANG_EVENT_VIDEO_PAUSED, held);
            e.track(&track);
            e.event.paused = paused;
            e.done()
        }
        RoomEvent::VideoFrame {
            participant,
            track,
            frame,
        } => {
            held.video = Some(frame);
            let mut e = Event::new(MADANG_EVENT_VIDEO_FRAME, held);
            e.participant(&participant).track(&track);
            e.done()
        }
        RoomEvent::AudioFrame {
            participant,
            track,
            frame,
        } => {
            held.audio = Some(frame);
            let mut e = Event::new(MADANG_EVENT_AUDIO_FRAME, held);
            e.participant(&participant).track(&track);
            e.done()
        }
        RoomEvent::Data(m) => {
            let mut e = Event::new(MADANG_EVENT_DATA, held);
            e.participant(&m.from).topic(&m.topic).text(&m.payload);
            e.done()
        }
        RoomEvent::ActiveSpeaker(speakers) => {
            let mut e = Event::new(MADANG_EVENT_ACTIVE_SPEAKER, held);
            if let Some(s) = speakers.first() {
                e.participant(&s.identity);
                e.event.level = s.level;
            }
            e.done()
        }
        RoomEvent::Error { code, reason } => {
            let mut e = Event::new(MADANG_EVENT_ERROR, held);
            e.text(code.as_str()).topic(&reason);
            e.done()
        }
        RoomEvent::Hands(queue) => {
            let mut e = Event::new(MADANG_EVENT_HANDS, held);
            e.text(&queue.join("\n"));
            e.done()
        }
        RoomEvent::HandLowered => Event::new(MADANG_EVENT_HAND_LOWERED, held).done(),
        RoomEvent::RoleChanged { identity, role } => {
            let mut e = Event::new(MADANG_EVENT_ROLE_CHANGED, held);
            e.participant(&identity).text(&role.to_string());
            e.done()
        }
        RoomEvent::Recording { on, by } => {
            let mut e = Event::new(MADANG_EVENT_RECORDING, held);
            e.participant(by.as_deref().unwrap_or_default())
                .text(if on { "started" } else { "stopped" });
            e.done()
        }
        RoomEvent::Disconnected => Event::new(MADANG_EVENT_DISCONNECTED, held).done(),
        RoomEvent::Reconnecting => Event::new(MADANG_EVENT_RECONNECTING, held).done(),
        RoomEvent::Reconnected => Event::new(MADANG_EVENT_RECONNECTED, held).done(),
        _ => return None,
    })
}
