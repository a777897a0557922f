//! The server's room policy: who is in which room, what they publish, what they receive on
//! which slot, who speaks, who has gone silent. Pure: it is fed signal messages, media
//! facts and `now`, and answers with [`Effect`]s (messages to send, sessions to close). The
//! engine does the WebRTC and socket work around it; tests drive it on simulated time.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::slots::{SlotView, assign};
use super::speaker::ActiveSpeakers;
use super::token::verify;
use crate::grid::layout::{Layout, Rect, Tile};
use crate::signal::{
    ClientMessage, DataMessage, ErrorCode, IceCandidate, LeaveReason, MAX_TILE_SIDE, MAX_TILES,
    PROTOCOL_VERSION, ParticipantInfo, PeerRole, PublishTrack, Role, ServerMessage, TrackInfo,
    TrackKind, TrackSlot, TrackSource, valid_display_name,
};

/// Identifies one signal session (one WebSocket).
pub type SessionId = u64;

/// What the engine must do because of a decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send this message on the session's WebSocket.
    Send(SessionId, ServerMessage),
    /// Tear the session down: close its connections and its WebSocket.
    Close(SessionId),
    /// Close the session's publishing connection and forget what it published (a host
    /// demoted it); the session stays.
    EndPublishing(SessionId),
    /// Start (`on`) or stop recording `room`.
    Record {
        /// Which room.
        room: String,
        /// Recording from now on or not.
        on: bool,
    },
    /// Session `session`'s messages go over session `via`'s WebSocket from now on, and
    /// what `via` sends is `session`'s (a `resume`); `session`'s old WebSocket, if still
    /// open, is closed.
    Resume {
        /// The session resumed.
        session: SessionId,
        /// The new WebSocket's session id.
        via: SessionId,
    },
}

/// Signal work that needs the WebRTC engine, handed back by [`Rooms::message`] once the
/// policy allowed it.
#[derive(Clone, Debug, PartialEq)]
pub enum Work {
    /// Answer this offer.
    Offer {
        /// Which connection.
        pc: PeerRole,
        /// The SDP.
        sdp: String,
        /// Published m-lines (publisher offers).
        publish: Vec<PublishTrack>,
    },
    /// Apply this candidate.
    Candidate {
        /// Which connection.
        pc: PeerRole,
        /// The candidate.
        candidate: IceCandidate,
    },
}

/// Characters of resume keys (22 of them: 131 bits).
const RESUME_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The session id the server's composited grid publishes under (no real session has it).
pub const GRID_SESSION: SessionId = SessionId::MAX;
/// Identity of the grid's virtual participant.
pub const GRID_IDENTITY: &str = "grid";
/// Track id of the composited grid.
pub const GRID_TRACK: &str = "grid/grid";

/// Settings of the room policy.
#[derive(Clone, Debug)]
pub struct RoomsConfig {
    /// Secret that signs tokens.
    pub secret: Vec<u8>,
    /// Sessions silent for longer are removed.
    pub silence_timeout: Duration,
    /// Participants per room.
    pub max_participants: usize,
    /// Per-session and per-server limits.
    pub limits: super::Limits,
    /// Rooms where the server publishes a composited grid of everyone (track [`GRID_TRACK`]).
    pub grid_rooms: Vec<String>,
    /// Broadcast rooms: only hosts publish at first; a token's speaker joins as a viewer
    /// and publishes once a host promotes it.
    pub broadcast_rooms: Vec<String>,
    /// How long a session whose WebSocket dropped waits to be resumed while its media
    /// still flows ([`DETACHED_SILENCE`] without media ends it sooner).
    pub resume_grace: Duration,
    /// Seed of the resume keys; `None` seeds from the operating system.
    pub seed: Option<u64>,
    /// Where the server records, and which rooms from their start; `None`: it does not
    /// record.
    pub record: Option<super::record::RecordConfig>,
}

/// A session whose WebSocket dropped and whose media has been silent this long is gone (a
/// process killed or a machine switched off): it leaves with `connection_lost`. While its
/// media flows it waits for a `resume` (a proxy or NAT that reset the connection), up to
/// [`RoomsConfig::resume_grace`].
pub const DETACHED_SILENCE: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
struct Member {
    /// Shared, so the engine can hold it per packet without allocating.
    room: std::sync::Arc<str>,
    info: ParticipantInfo,
}

#[derive(Clone, Debug)]
struct Slot {
    kind: TrackKind,
    mid: String,
    track: Option<String>,
}

#[derive(Debug)]
struct Session {
    url_room: Option<String>,
    member: Option<Member>,
    last_seen: Instant,
    auto_subscribe: bool,
    /// Track ids wanted, in order of arrival.
    wanted: Vec<String>,
    slots: Vec<Slot>,
    /// What the client shows, from its last `layout` message: one tile per video track
    /// (the tile's `participant` is the track id).
    layout: Option<Layout>,
    /// Its signal and data rates so far.
    buckets: super::limits::SessionBuckets,
    /// The key that resumes it over a new WebSocket (joined sessions).
    resume: Option<String>,
    /// When its WebSocket dropped, while nobody resumed it.
    detached: Option<Instant>,
}

impl Session {
    /// Its receive slots as the `slots` message gives them.
    fn track_slots(&self) -> Vec<TrackSlot> {
        self.slots
            .iter()
            .map(|s| TrackSlot {
                mid: s.mid.clone(),
                track: s.track.clone(),
            })
            .collect()
    }
}

#[derive(Debug)]
struct RoomTrack {
    info: TrackInfo,
    publisher: SessionId,
}

#[derive(Debug, Default)]
struct Room {
    members: BTreeMap<String, SessionId>,
    tracks: BTreeMap<String, RoomTrack>,
    /// Room track id → subscriber slots carrying it.
    carriers: BTreeMap<String, Vec<(SessionId, usize)>>,
    /// Viewers' raised hands, first raised first.
    hands: Vec<String>,
    /// Microphones a host muted: not forwarded until their publisher unmutes them.
    host_muted: BTreeSet<String>,
    /// The room is being recorded.
    recording: bool,
}

/// All rooms of one server.
#[derive(Debug)]
pub struct Rooms {
    config: RoomsConfig,
    sessions: BTreeMap<SessionId, Session>,
    rooms: BTreeMap<String, Room>,
    speakers: BTreeMap<String, ActiveSpeakers>,
    effects: VecDeque<Effect>,
    /// Resume key → session.
    by_resume: HashMap<String, SessionId>,
    rng: ChaCha20Rng,
}

impl Rooms {
    /// No rooms yet.
    pub fn new(config: RoomsConfig) -> Self {
        let rng = match config.seed {
            Some(seed) => ChaCha20Rng::seed_from_u64(seed),
            None => ChaCha20Rng::from_os_rng(),
        };
        Self {
            config,
            sessions: BTreeMap::new(),
            rooms: BTreeMap::new(),
            speakers: BTreeMap::new(),
            effects: VecDeque::new(),
            by_resume: HashMap::new(),
            rng,
        }
    }

    // ---- getters ----

    /// Room and identity of a joined session.
    pub fn member(&self, id: SessionId) -> Option<(&str, &str)> {
        let m = self.sessions.get(&id)?.member.as_ref()?;
        Some((&m.room, m.info.identity.as_str()))
    }

    /// The room of a joined session, shared (no allocation: for the per-packet path).
    pub fn member_room(&self, id: SessionId) -> Option<std::sync::Arc<str>> {
        Some(self.sessions.get(&id)?.member.as_ref()?.room.clone())
    }

    /// Subscriber slots carrying a track.
    pub fn carriers(&self, room: &str, track: &str) -> &[(SessionId, usize)] {
        self.rooms
            .get(room)
            .filter(|r| r.host_muted.is_empty() || !r.host_muted.contains(track))
            .and_then(|r| r.carriers.get(track))
            .map_or(&[], Vec::as_slice)
    }

    /// The track a subscriber slot carries now.
    pub fn slot_track(&self, id: SessionId, slot: usize) -> Option<&str> {
        self.sessions.get(&id)?.slots.get(slot)?.track.as_deref()
    }

    /// A published track of a room.
    pub fn track(&self, room: &str, track: &str) -> Option<&TrackInfo> {
        Some(&self.rooms.get(room)?.tracks.get(track)?.info)
    }

    /// The room's loudest participants now, loudest first.
    pub fn speakers(&self, room: &str, now: Instant) -> Vec<crate::signal::Speaker> {
        self.speakers
            .get(room)
            .map(|s| s.ranking(now))
            .unwrap_or_default()
    }

    /// The session publishing a track.
    pub fn publisher_of(&self, room: &str, track: &str) -> Option<SessionId> {
        Some(self.rooms.get(room)?.tracks.get(track)?.publisher)
    }

    /// Rooms open (with at least one participant).
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Participants joined, over all rooms.
    pub fn participant_count(&self) -> usize {
        self.rooms.values().map(|r| r.members.len()).sum()
    }

    /// The room's members who may publish, in join order, as the grid lays them out (with
    /// or without a camera track).
    pub fn publishers(&self, room: &str) -> Vec<crate::grid::layout::Person> {
        let Some(r) = self.rooms.get(room) else {
            return Vec::new();
        };
        let mut members: Vec<(&String, SessionId)> =
            r.members.iter().map(|(i, s)| (i, *s)).collect();
        // Session ids grow with joins: sort by them for join order.
        members.sort_by_key(|(_, s)| *s);
        members
            .into_iter()
            .filter_map(|(identity, sid)| {
                let info = &self.sessions.get(&sid)?.member.as_ref()?.info;
                info.role.can_publish().then(|| {
                    let has_video = r
                        .tracks
                        .contains_key(&TrackSource::Camera.track_id(identity));
                    crate::grid::layout::Person::of(info, has_video)
                })
            })
            .collect()
    }

    /// What a session's client shows, from its last `layout` message (`None` before one):
    /// one tile per video track, the tile's `participant` being the track id, as
    /// [`grid::plan`](crate::grid::plan) takes it.
    pub fn layout(&self, id: SessionId) -> Option<&Layout> {
        self.sessions.get(&id)?.layout.as_ref()
    }

    /// Whether the server composes a grid for this room.
    pub fn is_grid_room(&self, room: &str) -> bool {
        self.config.grid_rooms.iter().any(|r| r == room)
    }

    /// Whether this is a broadcast room (speakers wait to be let in).
    pub fn is_broadcast_room(&self, room: &str) -> bool {
        self.config.broadcast_rooms.iter().any(|r| r == room)
    }

    /// Whether `room` is being recorded.
    pub fn is_recording(&self, room: &str) -> bool {
        self.rooms.get(room).is_some_and(|r| r.recording)
    }

    /// Whether a session exists (joined or not).
    pub fn contains(&self, id: SessionId) -> bool {
        self.sessions.contains_key(&id)
    }

    // ---- inputs ----

    /// A WebSocket opened, naming `url_room` if its URL did.
    pub fn open(&mut self, id: SessionId, url_room: Option<String>, now: Instant) {
        self.sessions.insert(
            id,
            Session {
                url_room,
                member: None,
                last_seen: now,
                auto_subscribe: true,
                wanted: Vec::new(),
                slots: Vec::new(),
                layout: None,
                buckets: super::limits::SessionBuckets::new(&self.config.limits),
                resume: None,
                detached: None,
            },
        );
    }

    /// Something was heard from the session (a datagram): it is alive.
    pub fn heard(&mut self, id: SessionId, now: Instant) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.last_seen = now;
        }
    }

    /// A message from a client. Returns the WebRTC work it asks for, if the policy allows it.
    pub fn message(
        &mut self,
        id: SessionId,
        message: ClientMessage,
        now: Instant,
        unix_now: u64,
    ) -> Option<Work> {
        self.heard(id, now);
        let limits = &self.config.limits;
        let session = self.sessions.get_mut(&id)?;
        let over = if !session.buckets.signal(limits, now) {
            Some(format!(
                "more than {} signal messages a second: dropped",
                limits.signal_per_second
            ))
        } else if let ClientMessage::Data { message } = &message
            && !session.buckets.data(limits, now, message.payload.len())
        {
            Some(format!(
                "more than {} data messages or {} bytes a second: dropped",
                limits.data_per_second, limits.data_bytes_per_second
            ))
        } else {
            None
        };
        if let Some(reason) = over {
            if session.buckets.dropped(limits, now) {
                self.fail(id, ErrorCode::LimitReached, &reason);
            } else {
                self.fail(
                    id,
                    ErrorCode::Flooding,
                    "went on far past its limits: closed",
                );
            }
            return None;
        }
        let joined = session.member.is_some();
        match message {
            ClientMessage::Join {
                protocol,
                token,
                auto_subscribe,
                name,
            } => {
                if self.may_start(id, joined, protocol) {
                    match (verify(&self.config.secret, &token, unix_now), name) {
                        (Ok(_), Some(name)) if !valid_display_name(&name) => self.fail(
                            id,
                            ErrorCode::BadMessage,
                            "a display name is 1 to 64 characters without control characters",
                        ),
                        (Ok(mut claims), name) => {
                            if let Some(name) = name {
                                claims.name = name;
                            }
                            self.join(id, claims, auto_subscribe)
                        }
                        (Err(e), _) => self.fail(id, e.code(), &e.to_string()),
                    }
                }
                None
            }
            ClientMessage::Resume { protocol, resume } => {
                if self.may_start(id, joined, protocol) {
                    self.resume(id, &resume, now);
                }
                None
            }
            _ if !joined => {
                self.fail(id, ErrorCode::NotJoined, "the first message must be join");
                None
            }
            ClientMessage::Offer { pc, sdp, publish } => {
                let can_publish = self
                    .sessions
                    .get(&id)
                    .and_then(|s| s.member.as_ref())
                    .is_some_and(|m| m.info.role.can_publish());
                if pc == PeerRole::Publisher && !publish.is_empty() && !can_publish {
                    self.fail(id, ErrorCode::PermissionDenied, "viewers cannot publish");
                    return None;
                }
                Some(Work::Offer { pc, sdp, publish })
            }
            ClientMessage::Candidate { pc, candidate } => Some(Work::Candidate { pc, candidate }),
            ClientMessage::Subscribe { tracks } => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    for t in tracks {
                        if !s.wanted.contains(&t) {
                            s.wanted.push(t);
                        }
                    }
                }
                self.reassign(id);
                let limit = self.config.limits.subscriptions;
                if self
                    .sessions
                    .get(&id)
                    .is_some_and(|s| s.wanted.len() > limit)
                {
                    let reason = format!(
                        "{limit} tracks received at most: the rest wait until others are unsubscribed"
                    );
                    self.fail(id, ErrorCode::LimitReached, &reason);
                }
                None
            }
            ClientMessage::Unsubscribe { tracks } => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.wanted.retain(|t| !tracks.contains(t));
                }
                self.reassign(id);
                None
            }
            ClientMessage::Unpublish { tracks } => {
                self.unpublish(id, &tracks);
                None
            }
            ClientMessage::Mute { track, muted } => {
                self.mute(id, track, muted);
                None
            }
            ClientMessage::Data { message } => {
                self.data(id, message);
                None
            }
            ClientMessage::Layout(view) => {
                if !view.is_valid() {
                    let reason = format!(
                        "a layout's viewport and tiles are 1 to {MAX_TILE_SIDE} pixels a side, \
                         at most {MAX_TILES} tiles"
                    );
                    self.fail(id, ErrorCode::BadMessage, &reason);
                } else if let Some(s) = self.sessions.get_mut(&id) {
                    let tiles = view.tiles.into_iter().map(|t| Tile {
                        rect: Rect {
                            x: 0,
                            y: 0,
                            w: t.width,
                            h: t.height,
                        },
                        participant: t.track,
                        z: 0,
                        highlight: false,
                    });
                    s.layout = Some(Layout {
                        tiles: tiles.collect(),
                        pages: 1,
                    });
                }
                None
            }
            ClientMessage::Hand { raised } => {
                self.hand(id, raised);
                None
            }
            ClientMessage::LowerHand { identity } => {
                self.host_command(id, &identity, HostCommand::LowerHand);
                None
            }
            ClientMessage::Promote { identity } => {
                self.host_command(id, &identity, HostCommand::Promote);
                None
            }
            ClientMessage::Demote { identity } => {
                self.host_command(id, &identity, HostCommand::Demote);
                None
            }
            ClientMessage::MuteParticipant { identity } => {
                self.host_command(id, &identity, HostCommand::Mute);
                None
            }
            ClientMessage::Remove { identity } => {
                self.host_command(id, &identity, HostCommand::Remove);
                None
            }
            ClientMessage::Record { on } => {
                self.record(id, on);
                None
            }
            ClientMessage::Ping => {
                self.effects
                    .push_back(Effect::Send(id, ServerMessage::Pong));
                None
            }
            ClientMessage::Leave => {
                self.remove(id, LeaveReason::Left);
                None
            }
        }
    }

    /// The engine answered a publisher offer: announce its tracks, and give them to everyone
    /// who wants them.
    pub fn published(&mut self, id: SessionId, publish: &[PublishTrack]) {
        let Some((room, identity)) = self.member(id).map(|(r, i)| (r.to_owned(), i.to_owned()))
        else {
            return;
        };
        let mut new_tracks = Vec::new();
        if let Some(r) = self.rooms.get_mut(&room) {
            for p in publish {
                let track_id = p.source.track_id(&identity);
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    r.tracks.entry(track_id.clone())
                {
                    tracing::info!("session {id}: published {track_id} in room {room}");
                    let info = TrackInfo {
                        id: track_id,
                        participant: identity.clone(),
                        kind: p.kind,
                        source: p.source,
                        muted: false,
                    };
                    slot.insert(RoomTrack {
                        info: info.clone(),
                        publisher: id,
                    });
                    new_tracks.push(info);
                }
            }
        }
        for info in new_tracks {
            self.broadcast(
                &room,
                Some(id),
                ServerMessage::TrackPublished {
                    track: info.clone(),
                },
            );
            let others: Vec<SessionId> = self
                .rooms
                .get(&room)
                .map(|r| r.members.values().copied().filter(|s| *s != id).collect())
                .unwrap_or_default();
            for m in others {
                if let Some(s) = self.sessions.get_mut(&m)
                    && s.auto_subscribe
                    && !s.wanted.contains(&info.id)
                {
                    s.wanted.push(info.id.clone());
                }
                self.reassign(m);
            }
        }
    }

    /// The engine answered a subscriber offer that added receive slots (in m-line order).
    pub fn slots_added(&mut self, id: SessionId, slots: Vec<(TrackKind, String)>) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.slots.extend(slots.into_iter().map(|(kind, mid)| Slot {
                kind,
                mid,
                track: None,
            }));
        }
        self.reassign(id);
    }

    /// The session's subscribing connection was replaced: its slots are gone (new ones come
    /// with the new connection's offer).
    pub fn slots_reset(&mut self, id: SessionId) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        session.slots.clear();
        if let Some(room) = session
            .member
            .as_ref()
            .and_then(|m| self.rooms.get_mut(&*m.room))
        {
            for c in room.carriers.values_mut() {
                c.retain(|&(sid, _)| sid != id);
            }
        }
    }

    /// The audio level of a publisher's packet.
    pub fn audio_level(&mut self, id: SessionId, level_dbov: u8, now: Instant) {
        let Some((room, identity)) = self.member(id).map(|(r, i)| (r.to_owned(), i.to_owned()))
        else {
            return;
        };
        if self.rooms.get(&room).is_some_and(|r| {
            !r.host_muted.is_empty()
                && r.host_muted
                    .contains(&TrackSource::Microphone.track_id(&identity))
        }) {
            return; // a host muted it: not heard, not a speaker
        }
        self.speakers
            .entry(room)
            .or_insert_with(|| {
                ActiveSpeakers::new(Duration::from_millis(600), Duration::from_millis(300))
            })
            .observe(&identity, level_dbov, now);
    }

    /// The session's connection failed: it leaves.
    pub fn closed(&mut self, id: SessionId, reason: LeaveReason) {
        self.remove(id, reason);
    }

    /// The session's WebSocket closed (`code` when its task gave up on bad input). A
    /// joined session whose WebSocket merely dropped (`connection_lost`) is kept, detached,
    /// for a `resume` while its media flows; any other leaves.
    pub fn signal_closed(&mut self, id: SessionId, reason: LeaveReason, now: Instant) {
        let keep = reason == LeaveReason::ConnectionLost
            && !self.config.resume_grace.is_zero()
            && self
                .sessions
                .get(&id)
                .is_some_and(|s| s.member.is_some() && s.detached.is_none());
        if !keep {
            return self.remove(id, reason);
        }
        if let Some(s) = self.sessions.get_mut(&id) {
            tracing::info!("session {id}: signal lost; kept for a resume");
            s.detached = Some(now);
        }
    }

    /// Whether the session's WebSocket dropped and nobody resumed it yet (messages to it
    /// go nowhere).
    pub fn is_detached(&self, id: SessionId) -> bool {
        self.sessions.get(&id).is_some_and(|s| s.detached.is_some())
    }

    /// Sends an error; a fatal one also removes the session.
    pub fn fail(&mut self, id: SessionId, code: ErrorCode, reason: &str) {
        let who = self
            .member(id)
            .map_or_else(String::new, |(r, i)| format!(" ({i} in {r})"));
        tracing::info!("session {id}{who}: refused with {code}: {reason}");
        self.effects.push_back(Effect::Send(
            id,
            ServerMessage::Error {
                code,
                reason: reason.to_owned(),
            },
        ));
        if code.is_fatal() {
            let leave = match code {
                ErrorCode::Timeout => LeaveReason::Timeout,
                ErrorCode::Removed => LeaveReason::Removed,
                _ => LeaveReason::Error,
            };
            self.remove(id, leave);
        }
    }

    /// Periodic work: active-speaker announcements and silence timeouts.
    pub fn tick(&mut self, now: Instant) {
        let mut announcements = Vec::new();
        for (room, speakers) in &mut self.speakers {
            if let Some(ranking) = speakers.poll(now) {
                announcements.push((room.clone(), ranking));
            }
        }
        for (room, speakers) in announcements {
            self.broadcast(&room, None, ServerMessage::ActiveSpeaker { speakers });
        }
        let timeout = self.config.silence_timeout;
        let silent: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_seen) > timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            self.fail(
                id,
                ErrorCode::Timeout,
                "no message or media within the timeout",
            );
        }
        let grace = self.config.resume_grace;
        let gone: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.detached.is_some_and(|at| {
                    now.saturating_duration_since(at) > grace
                        || now.saturating_duration_since(s.last_seen) > DETACHED_SILENCE
                })
            })
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.remove(id, LeaveReason::ConnectionLost);
        }
    }

    // ---- output ----

    /// The next effect to carry out.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// All pending effects, in order.
    pub fn drain_effects(&mut self) -> Vec<Effect> {
        self.effects.drain(..).collect()
    }

    // ---- internals ----

    fn join(&mut self, id: SessionId, claims: super::token::Claims, auto_subscribe: bool) {
        if let Some(url_room) = self.sessions.get(&id).and_then(|s| s.url_room.clone())
            && url_room != claims.room
        {
            let reason = format!("token is for room {:?}, not {url_room:?}", claims.room);
            return self.fail(id, ErrorCode::WrongRoom, &reason);
        }
        let existing = self
            .rooms
            .get(&claims.room)
            .and_then(|r| r.members.get(&claims.identity))
            .copied();
        if let Some(old) = existing {
            self.effects.push_back(Effect::Send(
                old,
                ServerMessage::Error {
                    code: ErrorCode::Internal,
                    reason: "the same identity joined from elsewhere".into(),
                },
            ));
            self.remove(old, LeaveReason::Replaced);
        }
        if !self.rooms.contains_key(&claims.room) && self.rooms.len() >= self.config.limits.rooms {
            let reason = format!(
                "the server holds its limit of {} rooms",
                self.config.limits.rooms
            );
            return self.fail(id, ErrorCode::LimitReached, &reason);
        }
        let grid_room = self.is_grid_room(&claims.room);
        let broadcast_room = self.is_broadcast_room(&claims.room);
        let record_from_start = self
            .config
            .record
            .as_ref()
            .is_some_and(|r| r.records_from_start(&claims.room));
        let new_room = !self.rooms.contains_key(&claims.room);
        let room = self.rooms.entry(claims.room.clone()).or_default();
        if room.members.len() >= self.config.max_participants {
            return self.fail(id, ErrorCode::RoomFull, "the room is full");
        }
        if grid_room && !room.tracks.contains_key(GRID_TRACK) {
            room.tracks.insert(
                GRID_TRACK.to_owned(),
                RoomTrack {
                    info: TrackInfo {
                        id: GRID_TRACK.to_owned(),
                        participant: GRID_IDENTITY.to_owned(),
                        kind: TrackKind::Video,
                        source: TrackSource::Grid,
                        muted: false,
                    },
                    publisher: GRID_SESSION,
                },
            );
        }
        // In a broadcast room a speaker waits to be let in.
        let role = if claims.role == Role::Speaker && broadcast_room {
            Role::Viewer
        } else {
            claims.role
        };
        let info = ParticipantInfo {
            identity: claims.identity.clone(),
            name: claims.name.clone(),
            role,
        };
        let participants: Vec<ParticipantInfo> = room
            .members
            .values()
            .filter_map(|sid| self.sessions.get(sid))
            .filter_map(|s| s.member.as_ref().map(|m| m.info.clone()))
            .collect();
        let tracks: Vec<TrackInfo> = room.tracks.values().map(|t| t.info.clone()).collect();
        room.members.insert(claims.identity.clone(), id);
        tracing::info!(
            "session {id}: {} ({}, {}) joined room {}",
            claims.identity,
            claims.name,
            role,
            claims.room
        );
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        session.member = Some(Member {
            room: claims.room.as_str().into(),
            info: info.clone(),
        });
        session.auto_subscribe = auto_subscribe;
        if auto_subscribe {
            session.wanted = tracks.iter().map(|t| t.id.clone()).collect();
        }
        let key: String = (0..22)
            .map(|_| RESUME_ALPHABET[self.rng.random_range(0..RESUME_ALPHABET.len())] as char)
            .collect();
        session.resume = Some(key.clone());
        self.by_resume.insert(key.clone(), id);
        self.effects.push_back(Effect::Send(
            id,
            ServerMessage::Joined {
                protocol: PROTOCOL_VERSION,
                room: claims.room.clone(),
                participant: info.clone(),
                participants,
                tracks,
                resume: Some(key),
            },
        ));
        if new_room && record_from_start {
            self.set_recording(&claims.room, true, None);
        } else if self.rooms.get(&claims.room).is_some_and(|r| r.recording) {
            self.effects.push_back(Effect::Send(
                id,
                ServerMessage::RecordingStarted { by: None },
            ));
        }
        let host = info.role == Role::Host;
        self.broadcast(
            &claims.room,
            Some(id),
            ServerMessage::ParticipantJoined { participant: info },
        );
        if let Some(queue) = self
            .rooms
            .get(&claims.room)
            .filter(|r| host && !r.hands.is_empty())
            .map(|r| r.hands.clone())
        {
            self.effects
                .push_back(Effect::Send(id, ServerMessage::Hands { queue }));
        }
        self.reassign(id);
    }

    /// Whether session `id` may start with a `join` or `resume` in `protocol`: not joined
    /// yet, and a protocol this server speaks; else it is refused.
    fn may_start(&mut self, id: SessionId, joined: bool, protocol: u32) -> bool {
        if joined {
            self.fail(id, ErrorCode::AlreadyJoined, "already joined");
            false
        } else if protocol != PROTOCOL_VERSION {
            let reason =
                format!("protocol {protocol} unsupported; this server speaks {PROTOCOL_VERSION}");
            self.fail(id, ErrorCode::UnsupportedVersion, &reason);
            false
        } else {
            true
        }
    }

    /// Session `id` (a new WebSocket, not joined) asks to take over the session holding
    /// `key`: that one's WebSocket is now `id`'s (the engine is told with
    /// [`Effect::Resume`]), and it gets the room as it is now and what the client may have
    /// missed (slots, slots wanted, hands). `id` itself is forgotten.
    fn resume(&mut self, id: SessionId, key: &str, now: Instant) {
        let Some(&old) = self.by_resume.get(key) else {
            return self.fail(
                id,
                ErrorCode::SessionGone,
                "no session to resume: join again",
            );
        };
        self.sessions.remove(&id);
        let Some(session) = self.sessions.get_mut(&old) else {
            return;
        };
        session.detached = None;
        session.last_seen = now;
        let Some(member) = session.member.clone() else {
            return;
        };
        tracing::info!(
            "session {old}: {} resumed over session {id}",
            member.info.identity
        );
        let slots = session.track_slots();
        self.effects.push_back(Effect::Resume {
            session: old,
            via: id,
        });
        let Some(room) = self.rooms.get(&*member.room) else {
            return;
        };
        let participants: Vec<ParticipantInfo> = room
            .members
            .values()
            .filter(|sid| **sid != old)
            .filter_map(|sid| self.sessions.get(sid))
            .filter_map(|s| s.member.as_ref().map(|m| m.info.clone()))
            .collect();
        let tracks = room.tracks.values().map(|t| t.info.clone()).collect();
        let hands =
            (member.info.role == Role::Host && !room.hands.is_empty()).then(|| room.hands.clone());
        let recording = room.recording;
        let mut resent = vec![ServerMessage::Resumed {
            participant: member.info,
            participants,
            tracks,
        }];
        if !slots.is_empty() {
            resent.push(ServerMessage::Slots { slots });
        }
        if let Some(queue) = hands {
            resent.push(ServerMessage::Hands { queue });
        }
        if recording {
            resent.push(ServerMessage::RecordingStarted { by: None });
        }
        for m in resent {
            self.effects.push_back(Effect::Send(old, m));
        }
        // Slots it may not have heard it needs (`renegotiate` again).
        self.reassign(old);
    }

    fn broadcast(&mut self, room: &str, except: Option<SessionId>, message: ServerMessage) {
        if let Some(r) = self.rooms.get(room) {
            for sid in r.members.values() {
                if Some(*sid) != except {
                    self.effects.push_back(Effect::Send(*sid, message.clone()));
                }
            }
        }
    }

    /// Recomputes which slot carries which track for one subscriber, tells it, and asks for
    /// more slots when needed.
    fn reassign(&mut self, id: SessionId) {
        let Some(room_name) = self.member_room(id) else {
            return;
        };
        // In a broadcast room every new receiving offer brings one idle slot of each kind
        // beyond what is wanted: a center let in then reaches everyone with a `slots`
        // message, not an offer and answer per viewer. Measured with `madang bench sfu`, 520
        // viewers: without it the 520 new offers held the server for ~1.2 s before anyone
        // received the promoted center.
        let spare = u32::from(self.is_broadcast_room(&room_name));
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&*room_name) else {
            return;
        };
        session.wanted.retain(|t| room.tracks.contains_key(t));
        // The first subscriptions get the slots; those past the limit wait for one.
        let wanted: Vec<(String, TrackKind)> = session
            .wanted
            .iter()
            .filter_map(|t| room.tracks.get(t).map(|rt| (t.clone(), rt.info.kind)))
            .take(self.config.limits.subscriptions)
            .collect();
        let mut views: Vec<SlotView> = session
            .slots
            .iter()
            .map(|s| SlotView {
                kind: s.kind,
                track: s.track.clone(),
            })
            .collect();
        let result = assign(&mut views, &wanted);
        for &i in &result.changed {
            if let Some(old) = session.slots[i].track.take()
                && let Some(c) = room.carriers.get_mut(&old)
            {
                c.retain(|&(sid, idx)| !(sid == id && idx == i));
            }
            session.slots[i].track = views[i].track.clone();
            if let Some(new) = &views[i].track {
                room.carriers.entry(new.clone()).or_default().push((id, i));
            }
        }
        if !result.changed.is_empty() {
            let slots = session.track_slots();
            self.effects
                .push_back(Effect::Send(id, ServerMessage::Slots { slots }));
        }
        if let Some((audio, video)) = result.need_more {
            self.effects.push_back(Effect::Send(
                id,
                ServerMessage::Renegotiate {
                    audio: audio + spare,
                    video: video + spare,
                },
            ));
        }
    }

    /// Removes tracks `id` publishes (others' tracks are ignored), tells the room, and lets
    /// every subscriber's slots be reassigned.
    fn unpublish(&mut self, id: SessionId, tracks: &[String]) {
        let Some(room_name) = self.member(id).map(|(r, _)| r.to_owned()) else {
            return;
        };
        let removed = self.drop_tracks(&room_name, |tid, t| {
            t.publisher == id && tracks.iter().any(|x| x == tid)
        });
        for track in &removed {
            tracing::info!("session {id}: unpublished {track} in room {room_name}");
        }
        if !removed.is_empty() {
            self.reassign_room(&room_name);
        }
    }

    /// Removes the tracks of `room_name` that `gone` picks and tells the room each one is
    /// unpublished; returns their ids.
    fn drop_tracks(
        &mut self,
        room_name: &str,
        gone: impl Fn(&str, &RoomTrack) -> bool,
    ) -> Vec<String> {
        let mut removed = Vec::new();
        if let Some(room) = self.rooms.get_mut(room_name) {
            room.tracks.retain(|tid, t| {
                let drop = gone(tid, t);
                if drop {
                    removed.push(tid.clone());
                }
                !drop
            });
            for track in &removed {
                room.host_muted.remove(track);
            }
        }
        for track in &removed {
            self.broadcast(
                room_name,
                None,
                ServerMessage::TrackUnpublished {
                    track: track.clone(),
                },
            );
        }
        removed
    }

    /// Reassigns every member's receive slots in `room_name` (after tracks went away).
    fn reassign_room(&mut self, room_name: &str) {
        let members: Vec<SessionId> = self
            .rooms
            .get(room_name)
            .map(|r| r.members.values().copied().collect())
            .unwrap_or_default();
        for m in members {
            self.reassign(m);
        }
    }

    fn mute(&mut self, id: SessionId, track: String, muted: bool) {
        let Some(room) = self.member(id).map(|(r, _)| r.to_owned()) else {
            return;
        };
        let owned = self.rooms.get_mut(&room).is_some_and(|r| {
            let Some(t) = r.tracks.get_mut(&track).filter(|t| t.publisher == id) else {
                return false;
            };
            t.info.muted = muted;
            if !muted {
                // Unmuted by its owner: a host's mute ends too.
                r.host_muted.remove(&track);
            }
            true
        });
        if owned {
            self.broadcast(&room, Some(id), ServerMessage::TrackMuted { track, muted });
        }
    }

    fn data(&mut self, id: SessionId, mut message: DataMessage) {
        let Some((room, identity)) = self.member(id).map(|(r, i)| (r.to_owned(), i.to_owned()))
        else {
            return;
        };
        message.from = identity;
        let Some(r) = self.rooms.get(&room) else {
            return;
        };
        for (member, sid) in &r.members {
            if *sid == id || (!message.to.is_empty() && !message.to.contains(member)) {
                continue;
            }
            self.effects.push_back(Effect::Send(
                *sid,
                ServerMessage::Data {
                    message: message.clone(),
                },
            ));
        }
    }

    /// Removes a session: its tracks, its place in the room; tells the others.
    fn remove(&mut self, id: SessionId, reason: LeaveReason) {
        let Some(session) = self.sessions.remove(&id) else {
            return;
        };
        if let Some(key) = &session.resume {
            self.by_resume.remove(key);
        }
        self.effects.push_back(Effect::Close(id));
        let Some(member) = session.member else {
            return;
        };
        let room_name = member.room.clone();
        tracing::info!(
            "session {id}: {} left room {room_name} ({})",
            member.info.identity,
            reason.as_str()
        );
        if let Some(room) = self.rooms.get_mut(&*room_name) {
            if room.members.get(&member.info.identity) == Some(&id) {
                room.members.remove(&member.info.identity);
            }
            for c in room.carriers.values_mut() {
                c.retain(|(sid, _)| *sid != id);
            }
        }
        if let Some(s) = self.speakers.get_mut(&*room_name) {
            s.remove(&member.info.identity);
        }
        self.take_hand(&room_name, &member.info.identity);
        let removed_tracks = self.drop_tracks(&room_name, |_, t| t.publisher == id);
        self.broadcast(
            &room_name,
            None,
            ServerMessage::ParticipantLeft {
                identity: member.info.identity.clone(),
                reason,
            },
        );
        let empty = self
            .rooms
            .get(&*room_name)
            .is_none_or(|r| r.members.is_empty());
        if empty {
            if self.rooms.remove(&*room_name).is_some_and(|r| r.recording) {
                self.effects.push_back(Effect::Record {
                    room: room_name.to_string(),
                    on: false,
                });
            }
            self.speakers.remove(&*room_name);
        } else if !removed_tracks.is_empty() {
            self.reassign_room(&room_name);
        }
    }
}

mod talkback;
use talkback::HostCommand;

#[cfg(test)]
mod tests;
