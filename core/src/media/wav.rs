//! WAV files with 16-bit PCM.
//!
//! Hand-written rather than taken from a crate so that each malformed file maps to a typed
//! [`MediaError`] (a data chunk that promises more bytes than the file holds is
//! [`MediaError::Truncated`], reported after the samples that were there) and so that it reads
//! straight into [`AudioFrame`]s.

use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};

use super::{AUDIO_SAMPLE_RATE, AudioFrame, Channels, FileFormat, MediaError};

const FORMAT_PCM: u16 = 1;
const FORMAT_EXTENSIBLE: u16 = 0xfffe;
/// Data size some streaming writers put in the header when they cannot know it.
const SIZE_UNKNOWN: u32 = u32::MAX;

fn truncated(what: &'static str) -> MediaError {
    MediaError::Truncated {
        format: FileFormat::Wav,
        what,
    }
}

fn read_array<const N: usize, R: Read>(
    r: &mut R,
    what: &'static str,
) -> Result<[u8; N], MediaError> {
    let mut buf = [0u8; N];
    r.read_exact(&mut buf).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => truncated(what),
        _ => MediaError::Io(e),
    })?;
    Ok(buf)
}

/// Reads 16-bit PCM samples from a WAV stream.
#[derive(Debug)]
pub struct WavReader<R> {
    inner: R,
    channels: Channels,
    sample_rate: u32,
    /// Bytes of sample data left; `None` when the header did not say (read to the end).
    data_left: Option<u64>,
    pts_us: i64,
    byte_buf: Vec<u8>,
}

impl<R: Read> WavReader<R> {
    /// Reads the RIFF header and chunks up to the start of the sample data.
    pub fn new(mut inner: R) -> Result<Self, MediaError> {
        let riff: [u8; 12] = read_array(&mut inner, "header")?;
        if &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
            return Err(MediaError::BadMagic {
                format: FileFormat::Wav,
            });
        }
        let mut fmt: Option<(Channels, u32)> = None;
        loop {
            let head: [u8; 8] = read_array(&mut inner, "chunk header")?;
            let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            match &head[0..4] {
                b"fmt " => {
                    if !(16..=1024).contains(&size) {
                        return Err(MediaError::BadField {
                            format: FileFormat::Wav,
                            field: "fmt chunk size",
                        });
                    }
                    let mut body = vec![0u8; size as usize + (size as usize & 1)];
                    inner.read_exact(&mut body).map_err(|e| match e.kind() {
                        ErrorKind::UnexpectedEof => truncated("fmt chunk"),
                        _ => MediaError::Io(e),
                    })?;
                    let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
                    let mut tag = u16_at(0);
                    if tag == FORMAT_EXTENSIBLE && size >= 26 {
                        // The sub-format GUID starts with the plain format tag.
                        tag = u16_at(24);
                    }
                    let count = u16_at(2);
                    let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                    let bits = u16_at(14);
                    if tag != FORMAT_PCM || bits != 16 {
                        return Err(MediaError::UnsupportedWavFormat {
                            format_tag: tag,
                            bits,
                        });
                    }
                    let channels = Channels::from_count(count as usize)
                        .ok_or(MediaError::UnsupportedChannels { channels: count })?;
                    fmt = Some((channels, rate));
                }
                b"data" => {
                    let (channels, sample_rate) = fmt.ok_or(MediaError::MissingField {
                        format: FileFormat::Wav,
                        field: "fmt chunk",
                    })?;
                    let data_left = (size != SIZE_UNKNOWN).then_some(size as u64);
                    return Ok(Self {
                        inner,
                        channels,
                        sample_rate,
                        data_left,
                        pts_us: 0,
                        byte_buf: Vec::new(),
                    });
                }
                _ => {
                    // Skip LIST, fact and other chunks (padded to even length).
                    let skip = size as u64 + (size as u64 & 1);
                    let skipped =
                        std::io::copy(&mut inner.by_ref().take(skip), &mut std::io::sink())?;
                    if skipped < skip {
                        return Err(truncated("chunk"));
                    }
                }
            }
        }
    }

    /// Mono or stereo.
    pub fn channels(&self) -> Channels {
        self.channels
    }

    /// Samples per second per channel, as the file says.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Reads up to `out.len()` interleaved samples; returns how many. `Ok(0)` at the end of the
    /// data. A file that ends before its data chunk's promised size gives
    /// [`MediaError::Truncated`] once the samples that were present have been returned.
    pub fn read_samples(&mut self, out: &mut [i16]) -> Result<usize, MediaError> {
        let mut want = out.len() as u64 * 2;
        if let Some(left) = self.data_left {
            want = want.min(left & !1);
        }
        self.byte_buf.resize(want as usize, 0);
        let mut got = 0;
        while got < self.byte_buf.len() {
            match self.inner.read(&mut self.byte_buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(MediaError::Io(e)),
            }
        }
        let samples = got / 2;
        for (dst, src) in out
            .iter_mut()
            .zip(self.byte_buf[..samples * 2].chunks_exact(2))
        {
            *dst = i16::from_le_bytes([src[0], src[1]]);
        }
        if let Some(left) = &mut self.data_left {
            *left -= got as u64;
            if want > 0 && got == 0 && *left > 1 {
                return Err(truncated("data chunk"));
            }
        }
        Ok(samples)
    }

    /// The next frame of `frame_ms` (10 or 20) milliseconds; `Ok(None)` at the end. The last
    /// frame is padded with silence so no sample is dropped. Only 48 kHz files can be read as
    /// frames ([`MediaError::UnsupportedSampleRate`] otherwise).
    pub fn read_frame(&mut self, frame_ms: u32) -> Result<Option<AudioFrame>, MediaError> {
        if self.sample_rate != AUDIO_SAMPLE_RATE {
            return Err(MediaError::UnsupportedSampleRate {
                rate: self.sample_rate,
            });
        }
        if frame_ms != 10 && frame_ms != 20 {
            return Err(MediaError::InvalidAudioDuration { ms: frame_ms });
        }
        let len = (AUDIO_SAMPLE_RATE / 1000 * frame_ms) as usize * self.channels.count();
        let mut samples = vec![0i16; len];
        let mut filled = 0;
        while filled < len {
            let n = self.read_samples(&mut samples[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(None);
        }
        let pts = self.pts_us;
        self.pts_us += frame_ms as i64 * 1000;
        AudioFrame::new(self.channels, samples, pts).map(Some)
    }
}

/// Writes 16-bit PCM at 48 kHz as a WAV file; sizes are filled in by [`finish`](Self::finish).
#[derive(Debug)]
pub struct WavWriter<W: Write + Seek> {
    inner: W,
    channels: Channels,
    data_bytes: u64,
    buf: Vec<u8>,
}

impl<W: Write + Seek> WavWriter<W> {
    /// Writes a header for 48 kHz audio with `channels`.
    pub fn new(mut inner: W, channels: Channels) -> Result<Self, MediaError> {
        let n = channels.count() as u16;
        let mut h = Vec::with_capacity(44);
        h.extend_from_slice(b"RIFF\0\0\0\0WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&FORMAT_PCM.to_le_bytes());
        h.extend_from_slice(&n.to_le_bytes());
        h.extend_from_slice(&AUDIO_SAMPLE_RATE.to_le_bytes());
        h.extend_from_slice(&(AUDIO_SAMPLE_RATE * 2 * n as u32).to_le_bytes());
        h.extend_from_slice(&(2 * n).to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(b"data\0\0\0\0");
        inner.write_all(&h)?;
        Ok(Self {
            inner,
            channels,
            data_bytes: 0,
            buf: Vec::new(),
        })
    }

    /// Appends a frame, which must have the writer's channel count.
    pub fn write_frame(&mut self, frame: &AudioFrame) -> Result<(), MediaError> {
        if frame.channels() != self.channels {
            return Err(MediaError::UnsupportedChannels {
                channels: frame.channels().count() as u16,
            });
        }
        self.write_samples(frame.samples())
    }

    /// Appends interleaved samples.
    pub fn write_samples(&mut self, samples: &[i16]) -> Result<(), MediaError> {
        let bytes = samples.len() as u64 * 2;
        if self.data_bytes + bytes > u32::MAX as u64 - 36 {
            return Err(MediaError::FileTooLarge {
                format: FileFormat::Wav,
            });
        }
        self.buf.clear();
        self.buf
            .extend(samples.iter().flat_map(|s| s.to_le_bytes()));
        self.inner.write_all(&self.buf)?;
        self.data_bytes += bytes;
        Ok(())
    }

    /// Fills in the sizes, flushes, and returns the underlying writer.
    pub fn finish(mut self) -> Result<W, MediaError> {
        // Fits in u32: write_samples refuses to grow past it.
        let data = self.data_bytes as u32;
        self.inner.seek(SeekFrom::Start(4))?;
        self.inner.write_all(&(data + 36).to_le_bytes())?;
        self.inner.seek(SeekFrom::Start(40))?;
        self.inner.write_all(&data.to_le_bytes())?;
        self.inner.seek(SeekFrom::End(0))?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Tone;
    use std::io::Cursor;

    fn sample_file(frames: usize, channels: Channels) -> Vec<u8> {
        let mut w = WavWriter::new(Cursor::new(Vec::new()), channels).unwrap();
        let mut tone = Tone::new(440.0, 0.3, channels, 10).unwrap();
        for _ in 0..frames {
            w.write_frame(&tone.next_frame()).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn round_trip() {
        let file = sample_file(5, Channels::Stereo);
        assert_eq!(file.len(), 44 + 5 * 480 * 2 * 2);
        let mut r = WavReader::new(&file[..]).unwrap();
        assert_eq!((r.channels(), r.sample_rate()), (Channels::Stereo, 48_000));
        let mut tone = Tone::new(440.0, 0.3, Channels::Stereo, 10).unwrap();
        let mut frames = 0;
        while let Some(f) = r.read_frame(10).unwrap() {
            assert_eq!(f.samples(), tone.next_frame().samples());
            frames += 1;
        }
        assert_eq!(frames, 5);
    }

    #[test]
    fn last_frame_is_padded() {
        let file = sample_file(3, Channels::Mono);
        let mut r = WavReader::new(&file[..]).unwrap();
        let a = r.read_frame(20).unwrap().unwrap();
        let b = r.read_frame(20).unwrap().unwrap();
        assert!(r.read_frame(20).unwrap().is_none());
        assert_eq!(a.samples_per_channel() + b.samples_per_channel(), 1920);
        assert!(b.samples()[480..].iter().all(|&s| s == 0));
    }

    #[test]
    fn lying_length_is_truncated_after_the_real_samples() {
        let mut file = sample_file(2, Channels::Mono);
        file[40..44].copy_from_slice(&100_000u32.to_le_bytes());
        let mut r = WavReader::new(&file[..]).unwrap();
        let mut buf = vec![0i16; 4096];
        assert_eq!(r.read_samples(&mut buf).unwrap(), 960);
        assert!(matches!(
            r.read_samples(&mut buf),
            Err(MediaError::Truncated { .. })
        ));
    }

    #[test]
    fn bad_headers() {
        let good = sample_file(1, Channels::Mono);
        let mut eight_bit = good.clone();
        eight_bit[34] = 8;
        let mut five_channels = good.clone();
        five_channels[22] = 5;
        let mut float = good.clone();
        float[20] = 3;
        let cases: Vec<crate::media::ErrorCase> = vec![
            (good[..10].to_vec(), |e| {
                matches!(e, MediaError::Truncated { .. })
            }),
            (good[..30].to_vec(), |e| {
                matches!(e, MediaError::Truncated { .. })
            }),
            (b"RIFX\0\0\0\0WAVE".to_vec(), |e| {
                matches!(e, MediaError::BadMagic { .. })
            }),
            (eight_bit, |e| {
                matches!(e, MediaError::UnsupportedWavFormat { bits: 8, .. })
            }),
            (five_channels, |e| {
                matches!(e, MediaError::UnsupportedChannels { channels: 5 })
            }),
            (float, |e| {
                matches!(e, MediaError::UnsupportedWavFormat { format_tag: 3, .. })
            }),
            (
                [&good[..12], b"data\x04\0\0\0\0\0\0\0".as_slice()].concat(),
                |e| matches!(e, MediaError::MissingField { .. }),
            ),
            (
                [&good[..12], b"LIST\xff\0\0\0abc".as_slice()].concat(),
                |e| matches!(e, MediaError::Truncated { .. }),
            ),
        ];
        for (bytes, check) in cases {
            let err = WavReader::new(&bytes[..]).unwrap_err();
            assert!(check(&err), "got {err:?}");
        }
    }

    #[test]
    fn other_rates_read_as_samples_not_frames() {
        let mut file = sample_file(1, Channels::Mono);
        file[24..28].copy_from_slice(&16_000u32.to_le_bytes());
        let mut r = WavReader::new(&file[..]).unwrap();
        assert!(matches!(
            r.read_frame(10),
            Err(MediaError::UnsupportedSampleRate { rate: 16_000 })
        ));
        let mut buf = [0i16; 100];
        assert_eq!(r.read_samples(&mut buf).unwrap(), 100);
    }
}
