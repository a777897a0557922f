//! Building the server side of a peer connection on the sans-I/O `rtc` core, and telling
//! which connection a datagram on the shared UDP port belongs to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use rtc::interceptor::{Registry, Slot};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::shared::error::Error as RtcError;

use crate::signal::PeerRole;
use crate::transport::cc::SendSide;
use crate::transport::leg::SubscriberLeg;
use crate::transport::rtx::{REPAIR_FLOWS_SLOT, RepairFlows};
use crate::transport::twcc::{MAX_REORDER_WAIT, PatientTwccReceiver};
use crate::transport::{
    CANONICAL_ORDER_SLOT, CanonicalRtcpOrder, DeliverKeyframeRequests, ICE_ATTEMPTS,
    SRTP_REPLAY_WINDOW, add_host_candidate, h264_rtx_codec, media_engine,
};

/// A new server-side peer connection: answerer (ICE controlled, DTLS client), with its own
/// ICE credentials so that datagrams on the shared port can be told apart, and the shared
/// UDP socket's address as its only candidate.
///
/// Interceptors on a publisher's leg (the server receives): retransmission streams restored
/// to the streams they repair ([`RepairFlows`], counted in `rtx_received`), receiver and
/// sender reports, transport-wide congestion feedback (NACKs to the publisher come from the
/// engine). On a
/// subscriber's leg (the server only sends) one interceptor, [`SubscriberLeg`], does what
/// sending needs — sender reports, the relay of keyframe requests and, with `congestion`,
/// the downlink estimate (TWCC sequence numbers and the GCC estimate from the subscriber's
/// feedback; no pacer: see [`SendSide::configure_unpaced`]): every interceptor in a chain
/// moves each outgoing packet through its own queue, and at 520 subscribers `rtc`'s five
/// took a quarter of the cost of forwarding. The media engine (codecs, header extensions, feedback) is the
/// same on both legs. No NACK responder: the server answers subscribers' NACKs itself from
/// each publisher's retransmission cache, shared by all subscribers, instead of keeping a
/// send buffer per subscriber leg. `counts_feedback_loss`: the peer is no madang client
/// (a browser: libwebrtc's loss estimate counts what transport-wide feedback calls lost),
/// and a publishing connection's feedback waits for packets the link reorders.
pub(crate) fn new_peer_connection(
    role: PeerRole,
    (ufrag, pwd): (&str, &str),
    local: SocketAddr,
    now: Instant,
    congestion: Option<&SendSide>,
    rtx_received: &Arc<AtomicU64>,
    counts_feedback_loss: bool,
) -> Result<RTCPeerConnection, RtcError> {
    let settings = SettingEngineBuilder::new()
        .with_ice_credentials(ufrag.to_owned(), pwd.to_owned())
        .with_answering_dtls_role(RTCDtlsRole::Client)
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_srtp_replay_protection_window(SRTP_REPLAY_WINDOW)
        .with_ice_connection_attempts(None, Some(ICE_ATTEMPTS))
        .build();
    let mut engine = media_engine()?;
    // Retransmission streams for peers that offer them (browsers, and madang's clients on
    // their subscribing connections: repairs and padding probes go there); the others are
    // repaired on the media stream itself.
    engine.register_codec(h264_rtx_codec(), RtpCodecKind::Video)?;
    configure_simulcast_extension_headers(&mut engine)?;
    let registry = match role {
        PeerRole::Publisher => {
            let keyframes = Registry::new()
                .with(
                    Slot::from(REPAIR_FLOWS_SLOT),
                    RepairFlows::new(rtx_received.clone()),
                )
                .with(Slot::from(14_000), DeliverKeyframeRequests::default())
                .with(
                    Slot::from(CANONICAL_ORDER_SLOT),
                    CanonicalRtcpOrder::default(),
                );
            // No NACK generator: the engine NACKs upstream losses itself, at once and once
            // per round trip (see `transport::nack`).
            // For a browser, whose loss estimate counts what transport-wide feedback calls
            // lost, madang's own receiver in place of `rtc`'s: it waits for overtaken
            // packets instead of reporting them lost (see `transport::twcc`). A madang
            // publisher's loss comes from receiver reports: `rtc`'s receiver answers it.
            let registry = if counts_feedback_loss {
                let _ = configure_twcc_receiver_only(Registry::new(), &mut engine)?;
                let sender_ssrc = ufrag.bytes().fold(0x811c_9dc5u32, |h, b| {
                    (h ^ b as u32).wrapping_mul(0x0100_0193)
                });
                keyframes.with(
                    Slot::TwccReceiver,
                    PatientTwccReceiver::new(sender_ssrc, MAX_REORDER_WAIT),
                )
            } else {
                configure_twcc_receiver_only(keyframes, &mut engine)?
            };
            configure_rtcp_reports(registry)
        }
        PeerRole::Subscriber => {
            // The same negotiated extensions and feedback as a publisher's leg; the TWCC
            // receiver itself is left out (nothing arrives here to acknowledge).
            let _ = configure_twcc_receiver_only(Registry::new(), &mut engine)?;
            Registry::new().with(
                Slot::from(CANONICAL_ORDER_SLOT),
                SubscriberLeg::new(congestion),
            )
        }
    };
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .build(now)?;
    add_host_candidate(&mut pc, local)?;
    Ok(pc)
}

/// The most a subscriber's estimate may reach: what 23 others' 720p cameras and their audio
/// take together, with room to spare.
pub(crate) const SUBSCRIBER_MAX_BPS: f64 = 40_000_000.0;

/// Where a subscriber's estimate starts. Unlike a publisher's encoder, forwarding cannot
/// start low and follow the estimate up (videos are paused only after the estimate fell,
/// see [`crate::sfu::allocate`]): the start only sets how far the first congestion has to
/// bring it down. 5 Mbit/s is the `lte` profile's capacity.
pub(crate) const SUBSCRIBER_START_BPS: f64 = 5_000_000.0;

const STUN_MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const STUN_USERNAME: u16 = 0x0006;

/// The server-side ICE ufrag from a STUN binding request's USERNAME (`server:client`), if this
/// datagram is one. That is how the first packet from a new address finds its connection.
pub(crate) fn stun_server_ufrag(datagram: &[u8]) -> Option<&str> {
    if datagram.len() < 20 || datagram[0] & 0xc0 != 0 || datagram[4..8] != STUN_MAGIC {
        return None;
    }
    let body_len = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    let mut attrs = datagram.get(20..20 + body_len)?;
    while attrs.len() >= 4 {
        let typ = u16::from_be_bytes([attrs[0], attrs[1]]);
        let len = u16::from_be_bytes([attrs[2], attrs[3]]) as usize;
        let value = attrs.get(4..4 + len)?;
        if typ == STUN_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        attrs = attrs.get(4 + len.div_ceil(4) * 4..).unwrap_or(&[]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        // A PRIORITY attribute first, so the parser has to walk.
        attrs.extend_from_slice(&[0x00, 0x24, 0, 4, 1, 2, 3, 4]);
        attrs.extend_from_slice(&STUN_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        msg.extend_from_slice(&STUN_MAGIC);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attrs);
        msg
    }

    #[test]
    fn finds_the_server_ufrag() {
        assert_eq!(
            stun_server_ufrag(&binding_request("srv1:cli")),
            Some("srv1")
        );
        assert_eq!(stun_server_ufrag(&binding_request("abc")), Some("abc"));
    }

    #[test]
    fn ignores_other_datagrams() {
        assert_eq!(stun_server_ufrag(&[0x80, 0x60, 0, 1]), None);
        assert_eq!(stun_server_ufrag(&[0x16, 0xfe, 0xfd]), None);
        let mut truncated = binding_request("srv1:cli");
        truncated.truncate(30);
        assert_eq!(stun_server_ufrag(&truncated), None);
        let mut no_magic = binding_request("srv1:cli");
        no_magic[4] = 0;
        assert_eq!(stun_server_ufrag(&no_magic), None);
    }

    #[test]
    fn builds_a_peer_connection() {
        let addr: SocketAddr = "127.0.0.1:7880".parse().unwrap();
        for role in [PeerRole::Publisher, PeerRole::Subscriber] {
            new_peer_connection(
                role,
                ("ufrag0001", "passwordpasswordpassword"),
                addr,
                Instant::now(),
                Some(&SendSide::new(SUBSCRIBER_MAX_BPS)),
                &Arc::default(),
                true,
            )
            .unwrap();
        }
    }
}
