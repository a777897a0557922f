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
        ClientMessage::Ping,
        ClientMessage::Leave,
    ]
}

#[test]
fn client_messages_round_trip() {
    for m in all_client_messages() {
        let text = encode(&m);
        assert_eq!(decode_client(&text).unwrap(), m, "{text}");
    }
}

#[test]
fn server_messages_round_trip() {
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
    let messages = vec![
        ServerMessage::Joined {
            protocol: PROTOCOL_VERSION,
            room: "disaster".into(),
            participant: p.clone(),
            participants: vec![p.clone()],
            tracks: vec![t.clone()],
        },
        ServerMessage::ParticipantJoined { participant: p },
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
        ServerMessage::Pong,
        ServerMessage::Error {
            code: ErrorCode::TokenExpired,
            reason: "expired 3 s ago".into(),
        },
    ];
    for m in messages {
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
