//! H.264 Annex-B byte streams: splitting access units into NAL units and reading the few
//! header fields the rest of madang needs (keyframe or not, profile and level). Pure code, also
//! available without the native codecs.

mod ids;

pub use ids::{MAX_SPS_ID, with_parameter_set_id};

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

/// Whether an H.264 RTP payload belongs to a keyframe: one that starts it
/// ([`rtp_payload_starts_keyframe`]), a lone PPS, or any FU-A fragment of an IDR slice. On
/// a link that reorders, the first packet of a keyframe to arrive need not be its first.
pub fn rtp_payload_in_keyframe(payload: &[u8]) -> bool {
    if rtp_payload_starts_keyframe(payload) {
        return true;
    }
    match payload.first().map(|b| b & 0x1f) {
        Some(NAL_PPS) => true,
        Some(FU_A) => payload.get(1).is_some_and(|&fu| fu & 0x1f == NAL_IDR),
        _ => false,
    }
}

/// The NAL units an H.264 RTP payload carries whole or begins: a single NAL unit, each unit of
/// a STAP-A, or an FU-A start fragment (its header rebuilt, its body the fragment). Empty
/// for padding, FU-A middle and end fragments and anything malformed.
fn rtp_payload_units(payload: &[u8]) -> Vec<(u8, &[u8])> {
    let Some(&first) = payload.first() else {
        return Vec::new();
    };
    match first & 0x1f {
        STAP_A => {
            let mut out = Vec::new();
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let size = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                let Some(unit) = rest.get(2..2 + size).filter(|u| !u.is_empty()) else {
                    break;
                };
                out.push((unit[0], &unit[1..]));
                rest = &rest[2 + size..];
            }
            out
        }
        FU_A => match payload.get(1) {
            Some(&fu) if fu & 0x80 != 0 => vec![((first & 0xe0) | (fu & 0x1f), &payload[2..])],
            _ => Vec::new(),
        },
        _ => vec![(first, &payload[1..])],
    }
}

/// Reads the start of an RBSP bit by bit, skipping emulation-prevention bytes (or, made
/// with [`Bits::rbsp`], from an RBSP already without them).
struct Bits<'a> {
    data: &'a [u8],
    byte: usize,
    bit: u8,
    zeros: u8,
    escaped: bool,
}

impl<'a> Bits<'a> {
    /// A reader of a NAL unit body as it is sent (with emulation prevention).
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            byte: 0,
            bit: 0,
            zeros: 0,
            escaped: true,
        }
    }

    /// A reader of an RBSP whose emulation-prevention bytes were taken out.
    fn rbsp(data: &'a [u8]) -> Self {
        Self {
            escaped: false,
            ..Self::new(data)
        }
    }

    /// Bits read so far (an offset into the data for an [`rbsp`](Self::rbsp) reader).
    fn position(&self) -> usize {
        self.byte * 8 + usize::from(self.bit)
    }

    fn bit(&mut self) -> Option<u32> {
        if self.escaped && self.bit == 0 {
            // 00 00 03: the 03 was inserted so the stream holds no start code.
            if self.zeros >= 2 && self.data.get(self.byte) == Some(&3) {
                self.byte += 1;
                self.zeros = 0;
            }
            let b = *self.data.get(self.byte)?;
            self.zeros = if b == 0 { self.zeros + 1 } else { 0 };
        }
        let value = (self.data[self.byte] >> (7 - self.bit)) & 1;
        self.bit += 1;
        if self.bit == 8 {
            self.bit = 0;
            self.byte += 1;
        }
        Some(value as u32)
    }

    fn bits(&mut self, n: u8) -> Option<u32> {
        (0..n).try_fold(0, |v, _| Some((v << 1) | self.bit()?))
    }

    /// An unsigned Exp-Golomb number.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    /// A signed Exp-Golomb number.
    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        let magnitude = k.div_ceil(2) as i32;
        Some(if k % 2 == 1 { magnitude } else { -magnitude })
    }
}

/// What the server and the receivers read from a sequence parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    /// `log2_max_frame_num`: the width in bits of every slice's `frame_num`.
    pub frame_num_bits: u8,
    /// Picture width in pixels, after cropping.
    pub width: u32,
    /// Picture height in pixels, after cropping.
    pub height: u32,
}

/// Parses a sequence parameter set (the NAL unit after its header byte): its
/// `log2_max_frame_num`, and its picture size where the SPS is whole. `None` for SPSs with
/// scaling matrices (not sent by the encoders madang meets) or malformed ones.
fn parse_sps(rbsp: &[u8]) -> Option<(u8, Option<(u32, u32)>)> {
    let profile = *rbsp.first()?;
    let mut bits = Bits::new(rbsp.get(3..)?);
    bits.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = bits.ue()?;
        if chroma_format == 3 && bits.bit()? == 1 {
            chroma_format = 0; // separate colour planes: cropped like monochrome
        }
        bits.ue()?; // bit_depth_luma_minus8
        bits.ue()?; // bit_depth_chroma_minus8
        bits.bit()?; // qpprime_y_zero_transform_bypass_flag
        if bits.bit()? == 1 {
            return None; // seq_scaling_matrix_present_flag
        }
    }
    let log2 = bits.ue()?.checked_add(4)?;
    if log2 > 16 {
        return None;
    }
    Some((log2 as u8, sps_size(&mut bits, chroma_format)))
}

/// The rest of an SPS after `log2_max_frame_num`, up to the picture size (cropped).
fn sps_size(bits: &mut Bits<'_>, chroma_format: u32) -> Option<(u32, u32)> {
    match bits.ue()? {
        0 => {
            bits.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            bits.bit()?; // delta_pic_order_always_zero_flag
            bits.se()?; // offset_for_non_ref_pic
            bits.se()?; // offset_for_top_to_bottom_field
            let cycle = bits.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                bits.se()?;
            }
        }
        _ => {}
    }
    bits.ue()?; // max_num_ref_frames
    bits.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = bits.ue()?.checked_add(1)?;
    let height_units = bits.ue()?.checked_add(1)?;
    let frame_mbs_only = bits.bit()?;
    if frame_mbs_only == 0 {
        bits.bit()?; // mb_adaptive_frame_field_flag
    }
    bits.bit()?; // direct_8x8_inference_flag
    let field = 2 - frame_mbs_only;
    let (crop_x, crop_y) = match chroma_format {
        1 => (2, 2 * field),
        2 => (2, field),
        _ => (1, field),
    };
    let mut crop = [0u32; 4];
    if bits.bit()? == 1 {
        for c in &mut crop {
            *c = bits.ue()?;
        }
    }
    // Every product checked: a hostile SPS carries crops of up to 2^32 - 2 (fuzzing found
    // `crop_x * (left + right)` overflowing).
    let width = width_mbs
        .checked_mul(16)?
        .checked_sub(crop[0].checked_add(crop[1])?.checked_mul(crop_x)?)?;
    let height = height_units
        .checked_mul(16 * field)?
        .checked_sub(crop[2].checked_add(crop[3])?.checked_mul(crop_y)?)?;
    Some((width, height))
}

/// Whether an H.264 RTP payload carries an SPS (whole, or in a STAP-A): the first packet
/// of a keyframe as H.264 packetizers send it (parameter sets before the IDR slices).
pub fn rtp_payload_carries_sps(payload: &[u8]) -> bool {
    rtp_payload_sps_rbsp(payload).is_some()
}

/// The SPS an H.264 RTP payload carries, if it carries one: its NAL unit body.
fn rtp_payload_sps_rbsp(payload: &[u8]) -> Option<&[u8]> {
    rtp_payload_units(payload)
        .into_iter()
        .find(|(header, _)| header & 0x1f == NAL_SPS)
        .map(|(_, rbsp)| rbsp)
}

/// What the SPS an H.264 RTP payload carries says, if it carries a whole one.
pub fn rtp_payload_sps(payload: &[u8]) -> Option<SpsInfo> {
    let (frame_num_bits, (width, height)) = rtp_payload_sps_rbsp(payload)
        .and_then(parse_sps)
        .and_then(|(bits, size)| Some((bits, size?)))?;
    Some(SpsInfo {
        frame_num_bits,
        width,
        height,
    })
}

/// The `log2_max_frame_num` of the SPS an H.264 RTP payload carries, if it carries one.
pub fn rtp_payload_sps_frame_num_bits(payload: &[u8]) -> Option<u8> {
    rtp_payload_sps_rbsp(payload)
        .and_then(parse_sps)
        .map(|(bits, _)| bits)
}

/// What the first slice of a picture says about its place among the reference pictures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PictureStart {
    /// `frame_num`: counts reference pictures, modulo `1 << log2_max_frame_num`.
    pub frame_num: u32,
    /// Other pictures may refer to this one (`nal_ref_idc` is not zero).
    pub reference: bool,
    /// An IDR picture (`frame_num` starts again at zero).
    pub idr: bool,
}

impl PictureStart {
    /// Whether `next` can follow this picture with no reference picture missing between
    /// (H.264 7.4.3: `frame_num` grows by one after each reference picture).
    pub fn followed_by(&self, next: &PictureStart, frame_num_bits: u8) -> bool {
        let expected = if self.reference {
            (self.frame_num + 1) % (1 << frame_num_bits)
        } else {
            self.frame_num
        };
        next.idr || next.frame_num == expected
    }
}

/// If an H.264 RTP payload begins a picture (the first slice, `first_mb_in_slice` = 0), what
/// its slice header says; `frame_num_bits` comes from the stream's SPS.
pub fn rtp_payload_picture_start(payload: &[u8], frame_num_bits: u8) -> Option<PictureStart> {
    let (header, rbsp) = rtp_payload_units(payload)
        .into_iter()
        .find(|(header, _)| matches!(header & 0x1f, NAL_SLICE | NAL_IDR))?;
    let mut bits = Bits::new(rbsp);
    if bits.ue()? != 0 {
        return None; // not the picture's first slice
    }
    bits.ue()?; // slice_type
    bits.ue()?; // pic_parameter_set_id
    Some(PictureStart {
        frame_num: bits.bits(frame_num_bits)?,
        reference: header & 0x60 != 0,
        idr: header & 0x1f == NAL_IDR,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_sps_whose_crop_overflows_is_no_size() {
        // Found by fuzzing (fuzz/regressions/rtp_payload/sps_crop_overflow): cropping
        // offsets near 2^32 made `crop_x * (left + right)` overflow, a panic in debug builds.
        let sps = [
            0x67, 0x42, 0x34, 0x34, 0x34, 0x34, 0x34, 0x34, 0x34, 0x34, 0x20, 0x00, 0x00, 0x00,
            0x0e, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x30,
        ];
        assert_eq!(rtp_payload_sps(&sps), None);
        // And one whose log2_max_frame_num_minus4 is near 2^32
        // (fuzz/regressions/rtp_payload/sps_log2_overflow).
        let sps = [
            0x67, 0x42, 0x06, 0xff, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x7a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0x00, 0x00,
        ];
        assert_eq!(rtp_payload_sps(&sps), None);
        assert_eq!(rtp_payload_sps_frame_num_bits(&sps), None);
    }
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
        // Any packet of a keyframe: its middle and end fragments and a lone PPS too, never
        // a fragment of another slice.
        assert!(rtp_payload_in_keyframe(&[0x7c, 0x85, 1]));
        assert!(rtp_payload_in_keyframe(&[0x7c, 0x05, 1]));
        assert!(rtp_payload_in_keyframe(&[0x7c, 0x45, 1]));
        assert!(rtp_payload_in_keyframe(&[0x68, 0xce]));
        assert!(!rtp_payload_in_keyframe(&[0x7c, 0x81, 1]));
        assert!(!rtp_payload_in_keyframe(&[0x41, 1]));
        assert!(!rtp_payload_in_keyframe(&[]));
        // The SPS alone or first in a STAP-A; an IDR fragment is no SPS.
        assert!(rtp_payload_carries_sps(&[0x67, 0x42]));
        assert!(rtp_payload_carries_sps(&[
            0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68
        ]));
        assert!(!rtp_payload_carries_sps(&[0x7c, 0x85, 1]));
        assert!(!rtp_payload_carries_sps(&[0x68, 1]));
    }

    #[test]
    fn frame_num_from_slice_headers_in_rtp_payloads() {
        // SPS: baseline, sps_id 0, log2_max_frame_num_minus4 = 4 (ue 00101).
        let sps = [0x67, 0x42, 0xc0, 0x1f, 0b1001_0100];
        assert_eq!(rtp_payload_sps_frame_num_bits(&sps), Some(8));
        // The same SPS inside a STAP-A with a PPS.
        let stap = [0x78, 0, 5, 0x67, 0x42, 0xc0, 0x1f, 0x94, 0, 2, 0x68, 0xce];
        assert_eq!(rtp_payload_sps_frame_num_bits(&stap), Some(8));
        // P slice, first_mb 0, slice_type 0, pps 0, frame_num 5 (8 bits): 111 00000 101.
        let slice = [0x41, 0b1110_0000, 0b1010_0000];
        let start = rtp_payload_picture_start(&slice, 8).unwrap();
        assert_eq!(start.frame_num, 5);
        assert!(start.reference && !start.idr);
        // The same slice as the first fragment of an FU-A, then a middle fragment.
        let fu = [0x5c, 0x81, 0b1110_0000, 0b1010_0000];
        assert_eq!(rtp_payload_picture_start(&fu, 8), Some(start));
        assert_eq!(
            rtp_payload_picture_start(&[0x5c, 0x01, 0xe0, 0xa0], 8),
            None
        );
        // A second slice of a picture (first_mb 1: ue 010) does not start it.
        assert_eq!(
            rtp_payload_picture_start(&[0x41, 0b0101_1000, 0x28], 8),
            None
        );
        let next = PictureStart {
            frame_num: 6,
            ..start
        };
        assert!(start.followed_by(&next, 8));
        assert!(!start.followed_by(
            &PictureStart {
                frame_num: 7,
                ..start
            },
            8
        ));
        let wrap = PictureStart {
            frame_num: 255,
            ..start
        };
        assert!(wrap.followed_by(
            &PictureStart {
                frame_num: 0,
                ..start
            },
            8
        ));
        assert_eq!(rtp_payload_picture_start(&[], 8), None);
    }

    #[test]
    fn sps_sizes_of_real_encoder_output() {
        use crate::codec::rtp::{MAX_RTP_PAYLOAD, packetize_h264};
        use crate::codec::{H264Config, H264Encoder};
        use crate::media::VideoFrame;
        // Sizes whose height is not a multiple of 16 are cropped.
        for (w, h) in [(160, 90), (320, 180), (640, 360), (176, 144), (1280, 720)] {
            let mut encoder = H264Encoder::new(H264Config::new(w, h)).unwrap();
            let unit = encoder
                .encode(&VideoFrame::black(w, h).unwrap())
                .unwrap()
                .expect("a first picture");
            let sps = packetize_h264(&unit.data, MAX_RTP_PAYLOAD)
                .iter()
                .find_map(|p| rtp_payload_sps(p))
                .expect("an SPS in the keyframe");
            assert_eq!((sps.width, sps.height), (w, h));
        }
        // Truncated or absent: nothing.
        assert_eq!(rtp_payload_sps(&[0x67, 0x42, 0xc0, 0x1f, 0x94]), None);
        assert_eq!(rtp_payload_sps(&[0x65, 0x88]), None);
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
