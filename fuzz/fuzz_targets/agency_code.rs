//! libFuzzer entry point; the check itself is `truc_fuzz::agency_code`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| truc_fuzz::agency_code(data));
