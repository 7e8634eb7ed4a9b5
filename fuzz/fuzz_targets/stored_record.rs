#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kafka_gateway_fuzz::stored_record(data));
