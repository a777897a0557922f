//! Opus through libopus: 48 kHz, mono or stereo, 10 or 20 ms frames.

use bytes::Bytes;

use super::CodecError;
use crate::media::{AUDIO_SAMPLE_RATE, AudioFrame, Channels, CodecKind, EncodedFrame};

/// Largest Opus packet (RFC 6716 §3.2.1 allows 1275 bytes per frame).
const MAX_PACKET: usize = 1500;

fn opus_channels(c: Channels) -> opus::Channels {
    match c {
        Channels::Mono => opus::Channels::Mono,
        Channels::Stereo => opus::Channels::Stereo,
    }
}

fn opus_err(op: &'static str) -> impl Fn(opus::Error) -> CodecError {
    move |e| CodecError::Opus {
        op,
        reason: e.description(),
    }
}

/// Settings of an [`OpusEncoder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpusConfig {
    /// Mono or stereo.
    pub channels: Channels,
    /// Target bitrate in bits per second (default 32 kbps mono, 64 kbps stereo).
    pub bitrate_bps: u32,
    /// Encoder complexity 0–10 (default 9).
    pub complexity: u8,
    /// In-band forward error correction: each packet carries a coarse copy of the previous
    /// one, which a receiver uses when that one was lost (default on).
    pub fec: bool,
    /// Discontinuous transmission: during silence send almost nothing (default off).
    pub dtx: bool,
    /// Expected packet loss in percent, which sets how much FEC to spend (default 10).
    pub expected_loss_pct: u8,
}

impl OpusConfig {
    /// Defaults for speech over WebRTC.
    pub fn new(channels: Channels) -> Self {
        Self {
            channels,
            bitrate_bps: match channels {
                Channels::Mono => 32_000,
                Channels::Stereo => 64_000,
            },
            complexity: 9,
            fec: true,
            dtx: false,
            expected_loss_pct: 10,
        }
    }

    /// Sets the bitrate in kbit/s.
    pub fn bitrate_kbps(mut self, kbps: u32) -> Self {
        self.bitrate_bps = kbps.saturating_mul(1000);
        self
    }

    /// Sets the complexity (0–10).
    pub fn complexity(mut self, complexity: u8) -> Self {
        self.complexity = complexity;
        self
    }

    /// Turns in-band FEC on or off.
    pub fn fec(mut self, on: bool) -> Self {
        self.fec = on;
        self
    }

    /// Turns DTX on or off.
    pub fn dtx(mut self, on: bool) -> Self {
        self.dtx = on;
        self
    }

    /// Sets the expected packet loss in percent.
    pub fn expected_loss_pct(mut self, pct: u8) -> Self {
        self.expected_loss_pct = pct;
        self
    }
}

/// Opus encoder for speech (VoIP application mode).
pub struct OpusEncoder {
    config: OpusConfig,
    inner: opus::Encoder,
    out: Vec<u8>,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// Creates an encoder with `config`.
    pub fn new(config: OpusConfig) -> Result<Self, CodecError> {
        if !(6_000..=510_000).contains(&config.bitrate_bps) {
            return Err(CodecError::InvalidBitrate {
                bps: config.bitrate_bps,
            });
        }
        if config.complexity > 10 || config.expected_loss_pct > 100 {
            return Err(CodecError::InvalidOpusSetting);
        }
        let mut inner = opus::Encoder::new(
            AUDIO_SAMPLE_RATE,
            opus_channels(config.channels),
            opus::Application::Voip,
        )
        .map_err(opus_err("create encoder"))?;
        let set = opus_err("configure encoder");
        inner
            .set_bitrate(opus::Bitrate::Bits(config.bitrate_bps as i32))
            .map_err(&set)?;
        inner
            .set_complexity(config.complexity as i32)
            .map_err(&set)?;
        inner.set_inband_fec(config.fec).map_err(&set)?;
        inner.set_dtx(config.dtx).map_err(&set)?;
        inner
            .set_packet_loss_perc(config.expected_loss_pct as i32)
            .map_err(&set)?;
        Ok(Self {
            config,
            inner,
            out: vec![0; MAX_PACKET],
        })
    }

    /// The settings.
    pub fn config(&self) -> &OpusConfig {
        &self.config
    }

    /// Changes the target bitrate while encoding.
    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), CodecError> {
        if !(6_000..=510_000).contains(&bps) {
            return Err(CodecError::InvalidBitrate { bps });
        }
        self.inner
            .set_bitrate(opus::Bitrate::Bits(bps as i32))
            .map_err(opus_err("set bitrate"))?;
        self.config.bitrate_bps = bps;
        Ok(())
    }

    /// Turns discontinuous transmission on or off while encoding.
    pub fn set_dtx(&mut self, on: bool) -> Result<(), CodecError> {
        self.inner.set_dtx(on).map_err(opus_err("set DTX"))?;
        self.config.dtx = on;
        Ok(())
    }

    /// Follows `target` (a session's [`AudioTarget`](crate::room::AudioTarget)): its
    /// bitrate and DTX, each changed only when it differs.
    #[cfg(feature = "net")]
    pub fn follow(&mut self, target: crate::room::AudioTarget) -> Result<(), CodecError> {
        if target.bitrate_bps != self.config.bitrate_bps {
            self.set_bitrate(target.bitrate_bps)?;
        }
        if target.dtx != self.config.dtx {
            self.set_dtx(target.dtx)?;
        }
        Ok(())
    }

    /// Changes the expected packet loss (percent) while encoding: how much in-band FEC the
    /// encoder spends (none at 0).
    pub fn set_expected_loss_pct(&mut self, pct: u8) -> Result<(), CodecError> {
        if pct > 100 {
            return Err(CodecError::InvalidOpusSetting);
        }
        self.inner
            .set_packet_loss_perc(pct as i32)
            .map_err(opus_err("set expected loss"))?;
        self.config.expected_loss_pct = pct;
        Ok(())
    }

    /// Encodes one frame into one packet. With DTX on, silence gives `Ok(None)`: nothing needs
    /// sending (libopus then emits packets of at most two bytes, which WebRTC does not send).
    pub fn encode(&mut self, frame: &AudioFrame) -> Result<Option<EncodedFrame>, CodecError> {
        if frame.channels() != self.config.channels {
            return Err(CodecError::ChannelMismatch);
        }
        let n = self
            .inner
            .encode(frame.samples(), &mut self.out)
            .map_err(opus_err("encode"))?;
        if self.config.dtx && n <= 2 {
            return Ok(None);
        }
        Ok(Some(EncodedFrame {
            codec: CodecKind::Opus,
            data: Bytes::copy_from_slice(&self.out[..n]),
            pts_us: frame.pts_us(),
            keyframe: true,
        }))
    }
}

/// Opus decoder with packet-loss concealment and FEC recovery.
pub struct OpusDecoder {
    channels: Channels,
    inner: opus::Decoder,
    pcm: Vec<i16>,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// A decoder producing `channels` (Opus packets of either kind decode to it).
    pub fn new(channels: Channels) -> Result<Self, CodecError> {
        let inner = opus::Decoder::new(AUDIO_SAMPLE_RATE, opus_channels(channels))
            .map_err(opus_err("create decoder"))?;
        Ok(Self {
            channels,
            inner,
            pcm: vec![0; 960 * 2],
        })
    }

    fn frame(&self, samples_per_channel: usize, pts_us: i64) -> Result<AudioFrame, CodecError> {
        let n = samples_per_channel * self.channels.count();
        Ok(AudioFrame::new(
            self.channels,
            self.pcm[..n].to_vec(),
            pts_us,
        )?)
    }

    /// Samples per channel in a packet, if it is 10 or 20 ms (the frame sizes madang uses).
    fn packet_duration(&self, packet: &[u8]) -> Result<usize, CodecError> {
        let n = self
            .inner
            .get_nb_samples(packet)
            .map_err(|_| CodecError::InvalidPacket)?;
        if n == 480 || n == 960 {
            Ok(n)
        } else {
            Err(CodecError::UnsupportedPacketDuration { samples: n })
        }
    }

    /// Decodes one packet into a frame with the given pts.
    pub fn decode(&mut self, packet: &[u8], pts_us: i64) -> Result<AudioFrame, CodecError> {
        if packet.is_empty() {
            return Err(CodecError::EmptyInput);
        }
        let expected = self.packet_duration(packet)?;
        // Decode straight into the frame's own buffer: no copy on the hot path.
        let mut samples = vec![0i16; expected * self.channels.count()];
        let n = self
            .inner
            .decode(packet, &mut samples, false)
            .map_err(|_| CodecError::InvalidPacket)?;
        samples.truncate(n * self.channels.count());
        Ok(AudioFrame::new(self.channels, samples, pts_us)?)
    }

    /// Fills a gap of `samples_per_channel` (480 or 960) samples after a lost packet with
    /// concealment audio extrapolated from what came before.
    pub fn conceal(
        &mut self,
        samples_per_channel: usize,
        pts_us: i64,
    ) -> Result<AudioFrame, CodecError> {
        if samples_per_channel != 480 && samples_per_channel != 960 {
            return Err(CodecError::UnsupportedPacketDuration {
                samples: samples_per_channel,
            });
        }
        let len = samples_per_channel * self.channels.count();
        let n = self
            .inner
            .decode(&[], &mut self.pcm[..len], false)
            .map_err(opus_err("conceal"))?;
        self.frame(n, pts_us)
    }

    /// Recovers a lost packet from the FEC data in the packet that followed it (`next`), which
    /// must then still be decoded normally with [`decode`](Self::decode). When `next` carries no
    /// FEC, libopus falls back to concealment.
    pub fn decode_fec(&mut self, next: &[u8], pts_us: i64) -> Result<AudioFrame, CodecError> {
        if next.is_empty() {
            return Err(CodecError::EmptyInput);
        }
        let n = self.packet_duration(next)?;
        let len = n * self.channels.count();
        let got = self
            .inner
            .decode(next, &mut self.pcm[..len], true)
            .map_err(|_| CodecError::InvalidPacket)?;
        self.frame(got, pts_us)
    }
}
