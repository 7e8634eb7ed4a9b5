#![no_main]

use bytes::Bytes;

// The first byte chooses whether length and CRC fields are repaired before parsing: without it
// almost every mutation stops at the CRC check; with it the record decoder and decompressors
// see the mutations.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let input = if mode & 1 == 1 {
        kafka_gateway_fuzz::fix_lengths_and_crcs(rest)
    } else {
        rest.to_vec()
    };
    kafka_gateway_fuzz::record_set(Bytes::from(input));
});
