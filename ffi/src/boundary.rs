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
}

impl madang_result {
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
