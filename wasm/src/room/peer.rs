//! The browser's WebRTC objects as the room drives them: sending signal messages, awaiting
//! JavaScript promises, offers and answers, ICE gathering, H.264 first.

use js_sys::{Array, Promise};
use madang::signal::{ClientMessage, encode};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{RtcIceGatheringState, RtcPeerConnection, RtcRtpTransceiver, WebSocket};

use super::GATHER_MS;
use crate::error::{MadangError, Result};
use crate::js::{call, get, get_str, obj, s};

/// Sends a signal message (no-op once the socket is closed).
pub(super) fn send(ws: &WebSocket, message: &ClientMessage) {
    if ws.ready_state() == WebSocket::OPEN {
        let _ = ws.send_with_str(&encode(message));
    }
}

/// A promise that resolves after `ms` milliseconds.
pub(crate) async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// Calls method `name` of `target`, which returns a promise, and awaits it; failures become
/// a `MadangError` with `code`.
pub(super) async fn call_await(
    target: &JsValue,
    name: &str,
    args: &[JsValue],
    code: &str,
) -> Result<JsValue> {
    let promise: Promise = call(target, name, args)
        .and_then(|p| p.dyn_into())
        .map_err(|e| MadangError::from_js(code, name, &e))?;
    await_js(promise, code, name).await
}

pub(super) async fn await_js(promise: Promise, code: &str, what: &str) -> Result<JsValue> {
    JsFuture::from(promise)
        .await
        .map_err(|e| MadangError::from_js(code, what, &e))
}

/// Waits until `pc` has gathered its candidates (at most two seconds).
pub(super) async fn gathered(pc: &RtcPeerConnection) {
    for _ in 0..(GATHER_MS / 50) {
        if pc.ice_gathering_state() == RtcIceGatheringState::Complete {
            return;
        }
        sleep(50).await;
    }
}

/// Creates an offer, applies it and waits for candidates; the SDP to send.
pub(super) async fn make_offer(pc: &RtcPeerConnection) -> Result<String> {
    let offer = await_js(pc.create_offer(), "negotiation", "createOffer").await?;
    call_await(pc, "setLocalDescription", &[offer], "negotiation").await?;
    gathered(pc).await;
    pc.local_description()
        .map(|d| d.sdp())
        .ok_or_else(|| MadangError::new("negotiation", "no local description"))
}

pub(super) async fn apply_answer(pc: &RtcPeerConnection, sdp: String) -> Result<()> {
    let answer = obj(&[("type", s("answer")), ("sdp", s(&sdp))]);
    call_await(pc, "setRemoteDescription", &[answer], "negotiation").await?;
    Ok(())
}

pub(super) fn new_peer_connection() -> Result<RtcPeerConnection> {
    RtcPeerConnection::new()
        .map_err(|e| MadangError::from_js("negotiation", "RTCPeerConnection", &e))
}

/// Prefers H.264 Constrained Baseline, packetization mode 1 (what the server forwards) on a
/// video transceiver, with its retransmission format (RTX, RFC 4588), which the server
/// negotiates with browsers.
pub(super) fn prefer_h264(transceiver: &RtcRtpTransceiver) -> Result<()> {
    let global = js_sys::global();
    let sender_class = get(&global, "RTCRtpSender");
    let caps = call(&sender_class, "getCapabilities", &[s("video")])
        .map_err(|e| MadangError::from_js("media", "RTCRtpSender.getCapabilities", &e))?;
    let codecs: Array = get(&caps, "codecs").dyn_into().unwrap_or_default();
    let h264: Array = codecs
        .iter()
        .filter(|c| {
            let fmtp = get_str(c, "sdpFmtpLine").unwrap_or_default();
            get_str(c, "mimeType").as_deref() == Some("video/H264")
                && fmtp.contains("packetization-mode=1")
                && fmtp.contains("profile-level-id=42e01f")
        })
        .collect();
    if h264.length() == 0 {
        return Err(MadangError::new(
            "media",
            "this browser offers no H.264 Constrained Baseline encoder",
        ));
    }
    for rtx in codecs
        .iter()
        .filter(|c| get_str(c, "mimeType").as_deref() == Some("video/rtx"))
    {
        h264.push(&rtx);
    }
    call(transceiver, "setCodecPreferences", &[h264.into()])
        .map_err(|e| MadangError::from_js("media", "setCodecPreferences", &e))?;
    Ok(())
}
