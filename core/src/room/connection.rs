//! One client-side WebRTC connection to the server (publisher or subscriber), on the
//! `webrtc` crate's async API.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::interceptor::{Registry, Slot};
use rtc::media::Sample;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceCandidateInit,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
    register_default_interceptors,
};
use webrtc::rtp_transceiver::RtpTransceiver;

use super::{RoomError, webrtc_err};
use crate::signal::{IceCandidate, PeerRole, TrackKind};
use crate::transport::{
    DeliverKeyframeRequests, H264_PAYLOAD_TYPE, OPUS_PAYLOAD_TYPE, media_engine, media_track,
};

struct Handler {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    tracks: Option<mpsc::UnboundedSender<Arc<dyn TrackRemote>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if let Some(tx) = &self.tracks {
            let _ = tx.send(track);
        }
    }
}

/// A track this client sends.
pub(crate) struct SendTrack {
    pub mid: String,
    pub track: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    payload_type: u8,
    transceiver: Arc<dyn RtpTransceiver>,
}

impl SendTrack {
    /// Packetises and sends one encoded frame.
    pub async fn write(
        &self,
        data: Bytes,
        duration: Duration,
        audio_level: Option<u8>,
    ) -> Result<(), RoomError> {
        let sample = Sample {
            data,
            duration,
            ..Sample::new(Instant::now())
        };
        let mut writer = self.track.sample_writer(self.ssrc, self.payload_type);
        if let Some(level) = audio_level {
            writer = writer.with_audio_level(AudioLevelExtension {
                level,
                voice: level < crate::sfu::speaker::VOICE_THRESHOLD_DBOV,
            });
        }
        writer.write_sample(&sample).await.map_err(webrtc_err)
    }
}

pub(crate) struct Connection {
    pc: Arc<dyn PeerConnection>,
    gathered: watch::Receiver<bool>,
    /// Connection state as the last event reported it.
    state: watch::Receiver<RTCPeerConnectionState>,
    recv_slots: tokio::sync::Mutex<(u32, u32)>,
}

fn random_ssrc() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() >> 8) as u32 | 1
}

impl Connection {
    pub async fn new(
        role: PeerRole,
        bind_ip: IpAddr,
        tracks: Option<mpsc::UnboundedSender<Arc<dyn TrackRemote>>>,
    ) -> Result<Self, RoomError> {
        let mut engine = media_engine().map_err(webrtc_err)?;
        let registry = Registry::new().with(Slot::from(14_000), DeliverKeyframeRequests::default());
        let registry = register_default_interceptors(registry, &mut engine).map_err(webrtc_err)?;
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(bind_ip.is_loopback())
            .build();
        let (gathered_tx, gathered) = watch::channel(false);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let handler = Arc::new(Handler {
            gathered: gathered_tx,
            state: state_tx,
            tracks,
        });
        let pc = PeerConnectionBuilder::new()
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .with_handler(handler)
            .with_udp_addrs(vec![format!("{bind_ip}:0")])
            .build()
            .await
            .map_err(webrtc_err)?;
        let _ = role;
        Ok(Self {
            pc: Arc::new(pc),
            gathered,
            state,
            recv_slots: tokio::sync::Mutex::new((0, 0)),
        })
    }

    /// Adds a send-only track of `kind`. Its mid is known after [`offer`](Self::offer).
    pub async fn add_send_track(&self, kind: TrackKind) -> Result<SendTrack, RoomError> {
        let payload_type = match kind {
            TrackKind::Video => H264_PAYLOAD_TYPE,
            TrackKind::Audio => OPUS_PAYLOAD_TYPE,
        };
        let ssrc = random_ssrc();
        let name = match kind {
            TrackKind::Video => "camera",
            TrackKind::Audio => "microphone",
        };
        let track = Arc::new(
            TrackLocalStaticSample::new(
                Instant::now(),
                media_track("madang".to_owned(), name.to_owned(), kind, ssrc),
            )
            .map_err(webrtc_err)?,
        );
        let transceiver = self
            .pc
            .add_transceiver_from_track(
                track.clone() as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .await
            .map_err(webrtc_err)?;
        Ok(SendTrack {
            mid: String::new(),
            track,
            ssrc,
            payload_type,
            transceiver,
        })
    }

    /// Fills in the mids of send tracks after an offer.
    pub async fn resolve_mid(&self, track: &mut SendTrack) -> Result<(), RoomError> {
        track.mid = track
            .transceiver
            .mid()
            .await
            .map_err(webrtc_err)?
            .ok_or_else(|| RoomError::WebRtc("send track has no mid after the offer".into()))?;
        Ok(())
    }

    /// Adds receive-only m-lines until there are `audio` and `video` of them.
    pub async fn ensure_recv_slots(&self, audio: u32, video: u32) -> Result<bool, RoomError> {
        let mut counts = self.recv_slots.lock().await;
        let (have_audio, have_video) = &mut *counts;
        let mut added = false;
        for (kind, want, have) in [
            (RtpCodecKind::Audio, audio, have_audio),
            (RtpCodecKind::Video, video, have_video),
        ] {
            while *have < want {
                self.pc
                    .add_transceiver_from_kind(
                        kind,
                        Some(RTCRtpTransceiverInit {
                            direction: RTCRtpTransceiverDirection::Recvonly,
                            streams: vec![],
                            send_encodings: vec![],
                        }),
                    )
                    .await
                    .map_err(webrtc_err)?;
                *have += 1;
                added = true;
            }
        }
        Ok(added)
    }

    /// Creates and applies an offer, waits for host candidates, returns the SDP.
    pub async fn offer(&self) -> Result<String, RoomError> {
        let offer = self.pc.create_offer(None).await.map_err(webrtc_err)?;
        self.pc
            .set_local_description(offer)
            .await
            .map_err(webrtc_err)?;
        let mut gathered = self.gathered.clone();
        let _ = tokio::time::timeout(Duration::from_secs(3), gathered.wait_for(|g| *g)).await;
        let desc = self
            .pc
            .local_description()
            .await
            .ok_or_else(|| RoomError::WebRtc("no local description after offer".into()))?;
        Ok(desc.sdp)
    }

    /// Applies the server's answer.
    pub async fn apply_answer(&self, sdp: String) -> Result<(), RoomError> {
        let answer = RTCSessionDescription::answer(sdp).map_err(webrtc_err)?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(webrtc_err)
    }

    /// Adds a trickled candidate from the server.
    pub async fn add_candidate(&self, c: IceCandidate) -> Result<(), RoomError> {
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_m_line_index,
            username_fragment: None,
            url: None,
        };
        self.pc.add_ice_candidate(init).await.map_err(webrtc_err)
    }

    /// The mid of the m-line a remote track arrived on.
    pub async fn mid_of(&self, track: &Arc<dyn TrackRemote>) -> Option<String> {
        // Compare the track objects themselves: ids may repeat before negotiation settles.
        let wanted = Arc::as_ptr(track) as *const () as usize;
        for t in self.pc.get_transceivers().await {
            if let Ok(Some(r)) = t.receiver().await
                && Arc::as_ptr(r.track()) as *const () as usize == wanted
            {
                return t.mid().await.ok().flatten();
            }
        }
        None
    }

    /// Round-trip time of the selected ICE pair (ms), from the connection's own statistics.
    pub async fn rtt_ms(&self) -> Option<f64> {
        use rtc::statistics::report::RTCStatsReportEntry;
        let report = self
            .pc
            .get_stats(Instant::now(), webrtc::peer_connection::StatsSelector::None)
            .await;
        report.iter().find_map(|entry| match entry {
            RTCStatsReportEntry::IceCandidatePair(pair)
                if pair.nominated && pair.current_round_trip_time > 0.0 =>
            {
                Some(pair.current_round_trip_time * 1000.0)
            }
            _ => None,
        })
    }

    /// Whether ICE and DTLS are up, so media written now reaches the server.
    pub fn is_connected(&self) -> bool {
        *self.state.borrow() == RTCPeerConnectionState::Connected
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}
