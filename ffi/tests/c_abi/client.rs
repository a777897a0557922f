//! The C examples `simple_client.c` and `grid_viewer.c`, built with `examples/c/Makefile`,
//! joining a live room server with Rust participants in it: the C client must see their
//! pictures and they must see the C client's, statically and dynamically linked, under
//! AddressSanitizer and under valgrind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use madang::grid::layout::{Layout, LayoutInput, Mode, Person, Viewport};
use madang::media::{TestPattern, Y4mReader};
use madang::room::{Room, RoomEvent, RoomOptions, VideoOptions};
use madang::sfu::{Server, ServerConfig};
use madang::signal::Role;

use super::{cpu_heavy, lib_dir, timing_sensitive, tmp, workspace};

/// Rust participants' picture size and rate.
const PEER_SIZE: (u32, u32) = (320, 180);
const PEER_FPS: u64 = 15;

/// Builds the C examples with the Makefile into a directory of their own, once per name.
fn make_examples(name: &str, link: &str, extra_cflags: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let out = tmp(name);
    if built.iter().any(|b| b == name) {
        return out;
    }
    std::fs::create_dir_all(&out).unwrap();
    let status = Command::new("make")
        .arg("-C")
        .arg(workspace().join("examples/c"))
        .arg("--quiet")
        .arg("-B")
        .arg(format!("OUT={}", out.display()))
        .arg(format!("MADANG_LIB={}", lib_dir().display()))
        .arg(format!("LINK={link}"))
        .arg(format!("EXTRA_CFLAGS={extra_cflags}"))
        .status()
        .expect("make is needed; scripts/setup.sh installs build-essential");
    assert!(status.success(), "make of the C examples ({link}) failed");
    built.push(name.to_owned());
    out
}

/// One publisher's pictures as a Rust participant decoded them.
#[derive(Debug)]
struct Seen {
    /// Pictures decoded.
    count: u64,
    /// When the first and the last came.
    first: Instant,
    last: Instant,
    /// The longest wait between two.
    longest_gap: Duration,
}

impl Seen {
    /// Nothing yet, as of `now`.
    fn new(now: Instant) -> Self {
        Self {
            count: 0,
            first: now,
            last: now,
            longest_gap: Duration::ZERO,
        }
    }

    /// Counts a picture decoded at `now`.
    fn add(&mut self, now: Instant) {
        if self.count > 0 {
            self.longest_gap = self.longest_gap.max(now - self.last);
        } else {
            self.first = now;
        }
        self.count += 1;
        self.last = now;
    }
}

/// What one Rust participant saw.
#[derive(Debug, Default)]
struct PeerReport {
    /// Per publisher: its decoded pictures.
    pictures: HashMap<String, Seen>,
    /// When each participant that left did.
    left: HashMap<String, Instant>,
    /// Display names by identity.
    names: HashMap<String, String>,
    /// (from, payload) of data messages.
    data: Vec<(String, String)>,
}

/// A room server with Rust participants publishing a stamped test pattern.
struct Party {
    runtime: tokio::runtime::Runtime,
    server: Option<Server>,
    stop: Arc<AtomicBool>,
    peers: Vec<tokio::task::JoinHandle<PeerReport>>,
}

impl Party {
    fn start(identities: &[&str]) -> Self {
        Self::start_on(identities, None)
    }

    /// With every datagram of the server crossing `network` (a profile such as `lte`).
    fn start_on(identities: &[&str], network: Option<&str>) -> Self {
        let config = ServerConfig {
            network: network.map(|n| n.parse().unwrap()),
            ..ServerConfig::dev()
        };
        Self::start_with(identities, config)
    }

    /// With a server of this configuration.
    fn start_with(identities: &[&str], config: ServerConfig) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(Server::bind(config)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut party = Self {
            runtime,
            server: Some(server),
            stop,
            peers: Vec::new(),
        };
        for id in identities {
            let (url, token) = (party.url(), party.token(id, Role::Speaker));
            let stop = party.stop.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            party
                .peers
                .push(party.runtime.spawn(peer(url, token, stop, tx)));
            rx.recv_timeout(Duration::from_secs(15))
                .expect("the Rust participant joined");
        }
        party
    }

    fn url(&self) -> String {
        self.server.as_ref().unwrap().signal_url()
    }

    fn token(&self, identity: &str, role: Role) -> String {
        self.server
            .as_ref()
            .unwrap()
            .token("hall", identity, identity, role, Duration::from_secs(600))
            .unwrap()
    }

    /// Stops the participants (they leave) and the server; returns what each saw.
    fn finish(mut self) -> Vec<PeerReport> {
        self.stop.store(true, Ordering::Relaxed);
        let peers = std::mem::take(&mut self.peers);
        let server = self.server.take().unwrap();
        self.runtime.block_on(async move {
            let mut reports = Vec::new();
            for p in peers {
                reports.push(p.await.unwrap());
            }
            server.shutdown().await;
            reports
        })
    }
}

/// Joins with a camera of the Rust participants' size and rate.
async fn join_publishing(url: &str, token: &str) -> Room {
    let mut video = VideoOptions::new(PEER_SIZE.0, PEER_SIZE.1);
    video.fps = PEER_FPS as u32;
    let options = RoomOptions {
        video: Some(video),
        ..RoomOptions::default()
    };
    Room::connect(url, token, options).await.unwrap()
}

/// One Rust participant: publishes the test pattern until told to stop, counting what it gets.
async fn peer(
    url: String,
    token: String,
    stop: Arc<AtomicBool>,
    joined: std::sync::mpsc::Sender<()>,
) -> PeerReport {
    let mut room = join_publishing(&url, &token).await;
    let _ = joined.send(());
    let mut report = PeerReport::default();
    let mut pattern = TestPattern::new(PEER_SIZE.0, PEER_SIZE.1).unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / PEER_FPS));
    let start = Instant::now();
    // Bounded: the test stops it, and it never runs past two minutes on its own.
    while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(120) {
        tokio::select! {
            _ = tick.tick() => {
                let frame = pattern.next_frame(start.elapsed().as_micros() as u64);
                room.publish_video(&frame).await.unwrap();
            }
            event = room.next_event() => match event {
                Some(RoomEvent::VideoFrame { participant, .. }) => {
                    let now = Instant::now();
                    report.pictures.entry(participant).or_insert_with(|| Seen::new(now)).add(now);
                }
                Some(RoomEvent::ParticipantLeft { identity, .. }) => {
                    report.left.insert(identity, Instant::now());
                }
                Some(RoomEvent::ParticipantJoined(p)) => {
                    report.names.insert(p.identity, p.name);
                }
                Some(RoomEvent::Data(m)) => report.data.push((m.from, m.payload.to_string())),
                Some(_) => {}
                None => break,
            }
        }
    }
    room.leave().await;
    report
}

/// Kills `child` if it still runs after `limit` (well above what it needs): something hangs,
/// and ending it makes the test fail instead of waiting for ever.
fn watchdog(child: &std::process::Child, limit: Duration) {
    let id = child.id();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
    });
}

/// Runs a program with a time limit well above what it needs; its output.
fn run(cmd: &mut Command) -> Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    watchdog(&child, Duration::from_secs(240));
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `received <identity> frames=<n> size=<w>x<h> …` lines of simple_client.
fn received(stdout: &str) -> HashMap<String, (u64, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.strip_prefix("received ")?.split(' ');
            let id = words.next()?.to_owned();
            let frames = words.next()?.strip_prefix("frames=")?.parse().ok()?;
            let size = words.next()?.strip_prefix("size=")?.to_owned();
            Some((id, (frames, size)))
        })
        .collect()
}

/// Runs `simple_client` (optionally under a wrapper such as valgrind) for `seconds` with two
/// Rust participants, and checks both directions: at least `min_share` of the pictures
/// each side sent arrived.
fn simple_client_meets_rust_peers(
    exe: &Path,
    wrapper: &[&str],
    seconds: u64,
    size: (u32, u32),
    fps: u32,
    min_share: f64,
) -> String {
    simple_client_meets_rust_peers_on(None, exe, wrapper, seconds, size, fps, min_share, &[]).1
}

/// [`simple_client_meets_rust_peers`] with the server's datagrams crossing `network`, and
/// `extra` arguments for the C client; returns the C client's stdout and stderr and the
/// Rust participants' reports.
#[allow(clippy::too_many_arguments)]
fn simple_client_meets_rust_peers_on(
    network: Option<&str>,
    exe: &Path,
    wrapper: &[&str],
    seconds: u64,
    size: (u32, u32),
    fps: u32,
    min_share: f64,
    extra: &[&str],
) -> (String, String, Vec<PeerReport>) {
    let party = Party::start_on(&["jongno", "gangnam"], network);
    let token = party.token("c-client", Role::Speaker);
    let mut cmd = Command::new(wrapper.first().map_or(exe.as_os_str(), |w| w.as_ref()));
    if !wrapper.is_empty() {
        cmd.args(&wrapper[1..]).arg(exe);
    }
    cmd.arg(party.url())
        .arg(&token)
        .arg(seconds.to_string())
        .arg(size.0.to_string())
        .arg(size.1.to_string())
        .arg(fps.to_string())
        .args(extra)
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=3");
    let out = run(&mut cmd);
    let reports = party.finish();
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "simple_client failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("joined hall as c-client"), "{stdout}");
    assert!(stdout.contains("left cleanly"), "{stdout}");
    assert!(stdout.contains("stats sent="), "{stdout}");

    // The C client saw the Rust participants' pictures.
    let got = received(&stdout);
    let expected = (seconds * PEER_FPS) as f64;
    for id in ["jongno", "gangnam"] {
        let (frames, size) = got
            .get(id)
            .unwrap_or_else(|| panic!("no pictures from {id}:\n{stdout}"));
        assert_eq!(size, &format!("{}x{}", PEER_SIZE.0, PEER_SIZE.1));
        assert!(
            *frames as f64 >= min_share * expected,
            "{id}: {frames} of ~{expected} pictures\n{stdout}"
        );
    }
    // The Rust participants saw the C client: its name, its pictures, its message. Its
    // pictures are counted from the first one a participant decoded to the C client's leave:
    // how long its subscription took to come up (ICE, DTLS and a keyframe on a lossy link)
    // is bounded on its own, so a slow join does not read as lost pictures.
    for r in &reports {
        assert_eq!(
            r.names.get("c-client").map(String::as_str),
            Some("C client")
        );
        let seen = r
            .pictures
            .get("c-client")
            .unwrap_or_else(|| panic!("no C pictures decoded by a Rust participant: {r:?}"));
        let end = r.left.get("c-client").copied().unwrap_or(seen.last);
        let window = (end - seen.first).min(Duration::from_secs(seconds));
        let c_sent = window.as_secs_f64() * fps as f64;
        eprintln!(
            "a Rust participant decoded {} C pictures of ~{c_sent:.0} sent in the {window:.2?} \
             from its first to the C client's leave",
            seen.count
        );
        assert!(
            window.as_secs_f64() >= seconds as f64 / 2.0,
            "the C client's pictures took more than half the {seconds} s run to come: {r:?}"
        );
        assert!(
            seen.count as f64 >= min_share * c_sent,
            "{} of ~{c_sent:.0} C pictures decoded by a Rust participant: {r:?}",
            seen.count
        );
        assert!(
            r.data
                .iter()
                .any(|(from, text)| from == "c-client" && text == "hello from C"),
            "{:?}",
            r.data
        );
    }
    (stdout, stderr, reports)
}

#[test]
fn simple_client_statically_linked_sees_rust_participants_and_is_seen() {
    let _cpu = cpu_heavy();
    let dir = make_examples("examples_static", "static", "");
    simple_client_meets_rust_peers(&dir.join("simple_client"), &[], 6, (320, 180), 15, 0.6);
}

#[test]
fn simple_client_as_host_records_the_room_and_is_told_so() {
    let _cpu = cpu_heavy();
    let dir = make_examples("examples_static", "static", "");
    let recordings = tmp("c-recordings");
    let _ = std::fs::remove_dir_all(&recordings);
    // No room recorded from its start: only the host's command starts it.
    let config = ServerConfig {
        record: Some(madang::sfu::record::RecordConfig {
            dir: recordings.clone(),
            rooms: vec!["none-from-the-start".into()],
        }),
        ..ServerConfig::dev()
    };
    let party = Party::start_with(&["jongno"], config);
    let token = party.token("c-host", Role::Host);
    let out = run(Command::new(dir.join("simple_client"))
        .arg(party.url())
        .arg(&token)
        .arg("5")
        .env("MADANG_RECORD", "1"));
    party.finish();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("recording started by c-host"), "{stdout}");
    // One file per participant, as ffprobe reads them: the C host's H.264 and Opus, the
    // Rust participant's pictures (it sends no sound).
    let mut files: Vec<_> = std::fs::read_dir(recordings.join("hall"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files[0].starts_with("c-host-") && files[1].starts_with("jongno-"),
        "{files:?}"
    );
    for (f, want) in files.iter().zip([&["h264", "opus"][..], &["h264"][..]]) {
        let probe = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name",
                "-of",
                "csv=p=0",
            ])
            .arg(recordings.join("hall").join(f))
            .output()
            .expect("ffprobe: scripts/setup.sh installs ffmpeg");
        let codecs = String::from_utf8_lossy(&probe.stdout).into_owned();
        assert_eq!(codecs.split_whitespace().collect::<Vec<_>>(), want, "{f}");
    }
}

/// The value of `key=` in the C client's last stats line.
fn stat(stdout: &str, key: &str) -> f64 {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("stats "))
        .and_then(|l| {
            l.split(' ')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in the stats:\n{stdout}"))
}

#[test]
fn simple_client_on_an_lte_link_repairs_what_the_link_drops() {
    let dir = make_examples("examples_lte", "static", "");
    let _cpu = timing_sensitive();
    let seconds = 10;
    let (stdout, ..) = simple_client_meets_rust_peers_on(
        Some("lte"),
        &dir.join("simple_client"),
        &[],
        seconds,
        (320, 180),
        15,
        // Of the pictures sent during the whole run: joining on lte (ICE and DTLS with
        // losses, the first keyframe) takes 1-2 s of the 10.
        0.7,
        &[],
    );
    // Pictures shown out of those sent while the C client was in (joining takes ~1 s of it).
    let got = received(&stdout);
    let shown: u64 = got.values().map(|(n, _)| n).sum();
    let share = shown as f64 / (2 * seconds * PEER_FPS) as f64;
    let (recovered, freezes, keyframes) = (
        stat(&stdout, "recovered"),
        stat(&stdout, "freezes"),
        stat(&stdout, "keyframes"),
    );
    eprintln!(
        "C client on lte: {shown} pictures of {} sent in {seconds} s ({:.1} %), {recovered} \
         packets recovered, {freezes} freezes, {keyframes} keyframes sent",
        2 * seconds * PEER_FPS,
        100.0 * share
    );
    assert!(recovered > 0.0, "retransmissions used:\n{stdout}");
    // Congestion control: lte's 3 % random loss and reordering are not congestion, so the
    // uplink estimate stays where it starts and the encoder keeps its configured rate
    // (simple_client lets madang pick it: 172 kbit/s at 320×180).
    let (uplink, target) = (
        stat(&stdout, "uplink_kbps"),
        stat(&stdout, "video_target_kbps"),
    );
    eprintln!("C client uplink estimate {uplink} kbit/s, video encoder at {target} kbit/s");
    assert!(uplink >= target && target >= 0.9 * 172.0, "{stdout}");
    // Per track too: each Rust participant's camera shows pictures.
    for id in ["jongno", "gangnam"] {
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with(&format!("track {id}/camera video ")))
            .unwrap_or_else(|| panic!("no track line for {id}:\n{stdout}"));
        let field = |key: &str| -> u64 {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key}= in {line}"))
        };
        let (decoded, lost, requests) =
            (field("decoded"), field("lost"), field("keyframe_requests"));
        // Of the pictures that reached the client once it was in: displayed, not given up.
        // At most one picture given up (a keyframe request and the pictures until the
        // keyframe, 92-95 % displayed): on this busy two-core machine one came in 2 of the
        // last 8 CI runs (92.1 %, 94.3 %) and in 1 of 10 runs alone (94.6 %); how often
        // pictures are given up on lte is measured on simulated time
        // (`core/tests/robust.rs`: none in 60 s of four participants).
        let displayed = decoded as f64 / (decoded + lost).max(1) as f64;
        eprintln!("{line}: {:.1} % displayed", 100.0 * displayed);
        assert!(decoded > 0, "{line}");
        assert!(requests <= 1 && displayed >= 0.9, "{line}");
    }
}

#[test]
fn simple_client_whose_network_changes_restarts_ice_and_keeps_being_seen() {
    let dir = make_examples("examples_static", "static", "");
    let _cpu = timing_sensitive();
    // 8 s; after 3 s the C client moves from 127.0.0.1 to 127.0.0.2 (its old sockets closed).
    let (stdout, _, reports) = simple_client_meets_rust_peers_on(
        None,
        &dir.join("simple_client"),
        &[],
        8,
        (320, 180),
        15,
        0.6,
        &["3", "127.0.0.2"],
    );
    assert!(stdout.contains("network changed to 127.0.0.2"), "{stdout}");
    // Its WebSocket went with the old network: a new one took the session back.
    assert!(stdout.contains("signal lost: reconnecting"), "{stdout}");
    assert!(stdout.contains("signal back"), "{stdout}");
    for r in &reports {
        let seen = &r.pictures["c-client"];
        eprintln!(
            "a Rust participant: {} C pictures, longest wait between two {:?}",
            seen.count, seen.longest_gap
        );
        assert!(seen.longest_gap <= Duration::from_secs(1), "{seen:?}");
    }
    // And the C client kept receiving both cameras across its move.
    for id in ["jongno", "gangnam"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("received {id} ")))
            .unwrap_or_else(|| panic!("nothing from {id}:\n{stdout}"));
        let gap: u64 = line
            .rsplit_once("longest_gap_ms=")
            .and_then(|(_, ms)| ms.parse().ok())
            .unwrap_or_else(|| panic!("no longest_gap_ms in {line}"));
        eprintln!("{line}");
        assert!(gap <= 1000, "{line}");
    }
}

#[test]
fn simple_client_dynamically_linked_sees_rust_participants_and_is_seen() {
    let _cpu = cpu_heavy();
    let dir = make_examples("examples_shared", "shared", "");
    simple_client_meets_rust_peers(&dir.join("simple_client"), &[], 4, (320, 180), 15, 0.5);
}

/// Runs `grid_viewer` as a viewer for `seconds` at 640×360 and checks the Y4M it wrote: the
/// expected number of pictures, and in the last one both Rust participants' live pictures in
/// their tiles (their stamps read back).
fn grid_viewer_writes_the_room(
    exe: &Path,
    wrapper: &[&str],
    seconds: u64,
    min_frames: usize,
) -> String {
    let party = Party::start(&["jongno", "gangnam"]);
    let token = party.token("tv", Role::Viewer);
    // One file per build and wrapper: the plain and the valgrind runs of the same build go on
    // in parallel.
    let y4m = tmp(&format!(
        "grid-{}-{}.y4m",
        exe.parent().unwrap().file_name().unwrap().to_string_lossy(),
        wrapper
            .first()
            .map_or("plain", |w| w.rsplit('/').next().unwrap_or(w))
    ));
    let mut cmd = Command::new(wrapper.first().map_or(exe.as_os_str(), |w| w.as_ref()));
    if !wrapper.is_empty() {
        cmd.args(&wrapper[1..]).arg(exe);
    }
    cmd.arg(party.url())
        .arg(&token)
        .arg(&y4m)
        .arg(seconds.to_string())
        .args(["640", "360", "10"])
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=3");
    let out = run(&mut cmd);
    party.finish();
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "grid_viewer failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("joined hall as tv"), "{stdout}");
    let mut reader = Y4mReader::new(std::fs::File::open(&y4m).unwrap()).unwrap();
    assert_eq!((reader.width(), reader.height()), (640, 360));
    let mut frames = Vec::new();
    while let Some(f) = reader.read_frame().unwrap() {
        frames.push(f);
    }
    assert!(
        frames.len() >= min_frames,
        "{} grid pictures\n{stdout}",
        frames.len()
    );
    let people = [Person::new("jongno"), Person::new("gangnam")];
    let layout = Layout::compute(&LayoutInput::new(
        &people,
        Viewport::new(640, 360),
        Mode::Gallery,
    ));
    let last = frames.last().unwrap();
    for (participant, stamp) in madang::grid::compose::read_tile_stamps(last, &layout) {
        assert!(
            stamp.is_some(),
            "no live picture in {participant}'s tile of the last grid picture"
        );
    }
    assert!(!stderr.contains("ERROR: AddressSanitizer"), "{stderr}");
    stderr
}

#[test]
fn grid_viewer_writes_the_composited_room_to_y4m() {
    let _cpu = cpu_heavy();
    let dir = make_examples("examples_static", "static", "");
    grid_viewer_writes_the_room(&dir.join("grid_viewer"), &[], 4, 35);
}

#[test]
fn c_clients_are_clean_under_address_sanitizer() {
    let dir = make_examples(
        "examples_asan",
        "static",
        "-fsanitize=address -fno-omit-frame-pointer",
    );
    let _cpu = cpu_heavy();
    let stderr =
        simple_client_meets_rust_peers(&dir.join("simple_client"), &[], 4, (320, 180), 15, 0.4);
    assert!(!stderr.contains("ERROR: AddressSanitizer"), "{stderr}");
    assert!(!stderr.contains("ERROR: LeakSanitizer"), "{stderr}");
    let stderr = grid_viewer_writes_the_room(&dir.join("grid_viewer"), &[], 3, 20);
    assert!(!stderr.contains("ERROR: LeakSanitizer"), "{stderr}");
    let stderr = center_tv_talks_back(&dir.join("center_tv"), &[], 8, 15, 2);
    assert!(!stderr.contains("ERROR: AddressSanitizer"), "{stderr}");
    assert!(!stderr.contains("ERROR: LeakSanitizer"), "{stderr}");
}

#[test]
fn c_clients_are_clean_under_valgrind() {
    let dir = make_examples("examples_static", "static", "");
    let suppressions = format!(
        "--suppressions={}",
        workspace().join("ffi/tests/valgrind.supp").display()
    );
    let valgrind = [
        "valgrind",
        "--error-exitcode=3",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        &suppressions,
    ];
    let _cpu = cpu_heavy();
    // Valgrind runs code tens of times slower: a small picture at a low rate, and a lower
    // bar for what must arrive. Going on air opens the center's publishing connection (its
    // DTLS handshake under valgrind): the host's first picture of it came 3.2 s after the
    // promotion with nothing beside it; in a CI run beside the other tests it had decoded
    // only its fifth of 85 sent when the center's 15 s were up, too late for the demotion
    // to reach it — so it runs 30 s.
    let stderr =
        simple_client_meets_rust_peers(&dir.join("simple_client"), &valgrind, 8, (160, 96), 5, 0.2);
    assert_clean_under_valgrind(&stderr);
    let grid = grid_viewer_writes_the_room(&dir.join("grid_viewer"), &valgrind, 4, 8);
    assert_clean_under_valgrind(&grid);
    let center = center_tv_talks_back(&dir.join("center_tv"), &valgrind, 30, 5, 1);
    assert_clean_under_valgrind(&center);
}

fn assert_clean_under_valgrind(stderr: &str) {
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
    assert!(
        stderr.contains("definitely lost: 0 bytes")
            || stderr.contains("All heap blocks were freed"),
        "{stderr}"
    );
}

/// What the Rust host of a class saw of a center that talked back.
#[derive(Debug, Default)]
struct HostReport {
    /// The hand queues the host was given.
    hands: Vec<Vec<String>>,
    /// The center's pictures the host decoded while it was on air.
    center_pictures: u64,
    /// The center's camera ended for the host after the demotion.
    camera_ended: bool,
    /// When (from the host's join) the center was promoted, its first picture decoded, and
    /// the center demoted: where the time went when a step comes late.
    promoted_at: Option<Duration>,
    first_picture_at: Option<Duration>,
    demoted_at: Option<Duration>,
}

/// The host of a class: publishes the test pattern; lets `center` in when its hand goes
/// up, sends it back after `pictures` of its pictures, until told to stop.
async fn class_host(
    url: String,
    token: String,
    center: &'static str,
    pictures: u64,
    stop: Arc<AtomicBool>,
    joined: std::sync::mpsc::Sender<()>,
) -> HostReport {
    let mut room = join_publishing(&url, &token).await;
    let _ = joined.send(());
    let mut report = HostReport::default();
    let (mut promoted, mut demoted) = (false, false);
    let mut pattern = TestPattern::new(PEER_SIZE.0, PEER_SIZE.1).unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / PEER_FPS));
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(150) {
        tokio::select! {
            _ = tick.tick() => {
                let frame = pattern.next_frame(start.elapsed().as_micros() as u64);
                room.publish_video(&frame).await.unwrap();
            }
            event = room.next_event() => match event {
                Some(RoomEvent::Hands(queue)) => {
                    if !promoted && queue.iter().any(|h| h == center) {
                        room.promote(center).unwrap();
                        promoted = true;
                        report.promoted_at = Some(start.elapsed());
                    }
                    report.hands.push(queue);
                }
                Some(RoomEvent::VideoFrame { participant, .. }) if participant == center => {
                    report.center_pictures += 1;
                    report.first_picture_at.get_or_insert(start.elapsed());
                    if report.center_pictures == pictures && !demoted {
                        room.demote(center).unwrap();
                        demoted = true;
                        report.demoted_at = Some(start.elapsed());
                    }
                }
                Some(RoomEvent::TrackUnpublished(track)) if demoted => {
                    report.camera_ended |= track == format!("{center}/camera");
                }
                Some(_) => {}
                None => break,
            }
        }
    }
    room.leave().await;
    report
}

/// Runs `center_tv` (optionally under a wrapper) as viewer `center-017` of a class whose
/// Rust host lets it in when its button is pressed (a line on its stdin) and sends it back
/// after `pictures` of its camera's pictures; it must show at least `class_fps` pictures
/// of the class a second. Returns its stderr.
fn center_tv_talks_back(
    exe: &Path,
    wrapper: &[&str],
    seconds: u64,
    pictures: u64,
    class_fps: u64,
) -> String {
    use std::io::{BufRead, Write};
    let party = Party::start(&[]);
    let (url, host_token) = (party.url(), party.token("cityhall", Role::Host));
    let token = party.token("center-017", Role::Viewer);
    let (tx, rx) = std::sync::mpsc::channel();
    let host = party.runtime.spawn(class_host(
        url.clone(),
        host_token,
        "center-017",
        pictures,
        party.stop.clone(),
        tx,
    ));
    rx.recv_timeout(Duration::from_secs(15))
        .expect("the host joined");
    let mut cmd = Command::new(wrapper.first().map_or(exe.as_os_str(), |w| w.as_ref()));
    if !wrapper.is_empty() {
        cmd.args(&wrapper[1..]).arg(exe);
    }
    let mut child = cmd
        .arg(&url)
        .arg(&token)
        .arg(seconds.to_string())
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=3")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    watchdog(&child, Duration::from_secs(seconds + 120));
    // The button is pressed once the box has joined.
    let mut stdin = child.stdin.take().unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        if line.starts_with("joined ") {
            stdin.write_all(b"h\n").unwrap();
            stdin.flush().unwrap();
        }
        lines.push(line);
    }
    let out = child.wait_with_output().unwrap();
    party.stop.store(true, Ordering::Relaxed);
    let report = party.runtime.block_on(host).unwrap();
    party.finish();
    let stdout = lines.join("\n");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "center_tv failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    println!("center_tv:\n{stdout}\nhost: {report:?}");
    // In this order: the hand went up, the host let the center in (its hand came down),
    // it went on air, and off air again when sent back.
    let position = |what: &str| {
        lines
            .iter()
            .position(|l| l == what)
            .unwrap_or_else(|| panic!("no {what:?}:\n{stdout}\nhost: {report:?}"))
    };
    let steps = [
        "hand raised",
        "hand lowered",
        "on air",
        "off air",
        "left cleanly",
    ]
    .map(position);
    assert!(steps.is_sorted(), "{stdout}");
    assert_eq!(
        report.hands.first().map(Vec::as_slice),
        Some(&["center-017".to_string()][..])
    );
    assert!(report.center_pictures >= pictures, "{report:?}");
    assert!(report.camera_ended, "{report:?}");
    // It showed the class throughout.
    let class: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("class frames="))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        class >= seconds * class_fps,
        "{class} class pictures in {seconds} s\n{stdout}"
    );
    stderr
}

#[test]
fn center_tv_raises_its_hand_goes_on_air_when_let_in_and_off_when_sent_back() {
    let _cpu = cpu_heavy();
    let dir = make_examples("examples_static", "static", "");
    center_tv_talks_back(&dir.join("center_tv"), &[], 10, 30, 3);
}
