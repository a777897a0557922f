//! Calls the exported functions the way C does: raw pointers, buffers, result codes.

use super::*;
use madang_result::*;
use std::ffi::CString;
use std::ptr;

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn new_config() -> *mut madang_server_config {
    let mut config = ptr::null_mut();
    assert_eq!(
        unsafe { madang_server_config_new(&mut config) },
        MADANG_RESULT_OK
    );
    assert!(!config.is_null());
    config
}

#[test]
fn version_and_messages_are_nul_terminated() {
    let v = unsafe { CStr::from_ptr(madang_version()) }
        .to_str()
        .unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    for code in [
        MADANG_RESULT_OK,
        MADANG_RESULT_NULL_ARGUMENT,
        MADANG_RESULT_PANIC,
    ] {
        let m = unsafe { CStr::from_ptr(madang_result_message(code as u32)) }
            .to_str()
            .unwrap();
        assert!(!m.is_empty());
    }
    // Every code is listed at its own number; numbers that are no code still get a message.
    for (i, code) in madang_result::ALL.iter().enumerate() {
        assert_eq!(*code as usize, i);
        assert_eq!(madang_result::from_u32(i as u32), Some(*code));
    }
    let unknown = unsafe { CStr::from_ptr(madang_result_message(4242)) };
    assert_eq!(unknown.to_str().unwrap(), "unknown result code");
}

#[test]
fn config_rejects_bad_input_with_the_right_code() {
    assert_eq!(
        unsafe { madang_server_config_new(ptr::null_mut()) },
        MADANG_RESULT_NULL_ARGUMENT
    );
    let config = new_config();
    let ok = c("127.0.0.1:0");
    let set = |http: *const c_char, udp: *const c_char| unsafe {
        madang_server_config_set_addresses(config, http, udp)
    };
    assert_eq!(set(ptr::null(), ok.as_ptr()), MADANG_RESULT_NULL_ARGUMENT);
    assert_eq!(
        set(c("localhost").as_ptr(), ok.as_ptr()),
        MADANG_RESULT_INVALID_ADDRESS
    );
    let bad_utf8 = [0xffu8, 0xfe, 0];
    assert_eq!(
        set(ok.as_ptr(), bad_utf8.as_ptr().cast()),
        MADANG_RESULT_INVALID_UTF8
    );
    assert_eq!(set(ok.as_ptr(), ok.as_ptr()), MADANG_RESULT_OK);
    let advertise =
        |ip: *const c_char| unsafe { madang_server_config_set_advertise_ip(config, ip) };
    assert_eq!(
        advertise(c("203.0.113.7:1").as_ptr()),
        MADANG_RESULT_INVALID_ADDRESS
    );
    assert_eq!(advertise(c("203.0.113.7").as_ptr()), MADANG_RESULT_OK);
    assert_eq!(
        unsafe { &*config }.inner.advertise_ip,
        Some("203.0.113.7".parse().unwrap())
    );
    assert_eq!(advertise(ptr::null()), MADANG_RESULT_OK);
    assert_eq!(unsafe { &*config }.inner.advertise_ip, None);
    assert_eq!(
        unsafe { madang_server_config_set_secret(config, c("").as_ptr()) },
        MADANG_RESULT_INVALID_ARGUMENT
    );
    // No secret, no development mode: the start is refused, nothing written.
    let mut server = ptr::null_mut();
    assert_eq!(
        unsafe { madang_server_start(config, &mut server) },
        MADANG_RESULT_NO_SECRET
    );
    assert!(server.is_null());
    // Development mode uses the public secret; off again, no secret.
    let dev = |on: i32| unsafe { madang_server_config_set_dev(config, on) };
    let inner = || unsafe { &*config }.inner.clone();
    assert_eq!(dev(1), MADANG_RESULT_OK);
    assert!(inner().dev && inner().secret == madang::sfu::DEV_SECRET.as_bytes());
    assert_eq!(dev(0), MADANG_RESULT_OK);
    assert!(!inner().dev && inner().secret.is_empty());
    // A secret of its own stays whatever the mode; setting one turns the mode off.
    assert_eq!(
        unsafe { madang_server_config_set_secret(config, c("s3cret").as_ptr()) },
        MADANG_RESULT_OK
    );
    assert_eq!(dev(1), MADANG_RESULT_OK);
    assert!(inner().dev && inner().secret == b"s3cret");
    assert_eq!(dev(0), MADANG_RESULT_OK);
    assert!(!inner().dev && inner().secret == b"s3cret");
    assert_eq!(
        unsafe { madang_server_config_set_dev(ptr::null_mut(), 1) },
        MADANG_RESULT_NULL_ARGUMENT
    );
    assert_eq!(
        unsafe { madang_server_config_set_addresses(ptr::null_mut(), ok.as_ptr(), ok.as_ptr()) },
        MADANG_RESULT_NULL_ARGUMENT
    );
    unsafe { madang_server_config_free(config) };
    unsafe { madang_server_config_free(ptr::null_mut()) };
    unsafe { madang_server_free(ptr::null_mut()) };
}

#[test]
fn server_starts_mints_tokens_and_stops() {
    let config = new_config();
    assert_eq!(
        unsafe { madang_server_config_set_secret(config, c("a secret of its own").as_ptr()) },
        MADANG_RESULT_OK
    );
    let any = c("127.0.0.1:0");
    assert_eq!(
        unsafe { madang_server_config_set_addresses(config, any.as_ptr(), any.as_ptr()) },
        MADANG_RESULT_OK
    );
    let mut server = ptr::null_mut();
    assert_eq!(
        unsafe { madang_server_start(config, &mut server) },
        MADANG_RESULT_OK
    );
    unsafe { madang_server_config_free(config) };

    let mut buf = [0 as c_char; 256];
    let mut len = 0usize;
    assert_eq!(
        unsafe { madang_server_signal_url(server, buf.as_mut_ptr(), buf.len(), &mut len) },
        MADANG_RESULT_OK
    );
    let url = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(url.len(), len);
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with("/signal"),
        "{url}"
    );

    // Too small: nothing written, the right code.
    let mut small = [7 as c_char; 8];
    let mut small_len = 99usize;
    assert_eq!(
        unsafe {
            madang_server_signal_url(server, small.as_mut_ptr(), small.len(), &mut small_len)
        },
        MADANG_RESULT_BUFFER_TOO_SMALL
    );
    assert_eq!((small[0], small_len), (7, 99));

    let (room, id, name) = (c("disaster-room"), c("gangnam"), c("Gangnam office"));
    let token = |role: &CString, ttl: u32, buf: &mut [c_char], len: &mut usize| unsafe {
        madang_server_token(
            server,
            room.as_ptr(),
            id.as_ptr(),
            name.as_ptr(),
            role.as_ptr(),
            ttl,
            buf.as_mut_ptr(),
            buf.len(),
            len,
        )
    };
    let mut tbuf = [0 as c_char; 1024];
    let mut tlen = 0usize;
    assert_eq!(
        token(&c("speaker"), 3600, &mut tbuf, &mut tlen),
        MADANG_RESULT_OK
    );
    let minted = unsafe { CStr::from_ptr(tbuf.as_ptr()) }.to_str().unwrap();
    assert_eq!(minted.len(), tlen);
    assert_eq!(minted.split('.').count(), 3, "a JWT: {minted}");
    assert_eq!(
        token(&c("mayor"), 3600, &mut tbuf, &mut tlen),
        MADANG_RESULT_INVALID_ARGUMENT
    );
    assert_eq!(
        token(&c("viewer"), 0, &mut tbuf, &mut tlen),
        MADANG_RESULT_INVALID_ARGUMENT
    );

    let mut count = 99u32;
    assert_eq!(
        unsafe { madang_server_participants(server, &mut count) },
        MADANG_RESULT_OK
    );
    assert_eq!(count, 0);

    // The signalling port answers while the server runs.
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/signal")
        .to_owned();
    assert!(std::net::TcpStream::connect(&addr).is_ok());
    unsafe { madang_server_free(server) };
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "port closed after free"
    );
}

#[test]
fn a_taken_port_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = c(&taken.local_addr().unwrap().to_string());
    let any = c("127.0.0.1:0");
    let config = new_config();
    assert_eq!(
        unsafe { madang_server_config_set_dev(config, 1) },
        MADANG_RESULT_OK
    );
    assert_eq!(
        unsafe { madang_server_config_set_addresses(config, addr.as_ptr(), any.as_ptr()) },
        MADANG_RESULT_OK
    );
    let mut server = ptr::null_mut();
    assert_eq!(
        unsafe { madang_server_start(config, &mut server) },
        MADANG_RESULT_ADDRESS_IN_USE
    );
    assert!(server.is_null(), "nothing written on failure");
    unsafe { madang_server_config_free(config) };
}

#[test]
fn start_errors_map_to_their_codes() {
    use madang::sfu::SfuError;
    use std::io::{Error, ErrorKind};
    let bind = |kind| SfuError::Bind {
        what: "UDP",
        addr: "127.0.0.1:80".parse().unwrap(),
        source: Error::from(kind),
    };
    assert_eq!(
        server::start_error(&bind(ErrorKind::PermissionDenied)),
        MADANG_RESULT_PERMISSION_DENIED
    );
    assert_eq!(
        server::start_error(&bind(ErrorKind::AddrInUse)),
        MADANG_RESULT_ADDRESS_IN_USE
    );
    assert_eq!(
        server::start_error(&bind(ErrorKind::AddrNotAvailable)),
        MADANG_RESULT_ADDRESS_IN_USE
    );
    assert_eq!(
        server::start_error(&bind(ErrorKind::Other)),
        MADANG_RESULT_IO
    );
    assert_eq!(
        server::start_error(&SfuError::PublicSecret),
        MADANG_RESULT_NO_SECRET
    );
    assert_eq!(
        server::start_error(&SfuError::NoAdvertisedAddress(
            "0.0.0.0:7880".parse().unwrap()
        )),
        MADANG_RESULT_INVALID_ADDRESS
    );
}

#[test]
fn a_panic_becomes_a_result_code() {
    assert_eq!(boundary::guard(|| panic!("boom")), MADANG_RESULT_PANIC);
}
