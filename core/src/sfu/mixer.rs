//! The composited grid of a room (MCU mode): decodes the room's video, lays it out with
//! [`grid::layout`](crate::grid::layout), composes one canvas, encodes it as H.264 and hands
//! out RTP payloads that the engine forwards like any published track. A senior-center TV or
//! a simple C application then decodes one stream instead of twenty-four.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;

use super::forward::InHeader;
use crate::codec::nal::{rtp_payload_carries_sps, rtp_payload_starts_keyframe};
use crate::codec::rtp::{MAX_RTP_PAYLOAD, packetize_h264};
use crate::codec::{CodecError, H264Config, H264Decoder, H264Encoder};
use crate::grid::compose::{Compositor, Fit, Quality};
use crate::grid::layout::{Layout, LayoutInput, Mode, Person, Viewport};
use crate::transport::jitter::VideoBuffer;

/// Settings of a room's composited grid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GridConfig {
    /// Canvas width.
    pub width: u32,
    /// Canvas height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// H.264 bitrate, kbit/s.
    pub bitrate_kbps: u32,
}

impl Default for GridConfig {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 15,
            bitrate_kbps: 1500,
        }
    }
}

struct Input {
    identity: String,
    /// Reorders and waits for the server's repairs of the uplink (the engine NACKs the
    /// publisher); pictures go to the canvas as soon as they are whole.
    buffer: Box<VideoBuffer>,
    decoder: H264Decoder,
}

/// One room's grid.
pub(crate) struct Mixer {
    config: GridConfig,
    compositor: Compositor,
    encoder: H264Encoder,
    inputs: HashMap<String, Input>,
    ssrc: u32,
    seq: u16,
    start: Instant,
}

impl Mixer {
    pub fn new(config: GridConfig, ssrc: u32, now: Instant) -> Result<Self, CodecError> {
        let mut compositor = Compositor::new(config.width, config.height, Fit::Fit)?;
        // Dozens of tiles must compose well within a frame interval on the engine thread.
        compositor.set_quality(Quality::Fast);
        let encoder = H264Encoder::new(
            H264Config::new(config.width, config.height)
                .bitrate_kbps(config.bitrate_kbps)
                .max_fps(config.fps.max(1) as f32)
                .keyframe_interval(config.fps.max(1) * 2),
        )?;
        Ok(Self {
            config,
            compositor,
            encoder,
            inputs: HashMap::new(),
            ssrc,
            seq: 0,
            start: now,
        })
    }

    /// One RTP packet of a participant's video, arrived at `now`: buffered, and what it
    /// completed decoded and held for the canvas.
    pub fn input(
        &mut self,
        now: Instant,
        track: &str,
        identity: &str,
        header: &InHeader,
        payload: &Bytes,
    ) {
        let input = match self.inputs.get_mut(track) {
            Some(i) => i,
            None => {
                let Ok(decoder) = H264Decoder::new() else {
                    return;
                };
                self.inputs.entry(track.to_owned()).or_insert(Input {
                    identity: identity.to_owned(),
                    buffer: Box::new(VideoBuffer::new(false, now)),
                    decoder,
                })
            }
        };
        input.buffer.insert(
            now,
            header.seq,
            header.timestamp,
            header.marker,
            payload.clone(),
        );
        Self::drain(&mut self.compositor, input, now);
    }

    /// Decodes what an input's buffer has ready (or has given up on) at `now`.
    fn drain(compositor: &mut Compositor, input: &mut Input, now: Instant) {
        while let Some(picture) = input.buffer.poll(now) {
            match input.decoder.decode(&picture.data) {
                Ok(Some(frame)) => compositor.update(&input.identity, frame),
                Ok(None) => {}
                Err(_) => input.buffer.reference_lost(now),
            }
            if input.decoder.keyframe_needed() {
                input.buffer.reference_lost(now);
            }
        }
    }

    /// The tracks whose pictures cannot go on without a keyframe, due for a request now
    /// (at most one per track per 500 ms).
    pub fn keyframes_due(&mut self, now: Instant) -> Vec<String> {
        let mut due = Vec::new();
        for (track, input) in self.inputs.iter_mut() {
            Self::drain(&mut self.compositor, input, now);
            if input.buffer.keyframe_request_due(now) {
                due.push(track.clone());
            }
        }
        due
    }

    /// Forgets tracks that ended.
    pub fn retain_tracks(&mut self, alive: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.inputs.keys().filter(|t| !alive(t)).cloned().collect();
        for t in gone {
            if let Some(input) = self.inputs.remove(&t) {
                self.compositor.remove(&input.identity);
            }
        }
    }

    /// A subscriber lost the picture: the next grid frame is an IDR.
    pub fn request_keyframe(&mut self) {
        self.encoder.request_keyframe();
    }

    /// Composes `people`, encodes, and returns the RTP packets of one grid frame.
    pub fn produce(&mut self, people: &[Person], now: Instant) -> Vec<(InHeader, Bytes)> {
        let layout = Layout::compute(&LayoutInput::new(
            people,
            Viewport::new(self.config.width, self.config.height),
            Mode::Gallery,
        ));
        let elapsed_us = now.saturating_duration_since(self.start).as_micros() as i64;
        let canvas = self
            .compositor
            .compose(&layout, people, &HashMap::new(), elapsed_us);
        let Ok(Some(unit)) = self.encoder.encode(canvas) else {
            return Vec::new();
        };
        let timestamp = (elapsed_us * 9 / 100) as u32; // 90 kHz
        let payloads = packetize_h264(&unit.data, MAX_RTP_PAYLOAD);
        let n = payloads.len();
        payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| {
                let header = InHeader {
                    ssrc: self.ssrc,
                    seq: self.seq,
                    timestamp,
                    marker: i == n - 1,
                    keyframe_start: rtp_payload_starts_keyframe(&payload),
                    parameter_sets: rtp_payload_carries_sps(&payload),
                };
                self.seq = self.seq.wrapping_add(1);
                (header, payload)
            })
            .collect()
    }
}

/// What a grid produced, for the engine to act on.
#[derive(Debug)]
pub(crate) enum MixerOutput {
    /// The RTP packets of one grid frame.
    Packets(Vec<(InHeader, Bytes)>),
    /// A participant's decoder waits for a keyframe of this room track.
    NeedKeyframe(String),
}

/// Work for a grid.
enum Job {
    Input {
        now: Instant,
        track: String,
        identity: String,
        header: InHeader,
        payload: Bytes,
    },
    Tick {
        people: Vec<Person>,
        now: Instant,
    },
    Keyframe,
}

/// Most jobs waiting for a grid's thread: a few grid frames' worth of input packets of a
/// full room. When it is full the oldest job is dropped (the grid then waits for a keyframe
/// of that participant), so a grid that cannot keep up never holds up forwarding.
const QUEUE: usize = 1024;

/// The jobs between the engine and a grid's thread.
#[derive(Default)]
pub(crate) struct Queue {
    jobs: std::sync::Mutex<(std::collections::VecDeque<Job>, bool)>,
    ready: std::sync::Condvar,
}

/// A room's grid, run inline (simulation: deterministic) or on its own thread (the server:
/// decoding, composing and encoding never delay forwarding for other rooms).
pub(crate) enum GridRunner {
    /// Work done at once on the caller's thread.
    Inline {
        mixer: Box<Mixer>,
        outputs: std::collections::VecDeque<MixerOutput>,
    },
    /// Work handed to a thread through a bounded drop-oldest queue.
    Thread {
        queue: std::sync::Arc<Queue>,
        outputs: std::sync::mpsc::Receiver<MixerOutput>,
        dropped: u64,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

impl GridRunner {
    /// A grid for one room; `threaded` puts its work on a thread of its own.
    pub fn new(
        config: GridConfig,
        ssrc: u32,
        now: Instant,
        threaded: bool,
    ) -> Result<Self, CodecError> {
        let mixer = Mixer::new(config, ssrc, now)?;
        if !threaded {
            return Ok(Self::Inline {
                mixer: Box::new(mixer),
                outputs: Default::default(),
            });
        }
        let queue = std::sync::Arc::new(Queue::default());
        let (tx, outputs) = std::sync::mpsc::channel();
        let worker_queue = queue.clone();
        let spawned = std::thread::Builder::new()
            .name("madang-grid".into())
            .spawn(move || run_grid(mixer, &worker_queue, &tx));
        let thread = match spawned {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("cannot start a grid thread ({e}); composing on the engine's");
                return Self::new(config, ssrc, now, false);
            }
        };
        Ok(Self::Thread {
            queue,
            outputs,
            dropped: 0,
            thread: Some(thread),
        })
    }

    fn submit(&mut self, job: Job) {
        match self {
            Self::Inline { mixer, outputs } => work(mixer, job, &mut |o| outputs.push_back(o)),
            Self::Thread { queue, dropped, .. } => {
                // The lock guards a queue operation only; a poisoned lock means the grid
                // thread panicked, and then the job has nobody to do it anyway.
                if let Ok(mut guard) = queue.jobs.lock() {
                    if guard.0.len() >= QUEUE {
                        guard.0.pop_front();
                        *dropped += 1;
                    }
                    guard.0.push_back(job);
                }
                queue.ready.notify_one();
            }
        }
    }

    /// One RTP packet of a participant's video, arrived at `now`.
    pub fn input(
        &mut self,
        now: Instant,
        track: &str,
        identity: &str,
        header: &InHeader,
        payload: &Bytes,
    ) {
        self.submit(Job::Input {
            now,
            track: track.to_owned(),
            identity: identity.to_owned(),
            header: *header,
            payload: payload.clone(),
        });
    }

    /// Compose and encode one frame of `people` (and forget tracks of anyone else).
    pub fn tick(&mut self, people: Vec<Person>, now: Instant) {
        self.submit(Job::Tick { people, now });
    }

    /// A subscriber lost the picture: the next grid frame is an IDR.
    pub fn request_keyframe(&mut self) {
        self.submit(Job::Keyframe);
    }

    /// The next thing the grid produced.
    pub fn poll_output(&mut self) -> Option<MixerOutput> {
        match self {
            Self::Inline { outputs, .. } => outputs.pop_front(),
            Self::Thread { outputs, .. } => outputs.try_recv().ok(),
        }
    }

    /// Jobs dropped because the grid's thread fell behind.
    pub fn dropped(&self) -> u64 {
        match self {
            Self::Inline { .. } => 0,
            Self::Thread { dropped, .. } => *dropped,
        }
    }
}

impl Drop for GridRunner {
    fn drop(&mut self) {
        if let Self::Thread { queue, thread, .. } = self {
            if let Ok(mut guard) = queue.jobs.lock() {
                guard.1 = true;
            }
            queue.ready.notify_one();
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Does one job.
fn work(mixer: &mut Mixer, job: Job, out: &mut dyn FnMut(MixerOutput)) {
    match job {
        Job::Input {
            now,
            track,
            identity,
            header,
            payload,
        } => mixer.input(now, &track, &identity, &header, &payload),
        Job::Tick { people, now } => {
            mixer.retain_tracks(|t| people.iter().any(|p| t.starts_with(&format!("{}/", p.id))));
            // Once per grid frame: pictures given up since, and keyframes to ask for.
            for track in mixer.keyframes_due(now) {
                out(MixerOutput::NeedKeyframe(track));
            }
            out(MixerOutput::Packets(mixer.produce(&people, now)));
        }
        Job::Keyframe => mixer.request_keyframe(),
    }
}

/// A grid's thread: jobs in order until the runner is dropped.
fn run_grid(mut mixer: Mixer, queue: &Queue, tx: &std::sync::mpsc::Sender<MixerOutput>) {
    loop {
        let job = {
            let Ok(mut guard) = queue.jobs.lock() else {
                return;
            };
            loop {
                if guard.1 {
                    return;
                }
                if let Some(job) = guard.0.pop_front() {
                    break job;
                }
                guard = match queue.ready.wait(guard) {
                    Ok(g) => g,
                    Err(_) => return,
                };
            }
        };
        work(&mut mixer, job, &mut |o| {
            let _ = tx.send(o);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::H264Encoder;
    use crate::media::{TestPattern, read_stamp};

    /// `frames` pictures of one participant's test pattern, packetised as a publisher would.
    fn stream(width: u32, height: u32, frames: u32) -> Vec<(InHeader, Bytes)> {
        let pattern = TestPattern::new(width, height).unwrap();
        let mut enc = H264Encoder::new(H264Config::new(width, height)).unwrap();
        let mut out = Vec::new();
        for i in 0..frames {
            let unit = enc.encode(&pattern.frame(i, 0)).unwrap().unwrap();
            let payloads = packetize_h264(&unit.data, MAX_RTP_PAYLOAD);
            let n = payloads.len();
            for (k, p) in payloads.into_iter().enumerate() {
                let h = InHeader {
                    ssrc: 5,
                    seq: out.len() as u16,
                    timestamp: i * 6000,
                    marker: k == n - 1,
                    keyframe_start: false,
                    parameter_sets: false,
                };
                out.push((h, p));
            }
        }
        out
    }

    #[test]
    fn a_participant_goes_in_and_the_grid_comes_out() {
        let t0 = Instant::now();
        let config = GridConfig {
            width: 640,
            height: 360,
            fps: 15,
            bitrate_kbps: 1500,
        };
        let mut mixer = Mixer::new(config, 77, t0).unwrap();
        for (h, p) in stream(640, 360, 5) {
            mixer.input(t0, "alice/camera", "alice", &h, &p);
        }
        assert!(mixer.keyframes_due(t0).is_empty());
        let people = vec![Person::new("alice")];
        let packets = mixer.produce(&people, t0 + std::time::Duration::from_millis(66));
        assert!(!packets.is_empty());
        assert!(
            packets[0].0.keyframe_start,
            "the first grid frame is an IDR"
        );
        assert!(packets.last().unwrap().0.marker);
        // Decode the grid and find alice's picture (her stamp) in it.
        let mut buffer = VideoBuffer::new(false, t0);
        let mut decoder = H264Decoder::new().unwrap();
        let mut frame = None;
        for (h, p) in &packets {
            buffer.insert(t0, h.seq, h.timestamp, h.marker, p.clone());
            while let Some(picture) = buffer.poll(t0) {
                frame = decoder.decode(&picture.data).unwrap();
            }
        }
        let frame = frame.expect("a decodable grid frame");
        assert_eq!((frame.width(), frame.height()), (640, 360));
        // A single 16:9 participant fills the 16:9 canvas (minus rounding), stamp included.
        assert_eq!(read_stamp(&frame).map(|s| s.seq), Some(4));
    }

    #[test]
    fn a_grid_on_its_own_thread_hands_its_frames_back() {
        let t0 = Instant::now();
        let config = GridConfig {
            width: 320,
            height: 180,
            fps: 15,
            bitrate_kbps: 500,
        };
        let mut grid = GridRunner::new(config, 78, t0, true).unwrap();
        assert!(matches!(grid, GridRunner::Thread { .. }));
        for (h, p) in stream(320, 180, 3) {
            grid.input(t0, "alice/camera", "alice", &h, &p);
        }
        grid.tick(
            vec![Person::new("alice")],
            t0 + std::time::Duration::from_millis(66),
        );
        // The thread answers in its own time; wait a bounded while.
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let mut packets = None;
        while packets.is_none() && Instant::now() < deadline {
            match grid.poll_output() {
                Some(MixerOutput::Packets(p)) => packets = Some(p),
                Some(MixerOutput::NeedKeyframe(t)) => {
                    panic!("alice's stream began with an IDR: {t}")
                }
                None => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        let packets = packets.expect("a grid frame within 5 s");
        assert!(packets[0].0.keyframe_start && packets.last().unwrap().0.marker);
        assert_eq!(grid.dropped(), 0);
        drop(grid); // joins the thread
    }
}
