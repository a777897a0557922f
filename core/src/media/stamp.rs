//! The stamp: a frame sequence number and capture time drawn into the picture as large
//! black and white cells, readable again after lossy coding.
//!
//! Layout (proportional to the frame, so a uniformly scaled frame reads back too): a grid of
//! 16 × 9 cells in the top-left corner, each cell `width / 40` wide and `height * 2 / 45`
//! tall (16 × 16 pixels at 640×360, 32 × 32 at 1280×720: aligned with H.264 macroblocks).
//! Row 0 is a marker row, white and black alternating, which tells the reader that a stamp is
//! there and where its threshold lies. Rows 1–8 carry 128 bits, most significant first:
//! sequence number (32), capture time in µs (64), CRC-32 of those 12 bytes (32). A misread
//! passes the CRC with probability about 2⁻³², so `read_stamp` returning `Some` can be trusted.

use super::VideoFrame;

/// Frame identity drawn into a test picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Sequence number of the frame at the source, starting at 0.
    pub seq: u32,
    /// Capture time in microseconds on the source's clock.
    pub capture_us: u64,
}

const COLS: usize = 16;
const ROWS: usize = 9;
const WHITE: u8 = 235;
const BLACK: u8 = 16;
/// Smallest difference between the marker row's white and black cells that counts as a stamp.
const MIN_CONTRAST: u32 = 48;

/// Pixel rectangle `(x0, y0, x1, y1)` of cell (`col`, `row`) in a `width`×`height` luma plane.
fn cell_rect(width: usize, height: usize, col: usize, row: usize) -> (usize, usize, usize, usize) {
    (
        col * width / 40,
        row * height * 2 / 45,
        (col + 1) * width / 40,
        (row + 1) * height * 2 / 45,
    )
}

/// Whether a frame of this size is large enough to carry a stamp (cells of at least 2×2).
pub fn fits_stamp(width: u32, height: u32) -> bool {
    width >= 80 && height >= 45
}

/// Pixel rectangle `(x0, y0, x1, y1)` the stamp covers in a frame of this size.
pub fn stamp_area(width: u32, height: u32) -> (u32, u32, u32, u32) {
    let (_, _, x1, y1) = cell_rect(width as usize, height as usize, COLS - 1, ROWS - 1);
    (0, 0, x1 as u32, y1 as u32)
}

fn payload(stamp: Stamp) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&stamp.seq.to_be_bytes());
    bytes[4..12].copy_from_slice(&stamp.capture_us.to_be_bytes());
    let crc = crc32fast::hash(&bytes[..12]);
    bytes[12..].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn bit(bytes: &[u8; 16], i: usize) -> bool {
    bytes[i / 8] & (0x80 >> (i % 8)) != 0
}

/// Draws `stamp` into the top-left corner of `frame` (luma cells, neutral chroma).
/// Frames too small to carry a stamp (see [`fits_stamp`]) are left unchanged.
pub fn draw_stamp(frame: &mut VideoFrame, stamp: Stamp) {
    if !fits_stamp(frame.width(), frame.height()) {
        return;
    }
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let bytes = payload(stamp);
    let [y_stride, u_stride, v_stride] = frame.strides();
    let [yp, up, vp] = frame.planes_mut();
    for row in 0..ROWS {
        for col in 0..COLS {
            let on = if row == 0 {
                col % 2 == 0
            } else {
                bit(&bytes, (row - 1) * COLS + col)
            };
            let value = if on { WHITE } else { BLACK };
            let (x0, y0, x1, y1) = cell_rect(w, h, col, row);
            for y in y0..y1 {
                yp[y * y_stride + x0..y * y_stride + x1].fill(value);
            }
            for y in y0 / 2..y1.div_ceil(2) {
                up[y * u_stride + x0 / 2..y * u_stride + x1.div_ceil(2)].fill(128);
                vp[y * v_stride + x0 / 2..y * v_stride + x1.div_ceil(2)].fill(128);
            }
        }
    }
}

/// Mean luma of the inner half of a cell (edges blur under compression and scaling).
fn cell_mean(frame: &VideoFrame, col: usize, row: usize) -> u32 {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let (x0, y0, x1, y1) = cell_rect(w, h, col, row);
    let (mx, my) = ((x1 - x0) / 4, (y1 - y0) / 4);
    let (x0, x1, y0, y1) = (x0 + mx, x1 - mx, y0 + my, y1 - my);
    let stride = frame.stride(0);
    let y_plane = frame.y();
    let mut sum = 0u32;
    for y in y0..y1 {
        sum += y_plane[y * stride + x0..y * stride + x1]
            .iter()
            .map(|&v| v as u32)
            .sum::<u32>();
    }
    // A cell is at least 2×2, so the inner area is never empty.
    sum / ((x1 - x0) * (y1 - y0)) as u32
}

/// Recovers the stamp from a frame, typically a decoded one. `None` when no stamp is there,
/// the marker row lacks contrast, or the check bits disagree: a misread is reported, not
/// returned.
pub fn read_stamp(frame: &VideoFrame) -> Option<Stamp> {
    if !fits_stamp(frame.width(), frame.height()) {
        return None;
    }
    let markers: Vec<u32> = (0..COLS).map(|c| cell_mean(frame, c, 0)).collect();
    let min_white = markers.iter().step_by(2).min()?;
    let max_black = markers.iter().skip(1).step_by(2).max()?;
    if *min_white < max_black + MIN_CONTRAST {
        return None;
    }
    let threshold = (min_white + max_black) / 2;
    let mut bytes = [0u8; 16];
    for i in 0..128 {
        if cell_mean(frame, i % COLS, 1 + i / COLS) > threshold {
            bytes[i / 8] |= 0x80 >> (i % 8);
        }
    }
    let crc = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if crc32fast::hash(&bytes[..12]) != crc {
        return None;
    }
    Some(Stamp {
        seq: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        capture_us: u64::from_be_bytes([
            bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9], bytes[10], bytes[11],
        ]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_at_many_sizes() {
        for (w, h) in [
            (80, 46),
            (320, 180),
            (640, 360),
            (1280, 720),
            (1920, 1080),
            (642, 362),
        ] {
            let mut f = VideoFrame::black(w, h).unwrap();
            let s = Stamp {
                seq: 0xdead_beef,
                capture_us: 1_790_000_000_123_456,
            };
            draw_stamp(&mut f, s);
            assert_eq!(read_stamp(&f), Some(s), "{w}x{h}");
        }
    }

    #[test]
    fn small_frames_carry_none() {
        let mut f = VideoFrame::black(64, 32).unwrap();
        draw_stamp(
            &mut f,
            Stamp {
                seq: 1,
                capture_us: 2,
            },
        );
        assert_eq!(read_stamp(&f), None);
        assert_eq!(f, VideoFrame::black(64, 32).unwrap());
    }

    #[test]
    fn flipped_cell_is_detected() {
        let mut f = VideoFrame::black(640, 360).unwrap();
        draw_stamp(
            &mut f,
            Stamp {
                seq: 7,
                capture_us: 99,
            },
        );
        // Invert one data cell: the CRC must reject the result.
        let (x0, y0, x1, y1) = cell_rect(640, 360, 5, 3);
        let stride = f.stride(0);
        let y = f.plane_mut(0);
        for row in y0..y1 {
            for v in &mut y[row * stride + x0..row * stride + x1] {
                *v = if *v == WHITE { BLACK } else { WHITE };
            }
        }
        assert_eq!(read_stamp(&f), None);
    }

    #[test]
    fn plain_picture_has_no_stamp() {
        let f = VideoFrame::black(640, 360).unwrap();
        assert_eq!(read_stamp(&f), None);
    }
}
