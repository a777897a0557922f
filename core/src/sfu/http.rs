//! HTTP side of the server: the signal WebSocket, the development token endpoint, health.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::driver::{OUTBOUND_LIMIT, Outbound, Signal};
use super::engine::Command;
use super::token::{Claims, mint, unix_now};
use crate::signal::{
    CLOSE_NORMAL, ErrorCode, MAX_MESSAGE_BYTES, Role, ServerMessage, decode_client, encode,
};

/// State shared by the HTTP handlers.
#[derive(Clone)]
pub(crate) struct HttpState {
    pub commands: mpsc::Sender<Signal>,
    pub stats: tokio::sync::watch::Receiver<super::EngineStats>,
    pub next_session: Arc<AtomicU64>,
    pub dev_secret: Option<Arc<Vec<u8>>>,
    pub static_dir: Option<Arc<std::path::PathBuf>>,
    /// Live WHIP and WHEP sessions (`/whip/{room}/{resource}`, `/whep/{room}/{resource}`).
    pub whip: super::whip::Resources,
    /// STUN and TURN servers for WHIP and WHEP clients (`Link` headers).
    pub ice_servers: Arc<Vec<super::IceServer>>,
}

/// The main port's routes; `/metrics` among them unless it has an address of its own
/// ([`metrics_router`]).
pub(crate) fn router(state: HttpState, with_metrics: bool) -> Router {
    // A WHIP or WHEP session's resource: the same for both.
    let resource = || {
        delete(super::whip::delete)
            .patch(super::whip::patch)
            .options(super::whip::options)
    };
    let router = Router::new()
        .route("/signal", get(signal))
        .route(
            "/whip/{room}",
            post(super::whip::post).options(super::whip::options),
        )
        .route("/whip/{room}/{resource}", resource())
        .route(
            "/whep/{room}",
            post(super::whep::post).options(super::whip::options),
        )
        .route("/whep/{room}/{resource}", resource())
        .route("/dev/token", get(dev_token))
        .route("/healthz", get(|| async { "ok\n" }));
    let router = if with_metrics {
        router.route("/metrics", get(metrics))
    } else {
        router
    };
    router.fallback(get(static_file)).with_state(state)
}

/// `/metrics` and `/healthz` alone, for an address of their own (an operator's network).
pub(crate) fn metrics_router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state)
}

/// Read buffer of a signal WebSocket.
const SIGNAL_BUFFER_BYTES: usize = 4 * 1024;

#[derive(Debug, Deserialize)]
struct SignalQuery {
    room: Option<String>,
}

async fn signal(
    ws: WebSocketUpgrade,
    Query(q): Query<SignalQuery>,
    State(state): State<HttpState>,
) -> Response {
    let id = state.next_session.fetch_add(1, Ordering::Relaxed);
    // Frames up to 1 MiB reach the decoder, which refuses anything over the protocol's limit
    // with a proper error code; bigger frames end the connection at the WebSocket layer.
    // Signal messages are small and rare: small buffers (the WebSocket layer's default is
    // 128 KiB each way, per session — at hundreds of sessions the largest part of a
    // subscriber's memory on the server). Writes go out at once.
    ws.max_message_size(4 * MAX_MESSAGE_BYTES)
        .read_buffer_size(SIGNAL_BUFFER_BYTES)
        .write_buffer_size(0)
        .on_upgrade(move |socket| session(socket, id, q.room, state.commands))
}

/// The close frame of a session that ended normally, or after the fatal error `why` (its
/// close code, and its string as the reason).
fn close(why: Option<ErrorCode>) -> Message {
    Message::Close(Some(CloseFrame {
        code: why.map_or(CLOSE_NORMAL, ErrorCode::close_code),
        reason: why.map_or("", ErrorCode::as_str).into(),
    }))
}

/// Longest a write to a signal WebSocket may wait for the client to read. A client that
/// reads nothing (the TCP window shut) would otherwise hold its task and socket for ever.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Writes `message`, or gives up after [`SEND_TIMEOUT`]; `false` when it did not go out.
async fn send_within<S>(sink: &mut S, message: Message) -> bool
where
    S: futures_util::Sink<Message> + Unpin,
{
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await,
        Ok(Ok(()))
    )
}

async fn session(socket: WebSocket, id: u64, room: Option<String>, commands: mpsc::Sender<Signal>) {
    let (tx, mut rx) = mpsc::channel(OUTBOUND_LIMIT);
    if commands
        .send(Signal::Open {
            session: id,
            room,
            tx,
        })
        .await
        .is_err()
    {
        return;
    }
    let closed = |code| Signal::Input(Command::Closed { session: id, code });
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                // A full command queue holds this session back until the engine catches up:
                // the client's TCP window closes, no memory grows.
                Some(Ok(Message::Text(text))) => match decode_client(text.as_str()) {
                    Ok(message) => {
                        let _ = commands.send(Signal::Input(Command::Message { session: id, message })).await;
                    }
                    Err(e) => {
                        let reply = ServerMessage::Error { code: e.code(), reason: e.to_string() };
                        let _ = send_within(&mut sink, Message::Text(encode(&reply).into())).await;
                        let _ = send_within(&mut sink, close(Some(e.code()))).await;
                        let _ = commands.send(closed(Some(e.code()))).await;
                        return;
                    }
                },
                Some(Ok(Message::Binary(_))) => {
                    let code = crate::signal::ErrorCode::BadMessage;
                    let reply = ServerMessage::Error { code, reason: "signal messages are text frames".into() };
                    let _ = send_within(&mut sink, Message::Text(encode(&reply).into())).await;
                    let _ = send_within(&mut sink, close(Some(code))).await;
                    let _ = commands.send(closed(Some(code))).await;
                    return;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    let _ = commands.send(closed(None)).await;
                    return;
                }
            },
            outgoing = rx.recv() => match outgoing {
                Some(Outbound::Message(m)) => {
                    if !send_within(&mut sink, Message::Text(encode(&m).into())).await {
                        let _ = commands.send(closed(None)).await;
                        return;
                    }
                }
                Some(Outbound::Text(frame)) => {
                    if !send_within(&mut sink, Message::Text(frame)).await {
                        let _ = commands.send(closed(None)).await;
                        return;
                    }
                }
                Some(Outbound::Close(why)) => {
                    let _ = send_within(&mut sink, close(why)).await;
                    return;
                }
                None => {
                    let _ = send_within(&mut sink, close(None)).await;
                    return;
                }
            },
        }
    }
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    room: Option<String>,
    identity: Option<String>,
    name: Option<String>,
    role: Option<String>,
}

/// `GET /dev/token?room=R&identity=I&name=N&role=speaker` → `{"token": "…"}`; only with `--dev`.
async fn dev_token(Query(q): Query<TokenQuery>, State(state): State<HttpState>) -> Response {
    let Some(secret) = state.dev_secret else {
        return (
            StatusCode::NOT_FOUND,
            "token endpoint disabled: start the server with --dev\n",
        )
            .into_response();
    };
    let role: Role = match q.role.as_deref().unwrap_or("speaker").parse() {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let identity = q.identity.unwrap_or_else(|| {
        format!(
            "guest-{}",
            state.next_session.fetch_add(1, Ordering::Relaxed)
        )
    });
    let room = q.room.unwrap_or_else(|| "demo".to_owned());
    let name = q.name.unwrap_or_else(|| identity.clone());
    let claims = Claims::new(&room, &identity, &name, role, unix_now(), 12 * 3600);
    match mint(&secret, &claims) {
        Ok(token) => {
            axum::Json(serde_json::json!({ "token": token, "room": room, "identity": identity }))
                .into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

/// Prometheus text exposition of the engine's counters. Fifteen series do not warrant a
/// metrics registry; the format is three lines per series.
async fn metrics(State(state): State<HttpState>) -> Response {
    let s = state.stats.borrow().clone();
    let series: [(&str, &str, &str, u64); 17] = [
        (
            "madang_rtp_packets_in_total",
            "counter",
            "RTP packets received from publishers",
            s.packets_in,
        ),
        (
            "madang_rtp_packets_out_total",
            "counter",
            "RTP packets written towards subscribers",
            s.packets_out,
        ),
        (
            "madang_rtp_packets_not_forwarded_total",
            "counter",
            "RTP packets of a track a subscriber receives that were held back: its video paused, or the packet stale",
            s.packets_not_forwarded,
        ),
        (
            "madang_rtp_packets_awaiting_keyframe_total",
            "counter",
            "RTP packets not sent to a subscriber waiting for a keyframe (a video starting or changing layer)",
            s.packets_awaiting_keyframe,
        ),
        (
            "madang_udp_send_failures_total",
            "counter",
            "UDP datagrams the operating system refused to send",
            s.send_failures,
        ),
        (
            "madang_keyframe_requests_total",
            "counter",
            "Keyframe requests sent to publishers",
            s.keyframe_requests,
        ),
        (
            "madang_retransmitted_packets_total",
            "counter",
            "RTP packets resent to subscribers that asked for them (NACK)",
            s.retransmitted,
        ),
        (
            "madang_rtx_packets_sent_total",
            "counter",
            "Of those, sent in a subscriber's retransmission stream (RTX, RFC 4588)",
            s.rtx_sent,
        ),
        (
            "madang_rtx_packets_received_total",
            "counter",
            "RTP packets publishers resent in a retransmission stream (RTX), restored to the stream they repair",
            s.rtx_received,
        ),
        (
            "madang_padding_probes_total",
            "counter",
            "Padding probes sent to subscribers before raising what they receive",
            s.probes,
        ),
        (
            "madang_padding_probes_carried_total",
            "counter",
            "Of those, the ones the subscriber's downlink carried",
            s.probes_carried,
        ),
        (
            "madang_unroutable_datagrams_total",
            "counter",
            "UDP datagrams that matched no connection",
            s.unroutable,
        ),
        (
            "madang_participants",
            "gauge",
            "Participants currently joined",
            s.participants as u64,
        ),
        ("madang_rooms", "gauge", "Rooms open", s.rooms as u64),
        (
            "madang_sessions",
            "gauge",
            "Signal sessions the server core holds, joined or not",
            s.sessions as u64,
        ),
        (
            "madang_remote_addresses",
            "gauge",
            "Remote UDP addresses with a connection",
            s.addresses as u64,
        ),
        (
            "madang_slow_sessions_closed_total",
            "counter",
            "Signal sessions closed because their outbound queue filled",
            s.slow_sessions_closed,
        ),
    ];
    let mut body = String::new();
    for (name, kind, help, value) in series {
        body.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
        .into_response()
}

/// Serves files from the configured static directory (the web client, test pages). Only plain
/// file names and sub-folders are allowed: no `..`, no hidden files.
async fn static_file(uri: axum::http::Uri, State(state): State<HttpState>) -> Response {
    let Some(dir) = state.static_dir else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let safe = path.split('/').all(|seg| {
        !seg.is_empty()
            && !seg.starts_with('.')
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    });
    if !safe {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    let file = dir.join(path);
    let content_type = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    match tokio::fs::read(&file).await {
        Ok(body) => ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}
