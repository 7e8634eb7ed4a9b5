//! A checkpoint and the records after it rebuild exactly the state that replaying every record
//! rebuilds: the rule that lets a start read the newest checkpoint instead of all history.

use kafka_gateway::ledger::{
    LedgerEntry, LedgerRecord, LedgerSlot, ProducerBatch, encode_log_start, encode_records,
};
use kafka_gateway::state::Replay;
use proptest::prelude::*;
use smq_client::DataMessage;

/// One persisted ledger record, as generated: which data partition, and whether it continues
/// the partition, rewrites from an earlier entry (a retried or republished write), or is junk
/// that replay refuses (a gap).
#[derive(Debug, Clone)]
enum Step {
    Next {
        part: usize,
        count: u32,
        batched: bool,
        burned: i64,
        ts: i64,
        idempotent: bool,
    },
    Rewrite {
        part: usize,
        back: usize,
        count: u32,
    },
    Gap {
        part: usize,
    },
    /// SMQ handed offsets out again after a crash: the next entry's SMQ offset goes back.
    Reuse {
        part: usize,
        by: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0usize..3, 1u32..6, any::<bool>(), 0i64..3, 0i64..1000, any::<bool>())
            .prop_map(|(part, count, batched, burned, ts, idempotent)| Step::Next { part, count, batched, burned, ts, idempotent }),
        2 => (0usize..3, 0usize..3, 1u32..6).prop_map(|(part, back, count)| Step::Rewrite { part, back, count }),
        1 => (0usize..3).prop_map(|part| Step::Gap { part }),
        1 => (0usize..3, 1i64..5).prop_map(|(part, by)| Step::Reuse { part, by }),
    ]
}

/// The ledger records a history writes, in order.
fn records(steps: &[Step]) -> Vec<LedgerRecord> {
    let mut starts: Vec<Vec<i64>> = vec![Vec::new(); 3];
    let mut next = [0i64; 3];
    let mut smq = [0i64; 3];
    let mut out = Vec::new();
    let mut nonce = 1u64;
    let mut seq = [0i32; 3];
    for (i, s) in steps.iter().enumerate() {
        let mut producers = Vec::new();
        let (part, entry) = match *s {
            Step::Next {
                part,
                count,
                batched,
                burned,
                ts,
                idempotent,
            } => {
                if idempotent {
                    producers.push(ProducerBatch {
                        producer_id: part as i64 + 100,
                        epoch: 0,
                        base_sequence: seq[part],
                        count: count as i32,
                        base_offset: next[part],
                        time_ms: i as i64,
                    });
                    seq[part] += count as i32;
                }
                smq[part] += burned;
                let e = LedgerEntry {
                    kafka_offset: next[part],
                    count,
                    smq_offset: smq[part],
                    smq_count: if batched { 1 } else { count },
                    max_timestamp: ts,
                    nonce,
                };
                starts[part].push(next[part]);
                (part, e)
            }
            Step::Rewrite { part, back, count } => {
                let Some(&k) = starts[part].iter().rev().nth(back) else {
                    continue;
                };
                let keep = starts[part].iter().position(|&s| s == k).unwrap_or(0);
                starts[part].truncate(keep);
                starts[part].push(k);
                nonce += 1;
                let e = LedgerEntry {
                    kafka_offset: k,
                    count,
                    smq_offset: smq[part],
                    smq_count: count,
                    max_timestamp: 5,
                    nonce,
                };
                (part, e)
            }
            Step::Gap { part } => {
                let e = LedgerEntry {
                    kafka_offset: next[part] + 7,
                    count: 1,
                    smq_offset: smq[part],
                    smq_count: 1,
                    max_timestamp: 0,
                    nonce,
                };
                out.push(message(part, e, Vec::new()));
                continue;
            }
            Step::Reuse { part, by } => {
                smq[part] = (smq[part] - by).max(0);
                continue;
            }
        };
        smq[part] += i64::from(entry.smq_count);
        next[part] = entry.kafka_offset + i64::from(entry.count);
        out.push(message(part, entry, producers));
    }
    out
}

fn message(part: usize, entry: LedgerEntry, producers: Vec<ProducerBatch>) -> LedgerRecord {
    LedgerRecord {
        topic: format!("kafka/t{part}"),
        partition: part as i32,
        generation: 1,
        entry,
        producers,
        leader_epoch: 1,
    }
}

/// The records as the ledger writer stores them: consecutive entries grouped into one SMQ
/// record (group commit), `sizes` giving each group's size in turn.
fn stored(records: &[LedgerRecord], sizes: &[usize]) -> Vec<DataMessage> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < records.len() {
        let n = sizes
            .get(i)
            .copied()
            .unwrap_or(1)
            .clamp(1, records.len() - at);
        let group: Vec<&LedgerRecord> = records[at..at + n].iter().collect();
        out.push(DataMessage {
            key: Vec::new(),
            value: encode_records(&group),
            ts_ns: 0,
            ctrl: None,
        });
        at += n;
        i += 1;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_ledger_checkpoint_and_its_tail_replay_as_the_whole_history(
        steps in prop::collection::vec(step(), 0..60),
        cuts in prop::collection::vec(0usize..60, 0..3),
        groups in prop::collection::vec(1usize..4, 0..60),
        log_starts in prop::collection::vec((0usize..60, 0usize..3, 0i64..40), 0..4),
    ) {
        let mut records = stored(&records(&steps), &groups);
        // Retention and DeleteRecords move log starts between the entries.
        for (at, part, offset) in log_starts {
            let at = at.min(records.len());
            records.insert(at, DataMessage {
                key: Vec::new(),
                value: encode_log_start(&format!("kafka/t{part}"), part as i32, offset),
                ts_ns: 0,
                ctrl: None,
            });
        }
        let mut full = LedgerSlot::default();
        for m in &records {
            full.apply(m);
        }
        // Checkpoints at each cut in turn, as a partition gets several over its life.
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(records.len())).collect();
        cuts.sort_unstable();
        let mut state = LedgerSlot::default();
        let mut at = 0;
        for cut in cuts {
            for m in &records[at..cut] {
                state.apply(m);
            }
            at = cut;
            state = LedgerSlot::decode(&state.encode()).expect("a checkpoint decodes");
        }
        for m in &records[at..] {
            state.apply(m);
        }
        prop_assert_eq!(state.encode(), full.encode());
        for (key, l) in &full.ledgers {
            prop_assert_eq!(state.ledgers[key].next_offset(), l.next_offset());
        }
    }
}
