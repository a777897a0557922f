//! A synthetic camera: moving, textured content with a [`Stamp`] in every frame.

use super::stamp::{Stamp, draw_stamp};
use super::{MediaError, VideoFrame, check_dimensions};

/// Colour bars as (Y, U, V), BT.601 studio range: white, yellow, cyan, green, magenta, red,
/// blue, black.
const BARS: [(u8, u8, u8); 8] = [
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
    (16, 128, 128),
];

/// Test video source: a scrolling diagonal gradient, colour bars moving across the lower
/// quarter, a bouncing textured box, slowly drifting chroma, and a [`Stamp`] carrying the
/// frame's sequence number and capture time.
///
/// Content depends only on the sequence number, so frame `n` is the same picture every time
/// (tests compare decoded frames with the original by regenerating it).
///
/// ```
/// use madang::media::{TestPattern, read_stamp};
/// let mut pattern = TestPattern::new(640, 360).unwrap();
/// let frame = pattern.next_frame(1_000);
/// let stamp = read_stamp(&frame).unwrap();
/// assert_eq!((stamp.seq, stamp.capture_us), (0, 1_000));
/// ```
#[derive(Clone, Debug)]
pub struct TestPattern {
    width: u32,
    height: u32,
    next_seq: u32,
    grain: u8,
}

/// Default sensor-noise amplitude of [`TestPattern`] (luma steps, ±).
pub const DEFAULT_GRAIN: u8 = 3;

fn triangle(p: usize) -> u8 {
    let p = (p & 255) as u8;
    if p < 128 { p } else { 255 - p }
}

/// Position in `0..=span` of something moving at `speed` per frame and bouncing at both ends.
fn bounce(t: usize, speed: usize, span: usize) -> usize {
    if span == 0 {
        return 0;
    }
    let p = (t * speed) % (2 * span);
    if p <= span { p } else { 2 * span - p }
}

impl TestPattern {
    /// A pattern of the given size (even, 16..=8192 per side). Frames smaller than 80×45 carry
    /// no stamp.
    pub fn new(width: u32, height: u32) -> Result<Self, MediaError> {
        check_dimensions(width, height)?;
        Ok(Self {
            width,
            height,
            next_seq: 0,
            grain: DEFAULT_GRAIN,
        })
    }

    /// Sets the amplitude of the per-frame luma noise (±`grain` steps; 0 turns it off). Like
    /// a camera sensor's noise it cannot be predicted from the previous frame, so it makes the
    /// encoder work as it would on real video; the default is [`DEFAULT_GRAIN`].
    pub fn with_grain(mut self, grain: u8) -> Self {
        self.grain = grain.min(32);
        self
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The sequence number the next call to [`next_frame`](Self::next_frame) will use.
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// The next frame, stamped with the next sequence number and `capture_us`, which also
    /// becomes its pts.
    pub fn next_frame(&mut self, capture_us: u64) -> VideoFrame {
        let frame = self.frame(self.next_seq, capture_us);
        self.next_seq = self.next_seq.wrapping_add(1);
        frame
    }

    /// Frame number `seq` stamped with `capture_us`; pure.
    pub fn frame(&self, seq: u32, capture_us: u64) -> VideoFrame {
        let mut frame = self.picture(seq);
        frame.set_pts_us(capture_us as i64);
        draw_stamp(&mut frame, Stamp { seq, capture_us });
        frame
    }

    /// The moving picture of frame `seq` without a stamp.
    pub fn picture(&self, seq: u32) -> VideoFrame {
        let (w, h) = (self.width as usize, self.height as usize);
        // Sizes were checked in `new`.
        let mut frame = VideoFrame::black(self.width, self.height).expect("checked size");
        let t = seq as usize;
        let scale = (w / 320).max(1);
        let bars_top = h * 3 / 4;
        let bar_width = (w / 8).max(1);
        let bar_shift = t * 4 * scale;
        let box_size = (h / 5).max(4) & !1;
        let box_x = bounce(t, 5 * scale, w - box_size);
        let box_y = bounce(t, 3 * scale, bars_top.saturating_sub(box_size));
        let check = (box_size / 4).max(2);

        let [ys, us, vs] = frame.strides();
        let [yp, up, vp] = frame.planes_mut();
        let grain_span = 2 * self.grain as u32 + 1;
        let mut noise =
            0x2545_f491_4f6c_dd1d_u64 ^ (seq as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for y in 0..h {
            let row = &mut yp[y * ys..y * ys + w];
            for (x, px) in row.iter_mut().enumerate() {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                let grain = ((noise >> 40) as u32 % grain_span) as i16 - self.grain as i16;
                let in_box =
                    x >= box_x && x < box_x + box_size && y >= box_y && y < box_y + box_size;
                let base = if in_box {
                    let cx = (x - box_x) / check;
                    let cy = (y - box_y) / check;
                    if (cx + cy).is_multiple_of(2) { 220 } else { 40 }
                } else if y >= bars_top {
                    BARS[((x + bar_shift) / bar_width) % 8].0
                } else {
                    50 + triangle(x / scale + y / (2 * scale) + 3 * t)
                };
                *px = (base as i16 + grain).clamp(16, 235) as u8;
            }
        }
        for y in 0..h / 2 {
            let (ly, lx_box) = (y * 2, box_x / 2..(box_x + box_size) / 2);
            for x in 0..w / 2 {
                let lx = x * 2;
                let in_box = lx_box.contains(&x) && ly >= box_y && ly < box_y + box_size;
                let (u, v) = if in_box {
                    (100, 170)
                } else if ly >= bars_top {
                    let bar = BARS[((lx + bar_shift) / bar_width) % 8];
                    (bar.1, bar.2)
                } else {
                    (
                        96 + (x * 64 / (w / 2)) as u8,
                        96 + triangle(y / scale + t) / 2,
                    )
                };
                up[y * us + x] = u;
                vp[y * vs + x] = v;
            }
        }
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::read_stamp;

    #[test]
    fn frames_move_and_carry_stamps() {
        let mut p = TestPattern::new(640, 360).unwrap();
        let a = p.next_frame(10);
        let b = p.next_frame(43_343);
        assert_ne!(a.y(), b.y());
        assert_eq!(read_stamp(&a).unwrap().seq, 0);
        let sb = read_stamp(&b).unwrap();
        assert_eq!((sb.seq, sb.capture_us), (1, 43_343));
        assert_eq!(b.pts_us(), 43_343);
    }

    #[test]
    fn deterministic() {
        let p = TestPattern::new(320, 180).unwrap();
        assert_eq!(p.frame(17, 5), p.frame(17, 5));
    }

    #[test]
    fn tiny_sizes_work() {
        let mut p = TestPattern::new(16, 16).unwrap();
        let f = p.next_frame(0);
        assert_eq!((f.width(), f.height()), (16, 16));
        assert!(read_stamp(&f).is_none());
    }

    #[test]
    fn picture_has_texture() {
        let f = TestPattern::new(640, 360).unwrap().picture(3);
        let distinct = f.y().iter().fold([false; 256], |mut seen, &v| {
            seen[v as usize] = true;
            seen
        });
        assert!(distinct.iter().filter(|&&s| s).count() > 64);
    }
}
