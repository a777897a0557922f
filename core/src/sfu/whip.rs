//! WHIP ingest (RFC 9725) on the server's HTTP port: a broadcasting tool or a browser page
//! publishes into a room with one HTTP request, without madang's client.
//!
//! `POST /whip/{room}` with `Authorization: Bearer <token>` and an SDP offer
//! (`application/sdp`) → `201 Created`, the answer, `Location: /whip/{room}/{resource}` and
//! an `ETag`; `DELETE` on the location ends the session. Inside, a WHIP session is a signal
//! session like a WebSocket's: the handler joins with the token (identity, name and role
//! from it) and offers the SDP on the publishing connection, with each `m=` line announced
//! as the camera or the microphone, so the publisher appears in the room as a participant
//! like any other. Trickle ICE and ICE restarts (`PATCH`) are not supported: `405`, as the
//! RFC gives; a client puts its candidates in the offer (`whip-client -n`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::driver::{OUTBOUND_LIMIT, Outbound, Signal};
use super::engine::{Command, SessionId, sdp_m_lines};
use super::http::HttpState;
use crate::signal::{
    ClientMessage, ErrorCode, PROTOCOL_VERSION, PeerRole, PublishTrack, ServerMessage, TrackKind,
    TrackSource,
};

/// Live WHIP sessions by resource id (the last part of their `Location`).
pub(crate) type Resources = Arc<Mutex<HashMap<String, SessionId>>>;

/// How long the join and the answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Headers every WHIP answer carries for browser-based clients (CORS).
fn cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Link"),
    );
}

/// A response with `status`, a plain-text `reason` and the CORS headers.
fn refuse(status: StatusCode, reason: &str) -> Response {
    let mut response = (status, format!("{reason}\n")).into_response();
    cors(response.headers_mut());
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// `OPTIONS` on an endpoint or resource: the methods and headers a browser may use.
pub(crate) async fn options() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    cors(headers);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, DELETE, PATCH, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, If-Match"),
    );
    headers.insert(
        header::ALLOW,
        HeaderValue::from_static("POST, DELETE, PATCH, OPTIONS"),
    );
    response
}

/// `PATCH` on a resource: trickle ICE and ICE restarts are not supported.
pub(crate) async fn patch() -> Response {
    let mut response = refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        "trickle ICE and ICE restarts are not supported: put the candidates in the offer",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("DELETE, OPTIONS"));
    response
}

/// The tracks an offer publishes: its first video m-line as the camera, its first audio
/// m-line as the microphone (others are not announced).
fn published(sdp: &str) -> Vec<PublishTrack> {
    let mut out: Vec<PublishTrack> = Vec::new();
    for (kind, mid) in sdp_m_lines(sdp) {
        if out.iter().any(|p| p.kind == kind) {
            continue;
        }
        let source = match kind {
            TrackKind::Video => TrackSource::Camera,
            TrackKind::Audio => TrackSource::Microphone,
        };
        out.push(PublishTrack { mid, kind, source });
    }
    out
}

/// The HTTP status of a refusal by the room policy.
fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidToken | ErrorCode::TokenExpired => StatusCode::UNAUTHORIZED,
        ErrorCode::WrongRoom | ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::RoomFull | ErrorCode::LimitReached => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::NegotiationFailed | ErrorCode::BadMessage => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The next message for session `rx`, within the answer timeout.
async fn next(rx: &mut mpsc::Receiver<Outbound>) -> Option<ServerMessage> {
    loop {
        match tokio::time::timeout(ANSWER_TIMEOUT, rx.recv()).await {
            Ok(Some(Outbound::Message(m))) => return Some(*m),
            Ok(Some(Outbound::Text(_))) => continue,
            Ok(Some(Outbound::Close(_)) | None) | Err(_) => return None,
        }
    }
}

/// `POST /whip/{room}`: joins with the bearer token and answers the offer.
pub(crate) async fn post(
    Path(room): Path<String>,
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return refuse(StatusCode::UNAUTHORIZED, "a bearer token is required");
    };
    let sdp_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().map(str::trim) == Some("application/sdp"));
    if !sdp_type {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer is an SDP body with Content-Type: application/sdp",
        );
    }
    let Ok(offer) = String::from_utf8(body.to_vec()) else {
        return refuse(StatusCode::BAD_REQUEST, "the offer is not UTF-8");
    };
    let publish = published(&offer);
    let id = state.next_session.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel(OUTBOUND_LIMIT);
    let open = Signal::Open {
        session: id,
        room: Some(room.clone()),
        tx,
    };
    if state.commands.send(open).await.is_err() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        );
    }
    let say = |message: ClientMessage| {
        Signal::Input(Command::Message {
            session: id,
            message,
        })
    };
    let close = Signal::Input(Command::Closed {
        session: id,
        code: None,
    });
    let join = ClientMessage::Join {
        protocol: PROTOCOL_VERSION,
        token: token.to_owned(),
        auto_subscribe: false,
        name: None,
    };
    let _ = state.commands.send(say(join)).await;
    let refused = |code: ErrorCode, reason: &str| refuse(status_of(code), reason);
    match next(&mut rx).await {
        Some(ServerMessage::Joined { .. }) => {}
        Some(ServerMessage::Error { code, reason }) => return refused(code, &reason),
        _ => {
            let _ = state.commands.send(close).await;
            return refuse(StatusCode::GATEWAY_TIMEOUT, "no answer to the join");
        }
    }
    if publish.is_empty() {
        let _ = state.commands.send(say(ClientMessage::Leave)).await;
        return refuse(
            StatusCode::BAD_REQUEST,
            "the offer has no audio or video m-line with a mid",
        );
    }
    let offer = ClientMessage::Offer {
        pc: PeerRole::Publisher,
        sdp: offer,
        publish: publish.clone(),
    };
    let _ = state.commands.send(say(offer)).await;
    let answer = loop {
        match next(&mut rx).await {
            Some(ServerMessage::Answer {
                pc: PeerRole::Publisher,
                sdp,
                refused,
            }) => break Some((sdp, refused)),
            Some(ServerMessage::Error { code, reason }) => {
                let _ = state.commands.send(say(ClientMessage::Leave)).await;
                return refused(code, &reason);
            }
            Some(_) => continue,
            None => break None,
        }
    };
    let Some((answer, refused_tracks)) = answer else {
        let _ = state.commands.send(close).await;
        return refuse(StatusCode::GATEWAY_TIMEOUT, "no answer to the offer");
    };
    if refused_tracks.len() >= publish.len() {
        let _ = state.commands.send(say(ClientMessage::Leave)).await;
        let reasons: Vec<String> = refused_tracks.into_iter().map(|r| r.reason).collect();
        return refuse(StatusCode::NOT_ACCEPTABLE, &reasons.join("; "));
    }
    let resource = format!("{id:x}{:08x}", rand::random::<u32>());
    state
        .whip
        .lock()
        .expect("whip sessions lock")
        .insert(resource.clone(), id);
    // The session's messages (the room's comings and goings) are of no use to a WHIP
    // client: read and dropped until the server closes the session or it is deleted.
    let resources = state.whip.clone();
    let key = resource.clone();
    tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            if matches!(out, Outbound::Close(_)) {
                break;
            }
        }
        resources.lock().expect("whip sessions lock").remove(&key);
    });
    tracing::info!("session {id}: WHIP publisher in room {room} ({resource})");
    let location = format!("/whip/{room}/{resource}");
    let mut response = (StatusCode::CREATED, answer).into_response();
    let headers = response.headers_mut();
    cors(headers);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{resource}\"")) {
        headers.insert(header::ETAG, v);
    }
    response
}

/// `DELETE /whip/{room}/{resource}`: the publisher leaves the room.
pub(crate) async fn delete(
    Path((_room, resource)): Path<(String, String)>,
    State(state): State<HttpState>,
) -> Response {
    let id = state
        .whip
        .lock()
        .expect("whip sessions lock")
        .remove(&resource);
    let Some(id) = id else {
        return refuse(StatusCode::NOT_FOUND, "no such WHIP session");
    };
    let leave = Signal::Input(Command::Message {
        session: id,
        message: ClientMessage::Leave,
    });
    let _ = state.commands.send(leave).await;
    let mut response = StatusCode::OK.into_response();
    cors(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_publishes_its_first_video_and_audio_m_lines() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:video0\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:audio1\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:video2\r\n";
        let p = published(sdp);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].kind, p[0].mid.as_str(), p[0].source),
            (TrackKind::Video, "video0", TrackSource::Camera)
        );
        assert_eq!(
            (p[1].kind, p[1].mid.as_str(), p[1].source),
            (TrackKind::Audio, "audio1", TrackSource::Microphone)
        );
        assert!(
            published("v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n").is_empty()
        );
    }
}
