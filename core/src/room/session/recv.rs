//! The receiving side of one subscriber slot: RTP packets in (already decrypted, in arrival
//! order), through the video jitter buffer or the audio playout buffer, pictures and audio
//! decoded at their playout time, NACKs and keyframe requests out, everything counted.
//! Pure: the caller passes `now`.

use std::time::{Duration, Instant};

use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpReceiverId;

use crate::codec::nal::{rtp_payload_sps, rtp_payload_starts_keyframe};
use crate::codec::red::Red;
use crate::codec::{H264Decoder, OpusDecoder};
use crate::media::Channels;
use crate::room::RoomEvent;
use crate::signal::TrackKind;
use crate::transport::RED_PAYLOAD_TYPE;
use crate::transport::clock::SeqExtender;
use crate::transport::jitter::VideoBuffer;
use crate::transport::playout::{AudioOut, AudioPlayout};

/// What one remote track delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackStats {
    /// Track id (`identity/source`).
    pub track: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// RTP packets received.
    pub packets: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Packets that never arrived (expected by sequence number, minus received).
    pub packets_lost: u64,
    /// Pictures displayed (or audio frames played from their own packet).
    pub frames_decoded: u64,
    /// Pictures dropped for missing packets or decoder errors; audio frames concealed or
    /// skipped.
    pub frames_lost: u64,
    /// Size of the last picture decoded (the simulcast layer the server forwards), `(0, 0)`
    /// before one and for audio.
    pub frame_size: (u32, u32),
    /// Keyframe requests sent.
    pub keyframes_requested: u64,
    /// NACK entries sent (one per packet asked for, repeats included).
    pub nacks_sent: u64,
    /// Packets that arrived after being NACKed: repaired by retransmission.
    pub packets_recovered: u64,
    /// Times the picture froze: no new picture for more than three frame intervals and more
    /// than one interval + 150 ms (as browsers count `freezeCount`).
    pub freezes: u64,
    /// Total length of those freezes, ms.
    pub freeze_ms: f64,
    /// Audio frames rebuilt from the next packet's in-band FEC.
    pub audio_fec_frames: u64,
    /// Audio frames played from a copy in a later packet (redundant audio, RFC 2198), their
    /// own packet lost.
    pub audio_copy_frames: u64,
    /// Audio concealed (lost and not rebuilt), ms.
    pub audio_concealed_ms: f64,
    /// Current delay of the jitter buffer (video) or playout buffer (audio) on top of the
    /// fastest transit, ms.
    pub buffer_delay_ms: f64,
    /// Seconds between the first and the last packet.
    pub seconds: f64,
    /// Inter-arrival jitter in ms (RFC 3550).
    pub jitter_ms: Option<f64>,
    /// Round-trip time to the server on the receiving connection in ms, filled by
    /// [`Room::stats`](crate::room::Room::stats).
    pub rtt_ms: Option<f64>,
    /// When the first picture a decoder could show was there: decoded, or — when pictures
    /// are only counted (`decode_video` off) — the last packet of the first keyframe that
    /// arrived whole and in order. `None` for audio and before.
    pub first_picture: Option<Instant>,
}

impl TrackStats {
    pub(crate) fn new(track: &str, kind: TrackKind) -> Self {
        Self {
            track: track.to_owned(),
            kind,
            packets: 0,
            bytes: 0,
            packets_lost: 0,
            frames_decoded: 0,
            frame_size: (0, 0),
            frames_lost: 0,
            keyframes_requested: 0,
            nacks_sent: 0,
            packets_recovered: 0,
            freezes: 0,
            freeze_ms: 0.0,
            audio_fec_frames: 0,
            audio_copy_frames: 0,
            audio_concealed_ms: 0.0,
            buffer_delay_ms: 0.0,
            seconds: 0.0,
            jitter_ms: None,
            rtt_ms: None,
            first_picture: None,
        }
    }

    /// Average received bitrate in kbit/s.
    pub fn kbps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 * 8.0 / self.seconds / 1000.0
        } else {
            0.0
        }
    }

    /// Average decoded frame rate.
    pub fn fps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.frames_decoded as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// RFC 3550 inter-arrival jitter, in milliseconds. webrtc-rs's own statistics do not fill
/// this in, so the receiver computes it from arrival times and RTP timestamps.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct JitterEstimator {
    last: Option<(Instant, u32)>,
    jitter_ms: f64,
}

impl JitterEstimator {
    /// Feeds one packet that arrived at `arrival` with RTP timestamp `ts` on a `clock_khz`
    /// clock; returns the current estimate.
    pub fn update(&mut self, arrival: Instant, ts: u32, clock_khz: f64) -> f64 {
        if let Some((prev_arrival, prev_ts)) = self.last {
            let arrival_ms = arrival
                .saturating_duration_since(prev_arrival)
                .as_secs_f64()
                * 1000.0;
            let media_ms = ts.wrapping_sub(prev_ts) as i32 as f64 / clock_khz;
            let d = (arrival_ms - media_ms).abs();
            self.jitter_ms += (d - self.jitter_ms) / 16.0;
        }
        self.last = Some((arrival, ts));
        self.jitter_ms
    }
}

/// Feedback a receive slot wants sent to the sender.
#[derive(Debug, Default)]
pub(crate) struct Feedback {
    /// Sequence numbers to NACK.
    pub nacks: Vec<u16>,
    /// Send a keyframe request.
    pub keyframe: bool,
}

/// Counts freezes as browsers do: a picture that comes more than three average frame
/// intervals after the one before.
#[derive(Debug, Default)]
struct FreezeCounter {
    last: Option<Instant>,
    average_ms: Option<f64>,
}

impl FreezeCounter {
    /// A picture was shown at `now`. A freeze is a gap longer than both three average frame
    /// intervals and one average interval plus 150 ms (the rule of WebRTC's `freezeCount`).
    /// The second bound matters: after a burst (a keyframe's backlog, a restart) the average
    /// starts near zero, and with three intervals alone every later picture counted as a
    /// freeze (measured: 256 "freezes" for 240 pictures in 8 s).
    fn picture(&mut self, now: Instant, stats: &mut TrackStats) {
        if let Some(last) = self.last {
            let gap = now.duration_since(last).as_secs_f64() * 1000.0;
            let avg = *self.average_ms.get_or_insert(gap);
            if gap > (3.0 * avg).max(avg + 150.0) {
                stats.freezes += 1;
                stats.freeze_ms += gap;
            } else {
                self.average_ms = Some(avg + (gap - avg) / 16.0);
            }
        }
        self.last = Some(now);
    }
}

/// What a video's packets say about its pictures when they are only counted, not decoded:
/// the size in each keyframe's SPS, and when the first keyframe had arrived whole — from
/// the packet with its SPS to its marker, each in order. A keyframe with a gap or a
/// reordered packet is not counted as decodable (a later packet of it that starts another
/// slice does not restart it); the watch waits for the next keyframe, as a decoder without
/// a jitter buffer would.
#[derive(Debug, Default)]
struct PictureWatch {
    /// The keyframe being received: its timestamp and the sequence number expected next.
    pending: Option<(u32, u16)>,
    /// The timestamp of a keyframe that had a gap.
    broken: Option<u32>,
}

impl PictureWatch {
    fn observe(&mut self, now: Instant, packet: &rtp::Packet, stats: &mut TrackStats) {
        let h = &packet.header;
        let sps = rtp_payload_sps(&packet.payload);
        if let Some(sps) = &sps {
            stats.frame_size = (sps.width, sps.height);
        }
        if stats.first_picture.is_some() {
            return;
        }
        if let Some((timestamp, next)) = self.pending
            && h.timestamp == timestamp
        {
            self.pending = if h.sequence_number != next {
                self.broken = Some(timestamp);
                None
            } else if h.marker {
                stats.first_picture = Some(now);
                None
            } else {
                Some((timestamp, next.wrapping_add(1)))
            };
            return;
        }
        // Another picture: the one pending (if any) never reached its marker.
        self.broken = self.pending.map(|(timestamp, _)| timestamp).or(self.broken);
        self.pending = None;
        if sps.is_some()
            && rtp_payload_starts_keyframe(&packet.payload)
            && self.broken != Some(h.timestamp)
        {
            if h.marker {
                stats.first_picture = Some(now);
            } else {
                self.pending = Some((h.timestamp, h.sequence_number.wrapping_add(1)));
            }
        }
    }
}

enum Pipeline {
    Video {
        buffer: Box<VideoBuffer>,
        decoder: Option<H264Decoder>,
        freezes: FreezeCounter,
    },
    Audio {
        playout: AudioPlayout,
        decoder: Option<OpusDecoder>,
    },
}

/// One receive slot's pipeline: packets into the jitter (or playout) buffer, pictures and
/// audio out of it at their time, decoded; NACKs and keyframe requests back.
pub(crate) struct RecvSlot {
    kind: TrackKind,
    pipeline: Pipeline,
    /// SSRC of the stream (feedback names it).
    pub ssrc: u32,
    /// The receiver feedback is written through.
    pub receiver: RTCRtpReceiverId,
    seqs: SeqExtender,
    first_seq: Option<u64>,
    first_packet: Option<Instant>,
    jitter: JitterEstimator,
    watch: PictureWatch,
}

impl RecvSlot {
    pub fn new(kind: TrackKind, receiver: RTCRtpReceiverId, now: Instant) -> Self {
        let pipeline = match kind {
            TrackKind::Video => Pipeline::Video {
                buffer: Box::new(VideoBuffer::new(true, now)),
                decoder: None,
                freezes: FreezeCounter::default(),
            },
            TrackKind::Audio => Pipeline::Audio {
                playout: AudioPlayout::new(now),
                decoder: None,
            },
        };
        Self {
            kind,
            pipeline,
            ssrc: 0,
            receiver,
            seqs: SeqExtender::default(),
            first_seq: None,
            first_packet: None,
            jitter: JitterEstimator::default(),
            watch: PictureWatch::default(),
        }
    }

    /// The round-trip time to the server on the receiving connection.
    pub fn set_rtt(&mut self, rtt: Duration) {
        if let Pipeline::Video { buffer, .. } = &mut self.pipeline {
            buffer.set_rtt(rtt);
        }
    }

    /// Takes one packet (already decrypted, in arrival order). Counted always; buffered
    /// only when `decode` is on (load tests only count).
    pub fn on_packet(
        &mut self,
        now: Instant,
        packet: &rtp::Packet,
        decode: bool,
        stats: &mut TrackStats,
    ) {
        let first = *self.first_packet.get_or_insert(now);
        let clock_khz = match self.kind {
            TrackKind::Video => 90.0,
            TrackKind::Audio => 48.0,
        };
        let h = &packet.header;
        self.ssrc = h.ssrc;
        stats.jitter_ms = Some(self.jitter.update(now, h.timestamp, clock_khz));
        stats.packets += 1;
        stats.bytes += packet.payload.len() as u64;
        stats.seconds = now.duration_since(first).as_secs_f64();
        let ext = self.seqs.extend(h.sequence_number);
        let first_seq = *self.first_seq.get_or_insert(ext);
        let expected = self.seqs.highest().unwrap_or(ext) + 1 - first_seq;
        stats.packets_lost = expected.saturating_sub(stats.packets);
        if !decode {
            if self.kind == TrackKind::Video {
                self.watch.observe(now, packet, stats);
            }
            return;
        }
        match &mut self.pipeline {
            Pipeline::Video { buffer, .. } => buffer.insert(
                now,
                h.sequence_number,
                h.timestamp,
                h.marker,
                packet.payload.clone(),
            ),
            Pipeline::Audio { playout, .. } => {
                // The client offers its receiving connection, so the answer keeps madang's
                // own payload type for redundant audio.
                if h.payload_type != RED_PAYLOAD_TYPE {
                    playout.insert(now, h.sequence_number, h.timestamp, packet.payload.clone());
                    return;
                }
                // Redundant audio: the packet's own frame and copies of earlier ones.
                let Ok(red) = Red::parse(&packet.payload) else {
                    return;
                };
                playout.insert(now, h.sequence_number, h.timestamp, red.primary.clone());
                for (seq, ts, frame) in red.redundant_packets(h.sequence_number, h.timestamp) {
                    let back = h.sequence_number.wrapping_sub(seq);
                    playout.insert_copy(now, seq, ts, back, frame);
                }
            }
        }
    }

    /// What is due at `now`: decoded pictures and audio into `events`, counters into
    /// `stats`; returns the feedback to send.
    pub fn poll(
        &mut self,
        now: Instant,
        track_id: &str,
        stats: &mut TrackStats,
        events: &mut Vec<RoomEvent>,
    ) -> Feedback {
        let participant = track_id.split('/').next().unwrap_or_default();
        let mut feedback = Feedback::default();
        match &mut self.pipeline {
            Pipeline::Video {
                buffer,
                decoder,
                freezes,
            } => {
                while let Some(picture) = buffer.poll(now) {
                    if decoder.is_none() {
                        *decoder = H264Decoder::new().ok();
                    }
                    let Some(dec) = decoder.as_mut() else {
                        continue;
                    };
                    match dec.decode(&picture.data) {
                        Ok(Some(mut frame)) => {
                            frame.set_pts_us(picture.timestamp as i64 * 1000 / 90);
                            stats.frames_decoded += 1;
                            stats.frame_size = (frame.width(), frame.height());
                            stats.first_picture.get_or_insert(now);
                            freezes.picture(now, stats);
                            events.push(RoomEvent::VideoFrame {
                                participant: participant.to_owned(),
                                track: track_id.to_owned(),
                                frame,
                            });
                        }
                        Ok(None) => {}
                        Err(_) => {
                            stats.frames_lost += 1;
                            buffer.reference_lost(now);
                        }
                    }
                    if dec.keyframe_needed() {
                        buffer.reference_lost(now);
                    }
                }
                feedback.nacks = buffer.nacks_due(now);
                feedback.keyframe = buffer.keyframe_request_due(now);
                let b = buffer.stats();
                stats.frames_lost = b.pictures_dropped;
                stats.keyframes_requested = b.keyframe_requests;
                stats.packets_recovered = b.packets_recovered;
                stats.nacks_sent = buffer.nacks_sent();
                stats.buffer_delay_ms = buffer.delay().as_secs_f64() * 1000.0;
            }
            Pipeline::Audio { playout, decoder } => {
                while let Some(out) = playout.poll(now) {
                    if decoder.is_none() {
                        *decoder = OpusDecoder::new(Channels::Mono).ok();
                    }
                    let Some(dec) = decoder.as_mut() else {
                        continue;
                    };
                    let decoded = match out {
                        AudioOut::Packet { payload, timestamp } => {
                            dec.decode(&payload, timestamp as i64 * 1000 / 48)
                        }
                        AudioOut::Fec { next, timestamp } => {
                            dec.decode_fec(&next, timestamp as i64 * 1000 / 48)
                        }
                        AudioOut::Conceal { timestamp } => {
                            dec.conceal(960, timestamp as i64 * 1000 / 48)
                        }
                    };
                    if let Ok(frame) = decoded {
                        events.push(RoomEvent::AudioFrame {
                            participant: participant.to_owned(),
                            track: track_id.to_owned(),
                            frame,
                        });
                    }
                }
                let p = playout.stats();
                stats.frames_decoded = p.played;
                stats.audio_fec_frames = p.fec;
                stats.audio_copy_frames = p.copies;
                stats.audio_concealed_ms = p.concealed as f64 * 20.0;
                stats.frames_lost = p.concealed + p.skipped;
                stats.buffer_delay_ms = playout.delay().as_secs_f64() * 1000.0;
            }
        }
        feedback
    }

    /// When [`poll`](Self::poll) is due next.
    pub fn next_timeout(&self) -> Option<Instant> {
        match &self.pipeline {
            Pipeline::Video { buffer, .. } => buffer.next_timeout(),
            Pipeline::Audio { playout, .. } => playout.next_timeout(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_zero_for_a_steady_stream_and_grows_with_variation() {
        let t0 = Instant::now();
        let mut j = JitterEstimator::default();
        for i in 0..100u32 {
            j.update(t0 + Duration::from_millis(20 * i as u64), i * 960, 48.0);
        }
        assert!(j.jitter_ms < 1e-6);
        let mut k = JitterEstimator::default();
        for i in 0..200u32 {
            let wobble = if i % 2 == 0 { 0 } else { 10 };
            k.update(
                t0 + Duration::from_millis(20 * i as u64 + wobble),
                i * 960,
                48.0,
            );
        }
        // Alternating 10 ms late and on time: |D| is 10 ms every packet.
        assert!((k.jitter_ms - 10.0).abs() < 0.5, "{}", k.jitter_ms);
    }

    /// Counting without decoding: the first picture is the first keyframe whose packets all
    /// arrived in order; one with a packet missing does not count, the next keyframe does.
    #[test]
    fn the_first_whole_keyframe_is_the_first_picture_when_only_counting() {
        use crate::codec::rtp::packetize_h264;
        use crate::codec::{H264Config, H264Encoder};
        use crate::media::TestPattern;
        let pattern = TestPattern::new(320, 180).unwrap();
        let mut encoder = H264Encoder::new(H264Config::new(320, 180).keyframe_interval(3)).unwrap();
        let t0 = Instant::now();
        let mut watch = PictureWatch::default();
        let mut stats = TrackStats::new("a/camera", TrackKind::Video);
        let mut seq = 100u16;
        let mut keyframes_seen = 0;
        for i in 0..7u64 {
            let unit = encoder
                .encode(&pattern.frame(i as u32, i * 66_666))
                .unwrap()
                .unwrap();
            let payloads = packetize_h264(&unit.data, 300);
            let key = rtp_payload_starts_keyframe(&payloads[0]);
            keyframes_seen += key as u32;
            let n = payloads.len();
            assert!(!key || n > 2, "a keyframe of several packets");
            for (k, payload) in payloads.into_iter().enumerate() {
                seq = seq.wrapping_add(1);
                // The first keyframe loses its second packet.
                if keyframes_seen == 1 && key && k == 1 {
                    continue;
                }
                let packet = rtp::Packet {
                    header: rtp::header::Header {
                        sequence_number: seq,
                        timestamp: i as u32 * 6000,
                        marker: k == n - 1,
                        ..Default::default()
                    },
                    payload,
                };
                let at = t0 + Duration::from_millis(i * 66 + k as u64);
                watch.observe(at, &packet, &mut stats);
                if keyframes_seen == 1 {
                    assert_eq!(stats.first_picture, None, "frame {i} packet {k}");
                }
                if keyframes_seen == 2 && key && k == n - 1 {
                    assert_eq!(stats.first_picture, Some(at), "the second keyframe's last");
                }
            }
        }
        assert!(keyframes_seen >= 2);
        assert_eq!(stats.frame_size, (320, 180));
        assert!(stats.first_picture.is_some());
    }
}
