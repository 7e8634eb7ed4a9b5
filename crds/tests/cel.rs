//! The CRDs' CEL rules, evaluated locally with kube's CEL interpreter: the admission-time
//! guarantees users rely on (no partition decrease, immutable topicName) must hold.

use kafka_crds::gateway::SmqSpec;
use kafka_crds::topic::{KafkaTopic, KafkaTopicSpec};
use kube::core::cel::validate_cel_schema as validate_cel;
use serde_json::json;

fn spec(partitions: Option<i32>, topic_name: Option<&str>) -> serde_json::Value {
    let mut s = json!({"gatewayRef": {"name": "gw"}, "deletionPolicy": "Retain"});
    if let Some(p) = partitions {
        s["partitions"] = json!(p);
    }
    if let Some(t) = topic_name {
        s["topicName"] = json!(t);
    }
    s
}

fn topic(partitions: i32, status_partitions: Option<i32>) -> serde_json::Value {
    let mut t = json!({
        "apiVersion": "kafka.seaweedfs.com/v1alpha1",
        "kind": "KafkaTopic",
        "metadata": {"name": "t"},
        "spec": spec(Some(partitions), None),
    });
    if let Some(p) = status_partitions {
        t["status"] = json!({"partitionCount": p});
    }
    t
}

#[test]
fn partitions_may_grow_or_stay_but_never_shrink() {
    let old = topic(4, Some(4));
    assert!(validate_cel::<KafkaTopic>(&topic(4, Some(4)), Some(&old)).is_ok());
    assert!(validate_cel::<KafkaTopic>(&topic(8, Some(4)), Some(&old)).is_ok());
    let err = validate_cel::<KafkaTopic>(&topic(3, Some(4)), Some(&old)).unwrap_err();
    assert!(
        format!("{err:?}").contains("partitions may not decrease"),
        "{err:?}"
    );
    // Without status (not reconciled yet) any decrease is refused.
    assert!(validate_cel::<KafkaTopic>(&topic(3, None), Some(&topic(4, None))).is_err());
}

#[test]
fn a_refused_growth_can_be_undone() {
    // The operator refused 3 -> 4 (the topic has 3): going back to 3 is allowed, below is not.
    let grown = topic(4, Some(3));
    assert!(validate_cel::<KafkaTopic>(&topic(3, Some(3)), Some(&grown)).is_ok());
    assert!(validate_cel::<KafkaTopic>(&topic(2, Some(3)), Some(&grown)).is_err());
}

#[test]
fn topic_name_is_immutable_including_adding_and_removing_it() {
    let named = spec(Some(1), Some("Orders"));
    let unnamed = spec(Some(1), None);
    assert!(validate_cel::<KafkaTopicSpec>(&named, Some(&named)).is_ok());
    assert!(validate_cel::<KafkaTopicSpec>(&unnamed, Some(&unnamed)).is_ok());
    for (new, old) in [
        (spec(Some(1), Some("Other")), &named),
        (unnamed.clone(), &named),
        (named.clone(), &unnamed),
    ] {
        let err = validate_cel::<KafkaTopicSpec>(&new, Some(old)).unwrap_err();
        assert!(
            format!("{err:?}").contains("topicName is immutable"),
            "{err:?}"
        );
    }
}

#[test]
fn creation_has_no_transition_checks_but_checks_names_and_retention() {
    assert!(validate_cel::<KafkaTopicSpec>(&spec(Some(3), Some("a.b")), None).is_ok());
    let err = validate_cel::<KafkaTopicSpec>(&spec(None, Some("..")), None).unwrap_err();
    assert!(
        format!("{err:?}").contains("are not topic names"),
        "{err:?}"
    );
    let mut bad = spec(None, None);
    bad["config"] = json!({"retention.ms": "1 day"});
    let err = validate_cel::<KafkaTopicSpec>(&bad, None).unwrap_err();
    assert!(
        format!("{err:?}").contains("retention.ms must be an integer"),
        "{err:?}"
    );
    let mut good = spec(None, None);
    good["config"] = json!({"retention.ms": "-1", "segment.ms": "x"});
    let r = validate_cel::<KafkaTopicSpec>(&good, None);
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn smq_namespace_is_immutable() {
    let old = json!({"master": "m:9333", "namespace": "kafka"});
    let new = json!({"master": "m:9333", "namespace": "other"});
    assert!(validate_cel::<SmqSpec>(&old, Some(&old)).is_ok());
    let err = validate_cel::<SmqSpec>(&new, Some(&old)).unwrap_err();
    assert!(
        format!("{err:?}").contains("smq.namespace is immutable"),
        "{err:?}"
    );
}
