//! The `KafkaTopic` and `KafkaGateway` custom resources (`kafka.seaweedfs.com/v1alpha1`).
//!
//! These Rust types are the single source of truth: `kafka-operator crds` prints [`all_crds_yaml`],
//! and the Helm chart's `crds/` directory holds exactly that text (a test in the operator crate
//! fails when they differ).

// Each `printcolumn(...)` of `#[kube(...)]` repeats `type_`/`priority`; clippy reads those as
// duplicated attributes although they belong to different columns.
#![allow(clippy::duplicated_attributes)]

pub mod annotations;
pub mod conditions;
pub mod gateway;
pub mod topic;

pub use gateway::{KafkaGateway, KafkaGatewaySpec, KafkaGatewayStatus};
pub use topic::{KafkaTopic, KafkaTopicSpec, KafkaTopicStatus};

use kube::CustomResourceExt;

/// API group of both kinds.
pub const GROUP: &str = "kafka.seaweedfs.com";
/// The only served version so far.
pub const VERSION: &str = "v1alpha1";

/// Every CRD of this project, in a stable order (KafkaGateway, then KafkaTopic).
pub fn all_crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    vec![KafkaGateway::crd(), KafkaTopic::crd()]
}

/// The CRDs as one multi-document YAML stream, exactly as committed under the chart's `crds/`.
pub fn all_crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

/// One CRD's YAML document (with the leading `---`), for per-kind files in the chart.
pub fn crd_yaml(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Result<String, serde_yaml::Error> {
    Ok(format!("---\n{}", serde_yaml::to_string(crd)?))
}
