use super::*;

fn all_client_messages() -> Vec<ClientMessage> {
    vec![
        ClientMessage::Join {
            protocol: PROTOCOL_VERSION,
            token: "t".into(),
            auto_subscribe: false,
            name: None,
        },
        ClientMessage::Offer {
            pc: PeerRole::Publisher,
            sdp: "v=0\r\n".into(),
            publish: vec![PublishTrack {
                mid: "0".into(),
                kind: TrackKind::Video,
                source: TrackSource::Camera,
            }],
        },
        ClientMessage::Offer {
            pc: PeerRole::Subscriber,
            sdp: "v=0\r\n".into(),
            publish: vec![],
        },
        ClientMessage::Candidate {
            pc: PeerRole::Subscriber,
            candidate: IceCandidate {
                candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
            },
        },
        ClientMessage::Subscribe {
            tracks: vec!["a/camera".into()],
        },
        ClientMessage::Unsubscribe { tracks: vec![] },
        ClientMessage::Unpublish {
            tracks: vec!["a/screen".into()],
        },
        ClientMessage::Mute {
            track: "a/microphone".into(),
            muted: true,
        },
        ClientMessage::Data {
            message: DataMessage {
                from: String::new(),
                to: vec!["b".into()],
                topic: "chat".into(),
                payload: "안녕하세요".into(),
            },
        },
        ClientMessage::Layout(ViewLayout {
            width: 1280,
            height: 720,
            tiles: vec![TileSize {
                track: "a/camera".into(),
                width: 256,
                height: 144,
            }],
        }),
        ClientMessage::Hand { raised: true },
        ClientMessage::LowerHand {
            identity: "center-017".into(),
        },
        ClientMessage::Promote {
            identity: "center-017".into(),
        },
        ClientMessage::Demote {
            identity: "center-017".into(),
        },
        ClientMessage::MuteParticipant {
            identity: "center-017".into(),
        },
        ClientMessage::Remove {
            identity: "center-017".into(),
        },
        ClientMessage::Resume {
            protocol: PROTOCOL_VERSION,
            resume: "k3y".into(),
        },
        ClientMessage::Record { on: true },
        ClientMessage::Ping,
        ClientMessage::Leave,
    ]
}

/// Which variant `m` is, numbered: the match is exhaustive, so a new variant does not
/// compile until it is numbered here (and [`CLIENT_VARIANTS`] counts it).
fn client_variant(m: &ClientMessage) -> usize {
    match m {
        ClientMessage::Join { .. } => 0,
        ClientMessage::Offer { .. } => 1,
        ClientMessage::Candidate { .. } => 2,
        ClientMessage::Subscribe { .. } => 3,
        ClientMessage::Unsubscribe { .. } => 4,
        ClientMessage::Unpublish { .. } => 5,
        ClientMessage::Mute { .. } => 6,
        ClientMessage::Data { .. } => 7,
        ClientMessage::Layout(_) => 8,
        ClientMessage::Ping => 9,
        ClientMessage::Leave => 10,
        ClientMessage::Hand { .. } => 11,
        ClientMessage::LowerHand { .. } => 12,
        ClientMessage::Promote { .. } => 13,
        ClientMessage::Demote { .. } => 14,
        ClientMessage::MuteParticipant { .. } => 15,
        ClientMessage::Remove { .. } => 16,
        ClientMessage::Resume { .. } => 17,
        ClientMessage::Record { .. } => 18,
    }
}
const CLIENT_VARIANTS: usize = 19;

/// As [`client_variant`], for the server's messages.
fn server_variant(m: &ServerMessage) -> usize {
    match m {
        ServerMessage::Joined { .. } => 0,
        ServerMessage::ParticipantJoined { .. } => 1,
        ServerMessage::ParticipantLeft { .. } => 2,
        ServerMessage::TrackPublished { .. } => 3,
        ServerMessage::TrackUnpublished { .. } => 4,
        ServerMessage::TrackMuted { .. } => 5,
        ServerMessage::VideoPaused { .. } => 6,
        ServerMessage::Answer { .. } => 7,
        ServerMessage::Slots { .. } => 8,
        ServerMessage::Renegotiate { .. } => 9,
        ServerMessage::Candidate { .. } => 10,
        ServerMessage::ActiveSpeaker { .. } => 11,
        ServerMessage::Data { .. } => 12,
        ServerMessage::Pong => 13,
        ServerMessage::Error { .. } => 14,
        ServerMessage::Hands { .. } => 15,
        ServerMessage::HandLowered => 16,
        ServerMessage::RoleChanged { .. } => 17,
        ServerMessage::Resumed { .. } => 18,
        ServerMessage::RecordingStarted { .. } => 19,
        ServerMessage::RecordingStopped { .. } => 20,
    }
}
const SERVER_VARIANTS: usize = 21;

/// The `type` tag `m` goes over the wire with.
fn tag(text: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    v["type"].as_str().unwrap().to_owned()
}

/// The message types a table of `docs/protocol.md` lists: the backquoted names in the first
/// column of the table after the line `heading`.
fn documented(doc: &str, heading: &str) -> std::collections::BTreeSet<String> {
    let lines = doc.lines().skip_while(|l| l.trim() != heading).skip(1);
    lines
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and its rule
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_message_type_is_in_docs_protocol_md_and_nothing_else_is() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
        .unwrap();
    let clients = all_client_messages();
    let servers = all_server_messages();
    let mut seen: Vec<usize> = clients.iter().map(client_variant).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen,
        (0..CLIENT_VARIANTS).collect::<Vec<_>>(),
        "a sample of each"
    );
    let mut seen: Vec<usize> = servers.iter().map(server_variant).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen,
        (0..SERVER_VARIANTS).collect::<Vec<_>>(),
        "a sample of each"
    );
    let client_tags: std::collections::BTreeSet<String> =
        clients.iter().map(|m| tag(&encode(m))).collect();
    let server_tags: std::collections::BTreeSet<String> =
        servers.iter().map(|m| tag(&encode(m))).collect();
    assert_eq!(documented(&doc, "Client → server:"), client_tags);
    assert_eq!(documented(&doc, "Server → client:"), server_tags);
}

#[test]
fn client_messages_round_trip() {
    for m in all_client_messages() {
        let text = encode(&m);
        assert_eq!(decode_client(&text).unwrap(), m, "{text}");
    }
}

fn all_server_messages() -> Vec<ServerMessage> {
    let p = ParticipantInfo {
        identity: "gangnam".into(),
        name: "Gangnam-gu office".into(),
        role: Role::Speaker,
    };
    let t = TrackInfo {
        id: "gangnam/camera".into(),
        participant: "gangnam".into(),
        kind: TrackKind::Video,
        source: TrackSource::Camera,
        muted: false,
    };
    vec![
        ServerMessage::Joined {
            protocol: PROTOCOL_VERSION,
            room: "disaster".into(),
            participant: p.clone(),
            participants: vec![p.clone()],
            tracks: vec![t.clone()],
            resume: Some("k3y".into()),
        },
        ServerMessage::Resumed {
            participant: p.clone(),
            participants: vec![p.clone()],
            tracks: vec![t.clone()],
        },
        ServerMessage::ParticipantJoined { participant: p },
        ServerMessage::RecordingStarted {
            by: Some("cityhall".into()),
        },
        ServerMessage::RecordingStopped { by: None },
        ServerMessage::ParticipantLeft {
            identity: "x".into(),
            reason: LeaveReason::Timeout,
        },
        ServerMessage::TrackPublished { track: t },
        ServerMessage::TrackUnpublished {
            track: "x/camera".into(),
        },
        ServerMessage::TrackMuted {
            track: "x/camera".into(),
            muted: true,
        },
        ServerMessage::VideoPaused {
            track: "x/camera".into(),
            paused: true,
        },
        ServerMessage::Answer {
            pc: PeerRole::Publisher,
            sdp: "v=0\r\n".into(),
            refused: vec![RefusedTrack {
                mid: "0".into(),
                reason: "offered VP8".into(),
            }],
        },
        ServerMessage::Slots {
            slots: vec![
                TrackSlot {
                    mid: "2".into(),
                    track: Some("x/camera".into()),
                },
                TrackSlot {
                    mid: "3".into(),
                    track: None,
                },
            ],
        },
        ServerMessage::Renegotiate { audio: 3, video: 3 },
        ServerMessage::ActiveSpeaker {
            speakers: vec![Speaker {
                identity: "x".into(),
                level: 0.5,
            }],
        },
        ServerMessage::Candidate {
            pc: PeerRole::Subscriber,
            candidate: IceCandidate {
                candidate: "candidate:1 1 udp 2130706431 127.0.0.1 7880 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
            },
        },
        ServerMessage::Data {
            message: DataMessage {
                from: "x".into(),
                to: vec![],
                topic: "chat".into(),
                payload: "hi".into(),
            },
        },
        ServerMessage::Hands {
            queue: vec!["center-017".into(), "center-212".into()],
        },
        ServerMessage::HandLowered,
        ServerMessage::RoleChanged {
            identity: "center-017".into(),
            role: Role::Speaker,
        },
        ServerMessage::Pong,
        ServerMessage::Error {
            code: ErrorCode::TokenExpired,
            reason: "expired 3 s ago".into(),
        },
    ]
}

#[test]
fn server_messages_round_trip() {
    for m in all_server_messages() {
        let text = encode(&m);
        assert_eq!(decode_server(&text).unwrap(), m, "{text}");
    }
}

#[test]
fn wire_format_is_stable() {
    // These strings are the protocol: changing them breaks deployed clients.
    assert_eq!(
        encode(&ClientMessage::Join {
            protocol: 1,
            token: "abc".into(),
            auto_subscribe: true,
            name: None
        }),
        r#"{"type":"join","protocol":1,"token":"abc","auto_subscribe":true}"#
    );
    assert_eq!(
        encode(&ServerMessage::Error {
            code: ErrorCode::PermissionDenied,
            reason: "viewers cannot publish".into()
        }),
        r#"{"type":"error","code":"permission_denied","reason":"viewers cannot publish"}"#
    );
    assert_eq!(
        encode(&IceCandidate {
            candidate: "c".into(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0)
        }),
        r#"{"candidate":"c","sdpMid":"0","sdpMLineIndex":0}"#
    );
    // A join without auto_subscribe subscribes to everything.
    assert_eq!(
        decode_client(r#"{"type":"join","protocol":1,"token":"abc"}"#).unwrap(),
        ClientMessage::Join {
            protocol: 1,
            token: "abc".into(),
            auto_subscribe: true,
            name: None
        }
    );
}

#[test]
fn error_codes_have_stable_strings() {
    for code in [
        ErrorCode::BadMessage,
        ErrorCode::MessageTooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::InvalidToken,
        ErrorCode::TokenExpired,
        ErrorCode::WrongRoom,
        ErrorCode::PermissionDenied,
        ErrorCode::NegotiationFailed,
        ErrorCode::RoomFull,
        ErrorCode::Timeout,
        ErrorCode::TooSlow,
        ErrorCode::LimitReached,
        ErrorCode::Flooding,
        ErrorCode::Removed,
        ErrorCode::UnknownParticipant,
        ErrorCode::Internal,
    ] {
        assert_eq!(encode(&code), format!("\"{}\"", code.as_str()));
    }
    for kind in [TrackKind::Audio, TrackKind::Video] {
        assert_eq!(encode(&kind), format!("\"{}\"", kind.as_str()));
    }
    for source in [
        TrackSource::Camera,
        TrackSource::Microphone,
        TrackSource::Screen,
        TrackSource::Grid,
    ] {
        assert_eq!(encode(&source), format!("\"{}\"", source.as_str()));
        assert_eq!(source.track_id("mapo"), format!("mapo/{}", source.as_str()));
    }
    for reason in [
        LeaveReason::Left,
        LeaveReason::ConnectionLost,
        LeaveReason::Timeout,
        LeaveReason::Replaced,
        LeaveReason::Error,
        LeaveReason::ServerShutdown,
        LeaveReason::Removed,
    ] {
        assert_eq!(encode(&reason), format!("\"{}\"", reason.as_str()));
    }
}

#[test]
fn malformed_and_oversized_messages_are_typed_errors() {
    for bad in [
        "",
        "not json",
        "[]",
        r#"{"type":"teleport"}"#,
        r#"{"type":"join"}"#,
        r#"{"type":"join","protocol":"one","token":"x"}"#,
        r#"{"type":"mute","track":"a"}"#,
        "{\"type\":\"leave\"",
    ] {
        let err = decode_client(bad).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadMessage, "{bad:?}");
    }
    let huge = format!(
        r#"{{"type":"offer","sdp":"{}"}}"#,
        "a".repeat(MAX_MESSAGE_BYTES)
    );
    let err = decode_client(&huge).unwrap_err();
    assert_eq!(err.code(), ErrorCode::MessageTooLarge);
}

#[test]
fn roles() {
    assert!(Role::Host.can_publish() && Role::Speaker.can_publish());
    assert!(!Role::Viewer.can_publish());
    for r in [Role::Host, Role::Speaker, Role::Viewer] {
        assert_eq!(r.to_string().parse::<Role>(), Ok(r));
    }
    assert!("admin".parse::<Role>().is_err());
}
