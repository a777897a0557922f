//! Entry points for the coverage-guided fuzz targets in `fuzz/` and for the test that replays
//! their corpora (`tests/fuzz_corpus.rs`): one function per parser of untrusted input, each
//! taking arbitrary bytes and asserting only that nothing panics, loops or grows without
//! bound. Behind the `fuzzing` feature; not an API.

use std::io::Cursor;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// A fuzz target: arbitrary bytes in, nothing out.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("signal", signal),
    ("datagram", datagram),
    ("rtp_payload", rtp_payload),
    ("video_buffer", video_buffer),
    ("sdp", sdp),
    ("token", token),
    ("y4m", y4m),
    ("wav", wav),
];

/// Signal JSON, both directions.
pub fn signal(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = crate::signal::decode_client(text) {
            let _ = crate::signal::encode(&m);
        }
        if let Ok(m) = crate::signal::decode_server(text) {
            let _ = crate::signal::encode(&m);
        }
    }
}

/// A datagram at the server's UDP port: the STUN username lookup and the first-byte
/// demultiplexing the engine does before `rtc`.
pub fn datagram(data: &[u8]) {
    let _ = crate::sfu::fuzz_stun_ufrag(data);
    let now = Instant::now();
    let local: SocketAddr = "192.0.2.1:7880".parse().unwrap_or_else(|_| unreachable!());
    let mut config = crate::sfu::engine::EngineConfig::new("secret");
    config.seed = Some(1);
    let mut engine = crate::sfu::engine::Engine::new(config, local, now);
    let from: SocketAddr = "198.51.100.1:5000"
        .parse()
        .unwrap_or_else(|_| unreachable!());
    engine.handle_datagram(now, from, data);
    engine.handle_timeout(now + Duration::from_millis(10));
    while engine.poll_transmit().is_some() {}
}

/// RTP payloads and Annex-B access units: keyframe detection, SPS parsing, picture starts.
pub fn rtp_payload(data: &[u8]) {
    use crate::codec::nal;
    let _ = nal::rtp_payload_starts_keyframe(data);
    let _ = nal::rtp_payload_sps(data);
    if let Some(bits) = nal::rtp_payload_sps_frame_num_bits(data) {
        let _ = nal::rtp_payload_picture_start(data, bits);
    }
    for bits in [4, 16] {
        let _ = nal::rtp_payload_picture_start(data, bits);
    }
    let _ = nal::is_keyframe(data);
    let _ = nal::profile_level_id(data);
    let _ = nal::looks_like_annex_b(data);
    for unit in nal::nal_units(data) {
        let _ = nal::nal_type(unit);
    }
}

/// Packets into the receiver's video jitter buffer (frame assembly and H.264
/// depacketising): each record is `seq(2) ts(4) flags(1) len(1) payload(len)`; bit 0 of the
/// flags is the marker, the other bits advance the clock.
pub fn video_buffer(data: &[u8]) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut buffer = crate::transport::jitter::VideoBuffer::new(true, t0);
    let mut rest = data;
    while rest.len() >= 8 {
        let seq = u16::from_be_bytes([rest[0], rest[1]]);
        let ts = u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]);
        let flags = rest[6];
        let len = (rest[7] as usize).min(rest.len() - 8);
        let payload = Bytes::copy_from_slice(&rest[8..8 + len]);
        rest = &rest[8 + len..];
        now += Duration::from_millis((flags >> 1) as u64);
        buffer.insert(now, seq, ts, flags & 1 == 1, payload);
        let _ = buffer.nacks_due(now);
        let _ = buffer.keyframe_request_due(now);
        while buffer.poll(now).is_some() {}
    }
    let end = now + Duration::from_secs(2);
    while buffer.poll(end).is_some() {}
    let _ = buffer.stats();
}

/// The SDP helpers the server runs on offers and on its own answers: the input is an offer
/// and an answer, split at the first NUL.
pub fn sdp(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (offer, answer) = text.split_once('\0').unwrap_or((&text, &text));
    crate::sfu::fuzz_sdp(offer, answer);
}

/// Token decoding and checking.
pub fn token(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::sfu::token::verify(b"secret", text, 1_800_000_000);
    }
}

/// A Y4M file: header and up to four frames.
pub fn y4m(data: &[u8]) {
    if let Ok(mut reader) = crate::media::Y4mReader::new(Cursor::new(data)) {
        for _ in 0..4 {
            if !matches!(reader.read_frame(), Ok(Some(_))) {
                break;
            }
        }
    }
}

/// A WAV file: header and up to four frames of 20 ms.
pub fn wav(data: &[u8]) {
    if let Ok(mut reader) = crate::media::WavReader::new(Cursor::new(data)) {
        for _ in 0..4 {
            if !matches!(reader.read_frame(20), Ok(Some(_))) {
                break;
            }
        }
    }
}
