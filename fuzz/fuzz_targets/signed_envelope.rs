//! libFuzzer entry point; the check itself is `truc_fuzz::signed_envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| truc_fuzz::signed_envelope(data));
