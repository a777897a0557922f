//! The engine's side of recording: recorded rooms' packets to the [`Recorder`], its
//! keyframe requests to the publishers, its outputs to the driver.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{Engine, SessionId};
use crate::sfu::forward::{DownTrack, Forwarding, InHeader};
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

    /// A packet of a simulcast video being recorded. The file takes the largest layer
    /// flowing, switched at the new layer's keyframe with the numbering kept continuous —
    /// the rewriting a subscriber's layer switch gets — so the recording follows the
    /// publisher's best picture (its uplink may pause the top layer) and its receive buffer
    /// sees one stream.
    pub(super) fn record_largest_layer(
        &mut self,
        layer: Layer<'_>,
        header: &InHeader,
        payload: &Bytes,
        now: Instant,
    ) {
        let key = (layer.room.clone(), layer.room_track.clone());
        let down = self
            .recorded_layers
            .entry(key)
            .or_insert_with(|| DownTrack::new(0, 0, true));
        if let Some(target) = layer.largest
            && down.wanted_layer() != Some(target)
        {
            down.switch_layer(target);
        }
        let want_keyframe = match down.forward(header, now) {
            Forwarding::Send(out) => {
                let rewritten = InHeader {
                    ssrc: out.ssrc,
                    seq: out.seq,
                    timestamp: out.timestamp,
                    marker: out.marker,
                    keyframe_start: header.keyframe_start,
                    parameter_sets: header.parameter_sets,
                };
                let (room, track) = (layer.room, layer.room_track);
                self.record(room, track, TrackKind::Video, &rewritten, payload, now);
                None
            }
            Forwarding::WaitingForKeyframe => down.switching_to().or(Some(header.ssrc)),
            _ => None,
        };
        if let Some(ssrc) = want_keyframe {
            self.request_keyframe(layer.publisher, layer.track_id, Some(ssrc), now);
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
        self.recorded_layers.retain(|(room, track), _| {
            recorder.is_recording(room) && rooms.track(room, track).is_some()
        });
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

/// A simulcast track's packet on its way to the recorder: whose, and which layer is largest.
pub(super) struct Layer<'a> {
    pub publisher: SessionId,
    /// The publishing connection's track id.
    pub track_id: &'a str,
    pub room: &'a Arc<str>,
    pub room_track: &'a Arc<str>,
    /// The largest layer flowing now, if any is known.
    pub largest: Option<u32>,
}
