//! YUV4MPEG2 (`.y4m`) files, 4:2:0 only: the uncompressed video format ffmpeg and most test
//! tools read and write.
//!
//! Hand-written (about 150 lines) rather than taken from a crate so that every malformed file
//! maps to a typed [`MediaError`], the frame size is checked before any payload allocation, and
//! frames are read straight into a [`VideoFrame`].

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};

use super::{FileFormat, MediaError, VideoFrame, check_dimensions};

const MAGIC: &[u8] = b"YUV4MPEG2";
/// Longest header or frame-header line accepted; real files use well under 100 bytes.
const MAX_LINE: usize = 1024;

/// Reads 4:2:0 frames from a Y4M stream.
///
/// ```
/// use madang::media::{TestPattern, Y4mReader, Y4mWriter};
/// let mut file = Vec::new();
/// let mut w = Y4mWriter::new(&mut file, 64, 48, 30, 1).unwrap();
/// w.write_frame(&TestPattern::new(64, 48).unwrap().next_frame(0)).unwrap();
/// w.finish().unwrap();
/// let mut r = Y4mReader::new(&file[..]).unwrap();
/// assert_eq!((r.width(), r.height()), (64, 48));
/// assert!(r.read_frame().unwrap().is_some());
/// assert!(r.read_frame().unwrap().is_none());
/// ```
#[derive(Debug)]
pub struct Y4mReader<R> {
    inner: BufReader<R>,
    width: u32,
    height: u32,
    fps: (u32, u32),
    frames_read: u64,
}

/// Reads one `\n`-terminated line of at most [`MAX_LINE`] bytes. `Ok(None)` on EOF before the
/// first byte.
fn read_line<R: Read>(
    r: &mut BufReader<R>,
    what: &'static str,
) -> Result<Option<Vec<u8>>, MediaError> {
    let mut line = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(if line.len() > MAX_LINE {
            MediaError::LineTooLong {
                format: FileFormat::Y4m,
            }
        } else {
            MediaError::Truncated {
                format: FileFormat::Y4m,
                what,
            }
        });
    }
    line.pop();
    Ok(Some(line))
}

fn parse_u32(token: &[u8], field: &'static str) -> Result<u32, MediaError> {
    std::str::from_utf8(token)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(MediaError::BadField {
            format: FileFormat::Y4m,
            field,
        })
}

impl<R: Read> Y4mReader<R> {
    /// Reads and checks the stream header.
    pub fn new(reader: R) -> Result<Self, MediaError> {
        let mut inner = BufReader::new(reader);
        let line = read_line(&mut inner, "header")?.ok_or(MediaError::Truncated {
            format: FileFormat::Y4m,
            what: "header",
        })?;
        let mut tokens = line.split(|&b| b == b' ').filter(|t| !t.is_empty());
        if tokens.next() != Some(MAGIC) {
            return Err(MediaError::BadMagic {
                format: FileFormat::Y4m,
            });
        }
        let (mut width, mut height, mut fps) = (None, None, (30, 1));
        for token in tokens {
            let (tag, value) = (token[0], &token[1..]);
            match tag {
                b'W' => width = Some(parse_u32(value, "width")?),
                b'H' => height = Some(parse_u32(value, "height")?),
                b'F' => {
                    let mut parts = value.splitn(2, |&b| b == b':');
                    let num = parse_u32(parts.next().unwrap_or_default(), "frame rate")?;
                    let den = parse_u32(parts.next().unwrap_or_default(), "frame rate")?;
                    if num == 0 || den == 0 {
                        return Err(MediaError::BadField {
                            format: FileFormat::Y4m,
                            field: "frame rate",
                        });
                    }
                    fps = (num, den);
                }
                b'C' if !matches!(value, b"420" | b"420jpeg" | b"420paldv" | b"420mpeg2") => {
                    return Err(MediaError::UnsupportedChroma {
                        chroma: String::from_utf8_lossy(value).into_owned(),
                    });
                }
                b'I' if value != b"p" && value != b"?" => {
                    return Err(MediaError::BadField {
                        format: FileFormat::Y4m,
                        field: "interlacing (only progressive is supported)",
                    });
                }
                // Pixel aspect and extensions do not change how frames are read.
                _ => {}
            }
        }
        let missing = |field| MediaError::MissingField {
            format: FileFormat::Y4m,
            field,
        };
        let width = width.ok_or(missing("width"))?;
        let height = height.ok_or(missing("height"))?;
        check_dimensions(width, height)?;
        Ok(Self {
            inner,
            width,
            height,
            fps,
            frames_read: 0,
        })
    }

    /// Frame width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Frame height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Frame rate as numerator and denominator.
    pub fn frame_rate(&self) -> (u32, u32) {
        self.fps
    }

    /// The next frame, with pts from its index and the frame rate; `Ok(None)` at the end of the
    /// stream. A frame cut short is an error, not a partial frame.
    pub fn read_frame(&mut self) -> Result<Option<VideoFrame>, MediaError> {
        let Some(line) = read_line(&mut self.inner, "frame header")? else {
            return Ok(None);
        };
        if !line.starts_with(b"FRAME") {
            return Err(MediaError::BadFrameHeader {
                format: FileFormat::Y4m,
            });
        }
        let len = self.width as usize * self.height as usize * 3 / 2;
        let mut data = vec![0u8; len];
        self.inner
            .read_exact(&mut data)
            .map_err(|e| match e.kind() {
                ErrorKind::UnexpectedEof => MediaError::Truncated {
                    format: FileFormat::Y4m,
                    what: "frame",
                },
                _ => MediaError::Io(e),
            })?;
        let (num, den) = (self.fps.0 as u64, self.fps.1 as u64);
        let pts = (self.frames_read * 1_000_000 * den / num) as i64;
        self.frames_read += 1;
        VideoFrame::from_packed(self.width, self.height, data, pts).map(Some)
    }
}

/// Writes 4:2:0 frames as a Y4M stream (`C420jpeg`, progressive, square pixels).
#[derive(Debug)]
pub struct Y4mWriter<W: Write> {
    inner: W,
    width: u32,
    height: u32,
    buf: Vec<u8>,
}

impl<W: Write> Y4mWriter<W> {
    /// Writes the stream header.
    pub fn new(
        mut inner: W,
        width: u32,
        height: u32,
        fps_num: u32,
        fps_den: u32,
    ) -> Result<Self, MediaError> {
        check_dimensions(width, height)?;
        if fps_num == 0 || fps_den == 0 {
            return Err(MediaError::BadField {
                format: FileFormat::Y4m,
                field: "frame rate",
            });
        }
        writeln!(
            inner,
            "YUV4MPEG2 W{width} H{height} F{fps_num}:{fps_den} Ip A1:1 C420jpeg"
        )?;
        Ok(Self {
            inner,
            width,
            height,
            buf: Vec::new(),
        })
    }

    /// Appends one frame, which must have the stream's size.
    pub fn write_frame(&mut self, frame: &VideoFrame) -> Result<(), MediaError> {
        if (frame.width(), frame.height()) != (self.width, self.height) {
            return Err(MediaError::SizeMismatch {
                expected: (self.width, self.height),
                got: (frame.width(), frame.height()),
            });
        }
        self.buf.clear();
        self.buf.extend_from_slice(b"FRAME\n");
        frame.write_packed(&mut self.buf);
        self.inner.write_all(&self.buf)?;
        Ok(())
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> Result<W, MediaError> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::TestPattern;

    fn sample_file(frames: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Y4mWriter::new(&mut out, 32, 16, 25, 1).unwrap();
        let mut p = TestPattern::new(32, 16).unwrap();
        for i in 0..frames {
            w.write_frame(&p.next_frame(i as u64)).unwrap();
        }
        w.finish().unwrap();
        out
    }

    #[test]
    fn round_trip() {
        let file = sample_file(3);
        let mut r = Y4mReader::new(&file[..]).unwrap();
        assert_eq!(r.frame_rate(), (25, 1));
        let p = TestPattern::new(32, 16).unwrap();
        for i in 0..3 {
            let f = r.read_frame().unwrap().unwrap();
            assert_eq!(f.y(), p.frame(i, i as u64).y());
            assert_eq!(f.pts_us(), i as i64 * 40_000);
        }
        assert!(r.read_frame().unwrap().is_none());
    }

    #[test]
    fn bad_files() {
        let good = sample_file(1);
        let header_end = good.iter().position(|&b| b == b'\n').unwrap();
        let cases: Vec<crate::media::ErrorCase> = vec![
            (b"".to_vec(), |e| matches!(e, MediaError::Truncated { .. })),
            (b"YUV4MPEG2 W32 H16".to_vec(), |e| {
                matches!(e, MediaError::Truncated { .. })
            }),
            (b"RIFF....\n".to_vec(), |e| {
                matches!(e, MediaError::BadMagic { .. })
            }),
            (
                b"YUV4MPEG2 W32 H16 C444\n".to_vec(),
                |e| matches!(e, MediaError::UnsupportedChroma { chroma } if chroma == "444"),
            ),
            (b"YUV4MPEG2 W33 H16\n".to_vec(), |e| {
                matches!(e, MediaError::InvalidDimensions { .. })
            }),
            (b"YUV4MPEG2 W99999999 H16\n".to_vec(), |e| {
                matches!(e, MediaError::InvalidDimensions { .. })
            }),
            (b"YUV4MPEG2 Wx H16\n".to_vec(), |e| {
                matches!(e, MediaError::BadField { .. })
            }),
            (b"YUV4MPEG2 H16\n".to_vec(), |e| {
                matches!(e, MediaError::MissingField { .. })
            }),
            (b"YUV4MPEG2 W32 H16 F30:0\n".to_vec(), |e| {
                matches!(e, MediaError::BadField { .. })
            }),
            (
                [b"YUV4MPEG2 ".as_slice(), &[b'X'; 2000], b"\n"].concat(),
                |e| matches!(e, MediaError::LineTooLong { .. }),
            ),
        ];
        for (bytes, check) in cases {
            let err = Y4mReader::new(&bytes[..]).unwrap_err();
            assert!(
                check(&err),
                "{:?} gave {err:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
            );
        }
        // Truncated frame data and a broken frame marker.
        let mut r = Y4mReader::new(&good[..good.len() - 10]).unwrap();
        assert!(matches!(
            r.read_frame(),
            Err(MediaError::Truncated { what: "frame", .. })
        ));
        let mut broken = good.clone();
        broken[header_end + 1] = b'X';
        let mut r = Y4mReader::new(&broken[..]).unwrap();
        assert!(matches!(
            r.read_frame(),
            Err(MediaError::BadFrameHeader { .. })
        ));
    }

    #[test]
    fn writer_rejects_other_sizes() {
        let mut w = Y4mWriter::new(Vec::new(), 32, 16, 30, 1).unwrap();
        let f = VideoFrame::black(16, 16).unwrap();
        assert!(matches!(
            w.write_frame(&f),
            Err(MediaError::SizeMismatch { .. })
        ));
    }
}
