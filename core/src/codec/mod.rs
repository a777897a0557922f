//! Codecs: H.264 through OpenH264 and Opus through libopus (feature `codec`), pure H.264
//! bitstream helpers ([`nal`]) that need neither, redundant audio ([`red`], RFC 2198) and
//! their RTP payloads both ways (`rtp`, feature `net`).
//!
//! The encoders turn [`VideoFrame`](crate::media::VideoFrame)s and
//! [`AudioFrame`](crate::media::AudioFrame)s into [`EncodedFrame`](crate::media::EncodedFrame)s
//! whose payloads are shared buffers; the decoders turn them back.

#[cfg(feature = "codec")]
mod h264;
pub mod nal;
#[cfg(feature = "codec")]
mod opus;
pub mod red;
#[cfg(feature = "net")]
pub mod rtp;
mod simulcast;

#[cfg(feature = "codec")]
pub use h264::{H264Config, H264Decoder, H264Encoder};
#[cfg(feature = "codec")]
pub use opus::{OpusConfig, OpusDecoder, OpusEncoder};
pub use simulcast::{
    MIN_LAYER_WIDTH, VideoLayer, camera_layers, simulcast_layers, single_layer, small_layer_cap,
};
#[cfg(feature = "codec")]
pub use simulcast::{PUBLISHER_TEMPORAL_LAYERS, SimulcastEncoder};

use crate::media::MediaError;

/// Errors from the codecs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A frame or setting that is not a valid media value.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// OpenH264 encodes up to 3840×2160 (either orientation).
    #[error("{width}x{height} is larger than the H.264 encoder supports (3840x2160)")]
    UnsupportedSize {
        /// Width asked for.
        width: u32,
        /// Height asked for.
        height: u32,
    },
    /// Bitrate outside what the codec accepts (H.264 10 kbps–100 Mbps, Opus 6–510 kbps).
    #[error("bitrate {bps} bit/s out of range")]
    InvalidBitrate {
        /// Bitrate asked for.
        bps: u32,
    },
    /// Frame rate outside 1–240.
    #[error("frame rate out of range 1..=240")]
    InvalidFrameRate,
    /// An H.264 encoder with other than 1 or 2 temporal layers.
    #[error("{layers} temporal layers: the H.264 encoder makes 1 or 2")]
    InvalidTemporalLayers {
        /// Layers asked for.
        layers: u8,
    },
    /// Opus complexity above 10 or expected loss above 100 %.
    #[error("Opus complexity must be 0..=10 and expected loss 0..=100")]
    InvalidOpusSetting,
    /// A frame of another size than the encoder was created for.
    #[error("frame is {}x{}, encoder is {}x{}", got.0, got.1, expected.0, expected.1)]
    FrameSizeMismatch {
        /// The encoder's size.
        expected: (u32, u32),
        /// The frame's size.
        got: (u32, u32),
    },
    /// An audio frame with another channel count than the encoder's.
    #[error("audio frame channel count differs from the encoder's")]
    ChannelMismatch,
    /// OpenH264's encoder reported an error (its native code, 0 if none).
    #[error("H.264 encoder failed (code {code})")]
    Encoder {
        /// OpenH264 return code.
        code: i64,
    },
    /// OpenH264's decoder rejected the data; the decoder now waits for a keyframe.
    #[error("H.264 access unit could not be decoded (code {code}); waiting for a keyframe")]
    Decoder {
        /// OpenH264 decoding state flags (0 when the unit simply produced no picture).
        code: i64,
    },
    /// No bytes to decode.
    #[error("empty input")]
    EmptyInput,
    /// H.264 input without Annex-B start codes, or with a broken NAL header.
    #[error("not an Annex-B H.264 access unit")]
    NotAnnexB,
    /// The decoder waits for an IDR; a non-IDR access unit was dropped.
    #[error("waiting for a keyframe; access unit dropped")]
    NeedKeyframe,
    /// An Opus packet that libopus cannot parse.
    #[error("invalid Opus packet")]
    InvalidPacket,
    /// An Opus packet of another duration than 10 or 20 ms.
    #[error("Opus packet of {samples} samples per channel: 10 or 20 ms supported")]
    UnsupportedPacketDuration {
        /// Samples per channel in the packet.
        samples: usize,
    },
    /// libopus reported an error.
    #[error("Opus {op} failed: {reason}")]
    Opus {
        /// What was being done.
        op: &'static str,
        /// libopus's description of the error.
        reason: &'static str,
    },
}
