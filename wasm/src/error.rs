//! The one error class JavaScript sees.

use wasm_bindgen::prelude::*;

/// Every failure of the madang browser API: a stable machine-readable `code` and a message
/// for people. Promises reject with it; `error` events carry it.
///
/// Codes: `connect_failed` (the signal WebSocket could not open or closed while joining),
/// `refused` (the server refused the join: bad or expired token, wrong room, room full),
/// `timeout`, `media` (camera, microphone or screen not available or denied),
/// `negotiation` (WebRTC setup failed), `closed` (the room was left), `invalid_argument`,
/// `server` (the server reported a problem after joining; `message` starts with its code).
#[wasm_bindgen]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MadangError {
    code: String,
    message: String,
}

#[wasm_bindgen]
impl MadangError {
    /// Stable code, e.g. `refused`.
    #[wasm_bindgen(getter)]
    pub fn code(&self) -> String {
        self.code.clone()
    }

    /// What happened, for people.
    #[wasm_bindgen(getter)]
    pub fn message(&self) -> String {
        self.message.clone()
    }

    /// Always `"MadangError"`, like `Error.name`.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        "MadangError".into()
    }

    /// `MadangError(code): message`.
    #[wasm_bindgen(js_name = toString)]
    pub fn to_js_string(&self) -> String {
        self.to_string()
    }
}

impl std::fmt::Display for MadangError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MadangError({}): {}", self.code, self.message)
    }
}

impl MadangError {
    /// An error with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// Wraps a JavaScript exception (a DOMException from getUserMedia, a failed promise)
    /// under `code`, keeping its text.
    pub fn from_js(code: &str, what: &str, value: &JsValue) -> Self {
        let detail = js_sys::Reflect::get(value, &"message".into())
            .ok()
            .and_then(|m| m.as_string())
            .or_else(|| value.as_string())
            .unwrap_or_else(|| format!("{value:?}"));
        Self::new(code, format!("{what}: {detail}"))
    }
}

/// Result of the browser API's internals.
pub type Result<T> = std::result::Result<T, MadangError>;
