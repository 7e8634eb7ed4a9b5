//! Property tests of the offset ledger and the record batch codec: the rules the gateway's
//! offsets and fetched bytes rest on, checked on generated histories rather than a few examples.

#[path = "properties/ledger.rs"]
mod ledger;
#[path = "properties/naive.rs"]
mod naive;

use bytes::{Bytes, BytesMut};
use kafka_gateway::records::{
    Header, Record, RecordError, StoredRecord, TimestampType, decode_stored, encode_batch,
    encode_stored, parse_batch, split_batches,
};
use proptest::prelude::*;

fn bytes_opt() -> impl Strategy<Value = Option<Bytes>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from))
}

fn records() -> impl Strategy<Value = Vec<Record>> {
    let header =
        (prop::collection::vec(any::<u8>(), 0..8), bytes_opt()).prop_map(|(k, v)| Header {
            key: Bytes::from(k),
            value: v,
        });
    prop::collection::vec(
        (
            any::<i64>(),
            bytes_opt(),
            bytes_opt(),
            prop::collection::vec(header, 0..4),
        ),
        1..20,
    )
    .prop_map(|rs| {
        rs.into_iter()
            .enumerate()
            .map(|(i, (timestamp, key, value, headers))| Record {
                offset_delta: i as i32,
                timestamp,
                key,
                value,
                headers,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// What the gateway encodes for a fetch, it (and so any client) reads back exactly: nulls
    /// stay null, empty stays empty, repeated header keys keep their order.
    #[test]
    fn batches_round_trip(
        batches in prop::collection::vec((any::<i64>(), any::<bool>(), records()), 1..4),
    ) {
        let mut out = BytesMut::new();
        for (base, append_time, rs) in &batches {
            let tt = if *append_time { TimestampType::LogAppendTime } else { TimestampType::CreateTime };
            encode_batch(&mut out, *base, tt, rs);
        }
        let raw = split_batches(out.freeze()).expect("our own record set splits");
        prop_assert_eq!(raw.len(), batches.len());
        for (raw, (base, append_time, rs)) in raw.into_iter().zip(&batches) {
            let b = parse_batch(raw, usize::MAX).expect("our own batch parses");
            prop_assert_eq!(b.header.base_offset, *base);
            prop_assert_eq!(b.header.record_count as usize, rs.len());
            prop_assert_eq!(b.header.max_timestamp, rs.iter().map(|r| r.timestamp).max().unwrap());
            prop_assert_eq!(b.header.timestamp_type() == TimestampType::LogAppendTime, *append_time);
            prop_assert_eq!(&b.records, rs);
        }
    }

    /// Any single corrupted byte in the CRC-covered part of a batch is caught, never served.
    #[test]
    fn corruption_is_always_detected(rs in records(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut out = BytesMut::new();
        encode_batch(&mut out, 0, TimestampType::CreateTime, &rs);
        let mut bad = out.to_vec();
        let i = 21 + at.index(bad.len() - 21);
        bad[i] ^= flip;
        let caught = matches!(parse_batch(Bytes::from(bad), usize::MAX), Err(RecordError::Crc { .. }));
        prop_assert!(caught, "byte {} flipped by {:#x} went unnoticed", i, flip);
    }

    /// The stored form of a record (one SMQ record) decodes to the same record.
    #[test]
    fn stored_records_round_trip(
        rs in records(),
        offset in any::<i64>(),
        partition in any::<i32>(),
        append_time in any::<bool>(),
    ) {
        for r in rs {
            let s = StoredRecord {
                offset,
                partition,
                timestamp: r.timestamp,
                timestamp_type: if append_time { TimestampType::LogAppendTime } else { TimestampType::CreateTime },
                key: r.key,
                value: r.value,
                headers: r.headers,
            };
            prop_assert_eq!(decode_stored(&encode_stored(&s)).expect("decodes"), s);
        }
    }
}
