//! Synthetic conferences: participants that publish the stamped test pattern and speech-like
//! audio, send a chat message, and measure what they receive from each other — loss per pair
//! and glass-to-glass latency from the stamps (capture time → decoded picture).
//!
//! `madang demo` runs one against an embedded server. (On simulated time, `madang::sim` does
//! the same without sockets.)

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use madang::grid::compose::Compositor;
use madang::grid::layout::{Layout, LayoutInput, Mode, Person, Viewport};
use madang::media::{Channels, SpeechSource, TestPattern, VideoFrame, read_stamp};
use madang::room::{Room, RoomError, RoomEvent, RoomOptions, VideoOptions};
use madang::sfu::Server;
use madang::signal::Role;
pub use madang::sim::{
    AudioPairReport, ConferenceReport, DataReport, PairReport, Percentiles, UplinkReport,
    VideoRepair,
};

/// Shape of a synthetic conference.
#[derive(Clone, Debug)]
pub struct ConferenceConfig {
    /// Room name.
    pub room: String,
    /// Number of participants, all publishing and all subscribing.
    pub participants: usize,
    /// Length of the measured period.
    pub seconds: f64,
    /// Picture size.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// H.264 bitrate per participant, kbit/s (of the full-size layer with simulcast).
    pub bitrate_kbps: u32,
    /// Publish the video as simulcast.
    pub simulcast: bool,
    /// Publish audio too.
    pub audio: bool,
    /// Longest wait for every participant to see every other before measuring.
    pub warmup_timeout: Duration,
}

impl Default for ConferenceConfig {
    fn default() -> Self {
        Self {
            room: "demo".into(),
            participants: 4,
            seconds: 10.0,
            width: 640,
            height: 360,
            fps: 30,
            bitrate_kbps: 800,
            simulcast: false,
            audio: true,
            warmup_timeout: Duration::from_secs(15),
        }
    }
}

/// Where the first participant's composed view of the room goes: a `width`×`height` gallery
/// of everyone (the others as received and decoded, itself as a self view), composed at the
/// frame rate while measuring. Frames are dropped, not
/// queued without bound, when the receiver falls behind.
#[derive(Debug)]
pub struct GridSink {
    /// Canvas width.
    pub width: u32,
    /// Canvas height.
    pub height: u32,
    /// Receives the composed canvases.
    pub frames: tokio::sync::mpsc::Sender<VideoFrame>,
}

/// A live status line while a conference runs.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// `warmup` or `measuring`.
    pub phase: &'static str,
    /// Seconds into the phase.
    pub elapsed: f64,
    /// Warm-up: pairs that see each other. Measuring: pictures decoded across all receivers.
    pub frames_decoded: u64,
    /// Warm-up: pairs in all. Measuring: pictures sent times receivers.
    pub frames_sent: u64,
}

#[derive(Default)]
struct Counters {
    video_sent: AtomicU32,
    audio_sent: AtomicU64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Warmup,
    Measuring,
    Draining,
}

/// Per publisher: (first video seq, first audio frame) of the measured period.
type Windows = HashMap<String, (u32, u64)>;

/// Ordered pairs (receiver, publisher) that have seen a picture.
type Seen = Arc<std::sync::Mutex<std::collections::HashSet<(String, String)>>>;

struct Received {
    /// Publisher → (seq, latency ms) decoded.
    video: HashMap<String, Vec<(u32, f64)>>,
    audio: HashMap<String, u64>,
    data: u64,
    last_frame: HashMap<String, VideoFrame>,
}

/// Each publisher's counters now: where a measurement window starts or ends.
fn windows(identities: &[String], counters: &[Arc<Counters>]) -> Windows {
    identities
        .iter()
        .zip(counters)
        .map(|(id, c)| {
            (
                id.clone(),
                (
                    c.video_sent.load(Ordering::Relaxed),
                    c.audio_sent.load(Ordering::Relaxed),
                ),
            )
        })
        .collect()
}

fn micros(clock: Instant) -> u64 {
    clock.elapsed().as_micros() as u64
}

/// Runs one synthetic participant until `stop` turns true.
#[allow(clippy::too_many_arguments)]
async fn participant(
    mut room: Room,
    config: ConferenceConfig,
    clock: Instant,
    counters: Arc<Counters>,
    mut phase: watch::Receiver<(Phase, Windows)>,
    decoded_total: Arc<AtomicU64>,
    seen: Seen,
    grid: Option<GridSink>,
) -> (Room, Received) {
    let mut compositor = grid
        .as_ref()
        .and_then(|g| Compositor::new(g.width, g.height, Default::default()).ok());
    let me = room.local().identity.clone();
    let mut pattern = TestPattern::new(config.width, config.height).expect("validated size");
    let mut speech = SpeechSource::new(Channels::Mono, 20).expect("20 ms frames");
    let mut received = Received {
        video: HashMap::new(),
        audio: HashMap::new(),
        data: 0,
        last_frame: HashMap::new(),
    };
    let mut video_tick =
        tokio::time::interval(Duration::from_micros(1_000_000 / config.fps.max(1) as u64));
    video_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Audio is a sample clock: a tick missed while a picture was being encoded is sent late
    // rather than never (with `Skip`, a debug build of 4 participants on two cores sent
    // 12.7-17 s of voice in 20 s).
    let mut audio_tick = tokio::time::interval(Duration::from_millis(20));
    audio_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut chat_sent = false;
    loop {
        let current = phase.borrow().0;
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = phase.borrow().0;
                if now == Phase::Measuring && !chat_sent {
                    chat_sent = true;
                    let text = format!("{} checking in", room.local().identity);
                    let _ = room.send_data("chat", &text, vec![]);
                }
            }
            _ = video_tick.tick(), if current != Phase::Draining => {
                if let (Some(c), Some(g), Phase::Measuring) = (compositor.as_mut(), grid.as_ref(), current) {
                    // Everyone this participant receives, plus its own camera (self view).
                    let mut ids: Vec<&String> = received.last_frame.keys().chain(std::iter::once(&me)).collect();
                    // Natural order: p2 before p10.
                    ids.sort_by_key(|id| (id.len(), id.to_string()));
                    let people: Vec<Person> = ids.iter().map(|id| Person::new(id)).collect();
                    let layout = Layout::compute(&LayoutInput::new(&people, Viewport::new(g.width, g.height), Mode::Gallery));
                    let canvas = c.compose(&layout, &people, &HashMap::new(), micros(clock) as i64);
                    let _ = g.frames.try_send(canvas.clone());
                }
                let frame = pattern.next_frame(micros(clock));
                if let Some(c) = compositor.as_mut() {
                    c.update(&me, frame.clone());
                }
                if room.publish_video(&frame).await.is_ok() {
                    counters.video_sent.store(pattern.next_seq(), Ordering::Relaxed);
                }
            }
            _ = audio_tick.tick(), if config.audio && current != Phase::Draining => {
                if room.publish_audio(&speech.next_frame()).await.is_ok() {
                    counters.audio_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            event = room.next_event() => match event {
                Some(RoomEvent::VideoFrame { participant, frame, .. }) => {
                    let Some(stamp) = read_stamp(&frame) else { continue };
                    if current == Phase::Warmup {
                        seen.lock().expect("seen lock").insert((me.clone(), participant.clone()));
                    }
                    let windows = &phase.borrow().1;
                    if let (Phase::Measuring | Phase::Draining, Some(&(from, _))) = (current, windows.get(&participant))
                        && stamp.seq >= from
                    {
                        let latency = (micros(clock).saturating_sub(stamp.capture_us)) as f64 / 1000.0;
                        received.video.entry(participant.clone()).or_default().push((stamp.seq, latency));
                        decoded_total.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(c) = compositor.as_mut() {
                        c.update(&participant, frame.clone());
                    }
                    received.last_frame.insert(participant, frame);
                }
                Some(RoomEvent::AudioFrame { participant, .. }) if current == Phase::Measuring => {
                    *received.audio.entry(participant).or_default() += 1;
                }
                Some(RoomEvent::Data(_)) => received.data += 1,
                Some(RoomEvent::Disconnected) | None => break,
                _ => {}
            }
        }
    }
    (room, received)
}

/// Runs a synthetic conference against `server`: joins `config.participants` participants,
/// waits until everyone receives everyone, measures for `config.seconds`, and reports, with
/// the last picture the first participant decoded from the second. `progress` is called about
/// twice a second; with `grid`, the first participant's composed view goes there.
pub async fn run_conference_with_grid(
    server: &Server,
    config: &ConferenceConfig,
    mut progress: impl FnMut(&Progress),
    mut grid: Option<GridSink>,
) -> Result<(ConferenceReport, Option<VideoFrame>), RoomError> {
    if config.participants < 2 {
        return Err(RoomError::Signal(
            "a conference needs at least two participants".into(),
        ));
    }
    let clock = Instant::now();
    let mut rooms = Vec::new();
    for i in 0..config.participants {
        let identity = format!("p{}", i + 1);
        let token = server
            .token(
                &config.room,
                &identity,
                &format!("Participant {}", i + 1),
                Role::Speaker,
                Duration::from_secs(3600),
            )
            .map_err(|e| RoomError::Signal(e.to_string()))?;
        let options = RoomOptions {
            video: Some(VideoOptions {
                width: config.width,
                height: config.height,
                fps: config.fps,
                bitrate_kbps: config.bitrate_kbps,
                simulcast: config.simulcast,
            }),
            audio: config.audio,
            ..RoomOptions::default()
        };
        rooms.push(Room::connect(&server.signal_url(), &token, options).await?);
    }
    let identities: Vec<String> = rooms.iter().map(|r| r.local().identity.clone()).collect();
    let (phase_tx, phase_rx) = watch::channel((Phase::Warmup, HashMap::new()));
    let decoded_total = Arc::new(AtomicU64::new(0));
    let seen: Seen = Arc::default();
    let mut counters = Vec::new();
    let mut tasks = Vec::new();
    for room in rooms {
        let c = Arc::new(Counters::default());
        counters.push(c.clone());
        tasks.push(tokio::spawn(participant(
            room,
            config.clone(),
            clock,
            c,
            phase_rx.clone(),
            decoded_total.clone(),
            seen.clone(),
            grid.take(),
        )));
    }

    // Warm-up: until every participant has decoded a picture from every other.
    let warm_start = Instant::now();
    let all_pairs = config.participants * (config.participants - 1);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let pairs_up = seen.lock().expect("seen lock").len();
        progress(&Progress {
            phase: "warmup",
            elapsed: warm_start.elapsed().as_secs_f64(),
            frames_decoded: pairs_up as u64,
            frames_sent: all_pairs as u64,
        });
        if pairs_up >= all_pairs || warm_start.elapsed() > config.warmup_timeout {
            break;
        }
    }
    let warmup_seconds = warm_start.elapsed().as_secs_f64();
    let windows_start = windows(&identities, &counters);
    let _ = phase_tx.send((Phase::Measuring, windows_start.clone()));
    let measure_start = Instant::now();
    while measure_start.elapsed().as_secs_f64() < config.seconds {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sent: u64 = identities
            .iter()
            .zip(&counters)
            .map(|(id, c)| (c.video_sent.load(Ordering::Relaxed) - windows_start[id].0) as u64)
            .sum();
        progress(&Progress {
            phase: "measuring",
            elapsed: measure_start.elapsed().as_secs_f64(),
            frames_decoded: decoded_total.load(Ordering::Relaxed),
            frames_sent: sent * (config.participants as u64 - 1),
        });
    }
    let measured = measure_start.elapsed().as_secs_f64();
    let windows_end = windows(&identities, &counters);
    let _ = phase_tx.send((Phase::Draining, windows_start.clone()));
    // In-flight pictures (a few frame intervals of latency) still count.
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop(phase_tx);

    let mut results = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => results.push(r),
            Err(e) => return Err(RoomError::Signal(format!("participant task failed: {e}"))),
        }
    }
    let mut pairs = Vec::new();
    let mut audio = Vec::new();
    let mut data = DataReport::default();
    let mut snapshot = None;
    let mut uplinks = Vec::new();
    for (i, (room, received)) in results.iter().enumerate() {
        let me = &identities[i];
        let room_stats = room.stats().await;
        // Encoded video only, over the whole run (warm-up included).
        let sent_kbps = room_stats.sent.video_bytes as f64 * 8.0
            / 1000.0
            / (warmup_seconds + measured).max(1e-9);
        uplinks.push(UplinkReport::new(me, &room_stats.sent, sent_kbps));
        let stats: BTreeMap<String, madang::room::TrackStats> = room_stats
            .received
            .into_iter()
            .map(|s| (s.track.clone(), s))
            .collect();
        for from in identities.iter().filter(|f| *f != me) {
            let (start, end) = (windows_start[from].0, windows_end[from].0);
            let sent = end.saturating_sub(start) as u64;
            let got: Vec<&(u32, f64)> = received
                .video
                .get(from)
                .map(|v| v.iter().filter(|(seq, _)| *seq < end).collect())
                .unwrap_or_default();
            let mut seqs: Vec<u32> = got.iter().map(|(s, _)| *s).collect();
            seqs.sort_unstable();
            seqs.dedup();
            let decoded = seqs.len() as u64;
            let mut latencies: Vec<f64> = got.iter().map(|(_, l)| *l).collect();
            let track = stats.get(&format!("{from}/camera"));
            let lost_frames = track.map_or(0, |s| s.frames_lost);
            pairs.push(PairReport {
                from: from.clone(),
                to: me.clone(),
                frames_sent: sent,
                frames_received: (decoded + lost_frames).min(sent.max(decoded)),
                frames_decoded: decoded,
                loss_pct: if sent > 0 {
                    100.0 * (sent.saturating_sub(decoded)) as f64 / sent as f64
                } else {
                    0.0
                },
                latency_ms: Percentiles::of(&mut latencies),
                kbps: track.map_or(0.0, |s| s.kbps()),
                width: track.map_or(0, |s| s.frame_size.0),
                jitter_ms: track.and_then(|s| s.jitter_ms),
                rtt_ms: track.and_then(|s| s.rtt_ms),
                // Counted over the whole run here (the room's statistics are cumulative).
                repair: VideoRepair::between(None, track),
            });
            let audio_sent = windows_end[from].1 - windows_start[from].1;
            let mic = stats.get(&format!("{from}/microphone"));
            let concealed_ms = mic.map_or(0.0, |s| s.audio_concealed_ms);
            // Audio events include concealed frames; played ones are the rest.
            let audio_got = received
                .audio
                .get(from)
                .copied()
                .unwrap_or(0)
                .saturating_sub((concealed_ms / 20.0).round() as u64)
                .min(audio_sent);
            if config.audio {
                audio.push(AudioPairReport {
                    from: from.clone(),
                    to: me.clone(),
                    frames_sent: audio_sent,
                    frames_received: audio_got,
                    loss_pct: if audio_sent > 0 {
                        100.0 * (audio_sent - audio_got) as f64 / audio_sent as f64
                    } else {
                        0.0
                    },
                    fec_frames: mic.map_or(0, |s| s.audio_fec_frames),
                    copy_frames: mic.map_or(0, |s| s.audio_copy_frames),
                    concealed_ms,
                    buffer_delay_ms: mic.map_or(0.0, |s| s.buffer_delay_ms),
                });
            }
        }
        data.received += received.data;
        if i == 0 {
            snapshot = received.last_frame.get(&identities[1]).cloned();
        }
    }
    let downlinks = madang::sim::downlink_reports(&server.stats().downlinks);
    data.sent = config.participants as u64;
    data.expected = data.sent * (config.participants as u64 - 1);
    for (room, _) in results {
        room.leave().await;
    }
    Ok((
        ConferenceReport {
            participants: config.participants,
            seconds: measured,
            warmup_seconds,
            pairs,
            audio,
            data_messages: data,
            uplinks,
            downlinks,
        },
        snapshot,
    ))
}
