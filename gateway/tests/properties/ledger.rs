//! The compact ledger against the oracle ([`super::naive`]): generated histories of appends,
//! superseding replays (at entry starts, inside exact entries, anywhere), SMQ offsets burned or
//! handed out again, publish nonces changing, both storage formats and retention, under small
//! index limits so that short histories cross many blocks and outgrow the journal.

use kafka_gateway::ledger::{
    LedgerEntry, LedgerLimits, LedgerRecord, PartitionLedger, RecoveredLedgers, decode_record,
    encode_record, replay_into,
};
use proptest::prelude::*;

use super::naive::Naive;

/// One produce as the ledger sees it.
#[derive(Debug, Clone)]
struct Produce {
    count: u32,
    /// 0: one SMQ record per record (`record` format, or batches of one); 1: one batch; 2: a
    /// few batches.
    shape: u8,
    /// SMQ offsets burned before it (failed publishes).
    burned: i64,
    /// SMQ offsets handed out again (a broker crash): the SMQ offset goes back this far.
    reused: i64,
    new_nonce: bool,
    max_timestamp: i64,
}

fn produce() -> impl Strategy<Value = Produce> {
    (
        1u32..7,
        0u8..3,
        prop_oneof![4 => Just(0i64), 1 => 1i64..3],
        prop_oneof![6 => Just(0i64), 1 => 1i64..6],
        prop::bool::weighted(0.1),
        -5i64..60,
    )
        .prop_map(
            |(count, shape, burned, reused, new_nonce, max_timestamp)| Produce {
                count,
                shape,
                burned,
                reused,
                new_nonce,
                max_timestamp,
            },
        )
}

#[derive(Debug, Clone)]
enum Step {
    Append(Produce),
    /// A rewrite replayed at the start of the `back`-th newest entry.
    Rewrite(usize, Produce),
    /// A rewrite replayed `at` records into the `back`-th newest entry (accepted only when that
    /// entry is exact, or `at` lands on its start).
    Inside(usize, u32, Produce),
    /// A replay anywhere (-1 up to past the end): both refuse it or both take it.
    Anywhere(i64, Produce),
    /// Retention up to some offset (as a fraction of what is held, past the end included).
    Retain(u16),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            10 => produce().prop_map(Step::Append),
            3 => (0usize..4, produce()).prop_map(|(b, p)| Step::Rewrite(b, p)),
            1 => (4usize..30, produce()).prop_map(|(b, p)| Step::Rewrite(b, p)),
            2 => (0usize..12, 0u32..7, produce()).prop_map(|(b, a, p)| Step::Inside(b, a, p)),
            1 => (-1i64..200, produce()).prop_map(|(k, p)| Step::Anywhere(k, p)),
            1 => any::<u16>().prop_map(Step::Retain),
        ],
        0..45,
    )
}

fn limits() -> impl Strategy<Value = LedgerLimits> {
    (1u8..6, 1i64..16, 0u16..7).prop_map(|(block_entries, block_offsets, journal)| LedgerLimits {
        block_entries,
        block_offsets,
        journal,
    })
}

/// Where SMQ and the publisher stand.
#[derive(Debug, Default)]
struct Smq {
    next: i64,
    nonce: u64,
}

impl Smq {
    fn entry(&mut self, kafka_offset: i64, p: &Produce) -> LedgerEntry {
        let smq_offset = (self.next + p.burned - p.reused).max(0);
        let smq_count = match p.shape {
            0 => p.count,
            1 => 1,
            _ => 1 + (p.count - 1) / 2,
        };
        if p.new_nonce {
            self.nonce += 1;
        }
        self.next = smq_offset + i64::from(smq_count);
        LedgerEntry {
            kafka_offset,
            count: p.count,
            smq_offset,
            smq_count,
            max_timestamp: p.max_timestamp,
            nonce: self.nonce,
        }
    }
}

/// Applies a step to the ledger and the oracle alike; checks they agree on taking it.
fn apply(step: &Step, l: &mut PartitionLedger, n: &mut Naive, smq: &mut Smq) {
    let back = |b: usize| n.entries.len().checked_sub(b + 1).map(|i| n.entries[i].e);
    let replay = |l: &mut PartitionLedger, n: &mut Naive, e: LedgerEntry| {
        let before = l.clone();
        let ok = l.replay(e).is_ok();
        assert_eq!(ok, n.replay(e), "replay of {e:?} taken alike");
        if !ok {
            assert_eq!(*l, before, "a refused entry changes nothing");
        }
    };
    match step {
        Step::Append(p) => {
            let e = smq.entry(n.next(), p);
            l.append(e).expect("a continuing entry appends");
            assert!(n.append(e));
        }
        Step::Rewrite(b, p) => {
            let k = back(*b).map_or(n.next(), |e| e.kafka_offset);
            replay(l, n, smq.entry(k, p));
        }
        Step::Inside(b, at, p) => {
            let k = back(*b).map_or(n.next(), |e| e.kafka_offset + i64::from(at % e.count));
            replay(l, n, smq.entry(k, p));
        }
        Step::Anywhere(k, p) => replay(l, n, smq.entry(*k, p)),
        Step::Retain(x) => {
            let held = n.next() - n.start;
            let offset = n.start + i64::from(*x) % (held + 3);
            l.truncate_before(offset);
            let start = l.log_start();
            assert!(start >= n.start && (start <= offset || start == n.next()));
            assert!(
                n.drop_before(start),
                "retention to {start}: not an entry start"
            );
        }
    }
}

/// Every query, compared. `full`: every offset and SMQ position, not a sample.
fn check(l: &PartitionLedger, n: &Naive, full: bool) {
    assert_eq!((l.log_start(), l.next_offset()), (n.start, n.next()));
    assert_eq!(l.is_empty(), n.entries.is_empty());
    let exact = !l.approximate();
    assert!(
        !(exact && n.has_bound()),
        "a bound the ledger does not admit"
    );
    if exact {
        assert_eq!(l.entry_count(), n.entries.len() as u64);
        assert_eq!(l.max_timestamp(), n.max_timestamp());
    } else {
        assert!(l.max_timestamp() >= n.max_timestamp());
    }
    let problems = l.validate();
    let smq_back: Vec<i64> = problems
        .iter()
        .filter(|p| p.kind == "smq_offset_regression")
        .map(|p| p.kafka_offset)
        .collect();
    assert_eq!(smq_back, n.smq_regressions());
    let older = problems
        .iter()
        .find(|p| p.kind == "timestamp_not_monotonic");
    let (count, first) = n.ts_regressions();
    if exact {
        let said = older.map_or(0, |p| {
            p.detail.split(' ').next().unwrap().parse::<u64>().unwrap()
        });
        assert_eq!(said, count, "{older:?}");
        if let (Some(p), Some(f)) = (older, first) {
            assert!(p.kafka_offset <= f && n.is_start(p.kafka_offset));
        }
    }
    for ts in -6..62 {
        let t = l.read_start_for_timestamp(ts);
        let f = n.first_at_or_after(ts);
        if let Some(t) = t {
            assert!(n.is_start(t.start) && n.is_start(t.end) && t.start < t.end);
        }
        match (t, f) {
            (Some(t), Some(f)) => {
                assert!(t.start <= f.kafka_offset, "{ts}: {t:?} is past {f:?}");
                if t.certain {
                    assert!(f.kafka_offset < t.end, "{ts}: {t:?} ends before {f:?}");
                }
                if exact {
                    assert!(t.certain && f.end() <= t.end);
                    let inside = n
                        .entries
                        .iter()
                        .filter(|h| h.e.kafka_offset >= t.start && h.e.kafka_offset < t.end)
                        .count();
                    assert!(inside <= usize::from(l.limits().block_entries));
                }
            }
            (Some(t), None) => assert!(!exact && !t.certain, "{ts}: {t:?} for nothing"),
            (None, Some(f)) => panic!("{ts}: nothing, but {f:?}"),
            (None, None) => {}
        }
    }
    let round = PartitionLedger::decode_snapshot(&l.encode_snapshot()).expect("decodes");
    assert_eq!(&round, l);
    let stride = if full { 1 } else { 5 };
    for o in (n.start - 1..=n.next()).step_by(stride) {
        let loc = l.locate(o).map(|x| (x.smq_offset, x.read_from, x.nonce));
        assert_eq!(loc, n.locate(o), "locate({o})");
        for limit in [1, 2, 5, 1000] {
            assert_eq!(
                l.runs_from(o, limit),
                n.runs_from(o, limit),
                "runs_from({o}, {limit})"
            );
        }
    }
    let smq_max = n.entries.iter().map(|h| h.e.smq_end()).max().unwrap_or(0);
    for s in (-1..=smq_max).step_by(stride) {
        assert_eq!(
            l.kafka_offset_of(s),
            n.kafka_offset_of(s),
            "kafka_offset_of({s})"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// The compact ledger answers as the list of entries does, after every step; a snapshot
    /// taken at any step and given the rest of the history is the ledger that had it all.
    #[test]
    fn ledger_agrees_with_the_list_of_entries(limits in limits(), history in steps(), split in any::<prop::sample::Index>()) {
        let mut l = PartitionLedger::with_limits(limits);
        let mut n = Naive::default();
        let mut smq = Smq::default();
        let split = split.index(history.len() + 1);
        let mut restored: Option<PartitionLedger> = None;
        for (i, step) in history.iter().enumerate() {
            if i == split {
                restored = Some(PartitionLedger::decode_snapshot(&l.encode_snapshot()).unwrap());
            }
            let (mut twin, mut twin_n) = (Smq { next: smq.next, nonce: smq.nonce }, n.clone());
            apply(step, &mut l, &mut n, &mut smq);
            if let Some(r) = &mut restored {
                apply(step, r, &mut twin_n, &mut twin);
                prop_assert_eq!(&*r, &l);
            }
            check(&l, &n, i % 8 == 7 || i + 1 == history.len());
        }
        check(&l, &n, true);
    }

    /// What SMQ holds of what a gateway wrote (a prefix of its entries) is recognised as such,
    /// and a ledger that differs anywhere is not.
    #[test]
    fn ledger_prefixes_are_recognised(ps in prop::collection::vec(produce(), 1..40), cut in any::<prop::sample::Index>(), change in any::<prop::sample::Index>()) {
        let mut smq = Smq::default();
        let mut entries = Vec::new();
        let mut k = 0;
        for p in &ps {
            let e = smq.entry(k, &Produce { reused: 0, ..p.clone() });
            k = e.end();
            entries.push(e);
        }
        let build = |es: &[LedgerEntry]| {
            let mut l = PartitionLedger::new();
            es.iter().for_each(|e| l.append(*e).unwrap());
            l
        };
        let ours = build(&entries);
        let cut = cut.index(entries.len() + 1);
        prop_assert!(build(&entries[..cut]).is_prefix_of(&ours));
        let mut other = entries[..cut].to_vec();
        if !other.is_empty() {
            let i = change.index(other.len());
            other[i].nonce += 1;
            for e in &mut other[i..] {
                e.smq_offset += 1;
            }
            prop_assert!(!build(&other).is_prefix_of(&ours));
        }
    }

    /// Recovery (replay) of what a live gateway persisted gives back the live ledger.
    #[test]
    fn ledger_replay_of_appends_is_the_live_ledger(ps in prop::collection::vec(produce(), 0..60)) {
        let mut smq = Smq::default();
        let mut live = PartitionLedger::new();
        let mut replayed = PartitionLedger::new();
        for p in &ps {
            let e = smq.entry(live.next_offset(), p);
            live.append(e).unwrap();
            replayed.replay(e).expect("live entries replay");
        }
        prop_assert_eq!(replayed, live);
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
        leader_epoch in any::<i64>(),
    ) {
        let rec = LedgerRecord {
            topic,
            partition,
            generation,
            entry: LedgerEntry { kafka_offset, count, smq_offset, smq_count: count, max_timestamp, nonce: 0 },
            producers: Vec::new(),
            leader_epoch,
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

    /// Decoding never panics on arbitrary bytes, and what it accepts re-encodes to itself.
    #[test]
    fn ledger_snapshots_of_any_bytes_decode_or_are_refused(body in prop::collection::vec(any::<u8>(), 0..80)) {
        let mut data = b"KGLS\x01".to_vec();
        data.extend(&body);
        let crc = crc32c::crc32c(&data);
        data.extend(crc.to_le_bytes());
        if let Ok(l) = PartitionLedger::decode_snapshot(&data) {
            prop_assert_eq!(PartitionLedger::decode_snapshot(&l.encode_snapshot()).unwrap(), l);
        }
        let _ = PartitionLedger::decode_snapshot(&body);
    }
}

proptest! {
    // Long histories: fewer of them.
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// With the gateway's own limits over longer histories of mostly steady produce.
    #[test]
    fn ledger_agrees_with_the_list_of_entries_at_default_limits(
        ps in prop::collection::vec(produce(), 0..400),
        rewrites in prop::collection::vec((0usize..400, 0usize..200, produce()), 0..4),
    ) {
        let mut l = PartitionLedger::new();
        let mut n = Naive::default();
        let mut smq = Smq::default();
        for (i, p) in ps.iter().enumerate() {
            let p = Produce { burned: p.burned * i64::from(i % 17 == 0), reused: 0, ..p.clone() };
            apply(&Step::Append(p), &mut l, &mut n, &mut smq);
            for (at, back, r) in &rewrites {
                if *at == i {
                    apply(&Step::Rewrite(*back, r.clone()), &mut l, &mut n, &mut smq);
                }
            }
        }
        check(&l, &n, true);
    }
}
