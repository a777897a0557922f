//! WebRTC plumbing shared by the room client and the room server: the codecs both sides
//! negotiate (H.264 Constrained Baseline, Opus) with their RTCP feedback and header
//! extensions.

pub mod cc;
pub mod clock;
pub mod dtls;
pub mod jitter;
pub mod leg;
pub mod nack;
pub mod playout;
pub mod rtx;
pub mod twcc;

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MediaEngine,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::shared::error::Error as RtcError;

/// The session-level `a=tool` line (RFC 8866 §6.3) madang's clients put in their offers:
/// the server tells them from browsers by it (see [`twcc`]).
pub const SDP_TOOL: &str = concat!("a=tool:madang ", env!("CARGO_PKG_VERSION"));

/// `sdp` with [`SDP_TOOL`] among its session-level attributes (after its `t=` line).
pub fn with_sdp_tool(sdp: String) -> String {
    match sdp
        .find("\r\nt=")
        .and_then(|t| sdp[t + 2..].find("\r\n").map(|e| t + 2 + e + 2))
    {
        Some(at) => format!("{}{SDP_TOOL}\r\n{}", &sdp[..at], &sdp[at..]),
        None => sdp,
    }
}

/// Whether an offer was made by a madang client ([`SDP_TOOL`]).
pub fn made_by_madang(sdp: &str) -> bool {
    sdp.lines().any(|l| l.starts_with("a=tool:madang"))
}

/// Payload type madang offers for H.264.
pub const H264_PAYLOAD_TYPE: u8 = 102;
/// Payload type madang offers for Opus.
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// H.264 format parameters: Constrained Baseline level 3.1, non-interleaved packetization,
/// which every WebRTC browser decodes.
pub const H264_FMTP: &str =
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
/// Opus format parameters: 10 ms minimum packets, in-band FEC.
pub const OPUS_FMTP: &str = "minptime=10;useinbandfec=1";
/// SRTP replay window, in packets. The default (64) rejects a retransmission that comes back
/// after more than 64 newer packets: on a 240 ms round trip at 90 video packets per second
/// that is the third NACK round, and measured on a `disaster`-like link (8 % burst loss,
/// 120 ms each way) it cut every repair off at ~700 ms. 1024 is what browsers use.
pub const SRTP_REPLAY_WINDOW: usize = 1024;

/// Connectivity checks per candidate pair before ICE gives it up, one every 200 ms: 10 s.
/// The default (7, 1.4 s) gave up for good when the first 16 datagrams of each link were
/// lost (measured on simulated `lte,head=16`: no participant ever connected); a path that
/// loses its first packets is a path that needs a few more tries, not a dead one.
pub const ICE_ATTEMPTS: u16 = 50;

/// RFC 6464 client-to-mixer audio level header extension.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// The playout-delay header extension: the sender tells the receiver how long (at least) to
/// hold pictures before showing them.
pub const PLAYOUT_DELAY_URI: &str = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";

fn feedback(typ: &str, parameter: &str) -> RTCPFeedback {
    RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    }
}

/// The H.264 codec with NACK, PLI and FIR feedback.
pub fn h264_codec() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_H264.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: H264_FMTP.to_owned(),
            rtcp_feedback: vec![
                feedback("nack", ""),
                feedback("nack", "pli"),
                feedback("ccm", "fir"),
            ],
        },
        payload_type: H264_PAYLOAD_TYPE,
    }
}

/// The Opus codec (48 kHz, two channels as SDP always says for Opus).
pub fn opus_codec() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: OPUS_FMTP.to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: OPUS_PAYLOAD_TYPE,
    }
}

/// Payload type madang offers redundant audio under (RFC 2198; what Chromium offers too).
pub const RED_PAYLOAD_TYPE: u8 = 63;

/// Redundant Opus (RFC 2198, `red/48000/2` with `111/111`): each packet also carries a copy
/// of an earlier frame (see [`crate::codec::red`]).
pub fn red_codec() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: RED_MIME_TYPE.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: format!("{OPUS_PAYLOAD_TYPE}/{OPUS_PAYLOAD_TYPE}"),
            rtcp_feedback: vec![],
        },
        payload_type: RED_PAYLOAD_TYPE,
    }
}

/// The MIME type of redundant audio.
pub const RED_MIME_TYPE: &str = "audio/red";

/// The payload type a connection negotiated for redundant audio over `primary` (Opus), if
/// it did: a `red` format whose blocks are all `primary`.
pub fn red_payload_type(codecs: &[RTCRtpCodecParameters], primary: u8) -> Option<u8> {
    codecs
        .iter()
        .find(|c| {
            c.rtp_codec.mime_type.eq_ignore_ascii_case(RED_MIME_TYPE)
                && c.rtp_codec
                    .sdp_fmtp_line
                    .split('/')
                    .all(|pt| pt.trim().parse::<u8>() == Ok(primary))
        })
        .map(|c| c.payload_type)
}

/// A sending track of `kind` with madang's codec for it, a fixed SSRC and, with `rtx`, the
/// SSRC of its retransmission stream (see [`rtx`]).
pub fn media_track(
    stream: String,
    id: String,
    kind: crate::signal::TrackKind,
    ssrc: u32,
    rtx: Option<u32>,
) -> rtc::media_stream::MediaStreamTrack {
    track_of(stream, id, kind, [(String::new(), ssrc, rtx)])
}

/// A local track sent as simulcast: one encoding per `(rid, ssrc)`, each a layer (an empty
/// rid and one encoding: no simulcast).
pub fn layered_media_track(
    stream: String,
    id: String,
    kind: crate::signal::TrackKind,
    layers: &[(String, u32)],
) -> rtc::media_stream::MediaStreamTrack {
    track_of(
        stream,
        id,
        kind,
        layers.iter().map(|(rid, ssrc)| (rid.clone(), *ssrc, None)),
    )
}

/// A local track of one encoding per `(rid, ssrc, rtx ssrc)`.
fn track_of(
    stream: String,
    id: String,
    kind: crate::signal::TrackKind,
    encodings: impl IntoIterator<Item = (String, u32, Option<u32>)>,
) -> rtc::media_stream::MediaStreamTrack {
    use crate::signal::TrackKind;
    use rtc::rtp_transceiver::rtp_sender::{
        RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpRtxParameters,
    };
    let (codec, rtp_kind) = match kind {
        TrackKind::Video => (h264_codec(), RtpCodecKind::Video),
        TrackKind::Audio => (opus_codec(), RtpCodecKind::Audio),
    };
    let encodings = encodings
        .into_iter()
        .map(|(rid, ssrc, rtx)| RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                rid,
                ssrc: Some(ssrc),
                rtx: rtx.map(|ssrc| RTCRtpRtxParameters { ssrc }),
                ..Default::default()
            },
            codec: codec.rtp_codec.clone(),
            ..Default::default()
        })
        .collect();
    rtc::media_stream::MediaStreamTrack::new(stream, id.clone(), id, rtp_kind, encodings)
}

/// A UDP datagram as a peer connection takes it in: arrived at `local` from `from`.
pub fn datagram(
    now: Instant,
    local: std::net::SocketAddr,
    from: std::net::SocketAddr,
    data: &[u8],
) -> rtc::shared::TaggedBytesMut {
    use rtc::shared::{TransportContext, TransportProtocol};
    rtc::shared::TaggedBytesMut {
        now,
        transport: TransportContext {
            local_addr: local,
            peer_addr: from,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message: bytes::BytesMut::from(data),
    }
}

/// Makes `local` the connection's one host candidate (no gathering: the address is known).
pub fn add_host_candidate(
    pc: &mut rtc::peer_connection::RTCPeerConnection,
    local: std::net::SocketAddr,
) -> Result<(), RtcError> {
    use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: local.ip().to_string(),
            port: local.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()?;
    pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json()?)
}

/// A media engine with exactly madang's codecs (redundant Opus among them), the audio-level extension and (video) the
/// playout-delay extension.
pub fn media_engine() -> Result<MediaEngine, rtc::shared::error::Error> {
    let mut engine = MediaEngine::default();
    engine.register_codec(h264_codec(), RtpCodecKind::Video)?;
    engine.register_codec(opus_codec(), RtpCodecKind::Audio)?;
    engine.register_codec(red_codec(), RtpCodecKind::Audio)?;
    engine.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: AUDIO_LEVEL_URI.to_owned(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    engine.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: PLAYOUT_DELAY_URI.to_owned(),
        },
        RtpCodecKind::Video,
        None,
    )?;
    Ok(engine)
}

/// The codec of H.264's retransmission stream (RFC 4588), which the server offers to
/// answer browsers with (see [`rtx`]).
pub fn h264_rtx_codec() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: rtx::RTX_MIME_TYPE.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: format!("apt={H264_PAYLOAD_TYPE}"),
            rtcp_feedback: vec![],
        },
        payload_type: rtx::RTX_PAYLOAD_TYPE,
    }
}

/// Marks incoming keyframe requests (PLI, FIR), NACKs and receiver reports for the
/// application. By default the interceptor chain consumes all incoming RTCP; the server needs
/// keyframe requests to relay them to publishers and NACKs to answer them from its caches; a
/// publishing client needs keyframe requests to encode a keyframe and receiver reports to set
/// its audio FEC. Marked packets still pass on to the other interceptors.
#[derive(Default)]
pub struct DeliverKeyframeRequests {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

/// Whether a compound RTCP packet asks for a keyframe (PLI or FIR).
pub fn is_keyframe_request(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    packets.iter().any(|p| {
        p.as_any().downcast_ref::<PictureLossIndication>().is_some()
            || p.as_any().downcast_ref::<FullIntraRequest>().is_some()
    })
}

/// The media SSRCs a compound RTCP packet asks keyframes of (PLI, FIR; 0 for a FIR that
/// names none).
pub fn keyframe_requests(packets: &[Box<dyn rtc::rtcp::Packet>]) -> Vec<u32> {
    let mut ssrcs = Vec::new();
    for p in packets {
        if let Some(pli) = p.as_any().downcast_ref::<PictureLossIndication>() {
            ssrcs.push(pli.media_ssrc);
        } else if let Some(fir) = p.as_any().downcast_ref::<FullIntraRequest>() {
            match fir.fir.first() {
                Some(entry) => ssrcs.push(entry.ssrc),
                None => ssrcs.push(0),
            }
        }
    }
    ssrcs
}

/// Whether a compound RTCP packet carries a receiver report (a sender learns its loss
/// from it).
pub fn has_receiver_report(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    packets
        .iter()
        .any(|p| p.as_any().downcast_ref::<ReceiverReport>().is_some())
}

/// The fraction lost (0..=255, RFC 3550) that a compound RTCP packet reports for `ssrc`.
pub fn fraction_lost_for(packets: &[Box<dyn rtc::rtcp::Packet>], ssrc: u32) -> Option<u8> {
    packets
        .iter()
        .filter_map(|p| p.as_any().downcast_ref::<ReceiverReport>())
        .flat_map(|rr| rr.reports.iter())
        .find(|r| r.ssrc == ssrc)
        .map(|r| r.fraction_lost)
}

/// Whether a compound RTCP packet is for the application, not only the interceptors: a
/// keyframe request, a NACK or a receiver report (see [`DeliverKeyframeRequests`]).
pub(crate) fn for_application(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    is_keyframe_request(packets) || is_nack(packets) || has_receiver_report(packets)
}

/// A NACK asking the sender of `media_ssrc` for the packets `seqs`.
pub fn nack(media_ssrc: u32, seqs: &[u16]) -> Box<dyn rtc::rtcp::Packet> {
    Box::new(TransportLayerNack {
        sender_ssrc: 0,
        media_ssrc,
        nacks:
            rtc::rtcp::transport_feedbacks::transport_layer_nack::nack_pairs_from_sequence_numbers(
                seqs,
            ),
    })
}

/// The round-trip time of a connection's nominated ICE candidate pair, once measured.
pub fn ice_rtt(
    pc: &mut rtc::peer_connection::RTCPeerConnection,
    now: Instant,
) -> Option<std::time::Duration> {
    use rtc::statistics::StatsSelector;
    use rtc::statistics::report::RTCStatsReportEntry;
    pc.get_stats(now, StatsSelector::None)
        .iter()
        .find_map(|entry| match entry {
            RTCStatsReportEntry::IceCandidatePair(pair)
                if pair.nominated && pair.current_round_trip_time > 0.0 =>
            {
                Some(std::time::Duration::from_secs_f64(
                    pair.current_round_trip_time,
                ))
            }
            _ => None,
        })
}

/// Whether a compound RTCP packet carries a NACK (retransmission request).
pub fn is_nack(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    packets
        .iter()
        .any(|p| p.as_any().downcast_ref::<TransportLayerNack>().is_some())
}

impl std::fmt::Debug for DeliverKeyframeRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliverKeyframeRequests")
            .finish_non_exhaustive()
    }
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for DeliverKeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet
            && for_application(packets)
        {
            msg.message.add(Attribute::DeliverToApplication);
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

impl Interceptor for DeliverKeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Puts the RTCP packets that leave in one burst in a fixed order: by packet type, then by
/// the SSRCs they are about. RTP keeps its order and goes first.
///
/// webrtc-rs's report and NACK-generator interceptors keep their streams in a `HashMap` and
/// emit one RTCP packet per stream in its iteration order, which differs from process to
/// process. On a simulated lossy link the k-th datagram of a burst meets the k-th random fate,
/// so that order decided *which* stream's NACK was lost, and two runs of one seed drifted
/// apart (measured: the first divergence of two 4-party `lte` runs was a retransmission
/// answering a different NACK). Registered wire-most on every connection, it costs one sort
/// of a few packets per burst.
#[derive(Default)]
pub struct CanonicalRtcpOrder {
    reads: VecDeque<TaggedPacket>,
    writes: CanonicalWrites,
}

/// An interceptor's outgoing queue in canonical order (see [`CanonicalRtcpOrder`]): RTP in
/// the order written, ahead of the RTCP of the same burst sorted by [`rtcp_order_key`].
#[derive(Default)]
pub(crate) struct CanonicalWrites {
    queue: VecDeque<TaggedPacket>,
    sorted: bool,
}

impl CanonicalWrites {
    pub(crate) fn push(&mut self, msg: TaggedPacket) {
        if matches!(msg.message.packet, Packet::Rtcp(_)) {
            self.sorted = false;
        }
        self.queue.push_back(msg);
    }

    pub(crate) fn pop(&mut self) -> Option<TaggedPacket> {
        if !self.sorted {
            // A walk of the chain hands an interceptor the whole burst before polling it.
            // Stable: RTP (no key) keeps its order, ahead of the RTCP.
            self.queue.make_contiguous().sort_by_key(rtcp_order_key);
            self.sorted = true;
        }
        self.queue.pop_front()
    }
}

/// Slot of [`CanonicalRtcpOrder`]: closer to the wire than every other interceptor.
pub const CANONICAL_ORDER_SLOT: usize = 500;

impl std::fmt::Debug for CanonicalRtcpOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanonicalRtcpOrder").finish_non_exhaustive()
    }
}

fn rtcp_order_key(msg: &TaggedPacket) -> Option<(u8, Vec<u32>)> {
    match &msg.message.packet {
        Packet::Rtcp(packets) => {
            let first = packets.first()?;
            let mut ssrcs: Vec<u32> = packets.iter().flat_map(|p| p.destination_ssrc()).collect();
            ssrcs.sort_unstable();
            Some((first.header().packet_type as u8, ssrcs))
        }
        _ => None,
    }
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for CanonicalRtcpOrder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

impl Interceptor for CanonicalRtcpOrder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn madang_offers_name_their_tool() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
        assert!(!made_by_madang(sdp));
        let tagged = with_sdp_tool(sdp.to_owned());
        assert!(made_by_madang(&tagged));
        assert!(tagged.contains("t=0 0\r\na=tool:madang "), "{tagged}");
        // Nothing else changed.
        assert_eq!(tagged.replace(&format!("{SDP_TOOL}\r\n"), ""), sdp);
        let parsed = rtc::sdp::SessionDescription::unmarshal(&mut std::io::Cursor::new(&tagged));
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn engine_builds() {
        media_engine().unwrap();
    }
}
