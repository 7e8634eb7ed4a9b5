//! Property tests of the offset ledger and the record batch codec: the rules the gateway's
//! offsets and fetched bytes rest on, checked on generated histories rather than a few examples.

use bytes::{Bytes, BytesMut};
use kafka_gateway::ledger::{
    LedgerEntry, LedgerRecord, PartitionLedger, RecoveredLedgers, decode_record, encode_record,
    replay_into,
};
use kafka_gateway::records::{
    Header, Record, RecordError, StoredRecord, TimestampType, decode_stored, encode_batch,
    encode_stored, parse_batch, split_batches,
};
use proptest::prelude::*;

/// One produce as the ledger sees it: how many records, in how many SMQ records (as many in the
/// `record` storage format, one per batch in the `batch` format), how many SMQ offsets were
/// burned before it (failed publishes), and its largest timestamp.
#[derive(Debug, Clone)]
struct Produce {
    count: u32,
    smq_count: u32,
    burned: i64,
    max_timestamp: i64,
}

fn produce(max_count: u32, max_ts: i64) -> impl Strategy<Value = Produce> + Clone {
    (1..max_count, any::<bool>(), 0i64..3, -5..max_ts).prop_map(
        |(count, batched, burned, max_timestamp)| Produce {
            count,
            smq_count: if batched { 1 } else { count },
            burned,
            max_timestamp,
        },
    )
}

fn produces() -> impl Strategy<Value = Vec<Produce>> {
    prop::collection::vec(produce(20, 1000), 0..40)
}

/// The ledger a live gateway builds by appending each produce.
fn appended(ps: &[Produce]) -> PartitionLedger {
    let mut l = PartitionLedger::new();
    let mut smq = 0;
    for p in ps {
        smq += p.burned;
        l.append(LedgerEntry {
            kafka_offset: l.next_offset(),
            count: p.count,
            smq_offset: smq,
            smq_count: p.smq_count,
            max_timestamp: p.max_timestamp,
            nonce: 0,
        })
        .expect("a continuing entry appends");
        smq += i64::from(p.smq_count);
    }
    l
}

/// What recovery may read from `kafka-system/offset-mappings`: the live entries, some written
/// twice (a retried write whose first attempt landed too), with the retry elsewhere in SMQ.
#[derive(Debug, Clone)]
enum Persisted {
    /// The next entry of the history.
    Next(Produce),
    /// A rewrite starting where the `back`-th last entry starts: it supersedes that entry and
    /// everything after it.
    Rewrite { back: usize, produce: Produce },
}

fn persisted() -> impl Strategy<Value = Vec<Persisted>> {
    prop::collection::vec(
        prop_oneof![
            3 => produce(10, 100).prop_map(Persisted::Next),
            1 => (0usize..4, produce(10, 100))
                .prop_map(|(back, produce)| Persisted::Rewrite { back, produce }),
        ],
        0..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Offsets are dense from 0 and never reused; each one resolves to its SMQ position and back
    /// (for an entry of batches, to the entry's SMQ record and first offset); a burned SMQ
    /// position resolves to no Kafka offset.
    #[test]
    fn ledger_lookups_agree_both_ways(ps in produces()) {
        let l = appended(&ps);
        let total: i64 = ps.iter().map(|p| i64::from(p.count)).sum();
        prop_assert_eq!(l.next_offset(), total);
        prop_assert_eq!(l.log_start(), 0);
        prop_assert!(l.validate().iter().all(|p| p.kind == "timestamp_not_monotonic"));
        let mut held = std::collections::HashSet::new();
        for o in 0..total {
            let loc = l.locate(o).expect("every offset below the high water mark is held");
            let e = loc.entry;
            prop_assert!(e.kafka_offset <= o && o < e.end());
            if e.is_exact() {
                prop_assert_eq!(loc.smq_offset, e.smq_offset + (o - e.kafka_offset));
                prop_assert_eq!(l.kafka_offset_of(loc.smq_offset), Some(o));
                prop_assert!(held.insert(loc.smq_offset), "two offsets share SMQ offset {}", loc.smq_offset);
            } else {
                prop_assert_eq!(loc.smq_offset, e.smq_offset);
                prop_assert_eq!(l.kafka_offset_of(loc.smq_offset), Some(e.kafka_offset));
                held.extend(e.smq_offset..e.smq_end());
            }
        }
        prop_assert!(l.locate(total).is_none());
        prop_assert!(l.locate(-1).is_none());
        let smq_end = ps.iter().map(|p| p.burned + i64::from(p.smq_count)).sum::<i64>();
        for smq in 0..smq_end {
            prop_assert_eq!(l.kafka_offset_of(smq).is_some(), held.contains(&smq));
        }
    }

    /// A timestamp lookup finds the first entry holding a record at least that recent, so a
    /// ListOffsets by time never skips one.
    #[test]
    fn ledger_timestamp_lookup_finds_the_first_recent_enough_entry(ps in produces(), ts in -10i64..1010) {
        let l = appended(&ps);
        let expected = l.entries().iter().position(|e| e.max_timestamp >= ts);
        prop_assert_eq!(l.first_entry_at_or_after(ts), expected);
        prop_assert_eq!(l.max_timestamp(), l.entries().iter().map(|e| e.max_timestamp).max());
    }

    /// Recovery (replay) of what a live gateway persisted gives back the live ledger.
    #[test]
    fn ledger_replay_of_appends_is_the_live_ledger(ps in produces()) {
        let live = appended(&ps);
        let mut replayed = PartitionLedger::new();
        for e in live.entries() {
            replayed.replay(*e).expect("live entries replay");
        }
        prop_assert_eq!(replayed.entries(), live.entries());
    }

    /// Replay's supersede rule against a model: a rewrite at an entry boundary replaces that
    /// entry and all after it; the result is dense, and refused entries change nothing.
    #[test]
    fn ledger_replay_supersedes_at_entry_boundaries(history in persisted(), junk in (0i64..200, 1u32..5)) {
        let mut model: Vec<LedgerEntry> = Vec::new();
        let mut log: Vec<LedgerEntry> = Vec::new();
        let mut smq = 0;
        for step in &history {
            let (start_index, p) = match step {
                Persisted::Next(p) => (model.len(), p),
                Persisted::Rewrite { back, produce } => {
                    (model.len().saturating_sub(back + 1), produce)
                }
            };
            model.truncate(start_index);
            smq += p.burned;
            let e = LedgerEntry {
                kafka_offset: model.last().map_or(0, |e| e.end()),
                count: p.count,
                smq_offset: smq,
                smq_count: p.smq_count,
                max_timestamp: p.max_timestamp,
                nonce: 0,
            };
            smq += i64::from(p.smq_count);
            model.push(e);
            log.push(e);
        }
        let mut l = PartitionLedger::new();
        for e in &log {
            l.replay(*e).expect("entries at boundaries replay");
        }
        prop_assert_eq!(l.entries(), &model[..]);
        prop_assert!(l.validate().iter().all(|p| p.kind != "offset_gap" && p.kind != "offset_overlap"));
        // Then something that is neither the next entry nor on a boundary: refused, no change.
        let (k, count) = junk;
        let bad = LedgerEntry { kafka_offset: k, count, smq_offset: 0, smq_count: 1, max_timestamp: 0, nonce: 0 };
        let on_boundary = k == l.next_offset() || l.entries().iter().any(|e| e.kafka_offset == k);
        let before = l.entries().to_vec();
        let r = l.replay(bad);
        prop_assert_eq!(r.is_ok(), on_boundary);
        if r.is_err() {
            prop_assert_eq!(l.entries(), &before[..]);
        }
    }

    /// Persisted ledger records decode to what was encoded, and recovery keys them by partition.
    #[test]
    fn ledger_records_round_trip(
        topic in "[a-z]{1,8}/[a-z0-9._-]{1,20}",
        partition in 0i32..1000,
        generation in any::<i64>(),
        kafka_offset in 0i64..i64::from(i32::MAX),
        count in 1u32..=i32::MAX as u32,
        smq_offset in 0i64..i64::from(i32::MAX),
        max_timestamp in any::<i64>(),
    ) {
        let rec = LedgerRecord {
            topic,
            partition,
            generation,
            entry: LedgerEntry { kafka_offset, count, smq_offset, smq_count: count, max_timestamp, nonce: 0 },
            producers: Vec::new(),
        };
        prop_assert_eq!(decode_record(&encode_record(&rec)), Some(rec.clone()));
        let mut ledgers = RecoveredLedgers::new();
        let first = LedgerRecord { entry: LedgerEntry { kafka_offset: 0, ..rec.entry }, ..rec };
        prop_assert_eq!(replay_into(&mut ledgers, vec![first.clone()]), 0);
        prop_assert_eq!(
            ledgers[&(first.topic.clone(), first.partition)].next_offset(),
            i64::from(first.entry.count)
        );
    }
}

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
