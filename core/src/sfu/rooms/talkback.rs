//! Talk-back: hands raised by viewers, and what hosts may do about them and to others —
//! promote, demote, mute, remove. Pure policy on [`Rooms`]: every check is here, on the
//! server, whatever a client's buttons allow.

use super::{Effect, Rooms, SessionId};
use crate::signal::{ErrorCode, LeaveReason, Role, ServerMessage, TrackSource};

/// What a host asks of another participant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HostCommand {
    LowerHand,
    Promote,
    Demote,
    Mute,
    Remove,
}

impl HostCommand {
    fn verb(self) -> &'static str {
        match self {
            HostCommand::LowerHand => "lower a hand",
            HostCommand::Promote => "promote",
            HostCommand::Demote => "demote",
            HostCommand::Mute => "mute a participant",
            HostCommand::Remove => "remove a participant",
        }
    }
}

impl Rooms {
    /// Room, identity and role of a joined session.
    fn member_info(&self, id: SessionId) -> Option<(String, String, Role)> {
        let m = self.sessions.get(&id)?.member.as_ref()?;
        Some((m.room.to_string(), m.info.identity.clone(), m.info.role))
    }

    /// A participant raises or lowers its own hand.
    pub(super) fn hand(&mut self, id: SessionId, raised: bool) {
        let Some((room, identity, role)) = self.member_info(id) else {
            return;
        };
        if role != Role::Viewer {
            return self.fail(id, ErrorCode::PermissionDenied, "only viewers raise a hand");
        }
        if !raised {
            self.take_hand(&room, &identity);
            return;
        }
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        if !r.hands.contains(&identity) {
            tracing::info!("session {id}: {identity} raised a hand in room {room}");
            r.hands.push(identity);
            self.send_hands(&room);
        }
    }

    /// A host starts or stops recording its room.
    pub(super) fn record(&mut self, id: SessionId, on: bool) {
        let Some((room, host, role)) = self.member_info(id) else {
            return;
        };
        if role != Role::Host {
            return self.fail(id, ErrorCode::PermissionDenied, "only hosts may record");
        }
        if self.config.record.is_none() {
            return self.fail(
                id,
                ErrorCode::PermissionDenied,
                "this server does not record (it has no recording directory)",
            );
        }
        tracing::info!(
            "session {id}: host {host} asked to {} recording room {room}",
            if on { "start" } else { "stop" }
        );
        self.set_recording(&room, on, Some(host));
    }

    /// Starts or stops recording `room` (`by` a host, or the server), telling everyone;
    /// nothing happens when it already is in that state.
    pub(super) fn set_recording(&mut self, room: &str, on: bool, by: Option<String>) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if r.recording == on {
            return;
        }
        r.recording = on;
        self.effects.push_back(Effect::Record {
            room: room.to_owned(),
            on,
        });
        let message = if on {
            ServerMessage::RecordingStarted { by }
        } else {
            ServerMessage::RecordingStopped { by }
        };
        self.broadcast(room, None, message);
    }

    /// A host's command about `target`.
    pub(super) fn host_command(&mut self, id: SessionId, target: &str, command: HostCommand) {
        let Some((room, host, role)) = self.member_info(id) else {
            return;
        };
        if role != Role::Host {
            let reason = format!("only hosts may {}", command.verb());
            return self.fail(id, ErrorCode::PermissionDenied, &reason);
        }
        let Some(target_id) = self
            .rooms
            .get(&room)
            .and_then(|r| r.members.get(target))
            .copied()
        else {
            let reason = format!("{target:?} is not in the room");
            return self.fail(id, ErrorCode::UnknownParticipant, &reason);
        };
        let Some((_, _, target_role)) = self.member_info(target_id) else {
            return;
        };
        if target_role == Role::Host && matches!(command, HostCommand::Demote | HostCommand::Remove)
        {
            let reason = format!("hosts cannot be {}d", command.verb());
            return self.fail(id, ErrorCode::PermissionDenied, &reason);
        }
        tracing::info!(
            "session {id}: host {host} asked to {} {target}",
            command.verb()
        );
        match command {
            HostCommand::LowerHand => self.send_hand_back(&room, target, target_id),
            HostCommand::Promote if target_role == Role::Viewer => {
                self.send_hand_back(&room, target, target_id);
                self.set_role(target_id, &room, Role::Speaker);
            }
            HostCommand::Demote if target_role == Role::Speaker => {
                self.set_role(target_id, &room, Role::Viewer);
                let removed = self.drop_tracks(&room, |_, t| t.publisher == target_id);
                if !removed.is_empty() {
                    self.reassign_room(&room);
                }
                self.effects.push_back(Effect::EndPublishing(target_id));
            }
            HostCommand::Mute => {
                let track = TrackSource::Microphone.track_id(target);
                let muted = self
                    .rooms
                    .get_mut(&room)
                    .and_then(|r| {
                        let t = r.tracks.get_mut(&track)?;
                        t.info.muted = true;
                        r.host_muted.insert(track.clone());
                        Some(())
                    })
                    .is_some();
                if muted {
                    // Everyone, the participant included: its client mutes its microphone.
                    self.broadcast(&room, None, ServerMessage::TrackMuted { track, muted });
                }
            }
            HostCommand::Remove => {
                self.effects.push_back(Effect::Send(
                    target_id,
                    ServerMessage::Error {
                        code: ErrorCode::Removed,
                        reason: format!("removed by {host}"),
                    },
                ));
                self.remove(target_id, LeaveReason::Removed);
            }
            // Promoting a speaker or a host, demoting a viewer: nothing to change.
            HostCommand::Promote | HostCommand::Demote => {}
        }
    }

    /// Gives `id` a new role and tells the room.
    fn set_role(&mut self, id: SessionId, room: &str, role: Role) {
        let Some(member) = self.sessions.get_mut(&id).and_then(|s| s.member.as_mut()) else {
            return;
        };
        member.info.role = role;
        let identity = member.info.identity.clone();
        tracing::info!("session {id}: {identity} is now {role} in room {room}");
        self.broadcast(room, None, ServerMessage::RoleChanged { identity, role });
    }

    /// A host answered `identity`'s raised hand (session `id`): out of the queue, and its
    /// owner is told.
    fn send_hand_back(&mut self, room: &str, identity: &str, id: SessionId) {
        if self.take_hand(room, identity) {
            self.effects
                .push_back(Effect::Send(id, ServerMessage::HandLowered));
        }
    }

    /// Takes `identity`'s hand out of the queue; whether it was raised (the hosts are told).
    pub(super) fn take_hand(&mut self, room: &str, identity: &str) -> bool {
        let Some(r) = self.rooms.get_mut(room) else {
            return false;
        };
        let before = r.hands.len();
        r.hands.retain(|h| h != identity);
        let taken = r.hands.len() != before;
        if taken {
            self.send_hands(room);
        }
        taken
    }

    /// The queue of raised hands, to every host of `room`.
    pub(super) fn send_hands(&mut self, room: &str) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        for sid in r.members.values() {
            let host = self
                .sessions
                .get(sid)
                .and_then(|s| s.member.as_ref())
                .is_some_and(|m| m.info.role == Role::Host);
            if host {
                self.effects.push_back(Effect::Send(
                    *sid,
                    ServerMessage::Hands {
                        queue: r.hands.clone(),
                    },
                ));
            }
        }
    }
}
