//! `madang::fuzzing::y4m` under libFuzzer (`scripts/fuzz.sh`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| madang::fuzzing::y4m(data));
