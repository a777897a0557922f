//! The publishing side of a session: the publishing connection and its offer, and each
//! encoded frame packetised (H.264 FU-A, one Opus packet per RTP packet) and written with
//! its RTP clock, sequence numbers and audio level.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;

use super::pc::ClientPc;
use super::{Session, VIDEO_OVERHEAD, Which};
use crate::codec::red::RedHistory;
use crate::codec::rtp::{MAX_RTP_PAYLOAD, VOICE_THRESHOLD_DBOV, packetize_h264};
use crate::media::EncodedFrame;
use crate::room::RoomError;
use crate::sfu::allocate::{Change, Video};
use crate::signal::{ClientMessage, PeerRole, PublishTrack, TrackKind, TrackSource};
use crate::transport::AUDIO_LEVEL_URI;
use crate::transport::cc::SendSide;
use rtc::sdp::extmap::{SDES_MID_URI, SDES_RTP_STREAM_ID_URI};

/// RTP state of one published track.
pub(super) struct Outgoing {
    sender: RTCRtpSenderId,
    pub(super) ssrc: u32,
    payload_type: u8,
    seq: u16,
    /// Random start of the RTP clock.
    ts_offset: u32,
    last_ts: Option<u32>,
    /// RTP clock ticks of one frame, for frames whose pts does not advance.
    frame_ticks: u32,
    audio_level_id: Option<u8>,
    /// Simulcast: the layer's RTP stream id, sent in every packet with the mid (the
    /// server tells the layers apart by them), and the two extensions' ids once the
    /// answer gave them.
    rid: Option<String>,
    stream_id_ext: Option<StreamIdExt>,
    /// Its bitrate when the uplink carries it (video), bit/s.
    pub(super) nominal_bps: u32,
    /// Encoded and sent now (video layers: the uplink may pause the upper ones).
    pub(super) on: bool,
    /// The next picture of this stream should be a keyframe.
    pub(super) keyframe: bool,
    /// Redundant audio (RFC 2198): its payload type once the answer took it, the last
    /// frames sent, and whether copies go out now (the server reports loss on the way up).
    red_payload_type: Option<u8>,
    red: RedHistory,
    pub(super) red_on: bool,
}

/// The mid and RTP stream id header extensions of a simulcast layer.
struct StreamIdExt {
    mid_id: u8,
    mid: Bytes,
    rid_id: u8,
    rid: Bytes,
}

impl Outgoing {
    /// The SSRC the track is sent with.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }
}

/// How often the uplink decides which simulcast layers it carries.
const LAYER_DECISION_EVERY: Duration = Duration::from_millis(500);

impl Session {
    /// Sends one encoded H.264 access unit (Annex-B) on the camera track (its smallest
    /// layer with simulcast). Returns whether it went out: before the publishing connection
    /// is up it is dropped and counted, and the next picture should be a keyframe.
    pub fn send_video(&mut self, now: Instant, unit: &EncodedFrame) -> Result<bool, RoomError> {
        self.send_video_layer(now, 0, unit)
    }

    /// Sends one encoded access unit of simulcast layer `layer` (an index into
    /// [`SessionConfig::video_layers`](super::SessionConfig::video_layers), smallest
    /// first). Like [`send_video`](Self::send_video) otherwise.
    pub fn send_video_layer(
        &mut self,
        now: Instant,
        layer: usize,
        unit: &EncodedFrame,
    ) -> Result<bool, RoomError> {
        self.advance(now);
        let ready = self.publishing_ready();
        let Some(out) = self.video_out.get_mut(layer) else {
            return Err(RoomError::NotPublishing("video"));
        };
        if !ready {
            out.keyframe = true;
            self.send_stats.dropped_before_connected += 1;
            return Ok(false);
        }
        if layer == 0 {
            self.send_stats.video_frames += 1;
            self.decide_layers(now);
            self.send_stats.video_layers_on = self.video_out.iter().filter(|o| o.on).count() as u32;
        }
        let uplink = self.send_estimate.detail();
        self.send_stats.uplink_estimate_bps = uplink.bps().unwrap_or(0);
        self.send_stats.uplink_delay_based_bps = uplink.delay_based_bps as u64;
        self.send_stats.uplink_loss_based_bps = uplink.loss_based_bps as u64;
        self.send_stats.video_target_bps = self.video_target_bps().unwrap_or(0) as u64;
        self.send_stats.keyframes += unit.keyframe as u64;
        self.send_stats.video_bytes += unit.data.len() as u64;
        let payloads = packetize_h264(&unit.data, MAX_RTP_PAYLOAD);
        self.write_frame(now, TrackKind::Video, layer, unit.pts_us, payloads, None)?;
        Ok(true)
    }

    /// Which simulcast layers the uplink carries, decided every [`LAYER_DECISION_EVERY`]
    /// by the same policy the server uses for a subscriber's videos (see
    /// [`crate::sfu::allocate`]): the layers are the "videos", the upper ones the least
    /// important; a fall of the estimate below what is sent pauses from the top, a paused
    /// layer comes back when there is room or, after a hold, as a probe. The smallest
    /// layer is never paused.
    fn decide_layers(&mut self, now: Instant) {
        if self.video_out.len() < 2 || now < self.next_layer_decision {
            return;
        }
        self.next_layer_decision = now + LAYER_DECISION_EVERY;
        let detail = self.send_estimate.detail();
        let Some(estimate) = detail.bps() else {
            return;
        };
        let layers: Vec<Video> = self
            .video_out
            .iter()
            .enumerate()
            .map(|(i, out)| Video {
                slot: i,
                priority: i as u32,
                layers: vec![out.nominal_bps as f64 / (1.0 - VIDEO_OVERHEAD)],
                layer: out.on.then_some(0),
                max_layer: 0,
            })
            .collect();
        let audio = self.audio_allowance();
        for change in self
            .uplink_layers
            .decide(now, estimate as f64, detail.loss, audio, &layers)
        {
            let (i, on) = match change {
                Change::Pause(i) => (i, false),
                Change::Forward(i, _) => (i, true),
                // Padding probes are not switched on for an uplink: its layers are raised.
                Change::Probe(_) => continue,
            };
            if i == 0 {
                continue;
            }
            let out = &mut self.video_out[i];
            if on && !out.on {
                out.keyframe = true;
            }
            out.on = on;
            tracing::debug!(
                "simulcast layer {i} {} (uplink estimate {} kbit/s)",
                if on { "resumed" } else { "paused" },
                estimate / 1000
            );
        }
    }

    /// Sends one encoded Opus packet on the microphone track with its RFC 6464 level (dBov,
    /// 127 = silence). Dropped and counted before the publishing connection is up.
    pub fn send_audio(
        &mut self,
        now: Instant,
        packet: &EncodedFrame,
        level_dbov: u8,
    ) -> Result<bool, RoomError> {
        self.advance(now);
        if self.audio_out.is_none() {
            return Err(RoomError::NotPublishing("audio"));
        }
        if !self.publishing_ready() {
            self.send_stats.dropped_before_connected += 1;
            return Ok(false);
        }
        self.send_stats.audio_frames += 1;
        self.send_stats.audio_bytes += packet.data.len() as u64;
        self.send_stats.audio_target_bps = self.audio_target().bitrate_bps as u64;
        self.write_frame(
            now,
            TrackKind::Audio,
            0,
            packet.pts_us,
            vec![packet.data.clone()],
            Some(level_dbov.min(127)),
        )?;
        Ok(true)
    }

    /// Sets up the publishing connection and sends its offer.
    pub(super) fn start_publishing(&mut self, now: Instant) -> Result<(), RoomError> {
        if !self.config.video && !self.config.audio {
            return Ok(());
        }
        // Congestion control on the uplink. A replaced connection starts from the last
        // estimate rather than from the start again.
        let mut side = SendSide::new(self.max_uplink_bps());
        if let Some(bps) = self.send_estimate.bps() {
            side.initial_bps = (bps as f64).min(side.max_bps);
        }
        side.estimate = self.send_estimate.clone();
        let mut conn = ClientPc::new(self.local_pub, now, Some(&side))?;
        let fps = self.config.fps.max(1);
        let mut tracks: Vec<(TrackKind, RTCRtpSenderId, Vec<Outgoing>)> = Vec::new();
        for (kind, on) in [
            (TrackKind::Video, self.config.video),
            (TrackKind::Audio, self.config.audio),
        ] {
            if !on {
                continue;
            }
            let (payload_type, frame_ticks) = match kind {
                TrackKind::Video => (crate::transport::H264_PAYLOAD_TYPE, 90_000 / fps),
                TrackKind::Audio => (crate::transport::OPUS_PAYLOAD_TYPE, 960),
            };
            // One stream per simulcast layer (one without simulcast), all on one RTP
            // clock so that the server can switch between them.
            let rids: Vec<(Option<String>, u32)> = match kind {
                TrackKind::Video => self
                    .video_layers()
                    .iter()
                    .map(|l| ((!l.rid.is_empty()).then(|| l.rid.clone()), l.bitrate_bps))
                    .collect(),
                TrackKind::Audio => vec![(None, 0)],
            };
            // Drawn in the order a single stream always drew them (SSRC, sequence number,
            // clock offset), so that seeded runs stay comparable.
            let mut ts_offset = None;
            let mut streams: Vec<Outgoing> = Vec::with_capacity(rids.len());
            for (rid, nominal_bps) in rids {
                let ssrc = self.rng.random::<u32>() | 1;
                let seq = self.rng.random();
                let ts_offset = *ts_offset.get_or_insert_with(|| self.rng.random());
                streams.push(Outgoing {
                    sender: RTCRtpSenderId::from(0),
                    ssrc,
                    payload_type,
                    seq,
                    ts_offset,
                    last_ts: None,
                    frame_ticks,
                    audio_level_id: None,
                    rid,
                    stream_id_ext: None,
                    nominal_bps,
                    on: true,
                    keyframe: true,
                    red_payload_type: None,
                    red: RedHistory::default(),
                    red_on: false,
                });
            }
            let encodings: Vec<(String, u32)> = streams
                .iter()
                .map(|o| (o.rid.clone().unwrap_or_default(), o.ssrc))
                .collect();
            let sender = conn.add_send_track(kind, &encodings)?;
            tracks.push((kind, sender, streams));
        }
        let sdp = conn.offer(now)?;
        let mut publish = Vec::new();
        for (kind, sender, mut streams) in tracks {
            let mid = conn
                .sender_mid(sender)
                .ok_or_else(|| RoomError::WebRtc("send track has no mid after the offer".into()))?;
            let source = match kind {
                TrackKind::Video => TrackSource::Camera,
                TrackKind::Audio => TrackSource::Microphone,
            };
            publish.push(PublishTrack { mid, kind, source });
            for s in &mut streams {
                s.sender = sender;
            }
            match kind {
                TrackKind::Video => self.video_out = streams,
                TrackKind::Audio => self.audio_out = streams.pop(),
            }
        }
        self.publish = publish.clone();
        self.signal_out.push_back(ClientMessage::Offer {
            pc: PeerRole::Publisher,
            sdp,
            publish,
        });
        self.publisher = Some(conn);
        self.dirty[Which::Publisher as usize] = true;
        Ok(())
    }

    /// The payload types and audio-level extension id the answer settled on.
    pub(super) fn learn_send_parameters(&mut self) {
        let Some(conn) = self.publisher.as_mut() else {
            return;
        };
        for out in self.video_out.iter_mut().chain(self.audio_out.as_mut()) {
            let mid = conn
                .pc
                .rtp_transceiver(out.sender.into())
                .and_then(|t| t.mid().clone());
            let Some(mut sender) = conn.pc.rtp_sender(out.sender) else {
                continue;
            };
            let params = sender.get_parameters();
            if let Some(codec) = params.rtp_parameters.codecs.first() {
                out.payload_type = codec.payload_type;
            }
            out.red_payload_type =
                crate::transport::red_payload_type(&params.rtp_parameters.codecs, out.payload_type);
            let ext_id = |uri: &str| {
                params
                    .rtp_parameters
                    .header_extensions
                    .iter()
                    .find(|e| e.uri == uri)
                    .map(|e| e.id as u8)
            };
            out.audio_level_id = ext_id(AUDIO_LEVEL_URI);
            out.stream_id_ext = match (
                &out.rid,
                mid,
                ext_id(SDES_MID_URI),
                ext_id(SDES_RTP_STREAM_ID_URI),
            ) {
                (Some(rid), Some(mid), Some(mid_id), Some(rid_id)) => Some(StreamIdExt {
                    mid_id,
                    mid: Bytes::from(mid.into_bytes()),
                    rid_id,
                    rid: Bytes::from(rid.clone().into_bytes()),
                }),
                _ => None,
            };
        }
    }

    /// Packetises one frame and writes it on its track.
    fn write_frame(
        &mut self,
        now: Instant,
        kind: TrackKind,
        layer: usize,
        pts_us: i64,
        payloads: Vec<Bytes>,
        level: Option<u8>,
    ) -> Result<(), RoomError> {
        let (out, conn) = match kind {
            TrackKind::Video => (self.video_out.get_mut(layer), self.publisher.as_mut()),
            TrackKind::Audio => (self.audio_out.as_mut(), self.publisher.as_mut()),
        };
        let (Some(out), Some(conn)) = (out, conn) else {
            return Err(RoomError::NotPublishing(kind.as_str()));
        };
        let clock_per_ms: i64 = match kind {
            TrackKind::Video => 90,
            TrackKind::Audio => 48,
        };
        let mut ts = out
            .ts_offset
            .wrapping_add((pts_us.max(0) * clock_per_ms / 1000) as u32);
        if let Some(last) = out.last_ts
            && ts.wrapping_sub(last) as i32 <= 0
        {
            // The pts did not advance: go on at the nominal frame rate.
            ts = last.wrapping_add(out.frame_ticks);
        }
        out.last_ts = Some(ts);
        let Some(mut sender) = conn.pc.rtp_sender(out.sender) else {
            return Err(RoomError::NotPublishing(kind.as_str()));
        };
        let n = payloads.len();
        for (i, mut payload) in payloads.into_iter().enumerate() {
            let mut payload_type = out.payload_type;
            if kind == TrackKind::Audio {
                // Remembered only where copies were negotiated and may be switched on.
                match (out.red_payload_type, out.red_on) {
                    (Some(red), true) => {
                        payload = out.red.wrap(out.payload_type, out.seq, ts, &payload);
                        payload_type = red;
                    }
                    (Some(_), false) => out.red.remember(out.seq, ts, &payload),
                    (None, _) => {}
                }
            }
            let mut header = rtp::header::Header {
                version: 2,
                marker: i + 1 == n,
                payload_type,
                sequence_number: out.seq,
                timestamp: ts,
                ssrc: out.ssrc,
                ..Default::default()
            };
            out.seq = out.seq.wrapping_add(1);
            if let (Some(id), Some(level)) = (out.audio_level_id, level) {
                let voice = level < VOICE_THRESHOLD_DBOV;
                let byte = (u8::from(voice) << 7) | level;
                let _ = header.set_extension(id, Bytes::copy_from_slice(&[byte]));
            }
            if let Some(ext) = &out.stream_id_ext {
                let _ = header.set_extension(ext.mid_id, ext.mid.clone());
                let _ = header.set_extension(ext.rid_id, ext.rid.clone());
            }
            sender
                .write_rtp(now, rtp::Packet { header, payload })
                .map_err(|e| RoomError::WebRtc(e.to_string()))?;
        }
        self.dirty[Which::Publisher as usize] = true;
        Ok(())
    }
}
