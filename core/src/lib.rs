//! # madang
//!
//! madang (마당, the yard where a village gathers) is an embeddable real-time media library:
//! capture → H.264 / Opus encode → WebRTC transport → decode → participant grid, plus a room
//! server. This crate is the core; `madang-ffi` puts a C ABI on it and `madang-wasm` a browser
//! API.
//!
//! Modules follow the data path:
//!
//! - [`media`]: frames, synthetic sources (a stamped test pattern, speech-like audio), Y4M and
//!   WAV files, PSNR.
//! - [`codec`]: H.264 through OpenH264 and Opus through libopus (feature `codec`, on by
//!   default), and pure Annex-B helpers.
//! - [`signal`]: the JSON protocol between clients and the room server.
//! - [`grid`]: participant layout (pure; also for wasm32).
//! - [`netsim`]: a seeded simulated network (delay, jitter, loss, bursts, rate caps, outages)
//!   for tests on simulated time and for impairing the server's real sockets.
//! - [`room`]: the client — `room::session::Session` is its sans-I/O core and `room::Room`
//!   the tokio driver around it (feature `net`); [`room::RoomState`], the roster kept from
//!   the server's messages, is pure (also for wasm32).
//! - `sfu` (feature `net`): the room server — `sfu::engine::Engine` is its sans-I/O core,
//!   `sfu::Server` the tokio driver (one UDP port, HTTP, WebSocket signalling).
//! - `sim` (feature `net`): a whole conference on simulated time over [`netsim`].
//!
//! With `default-features = false` the crate has no native dependencies and builds for
//! `wasm32-unknown-unknown`.
//!
//! ## Example: encode a test pattern and decode it again
//!
//! ```
//! # #[cfg(feature = "codec")] {
//! use madang::codec::{H264Config, H264Decoder, H264Encoder};
//! use madang::media::{TestPattern, quality::psnr_y, read_stamp};
//!
//! let mut pattern = TestPattern::new(640, 360).unwrap();
//! let mut encoder = H264Encoder::new(H264Config::new(640, 360).bitrate_kbps(800)).unwrap();
//! let mut decoder = H264Decoder::new().unwrap();
//! for i in 0..10u64 {
//!     let frame = pattern.next_frame(i * 33_333);
//!     let unit = encoder.encode(&frame).unwrap().expect("frame skipping is off by default");
//!     let decoded = decoder.decode(&unit.data).unwrap().expect("no reordering in baseline");
//!     assert_eq!(read_stamp(&decoded).unwrap().seq, i as u32);
//!     assert!(psnr_y(&frame, &decoded).unwrap() > 30.0);
//! }
//! # }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod codec;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod grid;
pub mod media;
pub mod netsim;
pub mod room;
#[cfg(feature = "net")]
pub mod sfu;
pub mod signal;
#[cfg(feature = "net")]
pub mod sim;
#[cfg(feature = "net")]
mod transport;

/// The README's Rust example is compiled and run as a doc test, so it cannot rot.
#[cfg(all(doctest, feature = "codec"))]
#[doc = include_str!("../../README.md")]
struct ReadmeExample;
