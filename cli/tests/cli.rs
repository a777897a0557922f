//! The `madang` binary end to end: real processes, real files.

use std::process::Command;

use madang::codec::{H264Decoder, nal};
use madang::media::{Y4mReader, read_stamp};

fn madang() -> Command {
    Command::new(env!("CARGO_BIN_EXE_madang"))
}

/// Runs `cmd`, expects success, returns its stdout.
fn succeed(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `cmd`, expects failure, returns its stderr.
fn fail(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One real-time run at a time. A demo's conference, or a server with clients, counts
/// pictures against the wall clock on the two cores it shares with the test runner: beside
/// another demo (the test harness runs two tests at once), a four-participant 640×360 demo on
/// loopback starved for CPU, its scheduling delays read as a queue by the congestion
/// estimate, and a video was paused for the 10 s hold (one pair under 95 % of its pictures).
fn real_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The signal URL a `madang serve` child prints in its banner (its stdout piped), and the
/// rest of its stdout, to keep open while it runs (closed, its next line would fail).
fn banner_signal_url(
    server: &mut std::process::Child,
) -> (String, std::io::BufReader<std::process::ChildStdout>) {
    use std::io::{BufRead, BufReader};
    let mut banner = BufReader::new(server.stdout.take().unwrap());
    for _ in 0..20 {
        let mut line = String::new();
        if banner.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(u) = line.trim().strip_prefix("signal:") {
            return (u.trim().to_owned(), banner);
        }
    }
    panic!("the banner names no signal URL");
}

/// A speaker's token for room `hall`, signed with the development secret (`serve --dev`).
fn dev_token(identity: &str, name: &str) -> String {
    use madang::sfu::token::{Claims, mint, unix_now};
    let claims = Claims::new(
        "hall",
        identity,
        name,
        madang::signal::Role::Speaker,
        unix_now(),
        60,
    );
    mint(madang::sfu::DEV_SECRET.as_bytes(), &claims).unwrap()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("madang-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Splits an Annex-B stream into access units: one per slice, parameter sets joining the
/// slice after them (madang writes one slice per picture).
fn access_units(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut units = Vec::new();
    let mut current = Vec::new();
    for nal_unit in nal::nal_units(stream) {
        current.extend_from_slice(&[0, 0, 0, 1]);
        current.extend_from_slice(nal_unit);
        if matches!(nal::nal_type(nal_unit), Some(nal::NAL_IDR | nal::NAL_SLICE)) {
            units.push(std::mem::take(&mut current));
        }
    }
    units
}

#[test]
fn encode_writes_a_decodable_stream() {
    let dir = scratch("encode");
    let out = dir.join("p.h264");
    let status_stdout = succeed(
        madang()
            .args([
                "encode",
                "--pattern",
                "320x180",
                "--frames",
                "30",
                "--bitrate",
                "300",
                "--out",
            ])
            .arg(&out),
    );
    let stdout = String::from_utf8_lossy(&status_stdout);
    assert!(stdout.contains("30 frames"), "{stdout}");
    let stream = std::fs::read(&out).unwrap();
    let mut decoder = H264Decoder::new().unwrap();
    let units = access_units(&stream);
    assert_eq!(units.len(), 30);
    for (i, unit) in units.iter().enumerate() {
        let frame = decoder.decode(unit).unwrap().unwrap();
        assert_eq!(read_stamp(&frame).unwrap().seq, i as u32);
    }
}

#[test]
fn encode_reads_y4m_written_by_demo() {
    let dir = scratch("y4m");
    let y4m = dir.join("demo.y4m");
    let wav = dir.join("demo.wav");
    let out_stdout = succeed(
        madang()
            .args([
                "codec-demo",
                "--seconds",
                "1",
                "--size",
                "320x180",
                "--json",
                "--out",
            ])
            .arg(&y4m)
            .arg("--audio-out")
            .arg(&wav),
    );
    let report: serde_json::Value = serde_json::from_slice(&out_stdout).unwrap();
    assert_eq!(report["video"]["frames_sent"], 30);
    assert_eq!(report["video"]["stamps_read"], 30);
    assert!(report["video"]["psnr_y_mean"].as_f64().unwrap() > 30.0);
    assert_eq!(report["audio"]["frames_decoded"], 50);
    let mut reader = Y4mReader::new(std::fs::File::open(&y4m).unwrap()).unwrap();
    let mut frames = 0;
    while let Some(f) = reader.read_frame().unwrap() {
        assert_eq!(read_stamp(&f).unwrap().seq, frames);
        frames += 1;
    }
    assert_eq!(frames, 30);
    // The Y4M goes back in through `encode --in`.
    let h264 = dir.join("again.h264");
    succeed(
        madang()
            .args(["encode", "--in"])
            .arg(&y4m)
            .arg("--out")
            .arg(&h264),
    );
    assert_eq!(access_units(&std::fs::read(&h264).unwrap()).len(), 30);
}

#[test]
fn bad_arguments_fail_with_a_message() {
    assert!(
        fail(madang().args(["encode", "--pattern", "641x360", "--out", "/dev/null"]))
            .contains("641")
    );
    assert!(
        fail(madang().args(["encode", "--in", "/nonexistent/x.y4m", "--out", "/dev/null"]))
            .contains("/nonexistent/x.y4m")
    );
    let dir = scratch("bad");
    let junk = dir.join("junk.y4m");
    std::fs::write(&junk, b"YUV4MPEG2 W320 H180 C444\n").unwrap();
    assert!(
        fail(
            madang()
                .args(["encode", "--in"])
                .arg(&junk)
                .args(["--out", "/dev/null"])
        )
        .contains("C444")
    );
}

#[test]
fn bench_codec_prints_the_json_report() {
    let _one = real_time();
    let out_stdout = succeed(madang().args([
        "bench",
        "codec",
        "--json",
        "--seconds",
        "0.4",
        "--sizes",
        "320x180",
        "--no-x264",
    ]));
    let report: serde_json::Value = serde_json::from_slice(&out_stdout).unwrap();
    let row = &report["h264"][0];
    assert_eq!(row["size"], "320x180");
    for key in ["madang_fps", "raw_fps", "ratio", "psnr_y", "kbps"] {
        assert!(row[key].as_f64().unwrap() > 0.0, "{key}");
    }
    assert_eq!(report["opus"].as_array().unwrap().len(), 2);
    assert!(report["opus"][0]["madang_rtf"].as_f64().unwrap() > 1.0);
    // nasm present at build time means OpenH264's assembly must be linked in: a C fallback
    // would encode 2.5× slower without any other sign.
    if on_path("nasm") {
        assert_eq!(
            report["asm"], true,
            "OpenH264 was built without assembly although nasm is installed"
        );
    }
}

/// A small `bench sfu`: viewers in two processes take the 360p layer of the host's 720p
/// simulcast, receive what is sent to them, and all see the center let in halfway. The
/// figures themselves (µs per packet, memory) are the benchmark's to report, not asserted.
#[test]
fn bench_sfu_spreads_viewers_over_processes_and_times_the_talk_back() {
    let _one = real_time();
    let out = succeed(madang().args([
        "bench",
        "sfu",
        "--json",
        "--subscribers",
        "6",
        "--per-process",
        "3",
        "--seconds",
        "4",
    ]));
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["layers"].as_array().unwrap().len(), 3);
    let run = &report["runs"][0];
    assert_eq!(run["subscribers"], 6);
    assert_eq!(run["receiver_processes"], 2);
    assert_eq!(
        run["subscribers_receiving"], 6,
        "all at the 360p layer: {run}"
    );
    assert!(
        run["packets_forwarded"].as_u64().unwrap() > 6 * 4 * 50,
        "{run}"
    );
    assert!(run["us_per_packet"].as_f64().unwrap() > 0.0);
    // Loopback loses nothing; a viewer short of 90 % means forwarding broke, not load.
    assert!(run["worst_viewer_pct"].as_f64().unwrap() > 90.0, "{run}");
    let talk_back = &run["talk_back"];
    assert_eq!(talk_back["viewers"], 6);
    assert_eq!(talk_back["viewers_reached"], 6, "{run}");
    assert!(talk_back["max_ms"].as_f64().unwrap() < 15_000.0);
}

#[test]
fn bench_cc_reports_each_capacity_step_and_writes_the_plot() {
    // Short phases: this checks the command; tests/congestion.rs checks the adaptation.
    let plot = scratch("bench-cc").join("cc.svg");
    let out = succeed(
        madang()
            .args(["bench", "cc", "--json", "--phase", "5", "--plot"])
            .arg(&plot),
    );
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["phase_seconds"], 5);
    assert_eq!(report["drop"]["to_kbps"], 600.0);
    let seconds = report["run"]["seconds"].as_array().unwrap();
    assert_eq!(seconds.len(), 20);
    assert_eq!(seconds[12]["capacity_kbps"], 600.0);
    assert!(
        seconds
            .iter()
            .all(|s| s["estimate_kbps"].as_f64().unwrap() > 0.0)
    );
    assert!(
        seconds[5..]
            .iter()
            .all(|s| s["sent_kbps"].as_f64().unwrap() > 100.0)
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 3);
}

#[test]
fn token_mints_a_verifiable_token() {
    let out = succeed(madang().args([
        "token",
        "--room",
        "disaster",
        "--identity",
        "jongno",
        "--name",
        "Jongno-gu office",
        "--role",
        "viewer",
        "--secret",
        "s3cret",
        "--ttl",
        "10m",
    ]));
    let token = String::from_utf8(out).unwrap();
    let now = madang::sfu::token::unix_now();
    let claims = madang::sfu::token::verify(b"s3cret", token.trim(), now).unwrap();
    assert_eq!(claims.room, "disaster");
    assert_eq!(claims.identity, "jongno");
    assert_eq!(claims.name, "Jongno-gu office");
    assert_eq!(claims.role, madang::signal::Role::Viewer);
    assert!(claims.exp >= now + 590 && claims.exp <= now + 600);
    assert!(
        fail(madang().args([
            "token",
            "--room",
            "r",
            "--identity",
            "i",
            "--role",
            "admin",
            "--secret",
            "s"
        ]))
        .contains("admin")
    );
}

#[test]
fn demo_writes_the_grid_a_participant_sees() {
    let _one = real_time();
    use madang::grid::layout::{Layout, LayoutInput, Mode, Person, Viewport};
    let dir = scratch("grid");
    let grid = dir.join("grid.y4m");
    let out = succeed(
        madang()
            .args([
                "demo",
                "--participants",
                "3",
                "--seconds",
                "2",
                "--size",
                "320x180",
                "--bitrate",
                "300",
            ])
            .args(["--json", "--grid-size", "640x360", "--grid"])
            .arg(&grid),
    );
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["participants"], 3);
    let mut reader = Y4mReader::new(std::fs::File::open(&grid).unwrap()).unwrap();
    assert_eq!((reader.width(), reader.height()), (640, 360));
    let mut frames = Vec::new();
    while let Some(f) = reader.read_frame().unwrap() {
        frames.push(f);
    }
    assert!(frames.len() > 30, "{} grid frames", frames.len());
    // p1 sees itself, p2 and p3; every tile carries a live, readable stamp.
    let people = vec![Person::new("p1"), Person::new("p2"), Person::new("p3")];
    let layout = Layout::compute(&LayoutInput::new(
        &people,
        Viewport::new(640, 360),
        Mode::Gallery,
    ));
    let last = frames.last().unwrap();
    for (participant, stamp) in madang::grid::compose::read_tile_stamps(last, &layout) {
        assert!(stamp.is_some(), "no live picture in {participant}'s tile");
    }
}

#[test]
fn demo_on_an_impaired_network_reports_what_the_impairment_dropped() {
    let _one = real_time();
    let out = succeed(madang().args([
        "demo",
        "--participants",
        "3",
        "--seconds",
        "2",
        "--size",
        "320x180",
        "--fps",
        "15",
        "--bitrate",
        "300",
        "--network",
        "lte,loss=10%",
        "--json",
    ]));
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let network = &report["network"];
    assert_eq!(network["name"], "lte,loss=10%");
    assert!(
        network["profile"]
            .as_str()
            .unwrap()
            .starts_with("loss=10%,delay=40ms,jitter=15ms,rate=5000kbit"),
        "{network}"
    );
    for dir in ["up", "down"] {
        let d = &network[dir];
        let (sent, delivered, lost) = (
            d["sent"].as_u64().unwrap(),
            d["delivered"].as_u64().unwrap(),
            d["lost"].as_u64().unwrap(),
        );
        assert!(sent > 500, "{dir}: {d}");
        assert_eq!(delivered + lost, sent, "{dir}: {d}");
        // 10 % of the datagrams, within a generous margin.
        assert!(
            lost * 100 > sent * 5 && lost * 100 < sent * 15,
            "{dir}: {d}"
        );
    }
    let pairs = report["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 6);
    // The receivers repaired what the network dropped: NACKs out, retransmissions used,
    // pictures shown; every pair reports its freezes and buffer delay.
    let sum = |key: &str| pairs.iter().map(|p| p[key].as_u64().unwrap()).sum::<u64>();
    assert!(
        sum("nacks_sent") > 0 && sum("packets_recovered") > 0,
        "{pairs:?}"
    );
    // Most pairs show pictures within the 2 s (a lost DTLS flight alone costs a second, and
    // the whole suite runs beside it).
    let showing = pairs
        .iter()
        .filter(|p| p["frames_decoded"].as_u64().unwrap() > 0)
        .count();
    assert!(
        showing >= 4,
        "{showing} of 6 pairs show pictures: {pairs:?}"
    );
    for p in pairs {
        assert!(
            p["freezes"].is_u64() && p["buffer_delay_ms"].is_f64(),
            "{p}"
        );
    }
    for a in report["audio"].as_array().unwrap() {
        assert!(
            a["fec_frames"].is_u64() && a["concealed_ms"].is_f64(),
            "{a}"
        );
    }
    let err = fail(madang().args(["demo", "--network", "lte,jitter=lots"]));
    assert!(err.contains("jitter=lots"), "{err}");
}

#[test]
fn simulated_demo_runs_on_simulated_time() {
    let out = succeed(madang().args([
        "demo",
        "--simulate",
        "--participants",
        "3",
        "--seconds",
        "3",
        "--size",
        "320x180",
        "--fps",
        "15",
        "--bitrate",
        "300",
        "--network",
        "rural",
        "--json",
    ]));
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["participants"], 3);
    assert!(report["simulated_seconds"].as_f64().unwrap() >= 3.0);
    assert!(report["network"]["up"]["sent"].as_u64().unwrap() > 300);
    let pairs = report["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 6);
    for p in pairs {
        assert!(p["frames_sent"].as_u64().unwrap() >= 40, "{p}");
    }
    // One-way delay 60 ± 20 ms on each of two hops: nothing arrives sooner than 80 ms.
    let decoded: Vec<&serde_json::Value> = pairs
        .iter()
        .filter(|p| p["frames_decoded"].as_u64().unwrap() > 0)
        .collect();
    for p in decoded {
        assert!(p["latency_ms"]["p50"].as_f64().unwrap() >= 80.0, "{p}");
    }
}

#[test]
fn demo_four_participants_decode_each_other_for_ten_seconds() {
    let _one = real_time();
    let dir = scratch("four");
    let snapshot = dir.join("p2-at-p1.png");
    let out = succeed(
        madang()
            .args([
                "demo",
                "--participants",
                "4",
                "--seconds",
                "10",
                "--size",
                "640x360",
                "--json",
            ])
            .arg("--snapshot")
            .arg(&snapshot),
    );
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let pairs = report["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 12);
    for p in pairs {
        let (sent, decoded) = (
            p["frames_sent"].as_u64().unwrap(),
            p["frames_decoded"].as_u64().unwrap(),
        );
        println!(
            "{} → {}: {decoded}/{sent} decoded, p50 {} ms p95 {} ms",
            p["from"], p["to"], p["latency_ms"]["p50"], p["latency_ms"]["p95"]
        );
        assert!(sent >= 250, "{p}");
        assert!(decoded as f64 >= 0.95 * sent as f64, "{p}");
        let rtt = p["rtt_ms"].as_f64().unwrap_or(0.0);
        assert!(rtt > 0.0 && rtt < 100.0, "round-trip time on loopback: {p}");
    }
    for a in report["audio"].as_array().unwrap() {
        let (sent, got) = (
            a["frames_sent"].as_u64().unwrap(),
            a["frames_received"].as_u64().unwrap(),
        );
        assert!(got as f64 >= 0.95 * sent as f64, "audio {a}");
    }
    assert_eq!(
        report["data_messages"]["received"],
        report["data_messages"]["expected"]
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&snapshot).unwrap(),
    ));
    let info = decoder.read_info().unwrap();
    assert_eq!((info.info().width, info.info().height), (640, 360));
}

#[test]
fn serve_logs_joins_refusals_and_leaves_for_its_operator() {
    let _one = real_time();
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    use madang::room::{Room, RoomOptions};

    let mut server = madang()
        .args([
            "serve",
            "--dev",
            "--http",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env_remove("MADANG_LOG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (url, _banner) = banner_signal_url(&mut server);
    // The log lines as they come.
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let (stderr, lines) = (server.stderr.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let logged = |what: &str| lines.lock().unwrap().iter().any(|l| l.contains(what));
    let token = dev_token("jongno", "Jongno-gu office");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let options = RoomOptions {
            audio: true,
            ..RoomOptions::default()
        };
        let room = Room::connect(&url, &token, options).await.unwrap();
        // A voice until the server logs its connection up, 5 s at most.
        let mut tone =
            madang::media::Tone::new(440.0, 0.3, madang::media::Channels::Mono, 20).unwrap();
        for _ in 0..250 {
            room.publish_audio(&tone.next_frame()).await.unwrap();
            if logged("connection connected") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(
            Room::connect(&url, "not-a-token", RoomOptions::default())
                .await
                .is_err()
        );
        room.leave().await;
    });
    // The lines are written as things happen; give the last one a moment.
    std::thread::sleep(std::time::Duration::from_millis(300));
    server.kill().unwrap();
    let _ = server.wait();
    reader.join().unwrap();
    // One JSON object a line: (level, message).
    let logs = lines.lock().unwrap().clone();
    let messages: Vec<(String, String)> = logs
        .iter()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            let field = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            (field(&v["level"]), field(&v["fields"]["message"]))
        })
        .collect();
    let has = |what: &str| {
        messages
            .iter()
            .any(|(level, m)| level == "INFO" && m.contains(what))
    };
    assert!(
        has("jongno (Jongno-gu office, speaker) joined room hall"),
        "{messages:#?}"
    );
    assert!(has("refused with invalid_token"), "{messages:#?}");
    assert!(has("jongno left room hall (left)"), "{messages:#?}");
    assert!(has("Publisher connection connected"), "{messages:#?}");
    assert!(has("published jongno/microphone"), "{messages:#?}");
}

#[test]
fn serve_over_tls_takes_wss_clients() {
    let _one = real_time();
    use std::process::Stdio;

    use madang::room::{Room, RoomOptions};

    let dir = scratch("tls");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    // A key without its certificate is a usage error.
    let missing = fail(
        madang()
            .args(["serve", "--dev", "--tls-key"])
            .arg(&key_file),
    );
    assert!(missing.contains("--tls-cert"), "{missing}");

    let mut server = madang()
        .args([
            "serve",
            "--dev",
            "--http",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(&cert_file)
        .arg("--tls-key")
        .arg(&key_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (url, _banner) = banner_signal_url(&mut server);
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");
    let token = dev_token("jongno", "Jongno");
    let options = RoomOptions {
        trusted_certificates: Some(cert.cert.pem().into_bytes()),
        ..RoomOptions::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let room = Room::connect(&url, &token, options).await.unwrap();
        println!("joined over {url}");
        room.leave().await;
    });
    server.kill().unwrap();
    let _ = server.wait();
}

/// `(codec, duration seconds)` of each stream of a recording, as ffprobe reads it.
fn probe_streams(file: &std::path::Path) -> Vec<(String, f64)> {
    let out = succeed(
        Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "stream=codec_name,duration"])
            .args(["-of", "csv=p=0"])
            .arg(file),
    );
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| {
            let (codec, duration) = l.split_once(',')?;
            Some((codec.to_owned(), duration.parse().unwrap_or(0.0)))
        })
        .collect()
}

/// The stamps of a recording's pictures as ffmpeg decodes them (`strict`: any decoding
/// error fails), in order.
fn recorded_stamps(file: &std::path::Path, width: u32, height: u32, strict: bool) -> Vec<u32> {
    let raw = file.with_extension("yuv");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-nostdin"]);
    if strict {
        cmd.args(["-xerror", "-err_detect", "explode"]);
    }
    let out = cmd
        .arg("-i")
        .arg(file)
        .args([
            "-map",
            "0:v",
            "-fps_mode",
            "passthrough",
            "-enc_time_base:v",
            "-1",
        ])
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-y"])
        .arg(&raw)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", file.display());
    if strict {
        assert!(stderr.trim().is_empty(), "{}: {stderr}", file.display());
    }
    let bytes = std::fs::read(&raw).unwrap();
    let _ = std::fs::remove_file(&raw);
    let (w, size) = (width as usize, (width * height) as usize);
    bytes
        .chunks_exact(size * 3 / 2)
        .map(|p| {
            let (y, uv) = p.split_at(size);
            let (u, v) = uv.split_at(size / 4);
            let frame = madang::media::VideoFrame::from_planes(
                width,
                height,
                [y, u, v],
                [w, w / 2, w / 2],
                0,
            )
            .unwrap();
            read_stamp(&frame)
                .expect("a recorded picture without its stamp")
                .seq
        })
        .collect()
}

#[test]
fn demo_records_each_participant_into_a_file_every_player_reads() {
    let _one = real_time();
    assert!(
        on_path("ffmpeg") && on_path("ffprobe"),
        "scripts/test.sh installs ffmpeg"
    );
    let dir = scratch("record");
    let out = succeed(
        madang()
            .args(["demo", "--participants", "4", "--seconds", "20", "--json"])
            .arg("--record")
            .arg(&dir),
    );
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    // Everyone joined at the start of the warm-up and left after the measured seconds.
    let in_room = report["warmup_seconds"].as_f64().unwrap() + report["seconds"].as_f64().unwrap();
    let files: Vec<std::path::PathBuf> = report["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().into())
        .collect();
    assert_eq!(files.len(), 4, "one file per participant: {files:?}");
    for (i, file) in files.iter().enumerate() {
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(name.starts_with(&format!("p{}-", i + 1)), "{name}");
        let streams = probe_streams(file);
        let codecs: Vec<&str> = streams.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(codecs, ["h264", "opus"], "{name}");
        for (codec, duration) in &streams {
            println!("{name}: {codec} {duration:.2} s, in the room {in_room:.2} s");
            assert!(
                (duration - in_room).abs() <= 0.05 * in_room,
                "{name}: {codec} lasts {duration} s, the participant was in for {in_room} s"
            );
        }
        let stamps = recorded_stamps(file, 640, 360, true);
        assert!(
            stamps.windows(2).all(|w| w[0] < w[1]),
            "{name}: out of order"
        );
        // No picture missing between the first and the last beyond what the network lost:
        // on loopback nothing, unless a subscriber of this publisher missed pictures too
        // (a busy machine's socket overflowing).
        let span = stamps.last().unwrap() - stamps[0] + 1;
        let lost = report["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["from"] == format!("p{}", i + 1))
            .map(|p| p["frames_sent"].as_u64().unwrap() - p["frames_decoded"].as_u64().unwrap())
            .max()
            .unwrap_or(0);
        println!(
            "{name}: {} pictures, stamps {}..={}, its subscribers missed at most {lost}",
            stamps.len(),
            stamps[0],
            stamps.last().unwrap()
        );
        assert!(
            u64::from(span) - stamps.len() as u64 <= lost,
            "{name}: {} pictures missing, the network lost {lost}",
            span as usize - stamps.len()
        );
        assert!(
            stamps.len() as f64 >= 0.9 * 30.0 * in_room,
            "{name}: {} pictures",
            stamps.len()
        );
    }
}

#[test]
fn a_recording_survives_kill_9_of_the_server() {
    let _one = real_time();
    use std::process::Stdio;

    use madang::room::{Room, RoomOptions, VideoOptions};

    assert!(
        on_path("ffmpeg") && on_path("ffprobe"),
        "scripts/test.sh installs ffmpeg"
    );
    let dir = scratch("record-kill");
    let mut server = madang()
        .args([
            "serve",
            "--dev",
            "--http",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
        ])
        .arg("--record")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (url, _banner) = banner_signal_url(&mut server);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let seconds = 6.0;
    let (pictures, recording_seen) = runtime.block_on(async {
        let options = RoomOptions {
            video: Some(VideoOptions::new(320, 180)),
            audio: true,
            decode_video: false,
            decode_audio: false,
            ..RoomOptions::default()
        };
        let mut room = Room::connect(&url, &dev_token("jongno", "Jongno-gu office"), options)
            .await
            .unwrap();
        let mut pattern = madang::media::TestPattern::new(320, 180).unwrap();
        let mut tone =
            madang::media::Tone::new(440.0, 0.3, madang::media::Channels::Mono, 20).unwrap();
        let start = std::time::Instant::now();
        let mut recording_seen = false;
        let mut frame = 0u64;
        while start.elapsed().as_secs_f64() < seconds {
            let t = start.elapsed();
            while (frame * 1_000_000 / 30) as u128 <= t.as_micros() {
                room.publish_video(&pattern.next_frame(frame * 1_000_000 / 30))
                    .await
                    .unwrap();
                frame += 1;
            }
            room.publish_audio(&tone.next_frame()).await.unwrap();
            while let Some(e) = room.try_next_event() {
                recording_seen |= matches!(e, madang::room::RoomEvent::Recording { on: true, .. });
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Killed mid-recording: no goodbye, no last fragment, no duration written.
        server.kill().unwrap();
        let _ = server.wait();
        (frame, recording_seen)
    });
    assert!(recording_seen, "the room was told it is recorded");
    let files: Vec<_> = std::fs::read_dir(dir.join("hall"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let streams = probe_streams(&files[0]);
    let codecs: Vec<&str> = streams.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(codecs, ["h264", "opus"]);
    let stamps = recorded_stamps(&files[0], 320, 180, false);
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "in order");
    let span = stamps.last().unwrap() - stamps[0] + 1;
    assert_eq!(stamps.len() as u32, span, "pictures missing before the cut");
    // At most a fragment (2 s) and the time to connect lost of what was sent.
    println!(
        "kill -9 after {seconds} s: {} of {pictures} pictures play, streams {streams:?}",
        stamps.len()
    );
    assert!(
        stamps.len() as f64 >= 30.0 * (seconds - 3.0),
        "{} pictures",
        stamps.len()
    );
}
