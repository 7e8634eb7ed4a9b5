//! What the fuzz targets share: the checks each runs on an input, callable from the libFuzzer
//! targets (`fuzz_targets/`) and from the seed generator, so a crash reproduces with plain
//! `cargo run`-style code as well as under libFuzzer.

use bytes::{Bytes, BytesMut};
use kafka_gateway::ledger::{
    LedgerEntry, LedgerLimits, PartitionLedger, RecoveredLedgers, decode_record,
};
use kafka_gateway::records::{
    TimestampType, decode_stored, encode_batch, encode_stored, parse_batch, split_batches,
};
use kafka_gateway::server::{ParsedRequest, parse_request, read_frame};
use kafka_gateway::storage::{TopicConfigs, validate_topic_name};
use kafka_protocol::messages::RequestKind;

/// Largest frame the request target accepts (the gateway's default is 100 MiB; inputs are
/// small, this only keeps a claimed size from mattering).
const FRAME_LIMIT: usize = 1 << 20;
/// What a batch may decompress to in the targets (the gateway allows 64 × max.message.bytes).
const BATCH_LIMIT: usize = 4 << 20;

/// Request target: `data` is a byte stream from a client. Frames are cut from it as the
/// connection does; each is decoded as the gateway does before dispatch, and what handlers
/// parse without SMQ (record batches, topic names, topic configs) is parsed too.
pub fn request(data: &[u8]) {
    // As a whole frame (the common case for mutated seeds)...
    check_frame(Bytes::copy_from_slice(data));
    // ...and as a stream of size-prefixed frames.
    let mut stream = data;
    while let Ok(frame) = futures::executor::block_on(read_frame(&mut stream, FRAME_LIMIT)) {
        check_frame(frame);
    }
}

fn check_frame(frame: Bytes) {
    let Ok(ParsedRequest::Request { request, .. }) = parse_request(frame) else {
        return;
    };
    match *request {
        RequestKind::Produce(p) => {
            for t in p.topic_data {
                let _ = validate_topic_name(&t.name.0);
                for pd in t.partition_data {
                    record_set(pd.records.unwrap_or_default());
                }
            }
        }
        RequestKind::CreateTopics(c) => {
            for t in c.topics {
                let _ = validate_topic_name(&t.name.0);
                let _ = TopicConfigs::parse(
                    t.configs
                        .iter()
                        .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
                );
            }
        }
        _ => {}
    }
}

/// Record-batch target: split a record set into batches and parse each; whatever parses must
/// survive a round trip through the gateway's own encoder unchanged.
pub fn record_set(data: Bytes) {
    let Ok(batches) = split_batches(data) else {
        return;
    };
    for raw in batches {
        let Ok(batch) = parse_batch(raw, BATCH_LIMIT) else {
            continue;
        };
        let mut out = BytesMut::new();
        encode_batch(
            &mut out,
            batch.header.base_offset,
            batch.header.timestamp_type(),
            &batch.records,
        );
        let again = parse_batch(out.freeze(), usize::MAX)
            .unwrap_or_else(|e| panic!("re-encoded batch does not parse: {e}"));
        assert_eq!(again.records, batch.records, "round trip changed records");
    }
}

/// Rewrites each batch's length and CRC fields so that mutations reach the record decoder
/// instead of stopping at the CRC check (which a random mutation almost never satisfies).
pub fn fix_lengths_and_crcs(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    let mut at = 0;
    while v.len() >= at + 61 {
        let len = i32::from_be_bytes(v[at + 8..at + 12].try_into().expect("4 bytes"));
        let end = if len >= 49 && at + 12 + len as usize <= v.len() {
            at + 12 + len as usize
        } else {
            // A broken length: make this batch run to the end of the input.
            let len = (v.len() - at - 12) as i32;
            v[at + 8..at + 12].copy_from_slice(&len.to_be_bytes());
            v.len()
        };
        let crc = crc32c::crc32c(&v[at + 21..end]);
        v[at + 17..at + 21].copy_from_slice(&crc.to_be_bytes());
        at = end;
    }
    v
}

/// Stored-record target: anything `decode_stored` accepts re-encodes to the same record.
pub fn stored_record(data: &[u8]) {
    if let Ok(r) = decode_stored(data) {
        let again = decode_stored(&encode_stored(&r))
            .unwrap_or_else(|e| panic!("re-encoded stored record does not decode: {e}"));
        assert_eq!(again, r);
    }
}

/// Ledger target. The first byte picks the input's form: persisted mapping records
/// (length-prefixed protobuf, as recovery reads them; even), compact entries (bit 1 clear) or a
/// ledger snapshot (bits 0 and 1 set). Entries are replayed, under index limits the rest of the
/// first byte picks (0: the gateway's); a snapshot is decoded. Either way the resulting ledger
/// must keep its invariants.
pub fn ledger_replay(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let mut records = Vec::new();
        let mut rest = rest;
        while let Some((&n, tail)) = rest.split_first() {
            let n = usize::from(n).min(tail.len());
            if let Some(r) = decode_record(&tail[..n]) {
                records.push(r);
            }
            rest = &tail[n..];
        }
        let mut ledgers = RecoveredLedgers::new();
        kafka_gateway::ledger::replay_into(&mut ledgers, records);
        for l in ledgers.values() {
            check_ledger(l);
        }
    } else if mode & 2 == 0 {
        let mut l = PartitionLedger::with_limits(limits(mode >> 2));
        for chunk in rest.chunks_exact(ENTRY_LEN) {
            if chunk[7] & 0x80 != 0 {
                l.truncate_before(wide(chunk[0]));
                continue;
            }
            let before = l.clone();
            if l.replay(entry(chunk)).is_err() {
                assert_eq!(l, before, "a refused entry changed the ledger");
            }
        }
        check_ledger(&l);
    } else if let Ok(l) = PartitionLedger::decode_snapshot(rest) {
        check_ledger(&l);
    }
}

const ENTRY_LEN: usize = 8;

/// Small index limits, so that short inputs cross blocks and outgrow the journal.
fn limits(m: u8) -> LedgerLimits {
    if m == 0 {
        return LedgerLimits::default();
    }
    LedgerLimits {
        block_entries: 1 + (m & 3),
        block_offsets: 1 + i64::from((m >> 2) & 7),
        journal: 2 * u16::from(m >> 5),
    }
}

/// Small numbers most of the time (so entries meet and overlap), the extremes when asked.
fn wide(x: u8) -> i64 {
    match x {
        0xff => i64::MAX,
        0xfe => i64::MIN,
        0xfd => i64::MAX - 1,
        x => i64::from(x),
    }
}

/// A compact entry: offset, count, SMQ offset, timestamp (2 bytes), SMQ records, nonce; the
/// last byte's top bit makes the chunk a retention step to its offset instead.
fn entry(b: &[u8]) -> LedgerEntry {
    let count = match b[1] {
        0xff => u32::MAX,
        c => u32::from(c % 8),
    };
    LedgerEntry {
        kafka_offset: wide(b[0]),
        count,
        smq_offset: wide(b[2]),
        // Even: one SMQ record per Kafka record (`record` format); odd: fewer (`batch` format),
        // or more, which replay must refuse.
        smq_count: if b[5] % 2 == 0 {
            count
        } else {
            u32::from(b[5] / 2) % 9
        },
        max_timestamp: i64::from(i16::from_be_bytes([b[3], b[4]])),
        nonce: u64::from(b[6] & 3),
    }
}

/// The ledger's promises: dense, never-reused Kafka offsets from the log start; every held
/// offset resolves to an SMQ record and back; a timestamp lookup for any held timestamp finds a
/// block to read; the snapshot decodes to the same ledger.
pub fn check_ledger(l: &PartitionLedger) {
    let problems = l.validate();
    for p in &problems {
        assert!(
            p.kind == "smq_offset_regression" || p.kind == "timestamp_not_monotonic",
            "replay left {p:?}"
        );
    }
    let smq_unique = !problems.iter().any(|p| p.kind == "smq_offset_regression");
    let (start, next) = (l.log_start(), l.next_offset());
    assert!(start <= next && l.is_empty() == (start == next));
    assert!(l.entry_count() >= l.segment_count() as u64);
    // The runs from the log start cover every offset once, in order.
    let mut k = start;
    for run in l.runs_from(start, i64::MAX) {
        assert_eq!(run.kafka_offset, k, "runs are dense");
        assert!(run.smq_count >= 1 && run.smq_count <= run.count, "{run:?}");
        k += run.count;
        for o in [run.kafka_offset, k - 1] {
            let loc = l.locate(o).expect("held offset locates");
            assert!(loc.read_from <= o && loc.read_from >= run.kafka_offset);
            assert!(loc.smq_offset >= run.smq_offset);
            assert!(loc.smq_offset < run.smq_offset + run.smq_count);
            if smq_unique {
                assert_eq!(l.kafka_offset_of(loc.smq_offset), Some(loc.read_from));
            }
        }
        assert_eq!(
            l.locate(run.kafka_offset).unwrap().smq_offset,
            run.smq_offset
        );
    }
    assert_eq!(k, next, "runs end at the next offset");
    assert!(l.locate(next).is_none());
    assert!(start == 0 || l.locate(start - 1).is_none());
    for ts in [l.first_max_timestamp(), l.max_timestamp()]
        .into_iter()
        .flatten()
    {
        let t = l
            .read_start_for_timestamp(ts)
            .expect("a held timestamp is found");
        assert!(
            start <= t.start && t.start < t.end && t.end <= next,
            "{t:?}"
        );
    }
    assert!(
        l.max_timestamp()
            .is_none_or(|m| m == i64::MAX || l.read_start_for_timestamp(m + 1).is_none())
    );
    let again = PartitionLedger::decode_snapshot(&l.encode_snapshot()).expect("snapshot decodes");
    assert_eq!(&again, l);
}

/// Builds a batch for seeds: `n` records, optionally compressed by re-encoding through the
/// kafka-protocol crate's encoder.
pub fn sample_batch(n: i32) -> Bytes {
    use kafka_gateway::records::{Header, Record};
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            offset_delta: i,
            timestamp: 1_700_000_000_000 + i64::from(i),
            key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value {i}"))),
            headers: vec![Header {
                key: Bytes::from_static(b"h"),
                value: (i % 3 != 0).then(|| Bytes::from_static(b"v")),
            }],
        })
        .collect();
    let mut out = BytesMut::new();
    encode_batch(&mut out, 0, TimestampType::CreateTime, &records);
    out.freeze()
}
