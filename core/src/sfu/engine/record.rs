//! The engine's side of recording: recorded rooms' packets to the [`Recorder`], its
//! keyframe requests to the publishers, its outputs to the driver.

use std::time::Instant;

use bytes::Bytes;

use super::Engine;
use crate::sfu::forward::InHeader;
use crate::sfu::record::{RecordOutput, Recorder};
use crate::sfu::rooms::GRID_TRACK;
use crate::signal::TrackKind;

impl Engine {
    /// The room policy started or stopped recording `room`. A start asks every video
    /// publisher of the room for a keyframe at once (past the limiters): a recording's
    /// pictures begin at one.
    pub(super) fn on_record(&mut self, room: &str, on: bool, now: Instant) {
        let Some(recorder) = self.recorder.as_mut() else {
            return;
        };
        if !on {
            recorder.stop(room, now);
            return;
        }
        recorder.start(room, now, super::super::token::unix_now());
        let videos: Vec<(super::SessionId, String)> = self
            .peers
            .iter()
            .filter(|(id, _)| self.rooms.member(**id).is_some_and(|(r, _)| r == room))
            .flat_map(|(id, peer)| {
                peer.published
                    .iter()
                    .filter(|(_, p)| p.kind == TrackKind::Video)
                    .map(move |(track, _)| (*id, track.clone()))
            })
            .collect();
        self.keyframes_past_limit = true;
        for (publisher, track) in videos {
            self.request_keyframe(publisher, &track, None, now);
        }
        self.keyframes_past_limit = false;
        if let Some(mixer) = self.mixers.get_mut(room) {
            mixer.request_keyframe();
        }
    }

    /// A packet of a recorded room's track (`room_track`), as the server received it.
    pub(super) fn record(
        &mut self,
        room: &str,
        room_track: &str,
        kind: TrackKind,
        header: &InHeader,
        payload: &Bytes,
        now: Instant,
    ) {
        if let Some(recorder) = self.recorder.as_mut() {
            recorder.input(now, room, room_track, kind, header, payload);
        }
    }

    /// Whether `room`'s packets go to the recorder.
    pub(super) fn recording(&self, room: &str) -> bool {
        self.recorder.as_ref().is_some_and(|r| r.is_recording(room))
    }

    /// The recorder's housekeeping: files of tracks that ended are closed, pictures given
    /// up on are asked for again with a keyframe.
    pub(super) fn tick_recorder(&mut self, now: Instant) {
        let Some(recorder) = self.recorder.as_mut() else {
            return;
        };
        recorder.set_rtt(self.upstream_rtt);
        let rooms = &self.rooms;
        let mixers = &self.mixers;
        recorder.tick(now, |room, track| {
            rooms.track(room, track).is_some() && (track != GRID_TRACK || mixers.contains_key(room))
        });
        let due = recorder.keyframes_due(now);
        for (room, track) in due {
            if track == GRID_TRACK {
                if let Some(mixer) = self.mixers.get_mut(&room) {
                    mixer.request_keyframe();
                }
            } else if let Some(publisher) = self.rooms.publisher_of(&room, &track) {
                self.request_keyframe_of_track(publisher, &track, None, now);
            }
        }
    }

    /// The next thing the recording writer must do (open, append to or close a file).
    pub fn poll_record(&mut self) -> Option<RecordOutput> {
        self.recorder.as_mut().and_then(Recorder::poll_output)
    }
}
