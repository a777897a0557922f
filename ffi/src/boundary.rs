//! Result codes and the panic boundary every exported function runs inside.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Outcome of a madang C call. The numbers are stable across releases; new codes are only
/// ever added.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum madang_result {
    /// Success; out-parameters were written.
    MADANG_RESULT_OK = 0,
    /// A required pointer argument was NULL.
    MADANG_RESULT_NULL_ARGUMENT = 1,
    /// A string argument was not valid UTF-8.
    MADANG_RESULT_INVALID_UTF8 = 2,
    /// The output buffer is too small; nothing was written.
    MADANG_RESULT_BUFFER_TOO_SMALL = 3,
    /// An address string did not parse as "ip:port".
    MADANG_RESULT_INVALID_ADDRESS = 4,
    /// An argument was out of range or not one of the accepted values.
    MADANG_RESULT_INVALID_ARGUMENT = 5,
    /// The operating system refused (threads, sockets).
    MADANG_RESULT_IO = 6,
    /// A listening address is taken or not available on this machine.
    MADANG_RESULT_ADDRESS_IN_USE = 7,
    /// madang hit an internal error (a Rust panic), caught at the boundary. A bug: please report.
    MADANG_RESULT_PANIC = 8,
    /// Nothing happened within the timeout (`madang_client_poll_event`).
    MADANG_RESULT_TIMEOUT = 9,
    /// The session is over: the client left or was disconnected (after the
    /// `MADANG_EVENT_DISCONNECTED` event).
    MADANG_RESULT_CLOSED = 10,
    /// The client is not connected yet (`madang_client_connect` first).
    MADANG_RESULT_NOT_CONNECTED = 11,
    /// The client is already connected (or has been); create a new one to join again.
    MADANG_RESULT_ALREADY_CONNECTED = 12,
    /// The server could not be reached or the signal connection broke while joining.
    MADANG_RESULT_CONNECT_FAILED = 13,
    /// The server refused the join: invalid or expired token, wrong room, room full, bad name.
    MADANG_RESULT_REFUSED = 14,
    /// A pushed frame is malformed: wrong size, odd dimensions, strides shorter than a row,
    /// an audio block that is not 10 or 20 ms of 48 kHz mono or stereo.
    MADANG_RESULT_INVALID_FRAME = 15,
    /// Encoding or WebRTC transport failed.
    MADANG_RESULT_MEDIA = 16,
    /// The client was not set up to publish that kind of media (see the config).
    MADANG_RESULT_NOT_PUBLISHING = 17,
    /// Nothing is waiting (`madang_log_pop`).
    MADANG_RESULT_EMPTY = 18,
    /// The server has no token secret of its own: set one (`madang_server_config_set_secret`)
    /// or ask for development mode (`madang_server_config_set_dev`).
    MADANG_RESULT_NO_SECRET = 19,
    /// The operating system does not allow this process to listen there (a port below 1024
    /// without the privilege, an address it may not use).
    MADANG_RESULT_PERMISSION_DENIED = 20,
}

impl madang_result {
    /// Every code, in number order.
    pub const ALL: [madang_result; 21] = [
        Self::MADANG_RESULT_OK,
        Self::MADANG_RESULT_NULL_ARGUMENT,
        Self::MADANG_RESULT_INVALID_UTF8,
        Self::MADANG_RESULT_BUFFER_TOO_SMALL,
        Self::MADANG_RESULT_INVALID_ADDRESS,
        Self::MADANG_RESULT_INVALID_ARGUMENT,
        Self::MADANG_RESULT_IO,
        Self::MADANG_RESULT_ADDRESS_IN_USE,
        Self::MADANG_RESULT_PANIC,
        Self::MADANG_RESULT_TIMEOUT,
        Self::MADANG_RESULT_CLOSED,
        Self::MADANG_RESULT_NOT_CONNECTED,
        Self::MADANG_RESULT_ALREADY_CONNECTED,
        Self::MADANG_RESULT_CONNECT_FAILED,
        Self::MADANG_RESULT_REFUSED,
        Self::MADANG_RESULT_INVALID_FRAME,
        Self::MADANG_RESULT_MEDIA,
        Self::MADANG_RESULT_NOT_PUBLISHING,
        Self::MADANG_RESULT_EMPTY,
        Self::MADANG_RESULT_NO_SECRET,
        Self::MADANG_RESULT_PERMISSION_DENIED,
    ];

    /// The code with number `v`, if there is one.
    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }

    /// Static NUL-terminated description.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::MADANG_RESULT_OK => "ok\0",
            Self::MADANG_RESULT_NULL_ARGUMENT => "a required pointer argument was NULL\0",
            Self::MADANG_RESULT_INVALID_UTF8 => "a string argument is not valid UTF-8\0",
            Self::MADANG_RESULT_BUFFER_TOO_SMALL => "the output buffer is too small\0",
            Self::MADANG_RESULT_INVALID_ADDRESS => "an address is not of the form ip:port\0",
            Self::MADANG_RESULT_INVALID_ARGUMENT => "an argument is out of range or unknown\0",
            Self::MADANG_RESULT_IO => "the operating system refused (threads or sockets)\0",
            Self::MADANG_RESULT_ADDRESS_IN_USE => "a listening address is in use or unavailable\0",
            Self::MADANG_RESULT_PANIC => "internal error in madang (caught panic); please report\0",
            Self::MADANG_RESULT_TIMEOUT => "nothing happened within the timeout\0",
            Self::MADANG_RESULT_CLOSED => "the session is over (left or disconnected)\0",
            Self::MADANG_RESULT_NOT_CONNECTED => "the client is not connected yet\0",
            Self::MADANG_RESULT_ALREADY_CONNECTED => "the client is already connected\0",
            Self::MADANG_RESULT_CONNECT_FAILED => "the server could not be reached\0",
            Self::MADANG_RESULT_REFUSED => "the server refused to let the client join\0",
            Self::MADANG_RESULT_INVALID_FRAME => {
                "the frame is malformed (size, dimensions, strides or length)\0"
            }
            Self::MADANG_RESULT_MEDIA => "encoding or media transport failed\0",
            Self::MADANG_RESULT_NOT_PUBLISHING => "the client was not set up to publish that\0",
            Self::MADANG_RESULT_EMPTY => "nothing is waiting\0",
            Self::MADANG_RESULT_NO_SECRET => {
                "the server has no token secret: set one, or ask for development mode\0"
            }
            Self::MADANG_RESULT_PERMISSION_DENIED => {
                "the operating system does not allow listening on that address\0"
            }
        }
    }
}

/// Runs `f`; a panic returns `fallback` instead of unwinding into C.
pub(crate) fn guard_with<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Runs `f`, turning a panic into `MADANG_RESULT_PANIC`.
pub(crate) fn guard(f: impl FnOnce() -> madang_result) -> madang_result {
    guard_with(madang_result::MADANG_RESULT_PANIC, f)
}

/// Wraps an exported body returning `madang_result` in the panic boundary.
macro_rules! ffi_boundary {
    ($body:block) => {
        $crate::boundary::guard(|| $body)
    };
}

/// Wraps an exported body returning nothing in the panic boundary.
macro_rules! ffi_boundary_void {
    ($body:block) => {
        $crate::boundary::guard_with((), || $body)
    };
}
