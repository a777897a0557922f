//! `madang::fuzzing::token` under libFuzzer (`scripts/fuzz.sh`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| madang::fuzzing::token(data));
