//! KafkaGateway status from its StatefulSet's status (pure).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kafka_crds::conditions::{reasons, types};
use kafka_crds::{KafkaGateway, KafkaGatewayStatus};
use kube::ResourceExt;

use super::resources;
use crate::conditions::{Cond, materialize};

/// The workload's progress, as far as the status needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkloadState {
    pub replicas: i32,
    pub ready: i32,
    pub updated: i32,
    /// Whether the StatefulSet controller has seen the latest StatefulSet spec.
    pub observed_latest: bool,
}

pub fn workload_state(sts: Option<&StatefulSet>) -> WorkloadState {
    let Some(sts) = sts else {
        return WorkloadState::default();
    };
    let st = sts.status.clone().unwrap_or_default();
    WorkloadState {
        replicas: st.replicas,
        ready: st.ready_replicas.unwrap_or(0),
        updated: st.updated_replicas.unwrap_or(0),
        observed_latest: st.observed_generation.is_some()
            && st.observed_generation >= sts.metadata.generation,
    }
}

pub fn conditions(desired_replicas: i32, w: WorkloadState, paused: bool) -> Vec<Cond> {
    let mut out = Vec::new();
    if paused {
        out.push(Cond::new(
            types::READY,
            "Unknown",
            reasons::PAUSED,
            "reconciliation is paused by annotation",
        ));
        out.push(Cond::yes(
            types::RECONCILIATION_PAUSED,
            reasons::PAUSED,
            format!("{}=\"true\"", kafka_crds::annotations::PAUSED),
        ));
        return out;
    }
    let rolled_out = w.observed_latest
        && w.replicas == desired_replicas
        && w.updated == desired_replicas
        && w.ready == desired_replicas;
    if rolled_out {
        out.push(Cond::yes(
            types::READY,
            reasons::REPLICAS_READY,
            format!("{desired_replicas} of {desired_replicas} pods ready"),
        ));
    } else {
        let msg = format!(
            "{} of {desired_replicas} pods ready, {} updated",
            w.ready, w.updated
        );
        out.push(Cond::no(types::READY, reasons::ROLLING_OUT, msg.clone()));
        out.push(Cond::yes(types::RECONCILING, reasons::ROLLING_OUT, msg));
    }
    // Every ready pod serves (the gateways form one Kafka cluster, docs/cluster.md): clients
    // bootstrap through any of them, and partitions led by a pod that is gone move to the
    // remaining members. So one ready pod keeps the gateway available.
    if w.ready >= 1 {
        out.push(Cond::yes(
            types::AVAILABLE,
            reasons::REPLICAS_READY,
            format!("{} of {desired_replicas} pods ready", w.ready),
        ));
    } else {
        out.push(Cond::no(
            types::AVAILABLE,
            reasons::REPLICAS_NOT_READY,
            "no pod is ready",
        ));
    }
    out
}

pub fn status(gw: &KafkaGateway, w: WorkloadState, paused: bool, now: &Time) -> KafkaGatewayStatus {
    let bootstrap = Some(resources::bootstrap_servers(gw)).filter(|_| !gw.name_any().is_empty());
    assemble(
        gw,
        &conditions(gw.spec.replicas, w, paused),
        w,
        bootstrap,
        now,
    )
}

fn assemble(
    gw: &KafkaGateway,
    conds: &[Cond],
    w: WorkloadState,
    bootstrap_servers: Option<String>,
    now: &Time,
) -> KafkaGatewayStatus {
    let previous = gw
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = gw.metadata.generation;
    KafkaGatewayStatus {
        observed_generation: generation,
        conditions: materialize(previous, conds, generation, now),
        replicas: w.replicas,
        ready_replicas: w.ready,
        label_selector: Some(resources::selector_string(gw)),
        bootstrap_servers,
    }
}

/// The status of a KafkaGateway that yields its SMQ namespace to an older one
/// ([`super::conflict`]): it gets no workload until its spec or the other one changes.
pub fn conflicting(gw: &KafkaGateway, message: &str, now: &Time) -> KafkaGatewayStatus {
    let reason = reasons::SMQ_NAMESPACE_IN_USE;
    let conds = [
        Cond::no(types::READY, reason, message),
        Cond::yes(types::STALLED, reason, message),
        Cond::no(types::AVAILABLE, reason, "no workload: see Ready"),
    ];
    assemble(gw, &conds, WorkloadState::default(), None, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn w(replicas: i32, ready: i32, updated: i32) -> WorkloadState {
        WorkloadState {
            replicas,
            ready,
            updated,
            observed_latest: true,
        }
    }

    fn find<'a>(c: &'a [Cond], t: &str) -> Option<&'a Cond> {
        c.iter().find(|c| c.type_ == t)
    }

    #[test]
    fn ready_only_when_fully_rolled_out() {
        let c = conditions(1, w(1, 1, 1), false);
        assert_eq!(find(&c, types::READY).unwrap().status, "True");
        assert!(find(&c, types::RECONCILING).is_none());
        let c = conditions(2, w(2, 1, 2), false);
        assert_eq!(find(&c, types::READY).unwrap().reason, reasons::ROLLING_OUT);
        assert_eq!(find(&c, types::RECONCILING).unwrap().status, "True");
        assert_eq!(find(&c, types::AVAILABLE).unwrap().status, "True");
        let stale = WorkloadState {
            observed_latest: false,
            ..w(1, 1, 1)
        };
        assert_eq!(
            find(&conditions(1, stale, false), types::READY)
                .unwrap()
                .status,
            "False"
        );
    }

    #[test]
    fn several_replicas_are_no_warning() {
        // Before clustering a condition said pods other than 0 were idle standbys; now every pod
        // serves, and a fully rolled-out gateway of 3 has exactly Ready and Available.
        let c = conditions(3, w(3, 3, 3), false);
        let types_: Vec<_> = c.iter().map(|c| c.type_).collect();
        assert_eq!(types_, [types::READY, types::AVAILABLE]);
        assert!(c.iter().all(|c| c.status == "True"));
        assert_eq!(
            find(&c, types::AVAILABLE).unwrap().message,
            "3 of 3 pods ready"
        );
        assert!(!c.iter().any(|c| c.message.contains("idle")));
        // One pod of three ready still serves.
        let c = conditions(3, w(3, 1, 3), false);
        assert_eq!(find(&c, types::AVAILABLE).unwrap().status, "True");
        assert_eq!(find(&c, types::READY).unwrap().status, "False");
    }

    #[test]
    fn a_status_written_before_clustering_loses_its_idle_warning() {
        let mut gw = KafkaGateway::new(
            "gw",
            serde_json::from_value(serde_json::json!({"replicas": 3, "smq": {"master": "m:9333"}}))
                .unwrap(),
        );
        gw.metadata.namespace = Some("apps".into());
        let now = crate::conditions::now();
        let old = Condition {
            type_: "SingleServingReplica".into(),
            status: "True".into(),
            reason: "ExtraReplicasIdle".into(),
            message: "only pod 0 serves Kafka traffic".into(),
            observed_generation: None,
            last_transition_time: now.clone(),
        };
        gw.status = Some(KafkaGatewayStatus {
            conditions: vec![old],
            ..Default::default()
        });
        let st = status(&gw, w(3, 3, 3), false, &now);
        assert!(
            st.conditions
                .iter()
                .all(|c| c.type_ != "SingleServingReplica")
        );
        assert_eq!(st.replicas, 3);
        assert_eq!(
            st.label_selector.as_deref(),
            Some("app.kubernetes.io/instance=gw,app.kubernetes.io/name=kafka-gateway")
        );
    }

    #[test]
    fn paused_reports_only_the_pause() {
        let c = conditions(3, w(0, 0, 0), true);
        assert_eq!(
            find(&c, types::RECONCILIATION_PAUSED).unwrap().status,
            "True"
        );
        assert_eq!(find(&c, types::READY).unwrap().status, "Unknown");
        assert_eq!(c.len(), 2);
    }
}
