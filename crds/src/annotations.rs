//! Annotations users put on KafkaTopics and KafkaGateways. The operator reads them and never
//! writes them (it never writes anything but status and its own finalizer on user objects).

/// `"true"`: the operator makes no SMQ or workload changes and reports `ReconciliationPaused`.
/// Deleting a paused object still honours its `deletionPolicy`.
pub const PAUSED: &str = "kafka.seaweedfs.com/paused";

/// `"false"`: the operator lets go of the object: it removes its finalizer, makes no SMQ calls and
/// reports `Unmanaged`. Deleting an unmanaged KafkaTopic never touches the SMQ topic.
pub const MANAGED: &str = "kafka.seaweedfs.com/managed";

/// `"true"` on a KafkaTopic: take over an SMQ topic that already exists and that this object did
/// not create. Without it such a topic is reported as `TopicAlreadyExists`, so one tenant cannot
/// take over another's data by naming it.
pub const ADOPT: &str = "kafka.seaweedfs.com/adopt";

/// `"true"`: remove the operator's finalizer without running its cleanup, whatever the cleanup
/// would have needed. The escape hatch for objects stuck in deletion.
pub const FORCE_DELETE: &str = "kafka.seaweedfs.com/force-delete";

/// The finalizer the operator puts on managed KafkaTopics.
pub const TOPIC_FINALIZER: &str = "kafka.seaweedfs.com/topic";

/// Whether `key` is set to exactly `value` (annotation values are compared case-insensitively so
/// `"True"` works as users expect).
pub fn is_set(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    key: &str,
    value: &str,
) -> bool {
    annotations
        .and_then(|a| a.get(key))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(value))
}
