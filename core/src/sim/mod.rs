//! A whole conference in one thread on simulated time: the server core, N client sessions
//! with real codecs (the stamped test pattern through OpenH264, speech through Opus), and a
//! simulated network between them. Nothing sleeps and nothing reads the clock, so it runs
//! faster than real time and the same seed gives the same run.
//!
//! ```no_run
//! use madang::netsim::Profile;
//! use madang::sim::{SimConfig, run};
//! let report = run(&SimConfig { profile: "lte".parse().unwrap(), ..SimConfig::default() }).unwrap();
//! for pair in &report.pairs {
//!     println!("{} → {}: {:.1} % lost", pair.from, pair.to, pair.loss_pct);
//! }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::codec::{CodecError, H264Config, H264Encoder, OpusConfig, OpusEncoder};
use crate::media::{Channels, SpeechSource, TestPattern, read_stamp};
use crate::netsim::{Direction, Network, NetworkStats, Profile};
use crate::room::session::{Phase, Session, SessionConfig};
use crate::room::synthetic::{AudioPairReport, PairReport, Percentiles};
use crate::room::{RoomEvent, level_dbov};
use crate::sfu::engine::{Command, Engine, EngineConfig, Event};
use crate::sfu::token::{Claims, TokenError, mint, unix_now};
use crate::signal::{ClientMessage, Role, ServerMessage};

/// Shape of a simulated conference.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Participants, all publishing and all receiving.
    pub participants: usize,
    /// Picture size.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// H.264 bitrate per participant, kbit/s.
    pub bitrate_kbps: u32,
    /// Publish audio too.
    pub audio: bool,
    /// Conditions on every participant's link, both directions.
    pub profile: Profile,
    /// Seed of everything random in the run (the network's own seed comes from the profile).
    pub seed: u64,
    /// Longest simulated wait for everyone to see everyone before measuring.
    pub warmup_timeout: Duration,
    /// Simulated seconds measured.
    pub seconds: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            participants: 4,
            width: 640,
            height: 360,
            fps: 30,
            bitrate_kbps: 800,
            audio: true,
            profile: Profile::lan(),
            seed: 1,
            warmup_timeout: Duration::from_secs(10),
            seconds: 10.0,
        }
    }
}

/// What a simulated conference delivered.
#[derive(Clone, Debug, Serialize)]
pub struct SimReport {
    /// Participants.
    pub participants: usize,
    /// The network conditions, in the custom form (feed it back with `--network`).
    pub profile: String,
    /// Simulated seconds until everyone saw everyone (or the warm-up gave up).
    pub warmup_seconds: f64,
    /// Simulated seconds measured.
    pub seconds: f64,
    /// Simulated seconds of the whole run, warm-up and drain included.
    pub simulated_seconds: f64,
    /// Real seconds the run took.
    pub real_seconds: f64,
    /// Video, per ordered pair.
    pub pairs: Vec<PairReport>,
    /// Audio, per ordered pair.
    pub audio: Vec<AudioPairReport>,
    /// What the network did, per direction.
    pub network: NetworkStats,
    /// Keyframe requests the server sent to publishers.
    pub keyframe_requests: u64,
    /// Packets the server resent in answer to NACKs.
    pub retransmitted: u64,
}

/// Why a simulated conference could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// Fewer than two participants, or a bad size.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// An encoder could not be made.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A token could not be minted.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A participant was refused or never joined.
    #[error("participant {0} did not join")]
    Join(String),
}

const SECRET: &str = "madang-sim-secret";
const ROOM: &str = "sim";

fn server_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 7880)
}

/// A participant's two local addresses: 10.1.i.1:5000 (publishing) and :5001 (receiving).
fn client_addrs(i: usize) -> (SocketAddr, SocketAddr) {
    let ip = IpAddr::V4(Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250) as u8 + 1));
    (SocketAddr::new(ip, 5000), SocketAddr::new(ip, 5001))
}

struct Client {
    identity: String,
    session: Session,
    encoder: H264Encoder,
    pattern: TestPattern,
    opus: Option<OpusEncoder>,
    speech: SpeechSource,
    next_video: Instant,
    next_audio: Instant,
    /// Pictures and audio frames handed to the session (sent or dropped before connecting).
    video_sent: u32,
    audio_sent: u64,
    /// Publisher → (picture seq, latency ms) decoded.
    video: BTreeMap<String, Vec<(u32, f64)>>,
    /// Publisher → audio frames decoded while measuring.
    audio: BTreeMap<String, u64>,
    /// Publishers seen at least once.
    seen: BTreeSet<String>,
}

/// A message on the way between a session and the server (signal is reliable and ordered:
/// it only takes the link's base delay).
enum SignalHop {
    ToServer(usize, ClientMessage),
    ToClient(usize, ServerMessage),
    CloseClient(usize),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Warmup,
    Measuring,
    Draining,
}

/// Runs a simulated conference and reports per-pair delivery.
pub fn run(config: &SimConfig) -> Result<SimReport, SimError> {
    if config.participants < 2 {
        return Err(SimError::Config("at least two participants"));
    }
    if config.fps == 0 || config.seconds <= 0.0 {
        return Err(SimError::Config("fps and seconds must be positive"));
    }
    let real_start = Instant::now();
    let t0 = Instant::now();
    let mut now = t0;
    let micros = |t: Instant| t.duration_since(t0).as_micros() as u64;

    let mut engine_config = EngineConfig::new(SECRET);
    engine_config.seed = Some(config.seed);
    let mut engine = Engine::new(engine_config, server_addr(), now);
    let mut network: Network<usize, Vec<u8>> = Network::new(config.profile.clone(), t0);
    let signal_delay = config.profile.link.delay;
    let mut signals: VecDeque<(Instant, SignalHop)> = VecDeque::new();
    let mut by_addr: HashMap<SocketAddr, usize> = HashMap::new();

    let mut clients = Vec::new();
    for i in 0..config.participants {
        let identity = format!("p{}", i + 1);
        let claims = Claims::new(ROOM, &identity, &identity, Role::Speaker, unix_now(), 3600);
        let token = mint(SECRET.as_bytes(), &claims)?;
        let (pub_addr, sub_addr) = client_addrs(i);
        by_addr.insert(pub_addr, i);
        by_addr.insert(sub_addr, i);
        let session_config = SessionConfig {
            video: true,
            audio: config.audio,
            fps: config.fps,
            seed: Some(crate::netsim::splitmix64(config.seed ^ (i as u64 + 1))),
            ..SessionConfig::new(token)
        };
        engine.handle_command(
            now,
            Command::Open {
                session: i as u64 + 1,
                room: None,
            },
        );
        clients.push(Client {
            identity,
            session: Session::new(session_config, pub_addr, sub_addr, now),
            encoder: H264Encoder::new(
                H264Config::new(config.width, config.height)
                    .bitrate_kbps(config.bitrate_kbps)
                    .max_fps(config.fps as f32),
            )?,
            pattern: TestPattern::new(config.width, config.height)
                .map_err(|_| SimError::Config("picture size"))?,
            opus: if config.audio {
                Some(OpusEncoder::new(OpusConfig::new(Channels::Mono))?)
            } else {
                None
            },
            speech: SpeechSource::new(Channels::Mono, 20)
                .map_err(|_| SimError::Config("audio frames"))?,
            // Spread the participants' capture clocks over one frame interval.
            next_video: now + Duration::from_micros(i as u64 * 7_919 % 33_333),
            next_audio: now,
            video_sent: 0,
            audio_sent: 0,
            video: BTreeMap::new(),
            audio: BTreeMap::new(),
            seen: BTreeSet::new(),
        });
    }

    let ids = clients_identities(config.participants);
    let frame_interval = Duration::from_micros(1_000_000 / config.fps as u64);
    let audio_interval = Duration::from_millis(20);
    let pairs_total = config.participants * (config.participants - 1);
    let mut stage = Stage::Warmup;
    let mut warmup_seconds = 0.0;
    let mut window_start: Vec<(u32, u64)> = vec![(0, 0); clients.len()];
    let mut window_end: Vec<(u32, u64)> = Vec::new();
    let mut stage_until = t0 + config.warmup_timeout;
    let drain = Duration::from_millis(500) + signal_delay * 4;

    loop {
        // Capture: pictures and audio at their frame clocks while not draining.
        if stage != Stage::Draining {
            for c in &mut clients {
                if c.session.phase() != &Phase::Joined {
                    continue;
                }
                if now >= c.next_video {
                    // Catch up after joining instead of sending a burst of stale pictures.
                    c.next_video = (c.next_video + frame_interval).max(now + frame_interval);
                    if c.session.take_keyframe_request() {
                        c.encoder.request_keyframe();
                    }
                    let frame = c.pattern.next_frame(micros(now));
                    if let Some(unit) = c.encoder.encode(&frame)? {
                        if !c.session.send_video(now, &unit).unwrap_or(false) {
                            c.encoder.request_keyframe();
                        }
                        c.video_sent = c.pattern.next_seq();
                    }
                }
                if now >= c.next_audio {
                    c.next_audio = (c.next_audio + audio_interval).max(now + audio_interval);
                    let pcm = c.speech.next_frame();
                    if let Some(opus) = c.opus.as_mut()
                        && let Some(packet) = opus.encode(&pcm)?
                    {
                        let _ = c
                            .session
                            .send_audio(now, &packet, level_dbov(pcm.samples()));
                        c.audio_sent += 1;
                    }
                }
            }
        }

        // Everything due at `now`, until nothing more happens at this instant.
        loop {
            let mut progress = false;
            while signals.front().is_some_and(|(at, _)| *at <= now) {
                let (_, hop) = signals.pop_front().expect("peeked");
                progress = true;
                match hop {
                    SignalHop::ToServer(i, message) => engine.handle_command(
                        now,
                        Command::Message {
                            session: i as u64 + 1,
                            message,
                        },
                    ),
                    SignalHop::ToClient(i, message) => {
                        clients[i].session.handle_signal(now, message)
                    }
                    SignalHop::CloseClient(i) => clients[i].session.handle_signal_closed(now),
                }
            }
            while let Some((direction, i, data)) = network.pop(now) {
                progress = true;
                match direction {
                    Direction::Up => {
                        engine.handle_datagram(now, framed_addr(&data), &data[ADDR_BYTES..]);
                    }
                    Direction::Down => {
                        let local = framed_addr(&data);
                        clients[i].session.handle_datagram(
                            now,
                            local,
                            server_addr(),
                            &data[ADDR_BYTES..],
                        );
                    }
                }
            }
            while let Some(event) = engine.poll_event() {
                progress = true;
                let hop = match event {
                    Event::Send(id, m) => SignalHop::ToClient(id as usize - 1, m),
                    Event::Close(id) => SignalHop::CloseClient(id as usize - 1),
                };
                signals.push_back((now + signal_delay, hop));
            }
            while let Some(t) = engine.poll_transmit() {
                progress = true;
                if let Some(&i) = by_addr.get(&t.to) {
                    let framed = frame_datagram(t.to, &t.data);
                    network.send(now, Direction::Down, i, charged_len(&t.data), framed);
                }
            }
            for (i, c) in clients.iter_mut().enumerate() {
                while let Some(m) = c.session.poll_signal() {
                    progress = true;
                    signals.push_back((now + signal_delay, SignalHop::ToServer(i, m)));
                }
                while let Some(t) = c.session.poll_transmit() {
                    progress = true;
                    let framed = frame_datagram(t.from, &t.data);
                    network.send(now, Direction::Up, i, charged_len(&t.data), framed);
                }
                while let Some(event) = c.session.poll_event() {
                    progress = true;
                    record(c, event, stage, &window_start, &ids, now, t0);
                }
            }
            if !progress {
                break;
            }
        }
        // (Signals keep their order per direction; the queue is sorted by time because every
        // hop takes the same delay.)

        // Stage changes.
        match stage {
            Stage::Warmup => {
                let seen: usize = clients.iter().map(|c| c.seen.len()).sum();
                if seen >= pairs_total || now >= stage_until {
                    stage = Stage::Measuring;
                    warmup_seconds = now.duration_since(t0).as_secs_f64();
                    window_start = clients
                        .iter()
                        .map(|c| (c.video_sent, c.audio_sent))
                        .collect();
                    stage_until = now + Duration::from_secs_f64(config.seconds);
                }
            }
            Stage::Measuring if now >= stage_until => {
                stage = Stage::Draining;
                window_end = clients
                    .iter()
                    .map(|c| (c.video_sent, c.audio_sent))
                    .collect();
                stage_until = now + drain;
            }
            Stage::Draining if now >= stage_until => break,
            _ => {}
        }

        // The next instant anything happens.
        let mut next = stage_until;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = next.min(t);
            }
        };
        consider(engine.poll_timeout());
        consider(network.poll_timeout());
        consider(signals.front().map(|(at, _)| *at));
        for c in &mut clients {
            consider(c.session.poll_timeout());
            if stage != Stage::Draining && c.session.phase() == &Phase::Joined {
                consider(Some(c.next_video));
                if c.opus.is_some() {
                    consider(Some(c.next_audio));
                }
            }
        }
        let next = next.max(now);
        if next == now {
            // Timers due now.
            engine.handle_timeout(now);
            for c in &mut clients {
                c.session.handle_timeout(now);
            }
            // Step at least a microsecond so that a timer that re-arms at `now` cannot spin.
            now += Duration::from_micros(1);
        } else {
            now = next;
            engine.handle_timeout(now);
            for c in &mut clients {
                c.session.handle_timeout(now);
            }
        }
        if clients
            .iter()
            .any(|c| matches!(c.session.phase(), Phase::Refused { .. }))
        {
            let who = clients
                .iter()
                .find(|c| matches!(c.session.phase(), Phase::Refused { .. }))
                .map(|c| c.identity.clone())
                .unwrap_or_default();
            return Err(SimError::Join(who));
        }
    }

    let seconds = config.seconds;
    let mut pairs = Vec::new();
    let mut audio = Vec::new();
    for (ri, receiver) in clients.iter().enumerate() {
        for (pi, publisher) in ids.iter().enumerate() {
            if pi == ri {
                continue;
            }
            let (from_seq, from_audio) = window_start[pi];
            let (to_seq, to_audio) = window_end[pi];
            let frames_sent = to_seq.saturating_sub(from_seq) as u64;
            let got: Vec<&(u32, f64)> = receiver
                .video
                .get(publisher)
                .map(|v| {
                    v.iter()
                        .filter(|(s, _)| *s >= from_seq && *s < to_seq)
                        .collect()
                })
                .unwrap_or_default();
            let unique: BTreeSet<u32> = got.iter().map(|(s, _)| *s).collect();
            let mut latencies: Vec<f64> = got.iter().map(|(_, l)| *l).collect();
            let decoded = unique.len() as u64;
            let stats = receiver
                .session
                .receive_stats()
                .into_iter()
                .find(|t| t.track == crate::signal::TrackSource::Camera.track_id(publisher));
            pairs.push(PairReport {
                from: publisher.clone(),
                to: receiver.identity.clone(),
                frames_sent,
                frames_received: decoded + stats.as_ref().map_or(0, |s| s.frames_lost),
                frames_decoded: decoded,
                loss_pct: loss_pct(frames_sent, decoded),
                latency_ms: Percentiles::of(&mut latencies),
                kbps: stats.as_ref().map_or(0.0, |s| s.kbps()),
                jitter_ms: stats.as_ref().and_then(|s| s.jitter_ms),
                rtt_ms: None,
            });
            if config.audio {
                let sent = to_audio.saturating_sub(from_audio);
                let got = receiver
                    .audio
                    .get(publisher)
                    .copied()
                    .unwrap_or(0)
                    .min(sent);
                audio.push(AudioPairReport {
                    from: publisher.clone(),
                    to: receiver.identity.clone(),
                    frames_sent: sent,
                    frames_received: got,
                    loss_pct: loss_pct(sent, got),
                });
            }
        }
    }
    let server = engine.stats();
    Ok(SimReport {
        participants: config.participants,
        profile: config.profile.to_string(),
        warmup_seconds,
        seconds,
        simulated_seconds: now.duration_since(t0).as_secs_f64(),
        real_seconds: real_start.elapsed().as_secs_f64(),
        pairs,
        audio,
        network: network.stats(),
        keyframe_requests: server.keyframe_requests,
        retransmitted: server.retransmitted,
    })
}

fn clients_identities(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("p{}", i + 1)).collect()
}

fn loss_pct(sent: u64, got: u64) -> f64 {
    if sent == 0 {
        0.0
    } else {
        100.0 * sent.saturating_sub(got) as f64 / sent as f64
    }
}

/// What a datagram costs on a simulated rate-capped link.
///
/// DTLS handshake records differ by a few bytes from run to run — ECDSA signatures with a
/// random nonce, DER-encoded in 70–72 bytes (measured: the same conference twice differed by
/// 3 bytes in its first DTLS flight). Charged at their true size, they would shift delivery
/// times by microseconds and two runs of one seed would drift apart. So every DTLS datagram
/// (first byte 20–63, RFC 7983) is charged as a full 1200-byte one; everything else (STUN,
/// SRTP, SRTCP) has a size that follows from the seed and is charged as it is.
fn charged_len(data: &[u8]) -> usize {
    const DTLS_CHARGE: usize = 1200;
    match data.first() {
        Some(20..=63) => DTLS_CHARGE.max(data.len().div_ceil(DTLS_CHARGE) * DTLS_CHARGE),
        _ => data.len(),
    }
}

/// Bytes of the address in front of a simulated datagram.
const ADDR_BYTES: usize = 18;

/// A datagram on a participant's link carries the participant-side address it belongs to
/// (the network is keyed by participant, the session by local address): 18 bytes of
/// address, then the datagram. Only the simulation sees this framing.
fn frame_datagram(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ADDR_BYTES + data.len());
    match addr.ip() {
        IpAddr::V4(v4) => {
            out.extend_from_slice(&v4.to_ipv6_mapped().octets());
        }
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
    out.extend_from_slice(data);
    out
}

fn framed_addr(data: &[u8]) -> SocketAddr {
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&data[..16]);
    let ip = std::net::Ipv6Addr::from(ip);
    let ip = ip
        .to_ipv4_mapped()
        .map(IpAddr::V4)
        .unwrap_or(IpAddr::V6(ip));
    SocketAddr::new(ip, u16::from_be_bytes([data[16], data[17]]))
}

fn record(
    c: &mut Client,
    event: RoomEvent,
    stage: Stage,
    window_start: &[(u32, u64)],
    ids: &[String],
    now: Instant,
    t0: Instant,
) {
    match event {
        RoomEvent::VideoFrame {
            participant, frame, ..
        } => {
            let Some(stamp) = read_stamp(&frame) else {
                return;
            };
            c.seen.insert(participant.clone());
            if stage == Stage::Warmup {
                return;
            }
            let Some(pi) = ids.iter().position(|id| *id == participant) else {
                return;
            };
            if stamp.seq < window_start[pi].0 {
                return;
            }
            let now_us = now.duration_since(t0).as_micros() as u64;
            let latency = now_us.saturating_sub(stamp.capture_us) as f64 / 1000.0;
            c.video
                .entry(participant)
                .or_default()
                .push((stamp.seq, latency));
        }
        RoomEvent::AudioFrame { participant, .. } if stage == Stage::Measuring => {
            *c.audio.entry(participant).or_default() += 1;
        }
        _ => {}
    }
}
