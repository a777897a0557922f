//! How a C client joins: the server, the token, what it publishes and how it receives,
//! gathered in a `madang_client_config` before `madang_client_new`.

use std::ffi::c_char;
use std::time::Duration;

use madang::grid::layout::Mode;
use madang::media::check_dimensions;
use madang::room::VideoOptions;

use crate::client::layout_mode;
use crate::{madang_result, str_arg};

/// Per-participant frames, or one composited grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Receive {
    Frames,
    Grid {
        width: u32,
        height: u32,
        mode: Mode,
        fps: u32,
    },
}

/// How a client joins: server, token, what it publishes, how it receives.
#[derive(Debug, Clone)]
pub struct madang_client_config {
    pub(crate) url: String,
    pub(crate) token: String,
    pub(crate) name: Option<String>,
    pub(crate) video: Option<VideoOptions>,
    pub(crate) audio: bool,
    pub(crate) receive: Receive,
    pub(crate) stats_interval: Option<Duration>,
    pub(crate) trusted_certificates: Option<Vec<u8>>,
}

/// Creates a client configuration for the server at `url` (e.g. "ws://127.0.0.1:8080/signal")
/// with a `token` from the server (or its token service). Defaults: no publishing, per-
/// participant frames, stats every second. Free it with `madang_client_config_free`.
///
/// Errors: NULL arguments, invalid UTF-8, `MADANG_RESULT_INVALID_ARGUMENT` for a URL that
/// does not start with ws:// or wss:// or an empty token.
///
/// # Safety
/// `url` and `token` must be NUL-terminated; `out_config` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_config_new(
    url: *const c_char,
    token: *const c_char,
    out_config: *mut *mut madang_client_config,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        let (url, token) = match unsafe { (str_arg(url), str_arg(token)) } {
            (Ok(u), Ok(t)) => (u, t),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        if out_config.is_null() {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        }
        if !(url.starts_with("ws://") || url.starts_with("wss://")) || token.is_empty() {
            return madang_result::MADANG_RESULT_INVALID_ARGUMENT;
        }
        let config = Box::new(madang_client_config {
            url: url.to_owned(),
            token: token.to_owned(),
            name: None,
            video: None,
            audio: false,
            receive: Receive::Frames,
            stats_interval: Some(Duration::from_secs(1)),
            trusted_certificates: None,
        });
        // SAFETY: checked non-NULL; the caller owns the new pointer.
        unsafe { *out_config = Box::into_raw(config) };
        madang_result::MADANG_RESULT_OK
    })
}

/// Runs `f` on the configuration behind `config`, or returns `MADANG_RESULT_NULL_ARGUMENT`.
///
/// # Safety
/// `config` must be NULL or a live configuration used by no other thread.
unsafe fn with_config(
    config: *mut madang_client_config,
    f: impl FnOnce(&mut madang_client_config) -> madang_result,
) -> madang_result {
    // SAFETY: per the contract.
    match unsafe { config.as_mut() } {
        Some(c) => f(c),
        None => madang_result::MADANG_RESULT_NULL_ARGUMENT,
    }
}

/// Trusts the certificates in the PEM file at `path` for a `wss://` server, besides the
/// web's public roots: a self-signed certificate or a city's own CA. NULL trusts the public
/// roots only again.
///
/// Errors: `MADANG_RESULT_IO` when the file cannot be read, `MADANG_RESULT_INVALID_ARGUMENT`
/// when it holds no PEM certificate.
///
/// # Safety
/// `config` must come from `madang_client_config_new`; `path` must be NULL or
/// NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_config_set_trusted_certificates(
    config: *mut madang_client_config,
    path: *const c_char,
) -> madang_result {
    ffi_boundary!({
        let pem = if path.is_null() {
            None
        } else {
            // SAFETY: per the contract.
            let path = match unsafe { str_arg(path) } {
                Ok(p) => p,
                Err(e) => return e,
            };
            match std::fs::read(path) {
                Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => {
                    Some(pem)
                }
                Ok(_) => return madang_result::MADANG_RESULT_INVALID_ARGUMENT,
                Err(_) => return madang_result::MADANG_RESULT_IO,
            }
        };
        // SAFETY: per the contract.
        unsafe {
            with_config(config, |c| {
                c.trusted_certificates = pem;
                madang_result::MADANG_RESULT_OK
            })
        }
    })
}

/// Sets the display name the others see instead of the token's (1 to 64 characters).
///
/// Errors: NULL, invalid UTF-8, `MADANG_RESULT_INVALID_ARGUMENT` for an empty or too long name.
///
/// # Safety
/// `config` must come from `madang_client_config_new`; `name` must be NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_config_set_name(
    config: *mut madang_client_config,
    name: *const c_char,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        let name = match unsafe { str_arg(name) } {
            Ok(n) => n,
            Err(e) => return e,
        };
        // SAFETY: per the contract.
        unsafe {
            with_config(config, |c| {
                if !madang::signal::valid_display_name(name) {
                    return madang_result::MADANG_RESULT_INVALID_ARGUMENT;
                }
                c.name = Some(name.to_owned());
                madang_result::MADANG_RESULT_OK
            })
        }
    })
}

/// Publishes a camera track of `width`×`height` (even, 16..=8192) at `fps` (1..=60) and
/// `bitrate_kbps` H.264 (0 picks one for the size; else 50..=20000). Frames are then pushed
/// with `madang_client_push_video_frame`.
///
/// Errors: `MADANG_RESULT_INVALID_ARGUMENT` for values out of range.
///
/// # Safety
/// `config` must come from `madang_client_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_config_set_video(
    config: *mut madang_client_config,
    width: u32,
    height: u32,
    fps: u32,
    bitrate_kbps: u32,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe {
            with_config(config, |c| {
                let rate_ok = bitrate_kbps == 0 || (50..=20_000).contains(&bitrate_kbps);
                if check_dimensions(width, height).is_err() || !(1..=60).contains(&fps) || !rate_ok
                {
                    return madang_result::MADANG_RESULT_INVALID_ARGUMENT;
                }
                let mut video = VideoOptions::new(width, height);
                video.fps = fps;
                if bitrate_kbps > 0 {
                    video.bitrate_kbps = bitrate_kbps;
                }
                c.video = Some(video);
                madang_result::MADANG_RESULT_OK
            })
        }
    })
}

/// Sends the camera set with `madang_client_config_set_video` as simulcast (`enabled`
/// true): the full size and halves of it while at least 240 wide (at most three layers, the
/// bitrate given being the full size's), each its own stream, so that the server sends each
/// receiver the size its link and its tile take. Off by default. Frames are pushed at the
/// full size as before; madang scales them.
///
/// Errors: `MADANG_RESULT_INVALID_ARGUMENT` before `madang_client_config_set_video`.
///
/// # Safety
/// `config` must come from `madang_client_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_config_set_simulcast(
    config: *mut madang_client_config,
    enabled: bool,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe {
            with_config(config, |c| match &mut c.video {
                Some(video) => {
                    video.simulcast = enabled;
                    madang_result::MADANG_RESULT_OK
                }
                None => madang_result::MADANG_RESULT_INVALID_ARGUMENT,
            })
        }
    })
}

/// Publishes a microphone track (`enabled` true) or not. Audio is pushed with
/// `madang_client_push_audio_frame` and sent as Opus.
///
/// # Safety
/// `config` must come from `madang_client_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_config_set_audio(
    config: *mut madang_client_config,
    enabled: bool,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe {
            with_config(config, |c| {
                c.audio = enabled;
                madang_result::MADANG_RESULT_OK
            })
        }
    })
}

/// Receives each participant's pictures as `MADANG_EVENT_VIDEO_FRAME` (the default).
///
/// # Safety
/// `config` must come from `madang_client_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_config_receive_frames(
    config: *mut madang_client_config,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe {
            with_config(config, |c| {
                c.receive = Receive::Frames;
                madang_result::MADANG_RESULT_OK
            })
        }
    })
}

/// Receives the room as one composited picture of `width`×`height` (even, 16..=8192) in
/// `mode` (a `madang_layout_mode`), as `MADANG_EVENT_GRID_FRAME` at `fps` (1..=60) instead of
/// per-participant pictures. The client tells the server the size of each tile as the grid
/// changes (the protocol's `layout`): a simulcast publisher is forwarded at no larger a
/// layer than its tile needs, one not on the grid not at all.
///
/// Errors: `MADANG_RESULT_INVALID_ARGUMENT` for values out of range or an unknown mode.
///
/// # Safety
/// `config` must come from `madang_client_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_config_receive_grid(
    config: *mut madang_client_config,
    width: u32,
    height: u32,
    mode: u32,
    fps: u32,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe {
            with_config(config, |c| {
                let Some(mode) = layout_mode(mode) else {
                    return madang_result::MADANG_RESULT_INVALID_ARGUMENT;
                };
                if check_dimensions(width, height).is_err() || !(1..=60).contains(&fps) {
                    return madang_result::MADANG_RESULT_INVALID_ARGUMENT;
                }
                c.receive = Receive::Grid {
                    width,
                    height,
                    mode,
                    fps,
                };
                madang_result::MADANG_RESULT_OK
            })
        }
    })
}

/// Sets how often `MADANG_EVENT_STATS` comes, in ms (0 turns it off; default 1000).
///
/// # Safety
/// `config` must come from `madang_client_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_config_set_stats_interval(
    config: *mut madang_client_config,
    interval_ms: u32,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe {
            with_config(config, |c| {
                c.stats_interval =
                    (interval_ms > 0).then(|| Duration::from_millis(interval_ms as u64));
                madang_result::MADANG_RESULT_OK
            })
        }
    })
}

/// Frees a client configuration. NULL is a no-op.
///
/// # Safety
/// `config` must be NULL or come from `madang_client_config_new`, and not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_client_config_free(config: *mut madang_client_config) {
    ffi_boundary_void!({
        if !config.is_null() {
            // SAFETY: created by Box::into_raw in madang_client_config_new, freed once.
            drop(unsafe { Box::from_raw(config) });
        }
    })
}
