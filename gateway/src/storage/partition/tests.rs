//! The partition's decisions against the in-memory backend: offsets dense and never handed out
//! twice, failures rolled back, idempotent retries answered with their first offsets, held
//! records published again after a broker crash, and a lapsed lock taken over. What SMQ itself
//! does is tested against real SMQ in `tests/`; here SMQ's hazards are produced on demand.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use proptest::prelude::*;

use super::ownership::LOCK_TTL;
use super::{PartitionLog, Placement};
use crate::error::GatewayError;
use crate::ledger::{GAP_GRACE_MS, PartitionState};
use crate::records::{
    Batch, Record, StorageFormat, StoredUnit, TimestampType, encode_batch, parse_batch,
};
use crate::storage::backend::memory::{Cluster, MemoryBackend};
use crate::storage::topic_config::RetentionPolicy;
use crate::storage::unflushed::UnflushedBudget;

type Log = Arc<PartitionLog<MemoryBackend>>;

/// Acks held until SMQ has written them (the gateway's default), or not.
#[derive(Debug, Clone, Copy)]
struct Mode {
    holds_acks: bool,
    log_files: bool,
    format: StorageFormat,
}

const HELD: Mode = Mode {
    holds_acks: true,
    log_files: false,
    format: StorageFormat::Record,
};

fn open(cluster: &Cluster, owner: &str, mode: Mode, ledger: PartitionState) -> Log {
    Arc::new(PartitionLog::new(
        cluster.gateway(owner, mode.holds_acks, mode.log_files),
        Placement {
            smq_topic: smq_client::topic("kafka", "t"),
            index: 0,
            generation: 1,
            format: mode.format,
            tail_cache_bytes: 1 << 20,
            unflushed: Arc::new(UnflushedBudget::new(0)),
        },
        ledger,
        None,
    ))
}

/// A batch of records with the given values, optionally from an idempotent producer
/// (id, epoch, base sequence).
fn batch(values: &[String], producer: Option<(i64, i16, i32)>) -> Batch {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            offset_delta: i as i32,
            timestamp: 1_000 + i as i64,
            key: None,
            value: Some(Bytes::from(v.clone())),
            headers: Vec::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    encode_batch(&mut buf, 0, TimestampType::CreateTime, &records);
    let mut b = parse_batch(buf.freeze(), usize::MAX).expect("a batch we encoded parses");
    if let Some((id, epoch, seq)) = producer {
        b.header.producer_id = id;
        b.header.producer_epoch = epoch;
        b.header.base_sequence = seq;
    }
    b
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

async fn append(p: &Log, vals: &[String]) -> Result<i64, GatewayError> {
    p.append(&[batch(vals, None)], TimestampType::CreateTime, 0)
        .await
        .map(|a| a.base_offset)
}

/// Every record of the partition, as (offset, value), read the way a consumer does.
async fn read_all(p: &Log) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut offset = p.log_start();
    while offset < p.high_water_mark() {
        let r = p.read(offset, 1 << 20).await.expect("readable");
        assert!(!r.units.is_empty(), "no record at {offset}");
        for u in r.units {
            match u {
                StoredUnit::Record(r) => {
                    if r.offset >= offset {
                        out.push((r.offset, utf8(r.value)));
                    }
                }
                StoredUnit::Batch(b) => {
                    let parsed = parse_batch(b.raw.clone(), usize::MAX).expect("stored batch");
                    for r in parsed.records {
                        let o = b.base_offset + i64::from(r.offset_delta);
                        if o >= offset {
                            out.push((o, utf8(r.value)));
                        }
                    }
                }
            }
        }
        offset = out.last().map_or(offset, |(o, _)| o + 1);
    }
    out
}

fn utf8(b: Option<Bytes>) -> String {
    String::from_utf8(b.unwrap_or_default().to_vec()).expect("utf-8 value")
}

fn retriable(e: &GatewayError) -> bool {
    ResponseError::try_from_code(e.code()).is_some_and(|c| c.is_retriable())
}

fn numbered(vals: &[String], base: i64) -> Vec<(i64, String)> {
    vals.iter()
        .enumerate()
        .map(|(i, v)| (base + i as i64, v.clone()))
        .collect()
}

#[tokio::test]
async fn appends_get_dense_offsets_in_both_formats() {
    for format in [StorageFormat::Record, StorageFormat::Batch] {
        for holds_acks in [false, true] {
            let cluster = Cluster::new();
            let mode = Mode {
                holds_acks,
                log_files: false,
                format,
            };
            let p = open(&cluster, "g1", mode, Default::default());
            let (a, b, c) = (values("a", 2), values("b", 3), values("c", 1));
            assert_eq!(append(&p, &a).await.unwrap(), 0);
            assert_eq!(append(&p, &b).await.unwrap(), 2);
            assert_eq!(append(&p, &c).await.unwrap(), 5);
            assert_eq!(p.high_water_mark(), 6);
            let mut want = numbered(&a, 0);
            want.extend(numbered(&b, 2));
            want.extend(numbered(&c, 5));
            assert_eq!(
                read_all(&p).await,
                want,
                "{format:?} holds_acks={holds_acks}"
            );
            let smq_records = cluster.log().len();
            let expected = if format == StorageFormat::Record {
                6
            } else {
                3
            };
            assert_eq!(smq_records, expected, "SMQ records per Kafka record");
        }
    }
}

#[tokio::test]
async fn a_broken_stream_fails_its_append_and_every_one_begun_after_it() {
    let cluster = Cluster::new();
    let p = open(&cluster, "g1", HELD, Default::default());
    let first = values("first", 1);
    assert_eq!(append(&p, &first).await.unwrap(), 0);
    // Written and let go, so nothing earlier is published again below.
    cluster.flush();
    p.keep_durable().await;
    assert_eq!(p.held_bytes(), 0);
    cluster.hold_acks(true);
    let a = p
        .begin_append(
            &[batch(&values("a", 2), None)],
            TimestampType::CreateTime,
            0,
        )
        .await
        .unwrap();
    let b = p
        .begin_append(
            &[batch(&values("b", 1), None)],
            TimestampType::CreateTime,
            0,
        )
        .await
        .unwrap();
    assert_eq!(cluster.waiting_acks(), 3);
    cluster.break_streams();
    cluster.hold_acks(false);
    let ea = a.finish().await.unwrap_err();
    let eb = b.finish().await.unwrap_err();
    assert!(retriable(&ea) && retriable(&eb), "{ea} / {eb}");
    assert_eq!(
        p.high_water_mark(),
        1,
        "nothing of the failed appends is visible"
    );
    // The offsets handed to the failed appends are handed out again, with no hole.
    let c = values("c", 2);
    assert_eq!(append(&p, &c).await.unwrap(), 1);
    let mut want = numbered(&first, 0);
    want.extend(numbered(&c, 1));
    assert_eq!(
        read_all(&p).await,
        want,
        "the failed appends' records are never served"
    );
    assert_eq!(
        cluster.log().len(),
        6,
        "the failed appends' records are in SMQ all the same"
    );
}

#[tokio::test]
async fn a_failed_ledger_write_rolls_the_partition_back() {
    for holds_acks in [false, true] {
        let cluster = Cluster::new();
        let mode = Mode { holds_acks, ..HELD };
        let p = open(&cluster, "g1", mode, Default::default());
        let a = values("a", 2);
        append(&p, &a).await.unwrap();
        cluster.fail_ledger_writes(1);
        let e = append(&p, &values("lost", 3)).await.unwrap_err();
        assert!(retriable(&e), "{e}");
        assert_eq!(p.high_water_mark(), 2);
        let b = values("b", 1);
        assert_eq!(append(&p, &b).await.unwrap(), 2);
        let mut want = numbered(&a, 0);
        want.extend(numbered(&b, 2));
        assert_eq!(read_all(&p).await, want);
        // A restart rebuilds exactly this from the persisted ledger.
        let reopened = open(&cluster, "g2", mode, cluster.recovered());
        assert_eq!(read_all(&reopened).await, want);
    }
}

#[tokio::test]
async fn an_idempotent_retry_gets_its_first_offset_and_a_failed_one_can_be_retried() {
    let cluster = Cluster::new();
    let p = open(&cluster, "g1", HELD, Default::default());
    let send = |vals: Vec<String>, seq: i32| send_at(&p, vals, seq, 0);
    assert_eq!(send(values("a", 2), 0).await.unwrap(), 0);
    assert_eq!(send(values("a", 2), 0).await.unwrap(), 0, "a retry");
    assert_eq!(p.high_water_mark(), 2, "stored once");
    cluster.fail_ledger_writes(1);
    assert!(send(values("b", 1), 2).await.is_err());
    // The failed batch was not stored: its retry is stored now, not taken for a duplicate.
    assert_eq!(send(values("b", 1), 2).await.unwrap(), 2);
    assert_eq!(send(values("b", 1), 2).await.unwrap(), 2);
    assert_eq!(p.high_water_mark(), 3);
    let gap = send(values("c", 1), 9).await.unwrap_err();
    assert!(retriable(&gap), "the missing batch may still come: {gap}");
    let gap = send_at(&p, values("c", 1), 9, GAP_GRACE_MS)
        .await
        .unwrap_err();
    assert!(
        !retriable(&gap),
        "a sequence gap that outlasts the grace is the producer's error: {gap}"
    );
    assert_eq!(p.high_water_mark(), 3);
}

/// Producer 7's batch at sequence `seq` (epoch 0), appended at `now_ms`.
async fn send_at(p: &Log, vals: Vec<String>, seq: i32, now_ms: i64) -> Result<i64, GatewayError> {
    p.append(
        &[batch(&vals, Some((7, 0, seq)))],
        TimestampType::CreateTime,
        now_ms,
    )
    .await
    .map(|a| a.base_offset)
}

#[tokio::test]
async fn a_batch_sent_after_failed_ones_is_retried_after_them_not_refused_for_good() {
    // A producer has three batches in flight; the first two fail (their SMQ stream broke) and
    // the third arrives after the partition rolled back. It skips their sequences: answered
    // retriably, so the producer sends all three again in order, each stored once. (Answered
    // out of order, librdkafka would number its records again under a new producer epoch,
    // storing twice those another gateway had stored without acknowledging them.)
    let cluster = Cluster::new();
    let p = open(&cluster, "g1", HELD, Default::default());
    assert_eq!(send_at(&p, values("a", 1), 0, 0).await.unwrap(), 0);
    cluster.flush();
    p.keep_durable().await;
    cluster.hold_acks(true);
    let begin = |vals: Vec<String>, seq: i32| {
        let p = p.clone();
        async move {
            p.begin_append(
                &[batch(&vals, Some((7, 0, seq)))],
                TimestampType::CreateTime,
                0,
            )
            .await
        }
    };
    let b = begin(values("b", 2), 1).await.unwrap();
    let c = begin(values("c", 1), 3).await.unwrap();
    cluster.break_streams();
    cluster.hold_acks(false);
    assert!(b.finish().await.is_err() && c.finish().await.is_err());
    let e = send_at(&p, values("d", 1), 4, 0).await.unwrap_err();
    assert!(retriable(&e), "{e}");
    assert_eq!(send_at(&p, values("b", 2), 1, 100).await.unwrap(), 1);
    assert_eq!(send_at(&p, values("c", 1), 3, 100).await.unwrap(), 3);
    assert_eq!(send_at(&p, values("d", 1), 4, 100).await.unwrap(), 4);
    assert_eq!(
        send_at(&p, values("d", 1), 4, 100).await.unwrap(),
        4,
        "a retry"
    );
    let mut want = numbered(&values("a", 1), 0);
    want.extend(numbered(&values("b", 2), 1));
    want.extend(numbered(&values("c", 1), 3));
    want.extend(numbered(&values("d", 1), 4));
    assert_eq!(read_all(&p).await, want);
}

#[tokio::test]
async fn held_records_lost_in_a_broker_crash_are_published_again() {
    let cluster = Cluster::new();
    let p = open(&cluster, "g1", HELD, Default::default());
    let a = values("a", 2);
    append(&p, &a).await.unwrap();
    // Written to disk, but SMQ's offset counter was not persisted: after the crash it hands
    // offsets 0 and 1 out again, so the log holds two records at each.
    cluster.flush_records_only();
    let b = values("b", 3);
    append(&p, &b).await.unwrap();
    assert!(p.held_bytes() > 0);
    cluster.crash();
    // The next produce publishes them again before its own ledger entry is written.
    let c = values("c", 1);
    assert_eq!(append(&p, &c).await.unwrap(), 5);
    let mut want = numbered(&a, 0);
    want.extend(numbered(&b, 2));
    want.extend(numbered(&c, 5));
    assert_eq!(read_all(&p).await, want);
    let smq: Vec<i64> = cluster.log().iter().map(|r| r.offset).collect();
    assert_eq!(smq, [0, 1, 0, 1, 2, 3], "SMQ offsets 0 and 1 stored twice");
    // Once SMQ has written everything, nothing is held, and a restart reads the same.
    cluster.flush();
    p.keep_durable().await;
    assert_eq!(p.held_bytes(), 0);
    let reopened = open(&cluster, "g2", HELD, cluster.recovered());
    assert_eq!(read_all(&reopened).await, want);
    // An idle partition does not wait for a produce: the periodic check publishes again.
    let d = values("d", 2);
    append(&p, &d).await.unwrap();
    cluster.crash();
    p.keep_durable().await;
    want.extend(numbered(&d, 6));
    assert_eq!(read_all(&p).await, want);
}

#[tokio::test(start_paused = true)]
async fn a_lapsed_lock_is_taken_over_and_the_ledger_continues() {
    let cluster = Cluster::new();
    let g1 = open(&cluster, "g1", HELD, Default::default());
    let a = values("a", 3);
    append(&g1, &a).await.unwrap();
    cluster.flush();
    // A second gateway (started earlier, so with an older view of the ledger) waits for the
    // first's lock; g1 then dies without releasing it.
    let g2 = open(&cluster, "g2", HELD, Default::default());
    let e = append(&g2, &values("x", 1)).await.unwrap_err();
    assert!(matches!(e, GatewayError::NotLeader), "{e}");
    assert!(retriable(&e));
    tokio::time::advance(LOCK_TTL + std::time::Duration::from_secs(1)).await;
    let b = values("b", 2);
    assert_eq!(append(&g2, &b).await.unwrap(), 3, "continues g1's ledger");
    assert!(g2.is_writer());
    let mut want = numbered(&a, 0);
    want.extend(numbered(&b, 3));
    assert_eq!(read_all(&g2).await, want);
    // g1 comes back: its lock is gone and it must not write.
    let e = append(&g1, &values("stale", 1)).await.unwrap_err();
    assert!(matches!(e, GatewayError::NotLeader), "{e}");
    assert!(!g1.is_writer());
    assert_eq!(g2.high_water_mark(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_clean_close_hands_the_partition_over_at_once() {
    let cluster = Cluster::new();
    let g1 = open(&cluster, "g1", HELD, Default::default());
    let a = values("a", 2);
    append(&g1, &a).await.unwrap();
    g1.close().await;
    let g2 = open(&cluster, "g2", HELD, Default::default());
    let b = values("b", 1);
    assert_eq!(append(&g2, &b).await.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn every_holding_has_a_higher_leader_epoch_and_older_ones_are_fenced() {
    let cluster = Cluster::new();
    let g1 = open(&cluster, "g1", HELD, Default::default());
    g1.claim().await.unwrap();
    let e1 = g1.leader_epoch();
    assert!(e1 > 0);
    assert!(
        g1.check_leader_epoch(-1).is_ok(),
        "no epoch given: not checked"
    );
    assert!(
        g1.check_leader_epoch(0).is_ok(),
        "what Metadata said before the takeover"
    );
    assert!(g1.check_leader_epoch(e1).is_ok());
    let e = g1.check_leader_epoch(e1 + 1).unwrap_err();
    assert_eq!(e.kafka_code(), ResponseError::UnknownLeaderEpoch, "{e}");
    // g1 holds the partition without writing a ledger entry, then hands it over: no trace of
    // its epoch is left in SMQ, only what it published (here 5 more than it held).
    assert!(g1.hand_over().await);
    let g2 = open(&cluster, "g2", HELD, Default::default());
    g2.raise_epoch_floor(e1 + 5);
    append(&g2, &values("a", 1)).await.unwrap();
    let e2 = g2.leader_epoch();
    assert!(e2 > e1 + 5, "epoch {e2} after a published {}", e1 + 5);
    let e = g2.check_leader_epoch(e1).unwrap_err();
    assert_eq!(e.kafka_code(), ResponseError::FencedLeaderEpoch, "{e}");
    assert!(g2.check_leader_epoch(e1 + 5).is_ok());
    assert!(g2.check_leader_epoch(e2).is_ok());
    // A third holder finds g2's epoch in the ledger and goes above it.
    g2.close().await;
    let g3 = open(&cluster, "g3", HELD, Default::default());
    append(&g3, &values("b", 1)).await.unwrap();
    assert!(g3.leader_epoch() > e2);
    assert_eq!(read_all(&g3).await.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_epoch_that_left_no_trace_is_still_reached_by_the_next_holding() {
    let cluster = Cluster::new();
    let g1 = open(&cluster, "g1", HELD, Default::default());
    // g1 takes the partition above an epoch another gateway published, writes nothing and
    // dies; the file that published it is gone too (forgotten after an hour). A client holds
    // `seen` from Metadata. The next process opens the partition at the ledger's epoch, behind
    // the client, until it takes the partition (once g1's lock expired).
    g1.raise_epoch_floor(5);
    g1.claim().await.unwrap();
    let seen = g1.leader_epoch();
    assert!(seen > 5);
    drop(g1);
    let g2 = open(&cluster, "g2", HELD, Default::default());
    let e = g2.check_leader_epoch(seen).unwrap_err();
    assert_eq!(e.kafka_code(), ResponseError::UnknownLeaderEpoch, "{e}");
    tokio::time::advance(LOCK_TTL + std::time::Duration::from_secs(1)).await;
    g2.claim().await.unwrap();
    assert!(g2.leader_epoch() >= seen);
    assert!(g2.check_leader_epoch(seen).is_ok());
}

/// One step of a generated history.
#[derive(Debug, Clone)]
enum Op {
    /// A produce request of this many records.
    Append(usize),
    /// Several produce requests pipelined; the stream breaks before any is acknowledged when
    /// the flag is set.
    Pipelined(Vec<usize>, bool),
    FailLedgerWrite,
    Flush,
    FlushRecordsOnly,
    Crash,
    KeepDurable,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..5).prop_map(Op::Append),
        2 => (prop::collection::vec(1usize..4, 1..4), any::<bool>())
            .prop_map(|(v, b)| Op::Pipelined(v, b)),
        1 => Just(Op::FailLedgerWrite),
        1 => Just(Op::Flush),
        1 => Just(Op::FlushRecordsOnly),
        1 => Just(Op::Crash),
        1 => Just(Op::KeepDurable),
    ]
}

/// Runs a history and checks after every step that what was acknowledged is exactly what is
/// read: every offset once, dense from 0, each with the record acknowledged for it.
async fn run_history(ops: Vec<Op>, format: StorageFormat, log_files: bool) {
    let cluster = Cluster::new();
    let mode = Mode {
        holds_acks: true,
        log_files,
        format,
    };
    let p = open(&cluster, "g1", mode, Default::default());
    let mut acked: Vec<(i64, String)> = Vec::new();
    let mut n = 0usize;
    let mut fresh = |k: usize| {
        n += 1;
        values(&format!("r{n}"), k)
    };
    for op in ops {
        match op {
            Op::Append(k) => {
                let vals = fresh(k);
                if let Ok(base) = append(&p, &vals).await {
                    assert_eq!(base, acked.len() as i64, "offsets dense, none given twice");
                    acked.extend(numbered(&vals, base));
                }
            }
            Op::Pipelined(sizes, broken) => {
                cluster.hold_acks(true);
                let mut tickets = Vec::new();
                for k in sizes {
                    let vals = fresh(k);
                    if let Ok(t) = p
                        .begin_append(&[batch(&vals, None)], TimestampType::CreateTime, 0)
                        .await
                    {
                        tickets.push((t, vals));
                    }
                }
                if broken {
                    cluster.break_streams();
                }
                cluster.hold_acks(false);
                cluster.release_acks();
                for (t, vals) in tickets {
                    match t.finish().await {
                        Ok(a) => {
                            assert!(!broken, "acknowledged over a broken stream");
                            assert_eq!(a.base_offset, acked.len() as i64);
                            acked.extend(numbered(&vals, a.base_offset));
                        }
                        Err(e) => assert!(retriable(&e), "{e}"),
                    }
                }
            }
            Op::FailLedgerWrite => cluster.fail_ledger_writes(1),
            Op::Flush => cluster.flush(),
            Op::FlushRecordsOnly => cluster.flush_records_only(),
            Op::Crash => cluster.crash(),
            Op::KeepDurable => p.keep_durable().await,
        }
        cluster.fail_ledger_writes(0);
        // Held records lost in a crash are published again before anything is read.
        p.keep_durable().await;
        assert_eq!(p.high_water_mark(), acked.len() as i64);
        assert_eq!(read_all(&p).await, acked);
    }
    // A restart after SMQ has written everything serves the same records.
    cluster.flush();
    p.keep_durable().await;
    let reopened = open(&cluster, "g2", mode, cluster.recovered());
    assert_eq!(read_all(&reopened).await, acked);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn acknowledged_records_read_back_at_their_offsets_whatever_smq_does(
        ops in prop::collection::vec(op(), 1..25),
        batched in any::<bool>(),
        log_files in any::<bool>(),
    ) {
        let format = if batched { StorageFormat::Batch } else { StorageFormat::Record };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        rt.block_on(run_history(ops, format, log_files));
    }
}

#[tokio::test(start_paused = true)]
async fn an_idempotent_retry_after_a_restart_or_a_takeover_is_not_stored_twice() {
    let cluster = Cluster::new();
    let g1 = open(&cluster, "g1", HELD, Default::default());
    let send = |p: Log, seq: i32| async move {
        p.append(
            &[batch(&values("a", 2), Some((7, 0, seq)))],
            TimestampType::CreateTime,
            0,
        )
        .await
        .map(|a| a.base_offset)
    };
    assert_eq!(send(g1.clone(), 0).await.unwrap(), 0);
    assert_eq!(send(g1.clone(), 2).await.unwrap(), 2);
    cluster.flush();
    g1.close().await;
    // A restart recovers the producer with the ledger.
    let restarted = open(&cluster, "g1", HELD, cluster.recovered());
    assert_eq!(send(restarted.clone(), 2).await.unwrap(), 2, "a retry");
    assert_eq!(restarted.high_water_mark(), 4, "stored once");
    assert_eq!(send(restarted.clone(), 4).await.unwrap(), 4);
    // A gateway that opened the partition before any of this takes it over once the lock lapses.
    let g2 = open(&cluster, "g2", HELD, Default::default());
    tokio::time::advance(LOCK_TTL + std::time::Duration::from_secs(1)).await;
    assert_eq!(
        send(g2.clone(), 4).await.unwrap(),
        4,
        "a retry after a takeover"
    );
    assert_eq!(g2.high_water_mark(), 6);
}

#[tokio::test]
async fn a_write_ahead_log_that_does_not_continue_the_ledger_refuses_writes_until_discarded() {
    use crate::storage::wal::PartitionWal;
    let dir = std::env::temp_dir().join(format!(
        "kgw-refuse-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    // An earlier process acknowledged offsets 5..8 and logged them, but the ledger in SMQ lost
    // the entries of 0..5 (and of 5..8).
    {
        let (wal, _) = PartitionWal::open(dir.clone(), 1).unwrap();
        wal.append(
            1,
            5,
            &[(1, 0), (1, 0), (1, 0)],
            &[b"x".to_vec(), b"y".to_vec(), b"z".to_vec()],
        )
        .unwrap();
    }
    let cluster = Cluster::new();
    let recovered = PartitionWal::open(dir.clone(), 1).unwrap();
    assert_eq!(recovered.1.len(), 1);
    let p: Log = Arc::new(PartitionLog::new(
        cluster.gateway("g1", true, false),
        Placement {
            smq_topic: smq_client::topic("kafka", "t"),
            index: 0,
            generation: 1,
            format: StorageFormat::Record,
            tail_cache_bytes: 1 << 20,
            unflushed: Arc::new(UnflushedBudget::new(0)),
        },
        Default::default(),
        Some(recovered),
    ));
    let e = append(&p, &values("a", 1)).await.unwrap_err();
    assert!(matches!(e, GatewayError::WritesRefused(_)), "{e}");
    assert!(e.to_string().contains("discard-wal"), "{e}");
    let again = append(&p, &values("a", 1)).await.unwrap_err();
    assert!(matches!(again, GatewayError::WritesRefused(_)));
    assert!(p.writes_refused().is_some());
    assert_eq!(p.high_water_mark(), 0, "no offset handed out");
    assert!(cluster.log().is_empty(), "nothing published");
    // The operator drops the log's records: writes resume at the ledger's end, and a restart
    // does not find the records again.
    assert_eq!(p.discard_recovered().await, 3);
    assert!(p.writes_refused().is_none());
    assert_eq!(append(&p, &values("a", 1)).await.unwrap(), 0);
    drop(p);
    let (_wal, left) = PartitionWal::open(dir.clone(), 1).unwrap();
    let offsets: Vec<i64> = left.iter().map(|a| a.kafka_offset).collect();
    assert_eq!(
        offsets,
        [0],
        "only the new append, not yet written by SMQ, is in the log"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn policy(retention_ms: i64, retention_bytes: i64, segment_ms: i64) -> RetentionPolicy {
    RetentionPolicy {
        retention_ms,
        retention_bytes,
        segment_ms,
        segment_bytes: -1,
    }
}

/// Three appends of 3, 2 and 1 records (timestamps about 1 s after 1970), each flushed into a
/// log file of its own begun 2 s after the previous.
async fn three_files(cluster: &Cluster) -> (Log, i64) {
    let p = open(cluster, "g1", HELD, Default::default());
    let t0: i64 = 1_800_000_000_000_000_000;
    for (i, (prefix, n)) in [("a", 3), ("b", 2), ("c", 1)].into_iter().enumerate() {
        append(&p, &values(prefix, n)).await.unwrap();
        cluster.flush_at(t0 + i as i64 * 2_000_000_000);
    }
    (p, t0)
}

#[tokio::test]
async fn retention_moves_the_log_start_over_closed_segments_and_deletes_their_files() {
    let cluster = Cluster::new();
    let (p, t0) = three_files(&cluster).await;
    let now_ms = t0 / 1_000_000 + 10_000;
    // Segments that close only after an hour: nothing goes, however old the records.
    let kept = p
        .enforce_retention(policy(1_000, -1, 3_600_000), now_ms)
        .await
        .unwrap();
    assert_eq!((kept.log_start, kept.files_deleted), (0, 0));
    // Closed at once: every file but the newest goes, and the log start is its first record.
    let r = p
        .enforce_retention(policy(1_000, -1, 0), now_ms)
        .await
        .unwrap();
    assert_eq!((r.log_start, r.files_deleted), (5, 2));
    assert_eq!(cluster.deleted_files(), 2);
    assert_eq!(p.log_start(), 5);
    let e = p.read(0, 1 << 20).await.unwrap_err();
    assert!(
        matches!(e, GatewayError::OffsetOutOfRange { start: 5, .. }),
        "{e}"
    );
    assert_eq!(read_all(&p).await, numbered(&values("c", 1), 5));
    // The log start is persisted: a restart keeps it.
    let reopened = open(&cluster, "g2", HELD, cluster.recovered());
    assert_eq!(reopened.log_start(), 5);
    assert_eq!(read_all(&reopened).await, numbered(&values("c", 1), 5));
    // Records stored later continue the offsets.
    assert_eq!(append(&p, &values("d", 1)).await.unwrap(), 6);
}

#[tokio::test]
async fn retention_by_size_keeps_the_newest_bytes_and_by_time_keeps_recent_records() {
    let cluster = Cluster::new();
    let (p, t0) = three_files(&cluster).await;
    let now_ms = t0 / 1_000_000 + 10_000;
    // Recent enough by time (the records' timestamps are after the cutoff): nothing goes.
    let r = p
        .enforce_retention(policy(i64::MAX / 2, -1, 0), now_ms)
        .await;
    assert_eq!(r.unwrap().log_start, 0);
    // By size: the oldest file goes as long as what remains is above the limit.
    let sizes: Vec<u64> = cluster_sizes(&cluster).await;
    let limit = (sizes[1] + sizes[2]) as i64;
    let r = p
        .enforce_retention(policy(-1, limit, 0), now_ms)
        .await
        .unwrap();
    assert_eq!((r.log_start, r.files_deleted), (3, 1));
    assert_eq!(read_all(&p).await[0], (3, "b-0".to_string()));
}

async fn cluster_sizes(cluster: &Cluster) -> Vec<u64> {
    use crate::storage::backend::PartitionBackend;
    cluster
        .gateway("probe", true, false)
        .log_files()
        .await
        .unwrap()
        .iter()
        .map(|f| f.size)
        .collect()
}

#[tokio::test]
async fn delete_records_moves_the_log_start_exactly_and_refuses_past_the_end() {
    let cluster = Cluster::new();
    let (p, _) = three_files(&cluster).await;
    assert_eq!(p.delete_records(4).await.unwrap(), 4);
    assert_eq!(p.log_start(), 4);
    assert_eq!(cluster.deleted_files(), 1, "only the file wholly below 4");
    assert_eq!(read_all(&p).await[0], (4, "b-1".to_string()));
    let e = p.delete_records(7).await.unwrap_err();
    assert!(matches!(e, GatewayError::OffsetOutOfRange { .. }), "{e}");
    assert_eq!(p.delete_records(2).await.unwrap(), 4, "never backwards");
    assert_eq!(
        p.delete_records(-1).await.unwrap(),
        6,
        "-1: the high water mark"
    );
    assert_eq!(p.high_water_mark(), 6);
    let reopened = open(&cluster, "g2", HELD, cluster.recovered());
    assert_eq!(reopened.log_start(), 6);
    assert!(read_all(&reopened).await.is_empty());
}
