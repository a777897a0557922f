//! The publishing side of a session: the publishing connection and its offer, and each
//! encoded frame packetised (H.264 FU-A, one Opus packet per RTP packet) and written with
//! its RTP clock, sequence numbers and audio level.

use std::time::Instant;

use bytes::Bytes;
use rand::Rng;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;

use super::pc::ClientPc;
use super::{Session, Which};
use crate::codec::rtp::{MAX_RTP_PAYLOAD, VOICE_THRESHOLD_DBOV, packetize_h264};
use crate::media::EncodedFrame;
use crate::room::RoomError;
use crate::signal::{ClientMessage, PeerRole, PublishTrack, TrackKind, TrackSource};
use crate::transport::AUDIO_LEVEL_URI;
use crate::transport::cc::SendSide;

/// RTP state of one published track.
pub(super) struct Outgoing {
    sender: RTCRtpSenderId,
    kind: TrackKind,
    ssrc: u32,
    payload_type: u8,
    seq: u16,
    /// Random start of the RTP clock.
    ts_offset: u32,
    last_ts: Option<u32>,
    /// RTP clock ticks of one frame, for frames whose pts does not advance.
    frame_ticks: u32,
    audio_level_id: Option<u8>,
}

impl Outgoing {
    /// The SSRC the track is sent with.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }
}

impl Session {
    /// Sends one encoded H.264 access unit (Annex-B) on the camera track. Returns whether it
    /// went out: before the publishing connection is up it is dropped and counted, and the
    /// next picture should be a keyframe.
    pub fn send_video(&mut self, now: Instant, unit: &EncodedFrame) -> Result<bool, RoomError> {
        self.advance(now);
        if self.video_out.is_none() {
            return Err(RoomError::NotPublishing("video"));
        }
        if !self.publishing_ready() {
            self.keyframe_wanted = true;
            self.send_stats.dropped_before_connected += 1;
            return Ok(false);
        }
        self.send_stats.video_frames += 1;
        let uplink = self.send_estimate.detail();
        self.send_stats.uplink_estimate_bps = uplink.bps().unwrap_or(0);
        self.send_stats.uplink_delay_based_bps = uplink.delay_based_bps as u64;
        self.send_stats.uplink_loss_based_bps = uplink.loss_based_bps as u64;
        self.send_stats.video_target_bps = self.video_target_bps().unwrap_or(0) as u64;
        self.send_stats.keyframes += unit.keyframe as u64;
        self.send_stats.video_bytes += unit.data.len() as u64;
        let payloads = packetize_h264(&unit.data, MAX_RTP_PAYLOAD);
        self.write_frame(now, TrackKind::Video, unit.pts_us, payloads, None)?;
        Ok(true)
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
        self.write_frame(
            now,
            TrackKind::Audio,
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
        let mut tracks = Vec::new();
        for (kind, on) in [
            (TrackKind::Video, self.config.video),
            (TrackKind::Audio, self.config.audio),
        ] {
            if !on {
                continue;
            }
            let ssrc = self.rng.random::<u32>() | 1;
            let sender = conn.add_send_track(kind, ssrc)?;
            let (payload_type, frame_ticks) = match kind {
                TrackKind::Video => (crate::transport::H264_PAYLOAD_TYPE, 90_000 / fps),
                TrackKind::Audio => (crate::transport::OPUS_PAYLOAD_TYPE, 960),
            };
            tracks.push(Outgoing {
                sender,
                kind,
                ssrc,
                payload_type,
                seq: self.rng.random(),
                ts_offset: self.rng.random(),
                last_ts: None,
                frame_ticks,
                audio_level_id: None,
            });
        }
        let sdp = conn.offer(now)?;
        let mut publish = Vec::new();
        for t in tracks {
            let mid = conn
                .sender_mid(t.sender)
                .ok_or_else(|| RoomError::WebRtc("send track has no mid after the offer".into()))?;
            let source = match t.kind {
                TrackKind::Video => TrackSource::Camera,
                TrackKind::Audio => TrackSource::Microphone,
            };
            publish.push(PublishTrack {
                mid,
                kind: t.kind,
                source,
            });
            match t.kind {
                TrackKind::Video => self.video_out = Some(t),
                TrackKind::Audio => self.audio_out = Some(t),
            }
        }
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
        for out in [self.video_out.as_mut(), self.audio_out.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some(mut sender) = conn.pc.rtp_sender(out.sender) {
                let params = sender.get_parameters();
                if let Some(codec) = params.rtp_parameters.codecs.first() {
                    out.payload_type = codec.payload_type;
                }
                out.audio_level_id = params
                    .rtp_parameters
                    .header_extensions
                    .iter()
                    .find(|e| e.uri == AUDIO_LEVEL_URI)
                    .map(|e| e.id as u8);
            }
        }
    }

    /// Packetises one frame and writes it on its track.
    fn write_frame(
        &mut self,
        now: Instant,
        kind: TrackKind,
        pts_us: i64,
        payloads: Vec<Bytes>,
        level: Option<u8>,
    ) -> Result<(), RoomError> {
        let (out, conn) = match kind {
            TrackKind::Video => (self.video_out.as_mut(), self.publisher.as_mut()),
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
        for (i, payload) in payloads.into_iter().enumerate() {
            let mut header = rtp::header::Header {
                version: 2,
                marker: i + 1 == n,
                payload_type: out.payload_type,
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
            sender
                .write_rtp(now, rtp::Packet { header, payload })
                .map_err(|e| RoomError::WebRtc(e.to_string()))?;
        }
        self.dirty[Which::Publisher as usize] = true;
        Ok(())
    }
}
