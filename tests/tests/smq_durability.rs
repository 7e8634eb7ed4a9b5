//! Records SMQ acknowledged survive a broker crash when the publisher keeps them until the broker
//! has written them (`SmqConfig::flush_timing`), against a real SeaweedFS 4.48 cluster.

use std::time::Duration;

use integration_tests::{SmqCluster, init_tracing, publish_after_restart};
use smq_client::{DataMessage, FlushTiming, PartitionPublisher, SmqClient};

fn msg(i: usize) -> DataMessage {
    DataMessage {
        key: format!("k{i}").into_bytes(),
        value: format!("v{i}").into_bytes(),
        ts_ns: 0,
        ctrl: None,
    }
}

async fn read_values(client: &SmqClient, t: &smq_client::Topic, n: usize) -> Vec<String> {
    let mut sub = client
        .subscribe_exact(t, 0, 0, "durability-test")
        .await
        .expect("subscribe");
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
            Ok(Ok(Some(m))) => out.push(String::from_utf8_lossy(&m.value).into_owned()),
            other => panic!("after {} records: {other:?}", out.len()),
        }
    }
    out
}

/// A one-partition topic and a replaying publisher on it, with durability tracking on.
async fn replaying_publisher(
    smq: &SmqCluster,
    name: &str,
) -> (smq_client::Topic, PartitionPublisher) {
    replaying_publisher_with(smq, name, false).await
}

/// The same; `from_log_files`: durability proven by finding the records in the log files.
async fn replaying_publisher_with(
    smq: &SmqCluster,
    name: &str,
    from_log_files: bool,
) -> (smq_client::Topic, PartitionPublisher) {
    let config = smq_client::SmqConfig {
        flush_timing: Some(FlushTiming::default()),
        confirm_from_log_files: from_log_files,
        ..smq.config()
    };
    let client = SmqClient::connect(config).await.unwrap();
    let t = integration_tests::one_partition_topic(&client, name).await;
    let p = PartitionPublisher::replaying(client, t.clone(), 0);
    (t, p)
}

/// Waits until the publisher keeps nothing: SMQ has written everything it acked.
async fn wait_released(p: &PartitionPublisher) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while p.retained_bytes() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("kept records released after the broker's flush");
}

/// Every value v0..v{n-1} was read (records published again may be read twice), and nothing else.
fn assert_every_record_once_or_more(got: &[String], n: usize) {
    let distinct: std::collections::BTreeSet<&str> = got.iter().map(String::as_str).collect();
    let want: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
    let want: std::collections::BTreeSet<&str> = want.iter().map(String::as_str).collect();
    assert_eq!(distinct, want, "every acked record is readable: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaying_publisher_loses_nothing_it_got_acked_when_the_broker_is_killed() {
    init_tracing();
    let smq = SmqCluster::start();
    let (t, p) = replaying_publisher(&smq, "replaying").await;
    let first = p.publish(msg(0)).await.unwrap();
    // Everything acked from here on is still only in the broker's memory when it dies.
    for i in 1..20 {
        p.publish(msg(i)).await.unwrap();
    }
    assert_eq!(
        p.durable_below(first.epoch),
        Some(0),
        "nothing proven written yet"
    );
    assert!(p.retained_bytes() > 0);
    smq.kill_broker();
    smq.start_broker();
    publish_after_restart(&p, msg(20)).await;

    let client2 = smq.client().await;
    let got = read_values(&client2, &t, 21).await;
    assert_every_record_once_or_more(&got, 21);
    assert_eq!(
        got.last().map(String::as_str),
        Some("v20"),
        "kept records come first"
    );

    // Once the broker has written them, nothing is kept.
    wait_released(&p).await;
}

/// As above, but the broker has already written earlier records, so after the crash it hands
/// out their offsets again (its offset checkpoint lags): the records published again must still
/// be readable next to the older ones stored under the same offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_records_are_readable_when_the_broker_reuses_offsets_after_a_crash() {
    init_tracing();
    let smq = SmqCluster::start();
    let (t, p) = replaying_publisher(&smq, "reused").await;
    for i in 0..10 {
        p.publish(msg(i)).await.unwrap();
    }
    wait_released(&p).await;
    for i in 10..20 {
        p.publish(msg(i)).await.unwrap();
    }
    smq.kill_broker();
    smq.start_broker();
    publish_after_restart(&p, msg(20)).await;
    let client2 = smq.client().await;
    let got = read_values(&client2, &t, 21).await;
    assert_every_record_once_or_more(&got, 21);
}

/// Proof from the log files, with two writers on one partition (two gateways sharing a state
/// topic): each finds its own records among the other's, by offset and bytes, and releases
/// them; a broker crash before that loses nothing either of them got acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_file_proof_releases_each_writers_own_records_and_survives_a_crash() {
    init_tracing();
    let smq = SmqCluster::start();
    let (t, a) = replaying_publisher_with(&smq, "shared", true).await;
    let (_, b) = replaying_publisher_with(&smq, "shared", true).await;
    for i in 0..40 {
        let p = if i % 2 == 0 { &a } else { &b };
        p.publish(msg(i)).await.unwrap();
    }
    assert!(a.retained_bytes() > 0 && b.retained_bytes() > 0);
    wait_released(&a).await;
    wait_released(&b).await;

    // Acked and not yet written when the broker dies: published again by each writer.
    for i in 40..60 {
        let p = if i % 3 == 0 { &a } else { &b };
        p.publish(msg(i)).await.unwrap();
    }
    smq.kill_broker();
    smq.start_broker();
    publish_after_restart(&a, msg(60)).await;
    publish_after_restart(&b, msg(61)).await;
    let client = smq.client().await;
    let got = read_values(&client, &t, 62).await;
    assert_every_record_once_or_more(&got, 62);
    wait_released(&a).await;
    wait_released(&b).await;
}
