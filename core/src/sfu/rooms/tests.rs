//! The room policy on simulated time: no sockets, no WebRTC, no sleeps.

use std::time::{Duration, Instant};

use super::*;
use crate::sfu::token::{Claims, mint};
use crate::signal::{Role, valid_display_name};

const SECRET: &[u8] = b"test-secret";
const UNIX: u64 = 1_800_000_000;

fn rooms() -> Rooms {
    Rooms::new(RoomsConfig {
        secret: SECRET.to_vec(),
        silence_timeout: Duration::from_secs(10),
        max_participants: 3,
        limits: crate::sfu::Limits::default(),
        grid_rooms: vec!["grid-hall".into()],
        broadcast_rooms: vec!["class".into()],
        resume_grace: Duration::from_secs(15),
        seed: Some(7),
        // Never written by the policy: it only decides.
        record: Some(crate::sfu::record::RecordConfig {
            dir: "/nonexistent/recordings".into(),
            rooms: vec!["archive".into()],
        }),
    })
}

fn token(room: &str, identity: &str, role: Role) -> String {
    mint(
        SECRET,
        &Claims::new(room, identity, identity, role, UNIX, 3600),
    )
    .unwrap()
}

/// A `join` with `token`, current protocol, everything subscribed, the token's name.
fn join_message(token: String) -> ClientMessage {
    ClientMessage::Join {
        protocol: PROTOCOL_VERSION,
        token,
        auto_subscribe: true,
        name: None,
    }
}

fn join(r: &mut Rooms, id: SessionId, identity: &str, role: Role, now: Instant) {
    r.open(id, None, now);
    let join = join_message(token("hall", identity, role));
    assert_eq!(r.message(id, join, now, UNIX), None);
}

/// Messages sent to `id` among `effects`.
fn sent_to(effects: &[Effect], id: SessionId) -> Vec<&ServerMessage> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(to, m) if *to == id => Some(m),
            _ => None,
        })
        .collect()
}

fn camera_and_mic() -> Vec<PublishTrack> {
    vec![
        PublishTrack {
            mid: "0".into(),
            kind: TrackKind::Video,
            source: TrackSource::Camera,
        },
        PublishTrack {
            mid: "1".into(),
            kind: TrackKind::Audio,
            source: TrackSource::Microphone,
        },
    ]
}

#[test]
fn join_publish_subscribe_and_leave() {
    let t0 = Instant::now();
    let mut r = rooms();
    join(&mut r, 1, "jongno", Role::Speaker, t0);
    let e = r.drain_effects();
    assert!(
        matches!(sent_to(&e, 1)[..], [ServerMessage::Joined { participants, .. }] if participants.is_empty())
    );

    // Jongno publishes; nobody else is there yet.
    let work = r.message(
        1,
        ClientMessage::Offer {
            pc: PeerRole::Publisher,
            sdp: "v=0".into(),
            publish: camera_and_mic(),
        },
        t0,
        UNIX,
    );
    assert!(matches!(
        work,
        Some(Work::Offer {
            pc: PeerRole::Publisher,
            ..
        })
    ));
    r.published(1, &camera_and_mic());
    r.drain_effects();

    // Gangnam joins, sees Jongno and his tracks, and is asked for one slot of each kind.
    join(&mut r, 2, "gangnam", Role::Speaker, t0);
    let e = r.drain_effects();
    match &sent_to(&e, 2)[..] {
        [
            ServerMessage::Joined {
                participants,
                tracks,
                ..
            },
            ServerMessage::Renegotiate { audio: 1, video: 1 },
        ] => {
            assert_eq!(participants[0].identity, "jongno");
            assert_eq!(tracks.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        sent_to(&e, 1)[..],
        [ServerMessage::ParticipantJoined { .. }]
    ));

    // Its subscriber offer brings the slots; the tracks land on them.
    r.slots_added(
        2,
        vec![
            (TrackKind::Audio, "0".into()),
            (TrackKind::Video, "1".into()),
        ],
    );
    let e = r.drain_effects();
    match &sent_to(&e, 2)[..] {
        [ServerMessage::Slots { slots }] => {
            assert_eq!(slots[0].track.as_deref(), Some("jongno/microphone"));
            assert_eq!(slots[1].track.as_deref(), Some("jongno/camera"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.carriers("hall", "jongno/camera"), &[(2, 1)]);
    assert_eq!(r.publisher_of("hall", "jongno/camera"), Some(1));

    // Nobody unpublishes another's track.
    let theirs = ClientMessage::Unpublish {
        tracks: vec!["jongno/microphone".into()],
    };
    r.message(2, theirs, t0, UNIX);
    assert!(r.drain_effects().is_empty());
    assert_eq!(r.publisher_of("hall", "jongno/microphone"), Some(1));

    // Jongno stops his camera: Gangnam is told, its video slot falls idle, audio stays.
    let camera = ClientMessage::Unpublish {
        tracks: vec!["jongno/camera".into()],
    };
    r.message(1, camera, t0, UNIX);
    let e = r.drain_effects();
    let to_gangnam = sent_to(&e, 2);
    assert!(to_gangnam.iter().any(
        |m| matches!(m, ServerMessage::TrackUnpublished { track } if track == "jongno/camera")
    ));
    assert!(
        to_gangnam
            .iter()
            .any(|m| matches!(m, ServerMessage::Slots { slots }
        if slots[0].track.as_deref() == Some("jongno/microphone") && slots[1].track.is_none()))
    );
    assert!(r.carriers("hall", "jongno/camera").is_empty());
    // And publishes it again later: it lands on the same slot.
    r.published(1, &camera_and_mic()[..1]);
    let e = r.drain_effects();
    assert!(
        sent_to(&e, 2)
            .iter()
            .any(|m| matches!(m, ServerMessage::Slots { slots }
        if slots[1].track.as_deref() == Some("jongno/camera")))
    );

    // Jongno leaves: Gangnam is told and its slots fall idle.
    r.message(1, ClientMessage::Leave, t0, UNIX);
    let e = r.drain_effects();
    assert!(e.contains(&Effect::Close(1)));
    let to_gangnam = sent_to(&e, 2);
    assert!(to_gangnam.iter().any(
        |m| matches!(m, ServerMessage::TrackUnpublished { track } if track == "jongno/camera")
    ));
    assert!(to_gangnam.iter().any(|m| matches!(m, ServerMessage::ParticipantLeft { identity, reason: LeaveReason::Left } if identity == "jongno")));
    assert!(to_gangnam.iter().any(
        |m| matches!(m, ServerMessage::Slots { slots } if slots.iter().all(|s| s.track.is_none()))
    ));
    assert!(r.carriers("hall", "jongno/camera").is_empty());
}

#[test]
fn slots_are_reused_without_renegotiation() {
    let t0 = Instant::now();
    let mut r = rooms();
    join(&mut r, 1, "a", Role::Speaker, t0);
    join(&mut r, 2, "b", Role::Speaker, t0);
    r.published(2, &camera_and_mic()[..1]);
    r.slots_added(1, vec![(TrackKind::Video, "0".into())]);
    r.drain_effects();
    // b leaves, c arrives and publishes: a's one video slot now carries c, no renegotiation.
    r.closed(2, LeaveReason::ConnectionLost);
    join(&mut r, 3, "c", Role::Speaker, t0);
    r.published(3, &camera_and_mic()[..1]);
    let e = r.drain_effects();
    let to_a = sent_to(&e, 1);
    assert!(
        !to_a
            .iter()
            .any(|m| matches!(m, ServerMessage::Renegotiate { .. }))
    );
    assert!(
        matches!(to_a.last(), Some(ServerMessage::Slots { slots }) if slots[0].track.as_deref() == Some("c/camera"))
    );
    assert_eq!(r.slot_track(1, 0), Some("c/camera"));
}

#[test]
fn refusals_close_only_that_session() {
    let t0 = Instant::now();
    let mut r = rooms();
    join(&mut r, 1, "host", Role::Host, t0);
    r.drain_effects();
    let cases: Vec<(ClientMessage, ErrorCode)> = vec![
        (ClientMessage::Ping, ErrorCode::NotJoined),
        (
            ClientMessage::Join {
                protocol: 9,
                token: token("hall", "x", Role::Speaker),
                auto_subscribe: true,
                name: None,
            },
            ErrorCode::UnsupportedVersion,
        ),
        (
            ClientMessage::Join {
                protocol: 1,
                token: mint(
                    b"other",
                    &Claims::new("hall", "x", "x", Role::Host, UNIX, 60),
                )
                .unwrap(),
                auto_subscribe: true,
                name: None,
            },
            ErrorCode::InvalidToken,
        ),
        (
            ClientMessage::Join {
                protocol: 1,
                token: mint(
                    SECRET,
                    &Claims::new("hall", "x", "x", Role::Host, UNIX - 7200, 60),
                )
                .unwrap(),
                auto_subscribe: true,
                name: None,
            },
            ErrorCode::TokenExpired,
        ),
        (
            ClientMessage::Join {
                protocol: 1,
                token: token("hall", "x", Role::Speaker),
                auto_subscribe: true,
                name: Some("line\nbreak".into()),
            },
            ErrorCode::BadMessage,
        ),
    ];
    for (i, (message, code)) in cases.into_iter().enumerate() {
        let id = 100 + i as SessionId;
        r.open(id, None, t0);
        r.message(id, message, t0, UNIX);
        let e = r.drain_effects();
        assert!(
            matches!(sent_to(&e, id)[..], [ServerMessage::Error { code: c, .. }] if *c == code),
            "{code}: {e:?}"
        );
        assert!(e.contains(&Effect::Close(id)));
        assert!(sent_to(&e, 1).is_empty(), "the room is not disturbed");
    }
    // Wrong room in the URL.
    r.open(200, Some("other".into()), t0);
    r.message(
        200,
        join_message(token("hall", "y", Role::Speaker)),
        t0,
        UNIX,
    );
    let e = r.drain_effects();
    assert!(matches!(
        sent_to(&e, 200)[..],
        [ServerMessage::Error {
            code: ErrorCode::WrongRoom,
            ..
        }]
    ));
    // A viewer may not publish, but stays.
    join(&mut r, 300, "viewer", Role::Viewer, t0);
    r.drain_effects();
    let work = r.message(
        300,
        ClientMessage::Offer {
            pc: PeerRole::Publisher,
            sdp: "v=0".into(),
            publish: camera_and_mic(),
        },
        t0,
        UNIX,
    );
    assert_eq!(work, None);
    let e = r.drain_effects();
    assert!(matches!(
        sent_to(&e, 300)[..],
        [ServerMessage::Error {
            code: ErrorCode::PermissionDenied,
            ..
        }]
    ));
    assert!(!e.contains(&Effect::Close(300)));
    // A viewer may still offer a subscriber connection.
    let work = r.message(
        300,
        ClientMessage::Offer {
            pc: PeerRole::Subscriber,
            sdp: "v=0".into(),
            publish: vec![],
        },
        t0,
        UNIX,
    );
    assert!(matches!(
        work,
        Some(Work::Offer {
            pc: PeerRole::Subscriber,
            ..
        })
    ));
}

#[test]
fn room_limit_and_replaced_identity() {
    let t0 = Instant::now();
    let mut r = rooms();
    join(&mut r, 1, "a", Role::Speaker, t0);
    join(&mut r, 2, "b", Role::Speaker, t0);
    join(&mut r, 3, "c", Role::Speaker, t0);
    r.drain_effects();
    r.open(4, None, t0);
    r.message(4, join_message(token("hall", "d", Role::Speaker)), t0, UNIX);
    let e = r.drain_effects();
    assert!(matches!(
        sent_to(&e, 4)[..],
        [ServerMessage::Error {
            code: ErrorCode::RoomFull,
            ..
        }]
    ));
    // "a" joins again from elsewhere: the old session is replaced.
    join(&mut r, 5, "a", Role::Speaker, t0);
    let e = r.drain_effects();
    assert!(e.contains(&Effect::Close(1)));
    assert!(sent_to(&e, 2).iter().any(|m| matches!(m, ServerMessage::ParticipantLeft { identity, reason: LeaveReason::Replaced } if identity == "a")));
    assert!(matches!(
        sent_to(&e, 5)[..],
        [ServerMessage::Joined { .. }, ..]
    ));
}

#[test]
fn silent_sessions_time_out_and_media_keeps_them_alive() {
    let t0 = Instant::now();
    let mut r = rooms();
    join(&mut r, 1, "talker", Role::Speaker, t0);
    join(&mut r, 2, "ghost", Role::Speaker, t0);
    r.drain_effects();
    for s in 1..=11 {
        let now = t0 + Duration::from_secs(s);
        r.heard(1, now); // datagrams from the talker
        r.tick(now);
    }
    let e = r.drain_effects();
    assert!(e.contains(&Effect::Close(2)));
    assert!(!e.contains(&Effect::Close(1)));
    assert!(sent_to(&e, 1).iter().any(|m| matches!(m, ServerMessage::ParticipantLeft { identity, reason: LeaveReason::Timeout } if identity == "ghost")));
}

#[test]
fn data_mute_and_speakers() {
    let t0 = Instant::now();
    let mut r = rooms();
    join(&mut r, 1, "a", Role::Speaker, t0);
    join(&mut r, 2, "b", Role::Speaker, t0);
    join(&mut r, 3, "c", Role::Speaker, t0);
    r.published(1, &camera_and_mic());
    r.drain_effects();
    let chat = DataMessage {
        from: "spoofed".into(),
        to: vec!["c".into()],
        topic: "chat".into(),
        payload: "hi".into(),
    };
    r.message(1, ClientMessage::Data { message: chat }, t0, UNIX);
    let e = r.drain_effects();
    assert!(sent_to(&e, 2).is_empty());
    assert!(
        matches!(sent_to(&e, 3)[..], [ServerMessage::Data { message }] if message.from == "a" && &*message.payload == "hi")
    );
    // To everyone: one payload shared by every recipient's message, no copies.
    let notice = DataMessage {
        from: String::new(),
        to: Vec::new(),
        topic: "notice".into(),
        payload: "evacuate the east wing".into(),
    };
    let sent = notice.payload.clone();
    r.message(1, ClientMessage::Data { message: notice }, t0, UNIX);
    let e = r.drain_effects();
    for member in [2, 3] {
        assert!(
            matches!(sent_to(&e, member)[..], [ServerMessage::Data { message }] if std::sync::Arc::ptr_eq(&message.payload, &sent)),
            "{e:?}"
        );
    }

    r.message(
        1,
        ClientMessage::Mute {
            track: "a/microphone".into(),
            muted: true,
        },
        t0,
        UNIX,
    );
    r.message(
        2,
        ClientMessage::Mute {
            track: "a/microphone".into(),
            muted: false,
        },
        t0,
        UNIX,
    ); // not b's track
    let e = r.drain_effects();
    assert_eq!(sent_to(&e, 3).len(), 1);

    for i in 0..30 {
        r.audio_level(1, 20, t0 + Duration::from_millis(20 * i));
        r.audio_level(2, 127, t0 + Duration::from_millis(20 * i));
    }
    r.tick(t0 + Duration::from_millis(600));
    let e = r.drain_effects();
    assert!(
        matches!(sent_to(&e, 3)[..], [ServerMessage::ActiveSpeaker { speakers }] if speakers.len() == 1 && speakers[0].identity == "a")
    );
}

#[test]
fn grid_rooms_carry_the_composited_track() {
    let t0 = Instant::now();
    let mut r = rooms();
    r.open(1, None, t0);
    let join = join_message(token("grid-hall", "tv", Role::Viewer));
    r.message(1, join, t0, UNIX);
    let e = r.drain_effects();
    match &sent_to(&e, 1)[..] {
        [
            ServerMessage::Joined { tracks, .. },
            ServerMessage::Renegotiate { audio: 0, video: 1 },
        ] => {
            assert_eq!(tracks[0].id, GRID_TRACK);
            assert_eq!(tracks[0].source, TrackSource::Grid);
        }
        other => panic!("{other:?}"),
    }
    r.slots_added(1, vec![(TrackKind::Video, "0".into())]);
    assert_eq!(r.slot_track(1, 0), Some(GRID_TRACK));
    assert_eq!(r.publisher_of("grid-hall", GRID_TRACK), Some(GRID_SESSION));
    assert!(r.is_grid_room("grid-hall") && !r.is_grid_room("hall"));
}

#[test]
fn a_display_name_at_join_replaces_the_tokens() {
    let t0 = Instant::now();
    let mut r = rooms();
    join(&mut r, 1, "host", Role::Host, t0);
    r.drain_effects();
    r.open(2, None, t0);
    let join = ClientMessage::Join {
        protocol: PROTOCOL_VERSION,
        token: token("hall", "center-017", Role::Speaker),
        auto_subscribe: true,
        name: Some("노인복지관 17".into()),
    };
    r.message(2, join, t0, UNIX);
    let e = r.drain_effects();
    let joined = sent_to(&e, 1);
    assert!(
        matches!(joined[..], [ServerMessage::ParticipantJoined { participant }]
            if participant.identity == "center-017" && participant.name == "노인복지관 17"),
        "{joined:?}"
    );
    assert!(!valid_display_name(""));
    assert!(!valid_display_name("   "));
    assert!(!valid_display_name(&"가".repeat(65)));
    assert!(valid_display_name(&"가".repeat(64)));
}

#[test]
fn a_layout_is_kept_per_session_and_a_bad_one_is_refused() {
    use crate::signal::{MAX_TILE_SIDE, TileSize, ViewLayout};
    let t0 = Instant::now();
    let mut r = rooms();
    join(&mut r, 1, "center", Role::Speaker, t0);
    join(&mut r, 2, "office", Role::Speaker, t0);
    r.drain_effects();
    assert_eq!(r.layout(1), None, "no layout before the client sends one");
    let tile = |track: &str, width, height| TileSize {
        track: track.into(),
        width,
        height,
    };
    let view = ViewLayout {
        width: 1280,
        height: 720,
        tiles: vec![
            tile("office/camera", 256, 144),
            tile("office/screen", 640, 360),
        ],
    };
    assert_eq!(r.message(1, ClientMessage::Layout(view), t0, UNIX), None);
    let layout = r.layout(1).expect("kept");
    let sizes: Vec<(&str, u32, u32)> = layout
        .tiles
        .iter()
        .map(|t| (t.participant.as_str(), t.rect.w, t.rect.h))
        .collect();
    assert_eq!(
        sizes,
        [("office/camera", 256, 144), ("office/screen", 640, 360)]
    );
    assert_eq!(r.layout(2), None, "another session's is its own");
    assert!(r.drain_effects().is_empty());
    // A tile of no size, or larger than any screen: bad_message, and the session closes.
    for bad in [
        tile("office/camera", 0, 144),
        tile("x", MAX_TILE_SIDE + 1, 1),
    ] {
        let mut r = rooms();
        join(&mut r, 1, "center", Role::Speaker, t0);
        r.drain_effects();
        let view = ViewLayout {
            width: 1280,
            height: 720,
            tiles: vec![bad],
        };
        r.message(1, ClientMessage::Layout(view), t0, UNIX);
        let e = r.drain_effects();
        assert!(
            matches!(
                sent_to(&e, 1)[..],
                [
                    ServerMessage::Error {
                        code: ErrorCode::BadMessage,
                        ..
                    },
                    ..
                ]
            ),
            "{e:?}"
        );
        assert!(e.contains(&Effect::Close(1)), "{e:?}");
        assert_eq!(r.layout(1), None);
    }
    // Over the wire: flat JSON with the viewport and the tiles.
    let json = r#"{"type":"layout","width":1280,"height":720,"tiles":[{"track":"office/camera","width":256,"height":144}]}"#;
    let parsed: ClientMessage = serde_json::from_str(json).unwrap();
    assert_eq!(
        parsed,
        ClientMessage::Layout(ViewLayout {
            width: 1280,
            height: 720,
            tiles: vec![tile("office/camera", 256, 144)],
        })
    );
}

/// A `limit_reached` error among `effects` for `id`.
fn limited(effects: &[Effect], id: SessionId) -> usize {
    sent_to(effects, id)
        .iter()
        .filter(|m| {
            matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::LimitReached,
                    ..
                }
            )
        })
        .count()
}

fn limited_rooms(limits: crate::sfu::Limits) -> Rooms {
    Rooms::new(RoomsConfig {
        secret: SECRET.to_vec(),
        silence_timeout: Duration::from_secs(10),
        max_participants: 10,
        limits,
        grid_rooms: Vec::new(),
        broadcast_rooms: Vec::new(),
        resume_grace: Duration::from_secs(15),
        seed: Some(7),
        record: None,
    })
}

#[test]
fn a_session_past_its_rates_gets_limit_reached_and_the_room_goes_on() {
    let t0 = Instant::now();
    let limits = crate::sfu::Limits {
        signal_per_second: 10,
        data_per_second: 5,
        ..Default::default()
    };
    let mut r = limited_rooms(limits);
    join(&mut r, 1, "a", Role::Speaker, t0);
    join(&mut r, 2, "b", Role::Speaker, t0);
    r.drain_effects();
    // 30 pings at once: a burst of 20 (the join took one) passes, the rest are dropped,
    // each with an error; the session stays.
    for _ in 0..30 {
        r.message(1, ClientMessage::Ping, t0, UNIX);
    }
    let e = r.drain_effects();
    let pongs = sent_to(&e, 1)
        .iter()
        .filter(|m| matches!(m, ServerMessage::Pong))
        .count();
    assert_eq!((pongs, limited(&e, 1)), (19, 11));
    assert!(!e.contains(&Effect::Close(1)));
    // Data at 20 a second for a second, well past 5 a second: b gets the burst and the rate.
    let t1 = t0 + Duration::from_secs(5);
    for i in 0..20 {
        let chat = DataMessage {
            from: String::new(),
            to: Vec::new(),
            topic: "chat".into(),
            payload: format!("{i}").into(),
        };
        let at = t1 + Duration::from_millis(50 * i);
        r.message(1, ClientMessage::Data { message: chat }, at, UNIX);
    }
    let e = r.drain_effects();
    let relayed = sent_to(&e, 2).len();
    assert!((14..=16).contains(&relayed), "{relayed} relayed");
    assert_eq!(limited(&e, 1), 20 - relayed);
    // b, within its rates, is untouched; a goes on once it slows down.
    r.message(2, ClientMessage::Ping, t1, UNIX);
    r.message(1, ClientMessage::Ping, t1 + Duration::from_secs(3), UNIX);
    let e = r.drain_effects();
    assert_eq!(sent_to(&e, 2), [&ServerMessage::Pong]);
    assert_eq!(sent_to(&e, 1), [&ServerMessage::Pong]);
}

#[test]
fn a_session_flooding_past_limit_reached_is_closed_and_the_room_goes_on() {
    let t0 = Instant::now();
    let mut r = limited_rooms(crate::sfu::Limits::default());
    join(&mut r, 1, "a", Role::Speaker, t0);
    join(&mut r, 2, "b", Role::Speaker, t0);
    r.drain_effects();
    // 1,000 pings a second for a second: closed within it, with `flooding`.
    let mut closed_at = None;
    for i in 0..1000u64 {
        let at = t0 + Duration::from_millis(i);
        r.message(1, ClientMessage::Ping, at, UNIX);
        let e = r.drain_effects();
        if e.contains(&Effect::Close(1)) {
            closed_at = Some(i);
            assert!(
                sent_to(&e, 1).iter().any(|m| matches!(
                    m,
                    ServerMessage::Error {
                        code: ErrorCode::Flooding,
                        ..
                    }
                )),
                "{e:?}"
            );
            break;
        }
    }
    let closed_at = closed_at.expect("the flood was not closed");
    assert!(closed_at < 1000, "closed after {closed_at} ms");
    assert!(r.member(1).is_none());
    // b is still in the room and answered.
    r.message(2, ClientMessage::Ping, t0 + Duration::from_secs(2), UNIX);
    let e = r.drain_effects();
    assert_eq!(sent_to(&e, 2), [&ServerMessage::Pong]);
    assert!(r.member(2).is_some());
}

#[test]
fn rooms_and_subscriptions_are_bounded() {
    let t0 = Instant::now();
    let limits = crate::sfu::Limits {
        rooms: 1,
        subscriptions: 1,
        ..Default::default()
    };
    let mut r = limited_rooms(limits);
    join(&mut r, 1, "a", Role::Speaker, t0);
    // A second room is one too many: refused, the session stays open (it may try again).
    r.open(2, None, t0);
    r.message(
        2,
        join_message(token("annex", "b", Role::Speaker)),
        t0,
        UNIX,
    );
    let e = r.drain_effects();
    assert_eq!(limited(&e, 2), 1);
    assert!(!e.contains(&Effect::Close(2)));
    assert!(r.member(2).is_none());
    // The first room takes more members.
    join(&mut r, 3, "c", Role::Speaker, t0);
    assert!(r.member(3).is_some());
    r.drain_effects();
    // c's camera and microphone: a, with one subscription at most, gets one slot.
    r.published(3, &camera_and_mic());
    let e = r.drain_effects();
    assert!(
        sent_to(&e, 1).iter().any(
            |m| matches!(m, ServerMessage::Renegotiate { audio, video } if audio + video == 1)
        ),
        "{e:?}"
    );
    // Asking for both explicitly says so.
    r.message(
        1,
        ClientMessage::Subscribe {
            tracks: vec!["c/camera".into(), "c/microphone".into()],
        },
        t0,
        UNIX,
    );
    assert_eq!(limited(&r.drain_effects(), 1), 1);
}

/// Talk-back tests: a class room of host 1, viewers 2–4 and speaker 5.
fn class() -> Rooms {
    let t0 = Instant::now();
    let mut r = limited_rooms(crate::sfu::Limits::default());
    join(&mut r, 1, "cityhall", Role::Host, t0);
    for (id, who) in [(2, "center-a"), (3, "center-b"), (4, "center-c")] {
        join(&mut r, id, who, Role::Viewer, t0);
    }
    join(&mut r, 5, "district", Role::Speaker, t0);
    r.drain_effects();
    r
}

fn say(r: &mut Rooms, id: SessionId, message: ClientMessage) -> Vec<Effect> {
    r.message(id, message, Instant::now(), UNIX);
    r.drain_effects()
}

/// The last `hands` queue sent to `id` among `effects`.
fn hands_to(effects: &[Effect], id: SessionId) -> Option<Vec<String>> {
    sent_to(effects, id).iter().rev().find_map(|m| match m {
        ServerMessage::Hands { queue } => Some(queue.clone()),
        _ => None,
    })
}

/// The error codes sent to `id` among `effects`.
fn errors_to(effects: &[Effect], id: SessionId) -> Vec<ErrorCode> {
    sent_to(effects, id)
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

fn role_of(r: &Rooms, id: SessionId) -> Option<Role> {
    Some(r.sessions.get(&id)?.member.as_ref()?.info.role)
}

#[test]
fn hands_queue_in_order_and_clear_on_promotion_lowering_and_leave() {
    let mut r = class();
    let raise = ClientMessage::Hand { raised: true };
    // b, a, c raise in that order; the host sees the queue grow, viewers see nothing.
    say(&mut r, 3, raise.clone());
    say(&mut r, 2, raise.clone());
    let e = say(&mut r, 4, raise.clone());
    let queue = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(
        hands_to(&e, 1),
        queue(&["center-b", "center-a", "center-c"])
    );
    assert_eq!(hands_to(&e, 2), None);
    // Raising twice changes nothing; a speaker cannot raise a hand.
    assert!(say(&mut r, 2, raise.clone()).is_empty());
    let e = say(&mut r, 5, raise.clone());
    assert_eq!(errors_to(&e, 5), [ErrorCode::PermissionDenied]);
    assert_eq!(hands_to(&e, 1), None);

    // The host lets the second in: it is told its hand is down, everyone sees the new role,
    // the host sees the queue without it, and its offer to publish is taken.
    let e = say(
        &mut r,
        1,
        ClientMessage::Promote {
            identity: "center-a".into(),
        },
    );
    assert!(sent_to(&e, 2).contains(&&ServerMessage::HandLowered));
    for id in 1..=5 {
        assert!(
            sent_to(&e, id).contains(&&ServerMessage::RoleChanged {
                identity: "center-a".into(),
                role: Role::Speaker
            }),
            "{id}: {e:?}"
        );
    }
    assert_eq!(hands_to(&e, 1), queue(&["center-b", "center-c"]));
    assert_eq!(role_of(&r, 2), Some(Role::Speaker));
    let offer = ClientMessage::Offer {
        pc: PeerRole::Publisher,
        sdp: "v=0".into(),
        publish: camera_and_mic(),
    };
    assert!(r.message(2, offer, Instant::now(), UNIX).is_some());

    // Sent back: c is told, the queue shrinks.
    let e = say(
        &mut r,
        1,
        ClientMessage::LowerHand {
            identity: "center-c".into(),
        },
    );
    assert!(sent_to(&e, 4).contains(&&ServerMessage::HandLowered));
    assert_eq!(hands_to(&e, 1), queue(&["center-b"]));
    // b leaves: the queue is empty.
    let e = say(&mut r, 3, ClientMessage::Leave);
    assert_eq!(hands_to(&e, 1), queue(&[]));
    // A host who joins later is given the queue at once.
    say(&mut r, 4, raise);
    join(&mut r, 6, "mayor", Role::Host, Instant::now());
    assert_eq!(hands_to(&r.drain_effects(), 6), queue(&["center-c"]));
}

#[test]
fn only_hosts_promote_demote_mute_and_remove_and_nothing_changes_otherwise() {
    let mut r = class();
    let commands = |who: &str| {
        let identity = who.to_string();
        vec![
            ClientMessage::LowerHand {
                identity: identity.clone(),
            },
            ClientMessage::Promote {
                identity: identity.clone(),
            },
            ClientMessage::Demote {
                identity: identity.clone(),
            },
            ClientMessage::MuteParticipant {
                identity: identity.clone(),
            },
            ClientMessage::Remove { identity },
        ]
    };
    // A viewer and a speaker try each command, on each other and on the host.
    for (from, target) in [
        (2, "district"),
        (5, "center-a"),
        (5, "cityhall"),
        (2, "center-a"),
    ] {
        for command in commands(target) {
            let e = say(&mut r, from, command.clone());
            assert_eq!(
                errors_to(&e, from),
                [ErrorCode::PermissionDenied],
                "{command:?}"
            );
            assert_eq!(e.len(), 1, "{from} {command:?} changed something: {e:?}");
        }
    }
    assert_eq!(role_of(&r, 2), Some(Role::Viewer));
    assert_eq!(role_of(&r, 5), Some(Role::Speaker));
    // The host names someone not there: told so, its session stays.
    for command in commands("nobody") {
        let e = say(&mut r, 1, command);
        assert_eq!(errors_to(&e, 1), [ErrorCode::UnknownParticipant]);
        assert!(!e.contains(&Effect::Close(1)));
    }
    // Hosts cannot demote or remove hosts.
    join(&mut r, 6, "mayor", Role::Host, Instant::now());
    r.drain_effects();
    for command in [
        ClientMessage::Demote {
            identity: "mayor".into(),
        },
        ClientMessage::Remove {
            identity: "mayor".into(),
        },
    ] {
        let e = say(&mut r, 1, command);
        assert_eq!(errors_to(&e, 1), [ErrorCode::PermissionDenied]);
        assert_eq!(role_of(&r, 6), Some(Role::Host));
    }
    // A viewer promoting itself, via a forged message, is still a viewer.
    say(
        &mut r,
        3,
        ClientMessage::Promote {
            identity: "center-b".into(),
        },
    );
    assert_eq!(role_of(&r, 3), Some(Role::Viewer));
}

#[test]
fn demoted_tracks_end_for_everyone_a_muted_microphone_is_not_forwarded_and_removal_closes() {
    let mut r = class();
    // The district publishes camera and microphone; center-a receives both.
    r.published(5, &camera_and_mic());
    r.slots_added(
        2,
        vec![
            (TrackKind::Audio, "0".into()),
            (TrackKind::Video, "1".into()),
        ],
    );
    r.drain_effects();
    assert_eq!(r.carriers("hall", "district/microphone"), &[(2, 0)]);

    // Muted by the host: everyone sees it, the district included; not forwarded.
    let mute = ClientMessage::MuteParticipant {
        identity: "district".into(),
    };
    let e = say(&mut r, 1, mute);
    let muted = ServerMessage::TrackMuted {
        track: "district/microphone".into(),
        muted: true,
    };
    for id in 1..=5 {
        assert!(sent_to(&e, id).contains(&&muted), "{id}: {e:?}");
    }
    assert!(r.carriers("hall", "district/microphone").is_empty());
    assert_eq!(r.carriers("hall", "district/camera"), &[(2, 1)]);
    // Its level no longer makes it a speaker.
    let now = Instant::now();
    for i in 0..20 {
        r.audio_level(5, 10, now + Duration::from_millis(20 * i));
    }
    assert!(
        r.speakers("hall", now + Duration::from_millis(400))
            .is_empty()
    );
    // It unmutes itself: forwarded again.
    let unmute = ClientMessage::Mute {
        track: "district/microphone".into(),
        muted: false,
    };
    say(&mut r, 5, unmute);
    assert_eq!(r.carriers("hall", "district/microphone"), &[(2, 0)]);
    let later = now + Duration::from_secs(5);
    for i in 0..20 {
        r.audio_level(5, 10, later + Duration::from_millis(20 * i));
    }
    assert_eq!(
        r.speakers("hall", later + Duration::from_millis(400))
            .iter()
            .map(|s| s.identity.as_str())
            .collect::<Vec<_>>(),
        ["district"],
        "heard again"
    );

    // Demoted: a viewer again, its tracks end for everyone, and it may not publish.
    let e = say(
        &mut r,
        1,
        ClientMessage::Demote {
            identity: "district".into(),
        },
    );
    for id in [1, 2, 3, 4] {
        let got = sent_to(&e, id);
        for track in ["district/camera", "district/microphone"] {
            let ended = ServerMessage::TrackUnpublished {
                track: track.into(),
            };
            assert!(got.contains(&&ended), "{id}: {e:?}");
        }
    }
    assert_eq!(role_of(&r, 5), Some(Role::Viewer));
    assert!(e.contains(&Effect::EndPublishing(5)));
    assert!(r.track("hall", "district/camera").is_none());
    let offer = ClientMessage::Offer {
        pc: PeerRole::Publisher,
        sdp: "v=0".into(),
        publish: camera_and_mic(),
    };
    assert_eq!(r.message(5, offer, Instant::now(), UNIX), None);
    assert_eq!(
        errors_to(&r.drain_effects(), 5),
        [ErrorCode::PermissionDenied]
    );

    // Removed: closed with `removed`, the room sees why.
    let e = say(
        &mut r,
        1,
        ClientMessage::Remove {
            identity: "center-b".into(),
        },
    );
    assert_eq!(errors_to(&e, 3), [ErrorCode::Removed]);
    assert!(e.contains(&Effect::Close(3)));
    assert!(sent_to(&e, 2).contains(&&ServerMessage::ParticipantLeft {
        identity: "center-b".into(),
        reason: LeaveReason::Removed
    }));
    assert!(r.member(3).is_none());
}

/// Joins `who` with `role` to the broadcast room `class` (a `rooms()` broadcast room).
fn join_class(r: &mut Rooms, now: Instant, id: SessionId, who: &str, role: Role) {
    r.open(id, None, now);
    r.message(id, join_message(token("class", who, role)), now, UNIX);
}

#[test]
fn in_a_broadcast_room_speakers_join_as_viewers_until_a_host_lets_them_in() {
    let t0 = Instant::now();
    let mut r = rooms();
    join_class(&mut r, t0, 1, "cityhall", Role::Host);
    join_class(&mut r, t0, 2, "center-a", Role::Speaker);
    let e = r.drain_effects();
    let joined_as = |e: &[Effect], id| {
        sent_to(e, id).iter().find_map(|m| match m {
            ServerMessage::Joined { participant, .. } => Some(participant.role),
            _ => None,
        })
    };
    assert_eq!(joined_as(&e, 1), Some(Role::Host));
    assert_eq!(joined_as(&e, 2), Some(Role::Viewer));
    let offer = ClientMessage::Offer {
        pc: PeerRole::Publisher,
        sdp: "v=0".into(),
        publish: camera_and_mic(),
    };
    assert_eq!(r.message(2, offer.clone(), t0, UNIX), None);
    assert_eq!(
        errors_to(&r.drain_effects(), 2),
        [ErrorCode::PermissionDenied]
    );
    // Let in, it publishes.
    r.message(
        1,
        ClientMessage::Promote {
            identity: "center-a".into(),
        },
        t0,
        UNIX,
    );
    assert!(r.message(2, offer, t0, UNIX).is_some());
    // Elsewhere a speaker is a speaker.
    join(&mut r, 3, "district", Role::Speaker, t0);
    assert_eq!(joined_as(&r.drain_effects(), 3), Some(Role::Speaker));
}

#[test]
fn broadcast_viewers_keep_an_idle_slot_so_a_center_let_in_needs_no_new_offer() {
    let t0 = Instant::now();
    let mut r = rooms();
    join_class(&mut r, t0, 1, "cityhall", Role::Host);
    r.published(1, &camera_and_mic());
    join_class(&mut r, t0, 2, "center-a", Role::Viewer);
    join_class(&mut r, t0, 3, "center-b", Role::Viewer);
    let e = r.drain_effects();
    // Two tracks wanted, one more slot of each kind asked for.
    assert!(
        sent_to(&e, 2).contains(&&ServerMessage::Renegotiate { audio: 2, video: 2 }),
        "{e:?}"
    );
    let slots = |n| {
        (0..n)
            .map(|i| {
                let kind = if i % 2 == 0 {
                    TrackKind::Audio
                } else {
                    TrackKind::Video
                };
                (kind, i.to_string())
            })
            .collect::<Vec<_>>()
    };
    r.slots_added(2, slots(4));
    r.drain_effects();
    // center-b is let in and publishes: center-a gets it on its idle slots, no offer.
    r.message(
        1,
        ClientMessage::Promote {
            identity: "center-b".into(),
        },
        t0,
        UNIX,
    );
    r.published(3, &camera_and_mic());
    let e = r.drain_effects();
    let to_a = sent_to(&e, 2);
    assert!(
        !to_a
            .iter()
            .any(|m| matches!(m, ServerMessage::Renegotiate { .. })),
        "{to_a:?}"
    );
    assert!(r.carriers("class", "center-b/camera").contains(&(2, 3)));
    assert!(r.carriers("class", "center-b/microphone").contains(&(2, 2)));
}

/// The resume key `joined` gave session `id`.
fn resume_key(effects: &[Effect], id: SessionId) -> String {
    sent_to(effects, id)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::Joined { resume, .. } => resume.clone(),
            _ => None,
        })
        .expect("a resume key")
}

#[test]
fn a_session_whose_websocket_drops_is_resumed_with_its_key_and_told_what_it_missed() {
    let t0 = Instant::now();
    let mut r = rooms();
    join(&mut r, 1, "a", Role::Speaker, t0);
    let key = resume_key(&r.drain_effects(), 1);
    r.slots_added(1, vec![(TrackKind::Video, "0".into())]);
    r.drain_effects();
    // a's WebSocket drops: a stays in the room, nobody is told.
    r.signal_closed(1, LeaveReason::ConnectionLost, t0);
    assert!(r.is_detached(1) && r.member(1).is_some());
    assert!(r.drain_effects().is_empty());
    // Meanwhile b joins and publishes: a's one video slot is given to b's camera.
    join(&mut r, 2, "b", Role::Speaker, t0);
    r.published(2, &camera_and_mic()[..1]);
    r.drain_effects();
    // A wrong key is refused for good.
    r.open(3, None, t0);
    let wrong = ClientMessage::Resume {
        protocol: PROTOCOL_VERSION,
        resume: "nope".into(),
    };
    assert_eq!(r.message(3, wrong, t0, UNIX), None);
    let e = r.drain_effects();
    assert!(matches!(
        sent_to(&e, 3)[..],
        [ServerMessage::Error {
            code: ErrorCode::SessionGone,
            ..
        }]
    ));
    assert!(e.contains(&Effect::Close(3)));
    // The right key: session 1 goes on over session 4's WebSocket.
    let t1 = t0 + Duration::from_millis(500);
    r.open(4, None, t1);
    let resume = ClientMessage::Resume {
        protocol: PROTOCOL_VERSION,
        resume: key,
    };
    assert_eq!(r.message(4, resume, t1, UNIX), None);
    let e = r.drain_effects();
    assert!(e.contains(&Effect::Resume { session: 1, via: 4 }));
    let to_a = sent_to(&e, 1);
    assert!(
        matches!(to_a.first(), Some(ServerMessage::Resumed { participants, tracks, .. })
            if participants.len() == 1 && tracks.len() == 1),
        "{to_a:?}"
    );
    assert!(
        to_a.iter()
            .any(|m| matches!(m, ServerMessage::Slots { slots }
        if slots[0].track.as_deref() == Some("b/camera")))
    );
    assert!(!r.is_detached(1) && !r.contains(4));
    // Nobody saw a leave.
    assert!(
        !e.iter()
            .any(|e| matches!(e, Effect::Send(_, ServerMessage::ParticipantLeft { .. })))
    );
}

#[test]
fn a_detached_session_leaves_once_its_media_is_silent_or_the_grace_is_over() {
    let t0 = Instant::now();
    let mut r = rooms();
    join(&mut r, 1, "quiet", Role::Speaker, t0);
    join(&mut r, 2, "talking", Role::Speaker, t0);
    r.drain_effects();
    r.signal_closed(1, LeaveReason::ConnectionLost, t0);
    r.signal_closed(2, LeaveReason::ConnectionLost, t0);
    // "talking" keeps sending media; "quiet" sends nothing (its process died).
    let mut left = Vec::new();
    for ms in (100..=16_000).step_by(100) {
        let now = t0 + Duration::from_millis(ms);
        r.heard(2, now);
        r.tick(now);
        for e in r.drain_effects() {
            if let Effect::Close(id) = e {
                left.push((id, ms));
            }
        }
    }
    // Silent: gone a second after its last packet; talking: kept for the 15 s grace.
    assert_eq!(left, vec![(1, 1100), (2, 15_100)], "{left:?}");
}

/// The recording switches among `effects`: `(room, on)`.
fn record_effects(effects: &[Effect]) -> Vec<(String, bool)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Record { room, on } => Some((room.clone(), *on)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_room_recorded_from_its_start_tells_everyone_who_joins_and_stops_with_its_last() {
    let t0 = Instant::now();
    let mut r = rooms();
    for (id, who) in [(1, "cityhall"), (2, "jongno")] {
        r.open(id, None, t0);
        let join = join_message(token("archive", who, Role::Speaker));
        r.message(id, join, t0, UNIX);
    }
    let e = r.drain_effects();
    assert_eq!(record_effects(&e), [("archive".to_owned(), true)]);
    assert!(r.is_recording("archive"));
    for id in [1, 2] {
        assert!(
            matches!(
                sent_to(&e, id)[..],
                [
                    ServerMessage::Joined { .. },
                    ServerMessage::RecordingStarted { by: None },
                    ..
                ]
            ),
            "session {id}: {:?}",
            sent_to(&e, id)
        );
    }
    // A room the configuration does not name is not recorded.
    join(&mut r, 3, "gangnam", Role::Speaker, t0);
    let e = r.drain_effects();
    assert!(record_effects(&e).is_empty());
    assert!(
        !sent_to(&e, 3)
            .iter()
            .any(|m| matches!(m, ServerMessage::RecordingStarted { .. }))
    );

    say(&mut r, 1, ClientMessage::Leave);
    let e = say(&mut r, 2, ClientMessage::Leave);
    assert_eq!(record_effects(&e), [("archive".to_owned(), false)]);
    assert!(!r.is_recording("archive"));
}

#[test]
fn hosts_start_and_stop_recording_and_nobody_else_does() {
    let t0 = Instant::now();
    let mut r = rooms();
    join(&mut r, 1, "cityhall", Role::Host, t0);
    join(&mut r, 2, "jongno", Role::Speaker, t0);
    r.drain_effects();

    let e = say(&mut r, 2, ClientMessage::Record { on: true });
    assert_eq!(errors_to(&e, 2), [ErrorCode::PermissionDenied]);
    assert!(record_effects(&e).is_empty());

    let e = say(&mut r, 1, ClientMessage::Record { on: true });
    assert_eq!(record_effects(&e), [("hall".to_owned(), true)]);
    for id in [1, 2] {
        assert_eq!(
            sent_to(&e, id),
            [&ServerMessage::RecordingStarted {
                by: Some("cityhall".into())
            }]
        );
    }
    // Asked again: nothing changes, nobody is told twice.
    assert!(say(&mut r, 1, ClientMessage::Record { on: true }).is_empty());

    // A participant joining while it runs hears of it.
    join(&mut r, 3, "gangnam", Role::Viewer, t0);
    let e = r.drain_effects();
    assert!(sent_to(&e, 3).contains(&&ServerMessage::RecordingStarted { by: None }));

    let e = say(&mut r, 1, ClientMessage::Record { on: false });
    assert_eq!(record_effects(&e), [("hall".to_owned(), false)]);
    for id in [1, 2, 3] {
        assert_eq!(
            sent_to(&e, id),
            [&ServerMessage::RecordingStopped {
                by: Some("cityhall".into())
            }]
        );
    }
}

#[test]
fn a_server_without_a_recording_directory_refuses_to_record() {
    let mut r = class();
    let e = say(&mut r, 1, ClientMessage::Record { on: true });
    assert_eq!(errors_to(&e, 1), [ErrorCode::PermissionDenied]);
    assert!(record_effects(&e).is_empty());
    // Refused, not closed: the host goes on.
    assert!(!e.contains(&Effect::Close(1)));
}
