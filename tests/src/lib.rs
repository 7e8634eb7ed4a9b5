//! Shared fixtures for the integration tests: a real SeaweedFS cluster started through `dev/smq`.

mod smq;

pub use smq::SmqCluster;

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
