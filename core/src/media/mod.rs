//! Frames and sources: what enters and leaves the codecs.
//!
//! [`VideoFrame`] (I420), [`AudioFrame`] (48 kHz PCM) and [`EncodedFrame`] are the values that
//! travel along the data path. [`TestPattern`] and [`SpeechSource`] are synthetic camera and
//! microphone; the pattern stamps each frame with its sequence number and capture time
//! ([`read_stamp`]), which is how madang measures loss and glass-to-glass latency end to end.
//! Y4M and WAV readers and writers bring files in and out.

mod audio;
mod frame;
mod pattern;
pub mod quality;
mod stamp;
mod wav;
mod y4m;

pub use audio::{SpeechSource, Tone};
pub use frame::{
    AUDIO_SAMPLE_RATE, AudioFrame, Channels, CodecKind, EncodedFrame, MAX_DIMENSION, MIN_DIMENSION,
    VideoFrame, check_dimensions,
};
pub use pattern::{DEFAULT_GRAIN, TestPattern};
pub use stamp::{Stamp, draw_stamp, fits_stamp, read_stamp, stamp_area};
pub use wav::{WavReader, WavWriter};
pub use y4m::{Y4mReader, Y4mWriter};

/// A file format madang reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileFormat {
    /// YUV4MPEG2 video.
    Y4m,
    /// RIFF WAVE audio.
    Wav,
}

impl std::fmt::Display for FileFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileFormat::Y4m => "Y4M",
            FileFormat::Wav => "WAV",
        })
    }
}

/// Errors from frames, sources and media files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// Width and height must be even and within 16..=8192.
    #[error("invalid frame size {width}x{height}: sides must be even and within 16..=8192")]
    InvalidDimensions {
        /// Width given.
        width: u32,
        /// Height given.
        height: u32,
    },
    /// A plane's stride is smaller than its visible width.
    #[error("stride {stride} of plane {plane} is smaller than its width {width}")]
    InvalidStride {
        /// Plane index (0 = Y, 1 = U, 2 = V).
        plane: u8,
        /// Stride given.
        stride: usize,
        /// Visible width of the plane.
        width: usize,
    },
    /// A plane buffer is shorter than its size and stride need.
    #[error("plane {plane} holds {len} bytes, {needed} needed")]
    PlaneTooSmall {
        /// Plane index.
        plane: u8,
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// Audio frames are 10 or 20 ms of 48 kHz samples.
    #[error("{samples} samples on {channels} channel(s) is not 10 or 20 ms at 48 kHz")]
    InvalidAudioLength {
        /// Interleaved samples given.
        samples: usize,
        /// Channel count.
        channels: u8,
    },
    /// Audio frame durations are 10 or 20 ms.
    #[error("audio frame duration {ms} ms: 10 or 20 ms supported")]
    InvalidAudioDuration {
        /// Duration asked for.
        ms: u32,
    },
    /// A frame has another size than the stream it is written to.
    #[error("frame is {}x{}, stream is {}x{}", got.0, got.1, expected.0, expected.1)]
    SizeMismatch {
        /// The stream's size.
        expected: (u32, u32),
        /// The frame's size.
        got: (u32, u32),
    },
    /// The file does not start with the format's signature.
    #[error("not a {format} file")]
    BadMagic {
        /// Expected format.
        format: FileFormat,
    },
    /// The file ends in the middle of something.
    #[error("{format} file ends inside its {what}")]
    Truncated {
        /// Format being read.
        format: FileFormat,
        /// What was cut short.
        what: &'static str,
    },
    /// A header line is longer than any real file writes.
    #[error("{format} header line too long")]
    LineTooLong {
        /// Format being read.
        format: FileFormat,
    },
    /// A required header field is absent.
    #[error("{format} header lacks {field}")]
    MissingField {
        /// Format being read.
        format: FileFormat,
        /// The field.
        field: &'static str,
    },
    /// A header field has a value that cannot be used.
    #[error("{format} header has a bad {field}")]
    BadField {
        /// Format being read.
        format: FileFormat,
        /// The field.
        field: &'static str,
    },
    /// A Y4M frame does not start with `FRAME`.
    #[error("{format} frame header missing")]
    BadFrameHeader {
        /// Format being read.
        format: FileFormat,
    },
    /// Y4M chroma other than 4:2:0.
    #[error("Y4M chroma C{chroma} unsupported: only 4:2:0 is")]
    UnsupportedChroma {
        /// The chroma tag found in the file.
        chroma: String,
    },
    /// WAV sample format other than 16-bit PCM.
    #[error("WAV format tag {format_tag} with {bits} bits unsupported: only 16-bit PCM is")]
    UnsupportedWavFormat {
        /// Format tag from the fmt chunk.
        format_tag: u16,
        /// Bits per sample.
        bits: u16,
    },
    /// Channel counts other than 1 and 2.
    #[error("{channels} channels unsupported: mono or stereo only")]
    UnsupportedChannels {
        /// Channel count found.
        channels: u16,
    },
    /// Audio frames need 48 kHz.
    #[error("sample rate {rate} Hz: audio frames need 48000 Hz")]
    UnsupportedSampleRate {
        /// Rate found.
        rate: u32,
    },
    /// The file would exceed what its format can describe.
    #[error("{format} file would exceed its 4 GiB size limit")]
    FileTooLarge {
        /// Format being written.
        format: FileFormat,
    },
    /// Reading or writing failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A malformed input and the check its error must pass (reader tests).
#[cfg(test)]
type ErrorCase = (Vec<u8>, fn(&MediaError) -> bool);
