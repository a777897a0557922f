//! The client API called the way C calls it, against a server started through the C ABI too.

use std::ffi::{CStr, CString, c_char};
use std::ptr;
use std::time::{Duration, Instant};

use super::*;
use madang_event_kind::*;
use madang_result::*;

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn text(p: *const c_char) -> String {
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A server on loopback, freed on drop.
struct TestServer(*mut madang_server);

impl TestServer {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// With these broadcast rooms.
    fn start_with(broadcast_rooms: &[&str]) -> Self {
        let mut config = ptr::null_mut();
        let mut server = ptr::null_mut();
        unsafe {
            assert_eq!(madang_server_config_new(&mut config), MADANG_RESULT_OK);
            assert_eq!(madang_server_config_set_dev(config, 1), MADANG_RESULT_OK);
            for room in broadcast_rooms {
                let room = c(room);
                let r = madang_server_config_add_broadcast_room(config, room.as_ptr());
                assert_eq!(r, MADANG_RESULT_OK);
            }
            assert_eq!(madang_server_start(config, &mut server), MADANG_RESULT_OK);
            madang_server_config_free(config);
        }
        Self(server)
    }

    fn url(&self) -> String {
        let mut buf = [0 as c_char; 256];
        let mut len = 0;
        let r = unsafe { madang_server_signal_url(self.0, buf.as_mut_ptr(), buf.len(), &mut len) };
        assert_eq!(r, MADANG_RESULT_OK);
        text(buf.as_ptr())
    }

    fn token(&self, room: &str, identity: &str, role: &str) -> String {
        let mut buf = [0 as c_char; 1024];
        let mut len = 0;
        let (room, id, role) = (c(room), c(identity), c(role));
        let r = unsafe {
            madang_server_token(
                self.0,
                room.as_ptr(),
                id.as_ptr(),
                id.as_ptr(),
                role.as_ptr(),
                600,
                buf.as_mut_ptr(),
                buf.len(),
                &mut len,
            )
        };
        assert_eq!(r, MADANG_RESULT_OK);
        text(buf.as_ptr())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        unsafe { madang_server_free(self.0) };
    }
}

fn config(url: &str, token: &str) -> *mut madang_client_config {
    let mut config = ptr::null_mut();
    let (url, token) = (c(url), c(token));
    let r = unsafe { madang_client_config_new(url.as_ptr(), token.as_ptr(), &mut config) };
    assert_eq!(r, MADANG_RESULT_OK);
    config
}

fn client(config: *mut madang_client_config) -> *mut madang_client {
    let mut client = ptr::null_mut();
    assert_eq!(
        unsafe { madang_client_new(config, &mut client) },
        MADANG_RESULT_OK
    );
    unsafe { madang_client_config_free(config) };
    client
}

/// Polls until `want` matches an event (at most `within`); returns what it saw of it.
fn poll_until(
    client: *mut madang_client,
    within: Duration,
    mut want: impl FnMut(&madang_event) -> bool,
) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        let mut ev = std::mem::MaybeUninit::<madang_event>::uninit();
        match unsafe { madang_client_poll_event(client, ev.as_mut_ptr(), 100) } {
            MADANG_RESULT_OK => {
                let e = unsafe { ev.assume_init() };
                if want(&e) {
                    return true;
                }
            }
            MADANG_RESULT_TIMEOUT => {}
            other => panic!("poll: {other:?}"),
        }
    }
    false
}

struct Planes {
    data: Vec<u8>,
    width: u32,
    height: u32,
}

impl Planes {
    fn new(width: u32, height: u32) -> Self {
        let n = (width * height * 3 / 2) as usize;
        Self {
            data: (0..n).map(|i| (i * 7 % 251) as u8).collect(),
            width,
            height,
        }
    }

    fn frame(&self, pts_us: i64) -> madang_video_frame {
        let (w, h) = (self.width as usize, self.height as usize);
        let p = self.data.as_ptr();
        madang_video_frame {
            width: self.width,
            height: self.height,
            y: p,
            u: unsafe { p.add(w * h) },
            v: unsafe { p.add(w * h + w * h / 4) },
            stride_y: self.width,
            stride_u: self.width / 2,
            stride_v: self.width / 2,
            pts_us,
        }
    }
}

#[test]
fn config_rejects_bad_values() {
    let mut out = ptr::null_mut();
    let (ws, http, tok) = (c("ws://127.0.0.1:1/signal"), c("http://x"), c("t"));
    unsafe {
        assert_eq!(
            madang_client_config_new(ptr::null(), tok.as_ptr(), &mut out),
            MADANG_RESULT_NULL_ARGUMENT
        );
        assert_eq!(
            madang_client_config_new(http.as_ptr(), tok.as_ptr(), &mut out),
            MADANG_RESULT_INVALID_ARGUMENT
        );
        assert_eq!(
            madang_client_config_new(ws.as_ptr(), c("").as_ptr(), &mut out),
            MADANG_RESULT_INVALID_ARGUMENT
        );
        assert!(out.is_null(), "nothing written on failure");
    }
    let cfg = config("ws://127.0.0.1:1/signal", "t");
    unsafe {
        assert_eq!(
            madang_client_config_set_simulcast(cfg, true),
            MADANG_RESULT_INVALID_ARGUMENT,
            "simulcast of no camera"
        );
        assert_eq!(
            madang_client_config_set_video(cfg, 641, 360, 30, 0),
            MADANG_RESULT_INVALID_ARGUMENT
        );
        assert_eq!(
            madang_client_config_set_video(cfg, 640, 360, 0, 0),
            MADANG_RESULT_INVALID_ARGUMENT
        );
        assert_eq!(
            madang_client_config_set_video(cfg, 640, 360, 30, 10),
            MADANG_RESULT_INVALID_ARGUMENT
        );
        assert_eq!(
            madang_client_config_set_video(cfg, 640, 360, 30, 0),
            MADANG_RESULT_OK
        );
        assert_eq!(
            madang_client_config_set_simulcast(cfg, true),
            MADANG_RESULT_OK
        );
        let layers = (*cfg).video.as_ref().unwrap().layers();
        let widths: Vec<u32> = layers.iter().map(|l| l.width).collect();
        assert_eq!(widths, [320, 640]);
        assert_eq!(
            madang_client_config_receive_grid(cfg, 1280, 720, 9, 15),
            MADANG_RESULT_INVALID_ARGUMENT
        );
        assert_eq!(
            madang_client_config_receive_grid(cfg, 1280, 720, 0, 0),
            MADANG_RESULT_INVALID_ARGUMENT
        );
        assert_eq!(
            madang_client_config_set_name(cfg, c("").as_ptr()),
            MADANG_RESULT_INVALID_ARGUMENT
        );
        assert_eq!(
            madang_client_config_set_name(cfg, [0xc3u8, 0x28, 0].as_ptr().cast()),
            MADANG_RESULT_INVALID_UTF8
        );
        assert_eq!(
            madang_client_config_set_audio(ptr::null_mut(), true),
            MADANG_RESULT_NULL_ARGUMENT
        );
        madang_client_config_free(cfg);
        madang_client_config_free(ptr::null_mut());
        madang_client_free(ptr::null_mut());
    }
}

#[test]
fn joining_fails_with_the_reason() {
    let server = TestServer::start();
    let refused = client(config(&server.url(), "not-a-token"));
    assert_eq!(
        unsafe { madang_client_connect(refused) },
        MADANG_RESULT_REFUSED
    );
    unsafe { madang_client_free(refused) };

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/signal", closed.local_addr().unwrap());
    drop(closed);
    let token = server.token("hall", "x", "speaker");
    let unreachable = client(config(&url, &token));
    assert_eq!(
        unsafe { madang_client_connect(unreachable) },
        MADANG_RESULT_CONNECT_FAILED
    );
    unsafe { madang_client_free(unreachable) };
}

#[test]
fn frames_and_data_flow_between_two_clients_and_bad_input_gets_its_code() {
    let server = TestServer::start();
    let url = server.url();
    let cfg = config(&url, &server.token("hall", "jongno", "speaker"));
    unsafe {
        assert_eq!(
            madang_client_config_set_video(cfg, 160, 96, 15, 0),
            MADANG_RESULT_OK
        );
        assert_eq!(
            madang_client_config_set_name(cfg, c("종로구청").as_ptr()),
            MADANG_RESULT_OK
        );
    }
    let sender = client(cfg);
    let planes = Planes::new(160, 96);
    let mut ev = std::mem::MaybeUninit::<madang_event>::uninit();
    unsafe {
        assert_eq!(
            madang_client_push_video_frame(sender, &planes.frame(0)),
            MADANG_RESULT_NOT_CONNECTED
        );
        assert_eq!(
            madang_client_poll_event(sender, ev.as_mut_ptr(), 0),
            MADANG_RESULT_NOT_CONNECTED
        );
        assert_eq!(madang_client_connect(sender), MADANG_RESULT_OK);
        assert_eq!(
            madang_client_connect(sender),
            MADANG_RESULT_ALREADY_CONNECTED
        );
        assert_eq!(
            madang_client_poll_event(sender, ev.as_mut_ptr(), 1000),
            MADANG_RESULT_OK
        );
        let joined = ev.assume_init();
        assert_eq!(joined.kind, MADANG_EVENT_JOINED);
        assert_eq!(text(joined.participant), "jongno");
        assert_eq!(text(joined.name), "종로구청");
        assert_eq!(text(joined.text), "hall");
    }

    // Malformed pictures and audio are refused with their code.
    let bad_frames = [
        madang_video_frame {
            width: 162,
            ..planes.frame(0)
        },
        madang_video_frame {
            width: 159,
            ..planes.frame(0)
        },
        madang_video_frame {
            stride_y: 100,
            ..planes.frame(0)
        },
        madang_video_frame {
            stride_u: 79,
            ..planes.frame(0)
        },
        madang_video_frame {
            stride_v: u32::MAX,
            ..planes.frame(0)
        },
    ];
    for bad in &bad_frames {
        assert_eq!(
            unsafe { madang_client_push_video_frame(sender, bad) },
            MADANG_RESULT_INVALID_FRAME,
            "{bad:?}"
        );
    }
    let null_plane = madang_video_frame {
        u: ptr::null(),
        ..planes.frame(0)
    };
    let samples = [0i16; 960];
    unsafe {
        assert_eq!(
            madang_client_push_video_frame(sender, &null_plane),
            MADANG_RESULT_NULL_ARGUMENT
        );
        assert_eq!(
            madang_client_push_video_frame(sender, ptr::null()),
            MADANG_RESULT_NULL_ARGUMENT
        );
        assert_eq!(
            madang_client_push_audio_frame(sender, samples.as_ptr(), 960, 1, 0),
            MADANG_RESULT_NOT_PUBLISHING
        );
        assert_eq!(
            madang_client_set_layout(sender, 0),
            MADANG_RESULT_INVALID_ARGUMENT,
            "no grid in per-participant mode"
        );
        assert_eq!(
            madang_client_send_data(sender, c("chat").as_ptr(), [0xffu8, 0].as_ptr().cast()),
            MADANG_RESULT_INVALID_UTF8
        );
    }

    // A receiver sees the sender's name, pictures and message.
    let cfg = config(&url, &server.token("hall", "gangnam", "viewer"));
    let receiver = client(cfg);
    assert_eq!(unsafe { madang_client_connect(receiver) }, MADANG_RESULT_OK);
    let mut n = 0i64;
    let mut named = false;
    let mut pictures = 0;
    let mut message = String::new();
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end && (pictures < 10 || message.is_empty()) {
        let frame = planes.frame(n * 66_666);
        assert_eq!(
            unsafe { madang_client_push_video_frame(sender, &frame) },
            MADANG_RESULT_OK
        );
        n += 1;
        if n == 5 {
            let r = unsafe {
                madang_client_send_data(sender, c("chat").as_ptr(), c("안녕하세요").as_ptr())
            };
            assert_eq!(r, MADANG_RESULT_OK);
        }
        // Drain the sender's own events so nothing piles up.
        while unsafe { madang_client_poll_event(sender, ev.as_mut_ptr(), 0) } == MADANG_RESULT_OK {}
        poll_until(receiver, Duration::from_millis(60), |e| {
            match e.kind {
                MADANG_EVENT_PARTICIPANT_JOINED => {
                    named |= text(e.participant) == "jongno" && text(e.name) == "종로구청";
                }
                MADANG_EVENT_VIDEO_FRAME => {
                    assert_eq!(text(e.participant), "jongno");
                    assert_eq!((e.video.width, e.video.height), (160, 96));
                    assert!(!e.video.y.is_null() && e.video.stride_y >= 160);
                    // The picture is readable where the event says it is.
                    let row = unsafe { std::slice::from_raw_parts(e.video.y, 160) };
                    assert!(row.iter().any(|&v| v != 0));
                    pictures += 1;
                }
                MADANG_EVENT_DATA => {
                    assert_eq!(
                        (text(e.participant), text(e.topic)),
                        ("jongno".into(), "chat".into())
                    );
                    message = text(e.text);
                }
                _ => {}
            }
            false
        });
    }
    assert!(named, "the display name chosen at join reached the others");
    assert!(pictures >= 10, "{pictures} pictures");
    assert_eq!(message, "안녕하세요");

    // Stats come on their own.
    let mut stats = None;
    poll_until(receiver, Duration::from_secs(3), |e| {
        if e.kind == MADANG_EVENT_STATS {
            stats = Some(e.stats);
        }
        stats.is_some()
    });
    let stats = stats.expect("a stats event within 3 s");
    assert!(
        stats.frames_decoded >= 10 && stats.tracks_received >= 1,
        "{stats:?}"
    );

    // The sender leaves: the receiver hears it; the sender's session is over.
    unsafe {
        assert_eq!(madang_client_leave(sender), MADANG_RESULT_OK);
        assert_eq!(madang_client_leave(sender), MADANG_RESULT_OK);
        assert_eq!(
            madang_client_poll_event(sender, ev.as_mut_ptr(), 0),
            MADANG_RESULT_CLOSED
        );
        assert_eq!(
            madang_client_push_video_frame(sender, &planes.frame(0)),
            MADANG_RESULT_CLOSED
        );
    }
    let left = poll_until(receiver, Duration::from_secs(5), |e| {
        e.kind == MADANG_EVENT_PARTICIPANT_LEFT && text(e.participant) == "jongno"
    });
    assert!(left);
    unsafe {
        madang_client_free(sender);
        madang_client_free(receiver);
    }
}

#[test]
fn a_c_server_serves_wss_and_a_c_client_trusting_its_certificate_joins() {
    let dir = std::env::temp_dir().join(format!("madang-ffi-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (cert_file, key_file, not_pem) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("not.pem"),
    );
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let path = |p: &std::path::Path| c(p.to_str().unwrap());

    let mut sc = ptr::null_mut();
    let mut server = ptr::null_mut();
    unsafe {
        assert_eq!(madang_server_config_new(&mut sc), MADANG_RESULT_OK);
        assert_eq!(madang_server_config_set_dev(sc, 1), MADANG_RESULT_OK);
        let missing = c("/nonexistent/cert.pem");
        assert_eq!(
            madang_server_config_set_tls(sc, missing.as_ptr(), path(&key_file).as_ptr()),
            MADANG_RESULT_IO
        );
        assert_eq!(
            madang_server_config_set_tls(sc, path(&cert_file).as_ptr(), path(&key_file).as_ptr()),
            MADANG_RESULT_OK
        );
        assert_eq!(madang_server_start(sc, &mut server), MADANG_RESULT_OK);
        madang_server_config_free(sc);
    }
    let server = TestServer(server);
    let url = server.url();
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");

    // Not trusting the self-signed certificate: the join fails.
    let untrusting = client(config(&url, &server.token("hall", "a", "speaker")));
    assert_ne!(
        unsafe { madang_client_connect(untrusting) },
        MADANG_RESULT_OK
    );
    unsafe { madang_client_free(untrusting) };

    let cc = config(&url, &server.token("hall", "b", "speaker"));
    unsafe {
        assert_eq!(
            madang_client_config_set_trusted_certificates(cc, path(&not_pem).as_ptr()),
            MADANG_RESULT_INVALID_ARGUMENT
        );
        assert_eq!(
            madang_client_config_set_trusted_certificates(cc, path(&cert_file).as_ptr()),
            MADANG_RESULT_OK
        );
    }
    let trusting = client(cc);
    assert_eq!(unsafe { madang_client_connect(trusting) }, MADANG_RESULT_OK);
    assert!(poll_until(trusting, Duration::from_secs(5), |e| e.kind
        == MADANG_EVENT_JOINED));
    unsafe { madang_client_free(trusting) };
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn talk_back_through_the_c_calls_in_a_broadcast_room() {
    // Bad input first.
    let mut cfg = ptr::null_mut();
    unsafe {
        assert_eq!(madang_server_config_new(&mut cfg), MADANG_RESULT_OK);
        assert_eq!(
            madang_server_config_add_broadcast_room(cfg, ptr::null()),
            MADANG_RESULT_NULL_ARGUMENT
        );
        assert_eq!(
            madang_server_config_add_broadcast_room(cfg, c("").as_ptr()),
            MADANG_RESULT_INVALID_ARGUMENT
        );
        madang_server_config_free(cfg);
    }
    let server = TestServer::start_with(&["class"]);
    let url = server.url();
    let host = client(config(&url, &server.token("class", "cityhall", "host")));
    // A speaker's token: in a broadcast room it joins as a viewer.
    let center = client(config(&url, &server.token("class", "center", "speaker")));
    unsafe {
        assert_eq!(madang_client_connect(host), MADANG_RESULT_OK);
        assert_eq!(madang_client_connect(center), MADANG_RESULT_OK);
    }
    let seen_as_viewer = poll_until(host, Duration::from_secs(5), |e| {
        e.kind == MADANG_EVENT_PARTICIPANT_JOINED
            && text(e.participant) == "center"
            && text(e.text) == "viewer"
    });
    assert!(
        seen_as_viewer,
        "the host did not see the center join as a viewer"
    );
    assert_eq!(
        unsafe { madang_client_raise_hand(center, true) },
        MADANG_RESULT_OK
    );
    let hands = poll_until(host, Duration::from_secs(5), |e| {
        e.kind == MADANG_EVENT_HANDS && text(e.text) == "center"
    });
    assert!(hands, "the host got no queue with the center's hand");
    // NULL is refused here; someone not in the room by the server; the center is let in.
    unsafe {
        assert_eq!(
            madang_client_promote(host, ptr::null()),
            MADANG_RESULT_NULL_ARGUMENT
        );
        assert_eq!(
            madang_client_promote(host, c("nobody").as_ptr()),
            MADANG_RESULT_OK
        );
    }
    let unknown = poll_until(host, Duration::from_secs(5), |e| {
        e.kind == MADANG_EVENT_ERROR && text(e.text) == "unknown_participant"
    });
    assert!(unknown);
    unsafe {
        assert_eq!(
            madang_client_promote(host, c("center").as_ptr()),
            MADANG_RESULT_OK
        );
    }
    let mut lowered = false;
    let promoted = poll_until(center, Duration::from_secs(5), |e| {
        lowered |= e.kind == MADANG_EVENT_HAND_LOWERED;
        e.kind == MADANG_EVENT_ROLE_CHANGED
            && text(e.participant) == "center"
            && text(e.text) == "speaker"
    });
    assert!(
        promoted && lowered,
        "promoted {promoted}, hand lowered {lowered}"
    );
    // The center cannot remove the host: refused by the server, the session goes on.
    unsafe {
        assert_eq!(
            madang_client_remove_participant(center, c("cityhall").as_ptr()),
            MADANG_RESULT_OK
        );
    }
    let refused = poll_until(center, Duration::from_secs(5), |e| {
        e.kind == MADANG_EVENT_ERROR && text(e.text) == "permission_denied"
    });
    assert!(refused);
    unsafe {
        madang_client_free(center);
        madang_client_free(host);
    }
}
