//! The wire protocol between clients and the room server: versioned JSON messages over a
//! WebSocket, shared by the Rust client, the browser module (wasm32) and the server.
//!
//! Every message is one JSON object with a `type` field. A session starts with
//! [`ClientMessage::Join`] carrying [`PROTOCOL_VERSION`] and a token; the server answers
//! [`ServerMessage::Joined`] or [`ServerMessage::Error`] and closes. After that, SDP offers and
//! answers and ICE candidates flow in both directions, the server announces participants and
//! tracks, and data messages are relayed. `docs/protocol.md` shows a whole exchange.
//!
//! ```
//! use madang::signal::{ClientMessage, decode_client, encode};
//! let text = encode(&ClientMessage::Leave);
//! assert_eq!(text, r#"{"type":"leave"}"#);
//! assert_eq!(decode_client(&text).unwrap(), ClientMessage::Leave);
//! ```

mod message;

pub use message::*;

/// Version of this protocol. A server refuses a join with another version
/// ([`ErrorCode::UnsupportedVersion`]).
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest signal message accepted, in bytes. SDP for a 24-party room with audio and video
/// from everyone stays well below it.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Why a signal message could not be read. Each maps to an [`ErrorCode`] the server sends
/// before it closes the session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalError {
    /// Larger than [`MAX_MESSAGE_BYTES`].
    #[error("signal message of {len} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge {
        /// Size received.
        len: usize,
    },
    /// Not JSON, or not a message this protocol knows.
    #[error("malformed signal message: {detail}")]
    Malformed {
        /// What the JSON parser said (line, column, expected field).
        detail: String,
    },
}

impl SignalError {
    /// The error code a peer is told.
    pub fn code(&self) -> ErrorCode {
        match self {
            SignalError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            SignalError::Malformed { .. } => ErrorCode::BadMessage,
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, SignalError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(SignalError::TooLarge { len: text.len() });
    }
    serde_json::from_str(text).map_err(|e| SignalError::Malformed {
        detail: e.to_string(),
    })
}

/// Reads a message sent by a client.
pub fn decode_client(text: &str) -> Result<ClientMessage, SignalError> {
    decode(text)
}

/// Reads a message sent by the server.
pub fn decode_server(text: &str) -> Result<ServerMessage, SignalError> {
    decode(text)
}

/// Writes a message as compact JSON.
pub fn encode<T: serde::Serialize>(message: &T) -> String {
    // Protocol types are plain data (strings, numbers, enums, vectors) with string keys, for
    // which serialisation cannot fail.
    serde_json::to_string(message).expect("signal messages always serialise")
}

#[cfg(test)]
mod tests;
