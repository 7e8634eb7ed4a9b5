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

    // And after a broker restart (once SMQ wrote what it acknowledged: it does not at shutdown).
    tokio::time::sleep(Duration::from_secs(7)).await;
    cluster.stop_broker();
    cluster.start_broker();
    let p2 = PartitionPublisher::new(client.clone(), topic.clone(), 0);
    let ack = publish_after_restart(&p2, msg(45)).await;
    assert_eq!(
        ack.offset, 45,
        "offsets continue after the removal and the restart"
    );
    let mut late = client
        .subscribe_from_time(&topic, 0, ts[19] + 1, "exp")
        .await
        .unwrap();
    let got = read_n(&mut late, 26).await;
    assert_eq!(got[0].key, b"k20");
    assert_eq!(got[25].key, b"k45");
}
