use super::*;

#[test]
fn m_lines_in_order() {
    let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";
    assert_eq!(
        sdp_m_lines(sdp),
        vec![
            (TrackKind::Video, "0".to_string()),
            (TrackKind::Audio, "1".to_string())
        ]
    );
}

#[test]
fn credentials_are_random_and_repeat_for_a_seed() {
    let now = Instant::now();
    let local: SocketAddr = "127.0.0.1:7880".parse().unwrap();
    let seeded = |seed| {
        let mut config = EngineConfig::new("s");
        config.seed = Some(seed);
        let mut e = Engine::new(config, local, now);
        (e.random_string(16), e.random_ssrc())
    };
    assert_eq!(seeded(3), seeded(3));
    assert_ne!(seeded(3), seeded(4));
    let mut e = Engine::new(EngineConfig::new("s"), local, now);
    let a = e.random_string(16);
    assert_eq!(a.len(), 16);
    assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(a, e.random_string(16));
    assert_eq!(e.random_ssrc() & 1, 1);
}

#[test]
fn refused_tracks_say_why_and_candidates_move_to_an_accepted_section() {
    use super::negotiate::{candidates_in_accepted_section, refused_tracks};
    use crate::signal::{PublishTrack, TrackSource};
    let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 8\r\na=mid:a\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:v\r\na=rtpmap:102 H264/90000\r\n";
    let answer = "v=0\r\na=group:BUNDLE v\r\nm=audio 0 UDP/TLS/RTP/SAVPF 0\r\na=mid:a\r\na=candidate:1 1 udp 1 192.0.2.1 7880 typ host\r\na=end-of-candidates\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:v\r\n";
    let track = |mid: &str, kind| PublishTrack {
        mid: mid.into(),
        kind,
        source: TrackSource::Camera,
    };
    let refused = refused_tracks(
        offer,
        answer,
        &[
            track("a", TrackKind::Audio),
            track("v", TrackKind::Video),
            track("x", TrackKind::Video),
        ],
    );
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0].mid, "a");
    assert!(
        refused[0]
            .reason
            .ends_with("Opus (48000/2); offered: PCMU, PCMA")
    );
    assert_eq!(refused[1].mid, "x");
    assert!(refused[1].reason.contains("no m-line"));
    assert_eq!(
        candidates_in_accepted_section(answer),
        "v=0\r\na=group:BUNDLE v\r\nm=audio 0 UDP/TLS/RTP/SAVPF 0\r\na=mid:a\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:v\r\na=candidate:1 1 udp 1 192.0.2.1 7880 typ host\r\na=end-of-candidates\r\n"
    );
    // Nothing to move: the answer as it was.
    let fine =
        "v=0\r\nm=video 9 X 102\r\na=mid:v\r\na=candidate:1 1 udp 1 192.0.2.1 7880 typ host\r\n";
    assert_eq!(candidates_in_accepted_section(fine), fine);
}

mod core_alone {
    //! The server core by itself: commands and datagrams in, events and transmits out, on a
    //! hand-advanced clock. Two client sessions stand in for the other end; nothing else runs
    //! (no sockets, no network model, no sleeps).

    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::super::{Command, Engine, EngineConfig, Event};
    use crate::media::{CodecKind, EncodedFrame};
    use crate::room::session::{Phase, Session, SessionConfig};
    use crate::sfu::token::{Claims, mint, unix_now};
    use crate::signal::{ClientMessage, ErrorCode, Role, ServerMessage};

    const SERVER: &str = "192.0.2.1:7880";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn token(identity: &str) -> String {
        let claims = Claims::new("hall", identity, identity, Role::Speaker, unix_now(), 60);
        mint(b"secret", &claims).unwrap()
    }

    /// Moves every signal message and datagram between the engine and the sessions until
    /// nothing moves; returns the destinations of the engine's datagrams.
    fn pump(engine: &mut Engine, clients: &mut [Session], now: Instant) -> Vec<SocketAddr> {
        let mut sent_to = Vec::new();
        loop {
            let mut moved = false;
            for (i, c) in clients.iter_mut().enumerate() {
                while let Some(m) = c.poll_signal() {
                    moved = true;
                    engine.handle_command(
                        now,
                        Command::Message {
                            session: i as u64 + 1,
                            message: m,
                        },
                    );
                }
                while let Some(t) = c.poll_transmit() {
                    moved = true;
                    assert_eq!(t.to, addr(SERVER), "clients only talk to the server");
                    engine.handle_datagram(now, t.from, &t.data);
                }
            }
            while let Some(e) = engine.poll_event() {
                moved = true;
                match e {
                    Event::Send(id, m) => clients[id as usize - 1].handle_signal(now, m),
                    Event::Close(id) => clients[id as usize - 1].handle_server_close(now),
                    Event::Resume { .. } => {}
                }
            }
            while let Some(t) = engine.poll_transmit() {
                moved = true;
                sent_to.push(t.to);
                let (_, c) = clients
                    .iter_mut()
                    .enumerate()
                    .find(|(i, _)| {
                        t.to == addr(&format!("198.51.100.{}:5000", i + 1))
                            || t.to == addr(&format!("198.51.100.{}:5001", i + 1))
                    })
                    .expect("the engine only sends to addresses it heard from");
                c.handle_datagram(now, t.to, addr(SERVER), &t.data);
            }
            if !moved {
                return sent_to;
            }
        }
    }

    fn step(engine: &mut Engine, clients: &mut [Session], now: Instant) -> Vec<SocketAddr> {
        engine.handle_timeout(now);
        for c in clients.iter_mut() {
            c.handle_timeout(now);
        }
        pump(engine, clients, now)
    }

    #[test]
    fn joins_answers_connects_and_forwards_without_sockets() {
        let t0 = Instant::now();
        let mut config = EngineConfig::new("secret");
        config.seed = Some(5);
        let mut engine = Engine::new(config, addr(SERVER), t0);
        let mut clients = Vec::new();
        for (i, name) in ["alice", "bob"].iter().enumerate() {
            engine.handle_command(
                t0,
                Command::Open {
                    session: i as u64 + 1,
                    room: None,
                },
            );
            let config = SessionConfig {
                audio: *name == "alice",
                seed: Some(i as u64),
                ..SessionConfig::new(token(name))
            };
            clients.push(Session::new(
                config,
                addr(&format!("198.51.100.{}:5000", i + 1)),
                addr(&format!("198.51.100.{}:5001", i + 1)),
                t0,
            ));
        }
        pump(&mut engine, &mut clients, t0);
        assert!(clients.iter().all(|c| c.phase() == &Phase::Joined));
        assert_eq!(engine.stats().participants, 0, "counted on the next tick");

        // ICE, DTLS, SRTP on a clock advanced by hand, 10 ms a step.
        let mut now = t0;
        let mut destinations = Vec::new();
        for _ in 0..300 {
            now += Duration::from_millis(10);
            destinations.extend(step(&mut engine, &mut clients, now));
            if clients[0].publishing_ready() && clients[1].receiving_ready() {
                break;
            }
        }
        assert!(
            clients[0].publishing_ready(),
            "alice's publishing connection is up"
        );
        assert!(
            clients[1].receiving_ready(),
            "bob's receiving connection is up"
        );
        assert_eq!(engine.stats().participants, 2);
        for d in &destinations {
            assert!(d.ip().to_string().starts_with("198.51.100."), "{d}");
        }

        // Alice's audio reaches bob's receiving address through the engine.
        let before = engine.stats().packets_out;
        for n in 0..50 {
            now += Duration::from_millis(20);
            let packet = EncodedFrame {
                codec: CodecKind::Opus,
                data: Bytes::from_static(&[0xf8, 0xff, 0xfe]),
                pts_us: n * 20_000,
                keyframe: true,
            };
            assert!(clients[0].send_audio(now, &packet, 30).unwrap());
            step(&mut engine, &mut clients, now);
        }
        assert!(engine.stats().packets_in >= 50, "{:?}", engine.stats());
        assert!(
            engine.stats().packets_out >= before + 45,
            "{:?}",
            engine.stats()
        );
        let bob = clients[1].receive_stats();
        let heard = bob.iter().find(|t| t.track == "alice/microphone").unwrap();
        assert!(heard.packets >= 45, "{heard:?}");
    }

    #[test]
    fn a_bad_token_is_answered_and_closed_by_the_core() {
        let t0 = Instant::now();
        let mut engine = Engine::new(EngineConfig::new("secret"), addr(SERVER), t0);
        engine.handle_command(
            t0,
            Command::Open {
                session: 9,
                room: None,
            },
        );
        engine.handle_command(
            t0,
            Command::Message {
                session: 9,
                message: ClientMessage::Join {
                    protocol: crate::signal::PROTOCOL_VERSION,
                    token: "forged".into(),
                    auto_subscribe: true,
                    name: None,
                },
            },
        );
        match engine.poll_event() {
            Some(Event::Send(9, ServerMessage::Error { code, .. })) => {
                assert_eq!(code, ErrorCode::InvalidToken)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(engine.poll_event(), Some(Event::Close(9)));
        assert!(engine.poll_transmit().is_none());
        // A datagram from nowhere is counted and dropped.
        engine.handle_datagram(t0, addr("203.0.113.9:4000"), &[0x80, 0x60, 0, 1]);
        assert_eq!(engine.stats().unroutable, 1);
        assert!(engine.poll_transmit().is_none());
    }
}
