//! H.264 through OpenH264: Constrained Baseline, Annex-B access units, as WebRTC browsers
//! expect them.

use bytes::Bytes;
use openh264::OpenH264API;
use openh264::decoder::{Decoder, DecoderConfig};
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Level, Profile,
    RateControlMode, UsageType,
};
use openh264::formats::YUVSource;

use super::{CodecError, nal};
use crate::media::{CodecKind, EncodedFrame, VideoFrame, check_dimensions};

/// OpenH264 refuses bitrates outside this range (bits per second).
const MIN_BITRATE: u32 = 10_000;
const MAX_BITRATE: u32 = 100_000_000;

/// Settings of an [`H264Encoder`].
///
/// ```
/// use madang::codec::H264Config;
/// let config = H264Config::new(1280, 720).bitrate_kbps(1500).max_fps(30.0).keyframe_interval(0);
/// assert_eq!(config.level_idc(), 31);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct H264Config {
    /// Picture width (even, 16..=3840).
    pub width: u32,
    /// Picture height (even, 16..=2160).
    pub height: u32,
    /// Target bitrate in bits per second (default 1.5 Mbps).
    pub bitrate_bps: u32,
    /// Highest frame rate the rate control plans for (default 30).
    pub max_fps: f32,
    /// Frames between periodic keyframes; 0 (default) means keyframes only at the start and
    /// on [`H264Encoder::request_keyframe`], the WebRTC way.
    pub keyframe_interval: u32,
    /// Encoder threads (default 1: one encoder per core scales best with many streams).
    pub threads: u16,
    /// Let rate control drop frames to hold the bitrate (default off: every frame is coded,
    /// which keeps loss measurements honest).
    pub allow_frame_skip: bool,
    /// Temporal layers, 1 (default) or 2. With 2, every other picture is a non-reference
    /// picture (`nal_ref_idc` 0): nothing refers to it, so a receiver that loses it shows
    /// the next one instead of waiting for a keyframe (see [`H264Config::temporal_layers`]).
    pub temporal_layers: u8,
}

impl H264Config {
    /// Defaults for a `width`×`height` picture.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            bitrate_bps: 1_500_000,
            max_fps: 30.0,
            keyframe_interval: 0,
            threads: 1,
            allow_frame_skip: false,
            temporal_layers: 1,
        }
    }

    /// Sets the target bitrate in kbit/s.
    pub fn bitrate_kbps(mut self, kbps: u32) -> Self {
        self.bitrate_bps = kbps.saturating_mul(1000);
        self
    }

    /// Sets the maximum frame rate.
    pub fn max_fps(mut self, fps: f32) -> Self {
        self.max_fps = fps;
        self
    }

    /// Sets the periodic keyframe interval in frames (0 = none).
    pub fn keyframe_interval(mut self, frames: u32) -> Self {
        self.keyframe_interval = frames;
        self
    }

    /// Sets the number of encoder threads.
    pub fn threads(mut self, threads: u16) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Allows or forbids frame skipping by rate control.
    pub fn allow_frame_skip(mut self, allow: bool) -> Self {
        self.allow_frame_skip = allow;
        self
    }

    /// Sets the number of temporal layers: 1, or 2 to make every other picture one that no
    /// other picture refers to. A picture lost on the way then costs that picture alone
    /// instead of a keyframe request and a freeze until the keyframe arrives; the price is
    /// a little compression (each reference picture refers two pictures back). Other values
    /// are refused by [`H264Encoder::new`].
    pub fn temporal_layers(mut self, layers: u8) -> Self {
        self.temporal_layers = layers;
        self
    }

    /// The H.264 `level_idc` this size and frame rate need: 31 (level 3.1, SDP `42e01f`)
    /// whenever it suffices, since that is what browsers offer by default.
    pub fn level_idc(&self) -> u8 {
        let mbs = (self.width.div_ceil(16) * self.height.div_ceil(16)) as f64;
        let mbps = mbs * self.max_fps.max(1.0) as f64;
        // (level_idc, max macroblocks per frame, max macroblocks per second), H.264 table A-1.
        const LEVELS: [(u8, f64, f64); 7] = [
            (31, 3600.0, 108_000.0),
            (32, 5120.0, 216_000.0),
            (40, 8192.0, 245_760.0),
            (42, 8704.0, 522_240.0),
            (50, 22_080.0, 589_824.0),
            (51, 36_864.0, 983_040.0),
            (52, 36_864.0, 2_073_600.0),
        ];
        LEVELS
            .iter()
            .find(|(_, frame, rate)| mbs <= *frame && mbps <= *rate)
            .map_or(52, |l| l.0)
    }

    /// The SDP `profile-level-id` of the stream: Constrained Baseline (`42e0`) and the level.
    pub fn profile_level_id(&self) -> String {
        format!("42e0{:02x}", self.level_idc())
    }

    fn validate(&self) -> Result<(), CodecError> {
        check_dimensions(self.width, self.height)?;
        if self.width.max(self.height) > 3840 || self.width.min(self.height) > 2160 {
            return Err(CodecError::UnsupportedSize {
                width: self.width,
                height: self.height,
            });
        }
        if !(MIN_BITRATE..=MAX_BITRATE).contains(&self.bitrate_bps) {
            return Err(CodecError::InvalidBitrate {
                bps: self.bitrate_bps,
            });
        }
        if !(self.max_fps.is_finite() && self.max_fps >= 1.0 && self.max_fps <= 240.0) {
            return Err(CodecError::InvalidFrameRate);
        }
        if !(1..=2).contains(&self.temporal_layers) {
            return Err(CodecError::InvalidTemporalLayers {
                layers: self.temporal_layers,
            });
        }
        Ok(())
    }

    fn to_openh264(&self) -> EncoderConfig {
        let level = match self.level_idc() {
            31 => Level::Level_3_1,
            32 => Level::Level_3_2,
            40 => Level::Level_4_0,
            42 => Level::Level_4_2,
            50 => Level::Level_5_0,
            51 => Level::Level_5_1,
            _ => Level::Level_5_2,
        };
        EncoderConfig::new()
            .bitrate(BitRate::from_bps(self.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(self.max_fps))
            .rate_control_mode(RateControlMode::Bitrate)
            .usage_type(UsageType::CameraVideoRealTime)
            .profile(Profile::Baseline)
            .level(level)
            .skip_frames(self.allow_frame_skip)
            .num_threads(self.threads)
            .intra_frame_period(IntraFramePeriod::from_num_frames(self.keyframe_interval))
    }
}

/// Borrowed view of a [`VideoFrame`] in the shape OpenH264 reads.
struct FrameSource<'a>(&'a VideoFrame);

impl YUVSource for FrameSource<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.width() as usize, self.0.height() as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        let [y, u, v] = self.0.strides();
        (y, u, v)
    }

    fn y(&self) -> &[u8] {
        self.0.y()
    }

    fn u(&self) -> &[u8] {
        self.0.u()
    }

    fn v(&self) -> &[u8] {
        self.0.v()
    }
}

/// H.264 encoder producing what WebRTC peers accept: Constrained Baseline, one slice per
/// picture, SPS and PPS in front of every IDR, Annex-B access units.
pub struct H264Encoder {
    config: H264Config,
    inner: Encoder,
    started: bool,
    keyframe_pending: bool,
    /// The bitrate it was made for; [`follow_bitrate`](Self::follow_bitrate) lets rate
    /// control skip frames well below it.
    nominal_bps: u32,
    /// Whether rate control may skip frames now.
    skipping: bool,
}

/// Below this share of its nominal bitrate an encoder following a target may skip frames:
/// without skipping, OpenH264 at its highest quantiser still needs a fifth to a half of it
/// (720p test pattern at 2.5 Mbit/s: ~500 kbit/s whatever the target below that), and a
/// sender that cannot go lower keeps a congested link's queue full (measured on RFC 8867's
/// 0.6 Mbit/s phase: 580–790 kbit/s sent for 12 s against a 206–300 kbit/s target,
/// 450–500 ms of queue). The cost: OpenH264 skips runs of frames, which a receiver shows as
/// freezes (a 640×360 publisher at 46 % of its rate froze Chromium 3.6 s in 40 s); at 40 %
/// instead, RFC 8867's drop left 278 ms of queue (p95) and the rise to 2.5 Mbit/s took 20 s
/// to use 80 %. Lower resolutions (simulcast layers) are the better answer.
pub const SKIP_BELOW_SHARE: f64 = 0.6;

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Silences OpenH264's own stderr logging before it initialises. Without this, every encoder
/// prints a warning that bitrate control without frame skipping is approximate, which is the
/// trade madang chooses on purpose (see [`H264Config::allow_frame_skip`]).
#[allow(unsafe_code)]
fn quiet(encoder: &mut Encoder) {
    let mut level = openh264_sys2::WELS_LOG_QUIET;
    // SAFETY: ENCODER_OPTION_TRACE_LEVEL is the one option OpenH264 accepts before
    // initialisation; it reads a 32-bit level through the pointer, which outlives the call.
    // A failure only means the warning stays, so the return code is ignored.
    unsafe {
        encoder.raw_api().set_option(
            openh264_sys2::ENCODER_OPTION_TRACE_LEVEL,
            (&raw mut level).cast(),
        );
    }
}

fn native_code(e: &openh264::Error) -> i64 {
    e.native_code()
}

impl H264Encoder {
    /// Creates an encoder; the size is fixed (frames of another size are refused).
    pub fn new(config: H264Config) -> Result<Self, CodecError> {
        config.validate()?;
        let mut inner = Encoder::with_api_config(OpenH264API::from_source(), config.to_openh264())
            .map_err(|e| CodecError::Encoder {
                code: native_code(&e),
            })?;
        quiet(&mut inner);
        Ok(Self {
            nominal_bps: config.bitrate_bps,
            skipping: config.allow_frame_skip,
            config,
            inner,
            started: false,
            keyframe_pending: false,
        })
    }

    /// The current settings (the bitrate follows [`set_bitrate`](Self::set_bitrate)).
    pub fn config(&self) -> &H264Config {
        &self.config
    }

    /// Encodes one frame into one access unit. `Ok(None)` only when frame skipping is allowed
    /// and rate control skipped this frame.
    pub fn encode(&mut self, frame: &VideoFrame) -> Result<Option<EncodedFrame>, CodecError> {
        if (frame.width(), frame.height()) != (self.config.width, self.config.height) {
            return Err(CodecError::FrameSizeMismatch {
                expected: (self.config.width, self.config.height),
                got: (frame.width(), frame.height()),
            });
        }
        if !self.started && self.config.temporal_layers > 1 {
            self.start_temporal_layers()?;
        }
        if self.keyframe_pending {
            self.inner.force_intra_frame();
            self.keyframe_pending = false;
        }
        let stream = self
            .inner
            .encode(&FrameSource(frame))
            .map_err(|e| CodecError::Encoder {
                code: native_code(&e),
            })?;
        self.started = true;
        let frame_type = stream.frame_type();
        if matches!(frame_type, FrameType::Skip | FrameType::Invalid) {
            return Ok(None);
        }
        let mut data = Vec::with_capacity(self.config.bitrate_bps as usize / 8 / 10);
        stream.write_vec(&mut data);
        Ok(Some(EncodedFrame {
            codec: CodecKind::H264,
            data: Bytes::from(data),
            pts_us: frame.pts_us(),
            keyframe: frame_type == FrameType::IDR,
        }))
    }

    /// Makes the next encoded frame an IDR (with SPS and PPS), as a PLI or FIR asks.
    pub fn request_keyframe(&mut self) {
        // The first frame is an IDR anyway; OpenH264 is initialised lazily on that frame, so
        // the request is applied right before the next encode.
        if self.started {
            self.keyframe_pending = true;
        }
    }

    /// Changes the target bitrate while encoding (bandwidth estimation calls this).
    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), CodecError> {
        if !(MIN_BITRATE..=MAX_BITRATE).contains(&bps) {
            return Err(CodecError::InvalidBitrate { bps });
        }
        if !self.started {
            // Not initialised yet: simply start with the new setting.
            let config = H264Config {
                bitrate_bps: bps,
                ..self.config.clone()
            };
            let nominal_bps = self.nominal_bps;
            *self = Self::new(config)?;
            self.nominal_bps = nominal_bps;
            return Ok(());
        }
        self.apply_bitrate(bps)?;
        self.config.bitrate_bps = bps;
        Ok(())
    }

    /// Follows a bitrate target that moves often (the uplink estimate): changes the encoder's
    /// bitrate when `bps` is more than 5 % away from it, and says whether it did. Smaller
    /// moves are left alone: every change restarts OpenH264's rate control window. Below
    /// 60 % of the bitrate it was made for (`SKIP_BELOW_SHARE`), rate control may skip frames
    /// ([`encode`](Self::encode) then returns `Ok(None)` for some), so that it can really
    /// send as little as asked.
    pub fn follow_bitrate(&mut self, bps: u32) -> Result<bool, CodecError> {
        let now = self.config.bitrate_bps as f64;
        let changed = (bps as f64 - now).abs() > 0.05 * now;
        if changed {
            self.set_bitrate(bps)?;
        }
        let skip = self.config.allow_frame_skip
            || (bps as f64) < SKIP_BELOW_SHARE * self.nominal_bps as f64;
        if self.started && skip != self.skipping {
            self.apply_frame_skip(skip)?;
        }
        Ok(changed)
    }

    /// Whether rate control may skip frames now.
    pub fn skipping_frames(&self) -> bool {
        self.skipping
    }

    /// The safe OpenH264 API initialises the encoder with one temporal layer on its first
    /// picture and offers no setting for more; the option API changes it once initialised.
    /// So a black picture initialises it (its output is dropped), then the layers are set:
    /// OpenH264 starts over on that change, and the first real picture is its IDR.
    #[allow(unsafe_code)]
    fn start_temporal_layers(&mut self) -> Result<(), CodecError> {
        use openh264_sys2::{ENCODER_OPTION_SVC_ENCODE_PARAM_EXT, SEncParamExt};
        let black = VideoFrame::black(self.config.width, self.config.height)?;
        self.inner
            .encode(&FrameSource(&black))
            .map_err(|e| CodecError::Encoder {
                code: native_code(&e),
            })?;
        let mut params = SEncParamExt::default();
        // SAFETY: the encoder is initialised (it just encoded a picture); the option reads
        // or writes exactly one SEncParamExt through the pointer, which outlives each call.
        // The parameters are the ones the safe wrapper set, read back, with one change.
        let code = unsafe {
            let api = self.inner.raw_api();
            match api.get_option(
                ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
                (&raw mut params).cast(),
            ) {
                0 => {
                    params.iTemporalLayerNum = self.config.temporal_layers.into();
                    api.set_option(
                        ENCODER_OPTION_SVC_ENCODE_PARAM_EXT,
                        (&raw mut params).cast(),
                    )
                }
                code => code,
            }
        };
        if code != 0 {
            return Err(CodecError::Encoder { code: code as i64 });
        }
        Ok(())
    }

    #[allow(unsafe_code)]
    fn apply_frame_skip(&mut self, on: bool) -> Result<(), CodecError> {
        let mut value = on;
        // SAFETY: the encoder is initialised (`started`); ENCODER_OPTION_RC_FRAME_SKIP reads
        // one `bool` through the pointer, which outlives the call.
        let code = unsafe {
            self.inner.raw_api().set_option(
                openh264_sys2::ENCODER_OPTION_RC_FRAME_SKIP,
                (&raw mut value).cast(),
            )
        };
        if code != 0 {
            return Err(CodecError::Encoder { code: code as i64 });
        }
        self.skipping = on;
        Ok(())
    }

    /// The safe OpenH264 API fixes the bitrate at initialisation; the option API changes it in
    /// place. The layer's maximum is raised before (or lowered after) the target so the target
    /// never exceeds it.
    #[allow(unsafe_code)]
    fn apply_bitrate(&mut self, bps: u32) -> Result<(), CodecError> {
        use openh264_sys2::{
            ENCODER_OPTION, ENCODER_OPTION_BITRATE, ENCODER_OPTION_MAX_BITRATE, SBitrateInfo,
            SPATIAL_LAYER_0, SPATIAL_LAYER_ALL,
        };
        let raising = bps > self.config.bitrate_bps;
        let steps: [(ENCODER_OPTION, _); 2] = if raising {
            [
                (ENCODER_OPTION_MAX_BITRATE, SPATIAL_LAYER_0),
                (ENCODER_OPTION_BITRATE, SPATIAL_LAYER_ALL),
            ]
        } else {
            [
                (ENCODER_OPTION_BITRATE, SPATIAL_LAYER_ALL),
                (ENCODER_OPTION_MAX_BITRATE, SPATIAL_LAYER_0),
            ]
        };
        for (option, layer) in steps {
            let mut info = SBitrateInfo {
                iLayer: layer,
                // In MIN_BITRATE..=MAX_BITRATE, checked by the caller, so it fits a c_int.
                iBitrate: bps as std::os::raw::c_int,
            };
            // SAFETY: the encoder is initialised (`started`), `info` is a valid SBitrateInfo
            // that outlives the call, and both options take exactly that struct; OpenH264 only
            // reads it. Neither option touches settings the safe wrapper relies on.
            let code = unsafe {
                self.inner
                    .raw_api()
                    .set_option(option, (&raw mut info).cast())
            };
            if code != 0 {
                return Err(CodecError::Encoder { code: code as i64 });
            }
        }
        Ok(())
    }
}

/// H.264 decoder (OpenH264, single-threaded).
///
/// Decoding starts at an IDR. After a corrupt or missing access unit it reports
/// [`keyframe_needed`](Self::keyframe_needed) and drops access units until the next IDR
/// instead of showing a broken picture; the caller asks the sender for a keyframe (PLI).
pub struct H264Decoder {
    inner: Decoder,
    waiting_for_keyframe: bool,
    frames_decoded: u64,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Decoder")
            .field("waiting_for_keyframe", &self.waiting_for_keyframe)
            .field("frames_decoded", &self.frames_decoded)
            .finish_non_exhaustive()
    }
}

impl H264Decoder {
    /// Creates a decoder.
    pub fn new() -> Result<Self, CodecError> {
        let inner = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
            .map_err(|e| CodecError::Decoder {
                code: native_code(&e),
            })?;
        Ok(Self {
            inner,
            waiting_for_keyframe: true,
            frames_decoded: 0,
        })
    }

    /// True until an IDR has been decoded, and again after a decoding error.
    pub fn keyframe_needed(&self) -> bool {
        self.waiting_for_keyframe
    }

    /// Pictures decoded so far.
    pub fn frames_decoded(&self) -> u64 {
        self.frames_decoded
    }

    /// Decodes an [`EncodedFrame`], keeping its pts.
    pub fn decode_frame(&mut self, unit: &EncodedFrame) -> Result<Option<VideoFrame>, CodecError> {
        let mut frame = self.decode(&unit.data)?;
        if let Some(f) = &mut frame {
            f.set_pts_us(unit.pts_us);
        }
        Ok(frame)
    }

    /// Decodes one Annex-B access unit. `Ok(None)` when it carried no picture (parameter sets
    /// only). Errors: [`CodecError::EmptyInput`], [`CodecError::NotAnnexB`],
    /// [`CodecError::NeedKeyframe`] (waiting for an IDR; the unit was dropped) and
    /// [`CodecError::Decoder`] (corrupt data; the decoder now waits for an IDR).
    pub fn decode(&mut self, access_unit: &[u8]) -> Result<Option<VideoFrame>, CodecError> {
        if access_unit.is_empty() {
            return Err(CodecError::EmptyInput);
        }
        if !nal::looks_like_annex_b(access_unit) {
            self.waiting_for_keyframe = true;
            return Err(CodecError::NotAnnexB);
        }
        let has_idr = nal::is_keyframe(access_unit);
        let has_slice =
            nal::nal_units(access_unit).any(|u| nal::nal_type(u) == Some(nal::NAL_SLICE));
        if self.waiting_for_keyframe && has_slice && !has_idr {
            return Err(CodecError::NeedKeyframe);
        }
        let decoded = match self.inner.decode(access_unit) {
            Ok(Some(yuv)) => {
                let (w, h) = yuv.dimensions();
                let (sy, su, sv) = yuv.strides();
                Some(VideoFrame::from_planes(
                    w as u32,
                    h as u32,
                    [yuv.y(), yuv.u(), yuv.v()],
                    [sy, su, sv],
                    0,
                )?)
            }
            Ok(None) => None,
            Err(e) => {
                self.waiting_for_keyframe = true;
                return Err(CodecError::Decoder {
                    code: native_code(&e),
                });
            }
        };
        if decoded.is_some() {
            self.frames_decoded += 1;
            if has_idr {
                self.waiting_for_keyframe = false;
            }
        } else if has_idr || has_slice {
            // A slice went in and no picture came out: the unit was incomplete.
            self.waiting_for_keyframe = true;
            return Err(CodecError::Decoder { code: 0 });
        }
        Ok(decoded)
    }
}
