//! Hostile input — random bytes and mutated real data — into every parser and decoder: errors
//! are fine, panics and crashes are not.

mod common;

use common::encode_pattern;
use madang::codec::{H264Config, H264Decoder, OpusConfig, OpusDecoder, OpusEncoder};
use madang::media::{
    Channels, SpeechSource, TestPattern, WavReader, WavWriter, Y4mReader, Y4mWriter,
};
use proptest::prelude::*;
use std::sync::OnceLock;

fn h264_units() -> &'static Vec<Vec<u8>> {
    static UNITS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    UNITS.get_or_init(|| {
        let (_, units) = encode_pattern(H264Config::new(320, 180).keyframe_interval(4), 8);
        units.into_iter().map(|u| u.data.to_vec()).collect()
    })
}

fn y4m_file() -> Vec<u8> {
    let mut w = Y4mWriter::new(Vec::new(), 32, 16, 30, 1).unwrap();
    let mut p = TestPattern::new(32, 16).unwrap();
    for i in 0..2 {
        w.write_frame(&p.next_frame(i)).unwrap();
    }
    w.finish().unwrap()
}

fn wav_file() -> Vec<u8> {
    let mut w = WavWriter::new(std::io::Cursor::new(Vec::new()), Channels::Stereo).unwrap();
    let mut s = SpeechSource::new(Channels::Stereo, 10).unwrap();
    for _ in 0..3 {
        w.write_frame(&s.next_frame()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Applies byte edits (position, new value), a truncation and an insertion to `data`.
fn mutate(
    mut data: Vec<u8>,
    edits: &[(usize, u8)],
    cut: usize,
    insert: (usize, Vec<u8>),
) -> Vec<u8> {
    if data.is_empty() {
        return data;
    }
    for &(pos, value) in edits {
        let i = pos % data.len();
        data[i] = value;
    }
    let (at, bytes) = insert;
    let at = at % (data.len() + 1);
    data.splice(at..at, bytes);
    let keep = data.len() - cut % (data.len() + 1);
    data.truncate(keep);
    data
}

fn read_all_y4m(bytes: &[u8]) {
    if let Ok(mut r) = Y4mReader::new(bytes) {
        for _ in 0..4 {
            match r.read_frame() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
}

fn read_all_wav(bytes: &[u8]) {
    if let Ok(mut r) = WavReader::new(bytes) {
        for _ in 0..8 {
            match r.read_frame(10) {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let mut buf = [0i16; 64];
        let _ = r.read_samples(&mut buf);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn h264_decoder_survives_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut d = H264Decoder::new().unwrap();
        let _ = d.decode(&data);
        // With a start code in front, the bytes reach OpenH264 itself.
        let mut framed = vec![0, 0, 0, 1, 0x67];
        framed.extend_from_slice(&data);
        let _ = d.decode(&framed);
        let mut framed = vec![0, 0, 0, 1, 0x65];
        framed.extend_from_slice(&data);
        let _ = d.decode(&framed);
    }

    #[test]
    fn h264_decoder_survives_mutated_streams(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..12),
        cut in any::<usize>(),
        insert in (any::<usize>(), proptest::collection::vec(any::<u8>(), 0..16)),
        which in 0usize..8,
    ) {
        let units = h264_units();
        let mut d = H264Decoder::new().unwrap();
        for (i, unit) in units.iter().enumerate() {
            let data = if i == which { mutate(unit.clone(), &edits, cut, insert.clone()) } else { unit.clone() };
            let _ = d.decode(&data);
        }
    }

    #[test]
    fn y4m_reader_survives_mutations(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
        insert in (any::<usize>(), proptest::collection::vec(any::<u8>(), 0..16)),
    ) {
        read_all_y4m(&mutate(y4m_file(), &edits, cut, insert));
    }

    #[test]
    fn y4m_reader_survives_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        read_all_y4m(&data);
        read_all_y4m(&[b"YUV4MPEG2 ".as_slice(), &data].concat());
    }

    #[test]
    fn wav_reader_survives_mutations(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
        insert in (any::<usize>(), proptest::collection::vec(any::<u8>(), 0..16)),
    ) {
        read_all_wav(&mutate(wav_file(), &edits, cut, insert));
    }

    #[test]
    fn wav_reader_survives_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        read_all_wav(&data);
        read_all_wav(&[b"RIFF\0\0\0\0WAVE".as_slice(), &data].concat());
    }

    #[test]
    fn opus_decoder_survives_random_and_mutated_packets(
        data in proptest::collection::vec(any::<u8>(), 0..1500),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut d = OpusDecoder::new(Channels::Stereo).unwrap();
        let _ = d.decode(&data, 0);
        let _ = d.decode_fec(&data, 0);
        let mut e = OpusEncoder::new(OpusConfig::new(Channels::Stereo)).unwrap();
        let mut s = SpeechSource::new(Channels::Stereo, 20).unwrap();
        for _ in 0..3 {
            if let Some(p) = e.encode(&s.next_frame()).unwrap() {
                let _ = d.decode(&mutate(p.data.to_vec(), &edits, 0, (0, vec![])), 0);
            }
        }
    }
}
