#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kelp_tests::sim::fuzz::broker_events(data));
