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
