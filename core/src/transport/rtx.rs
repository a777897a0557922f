//! Retransmission in its own stream (RTX, RFC 4588), as browsers send and expect it.
//!
//! A retransmitted packet travels on a second SSRC with its own payload type and sequence
//! numbers, its payload prefixed by the original sequence number (OSN). Receivers can then
//! tell a repair from the original, and a sender can probe for bandwidth with old packets
//! without breaking the media stream's numbering. madang's own clients offer it on their
//! receiving connections only (the server repairs and probes their downlinks there; see
//! `room::session::pc` for why not on sending ones); the server negotiates it with every
//! peer that offers it, which every browser does.
//!
//! Sending: [`wrap`] turns a cached packet into its RTX form. Receiving: [`RepairFlows`], an
//! interceptor on the server's publisher legs and the clients' receiving connections, turns
//! RTX packets back into the packets they
//! repair before anything above it looks at them — both the flows an offer declares
//! (`a=ssrc-group:FID`) and those of a simulcast layer, which are known only by the
//! `repaired-rtp-stream-id` header extension (`rtc` 0.21.1 drops those: "TODO: Add support
//! of handling repair rtp stream id (rrid)"; without this, a simulcast browser's
//! retransmissions would all be lost).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::sdp::extmap::{SDES_MID_URI, SDES_REPAIR_RTP_STREAM_ID_URI, SDES_RTP_STREAM_ID_URI};
use rtc::shared::error::Error as RtcError;

/// The MIME type of a retransmission stream.
pub const RTX_MIME_TYPE: &str = "video/rtx";
/// Payload type the server registers for RTX of H.264 (an answer takes the offer's).
pub const RTX_PAYLOAD_TYPE: u8 = 103;

/// Slot of [`RepairFlows`]: below rtc's NACK generator (7,000) and transport-wide feedback
/// receiver (8,000), as rtc's own FEC decoder is, so that what repairs a packet is seen as
/// that packet by everything above it.
pub const REPAIR_FLOWS_SLOT: usize = 6_500;

/// Most simulcast layers and repair flows one connection's [`RepairFlows`] learns from
/// packets: a publisher sends three layers and a flow for each; past this (a peer making up
/// SSRCs or rids) nothing new is learned, and the packets go on as they came.
pub const MAX_LEARNED: usize = 32;

/// `packet` as an RTX packet on `ssrc` with `payload_type` and RTX sequence number `seq`:
/// same timestamp, marker and header extensions, the original sequence number in front of
/// the payload (RFC 4588 §4).
pub fn wrap(packet: &rtc::rtp::Packet, ssrc: u32, payload_type: u8, seq: u16) -> rtc::rtp::Packet {
    let mut payload = bytes::BytesMut::with_capacity(packet.payload.len() + 2);
    payload.extend_from_slice(&packet.header.sequence_number.to_be_bytes());
    payload.extend_from_slice(&packet.payload);
    let mut header = packet.header.clone();
    header.ssrc = ssrc;
    header.payload_type = payload_type;
    header.sequence_number = seq;
    header.padding = false;
    rtc::rtp::Packet {
        header,
        payload: payload.freeze(),
    }
}

/// Rewrites an RTX packet into the packet it repairs, of `ssrc` and `payload_type`; `false`
/// (and the packet untouched) for one with no original in it: padding a sender probes with.
pub fn unwrap(packet: &mut rtc::rtp::Packet, ssrc: u32, payload_type: u8) -> bool {
    if packet.payload.len() < 2 {
        return false;
    }
    packet.header.sequence_number = u16::from_be_bytes([packet.payload[0], packet.payload[1]]);
    packet.header.ssrc = ssrc;
    packet.header.payload_type = payload_type;
    packet.header.padding = false;
    packet.payload = packet.payload.slice(2..);
    true
}

/// The stream a repair flow repairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Primary {
    ssrc: u32,
    payload_type: u8,
}

/// Turns RTX packets arriving on a connection back into the packets they repair (see the
/// module docs), and counts them in a counter shared with the engine.
pub struct RepairFlows {
    /// Header extension ids: MID, RID, repaired RID.
    mid: Option<u8>,
    rid: Option<u8>,
    rrid: Option<u8>,
    /// Simulcast layers by (MID, RID), from their packets' header extensions.
    layers: HashMap<(String, String), Primary>,
    /// Repair flows by their SSRC: declared in the offer, or learned from a packet that
    /// named the layer it repairs.
    flows: HashMap<u32, Primary>,
    repaired: Arc<AtomicU64>,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl RepairFlows {
    /// A connection's repair flows, counting each packet they restore in `repaired`.
    pub fn new(repaired: Arc<AtomicU64>) -> Self {
        Self {
            mid: None,
            rid: None,
            rrid: None,
            layers: HashMap::new(),
            flows: HashMap::new(),
            repaired,
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }

    fn extension(header: &rtc::rtp::header::Header, id: Option<u8>) -> Option<String> {
        let value = header.get_extension(id?)?;
        String::from_utf8(value.to_vec())
            .ok()
            .filter(|s| !s.is_empty())
    }

    /// The stream a packet repairs, if it is a repair: by its SSRC, or by the layer its
    /// repaired-RID extension names (learned for its SSRC's later packets, which may come
    /// without it).
    fn primary_of(&mut self, header: &rtc::rtp::header::Header) -> Option<Primary> {
        if let Some(primary) = self.flows.get(&header.ssrc) {
            return Some(*primary);
        }
        let rrid = Self::extension(header, self.rrid)?;
        let primary = match Self::extension(header, self.mid) {
            Some(mid) => self.layers.get(&(mid, rrid)).copied(),
            None => {
                // No MID: the RID alone, if only one m-line has a layer of that name.
                let mut found = self.layers.iter().filter(|((_, rid), _)| *rid == rrid);
                match (found.next(), found.next()) {
                    (Some((_, primary)), None) => Some(*primary),
                    _ => None,
                }
            }
        }?;
        if self.flows.len() < MAX_LEARNED {
            self.flows.insert(header.ssrc, primary);
        }
        Some(primary)
    }

    /// Notes the simulcast layer a media packet names.
    fn learn_layer(&mut self, header: &rtc::rtp::header::Header) {
        if self.layers.len() >= MAX_LEARNED {
            return;
        }
        // A layer already known, as nearly every packet of one is: compared as the bytes
        // they are, no string made (this runs on every packet a publisher sends).
        let (Some(mid), Some(rid)) = (
            self.mid.and_then(|id| header.get_extension(id)),
            self.rid.and_then(|id| header.get_extension(id)),
        ) else {
            return;
        };
        if self
            .layers
            .keys()
            .any(|(m, r)| m.as_bytes() == &mid[..] && r.as_bytes() == &rid[..])
        {
            return;
        }
        if let (Some(mid), Some(rid)) = (
            Self::extension(header, self.mid),
            Self::extension(header, self.rid),
        ) {
            self.layers.entry((mid, rid)).or_insert(Primary {
                ssrc: header.ssrc,
                payload_type: header.payload_type,
            });
        }
    }
}

impl std::fmt::Debug for RepairFlows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepairFlows")
            .field("layers", &self.layers.len())
            .field("flows", &self.flows.len())
            .finish_non_exhaustive()
    }
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for RepairFlows {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(packet) = &mut msg.message.packet {
            match self.primary_of(&packet.header) {
                Some(primary) => {
                    if unwrap(packet, primary.ssrc, primary.payload_type) {
                        self.repaired.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => self.learn_layer(&packet.header),
            }
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

impl Interceptor for RepairFlows {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}

    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}

    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        for e in &info.rtp_header_extensions {
            let id = u8::try_from(e.id).ok().filter(|id| *id != 0);
            match e.uri.as_str() {
                SDES_MID_URI => self.mid = id.or(self.mid),
                SDES_RTP_STREAM_ID_URI => self.rid = id.or(self.rid),
                SDES_REPAIR_RTP_STREAM_ID_URI => self.rrid = id.or(self.rrid),
                _ => {}
            }
        }
        if let Some(rtx) = info.ssrc_rtx {
            self.flows.insert(
                rtx,
                Primary {
                    ssrc: info.ssrc,
                    payload_type: info.payload_type,
                },
            );
        }
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        if let Some(rtx) = info.ssrc_rtx {
            self.flows.remove(&rtx);
        }
        self.flows.retain(|_, p| p.ssrc != info.ssrc);
        self.layers.retain(|_, p| p.ssrc != info.ssrc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::RTPHeaderExtension;

    const MID: u8 = 4;
    const RID: u8 = 10;
    const RRID: u8 = 11;

    fn media(ssrc: u32, seq: u16, extensions: &[(u8, &str)]) -> rtc::rtp::Packet {
        let mut header = rtc::rtp::header::Header {
            version: 2,
            payload_type: 102,
            sequence_number: seq,
            timestamp: 9000,
            marker: true,
            ssrc,
            ..Default::default()
        };
        for (id, value) in extensions {
            header.extension = true;
            header.extension_profile = rtc::rtp::header::EXTENSION_PROFILE_ONE_BYTE;
            header
                .set_extension(*id, bytes::Bytes::copy_from_slice(value.as_bytes()))
                .unwrap();
        }
        rtc::rtp::Packet {
            header,
            payload: bytes::Bytes::from_static(&[0x65, 1, 2, 3]),
        }
    }

    fn tagged(packet: rtc::rtp::Packet) -> TaggedPacket {
        TaggedPacket {
            now: Instant::now(),
            transport: Default::default(),
            message: Packet::Rtp(packet).into(),
        }
    }

    fn through(flows: &mut RepairFlows, packet: rtc::rtp::Packet) -> rtc::rtp::Packet {
        use rtc::sansio::Protocol;
        flows.handle_read(tagged(packet)).unwrap();
        match flows.poll_read().unwrap().message.packet {
            Packet::Rtp(p) => p,
            _ => unreachable!(),
        }
    }

    fn extensions() -> Vec<RTPHeaderExtension> {
        [
            (SDES_MID_URI, MID),
            (SDES_RTP_STREAM_ID_URI, RID),
            (SDES_REPAIR_RTP_STREAM_ID_URI, RRID),
        ]
        .into_iter()
        .map(|(uri, id)| RTPHeaderExtension {
            uri: uri.to_owned(),
            id: id as u16,
        })
        .collect()
    }

    #[test]
    fn wrap_then_unwrap_gives_the_original_back() {
        let original = media(7, 4242, &[(MID, "0")]);
        let rtx = wrap(&original, 99, 103, 17);
        assert_eq!(
            (rtx.header.ssrc, rtx.header.payload_type),
            (99, RTX_PAYLOAD_TYPE)
        );
        assert_eq!(rtx.header.sequence_number, 17);
        assert_eq!(&rtx.payload[..2], &4242u16.to_be_bytes());
        assert_eq!(rtx.header.get_extension(MID).unwrap().as_ref(), b"0");
        let mut back = rtx.clone();
        assert!(unwrap(&mut back, 7, 102));
        assert_eq!(back, original);
        // A padding-only probe has nothing to give back.
        let mut probe = rtx;
        probe.payload = bytes::Bytes::new();
        assert!(!unwrap(&mut probe, 7, 102));
        assert_eq!(probe.header.ssrc, 99);
    }

    #[test]
    fn a_declared_flow_is_restored_to_its_stream() {
        let repaired = Arc::new(AtomicU64::new(0));
        let mut flows = RepairFlows::new(repaired.clone());
        flows.bind_remote_stream(&StreamInfo {
            ssrc: 7,
            ssrc_rtx: Some(99),
            payload_type: 102,
            payload_type_rtx: Some(103),
            ..Default::default()
        });
        let original = media(7, 300, &[]);
        assert_eq!(through(&mut flows, original.clone()), original);
        assert_eq!(through(&mut flows, wrap(&original, 99, 103, 1)), original);
        assert_eq!(repaired.load(Ordering::Relaxed), 1);
        // Another stream's packets pass untouched.
        let other = media(8, 5, &[]);
        assert_eq!(through(&mut flows, other.clone()), other);
        assert_eq!(repaired.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_simulcast_layers_flow_is_found_by_the_rid_it_repairs() {
        let repaired = Arc::new(AtomicU64::new(0));
        let mut flows = RepairFlows::new(repaired.clone());
        for ssrc in [7, 8] {
            flows.bind_remote_stream(&StreamInfo {
                ssrc,
                payload_type: 102,
                rtp_header_extensions: extensions(),
                ..Default::default()
            });
        }
        // Layers "q" and "h" of mid 1 announce themselves.
        through(&mut flows, media(7, 10, &[(MID, "1"), (RID, "q")]));
        through(&mut flows, media(8, 20, &[(MID, "1"), (RID, "h")]));
        // A repair of "h" names it; the flow's later packets need not.
        let lost = media(8, 21, &[]);
        let mut rtx = wrap(&lost, 55, 103, 1);
        rtx.header
            .set_extension(MID, bytes::Bytes::from_static(b"1"))
            .unwrap();
        rtx.header
            .set_extension(RRID, bytes::Bytes::from_static(b"h"))
            .unwrap();
        let back = through(&mut flows, rtx);
        assert_eq!(
            (
                back.header.ssrc,
                back.header.sequence_number,
                back.payload.clone()
            ),
            (8, 21, lost.payload.clone())
        );
        let back = through(&mut flows, wrap(&media(8, 24, &[]), 55, 103, 2));
        assert_eq!((back.header.ssrc, back.header.sequence_number), (8, 24));
        assert_eq!(repaired.load(Ordering::Relaxed), 2);
        // A padding probe on the flow goes on as it came (its transport-wide number is
        // still acknowledged above); a repair of an unknown layer too.
        let mut probe = wrap(&media(8, 0, &[]), 55, 103, 3);
        probe.payload = bytes::Bytes::new();
        assert_eq!(through(&mut flows, probe).header.ssrc, 55);
        let mut unknown = wrap(&media(9, 1, &[]), 56, 103, 1);
        unknown
            .header
            .set_extension(RRID, bytes::Bytes::from_static(b"f"))
            .unwrap();
        assert_eq!(through(&mut flows, unknown).header.ssrc, 56);
        assert_eq!(repaired.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn what_is_learned_from_packets_is_bounded() {
        let mut flows = RepairFlows::new(Arc::default());
        flows.bind_remote_stream(&StreamInfo {
            ssrc: 7,
            payload_type: 102,
            rtp_header_extensions: extensions(),
            ..Default::default()
        });
        for i in 0..1000u32 {
            let rid = format!("r{i}");
            through(&mut flows, media(100 + i, 1, &[(MID, "1"), (RID, &rid)]));
        }
        assert_eq!(flows.layers.len(), MAX_LEARNED);
        // Repairs from made-up SSRCs, each naming a known layer.
        for i in 0..1000u32 {
            let mut rtx = wrap(&media(100, 1, &[]), 5000 + i, 103, 1);
            rtx.header
                .set_extension(MID, bytes::Bytes::from_static(b"1"))
                .unwrap();
            rtx.header
                .set_extension(RRID, bytes::Bytes::from_static(b"r0"))
                .unwrap();
            assert_eq!(through(&mut flows, rtx).header.ssrc, 100);
        }
        assert_eq!(flows.flows.len(), MAX_LEARNED);
    }
}
