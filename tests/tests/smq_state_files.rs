//! What the gateway's state checkpoints rest on, against a real SeaweedFS 4.48 cluster: small
//! files in the filer, reading a partition from a timestamp on, and removing a partition's old
//! log files while its broker serves it.

use std::time::Duration;

use integration_tests::{SmqCluster, init_tracing, one_partition_topic, publish_after_restart};
use smq_client::{DataMessage, PartitionPublisher};

fn msg(i: usize) -> DataMessage {
    DataMessage {
        key: format!("k{i}").into_bytes(),
        value: format!("v{i}").into_bytes(),
        ts_ns: 0,
        ctrl: None,
    }
}

/// The start times the names of a partition directory's log files give, oldest first.
async fn log_file_starts(client: &smq_client::SmqClient, dir: &str) -> Vec<i64> {
    let mut starts: Vec<i64> = client
        .list_dir(dir)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| smq_client::log_file_start_ns(&e.name))
        .collect();
    starts.sort_unstable();
    starts
}

async fn read_n(sub: &mut smq_client::Subscription, n: usize) -> Vec<DataMessage> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .expect("a record within 20 s")
            .expect("subscription")
            .expect("not ended");
        out.push(m);
    }
    out
}

#[tokio::test]
async fn state_files_and_reading_from_a_time_after_old_log_files_are_removed() {
    init_tracing();
    let cluster = SmqCluster::start();
    let client = cluster.client().await;

    // Small files, inline.
    client
        .put_file("/kafka-test/ckpt", "a", b"hello".to_vec())
        .await
        .unwrap();
    client
        .put_file("/kafka-test/ckpt", "b", vec![7u8; 3 << 20])
        .await
        .unwrap();
    assert_eq!(
        client.get_file("/kafka-test/ckpt", "a").await.unwrap(),
        Some(b"hello".to_vec())
    );
    assert_eq!(
        client
            .get_file("/kafka-test/ckpt", "b")
            .await
            .unwrap()
            .map(|v| v.len()),
        Some(3 << 20)
    );
    assert_eq!(
        client.get_file("/kafka-test/ckpt", "c").await.unwrap(),
        None
    );
    let names: Vec<String> = client
        .list_dir("/kafka-test/ckpt")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    client.delete_path("/kafka-test/ckpt", "a").await.unwrap();
    assert_eq!(
        client.get_file("/kafka-test/ckpt", "a").await.unwrap(),
        None
    );
    client.delete_path("/kafka-test/ckpt", "a").await.unwrap();
    assert!(
        client
            .list_dir("/kafka-test/nothing")
            .await
            .unwrap()
            .is_empty()
    );

    // Records carry the broker's timestamps, and a subscription can start at one.
    let topic = one_partition_topic(&client, "state").await;
    let p = PartitionPublisher::new(client.clone(), topic.clone(), 0);
    for i in 0..20 {
        p.publish(msg(i)).await.unwrap();
    }
    let mut sub = client.subscribe_exact(&topic, 0, 0, "exp").await.unwrap();
    let first = read_n(&mut sub, 20).await;
    drop(sub);
    let ts: Vec<i64> = first.iter().map(|m| m.ts_ns).collect();
    assert!(ts.windows(2).all(|w| w[1] > w[0]), "increasing: {ts:?}");
    let mut from_ten = client
        .subscribe_from_time(&topic, 0, ts[10], "exp")
        .await
        .unwrap();
    let got = read_n(&mut from_ten, 10).await;
    assert_eq!(got[0].key, b"k10");
    drop(from_ten);

    // Old log files removed under a live broker.
    tokio::time::sleep(Duration::from_secs(7)).await;
    for i in 20..40 {
        p.publish(msg(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(7)).await;
    let topic_dir = format!("/topics/{}/{}", topic.namespace, topic.name);
    let gens = client.list_dir(&topic_dir).await.unwrap();
    let gen_dir = gens.iter().find(|e| e.is_directory).expect("a generation");
    let gen_path = format!("{topic_dir}/{}", gen_dir.name);
    let parts = client.list_dir(&gen_path).await.unwrap();
    let part_path = format!(
        "{gen_path}/{}",
        parts
            .iter()
            .find(|e| e.is_directory)
            .expect("a partition")
            .name
    );
    let files = client.list_dir(&part_path).await.unwrap();
    let logs: Vec<_> = files
        .iter()
        .filter(|e| !e.is_directory && !e.name.contains('.'))
        .collect();
    assert!(logs.len() >= 2, "two log files: {files:?}");
    client.delete_path(&part_path, &logs[0].name).await.unwrap();
    let mut sub = client.subscribe_exact(&topic, 0, 0, "exp").await.unwrap();
    let first_left = read_n(&mut sub, 1).await;
    assert_eq!(
        first_left[0].key, b"k20",
        "the removed file's records are gone"
    );
    drop(sub);
    for i in 40..45 {
        p.publish(msg(i)).await.unwrap();
    }
    let mut late = client
        .subscribe_from_time(&topic, 0, ts[19] + 1, "exp")
        .await
        .unwrap();
    let got = read_n(&mut late, 25).await;
    assert_eq!(got[0].key, b"k20");
    assert_eq!(got[24].key, b"k44");
    drop(late);

    // A file holds one broker buffer, up to a flush interval of records: its name is the second
    // it began. Read from disk, a subscription from a time inside a file skips that whole file
    // (SMQ 4.48 compares file names with the requested time; checked after the restart below),
    // which is why `subscribe_after` starts its reads at a file's own start and drops what
    // comes before the time it wants (the next test).
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut spread = Vec::new();
    for i in 100..112 {
        p.publish(msg(i)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        spread.push(i);
    }
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut sub = client.subscribe_exact(&topic, 0, 45, "exp").await.unwrap();
    let flushed = read_n(&mut sub, spread.len()).await;
    drop(sub);
    // The file holding k100 and the next one, by their names.
    let starts = log_file_starts(&client, &part_path).await;
    let file_start = *starts
        .iter()
        .filter(|t| **t <= flushed[0].ts_ns)
        .max()
        .expect("a file holding k100");
    let next_start = starts.iter().copied().find(|t| *t > file_start);
    let inside = flushed
        .iter()
        .find(|m| m.ts_ns >= file_start + 1_000_000_000 && next_start.is_none_or(|n| m.ts_ns < n));
    let mut from_file = client
        .subscribe_from_time(&topic, 0, file_start, "exp")
        .await
        .unwrap();
    let got = read_n(&mut from_file, spread.len()).await;
    assert_eq!(got[0].key, b"k100");
    drop(from_file);

    // And after a broker restart (once SMQ wrote what it acknowledged: it does not at shutdown).
    tokio::time::sleep(Duration::from_secs(7)).await;
    cluster.stop_broker();
    cluster.start_broker();
    let p2 = PartitionPublisher::new(client.clone(), topic.clone(), 0);
    let ack = publish_after_restart(&p2, msg(45)).await;
    assert_eq!(
        ack.offset, 57,
        "offsets continue after the removal and the restart"
    );
    let mut late = client
        .subscribe_from_time(&topic, 0, ts[19] + 1, "exp")
        .await
        .unwrap();
    let got = read_n(&mut late, 38).await;
    assert_eq!(got[0].key, b"k20");
    assert_eq!(got[37].key, b"k45");
    let late = inside.expect("a record stored a second or more after its file began");
    // A record of that file stored in a later second than the file's name, read from disk
    // (the restart emptied the broker's memory).
    let mut sub = client
        .subscribe_from_time(&topic, 0, late.ts_ns, "exp")
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), sub.next()).await;
    let first_key = match first {
        Ok(Ok(Some(m))) => Some(m.key),
        _ => None,
    };
    assert_ne!(
        first_key.as_deref(),
        Some(late.key.as_slice()),
        "SMQ 4.48 was expected to skip the file holding the requested time"
    );
    drop(sub);
}

/// The broker timestamps and keys of every record of partition 0, read from the start.
async fn read_all(
    client: &smq_client::SmqClient,
    topic: &smq_client::Topic,
    n: usize,
) -> Vec<(i64, Vec<u8>)> {
    let mut sub = client.subscribe_exact(topic, 0, 0, "exp").await.unwrap();
    read_n(&mut sub, n)
        .await
        .into_iter()
        .map(|m| (m.ts_ns, m.key))
        .collect()
}

/// The first record a subscription yields, within 20 s.
async fn first_of(sub: smq_client::SmqResult<smq_client::Subscription>) -> (i64, Vec<u8>) {
    let m = read_n(&mut sub.unwrap(), 1).await.remove(0);
    (m.ts_ns, m.key)
}

#[tokio::test]
async fn a_read_after_a_time_in_a_log_files_first_second_misses_nothing() {
    init_tracing();
    let cluster = SmqCluster::start();
    let client = cluster.client().await;
    let topic = one_partition_topic(&client, "boundary").await;
    let dir = client.partition_dir(&topic, 0).await.unwrap();
    let p = PartitionPublisher::new(client.clone(), topic.clone(), 0);
    // A log file's name is the second its broker buffer began; the buffer begins at a flush
    // (every 5 s here), at some fraction of that second. Records stored in that second before
    // it are still in the previous file: the hazard. Publish across flushes until one such
    // record is on disk (the first boundary almost always has some: a buffer that begins within
    // 5 ms of a whole second leaves none).
    let mut published = 0;
    let mut hazard = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while hazard.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no record stored in a log file's first second before its buffer began, in 60 s"
        );
        for _ in 0..200 {
            p.publish(msg(published)).await.unwrap();
            published += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let starts = log_file_starts(&client, &dir).await;
        if starts.len() < 2 {
            continue;
        }
        let all = read_all(&client, &topic, published).await;
        // Each file but the oldest begins at a boundary.
        for s in &starts[1..] {
            // Where SMQ's own read from the file's name begins: the buffer's first record.
            let (began, _) = first_of(client.subscribe_from_time(&topic, 0, *s, "exp").await).await;
            hazard = all
                .iter()
                .filter(|(ts, _)| *ts >= *s && *ts < began)
                .cloned()
                .collect();
            if !hazard.is_empty() {
                let next = all.iter().find(|(ts, _)| *ts >= began).cloned();
                hazard.extend(next);
                break;
            }
        }
    }
    // SMQ's read from a time in that second skips those records...
    let first = hazard[0].clone();
    let naive = first_of(client.subscribe_from_time(&topic, 0, first.0, "exp").await).await;
    assert_ne!(
        naive.1, first.1,
        "SMQ 4.48 was expected to skip to the next buffer"
    );
    // ...and a read after a time finds the record stored next, wherever it is.
    // (Every tenth record and the last two: each read is a subscription.)
    let n = hazard.len();
    for (i, rec) in hazard
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 == 0 || i + 2 >= n)
    {
        let got = first_of(client.subscribe_after(&topic, 0, rec.0 - 1, "exp").await).await;
        assert_eq!(
            got, *rec,
            "read after record {i} of the boundary, less 1 ns"
        );
        let got = first_of(client.subscribe_after(&topic, 0, rec.0, "exp").await).await;
        if let Some(next) = hazard.get(i + 1) {
            assert_eq!(got, *next, "read after record {i} of the boundary");
        }
    }
}
