//! Raw and encoded frames: the values that travel along the data path.

use bytes::Bytes;

use super::MediaError;

/// Largest width or height a [`VideoFrame`] accepts (8K UHD).
pub const MAX_DIMENSION: u32 = 8192;

/// Smallest width or height a [`VideoFrame`] accepts.
pub const MIN_DIMENSION: u32 = 16;

/// The one audio sample rate used everywhere in madang (WebRTC's Opus clock).
pub const AUDIO_SAMPLE_RATE: u32 = 48_000;

/// One uncompressed picture in I420 (planar Y, then U and V at half resolution).
///
/// Width and height are even and at least 16. Each plane has its own stride (bytes per row),
/// which may exceed the visible width. `pts_us` is the presentation time in microseconds on
/// whatever clock the source uses (the [`TestPattern`](super::TestPattern) uses capture time).
#[derive(Clone, PartialEq, Eq)]
pub struct VideoFrame {
    width: u32,
    height: u32,
    strides: [usize; 3],
    offsets: [usize; 3],
    data: Vec<u8>,
    pts_us: i64,
}

impl std::fmt::Debug for VideoFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoFrame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("strides", &self.strides)
            .field("pts_us", &self.pts_us)
            .finish_non_exhaustive()
    }
}

/// Checks that `width`×`height` is a size madang handles: even, 16..=8192 on each side.
pub fn check_dimensions(width: u32, height: u32) -> Result<(), MediaError> {
    let ok_side = |v: u32| (MIN_DIMENSION..=MAX_DIMENSION).contains(&v) && v.is_multiple_of(2);
    if ok_side(width) && ok_side(height) {
        Ok(())
    } else {
        Err(MediaError::InvalidDimensions { width, height })
    }
}

impl VideoFrame {
    /// A black frame (Y = 16, U = V = 128) with tight strides.
    pub fn black(width: u32, height: u32) -> Result<Self, MediaError> {
        let w = width as usize;
        Self::black_with_strides(width, height, [w, w / 2, w / 2])
    }

    /// A black frame whose planes have the given strides (at least each plane's width), for
    /// callers that want rows padded, e.g. to a SIMD-friendly multiple.
    pub fn black_with_strides(
        width: u32,
        height: u32,
        strides: [usize; 3],
    ) -> Result<Self, MediaError> {
        check_dimensions(width, height)?;
        let (w, h) = (width as usize, height as usize);
        for (i, (&stride, pw)) in strides.iter().zip([w, w / 2, w / 2]).enumerate() {
            if stride < pw || stride > 4 * MAX_DIMENSION as usize {
                return Err(MediaError::InvalidStride {
                    plane: i as u8,
                    stride,
                    width: pw,
                });
            }
        }
        let sizes = [strides[0] * h, strides[1] * (h / 2), strides[2] * (h / 2)];
        let offsets = [0, sizes[0], sizes[0] + sizes[1]];
        let mut data = vec![128u8; sizes.iter().sum()];
        data[..sizes[0]].fill(16);
        Ok(Self {
            width,
            height,
            strides,
            offsets,
            data,
            pts_us: 0,
        })
    }

    /// Copies a picture from three borrowed planes with their strides.
    ///
    /// Each plane must hold at least `stride * rows` bytes, except that the last row may stop at
    /// the visible width; strides must be at least the plane's visible width. The copy has tight
    /// strides.
    pub fn from_planes(
        width: u32,
        height: u32,
        planes: [&[u8]; 3],
        strides: [usize; 3],
        pts_us: i64,
    ) -> Result<Self, MediaError> {
        let mut frame = Self::black(width, height)?;
        for (i, (src, &stride)) in planes.iter().zip(strides.iter()).enumerate() {
            let (pw, ph) = frame.plane_size(i);
            if stride < pw {
                return Err(MediaError::InvalidStride {
                    plane: i as u8,
                    stride,
                    width: pw,
                });
            }
            let needed = stride * (ph - 1) + pw;
            if src.len() < needed {
                return Err(MediaError::PlaneTooSmall {
                    plane: i as u8,
                    len: src.len(),
                    needed,
                });
            }
            let dst_stride = frame.strides[i];
            let dst = frame.plane_mut(i);
            for row in 0..ph {
                dst[row * dst_stride..row * dst_stride + pw]
                    .copy_from_slice(&src[row * stride..row * stride + pw]);
            }
        }
        frame.pts_us = pts_us;
        Ok(frame)
    }

    /// A copy of the `width`×`height` area at (`x`, `y`), all rounded down to even numbers so
    /// chroma lines up; an error when the area is not inside the picture or too small.
    pub fn crop(&self, x: u32, y: u32, width: u32, height: u32) -> Result<Self, MediaError> {
        let (x, y, width, height) = (x & !1, y & !1, width & !1, height & !1);
        if x + width > self.width || y + height > self.height {
            return Err(MediaError::InvalidDimensions { width, height });
        }
        let mut out = Self::black(width, height)?;
        out.pts_us = self.pts_us;
        for plane in 0..3 {
            let d = if plane == 0 { 1 } else { 2 };
            let (pw, ph) = out.plane_size(plane);
            let stride = out.strides[plane];
            let left = (x / d) as usize;
            for row in 0..ph {
                let src = self.row(plane, (y / d) as usize + row);
                out.plane_mut(plane)[row * stride..row * stride + pw]
                    .copy_from_slice(&src[left..left + pw]);
            }
        }
        Ok(out)
    }

    /// Builds a frame from packed I420 bytes (Y, U, V planes back to back, tight strides), the
    /// layout of a Y4M frame or a `.yuv` file.
    pub fn from_packed(
        width: u32,
        height: u32,
        data: Vec<u8>,
        pts_us: i64,
    ) -> Result<Self, MediaError> {
        check_dimensions(width, height)?;
        let (w, h) = (width as usize, height as usize);
        let needed = w * h * 3 / 2;
        if data.len() != needed {
            return Err(MediaError::PlaneTooSmall {
                plane: 0,
                len: data.len(),
                needed,
            });
        }
        Ok(Self {
            width,
            height,
            strides: [w, w / 2, w / 2],
            offsets: [0, w * h, w * h + (w / 2) * (h / 2)],
            data,
            pts_us,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Presentation time in microseconds.
    pub fn pts_us(&self) -> i64 {
        self.pts_us
    }

    /// Sets the presentation time in microseconds.
    pub fn set_pts_us(&mut self, pts_us: i64) {
        self.pts_us = pts_us;
    }

    /// Bytes per row of plane `i` (0 = Y, 1 = U, 2 = V).
    ///
    /// # Panics
    /// If `i > 2`.
    pub fn stride(&self, i: usize) -> usize {
        self.strides[i]
    }

    /// Strides of the three planes.
    pub fn strides(&self) -> [usize; 3] {
        self.strides
    }

    /// Visible width and height of plane `i` in samples.
    ///
    /// # Panics
    /// If `i > 2`.
    pub fn plane_size(&self, i: usize) -> (usize, usize) {
        assert!(i < 3, "I420 has three planes");
        if i == 0 {
            (self.width as usize, self.height as usize)
        } else {
            (self.width as usize / 2, self.height as usize / 2)
        }
    }

    fn plane_range(&self, i: usize) -> std::ops::Range<usize> {
        let (_, rows) = self.plane_size(i);
        self.offsets[i]..self.offsets[i] + self.strides[i] * rows
    }

    /// Plane `i` (0 = Y, 1 = U, 2 = V), `stride(i) * rows` bytes.
    ///
    /// # Panics
    /// If `i > 2`.
    pub fn plane(&self, i: usize) -> &[u8] {
        &self.data[self.plane_range(i)]
    }

    /// Plane `i`, writable.
    ///
    /// # Panics
    /// If `i > 2`.
    pub fn plane_mut(&mut self, i: usize) -> &mut [u8] {
        let range = self.plane_range(i);
        &mut self.data[range]
    }

    /// The luma plane.
    pub fn y(&self) -> &[u8] {
        self.plane(0)
    }

    /// The blue-difference chroma plane.
    pub fn u(&self) -> &[u8] {
        self.plane(1)
    }

    /// The red-difference chroma plane.
    pub fn v(&self) -> &[u8] {
        self.plane(2)
    }

    /// The three planes, writable at once.
    pub fn planes_mut(&mut self) -> [&mut [u8]; 3] {
        let [r0, r1, r2] = [0, 1, 2].map(|i| self.plane_range(i));
        // Planes are laid out in order without overlap (constructors guarantee it), so the
        // buffer splits at the start of U and of V.
        let (head, rest) = self.data.split_at_mut(r1.start);
        let (u, v) = rest.split_at_mut(r2.start - r1.start);
        [
            &mut head[r0],
            &mut u[..r1.end - r1.start],
            &mut v[..r2.end - r2.start],
        ]
    }

    /// Row `row` of plane `i`, visible samples only.
    ///
    /// # Panics
    /// If `i > 2` or the row is outside the plane.
    pub fn row(&self, i: usize, row: usize) -> &[u8] {
        let (w, _) = self.plane_size(i);
        let start = self.strides[i] * row;
        &self.plane(i)[start..start + w]
    }

    /// Plane `i`'s visible samples, row after row with no padding: the plane itself when its
    /// stride is its width, else copied into `scratch` (for scalers that take tight images).
    ///
    /// # Panics
    /// If `i > 2`.
    pub fn tight_plane<'a>(&'a self, i: usize, scratch: &'a mut Vec<u8>) -> &'a [u8] {
        let (w, h) = self.plane_size(i);
        if self.strides[i] == w {
            return &self.plane(i)[..w * h];
        }
        scratch.clear();
        for r in 0..h {
            scratch.extend_from_slice(self.row(i, r));
        }
        scratch
    }

    /// The picture as packed 8-bit RGB (BT.601, studio range), for snapshots and images.
    pub fn to_rgb(&self) -> Vec<u8> {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut out = Vec::with_capacity(w * h * 3);
        let clamp = |v: i32| v.clamp(0, 255) as u8;
        for y in 0..h {
            let (ly, cu, cv) = (self.row(0, y), self.row(1, y / 2), self.row(2, y / 2));
            for x in 0..w {
                let c = 298 * (ly[x] as i32 - 16);
                let d = cu[x / 2] as i32 - 128;
                let e = cv[x / 2] as i32 - 128;
                out.push(clamp((c + 409 * e + 128) >> 8));
                out.push(clamp((c - 100 * d - 208 * e + 128) >> 8));
                out.push(clamp((c + 516 * d + 128) >> 8));
            }
        }
        out
    }

    /// Writes the visible samples of all planes, packed (no stride padding), into `out`.
    pub fn write_packed(&self, out: &mut Vec<u8>) {
        out.reserve(self.width as usize * self.height as usize * 3 / 2);
        for i in 0..3 {
            let (_, rows) = self.plane_size(i);
            for r in 0..rows {
                out.extend_from_slice(self.row(i, r));
            }
        }
    }
}

/// Number of audio channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channels {
    /// One channel.
    Mono,
    /// Two channels, interleaved left/right.
    Stereo,
}

impl Channels {
    /// 1 or 2.
    pub fn count(self) -> usize {
        match self {
            Channels::Mono => 1,
            Channels::Stereo => 2,
        }
    }

    /// `Mono` for 1, `Stereo` for 2, else `None`.
    pub fn from_count(count: usize) -> Option<Self> {
        match count {
            1 => Some(Channels::Mono),
            2 => Some(Channels::Stereo),
            _ => None,
        }
    }
}

/// A block of 48 kHz 16-bit PCM: 10 or 20 ms, mono or interleaved stereo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioFrame {
    channels: Channels,
    samples: Vec<i16>,
    pts_us: i64,
}

impl AudioFrame {
    /// Wraps interleaved samples. The length must be 10 ms or 20 ms worth at 48 kHz
    /// (480 or 960 samples per channel).
    pub fn new(channels: Channels, samples: Vec<i16>, pts_us: i64) -> Result<Self, MediaError> {
        let per_channel = samples.len() / channels.count();
        let whole = samples.len().is_multiple_of(channels.count());
        if !whole || !(per_channel == 480 || per_channel == 960) {
            return Err(MediaError::InvalidAudioLength {
                samples: samples.len(),
                channels: channels.count() as u8,
            });
        }
        Ok(Self {
            channels,
            samples,
            pts_us,
        })
    }

    /// Silence of `duration_ms` (10 or 20).
    pub fn silence(channels: Channels, duration_ms: u32, pts_us: i64) -> Result<Self, MediaError> {
        let n = (AUDIO_SAMPLE_RATE / 1000 * duration_ms) as usize * channels.count();
        Self::new(channels, vec![0; n], pts_us)
    }

    /// Mono or stereo.
    pub fn channels(&self) -> Channels {
        self.channels
    }

    /// Interleaved samples.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// Takes the samples out.
    pub fn into_samples(self) -> Vec<i16> {
        self.samples
    }

    /// Samples per channel (480 or 960).
    pub fn samples_per_channel(&self) -> usize {
        self.samples.len() / self.channels.count()
    }

    /// Duration in microseconds.
    pub fn duration_us(&self) -> i64 {
        self.samples_per_channel() as i64 * 1_000_000 / AUDIO_SAMPLE_RATE as i64
    }

    /// Presentation time in microseconds.
    pub fn pts_us(&self) -> i64 {
        self.pts_us
    }
}

/// Which codec produced an [`EncodedFrame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodecKind {
    /// H.264 Constrained Baseline, Annex-B access units.
    H264,
    /// Opus packets.
    Opus,
}

/// One compressed unit: an H.264 access unit (Annex-B, with start codes) or an Opus packet.
///
/// The payload is a shared [`Bytes`] buffer, so handing the same frame to many subscribers
/// never copies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedFrame {
    /// The codec.
    pub codec: CodecKind,
    /// The compressed bytes.
    pub data: Bytes,
    /// Presentation time in microseconds, copied from the raw frame.
    pub pts_us: i64,
    /// True for an H.264 IDR access unit (which carries SPS and PPS); always true for Opus.
    pub keyframe: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_sizes() {
        for (w, h) in [(15, 16), (17, 16), (16, 14), (0, 0), (8194, 16), (640, 361)] {
            assert!(matches!(
                VideoFrame::black(w, h),
                Err(MediaError::InvalidDimensions { .. })
            ));
        }
        assert!(VideoFrame::black(16, 16).is_ok());
    }

    #[test]
    fn crop_copies_an_area_and_refuses_one_outside() {
        let y: Vec<u8> = (0..64 * 32).map(|i| (i % 64) as u8).collect();
        let (u, v) = (vec![1u8; 32 * 16], vec![2u8; 32 * 16]);
        let f = VideoFrame::from_planes(64, 32, [&y, &u, &v], [64, 32, 32], 9).unwrap();
        let c = f.crop(11, 4, 33, 16).unwrap();
        assert_eq!((c.width(), c.height(), c.pts_us()), (32, 16, 9));
        assert_eq!(c.row(0, 0), &y[4 * 64 + 10..4 * 64 + 42]);
        assert!(c.v().iter().all(|&s| s == 2));
        assert!(f.crop(40, 0, 32, 16).is_err());
        assert!(f.crop(0, 0, 8, 8).is_err());
    }

    #[test]
    fn from_planes_honours_strides() {
        let (w, h) = (32u32, 16u32);
        let y: Vec<u8> = (0..48 * 16).map(|i| (i % 48) as u8).collect();
        let u = vec![7u8; 20 * 8];
        let v = vec![9u8; 16 * 8];
        let f = VideoFrame::from_planes(w, h, [&y, &u, &v], [48, 20, 16], 5).unwrap();
        assert_eq!(f.row(0, 3), &y[3 * 48..3 * 48 + 32]);
        assert!(f.u().iter().all(|&s| s == 7));
        assert_eq!(f.pts_us(), 5);
        let err = VideoFrame::from_planes(w, h, [&y, &u, &v], [8, 20, 16], 0).unwrap_err();
        assert!(matches!(err, MediaError::InvalidStride { plane: 0, .. }));
        let err = VideoFrame::from_planes(w, h, [&y[..100], &u, &v], [48, 20, 16], 0).unwrap_err();
        assert!(matches!(err, MediaError::PlaneTooSmall { plane: 0, .. }));
    }

    #[test]
    fn padded_strides() {
        let mut f = VideoFrame::black_with_strides(16, 16, [32, 16, 24]).unwrap();
        assert_eq!(f.y().len(), 32 * 16);
        assert_eq!(f.v().len(), 24 * 8);
        f.planes_mut()[2][24] = 7;
        assert_eq!(f.row(2, 1)[0], 7);
        let mut packed = Vec::new();
        f.write_packed(&mut packed);
        assert_eq!(packed.len(), 16 * 16 * 3 / 2);
        assert!(VideoFrame::black_with_strides(16, 16, [8, 8, 8]).is_err());
    }

    #[test]
    fn packed_round_trip() {
        let mut f = VideoFrame::black(16, 16).unwrap();
        f.plane_mut(2)[5] = 200;
        let mut packed = Vec::new();
        f.write_packed(&mut packed);
        let g = VideoFrame::from_packed(16, 16, packed, 0).unwrap();
        assert_eq!(f, g);
    }

    #[test]
    fn rgb_conversion() {
        let black = VideoFrame::black(16, 16).unwrap().to_rgb();
        assert_eq!(black.len(), 16 * 16 * 3);
        assert!(black.iter().all(|&v| v == 0));
        let mut white = VideoFrame::black(16, 16).unwrap();
        white.plane_mut(0).fill(235);
        assert!(white.to_rgb().iter().all(|&v| v == 255));
    }

    #[test]
    fn audio_lengths() {
        assert!(AudioFrame::new(Channels::Mono, vec![0; 480], 0).is_ok());
        assert!(AudioFrame::new(Channels::Stereo, vec![0; 1920], 0).is_ok());
        assert!(AudioFrame::new(Channels::Stereo, vec![0; 961], 0).is_err());
        assert!(AudioFrame::new(Channels::Mono, vec![0; 100], 0).is_err());
        let s = AudioFrame::silence(Channels::Stereo, 20, 0).unwrap();
        assert_eq!(s.samples_per_channel(), 960);
        assert_eq!(s.duration_us(), 20_000);
    }
}
