use super::*;

fn e(k: i64, n: u32, s: i64, ts: i64) -> LedgerEntry {
    LedgerEntry {
        kafka_offset: k,
        count: n,
        smq_offset: s,
        smq_count: n,
        max_timestamp: ts,
        nonce: 0,
    }
}

fn batches(k: i64, n: u32, s: i64, m: u32, ts: i64) -> LedgerEntry {
    LedgerEntry {
        smq_count: m,
        ..e(k, n, s, ts)
    }
}

fn small() -> PartitionLedger {
    PartitionLedger::with_limits(LedgerLimits {
        block_entries: 2,
        block_offsets: 100,
        journal: 3,
    })
}

#[test]
fn batch_entries_start_reads_at_their_first_smq_record() {
    let mut l = PartitionLedger::new();
    // Two batches of 3 and 2 records in SMQ records 7 and 8, then one single-record batch.
    l.append(batches(0, 5, 7, 2, 10)).unwrap();
    l.append(e(5, 1, 9, 11)).unwrap();
    assert_eq!(l.locate(3).unwrap().smq_offset, 7);
    assert_eq!(l.locate(3).unwrap().read_from, 0);
    assert_eq!(l.locate(5).unwrap().smq_offset, 9);
    assert_eq!(l.kafka_offset_of(8), Some(0));
    assert_eq!(l.kafka_offset_of(9), Some(5));
    assert!(l.validate().is_empty());
    assert!(
        l.append(batches(6, 1, 10, 2, 12)).is_err(),
        "more SMQ records than offsets"
    );
    assert_eq!((l.entry_count(), l.segment_count()), (2, 1));
}

#[test]
fn appends_must_be_dense() {
    let mut l = PartitionLedger::new();
    l.append(e(0, 3, 0, 10)).unwrap();
    assert!(l.append(e(4, 1, 3, 10)).is_err(), "gap");
    assert!(l.append(e(2, 1, 3, 10)).is_err(), "reuse");
    l.append(e(3, 2, 5, 20)).unwrap();
    assert_eq!(l.next_offset(), 5);
}

#[test]
fn lookups_both_ways() {
    let mut l = small();
    l.append(e(0, 3, 0, 10)).unwrap();
    l.append(e(3, 2, 5, 20)).unwrap(); // SMQ offsets 3 and 4 were burned
    assert_eq!(l.locate(4).unwrap().smq_offset, 6);
    assert_eq!(l.locate(2).unwrap().smq_offset, 2);
    assert!(l.locate(5).is_none());
    assert_eq!(l.kafka_offset_of(6), Some(4));
    assert_eq!(l.kafka_offset_of(3), None);
    let at = |ts| l.read_start_for_timestamp(ts).map(|t| (t.start, t.end));
    assert_eq!(at(15), Some((3, 5)));
    assert_eq!(at(10), Some((0, 3)));
    assert_eq!(at(21), None);
    assert_eq!(
        (l.max_timestamp(), l.first_max_timestamp()),
        (Some(20), Some(10))
    );
}

#[test]
fn a_timestamp_lookup_answers_with_the_block_to_read() {
    let mut l = small();
    for (k, ts) in [(0, 5), (1, 30), (2, 10), (3, 40), (4, 20)] {
        l.append(e(k, 1, k, ts)).unwrap();
    }
    // Blocks [0, 2) max 30, [2, 4) max 40, [4, 5) max 20.
    let at = |ts| l.read_start_for_timestamp(ts).unwrap();
    assert_eq!((at(6).start, at(6).end), (0, 2));
    assert_eq!((at(35).start, at(35).end), (2, 4));
    assert!(at(35).certain);
    assert_eq!(l.max_timestamp(), Some(40));
    let p = l.validate();
    assert_eq!(p.len(), 1);
    assert_eq!(
        (p[0].kind, p[0].kafka_offset),
        ("timestamp_not_monotonic", 2)
    );
    assert!(p[0].detail.starts_with("2 entries"), "{}", p[0].detail);
}

#[test]
fn replay_lets_a_rewrite_supersede_and_refuses_gaps() {
    let mut l = PartitionLedger::new();
    l.replay(e(0, 3, 0, 10)).unwrap();
    l.replay(batches(3, 2, 3, 1, 10)).unwrap();
    l.replay(batches(3, 2, 9, 1, 11)).unwrap(); // the retried write
    assert_eq!(l.entry_count(), 2);
    assert_eq!(l.locate(3).unwrap().smq_offset, 9);
    assert!(l.replay(e(9, 1, 20, 11)).is_err());
    assert!(l.replay(e(4, 1, 20, 11)).is_err(), "not an entry boundary");
    assert!(
        l.replay(e(5, 2, i64::MAX - 1, 11)).is_err(),
        "SMQ range overflows"
    );
    assert_eq!(l.next_offset(), 5);
    // Inside an exact entry any offset is a boundary (the ledger may not know where exact
    // entries met); the cut entry's timestamp is then only an upper bound.
    l.replay(e(1, 1, 30, 12)).unwrap();
    assert_eq!((l.next_offset(), l.entry_count()), (2, 2));
    assert_eq!(l.locate(0).unwrap().smq_offset, 0);
    assert_eq!(l.locate(1).unwrap().smq_offset, 30);
    assert!(l.approximate());
}

#[test]
fn smq_offset_reuse_is_reported_and_still_resolved() {
    let mut l = PartitionLedger::new();
    l.append(e(0, 3, 10, 1)).unwrap();
    l.append(e(3, 3, 11, 2)).unwrap(); // SMQ handed out 11..13 again after a crash
    let kinds: Vec<_> = l.validate().iter().map(|p| p.kind).collect();
    assert_eq!(kinds, ["smq_offset_regression"]);
    assert_eq!(l.validate()[0].kafka_offset, 3);
    assert_eq!(l.kafka_offset_of(11), Some(3), "the newest entry wins");
    assert_eq!(l.kafka_offset_of(12), Some(4));
    assert_eq!(l.kafka_offset_of(10), Some(0));
    assert_eq!(l.locate(4).unwrap().smq_offset, 12);
}

#[test]
fn entries_that_continue_each_other_are_one_segment() {
    let mut l = small();
    for k in 0..10 {
        l.append(e(k, 1, k, k)).unwrap();
    }
    l.append(e(10, 2, 20, 10)).unwrap(); // a hole in SMQ
    l.append(LedgerEntry {
        nonce: 9,
        ..e(12, 1, 22, 11)
    })
    .unwrap(); // another publisher
    assert_eq!((l.segment_count(), l.entry_count()), (3, 12));
    let loc = l.locate(7).unwrap();
    assert_eq!((loc.smq_offset, loc.entry), (7, None));
    assert_eq!(loc.segment.count, 10);
    assert_eq!(l.locate(11).unwrap().smq_offset, 21);
    assert_eq!(l.kafka_offset_of(22), Some(12));
}

#[test]
fn a_cut_the_journal_covers_keeps_timestamps_exact() {
    let mut l = small();
    for (k, ts) in [(0, 5), (1, 30), (2, 10), (3, 40)] {
        l.append(e(k, 1, k, ts)).unwrap();
    }
    // The journal (3 entries) holds 1, 2 and 3: cutting at 3 recounts block [2, 4).
    l.replay(e(3, 1, 50, 7)).unwrap();
    assert!(!l.approximate());
    assert_eq!(l.max_timestamp(), Some(30));
    assert_eq!(l.read_start_for_timestamp(35), None);
    assert_eq!(l.entry_count(), 4);
    // Cutting where a block starts needs only the entry before it, still in the journal.
    l.replay(e(2, 1, 60, 1)).unwrap();
    assert!(!l.approximate());
    assert_eq!(l.max_timestamp(), Some(30));
    assert_eq!(l.validate()[0].detail.split(' ').next(), Some("1"));
    // Block [0, 2) cut at 1: its first entry has left the journal.
    l.replay(e(1, 1, 70, 2)).unwrap();
    assert!(l.approximate());
    assert_eq!(l.max_timestamp(), Some(30), "an upper bound now");
}

#[test]
fn a_cut_older_than_the_journal_leaves_an_upper_bound_and_lookups_stay_safe() {
    let mut l = small();
    for (k, ts) in [(0, 5), (1, 30), (2, 10), (3, 40), (4, 1), (5, 2)] {
        l.append(e(k, 1, k, ts)).unwrap();
    }
    // The journal holds 3, 4 and 5; block [0, 2) is cut at 1.
    l.replay(e(1, 1, 90, 7)).unwrap();
    assert!(l.approximate());
    assert_eq!(l.entry_count(), 2);
    // Offset 0 holds 5 at most, but its block still says 30: a lookup for 20 starts at 0 and,
    // not sure of that block, reads on to the first block known to hold one (none: the end).
    let t = l.read_start_for_timestamp(20).unwrap();
    assert_eq!((t.start, t.end, t.certain), (0, 2, false));
    // Above what the bound says, nothing.
    assert_eq!(l.read_start_for_timestamp(31), None);
}

#[test]
fn retention_drops_whole_blocks_and_keeps_the_next_offset() {
    let mut l = small();
    l.append(batches(0, 10, 0, 2, 1)).unwrap();
    l.append(batches(10, 5, 2, 1, 2)).unwrap();
    l.append(batches(15, 4, 3, 2, 3)).unwrap();
    l.append(batches(19, 1, 5, 1, 4)).unwrap();
    l.truncate_before(12); // blocks start at 0 and 15: keeps [0, ..)
    assert_eq!(l.log_start(), 0);
    l.truncate_before(17);
    assert_eq!((l.log_start(), l.entry_count()), (15, 2));
    assert_eq!(l.locate(16).unwrap().smq_offset, 3);
    assert_eq!(l.kafka_offset_of(5), Some(19));
    assert_eq!(l.locate(14), None);
    assert_eq!(l.first_max_timestamp(), Some(4));
    assert!(
        l.replay(batches(10, 5, 2, 1, 2)).is_err(),
        "before the log start"
    );
    l.truncate_before(5); // never backwards
    assert_eq!(l.log_start(), 15);
    l.truncate_before(100);
    assert_eq!(
        (l.log_start(), l.next_offset(), l.entry_count()),
        (20, 20, 0)
    );
    assert!(l.is_empty() && l.max_timestamp().is_none());
    l.append(e(20, 1, 6, 5)).unwrap();
    assert_eq!(l.locate(20).unwrap().smq_offset, 6);
    let round = PartitionLedger::decode_snapshot(&l.encode_snapshot()).unwrap();
    assert_eq!(round, l);
}

#[test]
fn prefixes_are_what_a_gateway_wrote_cut_short() {
    let entries = [
        e(0, 2, 0, 1),
        e(2, 3, 2, 1),
        batches(5, 4, 5, 2, 1),
        batches(9, 4, 7, 1, 1),
        e(13, 1, 20, 1),
    ];
    let mut ours = PartitionLedger::new();
    for x in entries {
        ours.append(x).unwrap();
    }
    for n in 0..=entries.len() {
        let mut fresh = PartitionLedger::new();
        for x in &entries[..n] {
            fresh.append(*x).unwrap();
        }
        assert!(fresh.is_prefix_of(&ours), "{n} entries");
        assert_eq!(ours.is_prefix_of(&fresh), n == entries.len());
    }
    let mut other = PartitionLedger::new();
    other.append(e(0, 2, 0, 1)).unwrap();
    other.append(e(2, 3, 3, 1)).unwrap();
    assert!(!other.is_prefix_of(&ours));
}

#[test]
fn snapshots_round_trip_and_refuse_damage() {
    let mut l = small();
    for k in 0..6 {
        l.append(e(k, 1, k, 10 - k)).unwrap();
    }
    l.append(batches(6, 10, 9, 3, 99)).unwrap();
    l.append(e(16, 2, 12, 3)).unwrap();
    l.replay(e(17, 1, 40, 4)).unwrap();
    let bytes = l.encode_snapshot();
    assert_eq!(PartitionLedger::decode_snapshot(&bytes).unwrap(), l);
    assert_eq!(
        PartitionLedger::decode_snapshot(&PartitionLedger::new().encode_snapshot()).unwrap(),
        PartitionLedger::new()
    );
    for n in 0..bytes.len() {
        assert!(PartitionLedger::decode_snapshot(&bytes[..n]).is_err());
    }
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x40;
        assert!(PartitionLedger::decode_snapshot(&bad).is_err(), "byte {i}");
    }
}

#[test]
fn decoding_checks_the_content_not_only_the_checksum() {
    let seal = |mut body: Vec<u8>| {
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    };
    let mut l = PartitionLedger::new();
    l.append(batches(0, 4, 0, 2, 1)).unwrap();
    let good = l.encode_snapshot();
    let body = good[..good.len() - 4].to_vec();
    assert!(PartitionLedger::decode_snapshot(&seal(body.clone())).is_ok());
    // Every single-byte change with a valid checksum either decodes to a ledger whose
    // snapshot is itself, or is refused; none panics.
    for i in 0..body.len() {
        for x in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut b = body.clone();
            b[i] = x;
            if let Ok(d) = PartitionLedger::decode_snapshot(&seal(b)) {
                let again = PartitionLedger::decode_snapshot(&d.encode_snapshot()).unwrap();
                assert_eq!(again, d);
            }
        }
    }
    let mut trailing = body;
    trailing.push(0);
    assert!(PartitionLedger::decode_snapshot(&seal(trailing)).is_err());
}

/// Memory of 1 M entries in one partition: printed for docs/benchmarks.md
/// (`cargo test -p kafka-gateway --release ledger::tests::memory -- --nocapture`).
#[test]
fn memory_follows_discontinuities_not_entries() {
    const N: i64 = 1_000_000;
    let mut record = PartitionLedger::new();
    let mut batch = PartitionLedger::new();
    let mut smq = 0;
    for i in 0..N {
        record.append(e(i, 1, i, 1_700_000_000_000 + i)).unwrap();
        // Produce requests of 1 to 40 records in one batch, now and then two batches.
        let n = 1 + (i * 7919 % 40) as u32;
        let m = if i % 10 == 0 && n > 1 { 2 } else { 1 };
        batch
            .append(batches(batch.next_offset(), n, smq, m, i))
            .unwrap();
        smq += i64::from(m);
    }
    for (name, l) in [("record", &record), ("batch", &batch)] {
        println!(
            "{name}: {N} entries, {} records: {} bytes, {:.3} bytes/entry, {:.3} bytes/record ({} after shrink_to_fit); snapshot {} bytes",
            l.next_offset(),
            l.memory_bytes(),
            l.memory_bytes() as f64 / N as f64,
            l.memory_bytes() as f64 / l.next_offset() as f64,
            {
                let mut s = l.clone();
                s.shrink_to_fit();
                s.memory_bytes()
            },
            l.encode_snapshot().len()
        );
    }
    assert!(
        record.memory_bytes() < N as usize,
        "under a byte per record"
    );
    assert!(batch.memory_bytes() < 4 * N as usize);
    assert_eq!(record.segment_count(), 1);
}

/// The target of #16: 10 M entries over 100 partitions (single-record produce requests in the
/// `record` format, and batches of 1 to 40 records in the `batch` format), with what the process
/// grew by. Slow in a debug build: `cargo test -p kafka-gateway --release -- --ignored
/// ten_million --nocapture`.
#[test]
#[ignore]
fn ten_million_entries_over_a_hundred_partitions() {
    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            })
            .unwrap_or(0)
    }
    for batched in [false, true] {
        let before = rss_kib();
        let mut ledgers = vec![PartitionLedger::new(); 100];
        let mut smq = vec![0i64; 100];
        for i in 0..10_000_000i64 {
            let p = (i % 100) as usize;
            let l = &mut ledgers[p];
            let (n, m) = if batched {
                (1 + (i * 7919 % 40) as u32, 1)
            } else {
                (1, 1)
            };
            l.append(batches(l.next_offset(), n, smq[p], m, i)).unwrap();
            smq[p] += i64::from(m);
        }
        let bytes: usize = ledgers.iter().map(PartitionLedger::memory_bytes).sum();
        println!(
            "{}: 10 M entries over 100 partitions: memory_bytes {} ({:.2} bytes/entry), RSS grew {} KiB",
            if batched { "batch" } else { "record" },
            bytes,
            bytes as f64 / 1e7,
            rss_kib().saturating_sub(before)
        );
        assert!(bytes < 32 << 20);
    }
}
