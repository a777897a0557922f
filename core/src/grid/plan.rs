//! What each subscription needs, given the layout: a 320×180 tile never needs a 720p stream,
//! and a participant not on screen needs no video at all. Pure.
//!
//! ```
//! use madang::grid::layout::{Layout, LayoutInput, Mode, Person, Viewport};
//! use madang::grid::plan::{plan, STANDARD_LAYERS};
//! let people: Vec<Person> = (0..24).map(|i| Person::new(&format!("office-{i}"))).collect();
//! let layout = Layout::compute(&LayoutInput::new(&people, Viewport::new(1920, 1080), Mode::Gallery));
//! let wants = plan(&layout, &people, &STANDARD_LAYERS);
//! // 24 tiles of 377×212 on a 1080p screen: the 640×360 layer is enough for each.
//! assert!(wants.iter().all(|w| w.layer == Some((640, 360))));
//! ```

use super::layout::{Layout, Person, Viewport};
use crate::signal::{TileSize, ViewLayout};

/// The picture sizes a publisher may offer (simulcast layers), smallest first.
pub const STANDARD_LAYERS: [(u32, u32); 4] = [(320, 180), (640, 360), (1280, 720), (1920, 1080)];

/// What one participant's video subscription should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    /// Identity.
    pub participant: String,
    /// Size of its largest tile in pixels, `None` when it is not on screen.
    pub tile: Option<(u32, u32)>,
    /// The smallest layer at least as large as the tile (the largest layer when none is);
    /// `None` when not on screen: pause the subscription.
    pub layer: Option<(u32, u32)>,
}

/// One [`Want`] per person, in input order.
pub fn plan(layout: &Layout, people: &[Person], layers: &[(u32, u32)]) -> Vec<Want> {
    people
        .iter()
        .map(|p| {
            let tile = layout
                .tiles
                .iter()
                .filter(|t| t.participant == p.id)
                .map(|t| (t.rect.w, t.rect.h))
                .max_by_key(|(w, h)| *w as u64 * *h as u64);
            let layer = tile.and_then(|(w, h)| {
                layers
                    .iter()
                    .copied()
                    .find(|&(lw, lh)| lw >= w && lh >= h)
                    .or_else(|| {
                        layers
                            .iter()
                            .copied()
                            .max_by_key(|(lw, lh)| *lw as u64 * *lh as u64)
                    })
            });
            Want {
                participant: p.id.clone(),
                tile,
                layer,
            }
        })
        .collect()
}

/// What a client tells the server it shows (the `layout` message): the tiles of `layout` in
/// `viewport`, each given to the video tracks `videos_of` names for its participant (a
/// participant without video needs none). The server runs [`plan`] on it.
pub fn view_layout(
    layout: &Layout,
    viewport: Viewport,
    videos_of: impl Fn(&str) -> Vec<String>,
) -> ViewLayout {
    ViewLayout {
        width: viewport.width,
        height: viewport.height,
        tiles: layout
            .tiles
            .iter()
            .flat_map(|t| {
                videos_of(&t.participant).into_iter().map(|track| TileSize {
                    track,
                    width: t.rect.w.max(1),
                    height: t.rect.h.max(1),
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::layout::{LayoutInput, Mode, Viewport};

    #[test]
    fn speaker_view_wants_one_large_stream_and_small_ones() {
        // Five: the speaker and a filmstrip of four, which is what fits below at 1080p.
        let mut people: Vec<Person> = (0..5).map(|i| Person::new(&format!("p{i}"))).collect();
        people[2].speaker_rank = Some(0);
        let layout = Layout::compute(&LayoutInput::new(
            &people,
            Viewport::new(1920, 1080),
            Mode::Speaker,
        ));
        let wants = plan(&layout, &people, &STANDARD_LAYERS);
        assert_eq!(wants[2].layer, Some((1920, 1080)));
        for (i, w) in wants.iter().enumerate() {
            if i != 2 {
                assert_eq!(w.layer, Some((640, 360)), "{w:?}");
            }
        }
    }

    #[test]
    fn people_off_screen_want_nothing() {
        let people: Vec<Person> = (0..30).map(|i| Person::new(&format!("p{i}"))).collect();
        let layout = Layout::compute(&LayoutInput::new(
            &people,
            Viewport::new(1280, 720),
            Mode::Gallery,
        ));
        let wants = plan(&layout, &people, &STANDARD_LAYERS);
        assert!(wants[..25].iter().all(|w| w.layer == Some((320, 180))));
        assert!(
            wants[25..]
                .iter()
                .all(|w| w.tile.is_none() && w.layer.is_none())
        );
    }

    #[test]
    fn a_view_layout_gives_each_video_track_its_participants_tile() {
        let people: Vec<Person> = (0..3).map(|i| Person::new(&format!("p{i}"))).collect();
        let viewport = Viewport::new(1280, 720);
        let layout = Layout::compute(&LayoutInput::new(&people, viewport, Mode::Gallery));
        // p1 has no video; p2 a camera and a screen.
        let view = view_layout(&layout, viewport, |p| match p {
            "p0" => vec!["p0/camera".into()],
            "p2" => vec!["p2/camera".into(), "p2/screen".into()],
            _ => Vec::new(),
        });
        assert!(view.is_valid());
        assert_eq!((view.width, view.height), (1280, 720));
        let tracks: Vec<&str> = view.tiles.iter().map(|t| t.track.as_str()).collect();
        assert_eq!(tracks, ["p0/camera", "p2/camera", "p2/screen"]);
        let tile = &layout.tiles[0].rect;
        assert_eq!(
            (view.tiles[0].width, view.tiles[0].height),
            (tile.w, tile.h)
        );
    }

    #[test]
    fn tiles_larger_than_every_layer_take_the_largest() {
        let people = vec![Person::new("solo")];
        let layout = Layout::compute(&LayoutInput::new(
            &people,
            Viewport::new(3840, 2160),
            Mode::Gallery,
        ));
        assert_eq!(
            plan(&layout, &people, &STANDARD_LAYERS)[0].layer,
            Some((1920, 1080))
        );
    }
}
