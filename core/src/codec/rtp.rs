//! RTP payloads of madang's codecs, both ways, in one place: H.264 access units split into
//! RTP payloads (RFC 6184, packetization-mode 1) and reassembled from them, sequence-number
//! arithmetic, and the RFC 6464 audio level a sender stamps and a server reads. Pure: the
//! client session, the server's forwarding and its grid mixer all use these.
//!
//! Payloads are unpacked with webrtc-rs's H.264 depacketizer (single NAL units, STAP-A,
//! FU-A); [`FrameAssembler`] decides where a picture begins and ends (RTP timestamp and
//! marker bit) and whether all of it arrived (sequence numbers). A picture with a hole is
//! reported as lost, never handed to the decoder half-filled. A complete picture is handed
//! over as soon as its last packet arrives — no waiting for the next picture, which would
//! cost a frame of latency.

use bytes::{Bytes, BytesMut};
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;

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

/// What one packet completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assembled {
    /// A whole access unit (Annex-B) with its RTP timestamp.
    Frame {
        /// The access unit.
        data: Bytes,
        /// RTP timestamp (90 kHz).
        timestamp: u32,
    },
    /// A picture that lost packets was dropped.
    Lost {
        /// RTP timestamp of the dropped picture.
        timestamp: u32,
    },
}

/// Turns an in-order stream of H.264 RTP packets into access units.
#[derive(Debug, Default)]
pub struct FrameAssembler {
    depacketizer: H264Packet,
    expected_seq: Option<u16>,
    timestamp: Option<u32>,
    buf: BytesMut,
    corrupt: bool,
    packets_lost: u64,
    frames_lost: u64,
}

impl FrameAssembler {
    /// A fresh assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Packets missing so far (by sequence number).
    pub fn packets_lost(&self) -> u64 {
        self.packets_lost
    }

    /// Pictures dropped so far because packets were missing.
    pub fn frames_lost(&self) -> u64 {
        self.frames_lost
    }

    fn drop_current(&mut self, out: &mut Vec<Assembled>) {
        if let Some(ts) = self.timestamp.take()
            && (!self.buf.is_empty() || self.corrupt)
        {
            self.frames_lost += 1;
            out.push(Assembled::Lost { timestamp: ts });
        }
        self.buf.clear();
        self.corrupt = false;
        self.depacketizer = H264Packet::default();
    }

    /// Feeds one packet; returns what it completed (usually nothing, or one frame; two items
    /// when a lost picture ends just as another begins).
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &Bytes,
    ) -> Vec<Assembled> {
        let mut out = Vec::new();
        if let Some(expected) = self.expected_seq {
            if seq_after(expected, seq) {
                // Older than what we have moved past (a late retransmission): too late.
                return out;
            }
            if seq != expected {
                self.packets_lost += seq.wrapping_sub(expected) as u64;
                if self.timestamp == Some(timestamp) {
                    self.corrupt = true;
                } else {
                    // The hole is at a picture boundary: the previous picture lost its tail
                    // (it never saw its marker), and this one may have lost its head.
                    self.drop_current(&mut out);
                    self.corrupt = !self.depacketizer.is_partition_head(payload);
                }
            }
        }
        self.expected_seq = Some(seq.wrapping_add(1));
        if self.timestamp.is_some_and(|t| t != timestamp) {
            // A new picture began before the previous one's marker: that one is incomplete.
            self.drop_current(&mut out);
        }
        self.timestamp = Some(timestamp);
        match self.depacketizer.depacketize(payload) {
            Ok(bytes) => self.buf.extend_from_slice(&bytes),
            Err(_) => self.corrupt = true,
        }
        if marker {
            let ts = timestamp;
            if self.corrupt || self.buf.is_empty() {
                self.frames_lost += 1;
                out.push(Assembled::Lost { timestamp: ts });
            } else {
                out.push(Assembled::Frame {
                    data: self.buf.split().freeze(),
                    timestamp: ts,
                });
            }
            self.buf.clear();
            self.corrupt = false;
            self.timestamp = None;
            self.depacketizer = H264Packet::default();
        }
        out
    }
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
        let mut a = FrameAssembler::new();
        let n = payloads.len();
        let mut got = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            got = a.push(i as u16, 9000, i == n - 1, p);
        }
        match &got[..] {
            [Assembled::Frame { data, .. }] => {
                let want: Vec<&[u8]> = crate::codec::nal::nal_units(&au).collect();
                let have: Vec<&[u8]> = crate::codec::nal::nal_units(data).collect();
                assert_eq!(want, have);
            }
            other => panic!("{other:?}"),
        }
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

    // NAL units of at least three bytes: the depacketizer refuses shorter ones, as no real
    // encoder produces them.

    fn single(nal: &[u8]) -> Bytes {
        Bytes::copy_from_slice(nal)
    }

    /// FU-A fragments of one NAL unit.
    fn fragments(nal: &[u8], size: usize) -> Vec<Bytes> {
        let header = nal[0];
        let body = &nal[1..];
        let chunks: Vec<&[u8]> = body.chunks(size).collect();
        chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut fu = vec![(header & 0xe0) | 28, header & 0x1f];
                if i == 0 {
                    fu[1] |= 0x80;
                }
                if i == chunks.len() - 1 {
                    fu[1] |= 0x40;
                }
                fu.extend_from_slice(c);
                Bytes::from(fu)
            })
            .collect()
    }

    #[test]
    fn whole_pictures_come_out_on_the_marker() {
        let mut a = FrameAssembler::new();
        assert!(
            a.push(10, 3000, false, &single(&[0x67, 0x42, 0xc0, 0x1f]))
                .is_empty()
        );
        assert!(
            a.push(11, 3000, false, &single(&[0x68, 0xce, 0x3c, 0x80]))
                .is_empty()
        );
        let idr: Vec<u8> = std::iter::once(0x65)
            .chain((0..100).map(|i| i as u8))
            .collect();
        let frags = fragments(&idr, 30);
        let n = frags.len();
        let mut out = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            out = a.push(12 + i as u16, 3000, i == n - 1, f);
        }
        match &out[..] {
            [
                Assembled::Frame {
                    data,
                    timestamp: 3000,
                },
            ] => {
                let units: Vec<&[u8]> = crate::codec::nal::nal_units(data).collect();
                assert_eq!(units.len(), 3);
                assert_eq!(units[2], &idr[..]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.frames_lost(), 0);
    }

    #[test]
    fn a_hole_drops_the_picture_and_the_next_one_is_fine() {
        let mut a = FrameAssembler::new();
        let nal: Vec<u8> = std::iter::once(0x41).chain(0..90u8).collect();
        let frags = fragments(&nal, 30);
        a.push(1, 100, false, &frags[0]);
        // frags[1] lost.
        let out = a.push(3, 100, true, &frags[2]);
        assert_eq!(out, vec![Assembled::Lost { timestamp: 100 }]);
        assert_eq!(a.packets_lost(), 1);
        let out = a.push(4, 200, true, &single(&[0x41, 9, 9]));
        assert!(matches!(out[..], [Assembled::Frame { timestamp: 200, .. }]));
    }

    #[test]
    fn a_missing_marker_is_a_lost_picture() {
        let mut a = FrameAssembler::new();
        a.push(1, 100, false, &single(&[0x41, 1, 2]));
        // The marker packet (seq 2) is lost; the next picture starts at seq 3.
        let out = a.push(3, 200, true, &single(&[0x41, 2, 3]));
        assert_eq!(out[0], Assembled::Lost { timestamp: 100 });
        assert!(matches!(out[1], Assembled::Frame { timestamp: 200, .. }));
    }

    #[test]
    fn late_packets_are_ignored() {
        let mut a = FrameAssembler::new();
        a.push(5, 100, true, &single(&[0x41, 1, 2]));
        assert!(a.push(4, 50, true, &single(&[0x41, 1, 2])).is_empty());
        assert!(matches!(
            a.push(6, 200, true, &single(&[0x41, 1, 2]))[..],
            [Assembled::Frame { .. }]
        ));
    }
}
