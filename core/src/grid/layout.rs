//! Where each participant goes on a screen: pure and deterministic. The same input gives the
//! same tiles on every face (Rust, C, browser).
//!
//! ```
//! use madang::grid::layout::{Layout, LayoutInput, Mode, Tile, Viewport, Person};
//! let people: Vec<Person> = (0..24).map(|i| Person::new(&format!("office-{i}"))).collect();
//! let layout = Layout::compute(&LayoutInput::new(&people, Viewport::new(1920, 1080), Mode::Gallery));
//! assert_eq!(layout.tiles.len(), 24);
//! assert_eq!(layout.pages, 1);
//! ```

use serde::{Deserialize, Serialize};

use crate::signal::{ParticipantInfo, Role};

/// The screen area to fill, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewport {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl Viewport {
    /// A `width`×`height` viewport.
    pub fn new(width: u32, height: u32) -> Self {
        Self { width, height }
    }
}

/// A rectangle in pixels, origin top-left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    /// Whether two rectangles share any pixel.
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }

    /// Whether this rectangle lies inside a viewport.
    pub fn inside(&self, v: Viewport) -> bool {
        self.x + self.w <= v.width && self.y + self.h <= v.height
    }

    /// The largest rectangle of aspect `aw`:`ah` centred in this one.
    fn fit(&self, aw: u32, ah: u32) -> Rect {
        let (aw, ah) = (aw.max(1) as u64, ah.max(1) as u64);
        let (w, h) = (self.w as u64, self.h as u64);
        let (fw, fh) = if w * ah <= h * aw {
            (w, w * ah / aw)
        } else {
            (h * aw / ah, h)
        };
        Rect {
            x: self.x + ((w - fw) / 2) as u32,
            y: self.y + ((h - fh) / 2) as u32,
            w: fw as u32,
            h: fh as u32,
        }
    }
}

/// Initials of a display name: the first letters of its first two words.
pub fn initials(name: &str) -> String {
    name.split_whitespace()
        .filter_map(|w| w.chars().next())
        .take(2)
        .flat_map(char::to_uppercase)
        .collect()
}

/// One participant as the layout sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// Identity.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Whether a video track is there to show (else a placeholder tile).
    pub has_video: bool,
    /// Active-speaker rank: 0 is the loudest now; `None` when silent.
    pub speaker_rank: Option<u32>,
    /// Pinned by the viewer (spotlight).
    pub pinned: bool,
    /// Role in the room.
    pub role: Role,
    /// Raised a hand to talk back (broadcast mode shows these beside the host).
    pub hand_raised: bool,
    /// Aspect ratio of the source picture, width and height (16:9 by default).
    pub aspect: (u32, u32),
    /// The server stopped forwarding its video because the viewer's downlink cannot carry
    /// it: the placeholder says "low bandwidth".
    #[serde(default)]
    pub video_paused: bool,
}

impl Person {
    /// A participant of the room with its name and role; `has_video` as given, 16:9.
    pub fn of(info: &ParticipantInfo, has_video: bool) -> Self {
        Self {
            name: info.name.clone(),
            role: info.role,
            has_video,
            ..Self::new(&info.identity)
        }
    }

    /// A speaker with video, 16:9, named after its identity.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: id.to_owned(),
            has_video: true,
            speaker_rank: None,
            pinned: false,
            role: Role::Speaker,
            hand_raised: false,
            aspect: (16, 9),
            video_paused: false,
        }
    }
}

/// How to arrange the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Equal tiles in rows and columns.
    Gallery,
    /// The active speaker large, everyone else in a filmstrip below.
    Speaker,
    /// Pinned participants large, the others in a filmstrip below.
    Spotlight,
    /// The host large; participants talking back (raised hand or speaker role) beside it;
    /// viewers not shown.
    Broadcast,
}

/// Everything a layout depends on.
#[derive(Clone, Debug)]
pub struct LayoutInput<'a> {
    /// Participants in join order (the order keeps tiles stable as people come and go).
    pub people: &'a [Person],
    /// The area to fill.
    pub viewport: Viewport,
    /// The arrangement.
    pub mode: Mode,
    /// Most tiles on one gallery page.
    pub page_size: usize,
    /// Which page (gallery), from 0.
    pub page: usize,
    /// Gallery: bring the active speaker onto the first page (swapping with the last tile
    /// there) instead of leaving everyone in place.
    pub speaker_to_first_page: bool,
    /// Pixels between tiles.
    pub gap: u32,
}

impl<'a> LayoutInput<'a> {
    /// Defaults: 25 tiles a page, page 0, 4-pixel gaps, nobody moved for speaking.
    pub fn new(people: &'a [Person], viewport: Viewport, mode: Mode) -> Self {
        Self {
            people,
            viewport,
            mode,
            page_size: 25,
            page: 0,
            speaker_to_first_page: false,
            gap: 4,
        }
    }
}

/// One participant's place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tile {
    /// Where its picture goes (already at the source's aspect).
    pub rect: Rect,
    /// Identity.
    pub participant: String,
    /// Drawing order, 0 at the bottom.
    pub z: u32,
    /// Border it: the active speaker.
    pub highlight: bool,
}

/// A computed layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Tiles of the requested page.
    pub tiles: Vec<Tile>,
    /// How many pages the gallery has (1 in the other modes).
    pub pages: usize,
}

/// Columns and rows for `n` tiles of aspect `aw:ah` in `w`×`h` that give the largest tiles.
fn best_grid(n: usize, w: u32, h: u32, aw: u32, ah: u32, gap: u32) -> (usize, usize) {
    let mut best = (1, n.max(1));
    let mut best_area = 0u64;
    for cols in 1..=n.max(1) {
        let rows = n.div_ceil(cols).max(1);
        let cell_w = w.saturating_sub(gap * (cols as u32 - 1)) / cols as u32;
        let cell_h = h.saturating_sub(gap * (rows as u32 - 1)) / rows as u32;
        let fitted = Rect {
            x: 0,
            y: 0,
            w: cell_w,
            h: cell_h,
        }
        .fit(aw, ah);
        let area = fitted.w as u64 * fitted.h as u64;
        if area > best_area {
            best_area = area;
            best = (cols, rows);
        }
    }
    best
}

/// Lays `people` out in equal cells filling `area`, rows centred.
fn grid_in(area: Rect, people: &[&Person], gap: u32, z: u32, out: &mut Vec<Tile>) {
    let n = people.len();
    if n == 0 || area.w == 0 || area.h == 0 {
        return;
    }
    let (aw, ah) = people[0].aspect;
    let (cols, rows) = best_grid(n, area.w, area.h, aw, ah, gap);
    // Gaps that do not fit (a tiny viewport) are dropped rather than pushing tiles outside.
    let gx = if gap * (cols as u32 - 1) < area.w {
        gap
    } else {
        0
    };
    let gy = if gap * (rows as u32 - 1) < area.h {
        gap
    } else {
        0
    };
    let cell_w = area.w.saturating_sub(gx * (cols as u32 - 1)) / cols as u32;
    let cell_h = area.h.saturating_sub(gy * (rows as u32 - 1)) / rows as u32;
    let used_h = cell_h * rows as u32 + gy * (rows as u32 - 1);
    let top = area.y + area.h.saturating_sub(used_h) / 2;
    for (i, p) in people.iter().enumerate() {
        let (row, col) = (i / cols, i % cols);
        let in_row = if row == rows - 1 {
            n - row * cols
        } else {
            cols
        };
        let used_w = cell_w * in_row as u32 + gx * (in_row as u32 - 1);
        let left = area.x + area.w.saturating_sub(used_w) / 2;
        let cell = Rect {
            x: left + col as u32 * (cell_w + gx),
            y: top + row as u32 * (cell_h + gy),
            w: cell_w,
            h: cell_h,
        };
        out.push(Tile {
            rect: cell.fit(p.aspect.0, p.aspect.1),
            participant: p.id.clone(),
            z,
            highlight: p.speaker_rank == Some(0),
        });
    }
}

impl Layout {
    /// Computes the layout.
    pub fn compute(input: &LayoutInput<'_>) -> Layout {
        let v = input.viewport;
        let full = Rect {
            x: 0,
            y: 0,
            w: v.width,
            h: v.height,
        };
        let mut tiles = Vec::new();
        let people: Vec<&Person> = input.people.iter().collect();
        let gap = input.gap;
        match input.mode {
            Mode::Gallery => {
                let page_size = input.page_size.max(1);
                let mut order = people.clone();
                if input.speaker_to_first_page
                    && let Some(pos) = order.iter().position(|p| p.speaker_rank == Some(0))
                    && pos >= page_size
                {
                    // Swap with the last tile of the first page: one tile moves, not all.
                    let last_on_first = page_size.min(order.len()) - 1;
                    order.swap(pos, last_on_first);
                }
                let pages = order.len().div_ceil(page_size).max(1);
                let page = input.page.min(pages - 1);
                let start = page * page_size;
                let end = (start + page_size).min(order.len());
                grid_in(full, &order[start.min(end)..end], gap, 0, &mut tiles);
                return Layout { tiles, pages };
            }
            Mode::Speaker | Mode::Spotlight => {
                let main: Vec<&Person> = if input.mode == Mode::Speaker {
                    let speaker = people
                        .iter()
                        .filter(|p| p.speaker_rank.is_some())
                        .min_by_key(|p| p.speaker_rank)
                        .or_else(|| people.iter().find(|p| p.pinned))
                        .or_else(|| people.first())
                        .copied();
                    speaker.into_iter().collect()
                } else {
                    let pinned: Vec<&Person> =
                        people.iter().filter(|p| p.pinned).copied().collect();
                    if pinned.is_empty() {
                        people.first().copied().into_iter().collect()
                    } else {
                        pinned
                    }
                };
                let others: Vec<&Person> = people
                    .iter()
                    .filter(|p| !main.iter().any(|m| m.id == p.id))
                    .copied()
                    .collect();
                let strip_h = if others.is_empty() { 0 } else { v.height / 5 };
                let main_area = Rect {
                    x: 0,
                    y: 0,
                    w: v.width,
                    h: v.height - strip_h - if strip_h > 0 { gap } else { 0 },
                };
                grid_in(main_area, &main, gap, 0, &mut tiles);
                if strip_h > 0 {
                    // As many filmstrip tiles as fit at the strip's height; the rest are off-screen.
                    let (aw, ah) = others[0].aspect;
                    let tile_w = (strip_h as u64 * aw.max(1) as u64 / ah.max(1) as u64) as u32;
                    let fit = ((v.width + gap) / (tile_w + gap).max(1)).max(1) as usize;
                    let shown = &others[..others.len().min(fit)];
                    let strip = Rect {
                        x: 0,
                        y: v.height - strip_h,
                        w: v.width,
                        h: strip_h,
                    };
                    let n = shown.len() as u32;
                    let used = n * tile_w + gap * n.saturating_sub(1);
                    let w = used.min(v.width);
                    let area = Rect {
                        x: strip.x + (strip.w - w) / 2,
                        y: strip.y,
                        w,
                        h: strip.h,
                    };
                    grid_row(area, shown, gap, 1, &mut tiles);
                }
            }
            Mode::Broadcast => {
                let host = people
                    .iter()
                    .find(|p| p.role == Role::Host)
                    .or_else(|| people.first())
                    .copied();
                let talking: Vec<&Person> = people
                    .iter()
                    .filter(|p| Some(p.id.as_str()) != host.map(|h| h.id.as_str()))
                    .filter(|p| p.hand_raised || p.role == Role::Speaker)
                    .copied()
                    .collect();
                let side_w = if talking.is_empty() { 0 } else { v.width / 4 };
                let main_area = Rect {
                    x: 0,
                    y: 0,
                    w: v.width - side_w - if side_w > 0 { gap } else { 0 },
                    h: v.height,
                };
                grid_in(
                    main_area,
                    &host.into_iter().collect::<Vec<_>>(),
                    gap,
                    0,
                    &mut tiles,
                );
                if side_w > 0 {
                    let side = Rect {
                        x: v.width - side_w,
                        y: 0,
                        w: side_w,
                        h: v.height,
                    };
                    // One column of talk-back tiles, as many as fit.
                    let (aw, ah) = talking[0].aspect;
                    let tile_h = (side_w as u64 * ah.max(1) as u64 / aw.max(1) as u64) as u32;
                    let fit = ((v.height + gap) / (tile_h + gap).max(1)).max(1) as usize;
                    let shown = &talking[..talking.len().min(fit)];
                    let n = shown.len() as u32;
                    let used = (n * tile_h + gap * n.saturating_sub(1)).min(v.height);
                    let area = Rect {
                        x: side.x,
                        y: (v.height - used) / 2,
                        w: side.w,
                        h: used,
                    };
                    grid_in(area, shown, gap, 1, &mut tiles);
                }
            }
        }
        Layout { tiles, pages: 1 }
    }
}

/// Lays `people` in one row across `area`.
fn grid_row(area: Rect, people: &[&Person], gap: u32, z: u32, out: &mut Vec<Tile>) {
    let n = people.len() as u32;
    if n == 0 {
        return;
    }
    let cell_w = area.w.saturating_sub(gap * (n - 1)) / n;
    for (i, p) in people.iter().enumerate() {
        let cell = Rect {
            x: area.x + i as u32 * (cell_w + gap),
            y: area.y,
            w: cell_w,
            h: area.h,
        };
        out.push(Tile {
            rect: cell.fit(p.aspect.0, p.aspect.1),
            participant: p.id.clone(),
            z,
            highlight: p.speaker_rank == Some(0),
        });
    }
}

#[cfg(test)]
mod tests;
