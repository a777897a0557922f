//! What a participant knows about its room — who is in it, what they publish, which receive
//! slot carries which track, who is speaking — kept current from the server's messages.
//! Pure and free of native code: the client session uses it, and the browser module
//! (compiled for wasm32) uses the same code.

use std::collections::{BTreeMap, BTreeSet};

use crate::grid::layout::Person;
use crate::signal::{ParticipantInfo, ServerMessage, Speaker, TrackInfo, TrackKind, TrackSource};

/// The room as the server described it, message by message.
///
/// ```
/// use madang::room::RoomState;
/// use madang::signal::{ParticipantInfo, Role, ServerMessage, decode_server};
///
/// let mut room = RoomState::default();
/// let joined = decode_server(r#"{"type":"joined","room":"hall","protocol":1,
///     "participant":{"identity":"me","name":"Me","role":"speaker"},
///     "participants":[{"identity":"gangnam","name":"Gangnam-gu","role":"speaker"}],
///     "tracks":[{"id":"gangnam/camera","participant":"gangnam","kind":"video","source":"camera","muted":false}]}"#).unwrap();
/// assert!(room.apply(&joined));
/// assert_eq!(room.people().len(), 2);
/// assert_eq!(room.video_track_of("gangnam").as_deref(), Some("gangnam/camera"));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoomState {
    room: String,
    local: Option<ParticipantInfo>,
    /// Everyone, this participant included, in join order.
    people: Vec<ParticipantInfo>,
    tracks: BTreeMap<String, TrackInfo>,
    /// Receive slot (mid) → the room track it carries now.
    slots: BTreeMap<String, String>,
    /// Loudest first.
    speakers: Vec<Speaker>,
    /// Videos the server paused towards this participant (its downlink cannot carry them).
    paused: BTreeSet<String>,
    /// Raised hands, first raised first (the server tells hosts only).
    hands: Vec<String>,
}

impl RoomState {
    // ---- getters ----

    /// The room's name (empty before joining).
    pub fn room(&self) -> &str {
        &self.room
    }

    /// This participant, once joined.
    pub fn local(&self) -> Option<&ParticipantInfo> {
        self.local.as_ref()
    }

    /// Raised hands, first raised first: what the server last told this participant, a
    /// host (others are not told; empty for them).
    pub fn hands(&self) -> &[String] {
        &self.hands
    }

    /// Whether `identity` is this participant.
    pub fn is_local(&self, identity: &str) -> bool {
        self.local.as_ref().is_some_and(|l| l.identity == identity)
    }

    /// Everyone, this participant included, in join order.
    pub fn people(&self) -> &[ParticipantInfo] {
        &self.people
    }

    /// Every published track, by id.
    pub fn tracks(&self) -> impl Iterator<Item = &TrackInfo> {
        self.tracks.values()
    }

    /// One track.
    pub fn track(&self, id: &str) -> Option<&TrackInfo> {
        self.tracks.get(id)
    }

    /// The room track a receive slot carries now.
    pub fn slot_track(&self, mid: &str) -> Option<&str> {
        self.slots.get(mid).map(String::as_str)
    }

    /// The receive slot carrying a room track.
    pub fn slot_of(&self, track: &str) -> Option<&str> {
        self.slots
            .iter()
            .find(|(_, t)| *t == track)
            .map(|(mid, _)| mid.as_str())
    }

    /// Receive slots with the tracks they carry.
    pub fn slots(&self) -> impl Iterator<Item = (&str, &str)> {
        self.slots.iter().map(|(m, t)| (m.as_str(), t.as_str()))
    }

    /// The speakers, loudest first.
    pub fn speakers(&self) -> &[Speaker] {
        &self.speakers
    }

    /// The video track to show for someone else: a screen share before the camera, nothing
    /// muted, nothing the server paused.
    pub fn video_track_of(&self, identity: &str) -> Option<String> {
        self.tile_track_of(identity)
            .filter(|id| !self.paused.contains(id))
    }

    /// The video track someone else's tile is for, paused by the server or not: a screen
    /// share before the camera, nothing muted. What a `layout` names (a paused video
    /// left out of it would be off screen, and never resumed).
    pub fn tile_track_of(&self, identity: &str) -> Option<String> {
        [TrackSource::Screen, TrackSource::Camera]
            .iter()
            .map(|s| s.track_id(identity))
            .find(|id| {
                self.tracks
                    .get(id)
                    .is_some_and(|t| !t.muted && t.kind == TrackKind::Video)
            })
    }

    /// Everyone as the layout sees them, in join order, with their speaker rank.
    /// `has_video` says whether a participant's picture is available (for others usually
    /// [`video_track_of`](Self::video_track_of); for this participant, its own capture).
    pub fn persons(&self, has_video: impl Fn(&ParticipantInfo) -> bool) -> Vec<Person> {
        self.people
            .iter()
            .map(|p| {
                let mut person = Person::of(p, has_video(p));
                person.speaker_rank = self
                    .speakers
                    .iter()
                    .position(|s| s.identity == p.identity)
                    .map(|r| r as u32);
                person
            })
            .collect()
    }

    /// What happened while the signal connection was down, as the messages that would
    /// have said it, from what `resumed` (a [`ServerMessage::Resumed`]) says the room is
    /// now: tracks gone, people gone (as `left`: why is not known), people and roles new,
    /// tracks new, mutes changed. Applying them in order brings this state to the room's.
    pub fn catch_up(&self, resumed: &ServerMessage) -> Vec<ServerMessage> {
        let ServerMessage::Resumed {
            participant,
            participants,
            tracks,
        } = resumed
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for id in self.tracks.keys() {
            if !tracks.iter().any(|t| &t.id == id) {
                out.push(ServerMessage::TrackUnpublished { track: id.clone() });
            }
        }
        let local = self.local.as_ref().map(|l| l.identity.as_str());
        for p in &self.people {
            if Some(p.identity.as_str()) != local
                && !participants.iter().any(|q| q.identity == p.identity)
            {
                out.push(ServerMessage::ParticipantLeft {
                    identity: p.identity.clone(),
                    reason: crate::signal::LeaveReason::Left,
                });
            }
        }
        for p in participants.iter().chain(std::iter::once(participant)) {
            match self.people.iter().find(|q| q.identity == p.identity) {
                None => out.push(ServerMessage::ParticipantJoined {
                    participant: p.clone(),
                }),
                Some(known) if known.role != p.role => out.push(ServerMessage::RoleChanged {
                    identity: p.identity.clone(),
                    role: p.role,
                }),
                Some(_) => {}
            }
        }
        for t in tracks {
            match self.tracks.get(&t.id) {
                None => out.push(ServerMessage::TrackPublished { track: t.clone() }),
                Some(known) if known.muted != t.muted => out.push(ServerMessage::TrackMuted {
                    track: t.id.clone(),
                    muted: t.muted,
                }),
                Some(_) => {}
            }
        }
        out
    }

    // ---- input ----

    /// Takes in one server message; returns whether who is shown, or how, may have
    /// changed (people, tracks, mutes, speakers).
    pub fn apply(&mut self, message: &ServerMessage) -> bool {
        match message {
            ServerMessage::Joined {
                room,
                participant,
                participants,
                tracks,
                ..
            } => {
                self.room = room.clone();
                self.people = participants.clone();
                self.people.retain(|p| p.identity != participant.identity);
                self.people.push(participant.clone());
                self.local = Some(participant.clone());
                self.tracks = tracks.iter().map(|t| (t.id.clone(), t.clone())).collect();
                true
            }
            ServerMessage::ParticipantJoined { participant } => {
                self.people.retain(|p| p.identity != participant.identity);
                self.people.push(participant.clone());
                true
            }
            ServerMessage::ParticipantLeft { identity, .. } => {
                self.people.retain(|p| &p.identity != identity);
                self.tracks.retain(|_, t| &t.participant != identity);
                self.speakers.retain(|s| &s.identity != identity);
                true
            }
            ServerMessage::TrackPublished { track } => {
                self.tracks.insert(track.id.clone(), track.clone());
                true
            }
            ServerMessage::TrackUnpublished { track } => {
                self.paused.remove(track);
                self.tracks.remove(track).is_some()
            }
            ServerMessage::VideoPaused { track, paused } => {
                if *paused {
                    self.paused.insert(track.clone())
                } else {
                    self.paused.remove(track)
                }
            }
            ServerMessage::TrackMuted { track, muted } => match self.tracks.get_mut(track) {
                Some(t) => {
                    t.muted = *muted;
                    true
                }
                None => false,
            },
            ServerMessage::ActiveSpeaker { speakers } => {
                self.speakers = speakers.clone();
                true
            }
            ServerMessage::RoleChanged { identity, role } => {
                for p in self.people.iter_mut().chain(self.local.as_mut()) {
                    if p.identity == *identity {
                        p.role = *role;
                    }
                }
                true
            }
            ServerMessage::Hands { queue } => {
                self.hands = queue.clone();
                false
            }
            ServerMessage::Slots { slots } => {
                self.slots = slots
                    .iter()
                    .filter_map(|s| Some((s.mid.clone(), s.track.clone()?)))
                    .collect();
                false
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{LeaveReason, Role, TrackSlot};

    #[test]
    fn roles_follow_promotions_and_hosts_keep_the_queue_of_hands() {
        let mut room = joined();
        let promoted = ServerMessage::RoleChanged {
            identity: "me".into(),
            role: Role::Host,
        };
        assert!(room.apply(&promoted));
        assert_eq!(room.local().map(|l| l.role), Some(Role::Host));
        let me = room.people().iter().find(|p| p.identity == "me");
        assert_eq!(me.map(|p| p.role), Some(Role::Host));
        let queue = vec!["a".to_string(), "b".to_string()];
        room.apply(&ServerMessage::Hands {
            queue: queue.clone(),
        });
        assert_eq!(room.hands(), queue);
    }

    fn person(id: &str) -> ParticipantInfo {
        ParticipantInfo {
            identity: id.into(),
            name: id.to_uppercase(),
            role: Role::Speaker,
        }
    }

    fn track(owner: &str, source: TrackSource) -> TrackInfo {
        TrackInfo {
            id: source.track_id(owner),
            participant: owner.into(),
            kind: if source == TrackSource::Microphone {
                TrackKind::Audio
            } else {
                TrackKind::Video
            },
            source,
            muted: false,
        }
    }

    fn joined() -> RoomState {
        let mut room = RoomState::default();
        room.apply(&ServerMessage::Joined {
            room: "hall".into(),
            protocol: crate::signal::PROTOCOL_VERSION,
            participant: person("me"),
            participants: vec![person("a"), person("b")],
            tracks: vec![track("a", TrackSource::Camera)],
            resume: None,
        });
        room
    }

    #[test]
    fn catching_up_after_a_resume_says_what_changed_meanwhile() {
        let mut room = joined();
        let mut host = person("b");
        host.role = Role::Host;
        let resumed = ServerMessage::Resumed {
            participant: person("me"),
            participants: vec![host, person("c")],
            tracks: vec![track("c", TrackSource::Camera)],
        };
        let missed = room.catch_up(&resumed);
        assert_eq!(
            missed,
            vec![
                ServerMessage::TrackUnpublished {
                    track: "a/camera".into()
                },
                ServerMessage::ParticipantLeft {
                    identity: "a".into(),
                    reason: LeaveReason::Left
                },
                ServerMessage::RoleChanged {
                    identity: "b".into(),
                    role: Role::Host
                },
                ServerMessage::ParticipantJoined {
                    participant: person("c")
                },
                ServerMessage::TrackPublished {
                    track: track("c", TrackSource::Camera)
                },
            ]
        );
        for m in &missed {
            room.apply(m);
        }
        assert!(room.catch_up(&resumed).is_empty(), "caught up");
    }

    #[test]
    fn the_roster_follows_the_messages() {
        let mut room = joined();
        assert_eq!(room.room(), "hall");
        assert!(room.is_local("me"));
        let ids: Vec<&str> = room.people().iter().map(|p| p.identity.as_str()).collect();
        assert_eq!(ids, ["a", "b", "me"]);
        room.apply(&ServerMessage::TrackPublished {
            track: track("b", TrackSource::Screen),
        });
        room.apply(&ServerMessage::TrackPublished {
            track: track("b", TrackSource::Camera),
        });
        assert_eq!(room.video_track_of("b").as_deref(), Some("b/screen"));
        room.apply(&ServerMessage::TrackMuted {
            track: "b/screen".into(),
            muted: true,
        });
        assert_eq!(room.video_track_of("b").as_deref(), Some("b/camera"));
        // The server pauses that video too: no picture to show until it resumes it.
        assert!(room.apply(&ServerMessage::VideoPaused {
            track: "b/camera".into(),
            paused: true,
        }));
        assert!(room.video_track_of("b").is_none());
        // Its tile is still for it: the server is told, and can resume it.
        assert_eq!(room.tile_track_of("b").as_deref(), Some("b/camera"));
        assert!(room.apply(&ServerMessage::VideoPaused {
            track: "b/camera".into(),
            paused: false,
        }));
        assert_eq!(room.video_track_of("b").as_deref(), Some("b/camera"));
        room.apply(&ServerMessage::ActiveSpeaker {
            speakers: vec![Speaker {
                identity: "b".into(),
                level: 0.5,
            }],
        });
        let persons = room.persons(|p| room.video_track_of(&p.identity).is_some());
        assert_eq!(persons[1].speaker_rank, Some(0));
        assert!(persons[0].has_video && !persons[2].has_video);
        room.apply(&ServerMessage::ParticipantLeft {
            identity: "b".into(),
            reason: LeaveReason::Left,
        });
        assert_eq!(room.people().len(), 2);
        assert!(room.video_track_of("b").is_none());
        assert!(room.speakers().is_empty());
        assert!(!room.apply(&ServerMessage::TrackUnpublished {
            track: "nobody/camera".into()
        }));
    }

    #[test]
    fn slots_map_both_ways() {
        let mut room = joined();
        room.apply(&ServerMessage::Slots {
            slots: vec![
                TrackSlot {
                    mid: "0".into(),
                    track: Some("a/camera".into()),
                },
                TrackSlot {
                    mid: "1".into(),
                    track: None,
                },
            ],
        });
        assert_eq!(room.slot_track("0"), Some("a/camera"));
        assert_eq!(room.slot_of("a/camera"), Some("0"));
        assert_eq!(room.slot_track("1"), None);
        assert_eq!(room.slots().count(), 1);
    }
}
