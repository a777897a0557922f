//! C ABI for madang (`madang.h`).
//!
//! Skeleton: the client, server and event API arrive with the C-ABI issue. Today it exports
//! the library version so that the cdylib and staticlib build and link.
#![deny(missing_docs)]

use std::ffi::c_char;

/// NUL-terminated version string, from the crate version.
static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The library version as a NUL-terminated string with static lifetime; never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn madang_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_is_nul_terminated() {
        // SAFETY: madang_version returns a pointer to a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(super::madang_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
