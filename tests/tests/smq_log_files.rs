//! Reading a partition's flushed records straight from its log files (`PartitionLogFiles`),
//! against a real SeaweedFS 4.48 cluster: what is read equals what was published, also after
//! the broker was killed and handed out offsets again.

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::{SmqCluster, init_tracing, one_partition_topic};
use smq_client::{DataMessage, PartitionLogFiles, PartitionPublisher};

/// Each record says who it is in its key (as the gateway's records carry their Kafka offset).
fn msg(id: usize) -> DataMessage {
    DataMessage {
        key: format!("id{id}").into_bytes(),
        value: format!("value {id} {}", "x".repeat(id % 50)).into_bytes(),
        ts_ns: 0,
        ctrl: None,
    }
}

/// Where each id was stored, in id order (the gateway's ledger: Kafka offset → SMQ offset; an
/// id published again after a crash has its newest offset). SMQ offsets need not increase.
type Ledger = Vec<(usize, i64)>;

/// Reads the ledger's records from the files as the gateway does: per run of consecutive SMQ
/// offsets, `step` offsets at a time, taking in file order the first record at the expected
/// offset whose key is the expected id and passing over others (an offset handed out again
/// holds an older record first). Stops at the first record not found; a read that stopped at
/// its byte budget is continued.
async fn read_ledger(
    files: &PartitionLogFiles,
    ledger: &Ledger,
    step: usize,
) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ledger.len() {
        let first = ledger[i].1;
        let n = ledger[i..]
            .iter()
            .enumerate()
            .take_while(|(k, (_, o))| *o == first + *k as i64)
            .count()
            .min(step);
        let found = files
            .read(first, n as i64, 1 << 20)
            .await
            .expect("read log files");
        let mut want = ledger[i..i + n].iter().peekable();
        let mut matched = 0;
        for r in &found {
            let Some(&&(id, offset)) = want.peek() else {
                break;
            };
            if r.offset == offset && r.key == format!("id{id}").into_bytes() {
                out.push((id, r.data.clone()));
                want.next();
                matched += 1;
            }
        }
        if matched == 0 {
            // Not there (yet): a reader would go to the broker.
            files.want_newer();
            return out;
        }
        // Fewer than asked for when the byte budget ran out: continue after them.
        i += matched;
    }
    out
}

/// Polls until the files hold every record of the ledger; returns them.
async fn wait_flushed(files: &PartitionLogFiles, ledger: &Ledger) -> Vec<(usize, Vec<u8>)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = read_ledger(files, ledger, usize::MAX).await;
        if got.len() == ledger.len() || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn assert_exactly(got: &[(usize, Vec<u8>)], ids: impl Iterator<Item = usize>) {
    let want: Vec<(usize, Vec<u8>)> = ids.map(|i| (i, msg(i).value)).collect();
    let got_ids: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
    let want_ids: Vec<usize> = want.iter().map(|(i, _)| *i).collect();
    assert_eq!(got_ids, want_ids, "every record once, in order");
    assert_eq!(got, want.as_slice(), "values as published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_records_read_from_the_files_equal_what_was_published() {
    init_tracing();
    let smq = SmqCluster::start();
    let client = smq.client().await;
    let t = one_partition_topic(&client, "files").await;
    let p = PartitionPublisher::new(client.clone(), t.clone(), 0);
    let mut ledger: Ledger = Vec::new();
    for i in 0..300 {
        let ack = p.publish(msg(i)).await.unwrap();
        ledger.push((i, ack.offset));
    }
    let offsets: Vec<i64> = ledger.iter().map(|(_, o)| *o).collect();
    assert_eq!(offsets, (0..300).collect::<Vec<i64>>());
    let files = PartitionLogFiles::new(client.clone(), t.clone(), 0);
    assert_exactly(&wait_flushed(&files, &ledger).await, 0..300);
    // The files hold each offset once, with the published key and value.
    let all = files.read(0, 300, 64 << 20).await.unwrap();
    let offsets: Vec<i64> = all.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..300).collect::<Vec<i64>>());
    for r in &all {
        let m = msg(r.offset as usize);
        assert_eq!((&r.key, &r.data), (&m.key, &m.value));
    }

    // A sequential reader in small steps (continuing where it stopped) gets the same.
    assert_exactly(&read_ledger(&files, &ledger, 7).await, 0..300);
    // A reader starting in the middle, and one asking past the flushed end.
    let mid = files.read(150, 10, 1 << 20).await.unwrap();
    assert_eq!(
        mid.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (150..160).collect::<Vec<_>>()
    );
    assert!(files.read(300, 10, 1 << 20).await.unwrap().is_empty());
    // A byte budget stops early but returns at least one record.
    let small = files.read(0, 300, 1).await.unwrap();
    assert_eq!(small.len(), 1);

    // Records published later, in a new flush, are found once asked for.
    for i in 300..320 {
        let ack = p.publish(msg(i)).await.unwrap();
        ledger.push((i, ack.offset));
    }
    assert_exactly(&wait_flushed(&files, &ledger).await, 0..320);
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_read_from_the_files_after_a_broker_crash_are_complete_and_unique() {
    init_tracing();
    let smq = SmqCluster::start();
    let client = smq.client().await;
    let t = one_partition_topic(&client, "crash").await;
    let files = PartitionLogFiles::new(client.clone(), t.clone(), 0);
    let mut ledger: Ledger = Vec::new();

    // 0..100 flushed (closing the only publisher flushes and unloads the partition at once).
    let p = PartitionPublisher::new(client.clone(), t.clone(), 0);
    for i in 0..100 {
        let ack = p.publish(msg(i)).await.unwrap();
        ledger.push((i, ack.offset));
    }
    p.close().await;
    assert_eq!(wait_flushed(&files, &ledger).await.len(), 100);

    // 100..200 flushed by closing again, then the broker is killed before its offset checkpoint
    // (written every 2 s) catches up, so it hands some of these offsets out again.
    let p = PartitionPublisher::new(client.clone(), t.clone(), 0);
    for i in 100..200 {
        let ack = p.publish(msg(i)).await.unwrap();
        ledger.push((i, ack.offset));
    }
    p.close().await;
    smq.kill_broker();
    smq.start_broker();

    // Whatever the files lack is published again (as the gateway does with records it could
    // not prove written), then new records; an id published again gets its newest offset.
    let client2 = smq.client().await;
    let files2 = PartitionLogFiles::new(client2.clone(), t.clone(), 0);
    let present = read_ledger(&files2, &ledger, usize::MAX).await.len();
    tracing::info!(
        lost = 200 - present,
        "records not in the files after the crash"
    );
    let p = PartitionPublisher::new(client2.clone(), t.clone(), 0);
    for i in present..300 {
        let offset = p.publish_retrying(msg(i)).await;
        match ledger.get_mut(i) {
            Some(e) => e.1 = offset,
            None => ledger.push((i, offset)),
        }
    }
    p.close().await;
    let got = wait_flushed(&files2, &ledger).await;

    let all = files2.read(0, i64::MAX / 2, 64 << 20).await.unwrap();
    let mut by_offset: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &all {
        *by_offset.entry(r.offset).or_default() += 1;
    }
    let repeated = by_offset.values().filter(|n| **n > 1).count();
    tracing::info!(
        repeated,
        records = all.len(),
        "SMQ offsets stored more than once"
    );
    // The scenario did what it is for: the restarted broker stored new records under offsets
    // the files already held.
    assert!(
        repeated > 0,
        "no SMQ offset stored twice ({present} of 200 kept after the crash)"
    );

    // Every id exactly once, in order, with its value.
    assert_exactly(&got, 0..300);
    // The same, read sequentially in steps through a fresh reader.
    let files3 = PartitionLogFiles::new(client2.clone(), t.clone(), 0);
    assert_exactly(&read_ledger(&files3, &ledger, 13).await, 0..300);
}

/// 8 MiB windows of compressible values: the volume server stores such chunks gzipped, and two
/// flushes within one second append two chunks to one file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_windows_of_compressible_records_are_read_back_exactly() {
    init_tracing();
    let smq = SmqCluster::start();
    let client = smq.client().await;
    let t = one_partition_topic(&client, "windows").await;
    let p = PartitionPublisher::new(client.clone(), t.clone(), 0);
    let big = |i: usize| DataMessage {
        key: format!("id{i}").into_bytes(),
        value: format!("{i:08} {}", "x".repeat(1000)).into_bytes(),
        ts_ns: 0,
        ctrl: None,
    };
    let n = 20_000usize;
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        pending.push(p.send(big(i)).await.unwrap());
    }
    let mut ledger: Ledger = Vec::with_capacity(n);
    for (i, a) in pending.into_iter().enumerate() {
        ledger.push((i, a.wait().await.unwrap().offset));
    }
    let files = PartitionLogFiles::new(client.clone(), t.clone(), 0);
    let got = wait_flushed(&files, &ledger).await;
    assert_eq!(got.len(), n, "every record found");
    // A fresh reader asking for the first records only: the file holding offset 0 carries a
    // later flush's offset_min, which must not hide it.
    let fresh = PartitionLogFiles::new(client.clone(), t.clone(), 0);
    let first = fresh.read(0, 10, 1 << 20).await.unwrap();
    assert_eq!(
        first.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    for (id, value) in &got {
        assert_eq!(value, &big(*id).value, "id {id}");
    }
    // Sequentially, as a consumer reads, and from the middle of a window.
    let stepped = read_ledger(&files, &ledger, 997).await;
    assert_eq!(stepped, got);
    let mid = files.read(12_345, 10, 1 << 20).await.unwrap();
    assert_eq!(
        mid.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (12_345..12_355).collect::<Vec<_>>()
    );
    p.close().await;
}

trait PublishRetrying {
    async fn publish_retrying(&self, m: DataMessage) -> i64;
}

impl PublishRetrying for PartitionPublisher {
    /// Publishes until acknowledged (the restarted broker may refuse for a while).
    async fn publish_retrying(&self, m: DataMessage) -> i64 {
        for _ in 0..100 {
            match self.publish(m.clone()).await {
                Ok(a) => return a.offset,
                Err(e) => {
                    tracing::info!(error = %e, "publish after restart failed; retrying");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        panic!("publish kept failing after the broker restart");
    }
}

/// Polls `newest_written` (with a tail of `tail` bytes) until the newest log file ends with SMQ
/// offset `offset`; None after 30 s.
async fn wait_last(
    files: &PartitionLogFiles,
    tail: u64,
    offset: i64,
) -> Option<smq_client::FlushedRecord> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = files
            .newest_written(tail, |r| r.offset == offset)
            .await
            .expect("newest_written");
        if r.is_some() || tokio::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What proves held records written (the gateway's durable acks): the record at the end of the
/// newest log file is the last one the broker wrote, found from the file's tail alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_written_record_ends_the_newest_log_file() {
    init_tracing();
    let smq = SmqCluster::start();
    let client = smq.client().await;
    let t = one_partition_topic(&client, "lastrec").await;
    let p = PartitionPublisher::new(client.clone(), t.clone(), 0);
    let files = PartitionLogFiles::new(client.clone(), t.clone(), 0);
    for i in 0..50 {
        p.publish(msg(i)).await.unwrap();
    }
    let r = wait_last(&files, 4096, 49)
        .await
        .expect("offset 49 written within 30 s");
    let m = msg(49);
    assert_eq!((&r.key, &r.data), (&m.key, &m.value));
    // Nothing past what was published, and a caller that does not recognise the record (it
    // may be another stream's) gets nothing.
    assert_eq!(
        files.newest_written(4096, |r| r.offset > 49).await.unwrap(),
        None
    );

    // A later flush goes to a newer file or a new chunk of the same one: found the same way,
    // with a tail just long enough for the record.
    for i in 50..60 {
        p.publish(msg(i)).await.unwrap();
    }
    let m = msg(59);
    let tail = (m.value.len() + m.key.len() + 64) as u64;
    let r = wait_last(&files, tail, 59)
        .await
        .expect("offset 59 written within 30 s");
    assert_eq!((&r.key, &r.data), (&m.key, &m.value));
    p.close().await;
}
