//! The room client: join a room on a madang server, publish video and audio, receive and
//! decode everyone else's.
//!
//! ```no_run
//! # async fn run() -> Result<(), madang::room::RoomError> {
//! use madang::media::TestPattern;
//! use madang::room::{Room, RoomEvent, RoomOptions, VideoOptions};
//! let options = RoomOptions { video: Some(VideoOptions::new(640, 360)), ..RoomOptions::default() };
//! let mut room = Room::connect("ws://127.0.0.1:8080/signal", "<token>", options).await?;
//! let mut pattern = TestPattern::new(640, 360).unwrap();
//! room.publish_video(&pattern.next_frame(0)).await?;
//! while let Some(event) = room.next_event().await {
//!     if let RoomEvent::VideoFrame { participant, frame, .. } = event {
//!         println!("{participant}: {}x{}", frame.width(), frame.height());
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod assemble;
mod connection;
mod grid;
mod receive;
pub mod session;
pub mod synthetic;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;

use crate::codec::{CodecError, H264Config, H264Encoder, OpusConfig, OpusEncoder};
use crate::media::{AudioFrame, Channels, VideoFrame};
use crate::signal::{
    ClientMessage, DataMessage, ErrorCode, LeaveReason, PROTOCOL_VERSION, ParticipantInfo,
    PeerRole, PublishTrack, ServerMessage, Speaker, TrackInfo, TrackKind, TrackSource,
    decode_server, encode,
};
use connection::{Connection, SendTrack};

pub use grid::GridView;
pub use receive::TrackStats;

/// Interval of keep-alive pings on the signal connection.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// What to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoOptions {
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames per second the source delivers.
    pub fps: u32,
    /// H.264 target bitrate in kbit/s.
    pub bitrate_kbps: u32,
}

impl VideoOptions {
    /// 30 fps at a bitrate suited to the size (about 0.1 bit per pixel per frame).
    pub fn new(width: u32, height: u32) -> Self {
        let kbps = ((width as u64 * height as u64 * 30) / 10_000).clamp(150, 4000) as u32;
        Self {
            width,
            height,
            fps: 30,
            bitrate_kbps: kbps,
        }
    }
}

/// How to join.
#[derive(Clone, Debug)]
pub struct RoomOptions {
    /// Publish a camera track of this shape (frames pushed with [`Room::publish_video`]).
    pub video: Option<VideoOptions>,
    /// Publish a microphone track (frames pushed with [`Room::publish_audio`]).
    pub audio: bool,
    /// Receive every track in the room as it appears.
    pub auto_subscribe: bool,
    /// Display name shown to the others instead of the token's (1 to 64 characters).
    pub name: Option<String>,
    /// Decode received video into [`RoomEvent::VideoFrame`]s. When off, packets are only
    /// counted in [`Room::receive_stats`] (load testing).
    pub decode_video: bool,
    /// Decode received audio into [`RoomEvent::AudioFrame`]s. When off, only counted.
    pub decode_audio: bool,
    /// Local address the WebRTC sockets bind to (loopback by default).
    pub bind_ip: IpAddr,
    /// How many events may wait unread before decoded frames are dropped.
    pub event_capacity: usize,
    /// How long to wait for the server to accept the join.
    pub join_timeout: Duration,
}

impl Default for RoomOptions {
    fn default() -> Self {
        Self {
            video: None,
            audio: false,
            auto_subscribe: true,
            name: None,
            decode_video: true,
            decode_audio: true,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            event_capacity: 256,
            join_timeout: Duration::from_secs(10),
        }
    }
}

/// Something that happened in the room.
#[derive(Debug)]
#[non_exhaustive]
pub enum RoomEvent {
    /// Someone joined.
    ParticipantJoined(ParticipantInfo),
    /// Someone left.
    ParticipantLeft {
        /// Identity.
        identity: String,
        /// Why.
        reason: LeaveReason,
    },
    /// A track appeared.
    TrackPublished(TrackInfo),
    /// A track ended.
    TrackUnpublished(String),
    /// A track was muted or unmuted.
    TrackMuted {
        /// Track id.
        track: String,
        /// New state.
        muted: bool,
    },
    /// A decoded picture from another participant.
    VideoFrame {
        /// Publisher identity.
        participant: String,
        /// Track id.
        track: String,
        /// The picture; its pts is the RTP capture time in µs on the sender's media clock.
        frame: VideoFrame,
    },
    /// Decoded audio from another participant.
    AudioFrame {
        /// Publisher identity.
        participant: String,
        /// Track id.
        track: String,
        /// The audio.
        frame: AudioFrame,
    },
    /// An application message.
    Data(DataMessage),
    /// The loudest participants, loudest first.
    ActiveSpeaker(Vec<Speaker>),
    /// The server reported an error.
    Error {
        /// Stable code.
        code: ErrorCode,
        /// Detail.
        reason: String,
    },
    /// The session ended.
    Disconnected,
}

/// Why joining or publishing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// The WebSocket could not be opened or broke.
    #[error("signal connection: {0}")]
    Signal(String),
    /// The server refused.
    #[error("server refused ({code}): {reason}")]
    Refused {
        /// Stable code.
        code: ErrorCode,
        /// Detail.
        reason: String,
    },
    /// The server did not answer in time.
    #[error("no answer from the server within {0:?}")]
    Timeout(Duration),
    /// WebRTC setup failed.
    #[error("WebRTC: {0}")]
    WebRtc(String),
    /// Encoding failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// `publish_video` or `publish_audio` without that track in the options.
    #[error("no {0} track was set up for publishing")]
    NotPublishing(&'static str),
    /// The room session is over.
    #[error("the room session has ended")]
    Closed,
}

pub(crate) fn webrtc_err(e: impl std::fmt::Display) -> RoomError {
    RoomError::WebRtc(e.to_string())
}

struct VideoOut {
    encoder: std::sync::Mutex<H264Encoder>,
    track: SendTrack,
    /// The server asked for a keyframe.
    keyframe: Arc<AtomicBool>,
    /// Pictures were dropped before the connection was up: start again with a keyframe.
    restart: AtomicBool,
    frame_duration: Duration,
}

struct AudioOut {
    encoder: std::sync::Mutex<OpusEncoder>,
    track: SendTrack,
}

/// Counters of what this client sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendStats {
    /// Video frames encoded and sent.
    pub video_frames: u64,
    /// Of those, keyframes.
    pub keyframes: u64,
    /// Keyframe requests received from the server.
    pub keyframe_requests: u64,
    /// Video bytes sent (encoded).
    pub video_bytes: u64,
    /// Audio frames sent.
    pub audio_frames: u64,
    /// Pictures and audio blocks pushed before the publishing connection was up, and dropped
    /// (the first picture sent once it is up is a keyframe).
    pub dropped_before_connected: u64,
}

/// A snapshot of [`Room::stats`].
#[derive(Clone, Debug, PartialEq)]
pub struct RoomStats {
    /// What was sent.
    pub sent: SendStats,
    /// Round-trip time to the server on the publishing connection, ms.
    pub publish_rtt_ms: Option<f64>,
    /// Per remote track.
    pub received: Vec<TrackStats>,
}

/// A joined room.
pub struct Room {
    room: String,
    local: ParticipantInfo,
    participants: Vec<ParticipantInfo>,
    tracks: Vec<TrackInfo>,
    signal: mpsc::UnboundedSender<ClientMessage>,
    events: mpsc::Receiver<RoomEvent>,
    publisher: Option<Arc<Connection>>,
    subscriber: Arc<Mutex<Option<Arc<Connection>>>>,
    video: Option<VideoOut>,
    audio: Option<AudioOut>,
    send_stats: std::sync::Mutex<SendStats>,
    receive_stats: Arc<std::sync::Mutex<HashMap<String, TrackStats>>>,
    slots: Arc<std::sync::Mutex<HashMap<String, String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("room", &self.room)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Room {
    /// Connects to `url` (`ws://host:port/signal`), joins with `token`, and sets up
    /// publishing as `options` asks. Returns once the server accepted the join and the
    /// publish offer has been sent.
    pub async fn connect(url: &str, token: &str, options: RoomOptions) -> Result<Room, RoomError> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| RoomError::Signal(format!("{url}: {e}")))?;
        let (mut sink, mut stream) = ws.split();
        let join = ClientMessage::Join {
            protocol: PROTOCOL_VERSION,
            token: token.to_owned(),
            auto_subscribe: options.auto_subscribe,
            name: options.name.clone(),
        };
        sink.send(Message::Text(encode(&join).into()))
            .await
            .map_err(|e| RoomError::Signal(e.to_string()))?;
        let joined = tokio::time::timeout(options.join_timeout, async {
            while let Some(msg) = stream.next().await {
                let text = match msg {
                    Ok(Message::Text(t)) => t,
                    Ok(Message::Close(_)) => break,
                    Ok(_) => continue,
                    Err(e) => return Err(RoomError::Signal(e.to_string())),
                };
                match decode_server(text.as_str()).map_err(|e| RoomError::Signal(e.to_string()))? {
                    ServerMessage::Joined {
                        room,
                        participant,
                        participants,
                        tracks,
                        ..
                    } => return Ok((room, participant, participants, tracks)),
                    ServerMessage::Error { code, reason } => {
                        return Err(RoomError::Refused { code, reason });
                    }
                    _ => continue,
                }
            }
            Err(RoomError::Signal("closed before joining".into()))
        })
        .await
        .map_err(|_| RoomError::Timeout(options.join_timeout))??;
        let (room_name, local, participants, tracks) = joined;

        // Signal writer.
        let (signal_tx, mut signal_rx) = mpsc::unbounded_channel::<ClientMessage>();
        let writer = tokio::spawn(async move {
            // A ping every few seconds keeps the session alive when no media flows (a viewer
            // with nothing to receive yet).
            let mut keepalive = tokio::time::interval(KEEPALIVE);
            keepalive.tick().await;
            loop {
                let m = tokio::select! {
                    m = signal_rx.recv() => match m {
                        Some(m) => m,
                        None => break,
                    },
                    _ = keepalive.tick() => ClientMessage::Ping,
                };
                let leaving = matches!(m, ClientMessage::Leave);
                if sink.send(Message::Text(encode(&m).into())).await.is_err() {
                    break;
                }
                if leaving {
                    let _ = sink.close().await;
                    break;
                }
            }
        });

        let (events_tx, events) = mpsc::channel(options.event_capacity.max(16));
        let receive_stats = Arc::new(std::sync::Mutex::new(HashMap::new()));
        let mut room = Room {
            room: room_name,
            local,
            participants,
            tracks,
            signal: signal_tx.clone(),
            events,
            publisher: None,
            subscriber: Arc::new(Mutex::new(None)),
            video: None,
            audio: None,
            send_stats: std::sync::Mutex::new(SendStats::default()),
            receive_stats: receive_stats.clone(),
            slots: Arc::new(std::sync::Mutex::new(HashMap::new())),
            tasks: vec![writer],
        };

        // Publishing connection.
        if options.video.is_some() || options.audio {
            let conn = Arc::new(Connection::new(PeerRole::Publisher, options.bind_ip, None).await?);
            let mut video_track = match &options.video {
                Some(_) => Some(conn.add_send_track(TrackKind::Video).await?),
                None => None,
            };
            let mut audio_track = match options.audio {
                true => Some(conn.add_send_track(TrackKind::Audio).await?),
                false => None,
            };
            let sdp = conn.offer().await?;
            let mut publish = Vec::new();
            if let (Some(track), Some(v)) = (video_track.as_mut(), &options.video) {
                conn.resolve_mid(track).await?;
                publish.push(PublishTrack {
                    mid: track.mid.clone(),
                    kind: TrackKind::Video,
                    source: TrackSource::Camera,
                });
                let encoder = H264Encoder::new(
                    H264Config::new(v.width, v.height)
                        .bitrate_kbps(v.bitrate_kbps)
                        .max_fps(v.fps.max(1) as f32),
                )?;
                let keyframe = Arc::new(AtomicBool::new(false));
                room.tasks
                    .push(spawn_keyframe_watch(track.track.clone(), keyframe.clone()));
                room.video = Some(VideoOut {
                    encoder: std::sync::Mutex::new(encoder),
                    track: video_track.take().expect("checked above"),
                    keyframe,
                    restart: AtomicBool::new(false),
                    frame_duration: Duration::from_micros(1_000_000 / v.fps.max(1) as u64),
                });
            }
            if let Some(mut track) = audio_track.take() {
                conn.resolve_mid(&mut track).await?;
                publish.push(PublishTrack {
                    mid: track.mid.clone(),
                    kind: TrackKind::Audio,
                    source: TrackSource::Microphone,
                });
                room.audio = Some(AudioOut {
                    encoder: std::sync::Mutex::new(OpusEncoder::new(OpusConfig::new(
                        Channels::Mono,
                    ))?),
                    track,
                });
            }
            let _ = signal_tx.send(ClientMessage::Offer {
                pc: PeerRole::Publisher,
                sdp,
                publish,
            });
            room.publisher = Some(conn);
        }

        // Signal reader.
        let ctx = receive::Context {
            events: events_tx,
            signal: signal_tx,
            stats: receive_stats,
            decode_video: options.decode_video,
            decode_audio: options.decode_audio,
            slots: room.slots.clone(),
        };
        let reader = tokio::spawn(receive::signal_reader(
            stream,
            ctx,
            room.publisher.clone(),
            room.subscriber.clone(),
            options.bind_ip,
        ));
        room.tasks.push(reader);
        Ok(room)
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.room
    }

    /// This participant as the others see it.
    pub fn local(&self) -> &ParticipantInfo {
        &self.local
    }

    /// Participants present when this one joined.
    pub fn initial_participants(&self) -> &[ParticipantInfo] {
        &self.participants
    }

    /// Tracks published when this one joined.
    pub fn initial_tracks(&self) -> &[TrackInfo] {
        &self.tracks
    }

    /// The next event; `None` once the session is over and every event was read.
    pub async fn next_event(&mut self) -> Option<RoomEvent> {
        self.events.recv().await
    }

    /// An event if one is waiting.
    pub fn try_next_event(&mut self) -> Option<RoomEvent> {
        self.events.try_recv().ok()
    }

    /// Whether the publishing connection is up. Until it is, pushed pictures and audio are
    /// dropped (counted in [`SendStats::dropped_before_connected`]) rather than encoded into
    /// packets the connection would discard.
    pub fn publishing_ready(&self) -> bool {
        self.publisher.as_ref().is_some_and(|p| p.is_connected())
    }

    /// Counts a frame dropped because the publishing connection is not up yet.
    fn drop_before_connected(&self) {
        self.send_stats
            .lock()
            .expect("stats lock")
            .dropped_before_connected += 1;
    }

    /// Encodes and sends one picture of the published video track. Its pts (µs) becomes the
    /// RTP timestamp, so a receiver can measure latency against it. Before the publishing
    /// connection is up the picture is dropped, and the first one after is a keyframe.
    pub async fn publish_video(&self, frame: &VideoFrame) -> Result<(), RoomError> {
        let video = self
            .video
            .as_ref()
            .ok_or(RoomError::NotPublishing("video"))?;
        if !self.publishing_ready() {
            video.restart.store(true, Ordering::Relaxed);
            self.drop_before_connected();
            return Ok(());
        }
        let requested = video.keyframe.swap(false, Ordering::Relaxed);
        let restart = video.restart.swap(false, Ordering::Relaxed);
        let unit = {
            // The encoder is only ever used from here; a poisoned lock means an earlier encode
            // panicked, which is a bug, not input.
            let mut encoder = video.encoder.lock().expect("encoder lock");
            if requested || restart {
                encoder.request_keyframe();
            }
            encoder.encode(frame)?
        };
        let Some(unit) = unit else {
            return Ok(());
        };
        {
            let mut s = self.send_stats.lock().expect("stats lock");
            s.video_frames += 1;
            s.keyframes += unit.keyframe as u64;
            s.keyframe_requests += requested as u64;
            s.video_bytes += unit.data.len() as u64;
        }
        video
            .track
            .write(unit.data, video.frame_duration, None)
            .await
    }

    /// Sends an already encoded H.264 access unit (Annex-B) on the published video track, for
    /// applications with their own encoder or recorded streams. Keyframe requests from the
    /// server then cannot be honoured here; send IDRs regularly.
    pub async fn publish_encoded_video(
        &self,
        unit: &crate::media::EncodedFrame,
    ) -> Result<(), RoomError> {
        let video = self
            .video
            .as_ref()
            .ok_or(RoomError::NotPublishing("video"))?;
        {
            let mut s = self.send_stats.lock().expect("stats lock");
            s.video_frames += 1;
            s.keyframes += unit.keyframe as u64;
            s.video_bytes += unit.data.len() as u64;
        }
        video
            .track
            .write(unit.data.clone(), video.frame_duration, None)
            .await
    }

    /// Sends an already encoded 20 ms Opus packet on the published audio track, with the given
    /// RFC 6464 level (dBov, 127 = silence).
    pub async fn publish_encoded_audio(
        &self,
        packet: &crate::media::EncodedFrame,
        level_dbov: u8,
    ) -> Result<(), RoomError> {
        let audio = self
            .audio
            .as_ref()
            .ok_or(RoomError::NotPublishing("audio"))?;
        self.send_stats.lock().expect("stats lock").audio_frames += 1;
        audio
            .track
            .write(
                packet.data.clone(),
                Duration::from_millis(20),
                Some(level_dbov.min(127)),
            )
            .await
    }

    /// Encodes and sends one block of the published audio track (with its RFC 6464 level, so
    /// the server can tell who is speaking). Dropped before the publishing connection is up.
    pub async fn publish_audio(&self, frame: &AudioFrame) -> Result<(), RoomError> {
        let audio = self
            .audio
            .as_ref()
            .ok_or(RoomError::NotPublishing("audio"))?;
        if !self.publishing_ready() {
            self.drop_before_connected();
            return Ok(());
        }
        let packet = {
            let mut encoder = audio.encoder.lock().expect("encoder lock");
            encoder.encode(frame)?
        };
        let Some(packet) = packet else {
            return Ok(());
        };
        self.send_stats.lock().expect("stats lock").audio_frames += 1;
        let duration = Duration::from_micros(frame.duration_us() as u64);
        audio
            .track
            .write(packet.data, duration, Some(level_dbov(frame.samples())))
            .await
    }

    /// Sends an application message to everyone else (`to` empty) or to some identities.
    pub fn send_data(&self, topic: &str, payload: &str, to: Vec<String>) -> Result<(), RoomError> {
        self.signal
            .send(ClientMessage::Data {
                message: DataMessage {
                    from: String::new(),
                    to,
                    topic: topic.to_owned(),
                    payload: payload.to_owned(),
                },
            })
            .map_err(|_| RoomError::Closed)
    }

    /// Tells the room this participant's camera or microphone is muted (or not). The caller
    /// stops (or resumes) pushing frames; the others get a `TrackMuted` event.
    pub fn set_muted(&self, kind: TrackKind, muted: bool) -> Result<(), RoomError> {
        let source = match kind {
            TrackKind::Video => TrackSource::Camera,
            TrackKind::Audio => TrackSource::Microphone,
        };
        self.send_raw(ClientMessage::Mute {
            track: source.track_id(&self.local.identity),
            muted,
        })
    }

    /// Starts receiving these tracks (with `auto_subscribe` off, nothing is received
    /// otherwise).
    pub fn subscribe(&self, tracks: Vec<String>) -> Result<(), RoomError> {
        self.send_raw(ClientMessage::Subscribe { tracks })
    }

    /// Stops receiving these tracks; their receive slots are reused for others.
    pub fn unsubscribe(&self, tracks: Vec<String>) -> Result<(), RoomError> {
        self.send_raw(ClientMessage::Unsubscribe { tracks })
    }

    /// Sends any protocol message as is (for tools and tests that need the raw protocol).
    pub fn send_raw(&self, message: ClientMessage) -> Result<(), RoomError> {
        self.signal.send(message).map_err(|_| RoomError::Closed)
    }

    /// What this client has sent.
    pub fn send_stats(&self) -> SendStats {
        self.send_stats.lock().expect("stats lock").clone()
    }

    /// What this client received, per remote track.
    pub fn receive_stats(&self) -> Vec<TrackStats> {
        let mut v: Vec<TrackStats> = self
            .receive_stats
            .lock()
            .expect("stats lock")
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.track.cmp(&b.track));
        v
    }

    /// Everything this client knows about its media: what it sent, and per remote track what
    /// it received, with the round-trip time from the WebRTC statistics.
    pub async fn stats(&self) -> RoomStats {
        let mut tracks = self.receive_stats();
        let subscriber = self.subscriber.lock().await.clone();
        let mut publish_rtt_ms = None;
        if let Some(p) = &self.publisher {
            publish_rtt_ms = p.rtt_ms().await;
        }
        if let Some(sub) = subscriber {
            let rtt = sub.rtt_ms().await;
            for t in &mut tracks {
                t.rtt_ms = rtt;
            }
        }
        RoomStats {
            sent: self.send_stats(),
            publish_rtt_ms,
            received: tracks,
        }
    }

    /// Leaves the room: tells the server, closes the connections.
    pub async fn leave(self) {
        let _ = self.signal.send(ClientMessage::Leave);
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(p) = &self.publisher {
            p.close().await;
        }
        if let Some(s) = self.subscriber.lock().await.as_ref() {
            s.close().await;
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// RFC 6464 level of a block of PCM: −dBov, 0 (full scale) … 127 (silence).
pub fn level_dbov(samples: &[i16]) -> u8 {
    if samples.is_empty() {
        return 127;
    }
    let mean_square = samples
        .iter()
        .map(|&s| (s as f64) * (s as f64))
        .sum::<f64>()
        / samples.len() as f64;
    let rms = mean_square.sqrt() / 32768.0;
    if rms <= 0.0 {
        return 127;
    }
    (-20.0 * rms.log10()).clamp(0.0, 127.0) as u8
}

fn spawn_keyframe_watch(
    track: Arc<TrackLocalStaticSample>,
    flag: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use webrtc::media_stream::track_local::TrackLocalEvent;
        while let Some(event) = track.poll().await {
            if let TrackLocalEvent::OnRtcpPacket(packets) = event
                && crate::transport::is_keyframe_request(&packets)
            {
                flag.store(true, Ordering::Relaxed);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level_dbov(&[0; 480]), 127);
        assert_eq!(level_dbov(&[32767; 480]), 0);
        let tenth: Vec<i16> = vec![3277; 480];
        assert_eq!(level_dbov(&tenth), 19);
    }
}
