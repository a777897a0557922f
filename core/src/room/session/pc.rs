//! One client-side peer connection (publisher or subscriber) on the sans-I/O `rtc` core:
//! built with madang's codecs and interceptors, one host candidate for its own local
//! address, offers out, answers and candidates in.

use std::net::SocketAddr;
use std::time::Instant;

use rtc::interceptor::{NackResponderBuilder, Registry, Slot};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

use crate::room::RoomError;
use crate::signal::{IceCandidate, TrackKind};
use crate::transport::cc::SendSide;
use crate::transport::dtls::HandshakeGuard;
use crate::transport::rtx::{REPAIR_FLOWS_SLOT, RepairFlows};
use crate::transport::{
    CANONICAL_ORDER_SLOT, CanonicalRtcpOrder, DeliverKeyframeRequests, ICE_ATTEMPTS,
    SRTP_REPLAY_WINDOW, add_host_candidate, h264_rtx_codec, layered_media_track, media_engine,
    with_sdp_tool,
};

fn webrtc_err(e: impl std::fmt::Display) -> RoomError {
    RoomError::WebRtc(e.to_string())
}

/// A client peer connection and what the session knows about it.
pub(crate) struct ClientPc {
    pub pc: RTCPeerConnection,
    /// The local address its datagrams leave from (its only candidate).
    pub local: SocketAddr,
    /// DTLS and SRTP are up.
    pub connected: bool,
    /// Keeps its DTLS handshake's retransmission timer alive (see [`HandshakeGuard`]).
    pub handshake: HandshakeGuard,
    /// An offer is out and its answer has not come back.
    pub offer_pending: bool,
    /// Receive-only m-lines added so far, per kind (subscriber).
    pub recv_audio: u32,
    pub recv_video: u32,
}

impl ClientPc {
    /// A new connection whose host candidate is `local`. Interceptors as a WebRTC endpoint
    /// has them by default (NACK responder, RTCP reports, TWCC receiver), plus the delivery
    /// of keyframe requests to the application — but no NACK generator: the receive slots'
    /// jitter buffers send NACKs themselves (see `transport::nack` for why). With
    /// `congestion` (a publishing connection), send-side congestion control too: TWCC
    /// sequence numbers, the GCC estimate from the server's feedback, the audio-first pacer
    /// (see [`crate::transport::cc`]).
    ///
    /// A receiving connection (no `congestion`) offers H.264's retransmission stream (RTX,
    /// RFC 4588): the server repairs in it and probes the downlink with padding in it (see
    /// [`crate::sfu::allocate`]); [`RepairFlows`] turns what arrives back into the packets
    /// it repairs before the receiver reports count them (`rtc` restores RTX only after
    /// its interceptors, and its reports counted every repaired packet as lost). A sending
    /// connection does not: with the format in its engine, `rtc` gives every track an RTX
    /// stream of a random SSRC and its NACK responder resends there, past the pacer's
    /// budget for repairs (see [`crate::transport::cc::RETRANSMISSION_SHARE`]).
    pub fn new(
        local: SocketAddr,
        now: Instant,
        congestion: Option<&SendSide>,
    ) -> Result<Self, RoomError> {
        let mut engine = media_engine().map_err(webrtc_err)?;
        let mut registry = Registry::new();
        if congestion.is_none() {
            engine
                .register_codec(h264_rtx_codec(), RtpCodecKind::Video)
                .map_err(webrtc_err)?;
            registry = registry.with(
                Slot::from(REPAIR_FLOWS_SLOT),
                RepairFlows::new(Default::default()),
            );
        }
        let registry = registry
            .with(Slot::from(14_000), DeliverKeyframeRequests::default())
            .with(
                Slot::from(CANONICAL_ORDER_SLOT),
                CanonicalRtcpOrder::default(),
            )
            .with(Slot::NackResponder, NackResponderBuilder::new().build());
        configure_simulcast_extension_headers(&mut engine).map_err(webrtc_err)?;
        let registry = configure_twcc_receiver_only(registry, &mut engine).map_err(webrtc_err)?;
        let registry = configure_rtcp_reports(registry);
        let registry = match congestion {
            Some(side) => side.configure(registry),
            None => registry,
        };
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_srtp_replay_protection_window(SRTP_REPLAY_WINDOW)
            .with_ice_connection_attempts(None, Some(ICE_ATTEMPTS))
            // An ICE restart follows a change of network: the old address is gone.
            .with_discard_local_candidates_during_ice_restart(true)
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings)
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(webrtc_err)?;
        add_host_candidate(&mut pc, local).map_err(webrtc_err)?;
        Ok(Self {
            pc,
            local,
            connected: false,
            handshake: HandshakeGuard::new(),
            offer_pending: false,
            recv_audio: 0,
            recv_video: 0,
        })
    }

    /// Adds a send-only track of `kind` with one stream per `(rid, ssrc)` (simulcast), or one
    /// stream with an empty rid.
    pub fn add_send_track(
        &mut self,
        kind: TrackKind,
        layers: &[(String, u32)],
    ) -> Result<RTCRtpSenderId, RoomError> {
        let name = match kind {
            TrackKind::Video => "camera",
            TrackKind::Audio => "microphone",
        };
        let track = layered_media_track("madang".to_owned(), name.to_owned(), kind, layers);
        let init = RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendonly,
            streams: vec![],
            send_encodings: vec![],
        };
        let id = self
            .pc
            .add_transceiver_from_track(track, Some(init))
            .map_err(webrtc_err)?;
        Ok(id.into())
    }

    /// The mid of the transceiver a sender belongs to (known once an offer was made).
    pub fn sender_mid(&mut self, sender: RTCRtpSenderId) -> Option<String> {
        self.pc
            .rtp_transceiver(sender.into())
            .and_then(|t| t.mid().clone())
    }

    /// Adds receive-only m-lines until there are `audio` and `video` of them; whether any
    /// were added.
    pub fn ensure_recv_slots(&mut self, audio: u32, video: u32) -> Result<bool, RoomError> {
        let mut added = false;
        for (kind, want) in [(TrackKind::Audio, audio), (TrackKind::Video, video)] {
            loop {
                let have = match kind {
                    TrackKind::Audio => &mut self.recv_audio,
                    TrackKind::Video => &mut self.recv_video,
                };
                if *have >= want {
                    break;
                }
                *have += 1;
                let rtp_kind = match kind {
                    TrackKind::Audio => RtpCodecKind::Audio,
                    TrackKind::Video => RtpCodecKind::Video,
                };
                self.pc
                    .add_transceiver_from_kind(
                        rtp_kind,
                        Some(RTCRtpTransceiverInit {
                            direction: RTCRtpTransceiverDirection::Recvonly,
                            streams: vec![],
                            send_encodings: vec![],
                        }),
                    )
                    .map_err(webrtc_err)?;
                added = true;
            }
        }
        Ok(added)
    }

    /// Creates and applies an offer; returns its SDP (with the host candidate in it, and
    /// madang's `a=tool` line).
    pub fn offer(&mut self, now: Instant) -> Result<String, RoomError> {
        let offer = self.pc.create_offer(None).map_err(webrtc_err)?;
        let text = offer.sdp.clone();
        self.pc
            .set_local_description(now, offer)
            .map_err(webrtc_err)?;
        self.offer_pending = true;
        let sdp = self.pc.local_description().map(|d| d.sdp).unwrap_or(text);
        Ok(with_sdp_tool(sdp))
    }

    /// Restarts ICE from a new local address (the network changed): new ICE credentials, the
    /// old host candidate dropped, one for `local` added; returns the offer's SDP. DTLS and
    /// SRTP carry on over the new path once a check on it succeeds.
    pub fn restart_ice(&mut self, now: Instant, local: SocketAddr) -> Result<String, RoomError> {
        self.pc.restart_ice();
        let offer = self.pc.create_offer(None).map_err(webrtc_err)?;
        // Applying the offer applies the restart, which drops the local candidates.
        self.pc
            .set_local_description(now, offer)
            .map_err(webrtc_err)?;
        add_host_candidate(&mut self.pc, local).map_err(webrtc_err)?;
        self.local = local;
        self.offer_pending = true;
        self.pc
            .local_description()
            .map(|d| with_sdp_tool(d.sdp))
            .ok_or_else(|| RoomError::WebRtc("no local description after a restart".into()))
    }

    /// Applies the server's answer.
    pub fn apply_answer(&mut self, now: Instant, sdp: String) -> Result<(), RoomError> {
        self.offer_pending = false;
        let answer = RTCSessionDescription::answer(sdp).map_err(webrtc_err)?;
        self.pc
            .set_remote_description(now, answer)
            .map_err(webrtc_err)
    }

    /// Adds a trickled candidate from the server.
    pub fn add_candidate(&mut self, c: IceCandidate) -> Result<(), RoomError> {
        if c.candidate.is_empty() {
            return Ok(());
        }
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_m_line_index,
            username_fragment: None,
            url: None,
        };
        self.pc.add_remote_candidate(init).map_err(webrtc_err)
    }
}
