#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cvmbuild::fuzzing::catalog(data));
