//! `KafkaTopic`: one Kafka topic, stored as the SMQ topic `<gateway's SMQ namespace>/<topic name>`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Highest partition count SMQ supports (its ring has 2520 slots).
pub const MAX_PARTITIONS: i32 = 2520;
/// Cap on `status.partitions`: above it the statistics writer reports totals only, keeping each
/// status write small (a 1000-entry list would be over 100 KB per write).
pub const MAX_PARTITIONS_IN_STATUS: usize = 128;

/// A Kafka topic served by a KafkaGateway and stored in the SeaweedFS message queue.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[kube(
    group = "kafka.seaweedfs.com",
    version = "v1alpha1",
    kind = "KafkaTopic",
    namespaced,
    status = "KafkaTopicStatus",
    derive = "PartialEq",
    derive = "Default",
    shortname = "kft",
    category = "kafka",
    category = "seaweedfs",
    doc = "A Kafka topic served by a KafkaGateway and stored in the SeaweedFS message queue (SMQ).",
    // On the whole object, to see status: a count may go down only back to the topic's own
    // partition count, which undoes a growth the operator refused.
    validation = Rule::new(
        "!has(self.spec.partitions) || !has(oldSelf.spec.partitions) || self.spec.partitions >= oldSelf.spec.partitions || (has(self.status) && has(self.status.partitionCount) && self.spec.partitions >= self.status.partitionCount)"
    ).message("partitions may not decrease").field_path(".spec.partitions").reason(Reason::FieldValueInvalid),
    printcolumn(
        name = "Partitions",
        type_ = "integer",
        json_path = ".status.partitionCount",
        description = "Partitions of the SMQ topic"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "HWM",
        type_ = "integer",
        json_path = ".status.stats.highWatermarkSum",
        description = "Sum of the partitions' high water marks"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Topic",
        type_ = "string",
        json_path = ".status.topicName",
        priority = 1
    ),
    printcolumn(
        name = "Gateway",
        type_ = "string",
        json_path = ".spec.gatewayRef.name",
        priority = 1
    ),
    printcolumn(
        name = "Retained",
        type_ = "integer",
        json_path = ".status.stats.retainedRecords",
        priority = 1,
        description = "Sum of high water mark minus log start offset"
    ),
    printcolumn(
        name = "Stats",
        type_ = "date",
        json_path = ".status.stats.observedAt",
        priority = 1,
        description = "When the statistics were taken"
    )
)]
// `topicName` may be neither added, removed nor changed after creation: SMQ cannot rename a topic,
// so a new name would silently start an empty topic. A rule on the field alone would only run when
// both old and new values exist, hence a rule on the whole spec.
#[x_kube(validation = Rule::new("has(self.topicName) == has(oldSelf.topicName) && (!has(self.topicName) || self.topicName == oldSelf.topicName)").message("topicName is immutable").reason(Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicSpec {
    /// The KafkaGateway (in this namespace) whose SMQ cluster and namespace hold the topic.
    pub gateway_ref: GatewayRef,

    /// Kafka topic name; defaults to metadata.name. Set it for names Kubernetes does not allow
    /// (upper case, `_`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249), pattern(r"^[a-zA-Z0-9._-]+$"))]
    #[x_kube(validation = Rule::new("self != '.' && self != '..'").message("'.' and '..' are not topic names"))]
    pub topic_name: Option<String>,

    /// Partition count. Absent: the gateway's default on creation, and whatever the topic has
    /// when it already exists. May never decrease below the topic's partition count. An increase
    /// adds partitions as Kafka's CreatePartitions does; every stored record stays readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2520))]
    pub partitions: Option<i32>,

    /// Kafka topic configuration (strings only, like Kafka's own). `retention.ms` is applied to the
    /// SMQ topic and `cleanup.policy: delete` is accepted; `smq.storage.format` (`record` or
    /// `batch`) chooses how the gateway stores records and is fixed once the topic exists; other
    /// keys are reported in the `UnsupportedConfig` condition and otherwise ignored.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    // Bounded value length keeps the CEL rule's estimated cost within the API server's budget.
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 1024}))]
    #[x_kube(validation = Rule::new("!('retention.ms' in self) || self['retention.ms'].matches('^-?[0-9]{1,15}$')").message("retention.ms must be an integer number of milliseconds (-1: keep forever)"))]
    #[x_kube(validation = Rule::new("!('smq.storage.format' in self) || self['smq.storage.format'] in ['record', 'batch']").message("smq.storage.format must be record or batch"))]
    #[x_kube(validation = Rule::new("('smq.storage.format' in self ? self['smq.storage.format'] : '') == ('smq.storage.format' in oldSelf ? oldSelf['smq.storage.format'] : '')").message("smq.storage.format cannot change: the topic's records are already stored in its format").reason(Reason::FieldValueInvalid))]
    pub config: BTreeMap<String, String>,

    /// What deleting this object does to the topic: `Delete` deletes it as Kafka's DeleteTopics
    /// does (a gateway removes its data and committed offsets; the name can be created again),
    /// `Retain` keeps it. See the operator's README.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Reference to a KafkaGateway in the same namespace.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the topic with the object: a gateway deletes it as DeleteTopics does, and the
    /// finalizer waits for that (failures show as `Ready=False, DeletionFailed`).
    Delete,
    /// Remove the object and keep the SMQ topic.
    #[default]
    Retain,
}

/// Observed state. The operator owns everything but `stats` and `partitions`, which the elected
/// statistics reporter of the gateway writes under its own field manager.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The Kafka topic name in effect, recorded before the SMQ topic is created; it marks the SMQ
    /// topic as this object's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,

    /// The SMQ topic, `<namespace>/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smq_topic: Option<String>,

    /// Partition count of the SMQ topic as last observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_count: Option<i32>,

    /// Retention SMQ reports for the topic, in seconds (absent: kept forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_seconds: Option<i64>,

    /// Totals over all partitions, written by the gateway's statistics reporter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<TopicStats>,

    /// Per-partition offsets (at most 128 entries; above that only `stats` is written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["partition".into()]))]
    pub partitions: Vec<PartitionStats>,
}

/// Scalar totals, so printer columns (which read one value) can show them. Offsets are far below
/// 2^53 in practice, so plain integers are used despite the API conventions' advice for int64.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStats {
    /// Sum of the partitions' high water marks (records ever appended).
    pub high_watermark_sum: i64,
    /// Sum of high water mark minus log start offset (records still readable).
    pub retained_records: i64,
    /// How many partitions the totals cover.
    pub partitions_reported: i32,
    /// When the offsets were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Time>,
    /// The gateway pod that wrote them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporter: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionStats {
    pub partition: i32,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

impl KafkaTopic {
    /// The Kafka topic name this object asks for: `spec.topicName`, else `metadata.name`.
    pub fn desired_topic_name(&self) -> String {
        self.spec
            .topic_name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}
