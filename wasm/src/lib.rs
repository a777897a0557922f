//! Browser client for madang rooms.
//!
//! Skeleton: the browser face (wasm-bindgen bindings over `RTCPeerConnection`, the `signal`
//! protocol and `grid::layout`) arrives with its own issue. Today this crate proves that the
//! `madang` core builds for `wasm32-unknown-unknown` without native dependencies.
#![deny(missing_docs)]

/// Version of the madang core this module was built with.
pub fn core_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Whether a picture size is one madang accepts (even sides, 16..=8192), checked by the same
/// core code the native faces use.
pub fn valid_size(width: u32, height: u32) -> bool {
    madang::media::check_dimensions(width, height).is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn shares_core_checks() {
        assert!(super::valid_size(640, 360));
        assert!(!super::valid_size(641, 360));
    }
}
