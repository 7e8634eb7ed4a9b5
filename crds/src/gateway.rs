//! `KafkaGateway`: a fleet of `kafka-gateway` pods in front of one SMQ cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A fleet of Kafka wire-protocol gateways storing in the SeaweedFS message queue.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "kafka.seaweedfs.com",
    version = "v1alpha1",
    kind = "KafkaGateway",
    namespaced,
    status = "KafkaGatewayStatus",
    derive = "PartialEq",
    shortname = "kgw",
    category = "kafka",
    category = "seaweedfs",
    doc = "A fleet of Kafka wire-protocol gateways in front of a SeaweedFS message queue (SMQ).",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.labelSelector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Bootstrap",
        type_ = "string",
        json_path = ".status.bootstrapServers"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "SMQ",
        type_ = "string",
        json_path = ".spec.smq.master",
        priority = 1
    ),
    printcolumn(
        name = "Namespace",
        type_ = "string",
        json_path = ".spec.smq.namespace",
        priority = 1
    ),
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".spec.image",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaGatewaySpec {
    /// Number of gateway pods. They form one Kafka cluster: each pod is a broker (node id: its
    /// StatefulSet ordinal) advertising its own DNS name, partition leaders and group
    /// coordinators are spread over the pods, and the bootstrap Service reaches every ready
    /// pod. Above 1 a PodDisruptionBudget is created too. `kubectl scale` sets it.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 64))]
    pub replicas: i32,

    /// The `kafka-gateway` container image. Default: the operator's `--default-gateway-image`
    /// (the chart sets it to the gateway image of the operator's own version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(Always|IfNotPresent|Never)$"))]
    pub image_pull_policy: Option<String>,

    /// Secrets (in the KafkaGateway's namespace) for pulling the image. Default: the operator's
    /// `--gateway-image-pull-secret` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,

    /// Where the topics are stored.
    pub smq: SmqSpec,

    #[serde(default)]
    pub listener: ListenerSpec,

    /// Port of the gateway's HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
    #[serde(default = "default_http_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub http_port: i32,

    #[serde(default)]
    pub kafka: KafkaPolicy,

    #[serde(default)]
    pub stats_reporting: StatsReporting,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateOverrides>,

    /// Most pods unavailable at once during voluntary disruptions (node drains, evictions): the
    /// `maxUnavailable` of the PodDisruptionBudget the operator creates while `replicas > 1`.
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 0))]
    pub pod_disruption_budget_max_unavailable: i32,
}

fn default_replicas() -> i32 {
    1
}
fn default_http_port() -> i32 {
    8080
}
fn default_max_unavailable() -> i32 {
    1
}
fn default_listener_port() -> i32 {
    9092
}
fn default_smq_namespace() -> String {
    "kafka".into()
}
fn default_partitions() -> i32 {
    1
}
fn default_interval() -> i32 {
    60
}
fn default_writes() -> i32 {
    10
}

#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SmqSpec {
    /// SeaweedFS master, `host:port` (the gateway discovers brokers through it).
    #[schemars(length(min = 1))]
    pub master: String,
    /// SMQ namespace of the Kafka topics: Kafka topic T is the SMQ topic `<namespace>/T`.
    /// Immutable: another namespace would show a fleet with none of its topics.
    #[serde(default = "default_smq_namespace")]
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-zA-Z0-9._-]+$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("smq.namespace is immutable"))]
    pub namespace: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSpec {
    /// Kafka port of every pod and of the bootstrap Service.
    #[serde(default = "default_listener_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// How each pod names itself to Kafka clients.
    #[serde(default)]
    pub advertised: AdvertisedScheme,
}

impl Default for ListenerSpec {
    fn default() -> Self {
        ListenerSpec {
            port: default_listener_port(),
            advertised: AdvertisedScheme::default(),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default, JsonSchema)]
pub enum AdvertisedScheme {
    /// `<pod>.<gateway>-brokers.<namespace>.svc:<port>`, the pod's own DNS name through the
    /// headless Service: reachable inside the cluster, stable across restarts.
    #[default]
    PodDns,
    /// `<gateway>.<namespace>.svc:<port>`, the bootstrap Service (any pod may answer).
    ServiceDns,
}

/// Kafka-side policy of the gateways.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaPolicy {
    /// Whether producers and consumers may create topics implicitly. Off by default so topics come
    /// from KafkaTopic objects only, without an auto-create race.
    #[serde(default)]
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of KafkaTopics that do not set `partitions`.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 2520))]
    pub default_partitions: i32,
}

impl Default for KafkaPolicy {
    fn default() -> Self {
        KafkaPolicy {
            auto_create_topics: false,
            default_partitions: default_partitions(),
        }
    }
}

/// How the gateways' elected statistics reporter writes KafkaTopic `status.stats`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsReporting {
    #[serde(default)]
    pub mode: StatsMode,
    /// Least time between two writes for one topic.
    #[serde(default = "default_interval")]
    #[schemars(range(min = 10, max = 86400))]
    pub interval_seconds: i32,
    /// Cap on status writes per second over all topics.
    #[serde(default = "default_writes")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_writes_per_second: i32,
}

impl Default for StatsReporting {
    fn default() -> Self {
        StatsReporting {
            mode: StatsMode::default(),
            interval_seconds: default_interval(),
            max_writes_per_second: default_writes(),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default, JsonSchema)]
pub enum StatsMode {
    Disabled,
    /// Totals only (`status.stats`).
    #[default]
    Summary,
    /// Totals and per-partition offsets (`status.partitions`, at most 128).
    Full,
}

/// What may be added to the generated pods.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateOverrides {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Extra environment of the gateway container (e.g. `RUST_LOG`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KafkaGatewayStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Pods of the workload (for the scale subresource).
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    /// Selector of the gateway pods (for the scale subresource and HPAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// `host:port` Kafka clients bootstrap from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    /// `kubectl scale kgw NAME --replicas N` needs the scale subresource, and HPAs its selector.
    #[test]
    fn the_crd_has_the_scale_subresource_on_replicas() {
        let crd = KafkaGateway::crd();
        let version = &crd.spec.versions[0];
        let sub = version.subresources.as_ref().unwrap();
        assert!(sub.status.is_some());
        let scale = sub.scale.as_ref().unwrap();
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert_eq!(scale.status_replicas_path, ".status.replicas");
        assert_eq!(
            scale.label_selector_path.as_deref(),
            Some(".status.labelSelector")
        );
        // The status fields the paths name exist in the schema.
        let schema = serde_json::to_value(version.schema.as_ref().unwrap()).unwrap();
        let status = &schema["openAPIV3Schema"]["properties"]["status"]["properties"];
        assert_eq!(status["replicas"]["type"], "integer");
        assert_eq!(status["labelSelector"]["type"], "string");
        assert_eq!(crd.spec.names.short_names, Some(vec!["kgw".to_string()]));
    }
}
