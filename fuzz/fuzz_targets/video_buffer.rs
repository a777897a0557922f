//! `madang::fuzzing::video_buffer` under libFuzzer (`scripts/fuzz.sh`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| madang::fuzzing::video_buffer(data));
