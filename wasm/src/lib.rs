//! madang in the browser: join a madang room from a web page. The browser cannot open UDP
//! sockets, so this module drives the browser's own `RTCPeerConnection` and `getUserMedia`,
//! speaks the same signal protocol as the Rust and C clients (`madang::signal`) and lays the
//! room out with the same `madang::grid::layout`.
//!
//! ```js
//! import init, { Room } from './pkg/madang_wasm.js';
//! await init();
//! const room = await Room.connect('ws://localhost:8080/signal', token, { name: 'Jongno-gu' });
//! room.on('participantJoined', (e) => console.log(e.identity, 'joined'));
//! await room.publishCamera({ width: 640, height: 360 });
//! await room.publishMicrophone();
//! room.attachGrid(document.getElementById('grid'), { mode: 'gallery' });
//! room.sendData('hello', { topic: 'chat' });
//! ```
//!
//! Rules kept by this crate: no exported `async fn(&mut self)` (methods take `&self` and
//! return Promises over a shared handle), and no call into JavaScript while the room's state
//! is borrowed (see `room.rs`). Every failure is a [`MadangError`] with a stable `code`.
#![deny(missing_docs)]

mod error;
mod grid;
mod js;
mod room;

use std::rc::Rc;

use js_sys::{Function, Promise};
use madang::signal::{ClientMessage, TrackKind, TrackSource};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

pub use error::MadangError;
pub use grid::{layout_for, mode_from_str, tile_css};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Options of `Room.connect`. */
export interface ConnectOptions {
  /** Display name shown to the others instead of the token's (1 to 64 characters). */
  name?: string;
  /** How long to wait for the server to accept the join (default 10000). */
  joinTimeoutMs?: number;
}
/** Options of `publishCamera` and `publishScreen`: the capture's (passed to getUserMedia /
 * getDisplayMedia), and how it is sent. `simulcast`: the full size and halves of it (down to
 * 240 wide, at most three), each its own stream, so that the server sends each viewer the
 * size its link and tile take; `maxBitrate` (bit/s) is the full size's. */
export interface CaptureOptions { width?: number; height?: number; frameRate?: number; deviceId?: string; simulcast?: boolean; maxBitrate?: number; }
/** Options of `attachGrid`. */
export interface GridOptions { mode?: 'gallery' | 'speaker' | 'spotlight' | 'broadcast'; }
/** Options of `sendData`. */
export interface DataOptions { topic?: string; to?: string[]; }
/** The events a room emits; every event object also has `type`. */
export interface RoomEvents {
  participantJoined: { identity: string; name: string; role: string };
  participantLeft: { identity: string; reason: string };
  trackPublished: { track: string; participant: string; kind: 'audio' | 'video'; source: string; muted: boolean };
  trackUnpublished: { track: string };
  trackMuted: { track: string; muted: boolean };
  trackSubscribed: { track: string; participant: string; kind: 'audio' | 'video'; source: string; muted: boolean; mediaStreamTrack: MediaStreamTrack };
  activeSpeaker: { speakers: { identity: string; level: number }[] };
  data: { from: string; topic: string; payload: string; to: string[] };
  /** To hosts: the raised hands, first raised first. */
  hands: { queue: string[] };
  /** A host sent this page's raised hand back (or let it in: `roleChanged` follows). */
  handLowered: {};
  /** A host promoted or demoted someone; `me` when it is this page (made a viewer, its
   * tracks have stopped; made a speaker, it may publish). */
  roleChanged: { identity: string; role: string; me: boolean };
  /** The room's recording started (`on`) or stopped, by host `by` (`null`: the server's
   * configuration); also right after joining a room being recorded. */
  recording: { on: boolean; by: string | null };
  /** The signal connection dropped (no close frame: a proxy or NAT reset it, the network
   * changed); the call goes on and a new one is being opened to take the session back
   * (for up to 15 s). Messages sent meanwhile wait for it. */
  reconnecting: {};
  /** The session is back on a new signal connection; events for what changed meanwhile came
   * just before. */
  reconnected: {};
  disconnected: { reason: string };
  error: { error: MadangError };
}
export type RoomEventName = keyof RoomEvents;
"#;

#[wasm_bindgen]
extern "C" {
    /// `ConnectOptions` in TypeScript.
    #[wasm_bindgen(typescript_type = "ConnectOptions")]
    pub type ConnectOptions;
    /// `CaptureOptions` in TypeScript.
    #[wasm_bindgen(typescript_type = "CaptureOptions")]
    pub type CaptureOptions;
    /// `GridOptions` in TypeScript.
    #[wasm_bindgen(typescript_type = "GridOptions")]
    pub type GridOptions;
    /// `DataOptions` in TypeScript.
    #[wasm_bindgen(typescript_type = "DataOptions")]
    pub type DataOptions;
    /// `RoomEventName` in TypeScript.
    #[wasm_bindgen(typescript_type = "RoomEventName")]
    pub type RoomEventName;
}

/// The madang version this module was built from.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// A joined room. Create with `Room.connect`.
#[wasm_bindgen]
pub struct Room {
    inner: Rc<room::Inner>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room").finish_non_exhaustive()
    }
}

fn promise(
    f: impl std::future::Future<Output = Result<JsValue, MadangError>> + 'static,
) -> Promise {
    future_to_promise(async move { f.await.map_err(JsValue::from) })
}

fn options(v: Option<JsValue>) -> JsValue {
    v.unwrap_or(JsValue::UNDEFINED)
}

#[wasm_bindgen]
impl Room {
    /// Opens the signal connection to `url` (`ws://host:port/signal`), joins with `token` and
    /// resolves once the server accepted. Rejects with a `MadangError`: `connect_failed`,
    /// `refused`, `timeout`.
    pub async fn connect(
        url: String,
        token: String,
        options: Option<ConnectOptions>,
    ) -> Result<Room, MadangError> {
        let options = self::options(options.map(Into::into));
        let inner = room::Inner::connect(&url, &token, &options).await?;
        Ok(Room { inner })
    }

    /// The room's name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.inner.state.borrow().room_name().to_owned()
    }

    /// This participant's identity.
    #[wasm_bindgen(getter)]
    pub fn identity(&self) -> String {
        self.inner
            .state
            .borrow()
            .local_identity()
            .unwrap_or_default()
            .to_owned()
    }

    /// Everyone in the room including this page, in join order:
    /// `{identity, name, role}[]`.
    #[wasm_bindgen(
        getter,
        unchecked_return_type = "{ identity: string; name: string; role: string }[]"
    )]
    pub fn participants(&self) -> JsValue {
        let people = self.inner.state.borrow().people().to_vec();
        room::participants_js(&people)
    }

    /// This page's role now (`"host"`, `"speaker"`, `"viewer"`): from the token, then as
    /// hosts change it.
    #[wasm_bindgen(getter)]
    pub fn role(&self) -> String {
        let st = self.inner.state.borrow();
        st.roster()
            .local()
            .map(|l| l.role.to_string())
            .unwrap_or_default()
    }

    /// To hosts: the raised hands, first raised first.
    #[wasm_bindgen(getter)]
    pub fn hands(&self) -> Vec<String> {
        self.inner.state.borrow().roster().hands().to_vec()
    }

    /// Raises (`true`) or lowers this viewer's hand to ask to be heard; hosts get `hands`.
    #[wasm_bindgen(js_name = raiseHand)]
    pub fn raise_hand(&self, raised: bool) -> Result<(), MadangError> {
        self.inner.signal(ClientMessage::Hand { raised })
    }

    /// Host only: sends `identity`'s raised hand back.
    #[wasm_bindgen(js_name = lowerHand)]
    pub fn lower_hand(&self, identity: String) -> Result<(), MadangError> {
        self.inner.signal(ClientMessage::LowerHand { identity })
    }

    /// Host only: lets viewer `identity` in as a speaker (everyone gets `roleChanged`).
    pub fn promote(&self, identity: String) -> Result<(), MadangError> {
        self.inner.signal(ClientMessage::Promote { identity })
    }

    /// Host only: makes speaker `identity` a viewer again; its tracks end for everyone.
    pub fn demote(&self, identity: String) -> Result<(), MadangError> {
        self.inner.signal(ClientMessage::Demote { identity })
    }

    /// Host only: mutes `identity`'s microphone for everyone (it may unmute itself).
    #[wasm_bindgen(js_name = muteParticipant)]
    pub fn mute_participant(&self, identity: String) -> Result<(), MadangError> {
        self.inner
            .signal(ClientMessage::MuteParticipant { identity })
    }

    /// Host only: starts (`true`) or stops recording the room, on a server that records
    /// (`madang serve --record DIR`); everyone gets `recording`.
    pub fn record(&self, on: bool) -> Result<(), MadangError> {
        self.inner.signal(ClientMessage::Record { on })
    }

    /// Host only: removes `identity` from the room (hosts cannot be removed).
    #[wasm_bindgen(js_name = removeParticipant)]
    pub fn remove_participant(&self, identity: String) -> Result<(), MadangError> {
        self.inner.signal(ClientMessage::Remove { identity })
    }

    /// Publishes the camera (getUserMedia) as H.264. Rejects with `media` when there is no
    /// camera or permission is denied.
    #[wasm_bindgen(js_name = publishCamera, unchecked_return_type = "Promise<void>")]
    pub fn publish_camera(&self, options: Option<CaptureOptions>) -> Promise {
        self.publish(TrackSource::Camera, options.map(Into::into))
    }

    /// Publishes the microphone as Opus.
    #[wasm_bindgen(js_name = publishMicrophone, unchecked_return_type = "Promise<void>")]
    pub fn publish_microphone(&self) -> Promise {
        self.publish(TrackSource::Microphone, None)
    }

    /// Publishes a screen, window or tab (getDisplayMedia) as H.264.
    #[wasm_bindgen(js_name = publishScreen, unchecked_return_type = "Promise<void>")]
    pub fn publish_screen(&self, options: Option<CaptureOptions>) -> Promise {
        self.publish(TrackSource::Screen, options.map(Into::into))
    }

    fn publish(&self, source: TrackSource, options: Option<JsValue>) -> Promise {
        let inner = self.inner.clone();
        let options = self::options(options);
        promise(async move {
            inner.publish(source, options).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Stops publishing `source` (`"camera"`, `"microphone"` or `"screen"`): the local track
    /// ends and the others get `trackUnpublished`. It can be published again.
    pub fn unpublish(&self, source: &str) -> Result<(), MadangError> {
        let source = match source {
            "camera" => TrackSource::Camera,
            "microphone" => TrackSource::Microphone,
            "screen" => TrackSource::Screen,
            other => {
                return Err(MadangError::new(
                    "invalid_argument",
                    format!("unknown source {other:?} (camera, microphone, screen)"),
                ));
            }
        };
        self.inner.unpublish(source)
    }

    /// Mutes (`true`) or unmutes what is published of `kind` (`"audio"` or `"video"`).
    #[wasm_bindgen(js_name = setMuted)]
    pub fn set_muted(&self, kind: &str, muted: bool) -> Result<(), MadangError> {
        let kind = match kind {
            "audio" => TrackKind::Audio,
            "video" => TrackKind::Video,
            other => {
                return Err(MadangError::new(
                    "invalid_argument",
                    format!("unknown kind {other:?} (audio, video)"),
                ));
            }
        };
        self.inner.set_muted(kind, muted)
    }

    /// Calls `listener(event)` for every `name` event (see `RoomEvents`).
    #[wasm_bindgen(js_name = addEventListener)]
    pub fn add_event_listener(&self, name: RoomEventName, listener: Function) {
        if let Some(name) = JsValue::from(name).as_string() {
            self.inner.listen(&name, listener);
        }
    }

    /// Removes a listener added with `addEventListener` or `on`.
    #[wasm_bindgen(js_name = removeEventListener)]
    pub fn remove_event_listener(&self, name: RoomEventName, listener: Function) {
        if let Some(name) = JsValue::from(name).as_string() {
            self.inner.unlisten(&name, &listener);
        }
    }

    /// Same as `addEventListener`; returns the room for chaining.
    pub fn on(&self, name: RoomEventName, listener: Function) -> Room {
        self.add_event_listener(name, listener);
        Room {
            inner: self.inner.clone(),
        }
    }

    /// Shows the room inside `element`: one `<video>` per tile, placed by `grid::layout`
    /// and placed again on join, leave, resize and active-speaker change.
    #[wasm_bindgen(js_name = attachGrid)]
    pub fn attach_grid(
        &self,
        element: web_sys::HtmlElement,
        options: Option<GridOptions>,
    ) -> Result<(), MadangError> {
        self.inner
            .attach_grid(element, &self::options(options.map(Into::into)))
    }

    /// Removes the grid's elements.
    #[wasm_bindgen(js_name = detachGrid)]
    pub fn detach_grid(&self) {
        self.inner.detach_grid();
    }

    /// Sends `payload` (text) to everyone else, or to `options.to`, on `options.topic`
    /// (default `"chat"`). Reliable and ordered.
    #[wasm_bindgen(js_name = sendData)]
    pub fn send_data(
        &self,
        payload: &str,
        options: Option<DataOptions>,
    ) -> Result<(), MadangError> {
        let options = self::options(options.map(Into::into));
        let topic = js::get_str(&options, "topic").unwrap_or_else(|| "chat".into());
        let to_value = js::get(&options, "to");
        let to: Vec<String> = if js_sys::Array::is_array(&to_value) {
            js_sys::Array::from(&to_value)
                .iter()
                .filter_map(|v| v.as_string())
                .collect()
        } else {
            Vec::new()
        };
        self.inner.send_data(&topic, payload, to)
    }

    /// Statistics from the browser's WebRTC stack:
    /// `{received: [{track, kind, framesDecoded, packetsLost, …}], sent: [...]}`.
    #[wasm_bindgen(unchecked_return_type = "Promise<{ received: any[]; sent: any[] }>")]
    pub fn stats(&self) -> Promise {
        let inner = self.inner.clone();
        promise(async move { inner.stats().await })
    }

    /// Restarts ICE on both connections: call it when the device's network changed (a
    /// phone from LTE to Wi-Fi; `navigator.connection`'s `change` event where there is
    /// one). New ICE credentials and offers; the tracks and the session stay. Resolves once
    /// the server answered both.
    #[wasm_bindgen(js_name = restartIce, unchecked_return_type = "Promise<void>")]
    pub fn restart_ice(&self) -> Promise {
        let inner = self.inner.clone();
        promise(async move {
            inner.restart_ice().await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Leaves the room: tells the server, stops local tracks, closes the connections and
    /// removes the grid. A `disconnected` event with reason `left` follows.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn leave(&self) -> Promise {
        let inner = self.inner.clone();
        promise(async move {
            inner.leave();
            Ok(JsValue::UNDEFINED)
        })
    }
}

#[cfg(test)]
mod tests;
