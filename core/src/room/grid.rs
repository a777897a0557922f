//! One composited picture of a room on the client: the others' decoded video laid out with
//! [`grid::layout`](crate::grid::layout) and drawn by a [`Compositor`], kept current from the
//! room's events. For applications that want to show the whole room rather than handle each
//! participant's frames (a senior center's TV, a simple C program).
//!
//! ```no_run
//! # async fn run(mut room: madang::room::Room) -> Result<(), madang::media::MediaError> {
//! use madang::grid::layout::Mode;
//! use madang::room::GridView;
//! let mut grid = GridView::for_room(&room, 1280, 720, Mode::Gallery)?;
//! while let Some(event) = room.next_event().await {
//!     if let Some(other) = grid.absorb(event) {
//!         println!("{other:?}"); // everything but the pictures
//!     }
//!     let canvas = grid.compose(0); // show it
//! #   let _ = canvas;
//! }
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};

use super::{Room, RoomEvent};
use crate::grid::compose::Compositor;
use crate::grid::layout::{Layout, LayoutInput, Mode, Person, Viewport};
use crate::grid::plan::view_layout;
use crate::media::{MediaError, VideoFrame};
use crate::signal::{ParticipantInfo, TrackInfo, TrackKind, ViewLayout};

/// A room's participants composed into one canvas.
#[derive(Debug)]
pub struct GridView {
    compositor: Compositor,
    mode: Mode,
    local: String,
    /// Everyone else, in join order.
    people: Vec<Person>,
    /// Published video tracks: id → (owner, muted).
    video: HashMap<String, (String, bool)>,
    /// Videos the server paused towards this participant.
    paused: HashSet<String>,
    levels: HashMap<String, f32>,
}

impl GridView {
    /// A `width`×`height` canvas (even, 16..=8192) showing everyone but `local`.
    pub fn new(width: u32, height: u32, mode: Mode, local: &str) -> Result<Self, MediaError> {
        Ok(Self {
            compositor: Compositor::new(width, height, Default::default())?,
            mode,
            local: local.to_owned(),
            people: Vec::new(),
            video: HashMap::new(),
            paused: HashSet::new(),
            levels: HashMap::new(),
        })
    }

    /// A view of `room` with the participants and tracks present when it was joined.
    pub fn for_room(room: &Room, width: u32, height: u32, mode: Mode) -> Result<Self, MediaError> {
        let mut view = Self::new(width, height, mode, &room.local().identity)?;
        for p in room.initial_participants() {
            view.join(p);
        }
        for t in room.initial_tracks() {
            view.track(t);
        }
        Ok(view)
    }

    /// Changes the arrangement.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// Changes the canvas size (even, 16..=8192).
    pub fn set_viewport(&mut self, width: u32, height: u32) -> Result<(), MediaError> {
        self.compositor.resize(width, height)
    }

    /// The participants shown, in join order.
    pub fn people(&self) -> &[Person] {
        &self.people
    }

    /// Takes in one room event. Pictures are held for the canvas and consumed (`None`);
    /// every other event updates the view and is handed back.
    pub fn absorb(&mut self, event: RoomEvent) -> Option<RoomEvent> {
        match &event {
            RoomEvent::VideoFrame { participant, .. } if participant != &self.local => {
                if let RoomEvent::VideoFrame {
                    participant, frame, ..
                } = event
                {
                    self.compositor.update(&participant, frame);
                }
                return None;
            }
            RoomEvent::ParticipantJoined(p) => self.join(p),
            RoomEvent::ParticipantLeft { identity, .. } => {
                self.people.retain(|p| &p.id != identity);
                self.video.retain(|_, (owner, _)| owner != identity);
                self.levels.remove(identity);
                self.compositor.remove(identity);
            }
            RoomEvent::TrackPublished(t) => self.track(t),
            RoomEvent::TrackUnpublished(id) => self.untrack(id),
            RoomEvent::TrackMuted { track, muted } => {
                if let Some((owner, m)) = self.video.get_mut(track) {
                    *m = *muted;
                    let owner = owner.clone();
                    self.refresh(&owner);
                }
            }
            RoomEvent::VideoPaused { track, paused } => {
                if *paused {
                    self.paused.insert(track.clone());
                } else {
                    self.paused.remove(track);
                }
                if let Some((owner, _)) = self.video.get(track) {
                    let owner = owner.clone();
                    self.refresh(&owner);
                }
            }
            RoomEvent::RoleChanged { identity, role } => {
                if let Some(p) = self.people.iter_mut().find(|p| &p.id == identity) {
                    p.role = *role;
                }
            }
            RoomEvent::Hands(queue) => {
                for p in &mut self.people {
                    p.hand_raised = queue.contains(&p.id);
                }
            }
            RoomEvent::ActiveSpeaker(speakers) => {
                self.levels.clear();
                for p in &mut self.people {
                    p.speaker_rank = None;
                }
                for (rank, s) in speakers.iter().enumerate() {
                    self.levels.insert(s.identity.clone(), s.level);
                    if let Some(p) = self.people.iter_mut().find(|p| p.id == s.identity) {
                        p.speaker_rank = Some(rank as u32);
                    }
                }
            }
            _ => {}
        }
        Some(event)
    }

    /// The current layout of the canvas.
    pub fn layout(&self) -> Layout {
        let canvas = self.compositor.canvas();
        let viewport = Viewport::new(canvas.width(), canvas.height());
        Layout::compute(&LayoutInput::new(&self.people, viewport, self.mode))
    }

    /// What the canvas shows, as the server takes it ([`Room::set_layout`]): each video
    /// track's tile, so that the server forwards no larger a layer than the tile needs and
    /// nothing of those not on the canvas.
    pub fn view_layout(&self) -> ViewLayout {
        let canvas = self.compositor.canvas();
        let viewport = Viewport::new(canvas.width(), canvas.height());
        let mut tracks: Vec<(&String, &String)> = self
            .video
            .iter()
            .map(|(track, (owner, _))| (owner, track))
            .collect();
        tracks.sort_unstable();
        view_layout(&self.layout(), viewport, |participant| {
            tracks
                .iter()
                .filter(|(owner, _)| *owner == participant)
                .map(|(_, track)| (*track).clone())
                .collect()
        })
    }

    /// Draws the room as it is now, the canvas's pts set to `pts_us`.
    pub fn compose(&mut self, pts_us: i64) -> &VideoFrame {
        let layout = self.layout();
        self.compositor
            .compose(&layout, &self.people, &self.levels, pts_us)
    }

    fn join(&mut self, p: &ParticipantInfo) {
        if p.identity == self.local || self.people.iter().any(|q| q.id == p.identity) {
            return;
        }
        self.people.push(Person::of(p, false));
        self.refresh(&p.identity);
    }

    fn track(&mut self, t: &TrackInfo) {
        if t.kind == TrackKind::Video {
            self.video
                .insert(t.id.clone(), (t.participant.clone(), t.muted));
            self.refresh(&t.participant);
        }
    }

    fn untrack(&mut self, id: &str) {
        self.paused.remove(id);
        if let Some((owner, _)) = self.video.remove(id) {
            self.refresh(&owner);
        }
    }

    /// Recomputes whether `identity` has video to show; forgets its held picture when not.
    fn refresh(&mut self, identity: &str) {
        let has_video = self.video.iter().any(|(track, (owner, muted))| {
            owner == identity && !muted && !self.paused.contains(track)
        });
        let paused = self.video.iter().any(|(track, (owner, muted))| {
            owner == identity && !muted && self.paused.contains(track)
        });
        if let Some(p) = self.people.iter_mut().find(|p| p.id == identity) {
            p.has_video = has_video;
            p.video_paused = paused && !has_video;
        }
        if !has_video {
            self.compositor.remove(identity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::TestPattern;
    use crate::signal::{LeaveReason, Role, Speaker, TrackSource};

    fn info(id: &str) -> ParticipantInfo {
        ParticipantInfo {
            identity: id.into(),
            name: format!("{id} office"),
            role: Role::Speaker,
        }
    }

    fn camera(id: &str) -> TrackInfo {
        TrackInfo {
            id: format!("{id}/camera"),
            participant: id.into(),
            kind: TrackKind::Video,
            source: TrackSource::Camera,
            muted: false,
        }
    }

    #[test]
    fn follows_the_room_and_draws_each_picture_in_its_tile() {
        let mut view = GridView::new(640, 360, Mode::Gallery, "me").unwrap();
        for id in ["me", "jongno", "gangnam"] {
            assert!(
                view.absorb(RoomEvent::ParticipantJoined(info(id)))
                    .is_some()
            );
        }
        assert_eq!(view.people().len(), 2, "the local participant is not shown");
        assert!(view.people().iter().all(|p| !p.has_video));
        view.absorb(RoomEvent::TrackPublished(camera("jongno")));
        assert!(view.people()[0].has_video);

        let mut pattern = TestPattern::new(320, 180).unwrap();
        let frame = pattern.next_frame(0);
        let consumed = view.absorb(RoomEvent::VideoFrame {
            participant: "jongno".into(),
            track: "jongno/camera".into(),
            frame: frame.clone(),
        });
        assert!(consumed.is_none(), "pictures go into the canvas");
        let layout = view.layout();
        assert_eq!(layout.tiles.len(), 2);
        let tile = layout
            .tiles
            .iter()
            .find(|t| t.participant == "jongno")
            .unwrap();
        let canvas = view.compose(42);
        assert_eq!(canvas.pts_us(), 42);
        // The tile holds the picture: its mean luma matches the source's, unlike the
        // placeholder next to it.
        let mean = |f: &VideoFrame, x: u32, y: u32, w: u32, h: u32| {
            let mut sum = 0u64;
            for r in y..y + h {
                sum += f.row(0, r as usize)[x as usize..(x + w) as usize]
                    .iter()
                    .map(|&v| v as u64)
                    .sum::<u64>();
            }
            sum as f64 / (w * h) as f64
        };
        let source = mean(&frame, 0, 0, 320, 180);
        let r = tile.rect;
        let drawn = mean(canvas, r.x + 2, r.y + 2, r.w - 4, r.h - 4);
        assert!((source - drawn).abs() < 6.0, "{source} vs {drawn}");

        view.absorb(RoomEvent::ActiveSpeaker(vec![Speaker {
            identity: "gangnam".into(),
            level: 0.5,
        }]));
        assert!(
            view.layout()
                .tiles
                .iter()
                .any(|t| t.participant == "gangnam" && t.highlight)
        );

        // Paused by the server: the placeholder, until it resumes.
        view.absorb(RoomEvent::VideoPaused {
            track: "jongno/camera".into(),
            paused: true,
        });
        assert!(!view.people()[0].has_video);
        assert!(view.people()[0].video_paused, "the placeholder says why");
        view.absorb(RoomEvent::VideoPaused {
            track: "jongno/camera".into(),
            paused: false,
        });
        assert!(view.people()[0].has_video);
        view.absorb(RoomEvent::TrackMuted {
            track: "jongno/camera".into(),
            muted: true,
        });
        assert!(!view.people()[0].has_video);
        // What the server is told: jongno's camera at its tile's size; gangnam has no
        // video, so no track of it.
        let told = view.view_layout();
        assert_eq!((told.width, told.height), (640, 360));
        let jongno = view
            .layout()
            .tiles
            .into_iter()
            .find(|t| t.participant == "jongno")
            .unwrap();
        assert_eq!(
            told.tiles,
            [crate::signal::TileSize {
                track: "jongno/camera".into(),
                width: jongno.rect.w,
                height: jongno.rect.h,
            }]
        );
        view.absorb(RoomEvent::ParticipantLeft {
            identity: "jongno".into(),
            reason: LeaveReason::Left,
        });
        assert_eq!(view.layout().tiles.len(), 1);
        assert!(view.view_layout().tiles.is_empty());
        view.set_viewport(320, 180).unwrap();
        assert_eq!(view.compose(0).width(), 320);
        assert!(view.set_viewport(15, 180).is_err());
    }
}
