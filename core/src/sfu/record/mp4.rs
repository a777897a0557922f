//! Fragmented MP4 (ISO BMFF, ISO/IEC 14496-12) for recordings: an init segment (`ftyp`,
//! `moov` with one H.264 and one Opus track, either optional) and then self-contained
//! fragments (`moof` + `mdat`), one after another in the same file. A reader needs only the
//! init segment and whole fragments, so a file cut anywhere — a crash, `kill -9` — plays up
//! to its last whole fragment. Pure: bytes in, bytes out; the boxes are written by the
//! `mp4-atom` crate.
//!
//! Video samples are length-prefixed NAL units (AVC file format, `avc1`, 4-byte lengths),
//! with the parameter sets kept in band as well, so a change of picture size mid-file still
//! decodes. Audio samples are Opus packets as they came (Opus in ISO BMFF, `Opus`/`dOps`).

use mp4_atom::{
    Audio, Avc1, Avcc, Codec, Dinf, Dops, Dref, Encode, Ftyp, Hdlr, Mdat, Mdhd, Mdia, Mehd, Mfhd,
    Minf, Moof, Moov, Mvex, Mvhd, Opus, Smhd, Stbl, Stsd, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun,
    TrunEntry, Url, Visual, Vmhd,
};

use crate::codec::nal::{NAL_PPS, NAL_SPS, nal_type, nal_units, rtp_payload_sps};

/// Ticks per second of the video track (RTP's H.264 clock).
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Ticks per second of the audio track (Opus's clock).
pub const AUDIO_TIMESCALE: u32 = 48_000;
/// Ticks per second of the movie header (milliseconds).
const MOVIE_TIMESCALE: u32 = 1000;
/// Sample flags of a sync sample (depends on no other: an IDR picture, any Opus packet).
const SYNC: u32 = 0x0200_0000;
/// Sample flags of a picture that depends on others and is no sync sample.
const NON_SYNC: u32 = 0x0101_0000;
/// Samples of `Opus` in ISO BMFF are decoded with this many samples skipped at the start
/// (RFC 7845 §4.2: 80 ms is the encoder delay of every libopus mode at most; 312 samples is
/// what libopus itself reports for its default settings).
const OPUS_PRE_SKIP: u16 = 312;

/// What the init segment says of the video track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoFormat {
    /// Picture width, pixels.
    pub width: u32,
    /// Picture height, pixels.
    pub height: u32,
    /// The sequence parameter set (NAL unit with its header byte, no start code).
    pub sps: Vec<u8>,
    /// The picture parameter set (likewise).
    pub pps: Vec<u8>,
}

impl VideoFormat {
    /// The format an Annex-B keyframe announces in its SPS and PPS; `None` when it carries
    /// neither or its SPS gives no picture size.
    pub fn of_keyframe(access_unit: &[u8]) -> Option<Self> {
        let mut sps = None;
        let mut pps = None;
        for unit in nal_units(access_unit) {
            match nal_type(unit) {
                Some(NAL_SPS) if sps.is_none() => sps = Some(unit.to_vec()),
                Some(NAL_PPS) if pps.is_none() => pps = Some(unit.to_vec()),
                _ => {}
            }
        }
        let (sps, pps) = (sps?, pps?);
        // A single NAL unit is also an RTP payload of that unit.
        let info = rtp_payload_sps(&sps)?;
        Some(Self {
            width: info.width,
            height: info.height,
            sps,
            pps,
        })
    }
}

/// What the init segment says of the audio track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioFormat {
    /// 1 or 2.
    pub channels: u8,
}

impl AudioFormat {
    /// The format an Opus packet's table-of-contents byte announces (its stereo flag).
    pub fn of_packet(packet: &[u8]) -> Self {
        let stereo = packet.first().is_some_and(|toc| toc & 0x04 != 0);
        Self {
            channels: if stereo { 2 } else { 1 },
        }
    }
}

/// The tracks of one file, and their track ids (video first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracks {
    /// The H.264 track, if any.
    pub video: Option<VideoFormat>,
    /// The Opus track, if any.
    pub audio: Option<AudioFormat>,
}

impl Tracks {
    fn video_id(&self) -> Option<u32> {
        self.video.as_ref().map(|_| 1)
    }

    fn audio_id(&self) -> Option<u32> {
        self.audio.map(|_| if self.video.is_some() { 2 } else { 1 })
    }
}

/// One sample of a fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Decode time, in the track's timescale, from the start of the file.
    pub time: u64,
    /// Duration, in the track's timescale.
    pub duration: u32,
    /// A sync sample (a keyframe; every audio packet).
    pub sync: bool,
    /// The sample's bytes: length-prefixed NAL units, or one Opus packet.
    pub data: Vec<u8>,
}

/// Why a segment could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write MP4: {0}")]
pub struct Mp4Error(#[from] mp4_atom::Error);

/// Where in the init segment the movie's duration (`mehd`, 64 bits, in milliseconds) sits,
/// to be filled in when a recording ends cleanly.
pub fn duration_offset(init: &[u8]) -> Option<usize> {
    init.windows(4)
        .position(|w| w == b"mehd")
        // fourcc, version and flags, then the duration.
        .map(|at| at + 8)
}

/// The init segment of a file with `tracks`: `ftyp` and `moov`. The movie's duration is
/// zero (unknown) until [`duration_offset`] is patched.
pub fn init_segment(tracks: &Tracks) -> Result<Vec<u8>, Mp4Error> {
    let mut out = Vec::new();
    Ftyp {
        major_brand: b"isom".into(),
        minor_version: 0x200,
        compatible_brands: vec![
            b"isom".into(),
            b"iso6".into(),
            b"avc1".into(),
            b"mp41".into(),
        ],
    }
    .encode(&mut out)?;
    let mut trak = Vec::new();
    let mut trex = Vec::new();
    if let (Some(video), Some(id)) = (&tracks.video, tracks.video_id()) {
        trak.push(video_trak(video, id));
        trex.push(track_extends(id));
    }
    if let (Some(audio), Some(id)) = (tracks.audio, tracks.audio_id()) {
        trak.push(audio_trak(audio, id));
        trex.push(track_extends(id));
    }
    Moov {
        mvhd: Mvhd {
            timescale: MOVIE_TIMESCALE,
            rate: 1.into(),
            volume: 1.into(),
            next_track_id: trak.len() as u32 + 1,
            ..Default::default()
        },
        mvex: Some(Mvex {
            mehd: Some(Mehd {
                fragment_duration: 0,
            }),
            trex,
        }),
        trak,
        ..Default::default()
    }
    .encode(&mut out)?;
    Ok(out)
}

fn track_extends(track_id: u32) -> Trex {
    Trex {
        track_id,
        default_sample_description_index: 1,
        default_sample_duration: 0,
        default_sample_size: 0,
        default_sample_flags: 0,
    }
}

fn media(timescale: u32, handler: &[u8; 4], name: &str, minf: Minf) -> Mdia {
    Mdia {
        mdhd: Mdhd {
            timescale,
            language: "und".into(),
            ..Default::default()
        },
        hdlr: Hdlr {
            handler: handler.into(),
            name: name.into(),
        },
        minf,
    }
}

fn media_info(codec: Codec) -> Minf {
    Minf {
        dinf: Dinf {
            dref: Dref {
                entries: vec![Url::default().into()],
            },
        },
        stbl: Stbl {
            stsd: Stsd {
                codecs: vec![codec],
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

fn video_trak(video: &VideoFormat, track_id: u32) -> Trak {
    let sps = &video.sps;
    let avc1 = Avc1 {
        visual: Visual {
            data_reference_index: 1,
            width: video.width.min(u16::MAX as u32) as u16,
            height: video.height.min(u16::MAX as u32) as u16,
            ..Default::default()
        },
        avcc: Avcc {
            configuration_version: 1,
            avc_profile_indication: sps.get(1).copied().unwrap_or(66),
            profile_compatibility: sps.get(2).copied().unwrap_or(0),
            avc_level_indication: sps.get(3).copied().unwrap_or(31),
            length_size: 4,
            sequence_parameter_sets: vec![video.sps.clone()],
            picture_parameter_sets: vec![video.pps.clone()],
            ext: None,
        },
        ..Default::default()
    };
    let mut minf = media_info(avc1.into());
    minf.vmhd = Some(Vmhd::default());
    Trak {
        tkhd: Tkhd {
            track_id,
            enabled: true,
            in_movie: true,
            width: (video.width.min(u16::MAX as u32) as u16).into(),
            height: (video.height.min(u16::MAX as u32) as u16).into(),
            ..Default::default()
        },
        mdia: media(VIDEO_TIMESCALE, b"vide", "madang video", minf),
        ..Default::default()
    }
}

fn audio_trak(audio: AudioFormat, track_id: u32) -> Trak {
    let opus = Opus {
        audio: Audio {
            data_reference_index: 1,
            channel_count: audio.channels.into(),
            sample_size: 16,
            sample_rate: (AUDIO_TIMESCALE as u16).into(),
        },
        dops: Dops {
            output_channel_count: audio.channels,
            pre_skip: OPUS_PRE_SKIP,
            input_sample_rate: AUDIO_TIMESCALE,
            output_gain: 0,
            channel_mapping: None,
        },
        btrt: None,
    };
    let mut minf = media_info(opus.into());
    minf.smhd = Some(Smhd::default());
    Trak {
        tkhd: Tkhd {
            track_id,
            enabled: true,
            in_movie: true,
            alternate_group: 1,
            volume: 1.into(),
            ..Default::default()
        },
        mdia: media(AUDIO_TIMESCALE, b"soun", "madang audio", minf),
        ..Default::default()
    }
}

/// Fragment number `sequence` (from 1) with these samples of each track (either may be
/// empty; a track the file lacks must be). Samples of a track are in decode order.
pub fn fragment(
    tracks: &Tracks,
    sequence: u32,
    video: &[Sample],
    audio: &[Sample],
) -> Result<Vec<u8>, Mp4Error> {
    let runs: Vec<(u32, &[Sample])> = [(tracks.video_id(), video), (tracks.audio_id(), audio)]
        .into_iter()
        .filter_map(|(id, samples)| Some((id?, samples)))
        .filter(|(_, samples)| !samples.is_empty())
        .collect();
    let moof = |offsets: &[i32]| Moof {
        mfhd: Mfhd {
            sequence_number: sequence,
        },
        traf: runs
            .iter()
            .zip(offsets)
            .map(|(&(track_id, samples), &offset)| Traf {
                tfhd: Tfhd {
                    track_id,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: samples[0].time,
                }),
                trun: vec![Trun {
                    data_offset: Some(offset),
                    samples: samples
                        .iter()
                        .map(|s| TrunEntry {
                            duration: Some(s.duration),
                            size: Some(s.data.len() as u32),
                            flags: Some(if s.sync { SYNC } else { NON_SYNC }),
                            cts: None,
                        })
                        .collect::<Vec<_>>()
                        .into(),
                }],
                ..Default::default()
            })
            .collect(),
    };
    // The data offsets count from the start of the moof, whose size does not depend on
    // their values: measure it with zeros, then write it with the real ones.
    let mut sized = Vec::new();
    moof(&vec![0; runs.len()]).encode(&mut sized)?;
    let mut offset = sized.len() + 8; // the mdat header
    let mut offsets = Vec::with_capacity(runs.len());
    let mut data = Vec::new();
    for (_, samples) in &runs {
        offsets.push(offset as i32);
        for s in *samples {
            data.extend_from_slice(&s.data);
            offset += s.data.len();
        }
    }
    let mut out = Vec::with_capacity(offset);
    moof(&offsets).encode(&mut out)?;
    Mdat { data }.encode(&mut out)?;
    Ok(out)
}

/// An Annex-B access unit as an MP4 sample: each NAL unit behind its 4-byte length. Access
/// unit delimiters are left out (MP4 frames samples itself).
pub fn length_prefixed(access_unit: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(access_unit.len() + 16);
    for unit in nal_units(access_unit) {
        if nal_type(unit) == Some(9) {
            continue;
        }
        out.extend_from_slice(&(unit.len() as u32).to_be_bytes());
        out.extend_from_slice(unit);
    }
    out
}

/// The duration of an Opus packet in 48 kHz samples, from its table-of-contents byte(s)
/// (RFC 6716 §3.1); `None` for a malformed packet.
pub fn opus_duration(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let per_frame = match config {
        0..=11 => [480, 960, 1920, 2880][(config % 4) as usize], // SILK: 10/20/40/60 ms
        12..=15 => [480, 960][(config % 2) as usize],            // hybrid: 10/20 ms
        _ => [120, 240, 480, 960][(config % 4) as usize],        // CELT: 2.5/5/10/20 ms
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    Some(per_frame * frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp4_atom::Decode;

    #[test]
    fn opus_durations_follow_the_table_of_contents() {
        assert_eq!(opus_duration(&[0x78]), Some(960)); // CELT FB 20 ms, one frame
        assert_eq!(opus_duration(&[0x08]), Some(960)); // SILK NB 20 ms
        assert_eq!(opus_duration(&[0x79]), Some(1920)); // two 20 ms frames
        assert_eq!(opus_duration(&[0x7b, 0x03]), Some(2880)); // code 3, three frames
        assert_eq!(opus_duration(&[0x7b]), None);
        assert_eq!(opus_duration(&[]), None);
    }

    #[test]
    fn a_fragment_points_each_run_at_its_own_bytes() {
        let tracks = Tracks {
            video: None,
            audio: Some(AudioFormat { channels: 1 }),
        };
        let audio: Vec<Sample> = (0..3u8)
            .map(|i| Sample {
                time: 960 * u64::from(i),
                duration: 960,
                sync: true,
                data: vec![0x78, i, i],
            })
            .collect();
        let bytes = fragment(&tracks, 7, &[], &audio).unwrap();
        let mut buf = bytes.as_slice();
        let moof = Moof::decode(&mut buf).unwrap();
        assert_eq!(moof.mfhd.sequence_number, 7);
        let trun = &moof.traf[0].trun[0];
        let offset = trun.data_offset.unwrap() as usize;
        assert_eq!(&bytes[offset..offset + 3], &[0x78, 0, 0]);
        assert_eq!(&bytes[offset + 6..offset + 9], &[0x78, 2, 2]);
        assert_eq!(
            moof.traf[0].tfdt.as_ref().unwrap().base_media_decode_time,
            0
        );
        assert_eq!(Mdat::decode(&mut buf).unwrap().data.len(), 9);
    }

    #[test]
    fn the_duration_slot_is_found_in_the_init_segment() {
        let tracks = Tracks {
            video: None,
            audio: Some(AudioFormat { channels: 2 }),
        };
        let init = init_segment(&tracks).unwrap();
        let at = duration_offset(&init).unwrap();
        assert_eq!(&init[at - 8..at - 4], b"mehd");
        assert_eq!(&init[at..at + 8], &[0; 8]);
        assert_eq!(init[at - 4], 1, "version 1: a 64-bit duration");
    }
}
