//! A joined room in the browser: the signal WebSocket, a publishing and a subscribing
//! `RTCPeerConnection` (the browser's own), and the events JavaScript listens to.
//!
//! Borrow rule: the room's state lives in a `RefCell`; every method takes what it needs
//! inside a short borrow of plain Rust work and calls into JavaScript (WebRTC, the DOM,
//! listeners) only after the borrow has ended, so a listener may call back into the room.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
use js_sys::{Array, Function};
use madang::grid::layout::Person;
use madang::grid::plan::view_layout;
use madang::room::RoomState;
use madang::signal::{
    ClientMessage, DataMessage, PROTOCOL_VERSION, ParticipantInfo, PeerRole, ServerMessage,
    TrackInfo, TrackKind, TrackSource, ViewLayout, decode_server,
};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{
    HtmlAudioElement, MediaStream, MediaStreamTrack, MessageEvent, RtcPeerConnection,
    RtcRtpTransceiver, RtcTrackEvent, WebSocket,
};

mod convert;
mod peer;
mod publish;

pub(crate) use convert::participants_js;
use convert::{data_js, participant_js, report_values, track_js};
pub(crate) use peer::sleep;
use peer::{apply_answer, await_js, make_offer, new_peer_connection, send};

use crate::error::{MadangError, Result};
use crate::grid::{GridView, Scene};
use crate::js::{call, get, get_f64, get_str, obj, s};

/// How long to wait for ICE gathering before sending an offer with what is there.
const GATHER_MS: i32 = 2000;
/// Default time allowed for joining.
const JOIN_TIMEOUT_MS: i32 = 10_000;
/// Interval of keep-alive pings on the signal connection (the server drops silent sessions).
const KEEPALIVE_MS: i32 = 5_000;
/// How long to keep trying to take the session back after the WebSocket dropped (the
/// server keeps it that long by default).
const RECONNECT_MS: f64 = 15_000.0;
/// Pause after the first failed attempt to reopen it; doubled after each further one, up
/// to [`RECONNECT_PAUSE_MAX_MS`].
const RECONNECT_PAUSE_MS: i32 = 250;
const RECONNECT_PAUSE_MAX_MS: i32 = 2_000;
/// The close code of a WebSocket that dropped without a close frame (RFC 6455): only then
/// is the session resumed; the server closes on purpose always with a frame.
const CLOSE_ABNORMAL: u16 = 1006;

/// One local track this page publishes.
struct Published {
    source: TrackSource,
    kind: TrackKind,
    /// Not muted (mirrors `track.enabled`, so reading it needs no call into JavaScript).
    enabled: bool,
    track: MediaStreamTrack,
    stream: MediaStream,
    transceiver: RtcRtpTransceiver,
}

/// Everything the room knows; only plain Rust work happens while it is borrowed.
#[derive(Default)]
pub(crate) struct State {
    /// Who is in the room, their tracks, the receive slots, the speakers: the core's roster,
    /// fed with every server message.
    roster: RoomState,
    publisher: Option<RtcPeerConnection>,
    published: Vec<Published>,
    /// Publishing transceivers idle since an unpublish, by kind.
    spare: Vec<(TrackKind, RtcRtpTransceiver)>,
    publisher_busy: bool,
    publisher_again: bool,
    publisher_answer: Option<oneshot::Sender<String>>,
    subscriber: Option<RtcPeerConnection>,
    /// Receive slots the server asked for: audio, video.
    want: (u32, u32),
    subscriber_busy: bool,
    subscriber_again: bool,
    /// The next subscriber negotiation offers even without new slots (an ICE restart).
    subscriber_restart: bool,
    subscriber_answer: Option<oneshot::Sender<String>>,
    /// mid → what the browser receives on it.
    receivers: HashMap<String, (MediaStreamTrack, MediaStream)>,
    /// mid → the track id last announced as subscribed on it.
    bound: HashMap<String, String>,
    /// mid → the element playing remote audio.
    audio_out: HashMap<String, HtmlAudioElement>,
    grid: Option<Rc<GridView>>,
    /// The layout last sent to the server.
    layout_sent: Option<ViewLayout>,
    join: Option<oneshot::Sender<Result<()>>>,
    closed: bool,
    /// The key that resumes the session over a new WebSocket (from `joined`).
    resume: Option<String>,
    /// Since when (`Date.now()`) the WebSocket is down and a new one is being opened;
    /// messages wait in `outbox` meanwhile.
    reconnecting: Option<f64>,
    /// Failed attempts to reopen it in a row.
    attempts: u32,
    outbox: Vec<ClientMessage>,
    /// Per connection (publisher, subscriber): the offer sent last while its answer has not
    /// come (sent again after a resume: the answer may have been lost).
    last_offer: [Option<ClientMessage>; 2],
}

impl State {
    /// The people as the layout sees them, in join order.
    pub(crate) fn persons(&self) -> Vec<Person> {
        self.roster
            .persons(|p| self.video_track_of(&p.identity).is_some())
    }

    /// The id of the video track shown for `identity`: a screen share before the camera.
    fn video_track_of(&self, identity: &str) -> Option<String> {
        if self.roster.is_local(identity) {
            let mut mine: Vec<&Published> = self
                .published
                .iter()
                .filter(|p| p.kind == TrackKind::Video && p.enabled)
                .collect();
            mine.sort_by_key(|p| p.source != TrackSource::Screen);
            return mine.first().map(|p| p.source.track_id(identity));
        }
        self.roster.video_track_of(identity)
    }

    /// The stream to show for `identity`, if its video is here.
    pub(crate) fn video_stream_of(&self, identity: &str) -> Option<MediaStream> {
        let track = self.video_track_of(identity)?;
        if self.roster.is_local(identity) {
            let source = track.rsplit('/').next()?;
            return self
                .published
                .iter()
                .find(|p| p.source.as_str() == source)
                .map(|p| p.stream.clone());
        }
        let mid = self.bound.iter().find(|(_, t)| **t == track)?.0;
        self.receivers.get(mid).map(|(_, stream)| stream.clone())
    }

    pub(crate) fn local_identity(&self) -> Option<&str> {
        self.roster.local().map(|l| l.identity.as_str())
    }

    pub(crate) fn room_name(&self) -> &str {
        self.roster.room()
    }

    pub(crate) fn people(&self) -> &[ParticipantInfo] {
        self.roster.people()
    }

    /// The room as the server described it.
    pub(crate) fn roster(&self) -> &RoomState {
        &self.roster
    }
}

/// A JavaScript callback kept alive by the room.
type Handler = Closure<dyn FnMut(JsValue)>;

/// The room behind a `Room` handle.
pub(crate) struct Inner {
    pub(crate) state: RefCell<State>,
    listeners: RefCell<Vec<(String, Function)>>,
    /// The signal connection (a new one after each reconnect) and its URL.
    ws: RefCell<WebSocket>,
    url: String,
    /// The WebSocket's handlers (replaced with it).
    ws_handlers: RefCell<Vec<Handler>>,
    /// The connection handlers, kept alive until the room is left.
    handlers: RefCell<Vec<Handler>>,
    /// Leaves when the page goes away (`pagehide`), so the others see "left" at once.
    on_pagehide: RefCell<Option<Handler>>,
}

impl Inner {
    /// Opens the signal connection and joins; resolves once the server accepted.
    pub(crate) async fn connect(url: &str, token: &str, options: &JsValue) -> Result<Rc<Inner>> {
        let name = get_str(options, "name");
        let timeout = get_f64(options, "joinTimeoutMs").map_or(JOIN_TIMEOUT_MS, |t| t as i32);
        let ws = WebSocket::new(url)
            .map_err(|e| MadangError::from_js("connect_failed", "WebSocket", &e))?;
        let inner = Rc::new(Inner {
            state: RefCell::new(State::default()),
            listeners: RefCell::new(Vec::new()),
            ws: RefCell::new(ws.clone()),
            url: url.to_owned(),
            ws_handlers: RefCell::new(Vec::new()),
            handlers: RefCell::new(Vec::new()),
            on_pagehide: RefCell::new(None),
        });
        let (tx, rx) = oneshot::channel();
        inner.state.borrow_mut().join = Some(tx);

        let join = ClientMessage::Join {
            protocol: PROTOCOL_VERSION,
            token: token.to_owned(),
            auto_subscribe: true,
            name,
        };
        inner.attach(&ws, join);

        let weak = Rc::downgrade(&inner);
        wasm_bindgen_futures::spawn_local(async move {
            sleep(timeout).await;
            if let Some(inner) = weak.upgrade() {
                let pending = inner.state.borrow_mut().join.take();
                if let Some(tx) = pending {
                    let _ = tx.send(Err(MadangError::new(
                        "timeout",
                        format!("no answer from the server within {timeout} ms"),
                    )));
                }
            }
        });
        match rx.await {
            Ok(Ok(())) => {
                let weak = Rc::downgrade(&inner);
                let on_pagehide = Handler::new(move |_| {
                    if let Some(inner) = weak.upgrade() {
                        inner.leave();
                    }
                });
                if let Some(w) = web_sys::window() {
                    let _ = w.add_event_listener_with_callback(
                        "pagehide",
                        on_pagehide.as_ref().unchecked_ref(),
                    );
                }
                *inner.on_pagehide.borrow_mut() = Some(on_pagehide);
                let weak = Rc::downgrade(&inner);
                wasm_bindgen_futures::spawn_local(async move {
                    loop {
                        sleep(KEEPALIVE_MS).await;
                        let Some(inner) = weak.upgrade() else { break };
                        let (closed, down) = {
                            let st = inner.state.borrow();
                            (st.closed, st.reconnecting.is_some())
                        };
                        if closed {
                            break;
                        }
                        if !down {
                            send(&inner.ws.borrow(), &ClientMessage::Ping);
                        }
                    }
                });
                Ok(inner)
            }
            Ok(Err(e)) => {
                inner.shutdown();
                Err(e)
            }
            Err(_) => Err(MadangError::new("connect_failed", "joining was abandoned")),
        }
    }

    /// Gives `ws` the room's handlers: `first` goes out when it opens (a `join`, or a
    /// `resume` after a drop), then whatever waited.
    fn attach(self: &Rc<Self>, ws: &WebSocket, first: ClientMessage) {
        let weak = Rc::downgrade(self);
        let on_open = Handler::new(move |_| {
            if let Some(inner) = weak.upgrade() {
                let ws = inner.ws.borrow().clone();
                send(&ws, &first);
                let waiting = std::mem::take(&mut inner.state.borrow_mut().outbox);
                for m in &waiting {
                    send(&ws, m);
                }
            }
        });
        let weak = Rc::downgrade(self);
        let on_message = Handler::new(move |e: JsValue| {
            let text = e.unchecked_into::<MessageEvent>().data().as_string();
            if let (Some(inner), Some(text)) = (weak.upgrade(), text) {
                inner.on_text(&text);
            }
        });
        let weak = Rc::downgrade(self);
        let on_close = Handler::new(move |e: JsValue| {
            // `CloseEvent.code`.
            let code = get_f64(&e, "code").map_or(CLOSE_ABNORMAL, |c| c as u16);
            if let Some(inner) = weak.upgrade() {
                inner.on_close(code);
            }
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        *self.ws_handlers.borrow_mut() = vec![on_open, on_message, on_close];
    }

    /// Sends a protocol message now, or once the signal connection is back; an offer is
    /// kept until its answer comes.
    pub(crate) fn send_signal(&self, message: ClientMessage) {
        let mut st = self.state.borrow_mut();
        if let ClientMessage::Offer { pc, .. } = &message {
            st.last_offer[*pc as usize] = Some(message.clone());
        }
        if st.reconnecting.is_some() {
            st.outbox.push(message);
        } else {
            drop(st);
            send(&self.ws.borrow(), &message);
        }
    }

    /// Opens a new signal connection that resumes the session.
    fn reopen(self: &Rc<Self>) {
        let key = self.state.borrow().resume.clone();
        let Some(key) = key else { return };
        match WebSocket::new(&self.url) {
            Ok(ws) => {
                *self.ws.borrow_mut() = ws.clone();
                self.attach(
                    &ws,
                    ClientMessage::Resume {
                        protocol: PROTOCOL_VERSION,
                        resume: key,
                    },
                );
            }
            Err(e) => self.emit_error(MadangError::from_js("connect_failed", "WebSocket", &e)),
        }
    }

    /// Adds a listener for `name` events.
    pub(crate) fn listen(&self, name: &str, f: Function) {
        self.listeners.borrow_mut().push((name.to_owned(), f));
    }

    /// Removes a listener added with [`Inner::listen`].
    pub(crate) fn unlisten(&self, name: &str, f: &Function) {
        self.listeners
            .borrow_mut()
            .retain(|(n, g)| !(n == name && g == f));
    }

    /// Calls the listeners of `name` with `detail` (`detail.type` is `name`).
    fn emit(&self, name: &str, detail: JsValue) {
        let _ = js_sys::Reflect::set(&detail, &s("type"), &s(name));
        let fns: Vec<Function> = self
            .listeners
            .borrow()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .collect();
        for f in fns {
            if let Err(e) = f.call1(&JsValue::NULL, &detail) {
                web_sys::console::error_2(&s("madang: an event listener threw"), &e);
            }
        }
    }

    fn emit_error(&self, e: MadangError) {
        self.emit("error", obj(&[("error", JsValue::from(e))]));
    }

    fn on_text(self: &Rc<Self>, text: &str) {
        let message = match decode_server(text) {
            Ok(m) => m,
            Err(e) => {
                return self.emit_error(MadangError::new("server", format!("bad message: {e}")));
            }
        };
        self.on_message(message);
    }

    fn on_message(self: &Rc<Self>, message: ServerMessage) {
        self.state.borrow_mut().roster.apply(&message);
        match message {
            ServerMessage::Resumed { .. } => {
                let missed = self.state.borrow().roster.catch_up(&message);
                for m in missed {
                    self.on_message(m);
                }
                // What was sent between the new connection opening and now waited too.
                let waiting = {
                    let mut st = self.state.borrow_mut();
                    st.reconnecting = None;
                    st.attempts = 0;
                    std::mem::take(&mut st.outbox)
                };
                let ws = self.ws.borrow().clone();
                for m in &waiting {
                    send(&ws, m);
                }
                self.emit("reconnected", obj(&[]));
            }
            ServerMessage::Joined { resume, .. } => {
                self.state.borrow_mut().resume = resume;
                let tx = self.state.borrow_mut().join.take();
                if let Some(tx) = tx {
                    let _ = tx.send(Ok(()));
                }
            }
            ServerMessage::Error { code, reason } => {
                if code.is_fatal() {
                    // The server closes the session after it: nothing to resume.
                    self.state.borrow_mut().resume = None;
                }
                let tx = self.state.borrow_mut().join.take();
                match tx {
                    Some(tx) => {
                        let _ = tx.send(Err(MadangError::new(
                            "refused",
                            format!("{}: {reason}", code.as_str()),
                        )));
                    }
                    None => self.emit_error(MadangError::new(
                        "server",
                        format!("{}: {reason}", code.as_str()),
                    )),
                }
            }
            ServerMessage::ParticipantJoined { participant } => {
                self.emit("participantJoined", participant_js(&participant));
                self.relayout();
            }
            ServerMessage::ParticipantLeft { identity, reason } => {
                self.emit(
                    "participantLeft",
                    obj(&[("identity", s(&identity)), ("reason", s(reason.as_str()))]),
                );
                self.relayout();
            }
            ServerMessage::TrackPublished { track } => {
                self.emit("trackPublished", track_js(&track));
                self.relayout();
            }
            ServerMessage::TrackUnpublished { track } => {
                self.emit("trackUnpublished", obj(&[("track", s(&track))]));
                self.relayout();
            }
            ServerMessage::TrackMuted { track, muted } => {
                self.emit(
                    "trackMuted",
                    obj(&[("track", s(&track)), ("muted", muted.into())]),
                );
                self.relayout();
            }
            ServerMessage::VideoPaused { track, paused } => {
                self.emit(
                    "videoPaused",
                    obj(&[("track", s(&track)), ("paused", paused.into())]),
                );
                self.relayout();
            }
            ServerMessage::Answer { pc, sdp, refused } => {
                // A browser without H.264 (or Opus): its track is not in the room.
                for r in refused {
                    self.emit_error(MadangError::new(
                        "refused",
                        format!(
                            "the server refused the track of m-line {}: {}",
                            r.mid, r.reason
                        ),
                    ));
                }
                let tx = {
                    let mut st = self.state.borrow_mut();
                    st.last_offer[pc as usize] = None;
                    match pc {
                        PeerRole::Publisher => st.publisher_answer.take(),
                        PeerRole::Subscriber => st.subscriber_answer.take(),
                    }
                };
                if let Some(tx) = tx {
                    let _ = tx.send(sdp);
                }
            }
            ServerMessage::Renegotiate { audio, video } => {
                {
                    let mut st = self.state.borrow_mut();
                    st.want = (st.want.0.max(audio), st.want.1.max(video));
                }
                let inner = self.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    if let Err(e) = inner.negotiate_subscriber().await {
                        inner.emit_error(e);
                    }
                });
            }
            ServerMessage::Slots { .. } => self.bind_tracks(),
            ServerMessage::Candidate { pc, candidate } => {
                let target = {
                    let st = self.state.borrow();
                    match pc {
                        PeerRole::Publisher => st.publisher.clone(),
                        PeerRole::Subscriber => st.subscriber.clone(),
                    }
                };
                if let Some(target) = target {
                    let init = obj(&[
                        ("candidate", s(&candidate.candidate)),
                        (
                            "sdpMid",
                            candidate.sdp_mid.as_deref().map_or(JsValue::NULL, s),
                        ),
                        (
                            "sdpMLineIndex",
                            candidate
                                .sdp_m_line_index
                                .map_or(JsValue::NULL, |i| JsValue::from(i as u32)),
                        ),
                    ]);
                    let _ = call(&target, "addIceCandidate", &[init]);
                }
            }
            ServerMessage::ActiveSpeaker { speakers } => {
                let list: Array = speakers
                    .iter()
                    .map(|s| {
                        obj(&[
                            ("identity", self::s(&s.identity)),
                            ("level", s.level.into()),
                        ])
                    })
                    .collect();
                self.emit("activeSpeaker", obj(&[("speakers", list.into())]));
                self.relayout();
            }
            ServerMessage::Data { message } => {
                self.emit("data", data_js(&message));
            }
            ServerMessage::Hands { queue } => {
                let list: Array = queue.iter().map(|h| s(h)).collect();
                self.emit("hands", obj(&[("queue", list.into())]));
                self.relayout();
            }
            ServerMessage::HandLowered => self.emit("handLowered", obj(&[])),
            ServerMessage::RoleChanged { identity, role } => {
                let me = self.state.borrow().roster.is_local(&identity);
                if me && !role.can_publish() {
                    self.end_publishing();
                }
                self.emit(
                    "roleChanged",
                    obj(&[
                        ("identity", s(&identity)),
                        ("role", s(&role.to_string())),
                        ("me", me.into()),
                    ]),
                );
                self.relayout();
            }
            ServerMessage::RecordingStarted { by } => self.emit_recording(true, by),
            ServerMessage::RecordingStopped { by } => self.emit_recording(false, by),
            _ => {}
        }
    }

    /// `recording`: the room's recording started (`on`) or stopped, by host `by` (`null`:
    /// the server).
    fn emit_recording(&self, on: bool, by: Option<String>) {
        let by = by.as_deref().map_or(JsValue::NULL, s);
        self.emit("recording", obj(&[("on", on.into()), ("by", by)]));
    }

    fn on_close(self: &Rc<Self>, code: u16) {
        let (pending, was_open) = {
            let mut st = self.state.borrow_mut();
            let was_open = !st.closed;
            (st.join.take(), was_open)
        };
        if let Some(tx) = pending {
            let _ = tx.send(Err(MadangError::new(
                "connect_failed",
                "the signal connection closed before the server accepted the join",
            )));
            return;
        }
        if !was_open {
            return;
        }
        // Dropped without a close frame (a proxy or NAT reset it, the network changed):
        // media goes on; a new connection takes the session back.
        let now = js_sys::Date::now();
        let resumable = code == CLOSE_ABNORMAL && self.state.borrow().resume.is_some();
        let (since, attempts) = {
            let mut st = self.state.borrow_mut();
            let first = st.reconnecting.is_none();
            if resumable && first {
                st.reconnecting = Some(now);
                // Offers whose answers have not come go out again after the resume: the
                // answers may have been lost with the connection.
                let unanswered: Vec<ClientMessage> =
                    st.last_offer.iter().flatten().cloned().collect();
                st.outbox.extend(unanswered);
            } else if st.reconnecting.is_some() {
                st.attempts += 1;
            }
            (st.reconnecting, st.attempts)
        };
        match since {
            Some(since) if resumable && now - since < RECONNECT_MS => {
                if attempts == 0 {
                    self.emit("reconnecting", obj(&[]));
                }
                let pause = if attempts == 0 {
                    0
                } else {
                    (RECONNECT_PAUSE_MS << (attempts - 1).min(8)).min(RECONNECT_PAUSE_MAX_MS)
                };
                let inner = self.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    sleep(pause).await;
                    if !inner.state.borrow().closed {
                        inner.reopen();
                    }
                });
            }
            _ => {
                self.shutdown();
                self.emit("disconnected", obj(&[("reason", s("connection_lost"))]));
            }
        }
    }

    /// Announces tracks that now have both a slot and a receiver; plays remote audio.
    fn bind_tracks(self: &Rc<Self>) {
        let fresh: Vec<(String, TrackInfo, MediaStreamTrack)> = {
            let mut st = self.state.borrow_mut();
            let mut fresh = Vec::new();
            let slots: Vec<(String, String)> = st
                .roster
                .slots()
                .map(|(m, t)| (m.to_owned(), t.to_owned()))
                .collect();
            for (mid, track_id) in slots {
                if st.bound.get(&mid) == Some(&track_id) {
                    continue;
                }
                let Some((track, _)) = st.receivers.get(&mid) else {
                    continue;
                };
                let track = track.clone();
                let info = st
                    .roster
                    .track(&track_id)
                    .cloned()
                    .unwrap_or_else(|| TrackInfo {
                        id: track_id.clone(),
                        participant: track_id.split('/').next().unwrap_or_default().to_owned(),
                        kind: TrackKind::Video,
                        source: TrackSource::Camera,
                        muted: false,
                    });
                st.bound.insert(mid.clone(), track_id);
                fresh.push((mid, info, track));
            }
            fresh
        };
        for (_, info, track) in &fresh {
            let detail = track_js(info);
            let _ = js_sys::Reflect::set(&detail, &s("mediaStreamTrack"), track);
            self.emit("trackSubscribed", detail);
        }
        if !fresh.is_empty() {
            self.relayout();
        }
    }

    fn on_track(self: &Rc<Self>, event: RtcTrackEvent) {
        let Some(mid) = event.transceiver().mid() else {
            return;
        };
        let track = event.track();
        let stream = MediaStream::new().expect("MediaStream constructor");
        stream.add_track(&track);
        let audio = track.kind() == "audio";
        self.state
            .borrow_mut()
            .receivers
            .insert(mid.clone(), (track, stream.clone()));
        if audio {
            // Remote audio plays through a hidden element per receive slot.
            if let Some(doc) = web_sys::window().and_then(|w| w.document())
                && let Ok(el) = doc.create_element("audio")
                && let Ok(el) = el.dyn_into::<HtmlAudioElement>()
            {
                el.set_autoplay(true);
                el.set_src_object(Some(&stream));
                let _ = el.set_attribute("data-madang-audio", &mid);
                if let Some(body) = doc.body() {
                    let _ = body.append_child(&el);
                }
                self.state.borrow_mut().audio_out.insert(mid, el);
            }
        }
        self.bind_tracks();
    }

    /// Adds receive slots up to what the server asked for and offers them; one negotiation
    /// at a time (a request during one runs after it).
    async fn negotiate_subscriber(self: &Rc<Self>) -> Result<()> {
        {
            let mut st = self.state.borrow_mut();
            if st.subscriber_busy {
                st.subscriber_again = true;
                return Ok(());
            }
            st.subscriber_busy = true;
        }
        let result = self.negotiate_subscriber_rounds().await;
        self.state.borrow_mut().subscriber_busy = false;
        result
    }

    async fn negotiate_subscriber_rounds(self: &Rc<Self>) -> Result<()> {
        loop {
            let (existing, want) = {
                let mut st = self.state.borrow_mut();
                st.subscriber_again = false;
                (st.subscriber.clone(), st.want)
            };
            let pc = match existing {
                Some(pc) => pc,
                None => {
                    let pc = new_peer_connection()?;
                    let weak: Weak<Inner> = Rc::downgrade(self);
                    let on_track = Handler::new(move |e: JsValue| {
                        if let Some(inner) = weak.upgrade() {
                            inner.on_track(e.unchecked_into());
                        }
                    });
                    pc.set_ontrack(Some(on_track.as_ref().unchecked_ref()));
                    self.handlers.borrow_mut().push(on_track);
                    self.state.borrow_mut().subscriber = Some(pc.clone());
                    pc
                }
            };
            let mut have = (0u32, 0u32);
            for t in pc.get_transceivers().iter() {
                let t: RtcRtpTransceiver = t.unchecked_into();
                match t.receiver().track().kind().as_str() {
                    "audio" => have.0 += 1,
                    _ => have.1 += 1,
                }
            }
            let mut added = false;
            for (kind, have, want) in [("audio", have.0, want.0), ("video", have.1, want.1)] {
                for _ in have..want {
                    let init = obj(&[("direction", s("recvonly"))]);
                    call(&pc, "addTransceiver", &[s(kind), init])
                        .map_err(|e| MadangError::from_js("negotiation", "addTransceiver", &e))?;
                    added = true;
                }
            }
            let restart = std::mem::take(&mut self.state.borrow_mut().subscriber_restart);
            if added || restart {
                let sdp = make_offer(&pc).await?;
                let (tx, rx) = oneshot::channel();
                self.state.borrow_mut().subscriber_answer = Some(tx);
                self.send_signal(ClientMessage::Offer {
                    pc: PeerRole::Subscriber,
                    sdp,
                    publish: Vec::new(),
                });
                let answer = rx
                    .await
                    .map_err(|_| MadangError::new("closed", "the room was left"))?;
                apply_answer(&pc, answer).await?;
            }
            if !self.state.borrow().subscriber_again {
                return Ok(());
            }
        }
    }

    /// Restarts ICE on both connections (the network changed: new credentials, new offers);
    /// DTLS, the tracks and the slots stay. Resolves once both answers are applied.
    pub(crate) async fn restart_ice(self: &Rc<Self>) -> Result<()> {
        let (publisher, subscriber) = {
            let st = self.state.borrow();
            (st.publisher.clone(), st.subscriber.clone())
        };
        if let Some(pc) = publisher {
            call(&pc, "restartIce", &[])
                .map_err(|e| MadangError::from_js("negotiation", "restartIce", &e))?;
            self.negotiate_publisher().await?;
        }
        if let Some(pc) = subscriber {
            call(&pc, "restartIce", &[])
                .map_err(|e| MadangError::from_js("negotiation", "restartIce", &e))?;
            self.state.borrow_mut().subscriber_restart = true;
            self.negotiate_subscriber().await?;
        }
        Ok(())
    }

    /// Sends an application message to everyone else (`to` empty) or some identities.
    pub(crate) fn send_data(&self, topic: &str, payload: &str, to: Vec<String>) -> Result<()> {
        self.signal(ClientMessage::Data {
            message: DataMessage {
                from: String::new(),
                to,
                topic: topic.to_owned(),
                payload: payload.into(),
            },
        })
    }

    /// Sends a protocol message (or queues it while the signal connection is being
    /// reopened); `closed` once the room was left.
    pub(crate) fn signal(&self, message: ClientMessage) -> Result<()> {
        let down = {
            let st = self.state.borrow();
            if st.closed {
                return Err(MadangError::new("closed", "the room was left"));
            }
            st.reconnecting.is_some()
        };
        if !down && self.ws.borrow().ready_state() != WebSocket::OPEN {
            return Err(MadangError::new("closed", "the room was left"));
        }
        self.send_signal(message);
        Ok(())
    }

    /// Statistics from the browser's WebRTC stack, per remote track.
    pub(crate) async fn stats(self: &Rc<Self>) -> Result<JsValue> {
        let (subscriber, publisher, slots) = {
            let st = self.state.borrow();
            (
                st.subscriber.clone(),
                st.publisher.clone(),
                st.bound.clone(),
            )
        };
        let received = Array::new();
        if let Some(pc) = subscriber {
            let report = await_js(pc.get_stats(), "negotiation", "getStats").await?;
            for s in report_values(&report) {
                if get_str(&s, "type").as_deref() != Some("inbound-rtp") {
                    continue;
                }
                let mid = get_str(&s, "mid").unwrap_or_default();
                let track = slots.get(&mid).cloned().unwrap_or_default();
                received.push(&obj(&[
                    ("track", self::s(&track)),
                    ("mid", self::s(&mid)),
                    ("kind", get(&s, "kind")),
                    ("packetsReceived", get(&s, "packetsReceived")),
                    ("packetsLost", get(&s, "packetsLost")),
                    ("bytesReceived", get(&s, "bytesReceived")),
                    ("framesDecoded", get(&s, "framesDecoded")),
                    ("frameWidth", get(&s, "frameWidth")),
                    ("frameHeight", get(&s, "frameHeight")),
                    ("jitter", get(&s, "jitter")),
                    ("keyFramesDecoded", get(&s, "keyFramesDecoded")),
                    ("framesDropped", get(&s, "framesDropped")),
                    ("nackCount", get(&s, "nackCount")),
                    ("pliCount", get(&s, "pliCount")),
                    ("ssrc", get(&s, "ssrc")),
                ]));
            }
        }
        let sent = Array::new();
        if let Some(pc) = publisher {
            let report = await_js(pc.get_stats(), "negotiation", "getStats").await?;
            for s in report_values(&report) {
                if get_str(&s, "type").as_deref() != Some("outbound-rtp") {
                    continue;
                }
                sent.push(&obj(&[
                    ("kind", get(&s, "kind")),
                    ("packetsSent", get(&s, "packetsSent")),
                    ("bytesSent", get(&s, "bytesSent")),
                    ("framesEncoded", get(&s, "framesEncoded")),
                    ("frameWidth", get(&s, "frameWidth")),
                    ("frameHeight", get(&s, "frameHeight")),
                ]));
            }
        }
        Ok(obj(&[("received", received.into()), ("sent", sent.into())]))
    }

    /// Shows the room in `element`, laid out by `grid::layout`.
    pub(crate) fn attach_grid(
        self: &Rc<Self>,
        element: web_sys::HtmlElement,
        options: &JsValue,
    ) -> Result<()> {
        let mode = match get_str(options, "mode") {
            Some(m) => crate::grid::mode_from_str(&m)?,
            None => madang::grid::layout::Mode::Gallery,
        };
        let old = self.state.borrow_mut().grid.take();
        if let Some(old) = old {
            old.detach();
        }
        let room = Rc::downgrade(self);
        let view = GridView::attach(element, mode, move || {
            if let Some(room) = room.upgrade() {
                room.relayout();
            }
        })?;
        self.state.borrow_mut().grid = Some(view);
        self.relayout();
        Ok(())
    }

    /// Removes the grid's elements.
    pub(crate) fn detach_grid(&self) {
        let grid = self.state.borrow_mut().grid.take();
        if let Some(grid) = grid {
            grid.detach();
        }
    }

    /// Lays the grid out again (join, leave, speaker, tracks, resize).
    pub(crate) fn relayout(&self) {
        let (grid, scene) = {
            let st = self.state.borrow();
            let Some(grid) = st.grid.clone() else {
                return;
            };
            let mut people = st.persons();
            for p in &mut people {
                // Paused by the server: the label says why.
                p.video_paused = st.roster.tile_track_of(&p.id).is_some()
                    && st.roster.video_track_of(&p.id).is_none()
                    && !st.roster.is_local(&p.id);
            }
            let streams = people
                .iter()
                .filter_map(|p| Some((p.id.clone(), st.video_stream_of(&p.id)?)))
                .collect();
            let local = st.local_identity().map(str::to_owned);
            (
                grid,
                Scene {
                    people,
                    streams,
                    local,
                },
            )
        };
        // Rendering touches the DOM: after the state borrow ends.
        let (layout, viewport) = grid.render(scene);
        // The server forwards each video at no larger a layer than its tile needs, and
        // nothing of those not shown; sent when it changed.
        let view = {
            let st = self.state.borrow();
            let local = st.local_identity();
            view_layout(&layout, viewport, |p| {
                (Some(p) != local)
                    .then(|| st.roster.tile_track_of(p))
                    .flatten()
                    .into_iter()
                    .collect()
            })
        };
        let fresh = {
            let mut st = self.state.borrow_mut();
            let fresh = view.is_valid() && !st.closed && st.layout_sent.as_ref() != Some(&view);
            if fresh {
                st.layout_sent = Some(view.clone());
            }
            fresh
        };
        if fresh {
            self.send_signal(ClientMessage::Layout(view));
        }
    }

    /// Leaves: tells the server, ends local tracks, closes the connections.
    pub(crate) fn leave(self: &Rc<Self>) {
        let open = !self.state.borrow().closed;
        if open {
            send(&self.ws.borrow(), &ClientMessage::Leave);
            self.shutdown();
            self.emit("disconnected", obj(&[("reason", s("left"))]));
        }
    }

    /// Releases everything: connections, local tracks, audio elements, the grid, handlers.
    fn shutdown(&self) {
        let (publisher, subscriber, published, audio, grid) = {
            let mut st = self.state.borrow_mut();
            st.closed = true;
            st.publisher_answer = None;
            st.subscriber_answer = None;
            (
                st.publisher.take(),
                st.subscriber.take(),
                std::mem::take(&mut st.published),
                std::mem::take(&mut st.audio_out),
                st.grid.take(),
            )
        };
        for p in published {
            p.track.stop();
        }
        for pc in [publisher, subscriber].into_iter().flatten() {
            pc.close();
        }
        for (_, el) in audio {
            el.remove();
        }
        if let Some(grid) = grid {
            grid.detach();
        }
        let ws = self.ws.borrow().clone();
        ws.set_onopen(None);
        ws.set_onmessage(None);
        ws.set_onclose(None);
        let _ = ws.close();
        self.ws_handlers.borrow_mut().clear();
        self.handlers.borrow_mut().clear();
        let on_pagehide = self.on_pagehide.borrow_mut().take();
        if let (Some(f), Some(w)) = (on_pagehide, web_sys::window()) {
            let _ = w.remove_event_listener_with_callback("pagehide", f.as_ref().unchecked_ref());
        }
    }
}
