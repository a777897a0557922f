//! C ABI for madang (`madang.h`), following the rustls-ffi conventions: one `madang_` prefix,
//! opaque handles with `_new`/`_free` (`_free(NULL)` is a no-op), `madang_result` codes with
//! stable numbers, out-parameters written only on success, and every exported body inside
//! one panic boundary.
//!
//! Two faces: a client (`madang_client_*`) that joins a room, publishes frames C pushes and
//! hands out what happens through `madang_client_poll_event`; and an embedded room server
//! (`madang_server_*`). Log lines are read with `madang_log_pop`.
//!
//! Threads: a handle may move between threads but must not be used by two at once. madang
//! never calls into C from a thread C did not start.
#![deny(missing_docs)]
#![allow(non_camel_case_types)]

use std::ffi::{CStr, c_char};

#[macro_use]
mod boundary;
pub use boundary::madang_result;

/// NUL-terminated version string, from the crate version.
static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The library version as a NUL-terminated string with static lifetime; never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn madang_version() -> *const c_char {
    boundary::guard_with(VERSION.as_ptr().cast(), || VERSION.as_ptr().cast())
}

/// A human-readable, NUL-terminated, static description of a result code (a
/// `madang_result`); never NULL, also for numbers that are not a code.
#[unsafe(no_mangle)]
pub extern "C" fn madang_result_message(result: u32) -> *const c_char {
    let panic_message = madang_result::MADANG_RESULT_PANIC.message().as_ptr().cast();
    boundary::guard_with(panic_message, || {
        let text =
            madang_result::from_u32(result).map_or("unknown result code\0", madang_result::message);
        text.as_ptr().cast()
    })
}

/// The threads behind a client or server handle: a two-worker tokio runtime whose threads
/// are named `name`. `MADANG_RESULT_IO` when the operating system refuses them.
fn runtime(name: &str) -> Result<tokio::runtime::Runtime, madang_result> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name(name)
        .build()
        .map_err(|_| madang_result::MADANG_RESULT_IO)
}

/// Reads a C string argument: NULL and invalid UTF-8 are errors.
///
/// # Safety
/// `s` must be NULL or point to a NUL-terminated string valid for the call.
unsafe fn str_arg<'a>(s: *const c_char) -> Result<&'a str, madang_result> {
    if s.is_null() {
        return Err(madang_result::MADANG_RESULT_NULL_ARGUMENT);
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map_err(|_| madang_result::MADANG_RESULT_INVALID_UTF8)
}

/// Copies `text` and a NUL into `buf` of `len` bytes; writes the length without the NUL to
/// `out_written`. Fails, writing nothing, when it does not fit.
///
/// # Safety
/// `buf` must point to `len` writable bytes; `out_written` to a writable `usize`.
unsafe fn write_str(
    text: &str,
    buf: *mut c_char,
    len: usize,
    out_written: *mut usize,
) -> madang_result {
    if buf.is_null() || out_written.is_null() {
        return madang_result::MADANG_RESULT_NULL_ARGUMENT;
    }
    if text.len() + 1 > len {
        return madang_result::MADANG_RESULT_BUFFER_TOO_SMALL;
    }
    // SAFETY: `buf` has room for `text.len() + 1` bytes (checked above); regions are distinct.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        *buf.add(text.len()) = 0;
        *out_written = text.len();
    }
    madang_result::MADANG_RESULT_OK
}

mod client;
mod client_config;
mod client_events;
mod logging;
mod server;

pub use client::*;
pub use client_config::*;
pub use logging::*;
pub use server::*;

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod tests;
