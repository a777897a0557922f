//! Giving a simulcast layer parameter-set ids of its own.
//!
//! Every layer of a simulcast camera is its own OpenH264 encoder, and every one names its
//! SPS and PPS id 0. A receiver switched from one layer to another by the server then holds
//! two different SPSs under one id, and which one a picture is decoded with depends on what
//! came in last. Chromium looks the SPS up when a keyframe's first slice packet *arrives*:
//! given the new layer's IDR before its SPS (reordered on the way, ± 20 ms of jitter on a
//! `rural` link), it took the old layer's SPS, and showed a 640×360 layer at 320×180 for
//! 75 s without asking for anything (the browser tiles test on `rural`, 3 of 4 runs). With
//! an id per layer (the layer's index) the old layer's SPS can never stand in for the new
//! one: a receiver that has not seen the new layer's SPS asks for a keyframe instead.
//!
//! OpenH264 cannot be told which ids to use, so the encoder's output is rewritten: the
//! SPS's `seq_parameter_set_id`, the PPS's `pic_parameter_set_id` and
//! `seq_parameter_set_id`, and every slice header's `pic_parameter_set_id` (ITU-T H.264
//! §7.3.2.1, §7.3.2.2, §7.3.3). They are Exp-Golomb numbers: a new id changes their length,
//! so the rest of each NAL unit is copied shifted by the difference, its trailing bits
//! written again and its emulation prevention redone.

use super::{Bits, NAL_IDR, NAL_PPS, NAL_SLICE, NAL_SPS, nal_type, nal_units};

/// The largest id an SPS may have (H.264 §7.4.2.1.1); PPS ids go to 255.
pub const MAX_SPS_ID: u32 = 31;

/// `access_unit` (Annex-B) with its SPS, PPS and slices using parameter-set id `id` for
/// both the SPS and the PPS; other NAL units are copied as they are. `None` if `id` is above
/// [`MAX_SPS_ID`] or a unit to rewrite does not parse (the caller keeps the original).
pub fn with_parameter_set_id(access_unit: &[u8], id: u32) -> Option<Vec<u8>> {
    if id > MAX_SPS_ID {
        return None;
    }
    let mut out = Vec::with_capacity(access_unit.len() + 16);
    for unit in nal_units(access_unit) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        let rewritten = match nal_type(unit)? {
            NAL_SPS => rewrite(unit, 3, &[Field::Id], id)?,
            NAL_PPS => rewrite(unit, 0, &[Field::Id, Field::Id], id)?,
            NAL_SLICE | NAL_IDR => rewrite(unit, 0, &[Field::Keep, Field::Keep, Field::Id], id)?,
            _ => {
                out.extend_from_slice(unit);
                continue;
            }
        };
        emulation_prevent(&rewritten, &mut out);
    }
    Some(out)
}

/// An Exp-Golomb field at the start of an RBSP: kept, or replaced by the new id.
#[derive(Clone, Copy)]
enum Field {
    Keep,
    Id,
}

/// `unit` (a NAL unit, escaped) as an RBSP (header byte included, unescaped): its header
/// byte and `fixed` bytes as they are, then `fields` (the `Id` ones set to `id`), then the
/// rest of its bits and its trailing bits.
fn rewrite(unit: &[u8], fixed: usize, fields: &[Field], id: u32) -> Option<Vec<u8>> {
    let (&header, body) = unit.split_first()?;
    let rbsp = unescape(body);
    let stop = stop_bit(&rbsp)?;
    let mut r = Bits::rbsp(&rbsp);
    let mut w = Writer::default();
    w.bits(u32::from(header), 8);
    for _ in 0..fixed {
        w.bits(r.bits(8)?, 8);
    }
    for field in fields {
        let old = r.ue()?;
        w.ue(match field {
            Field::Keep => old,
            Field::Id => id,
        });
    }
    if r.position() > stop {
        return None;
    }
    while stop - r.position() >= 24 {
        w.bits(r.bits(24)?, 24);
    }
    let left = (stop - r.position()) as u8;
    w.bits(r.bits(left)?, left);
    // rbsp_trailing_bits: the stop bit, then zeros to the byte.
    w.bits(1, 1);
    Some(w.finish())
}

/// Position (in bits) of the RBSP stop bit: the last bit set.
fn stop_bit(rbsp: &[u8]) -> Option<usize> {
    let last = rbsp.iter().rposition(|&b| b != 0)?;
    Some(last * 8 + 7 - rbsp[last].trailing_zeros() as usize)
}

/// The RBSP of a NAL unit body: every `00 00 03` becomes `00 00`.
fn unescape(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut zeros = 0;
    for &b in body {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Appends `unit` (header byte and RBSP) escaped: `03` before any byte ≤ 3 that follows two
/// zero bytes, so no start code appears inside it.
fn emulation_prevent(unit: &[u8], out: &mut Vec<u8>) {
    let mut zeros = 0;
    for &b in unit {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
}

/// Writes bits most significant first.
#[derive(Default)]
struct Writer {
    out: Vec<u8>,
    acc: u64,
    n: u8,
}

impl Writer {
    fn bits(&mut self, v: u32, n: u8) {
        if n == 0 {
            return;
        }
        self.acc = (self.acc << n) | u64::from(v & (u32::MAX >> (32 - u32::from(n))));
        self.n += n;
        while self.n >= 8 {
            self.n -= 8;
            self.out.push((self.acc >> self.n) as u8);
        }
        self.acc &= (1 << self.n) - 1;
    }

    fn ue(&mut self, v: u32) {
        let x = u64::from(v) + 1;
        let len = 64 - x.leading_zeros() as u8;
        self.bits(0, len - 1);
        self.bits(x as u32, len);
    }

    /// The bytes written, the last one padded with zeros.
    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push((self.acc << (8 - self.n)) as u8);
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_numbers_round_trip() {
        for v in [0, 1, 2, 3, 7, 30, 31, 255, 4096] {
            let mut w = Writer::default();
            w.bits(0b101, 3);
            w.ue(v);
            w.bits(1, 1);
            let bytes = w.finish();
            let mut r = Bits::rbsp(&bytes);
            assert_eq!(r.bits(3), Some(0b101));
            assert_eq!(r.ue(), Some(v));
            assert_eq!(r.bits(1), Some(1));
        }
    }

    #[test]
    fn escaping_round_trips_and_leaves_no_start_code() {
        let rbsp = [0x65, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 3, 7];
        let mut escaped = Vec::new();
        emulation_prevent(&rbsp, &mut escaped);
        assert!(!escaped.windows(3).any(|w| w == [0, 0, 1] || w == [0, 0, 0]));
        assert_eq!(unescape(&escaped), rbsp);
    }

    /// The ids of an access unit's SPS, PPS (its own and its SPS's) and slices.
    fn ids(access_unit: &[u8]) -> Vec<(u8, Vec<u32>)> {
        nal_units(access_unit)
            .filter_map(|unit| {
                let rbsp = unescape(&unit[1..]);
                let mut r = Bits::rbsp(&rbsp);
                let typ = nal_type(unit)?;
                let fields = match typ {
                    NAL_SPS => {
                        r.bits(24)?;
                        vec![r.ue()?]
                    }
                    NAL_PPS => vec![r.ue()?, r.ue()?],
                    NAL_SLICE | NAL_IDR => {
                        r.ue()?;
                        r.ue()?;
                        vec![r.ue()?]
                    }
                    _ => return None,
                };
                Some((typ, fields))
            })
            .collect()
    }

    #[cfg(feature = "codec")]
    #[test]
    fn renumbered_pictures_decode_to_the_same_pixels() {
        use crate::codec::{H264Config, H264Decoder, H264Encoder};
        use crate::media::TestPattern;

        let mut encoder = H264Encoder::new(H264Config::new(640, 360).bitrate_kbps(500)).unwrap();
        let mut pattern = TestPattern::new(640, 360).unwrap();
        let (mut original, mut renumbered) =
            (H264Decoder::new().unwrap(), H264Decoder::new().unwrap());
        let mut compared = 0;
        for i in 0..30u64 {
            if i == 20 {
                encoder.request_keyframe();
            }
            let Some(unit) = encoder.encode(&pattern.next_frame(i * 33_333)).unwrap() else {
                continue;
            };
            // Id 1, then from the keyframe at picture 20 on the largest an SPS may have.
            let id = if i < 20 { 1 } else { MAX_SPS_ID };
            let data = with_parameter_set_id(&unit.data, id).expect("OpenH264's output parses");
            for (typ, fields) in ids(&data) {
                assert!(fields.iter().all(|f| *f == id), "type {typ}: {fields:?}");
            }
            assert!(
                ids(&unit.data)
                    .iter()
                    .all(|(_, f)| f.iter().all(|v| *v == 0))
            );
            let mut copy = unit.clone();
            copy.data = data.into();
            let a = original.decode_frame(&unit).unwrap();
            let b = renumbered.decode_frame(&copy).unwrap();
            let (a, b) = (a.expect("decoded"), b.expect("decoded"));
            for plane in 0..3 {
                let mut sa = Vec::new();
                let mut sb = Vec::new();
                assert_eq!(
                    a.tight_plane(plane, &mut sa),
                    b.tight_plane(plane, &mut sb),
                    "picture {i}"
                );
            }
            compared += 1;
        }
        assert!(compared >= 28, "{compared} pictures");
    }

    #[test]
    fn an_id_above_what_an_sps_allows_is_refused() {
        assert_eq!(with_parameter_set_id(&[0, 0, 0, 1, 0x67, 0x42], 32), None);
    }
}
