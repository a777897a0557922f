//! Conferences over real WebRTC on loopback: the room server and room clients in one process,
//! media through the server's one UDP port, signalling over real WebSockets. (Four
//! participants for ten seconds: `madang demo` in the CLI tests; the same scenarios on the
//! simulated network: `simulated.rs`.)

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use madang::media::{TestPattern, read_stamp};
use madang::room::{Room, RoomEvent, RoomOptions, VideoOptions};
use madang::sfu::token::{Claims, mint, unix_now};
use madang::sfu::{DEV_SECRET, Server, ServerConfig};
use madang::signal::{
    CLOSE_NORMAL, ClientMessage, ErrorCode, LeaveReason, PROTOCOL_VERSION, PeerRole, PublishTrack,
    Role, ServerMessage, TrackKind, TrackSource, decode_server, encode,
};
use tokio_tungstenite::tungstenite::Message;

#[path = "common/relay.rs"]
mod relay;
use relay::Relay;

const W: u32 = 320;
const H: u32 = 180;

fn token(server: &Server, identity: &str, role: Role) -> String {
    server
        .token("r", identity, identity, role, Duration::from_secs(600))
        .unwrap()
}

async fn join(server: &Server, identity: &str) -> Room {
    let options = RoomOptions {
        video: Some(VideoOptions::new(W, H)),
        ..RoomOptions::default()
    };
    Room::connect(
        &server.signal_url(),
        &token(server, identity, Role::Speaker),
        options,
    )
    .await
    .unwrap()
}

/// Participants publishing the test pattern together.
struct Party {
    rooms: Vec<Room>,
    patterns: Vec<TestPattern>,
    start: Instant,
}

impl Party {
    fn new(rooms: Vec<Room>) -> Self {
        let patterns = rooms
            .iter()
            .map(|_| TestPattern::new(W, H).unwrap())
            .collect();
        Self {
            rooms,
            patterns,
            start: Instant::now(),
        }
    }

    fn add(&mut self, room: Room) {
        self.rooms.push(room);
        self.patterns.push(TestPattern::new(W, H).unwrap());
    }

    /// Everyone publishes at 30 fps and collects events until `done` holds for the events
    /// collected so far (one list per participant) or `limit` passes. Returns the events.
    async fn run(
        &mut self,
        limit: Duration,
        done: impl Fn(&[Vec<RoomEvent>]) -> bool,
    ) -> Vec<Vec<RoomEvent>> {
        let mut events: Vec<Vec<RoomEvent>> = self.rooms.iter().map(|_| Vec::new()).collect();
        let began = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        while began.elapsed() < limit && !done(&events) {
            tick.tick().await;
            for (room, pattern) in self.rooms.iter().zip(&mut self.patterns) {
                let frame = pattern.next_frame(self.start.elapsed().as_micros() as u64);
                room.publish_video(&frame).await.unwrap();
            }
            for (room, list) in self.rooms.iter_mut().zip(&mut events) {
                while let Some(e) = room.try_next_event() {
                    list.push(e);
                }
            }
        }
        events
    }
}

impl Party {
    /// Alice and Bob joined to `server`, each having decoded a picture of the other.
    async fn alice_and_bob(server: &Server) -> Self {
        let mut party = Party::new(vec![join(server, "alice").await, join(server, "bob").await]);
        party
            .until_alice_and_bob_see_each_other(Duration::from_secs(10))
            .await;
        party
    }

    /// Runs until alice (first) and bob (second) each decoded a picture of the other (at
    /// most `limit`).
    async fn until_alice_and_bob_see_each_other(&mut self, limit: Duration) {
        self.run(limit, |ev| {
            saw_video_from(&ev[0], "bob") && saw_video_from(&ev[1], "alice")
        })
        .await;
    }
}

fn saw_video_from(events: &[RoomEvent], who: &str) -> bool {
    events.iter().any(|e| {
        matches!(e, RoomEvent::VideoFrame { participant, frame, .. } if participant == who && read_stamp(frame).is_some())
    })
}

fn saw_left(events: &[RoomEvent], who: &str, why: LeaveReason) -> bool {
    events
        .iter()
        .any(|e| matches!(e, RoomEvent::ParticipantLeft { identity, reason } if identity == who && *reason == why))
}

fn frames_from(events: &[RoomEvent], who: &str) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, RoomEvent::VideoFrame { participant, .. } if participant == who))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_sees_everyone_and_leavers_are_announced() {
    let server = Server::bind(ServerConfig::dev()).await.unwrap();
    let mut party = Party::new(vec![
        join(&server, "alice").await,
        join(&server, "bob").await,
    ]);
    let ev = party
        .run(Duration::from_secs(10), |ev| {
            saw_video_from(&ev[0], "bob") && saw_video_from(&ev[1], "alice")
        })
        .await;
    assert!(
        saw_video_from(&ev[0], "bob") && saw_video_from(&ev[1], "alice"),
        "alice and bob see each other"
    );

    // Carol joins mid-call, receives both, and both receive her.
    let carol = join(&server, "carol").await;
    let names: Vec<&str> = carol
        .initial_participants()
        .iter()
        .map(|p| p.identity.as_str())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    party.add(carol);
    let ev = party
        .run(Duration::from_secs(10), |ev| {
            saw_video_from(&ev[0], "carol")
                && saw_video_from(&ev[1], "carol")
                && saw_video_from(&ev[2], "alice")
                && saw_video_from(&ev[2], "bob")
        })
        .await;
    assert!(
        ev[0]
            .iter()
            .any(|e| matches!(e, RoomEvent::ParticipantJoined(p) if p.identity == "carol"))
    );
    assert!(
        saw_video_from(&ev[0], "carol") && saw_video_from(&ev[1], "carol"),
        "carol reaches the others"
    );
    assert!(
        saw_video_from(&ev[2], "alice") && saw_video_from(&ev[2], "bob"),
        "carol receives the others"
    );

    // Bob leaves: the others are told, lose his track, and carry on with each other.
    let bob = party.rooms.remove(1);
    party.patterns.remove(1);
    bob.leave().await;
    let ev = party
        .run(Duration::from_secs(5), |ev| {
            saw_left(&ev[0], "bob", LeaveReason::Left) && saw_left(&ev[1], "bob", LeaveReason::Left)
        })
        .await;
    for events in &ev {
        assert!(saw_left(events, "bob", LeaveReason::Left));
        assert!(
            events
                .iter()
                .any(|e| matches!(e, RoomEvent::TrackUnpublished(t) if t == "bob/camera"))
        );
    }
    let ev = party.run(Duration::from_secs(2), |_| false).await;
    assert!(frames_from(&ev[0], "carol") > 30 && frames_from(&ev[1], "alice") > 30);
    for room in party.rooms {
        room.leave().await;
    }
    server.shutdown().await;
}

/// A bare signal client speaking the protocol by hand.
struct RawClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// The close frame's code and reason, once the server closed.
    closed_with: Option<(u16, String)>,
}

impl RawClient {
    async fn connect(server: &Server) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(server.signal_url())
            .await
            .unwrap();
        Self {
            ws,
            closed_with: None,
        }
    }

    async fn send(&mut self, m: &ClientMessage) {
        self.ws.send(Message::Text(encode(m).into())).await.unwrap();
    }

    async fn send_text(&mut self, text: String) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    async fn join(&mut self, token: String) {
        self.send(&ClientMessage::Join {
            protocol: PROTOCOL_VERSION,
            token,
            auto_subscribe: false,
            name: None,
        })
        .await;
    }

    /// Next server message within `wait`: `Ok(Some)`, `Ok(None)` when the server closed the
    /// connection, `Err(())` when nothing came.
    async fn next_within(&mut self, wait: Duration) -> Result<Option<ServerMessage>, ()> {
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await {
                Err(_) => return Err(()),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    self.closed_with =
                        frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
                    return Ok(None);
                }
                Ok(None) | Ok(Some(Err(_))) => return Ok(None),
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Ok(Some(decode_server(t.as_str()).unwrap()));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Next server message, or `None` when the server closed (or said nothing for 5 s).
    async fn next(&mut self) -> Option<ServerMessage> {
        self.next_within(Duration::from_secs(5))
            .await
            .ok()
            .flatten()
    }

    /// Reads until an error arrives; returns its code and whether the server then closed the
    /// connection (within a second). A close must carry the error's close code and string.
    async fn expect_error(&mut self) -> (ErrorCode, bool) {
        while let Some(m) = self.next().await {
            if let ServerMessage::Error { code, .. } = m {
                let closed = matches!(self.next_within(Duration::from_secs(1)).await, Ok(None));
                if closed {
                    assert_eq!(
                        self.closed_with,
                        Some((code.close_code(), code.as_str().to_owned())),
                        "the close frame after {code}"
                    );
                }
                return (code, closed);
            }
        }
        panic!("connection closed without an error message");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sessions_are_closed_with_the_right_code_and_the_room_carries_on() {
    let server = Server::bind(ServerConfig::dev()).await.unwrap();
    let mut party = Party::alice_and_bob(&server).await;

    // Signed with another secret.
    let mut c = RawClient::connect(&server).await;
    let forged = mint(
        b"not-the-secret",
        &Claims::new("r", "mallory", "M", Role::Host, unix_now(), 60),
    )
    .unwrap();
    c.join(forged).await;
    assert_eq!(c.expect_error().await, (ErrorCode::InvalidToken, true));

    // Expired.
    let mut c = RawClient::connect(&server).await;
    let expired = mint(
        DEV_SECRET.as_bytes(),
        &Claims::new("r", "late", "L", Role::Speaker, unix_now() - 7200, 60),
    )
    .unwrap();
    c.join(expired).await;
    assert_eq!(c.expect_error().await, (ErrorCode::TokenExpired, true));

    // For another room than the URL names.
    let url = format!("{}?room=other", server.signal_url());
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut c = RawClient {
        ws,
        closed_with: None,
    };
    c.join(token(&server, "wanderer", Role::Speaker)).await;
    assert_eq!(c.expect_error().await, (ErrorCode::WrongRoom, true));

    // Not JSON; an unknown message; something other than join first; a wrong version.
    for (text, code) in [
        ("this is not json".to_string(), ErrorCode::BadMessage),
        (r#"{"type":"teleport"}"#.to_string(), ErrorCode::BadMessage),
        (encode(&ClientMessage::Ping), ErrorCode::NotJoined),
        (
            r#"{"type":"join","protocol":99,"token":"x"}"#.to_string(),
            ErrorCode::UnsupportedVersion,
        ),
    ] {
        let mut c = RawClient::connect(&server).await;
        c.send_text(text.clone()).await;
        assert_eq!(c.expect_error().await, (code, true), "{text}");
    }

    // Oversized.
    let mut c = RawClient::connect(&server).await;
    c.send_text(format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat(300 * 1024)
    ))
    .await;
    assert_eq!(c.expect_error().await, (ErrorCode::MessageTooLarge, true));

    // Joined, then 1,000 pings a second: closed for flooding within a second, after the
    // `limit_reached` it ignored.
    let mut flood = RawClient::connect(&server).await;
    flood.join(token(&server, "looper", Role::Speaker)).await;
    assert!(matches!(
        flood.next().await,
        Some(ServerMessage::Joined { .. })
    ));
    let start = Instant::now();
    let mut ping = tokio::time::interval(Duration::from_millis(1));
    let ping_text = encode(&ClientMessage::Ping);
    let (mut sent, mut limited, mut flooding) = (0, 0, false);
    while start.elapsed() < Duration::from_secs(5) {
        tokio::select! {
            _ = ping.tick(), if sent < 2000 => {
                sent += 1;
                if flood.ws.send(Message::Text(ping_text.clone().into())).await.is_err() {
                    sent = 2000;
                }
            }
            m = flood.ws.next() => match m {
                Some(Ok(Message::Text(t))) => match decode_server(t.as_str()).unwrap() {
                    ServerMessage::Error { code: ErrorCode::LimitReached, .. } => limited += 1,
                    ServerMessage::Error { code: ErrorCode::Flooding, .. } => flooding = true,
                    _ => {}
                },
                Some(Ok(Message::Close(frame))) => {
                    flood.closed_with =
                        frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
                    break;
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => break,
            },
        }
    }
    println!(
        "flood: closed after {:?} and {sent} pings, {limited} limit_reached first",
        start.elapsed()
    );
    assert!(
        flooding && limited > 0,
        "{limited} limit_reached, flooding {flooding}"
    );
    assert_eq!(flood.closed_with, Some((4010, "flooding".to_owned())));

    // A viewer may join and watch, but not publish; its session stays open.
    let mut viewer = RawClient::connect(&server).await;
    viewer.join(token(&server, "watcher", Role::Viewer)).await;
    assert!(matches!(
        viewer.next().await,
        Some(ServerMessage::Joined { .. })
    ));
    viewer
        .send(&ClientMessage::Offer {
            pc: PeerRole::Publisher,
            sdp: "v=0\r\n".into(),
            publish: vec![PublishTrack {
                mid: "0".into(),
                kind: TrackKind::Video,
                source: TrackSource::Camera,
            }],
        })
        .await;
    let (code, closed) = viewer.expect_error().await;
    assert_eq!(code, ErrorCode::PermissionDenied);
    assert!(!closed, "permission_denied leaves the session open");
    viewer.send(&ClientMessage::Ping).await;
    let mut ponged = false;
    while let Some(m) = viewer.next().await {
        if m == ServerMessage::Pong {
            ponged = true;
            break;
        }
    }
    assert!(ponged);
    // It leaves: a normal close.
    viewer.send(&ClientMessage::Leave).await;
    while viewer.next().await.is_some() {}
    assert_eq!(viewer.closed_with, Some((CLOSE_NORMAL, String::new())));
    // The close codes as documented: the token's are policy (1008), too large is 1009.
    assert_eq!(ErrorCode::InvalidToken.close_code(), 1008);
    assert_eq!(ErrorCode::MessageTooLarge.close_code(), 1009);

    // Through all that, Alice and Bob kept their call.
    let ev = party.run(Duration::from_secs(3), |_| false).await;
    let (a, b) = (frames_from(&ev[0], "bob"), frames_from(&ev[1], "alice"));
    assert!(a > 60 && b > 60, "{a} and {b} frames in 3 s");
    assert!(
        !ev[0]
            .iter()
            .any(|e| matches!(e, RoomEvent::ParticipantLeft { identity, .. } if identity == "bob"))
    );
    for room in party.rooms {
        room.leave().await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_participants_are_removed() {
    let config = ServerConfig {
        silence_timeout: Duration::from_millis(1500),
        ..ServerConfig::dev()
    };
    let server = Server::bind(config).await.unwrap();
    let mut party = Party::new(vec![join(&server, "alice").await]);

    // Goes silent with the connection open: removed at the timeout.
    let mut ghost = RawClient::connect(&server).await;
    ghost.join(token(&server, "ghost", Role::Speaker)).await;
    assert!(matches!(
        ghost.next().await,
        Some(ServerMessage::Joined { .. })
    ));
    let start = Instant::now();
    let ev = party
        .run(Duration::from_secs(6), |ev| {
            saw_left(&ev[0], "ghost", LeaveReason::Timeout)
        })
        .await;
    let elapsed = start.elapsed();
    assert!(
        saw_left(&ev[0], "ghost", LeaveReason::Timeout),
        "ghost not removed for silence"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "removed after {elapsed:?}"
    );
    // It is told, and closed with timeout's close code (as docs/protocol.md gives it).
    assert_eq!(ghost.expect_error().await, (ErrorCode::Timeout, true));
    assert_eq!(ghost.closed_with.as_ref().map(|c| c.0), Some(4007));

    // Drops its connection without a word: removed at once as connection lost.
    let mut dropper = RawClient::connect(&server).await;
    dropper.join(token(&server, "dropper", Role::Speaker)).await;
    assert!(matches!(
        dropper.next().await,
        Some(ServerMessage::Joined { .. })
    ));
    drop(dropper);
    let ev = party
        .run(Duration::from_secs(4), |ev| {
            saw_left(&ev[0], "dropper", LeaveReason::ConnectionLost)
        })
        .await;
    assert!(saw_left(&ev[0], "dropper", LeaveReason::ConnectionLost));
    for room in party.rooms {
        room.leave().await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_speaker_is_announced_and_mute_and_unsubscribe_reach_the_room() {
    use madang::media::{AudioFrame, Channels, Tone};
    let server = Server::bind(ServerConfig::dev()).await.unwrap();
    let audio_only = RoomOptions {
        audio: true,
        ..RoomOptions::default()
    };
    let mut loud = Room::connect(
        &server.signal_url(),
        &token(&server, "loud", Role::Speaker),
        audio_only.clone(),
    )
    .await
    .unwrap();
    let mut quiet = Room::connect(
        &server.signal_url(),
        &token(&server, "quiet", Role::Speaker),
        audio_only,
    )
    .await
    .unwrap();
    let mut tone = Tone::new(440.0, 0.5, Channels::Mono, 20).unwrap();
    let silence = AudioFrame::silence(Channels::Mono, 20, 0).unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let start = Instant::now();
    let mut ranking = None;
    let mut quiet_heard_loud = 0;
    while start.elapsed() < Duration::from_secs(8) && (ranking.is_none() || quiet_heard_loud <= 10)
    {
        tick.tick().await;
        loud.publish_audio(&tone.next_frame()).await.unwrap();
        quiet.publish_audio(&silence).await.unwrap();
        while let Some(e) = quiet.try_next_event() {
            match e {
                RoomEvent::ActiveSpeaker(speakers) if !speakers.is_empty() => {
                    ranking = Some(speakers)
                }
                RoomEvent::AudioFrame { participant, .. } if participant == "loud" => {
                    quiet_heard_loud += 1
                }
                _ => {}
            }
        }
        while loud.try_next_event().is_some() {}
    }
    let ranking = ranking.expect("an active-speaker announcement");
    assert_eq!(ranking[0].identity, "loud");
    assert!(
        ranking.iter().all(|s| s.identity != "quiet"),
        "silence is not speech: {ranking:?}"
    );
    assert!(
        quiet_heard_loud > 10,
        "audio flowed ({quiet_heard_loud} frames)"
    );

    // Mute is announced; unsubscribing stops the flow.
    loud.set_muted(madang::signal::TrackKind::Audio, true)
        .unwrap();
    quiet.unsubscribe(vec!["loud/microphone".into()]).unwrap();
    let mut muted_seen = false;
    let mut after = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        tick.tick().await;
        loud.publish_audio(&tone.next_frame()).await.unwrap();
        while let Some(e) = quiet.try_next_event() {
            match e {
                RoomEvent::TrackMuted { track, muted: true } if track == "loud/microphone" => {
                    muted_seen = true
                }
                RoomEvent::AudioFrame { participant, .. }
                    if participant == "loud" && t.elapsed() > Duration::from_millis(500) =>
                {
                    after += 1
                }
                _ => {}
            }
        }
    }
    assert!(muted_seen, "mute announced");
    assert_eq!(after, 0, "no audio after unsubscribing");
    loud.leave().await;
    quiet.leave().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_packets_are_retransmitted_or_repaired_by_a_keyframe() {
    let config = ServerConfig {
        simulate_loss_every: Some(60),
        ..ServerConfig::dev()
    };
    let server = Server::bind(config).await.unwrap();
    let mut party = Party::new(vec![
        join(&server, "alice").await,
        join(&server, "bob").await,
    ]);
    party
        .until_alice_and_bob_see_each_other(Duration::from_secs(10))
        .await;
    let ev = party.run(Duration::from_secs(5), |_| false).await;
    let stats = server.stats();
    println!("server: {stats:?}");
    for (room, events) in party.rooms.iter().zip(&ev) {
        let from = if room.local().identity == "alice" {
            "bob"
        } else {
            "alice"
        };
        let track = room
            .receive_stats()
            .into_iter()
            .find(|t| t.track == format!("{from}/camera"))
            .unwrap();
        println!(
            "{} ← {from}: {} frames in 5 s, {track:?}",
            room.local().identity,
            frames_from(events, from)
        );
        // Packets went missing, and the receiver noticed.
        assert!(
            track.packets_lost > 0 || stats.retransmitted > 0,
            "no loss observed"
        );
        // The picture did not freeze: most frames of the 5 s still decoded.
        assert!(
            frames_from(events, from) > 100,
            "only {} frames decoded",
            frames_from(events, from)
        );
    }
    assert!(
        stats.retransmitted > 0,
        "NACKs were answered from the cache"
    );
    for room in party.rooms {
        room.leave().await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_websocket_is_resumed_and_the_call_goes_on() {
    let server = Server::bind(ServerConfig::dev()).await.unwrap();
    let relay = Relay::start(server.http_addr()).await;
    let options = RoomOptions {
        video: Some(VideoOptions::new(W, H)),
        ..RoomOptions::default()
    };
    let alice = Room::connect(
        &format!("ws://{}/signal", relay.addr),
        &token(&server, "alice", Role::Speaker),
        options,
    )
    .await
    .unwrap();
    let mut party = Party::new(vec![alice, join(&server, "bob").await]);
    party
        .until_alice_and_bob_see_each_other(Duration::from_secs(10))
        .await;
    // Alice's WebSocket is reset; 3 s in slices of 100 ms after it.
    relay.cut();
    let cut = Instant::now();
    let mut slices: Vec<(usize, usize)> = Vec::new();
    let mut events: Vec<Vec<RoomEvent>> = vec![Vec::new(), Vec::new()];
    let mut resumed_after = None;
    for _ in 0..30 {
        let ev = party.run(Duration::from_millis(100), |_| false).await;
        slices.push((frames_from(&ev[0], "bob"), frames_from(&ev[1], "alice")));
        if resumed_after.is_none() && ev[0].iter().any(|e| matches!(e, RoomEvent::Reconnected)) {
            resumed_after = Some(cut.elapsed());
        }
        for (all, new) in events.iter_mut().zip(ev) {
            all.extend(new);
        }
    }
    let reconnecting = events[0]
        .iter()
        .position(|e| matches!(e, RoomEvent::Reconnecting));
    let reconnected = events[0]
        .iter()
        .position(|e| matches!(e, RoomEvent::Reconnected));
    assert!(
        matches!((reconnecting, reconnected), (Some(a), Some(b)) if a < b),
        "alice reconnected: {reconnecting:?} {reconnected:?}"
    );
    // The media never stopped: no 100 ms slice without pictures, either way.
    let empty = slices.iter().filter(|s| s.0 == 0 || s.1 == 0).count();
    println!(
        "signal cut: alice resumed after {resumed_after:?} (seen at 100 ms steps); slices \
         without pictures {empty} of 30"
    );
    assert!(empty <= 2, "{slices:?}");
    assert!(!saw_left(&events[1], "alice", LeaveReason::ConnectionLost));
    assert!(
        !events[0]
            .iter()
            .any(|e| matches!(e, RoomEvent::Disconnected))
    );
    // The signal works again: a message from alice reaches bob.
    party.rooms[0]
        .send_data("chat", "back again", Vec::new())
        .unwrap();
    let ev = party
        .run(Duration::from_secs(5), |ev| {
            ev[1]
                .iter()
                .any(|e| matches!(e, RoomEvent::Data(m) if m.payload.as_ref() == "back again"))
        })
        .await;
    assert!(
        ev[1]
            .iter()
            .any(|e| matches!(e, RoomEvent::Data(m) if m.from == "alice")),
        "alice's message after the resume"
    );
    assert_eq!(server.stats().participants, 2);
    for room in party.rooms {
        room.leave().await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_whose_network_changes_restarts_ice_and_its_pictures_resume() {
    let server = Server::bind(ServerConfig::dev()).await.unwrap();
    let mut party = Party::alice_and_bob(&server).await;
    // Alice's laptop moves from 127.0.0.1 to 127.0.0.2: her old sockets are closed.
    let moved = "127.0.0.2".parse().unwrap();
    party.rooms[0].network_changed(Some(moved)).await.unwrap();
    // 4 s in slices of 100 ms: per slice, the pictures each side got from the other.
    let mut slices: Vec<(usize, usize)> = Vec::new();
    for _ in 0..40 {
        let ev = party.run(Duration::from_millis(100), |_| false).await;
        slices.push((frames_from(&ev[0], "bob"), frames_from(&ev[1], "alice")));
    }
    let longest_gap = |side: fn(&(usize, usize)) -> usize| {
        let mut longest = 0;
        let mut run = 0;
        for s in &slices {
            run = if side(s) == 0 { run + 1 } else { 0 };
            longest = longest.max(run);
        }
        longest as f64 * 0.1
    };
    let to_alice = longest_gap(|s| s.0);
    let to_bob = longest_gap(|s| s.1);
    let last_second =
        |side: fn(&(usize, usize)) -> usize| -> usize { slices[30..].iter().map(side).sum() };
    let sent = party.rooms[0].send_stats();
    println!(
        "network change: bob→alice gap {to_alice:.1} s, alice→bob gap {to_bob:.1} s; \
         last second {} and {} pictures; alice's ICE restarts {}",
        last_second(|s| s.0),
        last_second(|s| s.1),
        sent.ice_restarts
    );
    assert_eq!(
        sent.ice_restarts, 2,
        "both of alice's connections restarted ICE"
    );
    assert!(
        to_alice <= 1.0,
        "bob's pictures stopped {to_alice:.1} s at alice"
    );
    assert!(
        to_bob <= 1.0,
        "alice's pictures stopped {to_bob:.1} s at bob"
    );
    assert!(last_second(|s| s.0) >= 20 && last_second(|s| s.1) >= 20);
    let stats = server.stats();
    assert_eq!(
        stats.publisher_restarts + stats.subscriber_restarts,
        0,
        "nothing replaced"
    );
    for room in party.rooms {
        room.leave().await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_room_sends_one_composited_stream_to_a_viewer() {
    use madang::grid::layout::{Layout, LayoutInput, Mode, Person, Viewport};
    use madang::sfu::mixer::GridConfig;
    let config = ServerConfig {
        grid_rooms: vec!["r".into()],
        grid: GridConfig {
            width: 640,
            height: 360,
            fps: 15,
            bitrate_kbps: 1500,
        },
        ..ServerConfig::dev()
    };
    let server = Server::bind(config).await.unwrap();
    let mut party = Party::new(vec![
        join(&server, "alice").await,
        join(&server, "bob").await,
        join(&server, "carol").await,
    ]);
    // A TV that can decode one stream: a viewer that receives only the grid.
    let options = RoomOptions {
        auto_subscribe: false,
        name: None,
        ..RoomOptions::default()
    };
    let mut tv = Room::connect(
        &server.signal_url(),
        &token(&server, "tv", Role::Viewer),
        options,
    )
    .await
    .unwrap();
    assert!(tv.initial_tracks().iter().any(|t| t.id == "grid/grid"));
    tv.subscribe(vec!["grid/grid".into()]).unwrap();
    let mut last_grid = None;
    let mut from_others = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(12) {
        party.run(Duration::from_millis(200), |_| false).await;
        while let Some(e) = tv.try_next_event() {
            if let RoomEvent::VideoFrame {
                participant, frame, ..
            } = e
            {
                if participant == "grid" {
                    last_grid = Some(frame);
                } else {
                    from_others += 1;
                }
            }
        }
        // Done once the grid shows all three live.
        if let Some(g) = &last_grid
            && tiles_with_stamps(g) == 3
        {
            break;
        }
    }
    let grid = last_grid.expect("the viewer decoded the composited grid");
    assert_eq!((grid.width(), grid.height()), (640, 360));
    assert_eq!(
        tiles_with_stamps(&grid),
        3,
        "all three publishers live in the grid"
    );
    assert_eq!(from_others, 0, "the viewer received only the grid");

    fn tiles_with_stamps(grid: &madang::media::VideoFrame) -> usize {
        let people: Vec<Person> = ["alice", "bob", "carol"]
            .iter()
            .map(|i| Person::new(i))
            .collect();
        let layout = Layout::compute(&LayoutInput::new(
            &people,
            Viewport::new(640, 360),
            Mode::Gallery,
        ));
        madang::grid::compose::read_tile_stamps(grid, &layout)
            .iter()
            .filter(|(_, stamp)| stamp.is_some())
            .count()
    }
    tv.leave().await;
    for room in party.rooms {
        room.leave().await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_room_leaves_it() {
    let server = Server::bind(ServerConfig::dev()).await.unwrap();
    let mut party = Party::new(vec![join(&server, "alice").await]);
    let bob = join(&server, "bob").await;
    let ev = party
        .run(Duration::from_secs(5), |ev| {
            ev[0]
                .iter()
                .any(|e| matches!(e, RoomEvent::ParticipantJoined(p) if p.identity == "bob"))
        })
        .await;
    assert!(!ev[0].is_empty(), "alice saw bob join");
    // No leave(): the Room goes out of scope.
    drop(bob);
    let dropped = Instant::now();
    let ev = party
        .run(Duration::from_secs(3), |ev| {
            saw_left(&ev[0], "bob", LeaveReason::Left)
        })
        .await;
    assert!(
        saw_left(&ev[0], "bob", LeaveReason::Left),
        "bob's dropped Room said leave (not a connection loss or a timeout)"
    );
    assert!(
        dropped.elapsed() < Duration::from_secs(2),
        "{:?}",
        dropped.elapsed()
    );
    // The server's counters (published ten times a second) agree: alice is alone.
    let mut alone = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if server.stats().participants == 1 {
            alone = true;
            break;
        }
    }
    assert!(alone, "participants: {}", server.stats().participants);
    for room in party.rooms {
        room.leave().await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_advertised_address_is_announced_whatever_the_udp_socket_binds() {
    // Behind a 1:1 NAT: bound to the private address, announcing the public one.
    let public: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    let config = ServerConfig {
        advertise_ip: Some(public),
        ..ServerConfig::dev()
    };
    let server = Server::bind(config).await.unwrap();
    assert_eq!(server.udp_addr().ip(), public);
    assert_ne!(server.udp_addr().port(), 0);
    server.shutdown().await;
    // Every address and nothing to announce: a clear refusal (before binding anything).
    let config = ServerConfig {
        udp: "0.0.0.0:0".parse().unwrap(),
        ..ServerConfig::dev()
    };
    let Err(e) = Server::bind(config).await else {
        panic!("bound 0.0.0.0 with nothing to announce");
    };
    assert!(e.to_string().contains("advertise_ip"), "{e}");
}

/// A publisher offer as another WebRTC stack writes it, by hand: video as VP8 only (mid 0,
/// first in the bundle), audio as Opus (mid 1).
const VP8_AND_OPUS_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=msid-semantic: WMS s\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Zx3q\r\n\
a=ice-pwd:kK0xqV2lOrnLq4WDUdxkpUoQ\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 3C:4A:AA:C1:25:49:74:C1:1F:33:4D:1E:8C:2F:B4:5C:0B:99:8E:36:4E:4D:3B:9F:96:E9:5C:31:2B:A9:71:4E\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=sendonly\r\n\
a=msid:s v\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=ssrc-group:FID 1001 1002\r\n\
a=ssrc:1001 cname:c\r\n\
a=ssrc:1002 cname:c\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Zx3q\r\n\
a=ice-pwd:kK0xqV2lOrnLq4WDUdxkpUoQ\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 3C:4A:AA:C1:25:49:74:C1:1F:33:4D:1E:8C:2F:B4:5C:0B:99:8E:36:4E:4D:3B:9F:96:E9:5C:31:2B:A9:71:4E\r\n\
a=setup:actpass\r\n\
a=mid:1\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=sendonly\r\n\
a=msid:s a\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=ssrc:2001 cname:c\r\n";

/// Sends a publisher offer of a camera (mid 0) and a microphone (mid 1) as the wire carries
/// it, written from docs/protocol.md; returns the answer and the tracks it refused.
async fn offer_camera_and_microphone(
    publisher: &mut RawClient,
    offer_sdp: &str,
) -> (String, Vec<madang::signal::RefusedTrack>) {
    let offer = serde_json::json!({
        "type": "offer",
        "pc": "publisher",
        "sdp": offer_sdp,
        "publish": [
            {"mid": "0", "kind": "video", "source": "camera"},
            {"mid": "1", "kind": "audio", "source": "microphone"},
        ],
    });
    publisher.send_text(offer.to_string()).await;
    loop {
        match publisher.next().await {
            Some(ServerMessage::Answer { sdp, refused, .. }) => break (sdp, refused),
            Some(ServerMessage::Error { code, reason }) => panic!("{code}: {reason}"),
            Some(_) => continue,
            None => panic!("no answer"),
        }
    }
}

/// The m-sections of an SDP, each as its lines (the `m=` line first).
fn sdp_sections(sdp: &str) -> Vec<Vec<&str>> {
    let mut sections: Vec<Vec<&str>> = Vec::new();
    for line in sdp.lines() {
        if line.starts_with("m=") {
            sections.push(vec![line]);
        } else if let Some(s) = sections.last_mut() {
            s.push(line);
        }
    }
    sections
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_offered_without_a_codec_madang_takes_is_refused_and_not_announced() {
    let server = Server::bind(ServerConfig::dev()).await.unwrap();
    let mut watcher = RawClient::connect(&server).await;
    watcher.join(token(&server, "watcher", Role::Speaker)).await;
    assert!(matches!(
        watcher.next().await,
        Some(ServerMessage::Joined { .. })
    ));
    let mut publisher = RawClient::connect(&server).await;
    publisher.join(token(&server, "vp8", Role::Speaker)).await;
    assert!(matches!(
        publisher.next().await,
        Some(ServerMessage::Joined { .. })
    ));
    let (sdp, refused) = offer_camera_and_microphone(&mut publisher, VP8_AND_OPUS_OFFER).await;
    println!("{sdp}");
    println!("refused: {refused:?}");
    // The video section is rejected (port 0), the audio one accepted.
    let sections = sdp_sections(&sdp);
    assert_eq!(sections.len(), 2, "{sdp}");
    assert!(sections[0][0].starts_with("m=video 0 "), "{sdp}");
    assert!(!sections[1][0].starts_with("m=audio 0 "), "{sdp}");
    // The publisher is told which track was refused, and why.
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].mid, "0");
    assert!(
        refused[0].reason.contains("H.264") && refused[0].reason.contains("VP8"),
        "{}",
        refused[0].reason
    );
    // The server's candidate is in the accepted section, none in the rejected one.
    assert!(
        sections[1].iter().any(|l| l.starts_with("a=candidate:")),
        "{sdp}"
    );
    assert!(
        !sections[0].iter().any(|l| l.starts_with("a=candidate:")),
        "{sdp}"
    );
    // The room hears of the microphone only.
    let mut announced = Vec::new();
    while let Ok(Some(m)) = watcher.next_within(Duration::from_secs(1)).await {
        if let ServerMessage::TrackPublished { track } = m {
            announced.push(track.id);
        }
    }
    assert_eq!(announced, ["vp8/microphone"]);
    server.shutdown().await;
}

/// The answer to a publisher offer from a fresh participant of a fresh server.
async fn publisher_answer(offer_sdp: &str) -> String {
    let server = Server::bind(ServerConfig::dev()).await.unwrap();
    let mut publisher = RawClient::connect(&server).await;
    publisher.join(token(&server, "cam", Role::Speaker)).await;
    let (sdp, _) = offer_camera_and_microphone(&mut publisher, offer_sdp).await;
    server.shutdown().await;
    sdp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_offered_with_its_retransmission_format_is_answered_with_it() {
    // The hand-written offer with H.264 where VP8 was: its `rtx` (apt=96) and FID group.
    let h264 = VP8_AND_OPUS_OFFER.replace(
        "a=rtpmap:96 VP8/90000\r\n",
        "a=rtpmap:96 H264/90000\r\n\
         a=fmtp:96 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n",
    );
    let sdp = publisher_answer(&h264).await;
    let video = &sdp_sections(&sdp)[0];
    assert!(!video[0].starts_with("m=video 0 "), "{sdp}");
    assert!(video.contains(&"a=rtpmap:97 rtx/90000"), "{sdp}");
    assert!(video.contains(&"a=fmtp:97 apt=96"), "{sdp}");
    // Without it in the offer, none in the answer: repairs on the media stream.
    let plain = h264
        .replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
        )
        .replace("a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n", "")
        .replace("a=ssrc-group:FID 1001 1002\r\n", "")
        .replace("a=ssrc:1002 cname:c\r\n", "");
    assert!(!plain.contains("rtx"), "{plain}");
    let sdp = publisher_answer(&plain).await;
    let video = &sdp_sections(&sdp)[0];
    assert!(!video[0].starts_with("m=video 0 "), "{sdp}");
    assert!(!sdp.contains("rtx"), "{sdp}");
}

#[tokio::test]
async fn a_server_without_a_secret_of_its_own_does_not_start() {
    let no_secret = Server::bind(ServerConfig::new("")).await;
    assert!(
        matches!(no_secret, Err(madang::sfu::SfuError::EmptySecret)),
        "{no_secret:?}"
    );
    // The development secret is public: only in development mode.
    let public = Server::bind(ServerConfig {
        dev: false,
        ..ServerConfig::dev()
    })
    .await;
    assert!(
        matches!(public, Err(madang::sfu::SfuError::PublicSecret)),
        "{public:?}"
    );
    let own = Server::bind(ServerConfig {
        secret: b"a secret of its own".to_vec(),
        dev: false,
        ..ServerConfig::dev()
    })
    .await
    .unwrap();
    own.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_and_counted_and_the_room_goes_on() {
    // The sender's data rate unlimited: this is about the receiving end.
    let config = ServerConfig {
        limits: madang::sfu::Limits {
            signal_per_second: 100_000,
            data_per_second: 100_000,
            data_bytes_per_second: u32::MAX / 2,
            ..Default::default()
        },
        ..ServerConfig::dev()
    };
    let server = Server::bind(config).await.unwrap();
    let mut sender = RawClient::connect(&server).await;
    sender.join(token(&server, "sender", Role::Speaker)).await;
    assert!(matches!(
        sender.next().await,
        Some(ServerMessage::Joined { .. })
    ));
    // Joins, then never reads its WebSocket again.
    let mut stuck = RawClient::connect(&server).await;
    stuck.join(token(&server, "stuck", Role::Speaker)).await;
    assert!(matches!(
        stuck.next().await,
        Some(ServerMessage::Joined { .. })
    ));
    // 64 KiB messages to it until the server gives up on it: the TCP buffers on both sides
    // fill first (a few MB on loopback), then its queue on the server (256 messages).
    let payload = "x".repeat(64 * 1024);
    let start = Instant::now();
    let mut gone = false;
    for _ in 0..2000 {
        let message = serde_json::json!({
            "type": "data",
            "message": {"to": ["stuck"], "topic": "flood", "payload": payload},
        });
        sender.send_text(message.to_string()).await;
        // The sender's own messages (participant_left among them) read as they come.
        while let Ok(Some(m)) = sender.next_within(Duration::from_millis(1)).await {
            if let ServerMessage::ParticipantLeft { identity, reason } = m {
                assert_eq!((identity.as_str(), reason), ("stuck", LeaveReason::Error));
                gone = true;
            }
        }
        if gone || start.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    assert!(gone, "the stuck client was never closed");
    // The counters are published every 100 ms.
    for _ in 0..20 {
        if server.stats().slow_sessions_closed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.stats().slow_sessions_closed, 1);
    let metrics = get_metrics(server.http_addr()).await;
    assert!(
        metrics.contains("madang_slow_sessions_closed_total 1"),
        "{metrics}"
    );
    // The sender carries on.
    sender.send(&ClientMessage::Ping).await;
    let mut ponged = false;
    while let Some(m) = sender.next().await {
        if m == ServerMessage::Pong {
            ponged = true;
            break;
        }
    }
    assert!(ponged);
    // The stuck client, reading at last, finds its connection closed with `too_slow`.
    let mut close = None;
    while let Ok(m) = stuck.next_within(Duration::from_secs(5)).await {
        if m.is_none() {
            close = stuck.closed_with.clone();
            break;
        }
    }
    assert_eq!(close, Some((4008, "too_slow".to_owned())));
    server.shutdown().await;
}

/// `GET /metrics` from `addr` over a plain TCP connection: the whole response.
async fn get_metrics(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    tcp.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_clients_join_with_wss_and_plain_ws_is_refused() {
    // A self-signed certificate for this machine, made here.
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let tls = madang::sfu::TlsConfig {
        cert_pem: cert.cert.pem().into_bytes(),
        key_pem: cert.signing_key.serialize_pem().into_bytes(),
    };
    let server = Server::bind(ServerConfig {
        tls: Some(tls),
        ..ServerConfig::dev()
    })
    .await
    .unwrap();
    let url = server.signal_url();
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");
    let trusting = RoomOptions {
        audio: true,
        trusted_certificates: Some(cert.cert.pem().into_bytes()),
        ..RoomOptions::default()
    };
    // Two participants over wss://: joined, and one hears the other over WebRTC.
    let alice = Room::connect(
        &url,
        &token(&server, "alice", Role::Speaker),
        trusting.clone(),
    )
    .await
    .unwrap();
    let mut bob = Room::connect(
        &url,
        &token(&server, "bob", Role::Speaker),
        trusting.clone(),
    )
    .await
    .unwrap();
    let mut tone = madang::media::Tone::new(440.0, 0.3, madang::media::Channels::Mono, 20).unwrap();
    let mut heard = 0;
    let until = Instant::now() + Duration::from_secs(10);
    while heard < 10 && Instant::now() < until {
        alice.publish_audio(&tone.next_frame()).await.unwrap();
        while let Ok(Some(e)) =
            tokio::time::timeout(Duration::from_millis(20), bob.next_event()).await
        {
            if matches!(e, RoomEvent::AudioFrame { .. }) {
                heard += 1;
            }
        }
    }
    assert!(
        heard >= 10,
        "bob heard {heard} blocks of alice over a TLS-signalled call"
    );
    // Without trusting the certificate: refused by the client's TLS.
    let untrusted = Room::connect(
        &url,
        &token(&server, "carol", Role::Speaker),
        RoomOptions::default(),
    )
    .await;
    assert!(untrusted.is_err(), "a self-signed certificate was trusted");
    // Plain ws:// to the TLS port: no WebSocket.
    let plain = url.replacen("wss://", "ws://", 1);
    assert!(
        tokio_tungstenite::connect_async(&plain).await.is_err(),
        "plain ws:// reached a TLS endpoint"
    );
    alice.leave().await;
    bob.leave().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_certificate_is_refused_with_a_clear_error() {
    let bad = Server::bind(ServerConfig {
        tls: Some(madang::sfu::TlsConfig {
            cert_pem: b"not a certificate".to_vec(),
            key_pem: b"not a key".to_vec(),
        }),
        ..ServerConfig::dev()
    })
    .await;
    match bad {
        Err(madang::sfu::SfuError::Tls(why)) => assert!(why.contains("certificate"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn metrics_on_an_address_of_their_own_leave_the_main_port() {
    let server = Server::bind(ServerConfig {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..ServerConfig::dev()
    })
    .await
    .unwrap();
    let own = server.metrics_addr().expect("bound");
    assert_ne!(own, server.http_addr());
    let there = get_metrics(own).await;
    assert!(
        there.starts_with("HTTP/1.1 200") && there.contains("madang_participants 0"),
        "{there}"
    );
    let main = get_metrics(server.http_addr()).await;
    assert!(main.starts_with("HTTP/1.1 404"), "{main}");
    server.shutdown().await;
    // Without the option: on the main port.
    let server = Server::bind(ServerConfig::dev()).await.unwrap();
    assert_eq!(server.metrics_addr(), None);
    assert!(
        get_metrics(server.http_addr())
            .await
            .contains("madang_rooms 0")
    );
    server.shutdown().await;
}
