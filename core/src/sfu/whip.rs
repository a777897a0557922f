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
    ClientMessage, ErrorCode, PROTOCOL_VERSION, ParticipantInfo, PeerRole, PublishTrack,
    RefusedTrack, ServerMessage, TrackInfo, TrackKind, TrackSource,
};

/// Live WHIP and WHEP sessions by resource id (the last part of their `Location`).
pub(crate) type Resources = Arc<Mutex<HashMap<String, SessionId>>>;

/// How long the join and the answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Headers every WHIP and WHEP answer carries for browser-based clients (CORS).
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
pub(super) fn refuse(status: StatusCode, reason: &str) -> Response {
    let mut response = (status, format!("{reason}\n")).into_response();
    cors(response.headers_mut());
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// `OPTIONS` on an endpoint or resource (WHIP or WHEP): the methods and headers a browser
/// may use.
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

/// `PATCH` on a resource (WHIP or WHEP): trickle ICE and ICE restarts are not supported.
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

/// A refusal to answer with (boxed: a response is large and the happy path carries less).
pub(super) type Refusal = Box<Response>;

/// [`refuse`], boxed.
fn refused(status: StatusCode, reason: &str) -> Refusal {
    Box::new(refuse(status, reason))
}

/// The bearer token and the SDP offer of a `POST`, or the refusal (401, 415, 400).
pub(super) fn offer_of(headers: &HeaderMap, body: &Bytes) -> Result<(String, String), Refusal> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(refused(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required",
        ));
    };
    let sdp_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().map(str::trim) == Some("application/sdp"));
    if !sdp_type {
        return Err(refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer is an SDP body with Content-Type: application/sdp",
        ));
    }
    let Ok(offer) = String::from_utf8(body.to_vec()) else {
        return Err(refused(StatusCode::BAD_REQUEST, "the offer is not UTF-8"));
    };
    Ok((token.to_owned(), offer))
}

/// A signal session inside the server on behalf of an HTTP client (WHIP or WHEP): what a
/// WebSocket would carry goes through the engine's command queue, and its messages come
/// back on `rx`.
pub(super) struct HttpSession {
    id: SessionId,
    rx: mpsc::Receiver<Outbound>,
    state: HttpState,
}

impl HttpSession {
    /// Opens a session for `room` and joins it with `token`; who else is there and what
    /// they publish. It receives only what it subscribes to.
    pub async fn join(
        state: &HttpState,
        room: &str,
        token: &str,
    ) -> Result<(Self, Vec<ParticipantInfo>, Vec<TrackInfo>), Refusal> {
        let id = state.next_session.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(OUTBOUND_LIMIT);
        let open = Signal::Open {
            session: id,
            room: Some(room.to_owned()),
            tx,
        };
        if state.commands.send(open).await.is_err() {
            return Err(refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down",
            ));
        }
        let mut session = Self {
            id,
            rx,
            state: state.clone(),
        };
        session
            .say(ClientMessage::Join {
                protocol: PROTOCOL_VERSION,
                token: token.to_owned(),
                auto_subscribe: false,
                name: None,
            })
            .await;
        match session.next().await {
            Some(ServerMessage::Joined {
                participants,
                tracks,
                ..
            }) => Ok((session, participants, tracks)),
            Some(ServerMessage::Error { code, reason }) => Err(refused(status_of(code), &reason)),
            _ => {
                session.closed().await;
                Err(refused(
                    StatusCode::GATEWAY_TIMEOUT,
                    "no answer to the join",
                ))
            }
        }
    }

    /// Sends `message` as the client.
    pub async fn say(&self, message: ClientMessage) {
        let _ = self
            .state
            .commands
            .send(Signal::Input(Command::Message {
                session: self.id,
                message,
            }))
            .await;
    }

    /// The client leaves the room.
    pub async fn leave(&self) {
        self.say(ClientMessage::Leave).await;
    }

    /// The client went away without a word (its request timed out).
    async fn closed(&self) {
        let close = Signal::Input(Command::Closed {
            session: self.id,
            code: None,
        });
        let _ = self.state.commands.send(close).await;
    }

    /// The next message for the session, within the answer timeout.
    async fn next(&mut self) -> Option<ServerMessage> {
        loop {
            match tokio::time::timeout(ANSWER_TIMEOUT, self.rx.recv()).await {
                Ok(Some(Outbound::Message(m))) => return Some(*m),
                Ok(Some(Outbound::Text(_))) => continue,
                Ok(Some(Outbound::Close(_)) | None) | Err(_) => return None,
            }
        }
    }

    /// Offers `sdp` on connection `pc`; the answer and the tracks the server refused, or
    /// the refusal (the session is left).
    pub async fn offer(
        &mut self,
        pc: PeerRole,
        sdp: String,
        publish: Vec<PublishTrack>,
    ) -> Result<(String, Vec<RefusedTrack>), Refusal> {
        self.say(ClientMessage::Offer { pc, sdp, publish }).await;
        loop {
            match self.next().await {
                Some(ServerMessage::Answer {
                    pc: answered,
                    sdp,
                    refused,
                }) if answered == pc => return Ok((sdp, refused)),
                Some(ServerMessage::Error { code, reason }) => {
                    self.leave().await;
                    return Err(refused(status_of(code), &reason));
                }
                Some(_) => continue,
                None => {
                    self.closed().await;
                    return Err(refused(
                        StatusCode::GATEWAY_TIMEOUT,
                        "no answer to the offer",
                    ));
                }
            }
        }
    }

    /// The session is live: it is kept under a new resource of `/{kind}/{room}` (until a
    /// `DELETE` or the server ends it) and the client gets `201 Created` with `answer`. Its
    /// messages are of no use to the HTTP client and are read and dropped, except that a
    /// track of `follow` published again (its participant left and came back) is
    /// subscribed to again, and with `loudest_voice` the session receives the microphone of
    /// the room's loudest speaker, switched as the floor changes.
    pub fn created(
        self,
        kind: &str,
        room: &str,
        answer: String,
        follow: Vec<String>,
        loudest_voice: bool,
    ) -> Response {
        let id = self.id;
        let resource = format!("{id:x}{:08x}", rand::random::<u32>());
        self.state
            .whip
            .lock()
            .expect("HTTP sessions lock")
            .insert(resource.clone(), id);
        let key = resource.clone();
        let session_ice_servers = self.state.ice_servers.clone();
        let mut session = self;
        tokio::spawn(async move {
            // The loudest speaker's microphone, while `loudest_voice`.
            let mut voice: Option<String> = None;
            while let Some(out) = session.rx.recv().await {
                match out {
                    Outbound::Close(_) => break,
                    Outbound::Message(m) => match *m {
                        ServerMessage::TrackPublished { track }
                            if follow.contains(&track.id) || voice.as_ref() == Some(&track.id) =>
                        {
                            session
                                .say(ClientMessage::Subscribe {
                                    tracks: vec![track.id],
                                })
                                .await;
                        }
                        ServerMessage::ActiveSpeaker { speakers } if loudest_voice => {
                            let Some(loudest) = speakers.first() else {
                                continue;
                            };
                            let track = format!("{}/microphone", loudest.identity);
                            if voice.as_ref() == Some(&track) {
                                continue;
                            }
                            if let Some(old) = voice.replace(track.clone()) {
                                session
                                    .say(ClientMessage::Unsubscribe { tracks: vec![old] })
                                    .await;
                            }
                            session
                                .say(ClientMessage::Subscribe {
                                    tracks: vec![track],
                                })
                                .await;
                        }
                        _ => {}
                    },
                    Outbound::Text(_) => {}
                }
            }
            session
                .state
                .whip
                .lock()
                .expect("HTTP sessions lock")
                .remove(&key);
        });
        tracing::info!("session {id}: {kind} client in room {room} ({resource})");
        let location = format!("/{kind}/{room}/{resource}");
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
        for server in session_ice_servers.iter() {
            if let Ok(v) = HeaderValue::from_str(&server.link()) {
                headers.append(header::LINK, v);
            }
        }
        response
    }
}

/// `POST /whip/{room}`: joins with the bearer token and answers the offer.
pub(crate) async fn post(
    Path(room): Path<String>,
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (token, offer) = match offer_of(&headers, &body) {
        Ok(o) => o,
        Err(refusal) => return *refusal,
    };
    let publish = published(&offer);
    let mut session = match HttpSession::join(&state, &room, &token).await {
        Ok((session, ..)) => session,
        Err(refusal) => return *refusal,
    };
    if publish.is_empty() {
        session.leave().await;
        return refuse(
            StatusCode::BAD_REQUEST,
            "the offer has no audio or video m-line with a mid",
        );
    }
    let (answer, refused_tracks) = match session
        .offer(PeerRole::Publisher, offer, publish.clone())
        .await
    {
        Ok(a) => a,
        Err(refusal) => return *refusal,
    };
    if refused_tracks.len() >= publish.len() {
        session.leave().await;
        let reasons: Vec<String> = refused_tracks.into_iter().map(|r| r.reason).collect();
        return refuse(StatusCode::NOT_ACCEPTABLE, &reasons.join("; "));
    }
    session.created("whip", &room, answer, Vec::new(), false)
}

/// `DELETE /whip/{room}/{resource}` (or `/whep/…`): the client leaves the room.
pub(crate) async fn delete(
    Path((_room, resource)): Path<(String, String)>,
    State(state): State<HttpState>,
) -> Response {
    let id = state
        .whip
        .lock()
        .expect("HTTP sessions lock")
        .remove(&resource);
    let Some(id) = id else {
        return refuse(StatusCode::NOT_FOUND, "no such session");
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
