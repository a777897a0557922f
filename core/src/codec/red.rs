//! Redundant audio (RFC 2198, "RED"): each Opus packet carries, besides its own frame, a copy
//! of the frame sent [`RED_DISTANCE`] packets before it, so a frame survives when its own
//! packet is lost and the copy's is not.
//!
//! Why this and not only Opus's in-band FEC: FEC rebuilds a frame from the packet right
//! after it, so two losses in a row lose the first for good; a typhoon's links lose in
//! bursts. Measured on the simulated 8 % burst-loss profile (mean burst 4 datagrams, two legs
//! through the server): 5.2–5.6 % of a voice's frames concealed with FEC alone; a model of
//! the same links puts a copy 2 packets back at 1.0 % and 3 back at 0.6 % (the copy must
//! fall outside the burst that took the frame; FEC still covers the packet right after).
//! Each leg repairs on its own: the server rebuilds what its publisher's copies bring back
//! and sends copies of its own to each madang subscriber whose downlink loses.
//!
//! A copy is only sent when its frame lies exactly [`RED_DISTANCE`] frames back with no pause
//! in between (DTX), so a receiver finds a copy's sequence number from its timestamp offset
//! (one 20 ms frame per packet, as madang sends): [`Red::redundant_packets`].
//!
//! Pure: parsing, building and the sender's history; no I/O.

use bytes::{BufMut, Bytes, BytesMut};

/// How many packets back the copy in a packet is from: past a burst that took both a frame
/// and the packet after it (whose in-band FEC is the other way back), at 20 ms of playout
/// delay per step.
pub const RED_DISTANCE: u16 = 2;

/// RTP timestamp ticks of one 20 ms Opus frame at 48 kHz.
pub const OPUS_FRAME_TICKS: u32 = 960;

/// Largest timestamp offset a block header carries (14 bits).
const MAX_OFFSET: u32 = (1 << 14) - 1;
/// Largest block a block header carries (10 bits).
const MAX_BLOCK: usize = (1 << 10) - 1;

/// Why a payload is not RFC 2198 redundant audio.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedError {
    /// The headers or blocks run past the payload's end.
    #[error("redundant audio payload truncated")]
    Truncated,
}

/// One redundant block: an earlier frame, `ts_offset` ticks before the packet's timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedBlock {
    /// The block's payload type (Opus's).
    pub payload_type: u8,
    /// How far before the packet's timestamp the block's frame starts, in RTP ticks.
    pub ts_offset: u32,
    /// The frame.
    pub data: Bytes,
}

/// A parsed RED payload: the packet's own frame and the copies of earlier ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Red {
    /// Payload type of the primary frame.
    pub payload_type: u8,
    /// The packet's own frame.
    pub primary: Bytes,
    /// Copies of earlier frames, oldest first.
    pub redundant: Vec<RedBlock>,
}

impl Red {
    /// Parses an RTP payload of the RED format. The blocks share `payload`'s buffer.
    pub fn parse(payload: &Bytes) -> Result<Self, RedError> {
        let mut headers = Vec::new();
        let mut at = 0;
        loop {
            let first = *payload.get(at).ok_or(RedError::Truncated)?;
            if first & 0x80 == 0 {
                at += 1;
                break;
            }
            let h = payload.get(at..at + 4).ok_or(RedError::Truncated)?;
            let word = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
            headers.push((
                first & 0x7f,
                (word >> 10) & MAX_OFFSET,
                (word & MAX_BLOCK as u32) as usize,
            ));
            at += 4;
        }
        let payload_type = payload[at - 1] & 0x7f;
        let mut redundant = Vec::with_capacity(headers.len());
        for (pt, ts_offset, len) in headers {
            let end = at + len;
            if end > payload.len() {
                return Err(RedError::Truncated);
            }
            redundant.push(RedBlock {
                payload_type: pt,
                ts_offset,
                data: payload.slice(at..end),
            });
            at = end;
        }
        Ok(Self {
            payload_type,
            primary: payload.slice(at..),
            redundant,
        })
    }

    /// The redundant frames as the packets they copy: `(sequence number, timestamp, frame)`
    /// of a packet numbered `seq` with `timestamp`, each copy's number found from its offset
    /// in whole 20 ms frames. Blocks of another payload type, empty ones and offsets that
    /// are no whole number of frames are left out.
    pub fn redundant_packets(
        &self,
        seq: u16,
        timestamp: u32,
    ) -> impl Iterator<Item = (u16, u32, Bytes)> + '_ {
        self.redundant.iter().filter_map(move |b| {
            let frames = b.ts_offset / OPUS_FRAME_TICKS;
            (b.payload_type == self.payload_type
                && !b.data.is_empty()
                && frames > 0
                && b.ts_offset % OPUS_FRAME_TICKS == 0)
                .then(|| {
                    (
                        seq.wrapping_sub(frames as u16),
                        timestamp.wrapping_sub(b.ts_offset),
                        b.data.clone(),
                    )
                })
        })
    }
}

/// Builds a RED payload: the `redundant` blocks, oldest first, then the primary frame.
/// Blocks too large or too far back for a block header are left out.
pub fn build(payload_type: u8, primary: &[u8], redundant: &[RedBlock]) -> Bytes {
    let fits = |b: &&RedBlock| b.data.len() <= MAX_BLOCK && b.ts_offset <= MAX_OFFSET;
    let blocks: Vec<&RedBlock> = redundant.iter().filter(fits).collect();
    let size = 1 + primary.len() + blocks.iter().map(|b| 4 + b.data.len()).sum::<usize>();
    let mut out = BytesMut::with_capacity(size);
    for b in &blocks {
        out.put_u32(
            0x8000_0000
                | (u32::from(b.payload_type & 0x7f) << 24)
                | (b.ts_offset << 10)
                | b.data.len() as u32,
        );
    }
    out.put_u8(payload_type & 0x7f);
    for b in &blocks {
        out.put_slice(&b.data);
    }
    out.put_slice(primary);
    out.freeze()
}

/// A sender's memory of its last packets, from which each new packet takes its copy.
#[derive(Debug, Default, Clone)]
pub struct RedHistory {
    /// `(sequence number, timestamp, frame)` of the last packets sent, oldest first.
    sent: std::collections::VecDeque<(u16, u32, Bytes)>,
}

impl RedHistory {
    /// The payload for the packet `(seq, timestamp)` of Opus frame `frame` (payload type
    /// `payload_type`): with a copy of the frame [`RED_DISTANCE`] packets back when that
    /// packet was sent [`RED_DISTANCE`] frames ago (no pause between), else the primary
    /// alone. Remembers the frame for the packets after it.
    pub fn wrap(&mut self, payload_type: u8, seq: u16, timestamp: u32, frame: &Bytes) -> Bytes {
        let back = seq.wrapping_sub(RED_DISTANCE);
        let offset = u32::from(RED_DISTANCE) * OPUS_FRAME_TICKS;
        let copy = self
            .sent
            .iter()
            .find(|(s, ts, _)| *s == back && timestamp.wrapping_sub(*ts) == offset)
            .map(|(_, _, data)| RedBlock {
                payload_type,
                ts_offset: offset,
                data: data.clone(),
            });
        self.remember(seq, timestamp, frame);
        build(payload_type, frame, copy.as_slice())
    }

    /// Notes a packet sent without redundancy, so the packets after it can carry its copy
    /// once redundancy is switched on.
    pub fn remember(&mut self, seq: u16, timestamp: u32, frame: &Bytes) {
        if self.sent.len() > usize::from(RED_DISTANCE) {
            self.sent.pop_front();
        }
        self.sent.push_back((seq, timestamp, frame.clone()));
    }
}

/// Whether a link's loss calls for redundancy, with hysteresis: on at [`RED_ON_LOSS`] or
/// more, off again below [`RED_OFF_LOSS`].
pub fn red_wanted(currently: bool, loss: f64) -> bool {
    if currently {
        loss >= RED_OFF_LOSS
    } else {
        loss >= RED_ON_LOSS
    }
}

/// A link's loss as its receiver reports tell it, smoothed (each report moves the figure a
/// quarter of the way; the first is taken as it is), and whether it calls for copies
/// ([`red_wanted`]'s hysteresis).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RedSwitch {
    loss: Option<f64>,
    wanted: bool,
}

impl RedSwitch {
    /// A receiver report's `fraction lost` (0..=255, RFC 3550) for the stream.
    pub fn on_report(&mut self, fraction_lost: u8) {
        let reported = f64::from(fraction_lost) / 256.0;
        let loss = self
            .loss
            .map_or(reported, |prev| prev + (reported - prev) / 4.0);
        self.loss = Some(loss);
        self.wanted = red_wanted(self.wanted, loss);
    }

    /// The smoothed loss (0.0 … 1.0); `None` before the first report.
    pub fn loss(&self) -> Option<f64> {
        self.loss
    }

    /// Whether the loss calls for copies.
    pub fn wanted(&self) -> bool {
        self.wanted
    }
}

/// Whether a link whose estimate is `estimate` has room for audio of `audio_with_copies`
/// bit/s (copies included): at most half of what its queues allow, the delay-based half of
/// the estimate. A link that loses because it is full shows it there, and more audio would
/// only lose more; random loss lowers only the loss-based half, and that is where copies
/// help. Judged on the whole estimate, the `disaster` profile's downlinks (8 % loss in
/// bursts, 400 kbit/s; estimates 60–270 kbit/s, their delay-based halves 300–440) sent
/// almost no copies, and the worst pair's voice lost 6.9–9.2 % of its frames.
#[cfg(feature = "net")]
pub fn room_for_copies(estimate: &crate::room::EstimateDetail, audio_with_copies: f64) -> bool {
    estimate.delay_based_bps >= 2.0 * audio_with_copies
}

/// Loss (0.0 … 1.0) at which a sender starts sending copies: a link that loses less keeps
/// the copies' bits (as much again as the Opus bitrate) for video, and the in-band FEC
/// rebuilds most of its losses alone (random loss rarely takes two packets in a row).
pub const RED_ON_LOSS: f64 = 0.02;
/// Loss below which a sender stops again.
pub const RED_OFF_LOSS: f64 = 0.01;

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(i: u8) -> Bytes {
        Bytes::from(vec![i; 40 + i as usize])
    }

    #[test]
    fn a_payload_built_parses_back_with_its_blocks() {
        let copy = RedBlock {
            payload_type: 111,
            ts_offset: 1920,
            data: frame(1),
        };
        let payload = build(111, &frame(3), std::slice::from_ref(&copy));
        assert_eq!(payload.len(), 4 + 1 + copy.data.len() + 43);
        let red = Red::parse(&payload).unwrap();
        assert_eq!(red.payload_type, 111);
        assert_eq!(red.primary, frame(3));
        assert_eq!(red.redundant, vec![copy]);
        let copies: Vec<_> = red.redundant_packets(10, 5000).collect();
        assert_eq!(copies, vec![(8, 5000 - 1920, frame(1))]);
        // Across the wrap of both counters.
        let copies: Vec<_> = red.redundant_packets(1, 100).collect();
        assert_eq!(copies[0].0, 65535);
        assert_eq!(copies[0].1, 100u32.wrapping_sub(1920));
    }

    #[test]
    fn a_primary_alone_is_one_header_byte() {
        let payload = build(111, &frame(2), &[]);
        assert_eq!(payload[0], 111);
        let red = Red::parse(&payload).unwrap();
        assert_eq!(red.primary, frame(2));
        assert!(red.redundant.is_empty());
    }

    #[test]
    fn truncated_payloads_are_errors_not_panics() {
        let copy = RedBlock {
            payload_type: 111,
            ts_offset: 960,
            data: frame(1),
        };
        let payload = build(111, &frame(3), &[copy]);
        for cut in 0..6 {
            assert_eq!(
                Red::parse(&payload.slice(..cut)),
                Err(RedError::Truncated),
                "{cut}"
            );
        }
        assert!(Red::parse(&Bytes::new()).is_err());
    }

    #[test]
    fn copies_are_taken_only_across_whole_frames_without_a_pause() {
        let mut h = RedHistory::default();
        let mut ts = 0u32;
        let mut payloads = Vec::new();
        for seq in 0..5u16 {
            payloads.push(h.wrap(111, seq, ts, &frame(seq as u8)));
            // A DTX pause after packet 2: the next packet's timestamp jumps.
            ts += if seq == 2 {
                20 * OPUS_FRAME_TICKS
            } else {
                OPUS_FRAME_TICKS
            };
        }
        let copies = |p: &Bytes, seq: u16, ts: u32| -> Vec<u16> {
            Red::parse(p)
                .unwrap()
                .redundant_packets(seq, ts)
                .map(|c| c.0)
                .collect()
        };
        assert!(copies(&payloads[0], 0, 0).is_empty());
        assert!(copies(&payloads[1], 1, 960).is_empty());
        assert_eq!(copies(&payloads[2], 2, 1920), vec![0]);
        // Packet 3 follows the pause: packet 1 is not two frames back, no copy.
        assert!(copies(&payloads[3], 3, 1920 + 20 * 960).is_empty());
        assert!(copies(&payloads[4], 4, 1920 + 21 * 960).is_empty());
    }

    #[test]
    fn blocks_past_the_header_limits_are_left_out() {
        let big = RedBlock {
            payload_type: 111,
            ts_offset: 960,
            data: Bytes::from(vec![0; 1024]),
        };
        let far = RedBlock {
            payload_type: 111,
            ts_offset: 20_000,
            data: frame(1),
        };
        let red = Red::parse(&build(111, &frame(2), &[big, far])).unwrap();
        assert!(red.redundant.is_empty());
        assert_eq!(red.primary, frame(2));
    }

    #[test]
    fn redundancy_switches_on_at_two_percent_and_off_below_one() {
        assert!(!red_wanted(false, 0.015));
        assert!(red_wanted(false, 0.02));
        assert!(red_wanted(true, 0.015));
        assert!(!red_wanted(true, 0.005));
    }

    #[cfg(feature = "net")]
    #[test]
    fn room_for_copies_is_judged_on_the_queues_not_on_random_loss() {
        let link = |delay_based_bps: f64, loss_based_bps: f64| crate::room::EstimateDetail {
            delay_based_bps,
            loss_based_bps,
            loss: 0.08,
        };
        // Random loss brought the loss-based half down to 60 kbit/s; the queues allow 300.
        assert!(room_for_copies(&link(300_000.0, 60_000.0), 144_000.0));
        // A link full at 250 kbit/s has no room for 144 kbit/s of audio with copies.
        assert!(!room_for_copies(&link(250_000.0, 250_000.0), 144_000.0));
    }

    #[test]
    fn the_switch_follows_smoothed_reports_with_hysteresis() {
        let mut switch = RedSwitch::default();
        assert_eq!((switch.loss(), switch.wanted()), (None, false));
        // 2.3 % at once: the first report is taken as it is.
        switch.on_report(6);
        assert!(switch.wanted(), "{switch:?}");
        // Clean reports: 2.3 → 1.76 → 1.32 → 0.99 %; off only below 1 %.
        for (i, expect) in [true, true, false].into_iter().enumerate() {
            switch.on_report(0);
            assert_eq!(switch.wanted(), expect, "report {i}: {switch:?}");
        }
        // One lossy report among clean ones moves the figure a quarter of the way.
        switch.on_report(26);
        assert!((switch.loss().unwrap() - (0.0099 + (0.1016 - 0.0099) / 4.0)).abs() < 1e-3);
    }
}
