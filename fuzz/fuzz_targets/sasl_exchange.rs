#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kelp_core::fuzzing::sasl_exchange(data));
