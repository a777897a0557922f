//! Embedding the room server: configuration, start, signal URL, tokens, stop.

use std::ffi::c_char;
use std::net::SocketAddr;
use std::time::Duration;

use madang::sfu::{DEV_SECRET, Server, ServerConfig, SfuError};

use crate::madang_result;
use crate::{str_arg, write_str};

/// Settings for an embedded room server (loopback and development defaults).
pub struct madang_server_config {
    pub(crate) inner: ServerConfig,
}

/// An embedded room server with its own threads.
pub struct madang_server {
    runtime: Option<tokio::runtime::Runtime>,
    server: Option<Server>,
    signal_url: String,
}

impl std::fmt::Debug for madang_server_config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("madang_server_config")
            .field("http", &self.inner.http)
            .field("udp", &self.inner.udp)
            .field("dev", &self.inner.dev)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for madang_server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("madang_server")
            .field("signal_url", &self.signal_url)
            .finish_non_exhaustive()
    }
}

/// Creates a server configuration: loopback, any free ports, no token secret. Before
/// `madang_server_start`, set a secret (`madang_server_config_set_secret`) or, for local
/// testing only, ask for development mode (`madang_server_config_set_dev`); otherwise the
/// start fails with `MADANG_RESULT_NO_SECRET`. Free it with `madang_server_config_free`.
///
/// # Safety
/// `out_config` must point to a writable pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_server_config_new(
    out_config: *mut *mut madang_server_config,
) -> madang_result {
    ffi_boundary!({
        if out_config.is_null() {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        }
        let config = Box::new(madang_server_config {
            inner: ServerConfig {
                secret: Vec::new(),
                dev: false,
                ..ServerConfig::dev()
            },
        });
        // SAFETY: checked non-NULL; the caller owns the new pointer.
        unsafe { *out_config = Box::into_raw(config) };
        madang_result::MADANG_RESULT_OK
    })
}

/// Sets the HTTP/WebSocket and UDP addresses, e.g. "127.0.0.1:8080" and "127.0.0.1:7880"
/// (port 0 picks a free one).
///
/// # Safety
/// `config` must come from `madang_server_config_new`; the strings must be NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_server_config_set_addresses(
    config: *mut madang_server_config,
    http: *const c_char,
    udp: *const c_char,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract, NULL or a live config.
        let Some(config) = (unsafe { config.as_mut() }) else {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        };
        // SAFETY: per the contract, NULL or NUL-terminated strings.
        let (http, udp) = match unsafe { (str_arg(http), str_arg(udp)) } {
            (Ok(h), Ok(u)) => (h, u),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        let (Ok(http), Ok(udp)) = (http.parse::<SocketAddr>(), udp.parse::<SocketAddr>()) else {
            return madang_result::MADANG_RESULT_INVALID_ADDRESS;
        };
        config.inner.http = http;
        config.inner.udp = udp;
        madang_result::MADANG_RESULT_OK
    })
}

/// Sets the address announced to clients as the media address (with the UDP port), e.g.
/// "203.0.113.7": needed when the UDP address is 0.0.0.0, and behind a 1:1 NAT (bind the
/// private address, announce the public one). NULL goes back to announcing the bound address.
///
/// Errors: `MADANG_RESULT_INVALID_ADDRESS` for a string that is not an IP address.
///
/// # Safety
/// `config` must come from `madang_server_config_new`; `ip` must be NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_server_config_set_advertise_ip(
    config: *mut madang_server_config,
    ip: *const c_char,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract, NULL or a live config.
        let Some(config) = (unsafe { config.as_mut() }) else {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        };
        if ip.is_null() {
            config.inner.advertise_ip = None;
            return madang_result::MADANG_RESULT_OK;
        }
        // SAFETY: per the contract, a NUL-terminated string.
        let ip = match unsafe { str_arg(ip) } {
            Ok(ip) => ip,
            Err(e) => return e,
        };
        match ip.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                config.inner.advertise_ip = Some(ip);
                madang_result::MADANG_RESULT_OK
            }
            Err(_) => madang_result::MADANG_RESULT_INVALID_ADDRESS,
        }
    })
}

/// Makes `room` a broadcast room (call once per room): only hosts publish at first; a
/// token's speaker joins as a viewer, raises its hand and publishes once a host promotes it
/// (`madang_client_promote`).
///
/// Errors: NULL, invalid UTF-8, `MADANG_RESULT_INVALID_ARGUMENT` for an empty name.
///
/// # Safety
/// `config` must come from `madang_server_config_new`; `room` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_server_config_add_broadcast_room(
    config: *mut madang_server_config,
    room: *const c_char,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe {
            with_name(config, room, |config, room| {
                if !config.broadcast_rooms.iter().any(|r| r == room) {
                    config.broadcast_rooms.push(room.to_owned());
                }
                madang_result::MADANG_RESULT_OK
            })
        }
    })
}

/// Records rooms into the directory `dir` (created at the start if needed; the start fails
/// with `MADANG_RESULT_PERMISSION_DENIED` or `MADANG_RESULT_IO` when it cannot be written):
/// one fragmented MP4 per participant under a directory per room, as `madang serve
/// --record`. Every room from its start, unless `madang_server_config_add_record_room`
/// names some; hosts start and stop recording any room (`madang_client_record`).
///
/// Errors: NULL, invalid UTF-8, `MADANG_RESULT_INVALID_ARGUMENT` for an empty path.
///
/// # Safety
/// `config` must come from `madang_server_config_new`; `dir` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_server_config_set_record(
    config: *mut madang_server_config,
    dir: *const c_char,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe {
            with_name(config, dir, |config, dir| {
                let rooms = config.record.take().map(|r| r.rooms).unwrap_or_default();
                config.record = Some(madang::sfu::record::RecordConfig {
                    dir: dir.into(),
                    rooms,
                });
                madang_result::MADANG_RESULT_OK
            })
        }
    })
}

/// Records `room` from its start (call once per room), and no other room unless a host asks.
/// Needs `madang_server_config_set_record` first (else `MADANG_RESULT_INVALID_ARGUMENT`).
///
/// Errors: NULL, invalid UTF-8, `MADANG_RESULT_INVALID_ARGUMENT` for an empty name.
///
/// # Safety
/// `config` must come from `madang_server_config_new`; `room` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_server_config_add_record_room(
    config: *mut madang_server_config,
    room: *const c_char,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract.
        unsafe {
            with_name(config, room, |config, room| {
                let Some(record) = config.record.as_mut() else {
                    return madang_result::MADANG_RESULT_INVALID_ARGUMENT;
                };
                if !record.rooms.iter().any(|r| r == room) {
                    record.rooms.push(room.to_owned());
                }
                madang_result::MADANG_RESULT_OK
            })
        }
    })
}

/// Sets the token secret and turns development mode off (no token endpoint).
///
/// # Safety
/// `config` must come from `madang_server_config_new`; `secret` must be NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_server_config_set_secret(
    config: *mut madang_server_config,
    secret: *const c_char,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract, NULL or a live config.
        let Some(config) = (unsafe { config.as_mut() }) else {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        };
        // SAFETY: per the contract.
        let secret = match unsafe { str_arg(secret) } {
            Ok(s) if !s.is_empty() => s,
            Ok(_) => return madang_result::MADANG_RESULT_INVALID_ARGUMENT,
            Err(e) => return e,
        };
        config.inner.secret = secret.as_bytes().to_vec();
        config.inner.dev = false;
        madang_result::MADANG_RESULT_OK
    })
}

/// Serves HTTP and the signal WebSocket over TLS (`https://`, `wss://`) with the
/// certificate chain and private key in the PEM files `cert_path` and `key_path`; the signal
/// URL then starts with `wss://`. NULL for both turns TLS off again.
///
/// Errors: `MADANG_RESULT_IO` when a file cannot be read (an unusable certificate or key
/// fails `madang_server_start` with `MADANG_RESULT_INVALID_ARGUMENT`).
///
/// # Safety
/// `config` must come from `madang_server_config_new`; the paths must be NULL or
/// NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_server_config_set_tls(
    config: *mut madang_server_config,
    cert_path: *const c_char,
    key_path: *const c_char,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract, NULL or a live config.
        let Some(config) = (unsafe { config.as_mut() }) else {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        };
        if cert_path.is_null() && key_path.is_null() {
            config.inner.tls = None;
            return madang_result::MADANG_RESULT_OK;
        }
        // SAFETY: per the contract.
        let (cert, key) = match unsafe { (str_arg(cert_path), str_arg(key_path)) } {
            (Ok(c), Ok(k)) => (c, k),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        match madang::sfu::TlsConfig::from_files(cert.as_ref(), key.as_ref()) {
            Ok(tls) => {
                config.inner.tls = Some(tls);
                madang_result::MADANG_RESULT_OK
            }
            Err(_) => madang_result::MADANG_RESULT_IO,
        }
    })
}

/// Development mode on (`dev` non-zero) or off: on, the server signs tokens with the public
/// development secret unless a secret was set, and serves `/dev/token`, which mints tokens
/// for anyone — local testing only. Setting a secret afterwards turns it off.
///
/// # Safety
/// `config` must come from `madang_server_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_server_config_set_dev(
    config: *mut madang_server_config,
    dev: i32,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract, NULL or a live config.
        let Some(config) = (unsafe { config.as_mut() }) else {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        };
        config.inner.dev = dev != 0;
        let no_secret_of_its_own =
            config.inner.secret.is_empty() || config.inner.secret == DEV_SECRET.as_bytes();
        if no_secret_of_its_own {
            config.inner.secret = if config.inner.dev {
                DEV_SECRET.as_bytes().to_vec()
            } else {
                Vec::new()
            };
        }
        madang_result::MADANG_RESULT_OK
    })
}

/// Frees a configuration. NULL is a no-op.
///
/// # Safety
/// `config` must be NULL or come from `madang_server_config_new`, and not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_server_config_free(config: *mut madang_server_config) {
    ffi_boundary_void!({
        if !config.is_null() {
            // SAFETY: created by Box::into_raw in madang_server_config_new, freed once.
            drop(unsafe { Box::from_raw(config) });
        }
    })
}

/// Starts a room server with `config` (which stays owned by the caller) on threads of its
/// own. On success writes the server to `out_server`; stop and free it with
/// `madang_server_free`.
///
/// # Safety
/// `config` must come from `madang_server_config_new`; `out_server` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_server_start(
    config: *const madang_server_config,
    out_server: *mut *mut madang_server,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract, NULL or a live config.
        let Some(config) = (unsafe { config.as_ref() }) else {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        };
        if out_server.is_null() {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        }
        let runtime = match crate::runtime("madang-server") {
            Ok(r) => r,
            Err(e) => return e,
        };
        let server = match runtime.block_on(Server::bind(config.inner.clone())) {
            Ok(s) => s,
            Err(e) => return start_error(&e),
        };
        let signal_url = server.signal_url();
        let handle = Box::new(madang_server {
            runtime: Some(runtime),
            server: Some(server),
            signal_url,
        });
        // SAFETY: checked non-NULL above.
        unsafe { *out_server = Box::into_raw(handle) };
        madang_result::MADANG_RESULT_OK
    })
}

/// Runs `f` on a live configuration with a non-empty string argument (a room, a path):
/// NULL, invalid UTF-8 and an empty string are refused with their codes.
///
/// # Safety
/// `config` NULL or from `madang_server_config_new`; `name` NULL or NUL-terminated.
unsafe fn with_name(
    config: *mut madang_server_config,
    name: *const c_char,
    f: impl FnOnce(&mut ServerConfig, &str) -> madang_result,
) -> madang_result {
    // SAFETY: per the contract, NULL or a live config.
    let Some(config) = (unsafe { config.as_mut() }) else {
        return madang_result::MADANG_RESULT_NULL_ARGUMENT;
    };
    // SAFETY: per the contract, a NUL-terminated string.
    match unsafe { str_arg(name) } {
        Ok("") => madang_result::MADANG_RESULT_INVALID_ARGUMENT,
        Ok(name) => f(&mut config.inner, name),
        Err(e) => e,
    }
}

/// The result code of a server that did not start.
pub(crate) fn start_error(e: &SfuError) -> madang_result {
    use std::io::ErrorKind;
    match e {
        SfuError::Bind { source, .. } => match source.kind() {
            ErrorKind::AddrInUse | ErrorKind::AddrNotAvailable => {
                madang_result::MADANG_RESULT_ADDRESS_IN_USE
            }
            ErrorKind::PermissionDenied => madang_result::MADANG_RESULT_PERMISSION_DENIED,
            _ => madang_result::MADANG_RESULT_IO,
        },
        SfuError::EmptySecret | SfuError::PublicSecret => madang_result::MADANG_RESULT_NO_SECRET,
        SfuError::NoAdvertisedAddress(_) => madang_result::MADANG_RESULT_INVALID_ADDRESS,
        SfuError::Record { source, .. } if source.kind() == ErrorKind::PermissionDenied => {
            madang_result::MADANG_RESULT_PERMISSION_DENIED
        }
        SfuError::Record { .. } => madang_result::MADANG_RESULT_IO,
        _ => madang_result::MADANG_RESULT_INVALID_ARGUMENT,
    }
}

/// Writes the server's WebSocket URL (NUL-terminated) into `buf` of `len` bytes and its length
/// to `out_len`.
///
/// # Safety
/// `server` must be live; `buf` must have `len` writable bytes; `out_len` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_server_signal_url(
    server: *const madang_server,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract, NULL or a live server.
        let Some(server) = (unsafe { server.as_ref() }) else {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        };
        // SAFETY: per the contract.
        unsafe { write_str(&server.signal_url, buf, len, out_len) }
    })
}

/// Mints a token for `room` signed with the server's secret, valid `ttl_seconds`. `role` is
/// "host", "speaker" or "viewer". Writes it NUL-terminated to `buf` and its length to `out_len`.
///
/// # Safety
/// `server` must be live; strings NUL-terminated; `buf` with `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_server_token(
    server: *const madang_server,
    room: *const c_char,
    identity: *const c_char,
    name: *const c_char,
    role: *const c_char,
    ttl_seconds: u32,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract, NULL or a live server.
        let Some(server) = (unsafe { server.as_ref() }).and_then(|s| s.server.as_ref()) else {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        };
        // SAFETY: per the contract.
        let args = unsafe {
            (
                str_arg(room),
                str_arg(identity),
                str_arg(name),
                str_arg(role),
            )
        };
        let (room, identity, name, role) = match args {
            (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
            (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => return e,
        };
        let Ok(role) = role.parse() else {
            return madang_result::MADANG_RESULT_INVALID_ARGUMENT;
        };
        if ttl_seconds == 0 {
            return madang_result::MADANG_RESULT_INVALID_ARGUMENT;
        }
        let token = match server.token(
            room,
            identity,
            name,
            role,
            Duration::from_secs(ttl_seconds as u64),
        ) {
            Ok(t) => t,
            Err(_) => return madang_result::MADANG_RESULT_INVALID_ARGUMENT,
        };
        // SAFETY: per the contract.
        unsafe { write_str(&token, buf, len, out_len) }
    })
}

/// Number of participants currently joined, written to `out_count`.
///
/// # Safety
/// `server` must be live; `out_count` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_server_participants(
    server: *const madang_server,
    out_count: *mut u32,
) -> madang_result {
    ffi_boundary!({
        // SAFETY: per the contract, NULL or a live server.
        let Some(server) = (unsafe { server.as_ref() }).and_then(|s| s.server.as_ref()) else {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        };
        if out_count.is_null() {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        }
        // SAFETY: checked non-NULL.
        unsafe { *out_count = server.stats().participants as u32 };
        madang_result::MADANG_RESULT_OK
    })
}

/// Stops the server (participants are told it shuts down), joins its threads and frees it.
/// NULL is a no-op.
///
/// # Safety
/// `server` must be NULL or come from `madang_server_start`, and not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_server_free(server: *mut madang_server) {
    ffi_boundary_void!({
        if server.is_null() {
            return;
        }
        // SAFETY: created by Box::into_raw in madang_server_start, freed once.
        let mut handle = unsafe { Box::from_raw(server) };
        if let (Some(runtime), Some(server)) = (handle.runtime.take(), handle.server.take()) {
            runtime.block_on(server.shutdown());
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    })
}
