//! Condition types and reasons, part of the API: Argo CD health checks, kstatus (Flux) and users'
//! scripts match on these strings, so they never change once released.

/// Condition types.
pub mod types {
    /// Summary condition: True when the object is fully reconciled.
    pub const READY: &str = "Ready";
    /// kstatus: True while a change is being applied.
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: True when the operator cannot make progress without a change by the user.
    pub const STALLED: &str = "Stalled";
    /// True while the `paused` annotation is set.
    pub const RECONCILIATION_PAUSED: &str = "ReconciliationPaused";
    /// True while the `managed: "false"` annotation is set.
    pub const UNMANAGED: &str = "Unmanaged";
    /// KafkaTopic: True when `spec.config` holds keys SMQ cannot honour (the topic stays Ready).
    pub const UNSUPPORTED_CONFIG: &str = "UnsupportedConfig";
    /// KafkaGateway, no longer set: was True when more than one replica ran while only pod 0
    /// served traffic (before gateways formed a cluster). The operator removes it from statuses
    /// it wrote earlier; kept here because released strings never change meaning.
    pub const SINGLE_SERVING_REPLICA: &str = "SingleServingReplica";
    /// KafkaGateway: whether enough pods are ready.
    pub const AVAILABLE: &str = "Available";
}

/// Condition reasons (CamelCase, one word, per the API conventions).
pub mod reasons {
    pub const RECONCILED: &str = "Reconciled";
    pub const CREATING: &str = "Creating";
    pub const PROGRESSING: &str = "Progressing";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const PARTITION_DECREASE_NOT_ALLOWED: &str = "PartitionDecreaseNotAllowed";
    pub const PARTITION_INCREASE_NOT_SUPPORTED: &str = "PartitionIncreaseNotSupported";
    pub const TOPIC_NAME_CHANGE_NOT_ALLOWED: &str = "TopicNameChangeNotAllowed";
    pub const RESOURCE_CONFLICT: &str = "ResourceConflict";
    pub const GATEWAY_NOT_FOUND: &str = "GatewayNotFound";
    pub const BACKEND_UNAVAILABLE: &str = "BackendUnavailable";
    pub const BACKEND_ERROR: &str = "BackendError";
    pub const TOPIC_ALREADY_EXISTS: &str = "TopicAlreadyExists";
    /// SMQ does not report a topic this object created earlier; it is not recreated blindly.
    pub const TOPIC_MISSING: &str = "TopicMissing";
    /// KafkaTopic with `deletionPolicy: Delete`, being deleted: a gateway is deleting its topic.
    pub const DELETING: &str = "Deleting";
    /// The same, and the gateways' last attempt failed (the message says why; retried).
    pub const DELETION_FAILED: &str = "DeletionFailed";
    pub const PAUSED: &str = "Paused";
    pub const UNMANAGED: &str = "Unmanaged";
    pub const UNSUPPORTED_CONFIG: &str = "UnsupportedConfig";
    pub const ALL_CONFIG_SUPPORTED: &str = "AllConfigSupported";
    pub const ROLLING_OUT: &str = "RollingOut";
    pub const REPLICAS_READY: &str = "ReplicasReady";
    pub const REPLICAS_NOT_READY: &str = "ReplicasNotReady";
    /// Reason of `SingleServingReplica`, no longer set.
    pub const EXTRA_REPLICAS_IDLE: &str = "ExtraReplicasIdle";
    pub const SINGLE_REPLICA: &str = "SingleReplica";
    /// KafkaGateway: another, older KafkaGateway serves the same SMQ master and namespace (the
    /// two would clash on node ids); this one gets no workload.
    pub const SMQ_NAMESPACE_IN_USE: &str = "SmqNamespaceInUse";
}
