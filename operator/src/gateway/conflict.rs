//! KafkaGateways that would share an SMQ namespace (pure).
//!
//! Gateways on one SMQ master and one `smq.namespace` form one Kafka cluster and take their node
//! ids from their StatefulSet ordinals, so a second KafkaGateway there would bring a second
//! node 0: its pods refuse to start while the first one's are live (`docs/cluster.md`). The
//! younger KafkaGateway therefore gets no workload and a condition that names the older one.

use kafka_crds::KafkaGateway;
use kube::ResourceExt;

/// Where a gateway's topics live: (SMQ master, SMQ namespace), compared without case and
/// surrounding blanks (host names are case-insensitive; the namespace is `[a-zA-Z0-9._-]+`, and
/// SMQ keeps topic folders under it as given).
fn home(gw: &KafkaGateway) -> (String, &str) {
    (
        gw.spec.smq.master.trim().to_ascii_lowercase(),
        gw.spec.smq.namespace.as_str(),
    )
}

/// Creation order: the older one keeps the namespace; ties (one-second timestamps) go to the
/// smaller namespace/name, so both gateways reach the same verdict.
fn created(gw: &KafkaGateway) -> (Option<k8s_openapi::jiff::Timestamp>, String, String) {
    (
        gw.creation_timestamp().map(|t| t.0),
        gw.namespace().unwrap_or_default(),
        gw.name_any(),
    )
}

/// The KafkaGateway that was there first on `gw`'s SMQ namespace, if any other is.
pub fn holder_of_namespace<'a>(
    gw: &KafkaGateway,
    all: impl IntoIterator<Item = &'a KafkaGateway>,
) -> Option<&'a KafkaGateway> {
    // `created` ends with namespace/name, so `gw` itself is never older than itself.
    let mine = created(gw);
    all.into_iter()
        .filter(|other| home(other) == home(gw) && created(other) < mine)
        .min_by_key(|other| created(other))
}

/// What the younger gateway's status says.
pub fn message(gw: &KafkaGateway, holder: &KafkaGateway) -> String {
    format!(
        "spec.smq.namespace {:?} on SMQ master {} is already served by KafkaGateway {}/{}: gateways \
         sharing an SMQ namespace form one Kafka cluster with node ids from their pod ordinals, \
         so this one's pods would clash with its node ids; give this KafkaGateway another \
         smq.namespace, or scale {} instead (no workload is created until then)",
        gw.spec.smq.namespace,
        gw.spec.smq.master,
        holder.namespace().unwrap_or_default(),
        holder.name_any(),
        holder.name_any(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn gw(ns: &str, name: &str, master: &str, smq_ns: &str, created_s: i64) -> KafkaGateway {
        let mut g: KafkaGateway = serde_json::from_value(serde_json::json!({
            "apiVersion": "kafka.seaweedfs.com/v1alpha1",
            "kind": "KafkaGateway",
            "metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}")},
            "spec": {"smq": {"master": master, "namespace": smq_ns}},
        }))
        .unwrap();
        g.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + created_s).unwrap(),
        ));
        g
    }

    #[test]
    fn the_younger_gateway_on_one_smq_namespace_yields_to_the_older() {
        let old = gw("a", "kafka", "seaweedfs-master:9333", "kafka", 0);
        let young = gw("b", "kafka", "SeaweedFS-Master:9333 ", "kafka", 10);
        let other_ns = gw("c", "kafka", "seaweedfs-master:9333", "orders", 5);
        let other_master = gw("d", "kafka", "other-master:9333", "kafka", 5);
        let all = [
            old.clone(),
            young.clone(),
            other_ns.clone(),
            other_master.clone(),
        ];
        assert_eq!(
            holder_of_namespace(&young, &all).map(|g| g.uid()),
            Some(old.uid())
        );
        // The older one, and gateways on another namespace or master, are left alone.
        for g in [&old, &other_ns, &other_master] {
            assert!(holder_of_namespace(g, &all).is_none(), "{:?}", g.uid());
        }
        let msg = message(&young, &old);
        assert!(msg.contains("spec.smq.namespace \"kafka\""), "{msg}");
        assert!(msg.contains("KafkaGateway a/kafka"), "{msg}");
    }

    #[test]
    fn a_tie_in_creation_time_goes_to_the_smaller_name_on_both_sides() {
        let x = gw("ns", "x", "m:9333", "kafka", 0);
        let y = gw("ns", "y", "m:9333", "kafka", 0);
        let all = [y.clone(), x.clone()];
        assert!(holder_of_namespace(&x, &all).is_none());
        assert_eq!(
            holder_of_namespace(&y, &all).map(|g| g.name_any()),
            Some("x".into())
        );
    }
}
