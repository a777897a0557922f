//! Recording: what the server forwards, written as it came — no transcoding — into one
//! fragmented MP4 file per participant's camera and microphone (H.264 + Opus), one per
//! other video (a screen share) and one for a room's composited grid.
//!
//! Pure, on the caller's clock: [`Recorder`] is fed the RTP packets the engine receives and
//! `now`, and answers with [`RecordOutput`]s — open a file with its init segment, append a
//! fragment, close — that the server's writer thread carries out; tests read them from
//! memory.
//!
//! - **Why fragmented MP4** (not Matroska): every player and browser (Media Source
//!   Extensions) reads it, Opus in ISO BMFF is standardised, and each fragment (`moof` +
//!   `mdat`) stands alone, so a file cut by a crash plays up to its last whole fragment.
//!   Its boxes are written by `mp4-atom`, kept up by the MoQ project, which writes and
//!   reads fragmented MP4 for live media itself.
//! - **Pictures** pass through the same receive buffer as the grid's (`VideoBuffer`):
//!   reordered, repairs awaited (the engine NACKs the publisher), and a picture that
//!   cannot be completed skipped up to the next keyframe — which is asked for — so every
//!   recorded picture decodes; and a keyframe asked for at least every [`KEYFRAME_EVERY`],
//!   for seeking. Audio packets are reordered over
//!   [`AUDIO_REORDER`] and written as they came; a lost one leaves a gap in time.
//! - **Time**: each track's first packet is placed at its arrival since the file began, and
//!   everything after it by its RTP timestamp, so a participant's sound and picture stay
//!   together within the difference of their network delays.
//! - **Fragments** start at a keyframe when one comes at least [`MIN_FRAGMENT`] after the
//!   last fragment began, and otherwise every [`MAX_FRAGMENT`]: a crash loses at most that.
//! - **Files** open once both tracks of a pair have shown their format (the first keyframe's
//!   SPS and PPS, the first Opus packet), or after [`OPEN_WAIT`] with what has come. A
//!   track that appears after its file opened without it (a camera switched on later)
//!   closes the file and starts the next part.

pub mod mp4;
mod writer;

pub use writer::{FileWriter, WriterThread};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::sfu::forward::InHeader;
use crate::sfu::rooms::GRID_TRACK;
use crate::signal::TrackKind;
use crate::transport::clock::TsExtender;
use crate::transport::jitter::VideoBuffer;
use mp4::{AUDIO_TIMESCALE, AudioFormat, Sample, Tracks, VIDEO_TIMESCALE, VideoFormat};

/// Where a server records, and which rooms from their start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordConfig {
    /// Directory of the recordings: one subdirectory per room.
    pub dir: PathBuf,
    /// Rooms recorded from their first participant on; empty: every room. Hosts start and
    /// stop recording any room (`record`).
    pub rooms: Vec<String>,
}

impl RecordConfig {
    /// Whether `room` is recorded from its start.
    pub fn records_from_start(&self, room: &str) -> bool {
        self.rooms.is_empty() || self.rooms.iter().any(|r| r == room)
    }
}

/// Creates `dir` if needed and checks that a file can be written in it: a server that
/// cannot record says so when it starts, not when the first room does.
pub fn check_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".madang-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// Identifies one file of a [`Recorder`]'s outputs.
pub type FileId = u64;

/// What the writer must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOutput {
    /// Create `path` (or, if it exists, the same name with `-2`, `-3`, … before the
    /// extension), its directory too, and write `init` to it.
    Open {
        /// The file from now on.
        file: FileId,
        /// Where.
        path: PathBuf,
        /// The init segment.
        init: Vec<u8>,
    },
    /// Append a fragment (write it whole before the next).
    Append {
        /// Which file.
        file: FileId,
        /// The fragment.
        bytes: Vec<u8>,
    },
    /// The file is complete: write its duration into the init segment
    /// ([`mp4::duration_offset`]) and close it.
    Close {
        /// Which file.
        file: FileId,
        /// Its duration, milliseconds.
        duration_ms: u64,
    },
}

/// How long a file waits for the format of each of its tracks before it opens without the
/// tracks still silent.
pub const OPEN_WAIT: Duration = Duration::from_secs(2);
/// A keyframe closes the fragment before it when the fragment is at least this long.
pub const MIN_FRAGMENT: Duration = Duration::from_secs(1);
/// The longest fragment: what a crash may lose.
pub const MAX_FRAGMENT: Duration = Duration::from_secs(2);
/// A recorded video gets a keyframe at least this often (the recorder asks for one): a
/// player seeks to it, and a file's pictures decode from there whatever came before. A
/// keyframe costs about as much as 5–10 other pictures: at 30 fps, one in 300 adds 2–3 %
/// to the stream, for everyone who receives it.
pub const KEYFRAME_EVERY: Duration = Duration::from_secs(10);
/// How long audio packets wait to be put in order (ticks of 48 kHz: 200 ms).
pub const AUDIO_REORDER: Duration = Duration::from_millis(200);

/// Counters of a recorder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordStats {
    /// Files opened.
    pub files: u64,
    /// Pictures written.
    pub pictures: u64,
    /// Pictures the receive buffer gave up (each skipped up to the next keyframe).
    pub pictures_dropped: u64,
    /// Audio packets written.
    pub audio_packets: u64,
    /// Audio packets that came after their place had been written, or twice.
    pub audio_dropped: u64,
    /// Fragments written.
    pub fragments: u64,
}

/// One track's clock: its RTP timestamps placed on the file's timeline, in the track's own
/// ticks (its RTP clock rate) since the file began.
#[derive(Debug)]
struct Clock {
    stamps: TsExtender,
    /// The first packet's extended timestamp and where it lies on the timeline.
    anchor: Option<(u64, i64)>,
}

impl Clock {
    fn new() -> Self {
        Self {
            stamps: TsExtender::default(),
            anchor: None,
        }
    }

    /// The timeline position of `ts`; the first call anchors the clock at `since_origin`.
    fn place(&mut self, ts: u32, since_origin: Duration, rate: u32) -> i64 {
        let ext = self.stamps.extend(ts);
        let (first, at) = *self.anchor.get_or_insert_with(|| {
            let at = since_origin.as_micros() as i64 * i64::from(rate) / 1_000_000;
            (ext, at)
        });
        at + (ext as i64 - first as i64)
    }
}

/// Samples of one track on their way into fragments.
#[derive(Debug, Default)]
struct Queue {
    /// The last sample placed, waiting for the next one to know its duration.
    last: Option<(i64, bool, Vec<u8>)>,
    /// Samples with their durations, for the next fragment (times since the file began).
    ready: Vec<Sample>,
    /// The duration of the last sample that got one.
    last_duration: u32,
}

impl Queue {
    /// Adds a sample at `time` (ticks since the file began); a sample not after the last
    /// is dropped (`false`).
    fn push(&mut self, time: i64, sync: bool, data: Vec<u8>) -> bool {
        if let Some((t, s, d)) = self.last.take() {
            if time <= t {
                self.last = Some((t, s, d));
                return false;
            }
            let duration = (time - t).min(u32::MAX as i64) as u32;
            self.last_duration = duration;
            self.ready.push(Sample {
                time: t.max(0) as u64,
                duration,
                sync: s,
                data: d,
            });
        }
        self.last = Some((time, sync, data));
        true
    }

    /// Gives the last sample a duration of its own (`fallback` when none is known).
    fn finish(&mut self, fallback: u32) {
        if let Some((t, sync, data)) = self.last.take() {
            let duration = if self.last_duration > 0 {
                self.last_duration
            } else {
                fallback
            };
            self.ready.push(Sample {
                time: t.max(0) as u64,
                duration,
                sync,
                data,
            });
        }
    }

    /// Ticks covered by the ready samples.
    fn span(&self) -> u64 {
        self.ready.iter().map(|s| u64::from(s.duration)).sum()
    }
}

#[derive(Debug)]
struct VideoIn {
    track: String,
    /// The stream's SSRC: a new one (the publisher's connection restarted) starts its
    /// numbering and clock anew.
    ssrc: u32,
    buffer: Box<VideoBuffer>,
    clock: Clock,
    format: Option<VideoFormat>,
    queue: Queue,
    /// When the last keyframe was recorded, or one asked for (see [`KEYFRAME_EVERY`]).
    last_keyframe: Instant,
}

#[derive(Debug)]
struct AudioIn {
    track: String,
    /// As [`VideoIn::ssrc`].
    ssrc: u32,
    clock: Clock,
    format: Option<AudioFormat>,
    /// Packets by timeline position, until [`AUDIO_REORDER`] has passed them.
    held: BTreeMap<i64, Vec<u8>>,
    queue: Queue,
}

impl AudioIn {
    /// Moves the held packets up to timeline position `until` into the queue, in order
    /// (counting those that came after their place was written).
    fn commit(&mut self, until: i64, stats: &mut RecordStats) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() > until {
                break;
            }
            let (at, packet) = entry.remove_entry();
            if self.queue.push(at, true, packet) {
                stats.audio_packets += 1;
            } else {
                stats.audio_dropped += 1;
            }
        }
    }
}

#[derive(Debug)]
struct OpenFile {
    id: FileId,
    tracks: Tracks,
    sequence: u32,
    fragment_started: Instant,
    /// Where its media written so far ends, milliseconds.
    end_ms: u64,
}

/// One file's worth of a participant's tracks (its camera and microphone, or one other
/// video), in its successive parts.
#[derive(Debug)]
struct Pair {
    /// The file name's stem.
    stem: String,
    /// Where its files go.
    dir: PathBuf,
    /// Wall-clock time of the room's recording start, and that instant.
    wall: (u64, Instant),
    /// When the current part began: time zero of its timeline.
    origin: Instant,
    part: u32,
    /// A camera and microphone pair (else a video alone: a screen share, the grid).
    with_sound: bool,
    video: Option<VideoIn>,
    audio: Option<AudioIn>,
    file: Option<OpenFile>,
}

impl Pair {
    fn new(
        (stem, with_sound): (String, bool),
        dir: PathBuf,
        wall: (u64, Instant),
        now: Instant,
    ) -> Self {
        Self {
            stem,
            with_sound,
            dir,
            wall,
            origin: now,
            part: 1,
            video: None,
            audio: None,
            file: None,
        }
    }

    fn since_origin(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.origin)
    }

    /// Whether the file can open, and with which tracks (`closing`: with what there is).
    fn tracks_to_open(&self, now: Instant, closing: bool) -> Option<Tracks> {
        let video = self.video.as_ref().and_then(|v| v.format.clone());
        let audio = self.audio.as_ref().and_then(|a| a.format);
        // A pair is complete with both; a video other than a camera (a screen share, the
        // grid) has no sound to wait for.
        let complete = video.is_some() && (audio.is_some() || !self.with_sound);
        let waited = closing || self.since_origin(now) >= OPEN_WAIT;
        ((video.is_some() || audio.is_some()) && (complete || waited))
            .then_some(Tracks { video, audio })
    }

    fn wall_secs(&self, now: Instant) -> u64 {
        self.wall.0 + now.saturating_duration_since(self.wall.1).as_secs()
    }
}

/// Recordings of one room.
#[derive(Debug)]
struct RoomRecording {
    dir: PathBuf,
    wall: (u64, Instant),
    pairs: BTreeMap<String, Pair>,
    /// Each track's file stem and whether it pairs with sound ([`stem_of`]), worked out
    /// once: a packet finds its pair without building a string.
    stems: HashMap<String, (String, bool)>,
}

/// Every recording of a server. See the [module documentation](self).
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    rooms: BTreeMap<String, RoomRecording>,
    rtt: Duration,
    sink: Sink,
}

/// Where the pairs' files are decided: the outputs for the writer, the counters, the ids.
#[derive(Debug)]
struct Sink {
    outputs: VecDeque<RecordOutput>,
    next_file: FileId,
    stats: RecordStats,
}

impl Recorder {
    /// Records into `dir` (nothing is written until a room starts).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            rooms: BTreeMap::new(),
            rtt: crate::transport::jitter::DEFAULT_RTT,
            sink: Sink {
                outputs: VecDeque::new(),
                next_file: 1,
                stats: RecordStats::default(),
            },
        }
    }

    /// What it counted.
    pub fn stats(&self) -> RecordStats {
        self.sink.stats
    }

    /// Whether `room` is being recorded.
    pub fn is_recording(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// The round-trip time of publishers' legs: how long a picture waits for a repair.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
        for room in self.rooms.values_mut() {
            for pair in room.pairs.values_mut() {
                if let Some(v) = pair.video.as_mut() {
                    v.buffer.set_rtt(rtt);
                }
            }
        }
    }

    /// Starts recording `room` at `now`, which is `unix_secs` on the wall clock (it names
    /// the files). Already recording: nothing changes.
    pub fn start(&mut self, room: &str, now: Instant, unix_secs: u64) {
        if self.rooms.contains_key(room) {
            return;
        }
        tracing::info!("recording room {room}");
        self.rooms.insert(
            room.to_owned(),
            RoomRecording {
                dir: self.dir.join(file_safe(room)),
                wall: (unix_secs, now),
                pairs: BTreeMap::new(),
                stems: HashMap::new(),
            },
        );
    }

    /// Stops recording `room`: every file written to its end and closed.
    pub fn stop(&mut self, room: &str, now: Instant) {
        if let Some(recording) = self.rooms.remove(room) {
            tracing::info!("recording of room {room} stopped");
            for (_, mut pair) in recording.pairs {
                self.close(&mut pair, now);
            }
        }
    }

    /// Stops every recording (the server shuts down).
    pub fn stop_all(&mut self, now: Instant) {
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.stop(&room, now);
        }
    }

    /// An RTP packet of `track` (a room track id: `identity/source`, or the grid's) of a
    /// recorded room, arrived at `now`; ignored when the room is not recorded.
    pub fn input(
        &mut self,
        now: Instant,
        room: &str,
        track: &str,
        kind: TrackKind,
        header: &InHeader,
        payload: &Bytes,
    ) {
        let rtt = self.rtt;
        let Some(recording) = self.rooms.get_mut(room) else {
            return;
        };
        if !recording.stems.contains_key(track) {
            recording.stems.insert(track.to_owned(), stem_of(track));
        }
        let (stem, with_sound) = &recording.stems[track];
        if !recording.pairs.contains_key(stem) {
            let pair = Pair::new(
                (stem.clone(), *with_sound),
                recording.dir.clone(),
                recording.wall,
                now,
            );
            recording.pairs.insert(stem.clone(), pair);
        }
        let Some(pair) = recording.pairs.get_mut(stem) else {
            return;
        };
        let since = pair.since_origin(now);
        match kind {
            TrackKind::Video => {
                let video = pair.video.get_or_insert_with(|| {
                    let mut buffer = Box::new(VideoBuffer::new(false, now));
                    buffer.set_rtt(rtt);
                    VideoIn {
                        track: track.to_owned(),
                        ssrc: header.ssrc,
                        buffer,
                        clock: Clock::new(),
                        format: None,
                        queue: Queue::default(),
                        last_keyframe: now,
                    }
                });
                if video.track != track {
                    return; // a second video of the same stem (not produced by stem_of)
                }
                if video.ssrc != header.ssrc {
                    // A restarted stream: its sequence numbers and timestamps start anywhere;
                    // it goes on at its arrival, from its first keyframe.
                    video.ssrc = header.ssrc;
                    video.clock = Clock::new();
                    *video.buffer = VideoBuffer::new(false, now);
                    video.buffer.set_rtt(rtt);
                }
                video.clock.place(header.timestamp, since, VIDEO_TIMESCALE);
                video.buffer.insert(
                    now,
                    header.seq,
                    header.timestamp,
                    header.marker,
                    payload.clone(),
                );
            }
            TrackKind::Audio => {
                let audio = pair.audio.get_or_insert_with(|| AudioIn {
                    track: track.to_owned(),
                    ssrc: header.ssrc,
                    clock: Clock::new(),
                    format: None,
                    held: BTreeMap::new(),
                    queue: Queue::default(),
                });
                if audio.track != track || payload.is_empty() {
                    return;
                }
                if audio.ssrc != header.ssrc {
                    // Restarted (see the video's): what is held goes out in its order first.
                    audio.ssrc = header.ssrc;
                    audio.clock = Clock::new();
                    audio.commit(i64::MAX, &mut self.sink.stats);
                }
                let at = audio.clock.place(header.timestamp, since, AUDIO_TIMESCALE);
                audio
                    .format
                    .get_or_insert_with(|| AudioFormat::of_packet(payload));
                if audio.held.insert(at, payload.to_vec()).is_some() {
                    self.sink.stats.audio_dropped += 1;
                }
            }
        }
        self.sink.advance(pair, now, false);
    }

    /// Time passed: pictures the buffers gave up on, audio out of its reorder window,
    /// fragments due, files due to open; pairs whose tracks all ended (`alive` says which
    /// still exist, by room and track) are closed.
    pub fn tick(&mut self, now: Instant, alive: impl Fn(&str, &str) -> bool) {
        let mut ended = Vec::new();
        for (room, recording) in self.rooms.iter_mut() {
            for (stem, pair) in recording.pairs.iter_mut() {
                let video_alive = pair.video.as_ref().is_some_and(|v| alive(room, &v.track));
                let audio_alive = pair.audio.as_ref().is_some_and(|a| alive(room, &a.track));
                if !video_alive && !audio_alive {
                    ended.push((room.clone(), stem.clone()));
                    continue;
                }
                self.sink.advance(pair, now, false);
            }
        }
        for (room, stem) in ended {
            let Some(recording) = self.rooms.get_mut(&room) else {
                continue;
            };
            recording.stems.retain(|_, (s, _)| *s != stem);
            if let Some(mut pair) = recording.pairs.remove(&stem) {
                self.close(&mut pair, now);
            }
        }
    }

    /// Room tracks whose recording waits for a keyframe, due for a request now (at most one
    /// per track per 500 ms), and those without one for [`KEYFRAME_EVERY`].
    pub fn keyframes_due(&mut self, now: Instant) -> Vec<(String, String)> {
        let mut due = Vec::new();
        for (room, recording) in self.rooms.iter_mut() {
            for pair in recording.pairs.values_mut() {
                let Some(v) = pair.video.as_mut() else {
                    continue;
                };
                let stale = now.saturating_duration_since(v.last_keyframe) >= KEYFRAME_EVERY;
                if v.buffer.keyframe_request_due(now) || stale {
                    if stale {
                        v.last_keyframe = now;
                    }
                    due.push((room.clone(), v.track.clone()));
                }
            }
        }
        due
    }

    /// The next thing for the writer to do.
    pub fn poll_output(&mut self) -> Option<RecordOutput> {
        self.sink.outputs.pop_front()
    }

    /// Writes what the pair holds and closes its file; one that never opened opens with
    /// the formats that came, if any.
    fn close(&mut self, pair: &mut Pair, now: Instant) {
        self.sink.advance(pair, now, true);
        self.sink.close_part(pair, now);
    }
}

impl Sink {
    /// Moves what is ready along: pictures out of the buffer, audio out of its reorder
    /// window, the file opened when it can be, and a fragment when one is due.
    fn advance(&mut self, pair: &mut Pair, now: Instant, closing: bool) {
        // Where the first keyframe made ready samples split, when the samples before it
        // are a fragment's worth.
        let mut keyframe_at = None;
        if let Some(video) = pair.video.as_mut() {
            let dropped = video.buffer.stats().pictures_dropped;
            while let Some(picture) = video.buffer.poll(now) {
                if picture.keyframe
                    && let Some(format) = VideoFormat::of_keyframe(&picture.data)
                {
                    video.format = Some(format);
                }
                if video.format.is_none() {
                    continue;
                }
                let since = now.saturating_duration_since(pair.origin);
                let at = video.clock.place(picture.timestamp, since, VIDEO_TIMESCALE);
                if video
                    .queue
                    .push(at, picture.keyframe, mp4::length_prefixed(&picture.data))
                {
                    self.stats.pictures += 1;
                    if picture.keyframe {
                        video.last_keyframe = now;
                    }
                    // The keyframe waits for its duration; all before it are ready.
                    if picture.keyframe
                        && keyframe_at.is_none()
                        && video.queue.span() >= ticks(MIN_FRAGMENT, VIDEO_TIMESCALE)
                    {
                        keyframe_at = Some(video.queue.ready.len());
                    }
                }
            }
            self.stats.pictures_dropped += video.buffer.stats().pictures_dropped - dropped;
        }
        if let Some(audio) = pair.audio.as_mut() {
            let since = now.saturating_duration_since(pair.origin);
            let horizon = ticks(since.saturating_sub(AUDIO_REORDER), AUDIO_TIMESCALE) as i64;
            audio.commit(horizon, &mut self.stats);
        }
        if pair.file.is_none() {
            let Some(tracks) = pair.tracks_to_open(now, closing) else {
                return;
            };
            let Ok(init) = mp4::init_segment(&tracks) else {
                return;
            };
            let id = self.next_file;
            self.next_file += 1;
            self.stats.files += 1;
            let part = match pair.part {
                1 => String::new(),
                n => format!("-part{n}"),
            };
            let start = utc_stamp(pair.wall_secs(pair.origin));
            let name = format!("{}-{start}{part}.mp4", pair.stem);
            self.outputs.push_back(RecordOutput::Open {
                file: id,
                path: pair.dir.join(name),
                init,
            });
            pair.file = Some(OpenFile {
                id,
                tracks,
                sequence: 1,
                fragment_started: now,
                end_ms: 0,
            });
        }
        // A track the open file lacks has shown its format: the next part takes both.
        let lacks_video = pair.file.as_ref().is_some_and(|f| f.tracks.video.is_none())
            && pair.video.as_ref().is_some_and(|v| v.format.is_some());
        let lacks_audio = pair.file.as_ref().is_some_and(|f| f.tracks.audio.is_none())
            && pair.audio.as_ref().is_some_and(|a| a.format.is_some());
        if lacks_video || lacks_audio {
            self.close_part(pair, now);
            return;
        }
        let Some(file) = pair.file.as_ref() else {
            return;
        };
        let due = now.saturating_duration_since(file.fragment_started) >= MAX_FRAGMENT;
        if keyframe_at.is_some() || due {
            self.write_fragment(pair, keyframe_at, now);
        }
    }

    /// Writes the ready samples as one fragment — of video only those before index
    /// `video_until` when given.
    fn write_fragment(&mut self, pair: &mut Pair, video_until: Option<usize>, now: Instant) {
        let Some(file) = pair.file.as_mut() else {
            return;
        };
        let mut video: Vec<Sample> = match pair.video.as_mut() {
            Some(v) => {
                let n = video_until
                    .unwrap_or(v.queue.ready.len())
                    .min(v.queue.ready.len());
                v.queue.ready.drain(..n).collect()
            }
            None => Vec::new(),
        };
        let mut audio: Vec<Sample> = pair
            .audio
            .as_mut()
            .map(|a| std::mem::take(&mut a.queue.ready))
            .unwrap_or_default();
        if file.tracks.video.is_none() {
            video.clear();
        }
        if file.tracks.audio.is_none() {
            audio.clear();
        }
        file.fragment_started = now;
        if video.is_empty() && audio.is_empty() {
            return;
        }
        let end = |samples: &[Sample], rate: u32| {
            samples.last().map_or(0, |s| {
                (s.time + u64::from(s.duration)) * 1000 / u64::from(rate)
            })
        };
        file.end_ms = file
            .end_ms
            .max(end(&video, VIDEO_TIMESCALE))
            .max(end(&audio, AUDIO_TIMESCALE));
        match mp4::fragment(&file.tracks, file.sequence, &video, &audio) {
            Ok(bytes) => {
                file.sequence += 1;
                self.stats.fragments += 1;
                self.outputs.push_back(RecordOutput::Append {
                    file: file.id,
                    bytes,
                });
            }
            Err(e) => tracing::warn!("recording {}: {e}", pair.stem),
        }
    }

    /// Ends the current part: its last samples written, the file closed; the next part
    /// begins now, its tracks' clocks anew.
    fn close_part(&mut self, pair: &mut Pair, now: Instant) {
        if let Some(v) = pair.video.as_mut() {
            v.queue.finish(VIDEO_TIMESCALE / 30);
        }
        if let Some(a) = pair.audio.as_mut() {
            a.commit(i64::MAX, &mut self.stats);
            let fallback = a
                .queue
                .last
                .as_ref()
                .and_then(|(_, _, p)| mp4::opus_duration(p))
                .unwrap_or(960);
            a.queue.finish(fallback);
        }
        self.write_fragment(pair, None, now);
        if let Some(file) = pair.file.take() {
            self.outputs.push_back(RecordOutput::Close {
                file: file.id,
                duration_ms: file.end_ms,
            });
            pair.part += 1;
        }
        pair.origin = now;
        if let Some(v) = pair.video.as_mut() {
            v.clock = Clock::new();
            v.queue = Queue::default();
        }
        if let Some(a) = pair.audio.as_mut() {
            a.clock = Clock::new();
            a.queue = Queue::default();
        }
    }
}

fn ticks(d: Duration, rate: u32) -> u64 {
    (d.as_micros() * u128::from(rate) / 1_000_000) as u64
}

/// The file name stem of a room track, and whether that file pairs a camera with a
/// microphone: a participant's camera and microphone share one (`identity`); any other
/// source has its own (`identity-screen`); the grid is `grid`.
fn stem_of(track: &str) -> (String, bool) {
    if track == GRID_TRACK {
        return ("grid".into(), false);
    }
    let (identity, source) = track.rsplit_once('/').unwrap_or((track, ""));
    match source {
        "camera" | "microphone" | "" => (file_safe(identity), true),
        other => (file_safe(&format!("{identity}-{other}")), false),
    }
}

/// `name` with every character but ASCII letters, digits, `-`, `_` and `.` replaced by `_`
/// (and no leading dot): an identity or room name cannot reach outside its directory.
fn file_safe(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match safe.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None if safe.is_empty() => "_".into(),
        None => safe,
    }
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time (UTC).
fn utc_stamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests;
