//! RTP payloads of madang's codecs in one place: H.264 access units split into RTP payloads
//! (RFC 6184, packetization-mode 1), sequence-number arithmetic, and the RFC 6464 audio
//! level a sender stamps and a server reads. Pure: the client session, the server's
//! forwarding and its grid mixer all use these. Reassembly on the receiving side is the
//! receive buffer's (`transport::jitter`), which also reorders and waits for repairs.

/// `a` comes after `b` in RTP sequence-number order (RFC 1982 serial arithmetic).
pub fn seq_after(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// Largest RTP payload madang sends (fits a 1280-byte UDP payload with RTP, SRTP and
/// extension headers).
pub const MAX_RTP_PAYLOAD: usize = 1100;

/// Splits an Annex-B access unit into RTP payloads (RFC 6184, packetization-mode 1): NAL units
/// that fit go alone, larger ones as FU-A fragments. Returns the payloads; the last one of the
/// access unit carries the marker bit.
pub fn packetize_h264(access_unit: &[u8], max_payload: usize) -> Vec<bytes::Bytes> {
    let max_payload = max_payload.max(16);
    let mut out = Vec::new();
    for nal in crate::codec::nal::nal_units(access_unit) {
        if nal.is_empty() {
            continue;
        }
        if nal.len() <= max_payload {
            out.push(bytes::Bytes::copy_from_slice(nal));
            continue;
        }
        let header = nal[0];
        let body = &nal[1..];
        let chunk = max_payload - 2;
        let count = body.len().div_ceil(chunk);
        for (i, part) in body.chunks(chunk).enumerate() {
            let mut fu = Vec::with_capacity(part.len() + 2);
            fu.push((header & 0xe0) | 28);
            let mut fu_header = header & 0x1f;
            if i == 0 {
                fu_header |= 0x80;
            }
            if i == count - 1 {
                fu_header |= 0x40;
            }
            fu.push(fu_header);
            fu.extend_from_slice(part);
            out.push(bytes::Bytes::from(fu));
        }
    }
    out
}

/// Reads the RFC 6464 level (dBov, 0 loudest … 127 silence) from an audio-level extension
/// payload.
pub fn audio_level_dbov(extension: &[u8]) -> Option<u8> {
    extension.first().map(|b| b & 0x7f)
}

/// Levels quieter than this (dBov) count as silence.
pub const VOICE_THRESHOLD_DBOV: u8 = 50;

/// RFC 6464 level of a block of PCM: −dBov, 0 (full scale) … 127 (silence).
pub fn level_dbov(samples: &[i16]) -> u8 {
    if samples.is_empty() {
        return 127;
    }
    let mean_square = samples
        .iter()
        .map(|&s| (s as f64) * (s as f64))
        .sum::<f64>()
        / samples.len() as f64;
    let rms = mean_square.sqrt() / 32768.0;
    if rms <= 0.0 {
        return 127;
    }
    (-20.0 * rms.log10()).clamp(0.0, 127.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn packetized_access_units_reassemble() {
        let mut au = vec![
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, 0, 0, 0, 1,
            0x65,
        ];
        au.extend((0..5000u32).map(|i| (i % 251) as u8 | 1));
        let payloads = packetize_h264(&au, 1100);
        assert!(payloads.len() > 5 && payloads.iter().all(|p| p.len() <= 1100));
        // Reassembled by the receive buffer, as every receiver in madang does.
        let t0 = std::time::Instant::now();
        let mut buffer = crate::transport::jitter::VideoBuffer::new(false, t0);
        let n = payloads.len();
        for (i, p) in payloads.iter().enumerate() {
            buffer.insert(t0, i as u16, 9000, i == n - 1, p.clone());
        }
        let picture = buffer.poll(t0).expect("a whole picture");
        let want: Vec<&[u8]> = crate::codec::nal::nal_units(&au).collect();
        let have: Vec<&[u8]> = crate::codec::nal::nal_units(&picture.data).collect();
        assert_eq!(want, have);
        assert!(picture.keyframe);
    }

    #[test]
    fn levels() {
        assert_eq!(level_dbov(&[0; 480]), 127);
        assert_eq!(level_dbov(&[32767; 480]), 0);
        let tenth: Vec<i16> = vec![3277; 480];
        assert_eq!(level_dbov(&tenth), 19);
        assert_eq!(audio_level_dbov(&[0x80 | 30]), Some(30));
        assert_eq!(audio_level_dbov(&[]), None);
    }
}
