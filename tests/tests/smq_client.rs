//! The SMQ client against a real SeaweedFS 4.48 cluster started by `dev/smq`.

use std::time::Duration;

use bytes::Bytes;
use integration_tests::{SmqCluster, init_tracing, publish_after_restart};
use smq_client::{
    DataMessage, PartitionPublisher, SmqClient, SmqConfig, SmqError, TopicSpec, topic,
};

fn spec(name: &str, partitions: i32) -> TopicSpec {
    TopicSpec {
        topic: topic("test", name),
        partitions,
        record_type: None,
        retention_seconds: None,
    }
}

fn record(i: usize) -> DataMessage {
    DataMessage {
        key: Bytes::from(format!("key-{i}")).to_vec(),
        value: format!("value-{i}-{}", "x".repeat(i % 97)).into_bytes(),
        ts_ns: 0,
        ctrl: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_partitions_get_the_ring_ranges_and_keep_their_count() {
    init_tracing();
    let smq = SmqCluster::start();
    let client = smq.client().await;

    let layout = client.ensure_topic(&spec("ranges", 3)).await.unwrap();
    let ranges: Vec<_> = layout
        .partitions
        .iter()
        .map(|p| {
            (
                p.index,
                p.partition.ring_size,
                p.partition.range_start,
                p.partition.range_stop,
            )
        })
        .collect();
    assert_eq!(
        ranges,
        [
            (0, 2520, 0, 840),
            (1, 2520, 840, 1680),
            (2, 2520, 1680, 2520)
        ]
    );
    for p in &layout.partitions {
        assert_eq!(p.leader, smq.broker, "single broker leads every partition");
        assert!(p.partition.unix_time_ns > 0, "the generation is reported");
    }

    // Same count again: idempotent, same generation.
    let again = client.ensure_topic(&spec("ranges", 3)).await.unwrap();
    assert_eq!(again.partitions, layout.partitions);

    // A different count would start a new, empty generation: refused, topic unchanged.
    let err = client.ensure_topic(&spec("ranges", 4)).await.unwrap_err();
    assert!(
        matches!(
            err,
            SmqError::PartitionCountMismatch {
                existing: 3,
                requested: 4,
                ..
            }
        ),
        "{err}"
    );
    client.invalidate(&topic("test", "ranges"));
    let after = client.lookup(&topic("test", "ranges")).await.unwrap();
    assert_eq!(after.partitions, layout.partitions);

    assert!(client.topic_exists(&topic("test", "ranges")).await.unwrap());
    let listed = client.list_topics("test").await.unwrap();
    assert!(listed.iter().any(|t| t.name == "ranges"), "{listed:?}");
    let cfg = client
        .topic_configuration(&topic("test", "ranges"))
        .await
        .unwrap();
    assert_eq!(cfg.partition_count, 3);
    assert!(matches!(
        client
            .topic_configuration(&topic("test", "never-created"))
            .await,
        Err(SmqError::TopicNotFound(_))
    ));
}

#[tokio::test]
async fn invalid_partition_counts_are_refused_before_reaching_smq() {
    // Nothing listens on this port: an error other than InvalidPartitionCount would mean a call
    // was attempted.
    let client = SmqClient::new(SmqConfig::with_broker("127.0.0.1:1"));
    for n in [0, -3, 2521] {
        let err = client.ensure_topic(&spec("bad", n)).await.unwrap_err();
        assert!(
            matches!(err, SmqError::InvalidPartitionCount(c) if c == n),
            "{n}: {err}"
        );
        assert!(
            err.to_string().contains("1..=2520"),
            "the message names the range: {err}"
        );
        assert!(!err.is_retriable());
        let err = client.configure_topic(&spec("bad", n)).await.unwrap_err();
        assert!(matches!(err, SmqError::InvalidPartitionCount(_)), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_pipelined_records_read_back_exactly() {
    init_tracing();
    let smq = SmqCluster::start();
    let client = smq.client().await;
    let t = topic("test", "pipelined");
    client.ensure_topic(&spec("pipelined", 1)).await.unwrap();

    const N: usize = 10_000;
    let publisher = PartitionPublisher::new(client.clone(), t.clone(), 0);
    let mut acks = Vec::with_capacity(N);
    for i in 0..N {
        acks.push(publisher.send(record(i)).await.unwrap());
    }
    let mut offsets = Vec::with_capacity(N);
    for a in acks {
        offsets.push(a.wait().await.unwrap().offset);
    }
    assert_eq!(
        offsets,
        (0..N as i64).collect::<Vec<_>>(),
        "dense offsets in send order"
    );
    assert_eq!(publisher.streams_opened(), 1, "one long-lived stream");
    let info = client.range_info(&t, 0).await.unwrap();
    assert_eq!(info.high_water_mark, N as i64);

    // FetchMessage, page by page.
    let mut got = Vec::with_capacity(N);
    let mut next = 0i64;
    while got.len() < N {
        let r = client.fetch(&t, 0, next, 1 << 20, 1000).await.unwrap();
        assert!(
            !r.messages.is_empty(),
            "fetch at {next} returned nothing, HWM {}",
            r.high_water_mark
        );
        next += r.messages.len() as i64;
        got.extend(r.messages);
    }
    for (i, m) in got.iter().enumerate() {
        let want = record(i);
        assert_eq!((&m.key, &m.value), (&want.key, &want.value), "record {i}");
    }
    let past = client.fetch(&t, 0, N as i64, 1 << 20, 1000).await.unwrap();
    assert!(past.messages.is_empty() && past.end_of_partition);

    // Once the last publisher leaves, SMQ flushes and unloads the partition; after that, a
    // partition whose data sits in its first window comes back with HWM 0 and FetchMessage finds
    // nothing (notes §5, "first-window bug"). SubscribeMessage with EXACT_OFFSET still reads
    // every record, from disk.
    publisher.close().await;
    drop(publisher);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut sub = client.subscribe_exact(&t, 0, 0, "it").await.unwrap();
    for i in 0..N {
        let m = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .expect("subscription delivers")
            .unwrap()
            .expect("not ended");
        assert_eq!(m.key, record(i).key, "subscribed record {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_mid_stream_gives_retriable_errors_then_recovers() {
    init_tracing();
    let smq = SmqCluster::start();
    let mut config = smq.config();
    config.request_timeout = Duration::from_secs(5);
    config.ack_timeout = Duration::from_secs(5);
    let client = SmqClient::connect(config).await.unwrap();
    let t = topic("test", "faults");
    client.ensure_topic(&spec("faults", 1)).await.unwrap();
    let publisher = std::sync::Arc::new(PartitionPublisher::new(client.clone(), t.clone(), 0));

    // Warm up: the stream works.
    for i in 0..100 {
        publisher.publish(record(i)).await.unwrap();
    }

    // Keep publishing from a task while the broker dies.
    let p = publisher.clone();
    let producer = tokio::spawn(async move {
        let mut ok = 0u32;
        let mut errors = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
        while tokio::time::Instant::now() < deadline {
            let r = tokio::time::timeout(Duration::from_secs(30), p.publish(record(0)))
                .await
                .expect("a publish must never hang");
            match r {
                Ok(_) => ok += 1,
                Err(e) => {
                    errors.push(e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        (ok, errors)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    smq.kill_broker();
    let (ok, errors) = producer.await.expect("producer task must not panic");
    assert!(ok > 0, "records were acked before the kill");
    assert!(!errors.is_empty(), "the kill must surface as errors");
    for e in &errors {
        assert!(e.is_retriable(), "not retriable: {e}");
    }
    let broken = errors
        .iter()
        .filter(|e| matches!(e, SmqError::StreamBroken { .. }))
        .count();
    tracing::info!(
        ok,
        errors = errors.len(),
        broken,
        "while the broker was down"
    );

    // Back up: the same publisher reconnects by itself.
    smq.start_broker();
    let ack = publish_after_restart(&publisher, record(1)).await;
    assert!(publisher.streams_opened() >= 2, "a new stream was opened");
    tracing::info!(offset = ack.offset, "published after the restart");
    let info = client.range_info(&t, 0).await.unwrap();
    assert!(
        info.high_water_mark > ack.offset,
        "HWM {} after offset {}",
        info.high_water_mark,
        ack.offset
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filer_lock_fences_a_second_owner() {
    use smq_client::LockOutcome;
    init_tracing();
    let smq = SmqCluster::start();
    let client = smq.client().await;
    let ttl = Duration::from_secs(10);
    let a = match client
        .lock("it/partition-0", "gateway-a", ttl, None)
        .await
        .unwrap()
    {
        LockOutcome::Acquired(l) => l,
        other => panic!("first owner must get the lock: {other:?}"),
    };
    match client
        .lock("it/partition-0", "gateway-b", ttl, None)
        .await
        .unwrap()
    {
        LockOutcome::HeldBy(owner) => assert_eq!(owner, "gateway-a"),
        other => panic!("second owner must be refused: {other:?}"),
    }
    let renewed = match client
        .lock("it/partition-0", "gateway-a", ttl, Some(&a))
        .await
        .unwrap()
    {
        LockOutcome::Acquired(l) => l,
        other => panic!("the owner renews: {other:?}"),
    };
    client.unlock(&renewed).await.unwrap();
    match client
        .lock("it/partition-0", "gateway-b", ttl, None)
        .await
        .unwrap()
    {
        LockOutcome::Acquired(b) => assert!(b.generation >= a.generation),
        other => panic!("released lock is free: {other:?}"),
    }
}
