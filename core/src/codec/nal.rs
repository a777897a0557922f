//! H.264 Annex-B byte streams: splitting access units into NAL units and reading the few
//! header fields the rest of madang needs (keyframe or not, profile and level). Pure code, also
//! available without the native codecs.

/// NAL unit type of an IDR slice.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of a non-IDR slice.
pub const NAL_SLICE: u8 = 1;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;

/// Iterator over the NAL units of an Annex-B buffer, without their start codes.
#[derive(Clone, Debug)]
pub struct NalUnits<'a> {
    rest: &'a [u8],
}

/// Position of the next 3-byte start code `00 00 01` in `data`.
fn find_start_code(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1])
}

/// Splits an Annex-B buffer into NAL units (start codes `00 00 01` or `00 00 00 01`). Bytes
/// before the first start code are ignored; a buffer with no start code yields nothing.
pub fn nal_units(data: &[u8]) -> NalUnits<'_> {
    let rest = match find_start_code(data) {
        Some(p) => &data[p + 3..],
        None => &[],
    };
    NalUnits { rest }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let (unit, rest) = match find_start_code(self.rest) {
            Some(p) => (&self.rest[..p], &self.rest[p + 3..]),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        // A 4-byte start code leaves its leading zero at the end of the previous unit; NAL
        // units never end in a zero byte (trailing bits), so it can be trimmed.
        let mut end = unit.len();
        while end > 0 && unit[end - 1] == 0 {
            end -= 1;
        }
        Some(&unit[..end])
    }
}

/// The `nal_unit_type` of a NAL unit (low five bits of its first byte).
pub fn nal_type(unit: &[u8]) -> Option<u8> {
    unit.first().map(|b| b & 0x1f)
}

/// Whether an access unit contains an IDR slice.
pub fn is_keyframe(access_unit: &[u8]) -> bool {
    nal_units(access_unit).any(|u| nal_type(u) == Some(NAL_IDR))
}

/// Checks that a buffer looks like an Annex-B access unit: at least one start code, and every
/// NAL unit non-empty with its forbidden bit clear.
pub fn looks_like_annex_b(data: &[u8]) -> bool {
    let mut any = false;
    for unit in nal_units(data) {
        match unit.first() {
            Some(b) if b & 0x80 == 0 => any = true,
            _ => return false,
        }
    }
    any
}

/// Profile, constraint flags and level of the first SPS in an access unit — the three bytes
/// SDP writes as `profile-level-id` (for example `42e01f`).
pub fn profile_level_id(access_unit: &[u8]) -> Option<[u8; 3]> {
    let sps = nal_units(access_unit).find(|u| nal_type(u) == Some(NAL_SPS))?;
    (sps.len() >= 4).then(|| [sps[1], sps[2], sps[3]])
}

/// NAL unit type of a STAP-A aggregation packet (RFC 6184).
const STAP_A: u8 = 24;
/// NAL unit type of an FU-A fragment (RFC 6184).
const FU_A: u8 = 28;

/// Whether an H.264 RTP payload (RFC 6184, packetization-mode 1) starts a keyframe: a single
/// IDR or SPS NAL unit, a STAP-A carrying one, or the first FU-A fragment of an IDR slice.
/// This is how the server knows, without decoding, where a new subscriber can start.
pub fn rtp_payload_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        NAL_IDR | NAL_SPS => true,
        STAP_A => {
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let size = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                let Some(unit) = rest.get(2..2 + size) else {
                    return false;
                };
                if matches!(nal_type(unit), Some(NAL_IDR | NAL_SPS)) {
                    return true;
                }
                rest = &rest[2 + size..];
            }
            false
        }
        FU_A => payload
            .get(1)
            .is_some_and(|&fu| fu & 0x80 != 0 && fu & 0x1f == NAL_IDR),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x88,
        ];
        let units: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(
            units,
            vec![&[0x67, 0x42, 0xc0, 0x1f][..], &[0x68, 0xce], &[0x65, 0x88]]
        );
        assert!(is_keyframe(&data));
        assert_eq!(profile_level_id(&data), Some([0x42, 0xc0, 0x1f]));
        assert!(looks_like_annex_b(&data));
    }

    #[test]
    fn rtp_keyframe_starts() {
        assert!(rtp_payload_starts_keyframe(&[0x65, 1, 2]));
        assert!(rtp_payload_starts_keyframe(&[0x67, 0x42]));
        assert!(!rtp_payload_starts_keyframe(&[0x41, 1]));
        // STAP-A with SPS and PPS.
        assert!(rtp_payload_starts_keyframe(&[
            0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce
        ]));
        assert!(!rtp_payload_starts_keyframe(&[0x78, 0, 2, 0x41, 0x42]));
        assert!(!rtp_payload_starts_keyframe(&[0x78, 0, 9, 0x67]));
        // FU-A: start of an IDR slice, then a middle fragment.
        assert!(rtp_payload_starts_keyframe(&[0x7c, 0x85, 1]));
        assert!(!rtp_payload_starts_keyframe(&[0x7c, 0x05, 1]));
        assert!(!rtp_payload_starts_keyframe(&[0x7c, 0x81, 1]));
        assert!(!rtp_payload_starts_keyframe(&[]));
    }

    #[test]
    fn rejects_junk() {
        assert!(!looks_like_annex_b(b"hello"));
        assert!(!looks_like_annex_b(&[0, 0, 1]));
        assert!(!looks_like_annex_b(&[0, 0, 1, 0x80, 1]));
        assert!(!is_keyframe(&[0, 0, 1, 0x41, 1]));
        assert_eq!(nal_units(&[]).count(), 0);
    }
}
