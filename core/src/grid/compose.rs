//! Draws a layout into one I420 canvas: each participant's latest picture scaled into its tile
//! (the last picture held until a new one comes), a placeholder with initials and an
//! audio-level bar for participants without video, a border around the active speaker.
//!
//! Scaling uses `fast_image_resize` (SIMD convolution, bilinear) plane by plane.

use std::collections::HashMap;

use fast_image_resize::images::{TypedCroppedImageMut, TypedImage, TypedImageRef};
use fast_image_resize::pixels::U8;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};

use super::font::draw_text;
pub use super::layout::initials;
use super::layout::{Layout, Person, Rect};
use crate::media::{MediaError, VideoFrame};

/// Scaling quality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Quality {
    /// Bilinear filtering (default): smooth, costs ~0.3 ms per 360p tile.
    #[default]
    Smooth,
    /// Nearest neighbour: several times faster, visibly blockier; for very large grids.
    Fast,
}

/// How a picture fills its tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fit {
    /// Whole picture, scaled to the tile (the layout already gives tiles the source's aspect).
    #[default]
    Fit,
    /// Tile filled, the picture cropped to the tile's aspect.
    Fill,
}

/// Colours as (Y, U, V).
const BACKGROUND: (u8, u8, u8) = (16, 128, 128);
const PLACEHOLDER: (u8, u8, u8) = (48, 136, 120);
const BORDER: (u8, u8, u8) = (170, 44, 142);
const TEXT: (u8, u8, u8) = (220, 128, 128);
const LEVEL: (u8, u8, u8) = (150, 54, 34);

/// Composes layouts into a canvas of fixed size.
pub struct Compositor {
    canvas: VideoFrame,
    resizer: Resizer,
    latest: HashMap<String, VideoFrame>,
    fit: Fit,
    quality: Quality,
    /// A packed copy of a strided source plane, reused.
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Compositor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compositor")
            .field("width", &self.canvas.width())
            .field("height", &self.canvas.height())
            .field("held", &self.latest.len())
            .finish_non_exhaustive()
    }
}

fn even(v: u32) -> u32 {
    v & !1
}

/// The rectangle rounded to even coordinates and sizes, so chroma lines up.
fn even_rect(r: Rect) -> Rect {
    Rect {
        x: even(r.x),
        y: even(r.y),
        w: even(r.w),
        h: even(r.h),
    }
}

impl Compositor {
    /// A `width`×`height` canvas (even, 16..=8192).
    pub fn new(width: u32, height: u32, fit: Fit) -> Result<Self, MediaError> {
        Ok(Self {
            canvas: VideoFrame::black(width, height)?,
            resizer: Resizer::new(),
            latest: HashMap::new(),
            fit,
            quality: Quality::Smooth,
            scratch: Vec::new(),
        })
    }

    /// Changes the canvas size (even, 16..=8192), keeping the held pictures.
    pub fn resize(&mut self, width: u32, height: u32) -> Result<(), MediaError> {
        self.canvas = VideoFrame::black(width, height)?;
        Ok(())
    }

    /// Sets the scaling quality.
    pub fn set_quality(&mut self, quality: Quality) {
        self.quality = quality;
    }

    /// Holds `frame` as `participant`'s latest picture.
    pub fn update(&mut self, participant: &str, frame: VideoFrame) {
        self.latest.insert(participant.to_owned(), frame);
    }

    /// Forgets a participant's picture.
    pub fn remove(&mut self, participant: &str) {
        self.latest.remove(participant);
    }

    /// The canvas as last composed.
    pub fn canvas(&self) -> &VideoFrame {
        &self.canvas
    }

    /// Draws `layout` for `people` (audio levels 0.0–1.0 by identity for the placeholders'
    /// bars) and returns the canvas, its pts set to `pts_us`.
    pub fn compose(
        &mut self,
        layout: &Layout,
        people: &[Person],
        levels: &HashMap<String, f32>,
        pts_us: i64,
    ) -> &VideoFrame {
        let (cw, ch) = (self.canvas.width(), self.canvas.height());
        fill(
            &mut self.canvas,
            Rect {
                x: 0,
                y: 0,
                w: cw,
                h: ch,
            },
            BACKGROUND,
        );
        let mut tiles: Vec<_> = layout.tiles.iter().collect();
        tiles.sort_by_key(|t| t.z);
        for tile in tiles {
            let rect = even_rect(tile.rect);
            if rect.w < 2 || rect.h < 2 || rect.x + rect.w > cw || rect.y + rect.h > ch {
                continue;
            }
            let person = people.iter().find(|p| p.id == tile.participant);
            let has_video = person.is_none_or(|p| p.has_video);
            let drawn = has_video && self.draw_picture(&tile.participant, rect);
            if !drawn {
                let name = person.map_or(tile.participant.as_str(), |p| p.name.as_str());
                let level = levels.get(&tile.participant).copied().unwrap_or(0.0);
                let paused = person.is_some_and(|p| p.video_paused);
                draw_placeholder(&mut self.canvas, rect, name, level, paused);
            }
            if tile.highlight {
                draw_border(
                    &mut self.canvas,
                    rect,
                    (rect.w.min(rect.h) / 60).clamp(2, 8),
                );
            }
        }
        self.canvas.set_pts_us(pts_us);
        &self.canvas
    }

    /// Scales the held picture into `rect`; false when there is none.
    fn draw_picture(&mut self, participant: &str, rect: Rect) -> bool {
        let Some(frame) = self.latest.get(participant) else {
            return false;
        };
        let alg = match self.quality {
            Quality::Smooth => ResizeAlg::Interpolation(FilterType::Bilinear),
            Quality::Fast => ResizeAlg::Nearest,
        };
        let options = match self.fit {
            Fit::Fit => ResizeOptions::new().resize_alg(alg),
            Fit::Fill => ResizeOptions::new()
                .resize_alg(alg)
                .fit_into_destination(None),
        };
        let [cys, cus, cvs] = self.canvas.strides();
        let (cw, ch) = (self.canvas.width(), self.canvas.height());
        for plane in 0..3 {
            let (sw, sh) = frame.plane_size(plane);
            let src = frame.tight_plane(plane, &mut self.scratch);
            let (dw, dh, dstride) = if plane == 0 {
                (cw, ch, cys)
            } else {
                (cw / 2, ch / 2, if plane == 1 { cus } else { cvs })
            };
            let div = if plane == 0 { 1 } else { 2 };
            let Ok(src_view) = TypedImageRef::<U8>::from_buffer(sw as u32, sh as u32, src) else {
                return false;
            };
            // Canvas planes are tight (VideoFrame::black), so stride equals width.
            debug_assert_eq!(dstride, dw as usize);
            let Ok(dst_view) = TypedImage::<U8>::from_buffer(dw, dh, self.canvas.plane_mut(plane))
            else {
                return false;
            };
            let Ok(mut cropped) = TypedCroppedImageMut::new(
                dst_view,
                rect.x / div,
                rect.y / div,
                rect.w / div,
                rect.h / div,
            ) else {
                return false;
            };
            if self
                .resizer
                .resize_typed(&src_view, &mut cropped, &options)
                .is_err()
            {
                return false;
            }
        }
        true
    }
}

/// The stamp (see [`crate::media::read_stamp`]) each tile of `layout` shows in `canvas`, by
/// participant: `None` where the tile holds no readable stamp (a placeholder, or a source
/// without one). For checking that a composed or received grid carries live pictures.
pub fn read_tile_stamps(
    canvas: &VideoFrame,
    layout: &Layout,
) -> Vec<(String, Option<crate::media::Stamp>)> {
    layout
        .tiles
        .iter()
        .map(|t| {
            let r = t.rect;
            let stamp = canvas
                .crop(r.x, r.y, r.w, r.h)
                .ok()
                .and_then(|crop| crate::media::read_stamp(&crop));
            (t.participant.clone(), stamp)
        })
        .collect()
}

/// Fills a rectangle with a colour.
fn fill(frame: &mut VideoFrame, r: Rect, (y, u, v): (u8, u8, u8)) {
    let strides = frame.strides();
    let [yp, up, vp] = frame.planes_mut();
    for row in r.y..r.y + r.h {
        let s = row as usize * strides[0] + r.x as usize;
        yp[s..s + r.w as usize].fill(y);
    }
    for row in r.y / 2..(r.y + r.h) / 2 {
        let su = row as usize * strides[1] + r.x as usize / 2;
        let sv = row as usize * strides[2] + r.x as usize / 2;
        up[su..su + r.w as usize / 2].fill(u);
        vp[sv..sv + r.w as usize / 2].fill(v);
    }
}

fn draw_border(frame: &mut VideoFrame, r: Rect, t: u32) {
    let t = even(t.max(2)).min(even(r.w / 2)).min(even(r.h / 2));
    if t == 0 {
        return;
    }
    let sides = [
        (r.x, r.y, r.w, t),
        (r.x, r.y + r.h - t, r.w, t),
        (r.x, r.y, t, r.h),
        (r.x + r.w - t, r.y, t, r.h),
    ];
    for (x, y, w, h) in sides {
        fill(frame, Rect { x, y, w, h }, BORDER);
    }
}

/// Under a placeholder's initials when the server paused the video.
pub const LOW_BANDWIDTH: &str = "LOW BANDWIDTH";

fn draw_placeholder(frame: &mut VideoFrame, r: Rect, name: &str, level: f32, paused: bool) {
    fill(frame, r, PLACEHOLDER);
    let text = initials(name);
    let scale = (r.h / 4 / 7).max(1);
    let text_w = text.chars().count() as u32 * 6 * scale;
    let top = r.y + (r.h - 7 * scale.min(r.h / 7)) / 2;
    if text_w < r.w && 7 * scale < r.h {
        draw_text(frame, r.x + (r.w - text_w) / 2, top, scale, &text, TEXT.0);
    }
    if paused {
        // Half the initials' size, below them, where it fits.
        let small = (scale / 3).max(1);
        let w = LOW_BANDWIDTH.len() as u32 * 6 * small;
        let y = top + 7 * scale + 3 * small;
        if w < r.w && y + 7 * small < r.y + r.h {
            draw_text(frame, r.x + (r.w - w) / 2, y, small, LOW_BANDWIDTH, TEXT.0);
        }
    }
    // Audio-level bar along the bottom.
    let bar_h = even((r.h / 12).max(2));
    let bar_w = even((r.w as f32 * level.clamp(0.0, 1.0)) as u32);
    if bar_w >= 2 && bar_h < r.h {
        fill(
            frame,
            Rect {
                x: r.x,
                y: r.y + r.h - bar_h,
                w: bar_w,
                h: bar_h,
            },
            LEVEL,
        );
    }
}

#[cfg(test)]
mod tests;
