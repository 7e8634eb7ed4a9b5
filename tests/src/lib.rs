//! Shared fixtures for the integration tests: a real SeaweedFS cluster started through `dev/smq`.

mod smq;

pub use smq::{SmqCluster, repo_root};

/// Logs to the test output (shown for failing tests), once per process.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,smq_client=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Creates (or reuses) the schemaless one-partition SMQ topic `test/<name>`.
pub async fn one_partition_topic(client: &smq_client::SmqClient, name: &str) -> smq_client::Topic {
    let t = smq_client::topic("test", name);
    client
        .ensure_topic(&smq_client::TopicSpec {
            topic: t.clone(),
            partitions: 1,
            record_type: None,
            retention_seconds: None,
        })
        .await
        .unwrap();
    t
}

/// Publishes the first record after a broker restart, retrying for up to 60 s while the
/// restarted broker is not yet the partition's leader, as a caller of the publisher would: how
/// long that takes depends on the machine, not on what is tested. Every error must be retriable.
pub async fn publish_after_restart(
    p: &smq_client::PartitionPublisher,
    m: smq_client::DataMessage,
) -> smq_client::PublishAck {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match p.publish(m.clone()).await {
            Ok(a) => return a,
            Err(e) => {
                assert!(e.is_retriable(), "not retriable after restart: {e}");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no publish within 60 s of the restart: {e}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}
