//! The client's receiving side: the signal reader, and one task per remote track that turns
//! RTP into decoded frames.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::RoomEvent;
use super::assemble::{Assembled, FrameAssembler};
use super::connection::Connection;
use crate::codec::{H264Decoder, OpusDecoder};
use crate::media::Channels;
use crate::signal::{ClientMessage, PeerRole, ServerMessage, TrackKind, decode_server};

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
    /// Packets missing by sequence number.
    pub packets_lost: u64,
    /// Pictures (or audio frames) decoded.
    pub frames_decoded: u64,
    /// Pictures dropped for missing packets or decoder errors.
    pub frames_lost: u64,
    /// Keyframe requests sent.
    pub keyframes_requested: u64,
    /// Seconds between the first and the last packet.
    pub seconds: f64,
    /// Inter-arrival jitter in ms (RFC 3550).
    pub jitter_ms: Option<f64>,
    /// Round-trip time to the server on the receiving connection in ms, filled by
    /// [`Room::stats`](super::Room::stats).
    pub rtt_ms: Option<f64>,
}

impl TrackStats {
    fn new(track: &str, kind: TrackKind) -> Self {
        Self {
            track: track.to_owned(),
            kind,
            packets: 0,
            bytes: 0,
            packets_lost: 0,
            frames_decoded: 0,
            frames_lost: 0,
            keyframes_requested: 0,
            seconds: 0.0,
            jitter_ms: None,
            rtt_ms: None,
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

pub(crate) struct Context {
    pub events: mpsc::Sender<RoomEvent>,
    pub signal: mpsc::UnboundedSender<ClientMessage>,
    pub stats: Arc<Mutex<HashMap<String, TrackStats>>>,
    pub decode_video: bool,
    pub decode_audio: bool,
    /// Subscriber mid → the remote track it carries now.
    pub slots: Arc<Mutex<HashMap<String, String>>>,
}

impl Clone for Context {
    fn clone(&self) -> Self {
        Self {
            events: self.events.clone(),
            signal: self.signal.clone(),
            stats: self.stats.clone(),
            decode_video: self.decode_video,
            decode_audio: self.decode_audio,
            slots: self.slots.clone(),
        }
    }
}

type WsStream = futures_util::stream::SplitStream<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
>;

/// Reads server messages until the WebSocket closes.
pub(crate) async fn signal_reader(
    mut stream: WsStream,
    ctx: Context,
    publisher: Option<Arc<Connection>>,
    subscriber: Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>,
    bind_ip: IpAddr,
) {
    // One subscriber offer at a time: a renegotiation request that arrives while an offer is
    // outstanding is remembered and served once the answer is in.
    let mut offer_pending = false;
    let mut want_slots = (0u32, 0u32);
    while let Some(msg) = stream.next().await {
        let text = match msg {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let Ok(message) = decode_server(text.as_str()) else {
            tracing::debug!("undecodable server message");
            continue;
        };
        let event = match message {
            ServerMessage::Answer { pc, sdp } => {
                let conn = match pc {
                    PeerRole::Publisher => publisher.clone(),
                    PeerRole::Subscriber => subscriber.lock().await.clone(),
                };
                if let Some(conn) = conn
                    && let Err(e) = conn.apply_answer(sdp).await
                {
                    tracing::warn!("applying {pc:?} answer: {e}");
                }
                if pc == PeerRole::Subscriber {
                    offer_pending = false;
                    match renegotiate(&ctx, &subscriber, bind_ip, want_slots).await {
                        Ok(sent) => offer_pending = sent,
                        Err(e) => tracing::warn!("subscriber renegotiation: {e}"),
                    }
                }
                None
            }
            ServerMessage::Slots { slots } => {
                let mut map = ctx.slots.lock().expect("slots lock");
                map.clear();
                for s in slots {
                    if let Some(t) = s.track {
                        map.insert(s.mid, t);
                    }
                }
                None
            }
            ServerMessage::Renegotiate { audio, video } => {
                want_slots = (want_slots.0.max(audio), want_slots.1.max(video));
                if !offer_pending {
                    match renegotiate(&ctx, &subscriber, bind_ip, want_slots).await {
                        Ok(sent) => offer_pending = sent,
                        Err(e) => tracing::warn!("subscriber renegotiation: {e}"),
                    }
                }
                None
            }
            ServerMessage::Candidate { pc, candidate } => {
                let conn = match pc {
                    PeerRole::Publisher => publisher.clone(),
                    PeerRole::Subscriber => subscriber.lock().await.clone(),
                };
                if let Some(conn) = conn {
                    let _ = conn.add_candidate(candidate).await;
                }
                None
            }
            ServerMessage::ParticipantJoined { participant } => {
                Some(RoomEvent::ParticipantJoined(participant))
            }
            ServerMessage::ParticipantLeft { identity, reason } => {
                Some(RoomEvent::ParticipantLeft { identity, reason })
            }
            ServerMessage::TrackPublished { track } => Some(RoomEvent::TrackPublished(track)),
            ServerMessage::TrackUnpublished { track } => Some(RoomEvent::TrackUnpublished(track)),
            ServerMessage::TrackMuted { track, muted } => {
                Some(RoomEvent::TrackMuted { track, muted })
            }
            ServerMessage::ActiveSpeaker { speakers } => Some(RoomEvent::ActiveSpeaker(speakers)),
            ServerMessage::Data { message } => Some(RoomEvent::Data(message)),
            ServerMessage::Error { code, reason } => Some(RoomEvent::Error { code, reason }),
            _ => None,
        };
        if let Some(e) = event
            && ctx.events.send(e).await.is_err()
        {
            break;
        }
    }
    let _ = ctx.events.send(RoomEvent::Disconnected).await;
}

/// Makes sure the subscriber connection has `(audio, video)` receive slots; sends an offer
/// when it had to add some. Returns whether an offer went out.
async fn renegotiate(
    ctx: &Context,
    subscriber: &tokio::sync::Mutex<Option<Arc<Connection>>>,
    bind_ip: IpAddr,
    (audio, video): (u32, u32),
) -> Result<bool, super::RoomError> {
    if audio == 0 && video == 0 {
        return Ok(false);
    }
    let mut guard = subscriber.lock().await;
    let conn = match guard.as_ref() {
        Some(c) => c.clone(),
        None => {
            let (tx, rx) = mpsc::unbounded_channel();
            let conn = Arc::new(Connection::new(PeerRole::Subscriber, bind_ip, Some(tx)).await?);
            tokio::spawn(dispatch_tracks(rx, conn.clone(), ctx.clone()));
            *guard = Some(conn.clone());
            conn
        }
    };
    drop(guard);
    if conn.ensure_recv_slots(audio, video).await? {
        let sdp = conn.offer().await?;
        let _ = ctx.signal.send(ClientMessage::Offer {
            pc: PeerRole::Subscriber,
            sdp,
            publish: vec![],
        });
        return Ok(true);
    }
    Ok(false)
}

async fn dispatch_tracks(
    mut rx: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
    conn: Arc<Connection>,
    ctx: Context,
) {
    while let Some(track) = rx.recv().await {
        let mid = conn.mid_of(&track).await.unwrap_or_default();
        tokio::spawn(receive_track(track, mid, ctx.clone()));
    }
}

/// Rate limit for keyframe requests from one receiver.
const PLI_INTERVAL: Duration = Duration::from_millis(200);

async fn receive_track(track: Arc<dyn TrackRemote>, mid: String, ctx: Context) {
    let kind = match track.kind().await {
        RtpCodecKind::Video => TrackKind::Video,
        _ => TrackKind::Audio,
    };
    let mut assembler = FrameAssembler::new();
    let mut video = H264Decoder::new().ok();
    let mut audio = OpusDecoder::new(Channels::Mono).ok();
    let mut last_pli: Option<Instant> = None;
    let mut expected_audio_seq: Option<u16> = None;
    let mut first_packet: Option<Instant> = None;
    let mut jitter = JitterEstimator::default();
    let clock_khz = match kind {
        TrackKind::Video => 90.0,
        TrackKind::Audio => 48.0,
    };
    while let Some(event) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(packet) = event else {
            continue;
        };
        let now = Instant::now();
        let first = *first_packet.get_or_insert(now);
        let Some(track_id) = ctx.slots.lock().expect("slots lock").get(&mid).cloned() else {
            continue;
        };
        let participant = track_id.split('/').next().unwrap_or_default().to_owned();
        let jitter_now = jitter.update(now, packet.header.timestamp, clock_khz);
        let mut stats_delta = TrackStats::new(&track_id, kind);
        stats_delta.packets = 1;
        stats_delta.bytes = packet.payload.len() as u64;
        let mut want_keyframe = false;
        match kind {
            TrackKind::Video if !ctx.decode_video => {
                // Counting only (load tests): no reassembly, no decoding.
            }
            TrackKind::Audio if !ctx.decode_audio => {}
            TrackKind::Video => {
                let lost_before = assembler.packets_lost();
                for item in assembler.push(
                    packet.header.sequence_number,
                    packet.header.timestamp,
                    packet.header.marker,
                    &packet.payload,
                ) {
                    match item {
                        Assembled::Frame { data, timestamp } => {
                            let Some(decoder) = video.as_mut() else {
                                continue;
                            };
                            match decoder.decode(&data) {
                                Ok(Some(mut frame)) => {
                                    frame.set_pts_us(timestamp as i64 * 1000 / 90);
                                    stats_delta.frames_decoded += 1;
                                    if ctx.decode_video {
                                        let _ = ctx.events.try_send(RoomEvent::VideoFrame {
                                            participant: participant.clone(),
                                            track: track_id.clone(),
                                            frame,
                                        });
                                    }
                                }
                                Ok(None) => {}
                                Err(_) => {
                                    stats_delta.frames_lost += 1;
                                    want_keyframe = true;
                                }
                            }
                        }
                        Assembled::Lost { .. } => {
                            stats_delta.frames_lost += 1;
                            want_keyframe = true;
                        }
                    }
                }
                stats_delta.packets_lost = assembler.packets_lost() - lost_before;
                if video.as_ref().is_some_and(|d| d.keyframe_needed()) {
                    want_keyframe = true;
                }
            }
            TrackKind::Audio => {
                let seq = packet.header.sequence_number;
                if let Some(expected) = expected_audio_seq {
                    let gap = seq.wrapping_sub(expected);
                    if gap >= 0x8000 {
                        continue; // late
                    }
                    stats_delta.packets_lost = gap as u64;
                }
                expected_audio_seq = Some(seq.wrapping_add(1));
                if let Some(decoder) = audio.as_mut() {
                    let pts = packet.header.timestamp as i64 * 1000 / 48;
                    for _ in 0..stats_delta.packets_lost.min(10) {
                        let _ = decoder.conceal(960, pts);
                    }
                    if let Ok(frame) = decoder.decode(&packet.payload, pts) {
                        stats_delta.frames_decoded += 1;
                        if ctx.decode_audio {
                            let _ = ctx.events.try_send(RoomEvent::AudioFrame {
                                participant: participant.clone(),
                                track: track_id.clone(),
                                frame,
                            });
                        }
                    }
                }
            }
        }
        if want_keyframe && last_pli.is_none_or(|t| now.duration_since(t) >= PLI_INTERVAL) {
            last_pli = Some(now);
            stats_delta.keyframes_requested = 1;
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: packet.header.ssrc,
            };
            let _ = track.write_rtcp(vec![Box::new(pli)]).await;
        }
        let mut stats = ctx.stats.lock().expect("stats lock");
        let s = stats
            .entry(track_id.clone())
            .or_insert_with(|| TrackStats::new(&track_id, kind));
        s.packets += stats_delta.packets;
        s.bytes += stats_delta.bytes;
        s.packets_lost += stats_delta.packets_lost;
        s.frames_decoded += stats_delta.frames_decoded;
        s.frames_lost += stats_delta.frames_lost;
        s.keyframes_requested += stats_delta.keyframes_requested;
        s.seconds = now.duration_since(first).as_secs_f64();
        s.jitter_ms = Some(jitter_now);
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
}
