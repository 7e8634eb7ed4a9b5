//! The objects a KafkaGateway owns, built as plain values (no I/O) and applied server-side.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, LocalObjectReference, ObjectFieldSelector,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kafka_crds::KafkaGateway;
use kafka_crds::gateway::{AdvertisedScheme, StatsMode};
use kube::{Resource, ResourceExt};

use crate::{Error, Result};

/// What a KafkaGateway gets when its spec leaves it out: the operator's flags.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayDefaults {
    /// `--default-gateway-image`.
    pub image: String,
    /// `--gateway-image-pull-secret`, repeated.
    pub image_pull_secrets: Vec<String>,
}

impl GatewayDefaults {
    /// The gateway image of this operator's own version, under the repository `images/build`
    /// names it (`localhost/kafka-smq/kafka-gateway`).
    pub fn builtin_image() -> String {
        format!(
            "localhost/kafka-smq/kafka-gateway:{}",
            env!("CARGO_PKG_VERSION")
        )
    }
}

/// Everything one KafkaGateway owns.
#[derive(Debug, Clone)]
pub struct Owned {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub config_map: ConfigMap,
    pub headless: Service,
    pub bootstrap: Service,
    pub stateful_set: StatefulSet,
    /// Only with `replicas > 1`: one pod gives nothing to keep while another is disrupted, and
    /// a budget on it would only stall node drains. The reconcile deletes it otherwise.
    pub pdb: Option<PodDisruptionBudget>,
}

/// Whether the object's controlling owner is the object with `owner_uid`.
pub fn controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == owner_uid && o.controller == Some(true))
}

/// Name of the PodDisruptionBudget (and of the StatefulSet and bootstrap Service).
pub fn pdb_name(gw: &KafkaGateway) -> String {
    gw.name_any()
}

pub fn selector_labels(gw: &KafkaGateway) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "kafka-gateway".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), gw.name_any()),
    ])
}

/// `key=value,...` form of the pod selector, for the scale subresource.
pub fn selector_string(gw: &KafkaGateway) -> String {
    selector_labels(gw)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn labels(gw: &KafkaGateway) -> BTreeMap<String, String> {
    let mut l = selector_labels(gw);
    l.insert(
        "app.kubernetes.io/managed-by".into(),
        "kafka-operator".into(),
    );
    l.insert("app.kubernetes.io/component".into(), "gateway".into());
    l
}

pub fn headless_name(gw: &KafkaGateway) -> String {
    format!("{}-brokers", gw.name_any())
}

fn account_name(gw: &KafkaGateway) -> String {
    format!("{}-gateway", gw.name_any())
}

/// `host:port` clients bootstrap from: the bootstrap Service.
pub fn bootstrap_servers(gw: &KafkaGateway) -> String {
    format!(
        "{}.{}.svc:{}",
        gw.name_any(),
        gw.namespace().unwrap_or_default(),
        gw.spec.listener.port
    )
}

fn meta(gw: &KafkaGateway, name: String, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: gw.namespace(),
        labels: Some(labels(gw)),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    }
}

/// The settings every pod shares, kept in the ConfigMap; the gateway reads them as
/// `KAFKA_GATEWAY_*` environment variables (its flags' env names).
pub fn gateway_settings(gw: &KafkaGateway) -> BTreeMap<String, String> {
    let s = &gw.spec;
    let mode = match s.stats_reporting.mode {
        StatsMode::Disabled => "Disabled",
        StatsMode::Summary => "Summary",
        StatsMode::Full => "Full",
    };
    BTreeMap::from([
        (
            "KAFKA_GATEWAY_LISTEN".into(),
            format!("0.0.0.0:{}", s.listener.port),
        ),
        (
            "KAFKA_GATEWAY_HTTP".into(),
            format!("0.0.0.0:{}", s.http_port),
        ),
        ("KAFKA_GATEWAY_SMQ_MASTER".into(), s.smq.master.clone()),
        ("KAFKA_GATEWAY_NAMESPACE".into(), s.smq.namespace.clone()),
        (
            "KAFKA_GATEWAY_AUTO_CREATE_TOPICS".into(),
            s.kafka.auto_create_topics.to_string(),
        ),
        (
            "KAFKA_GATEWAY_DEFAULT_PARTITIONS".into(),
            s.kafka.default_partitions.to_string(),
        ),
        // For the statistics reporter (issue 5, gateway side): which object it reports for and how.
        ("KAFKA_GATEWAY_KUBE_GATEWAY".into(), gw.name_any()),
        ("KAFKA_GATEWAY_STATS_MODE".into(), mode.into()),
        (
            "KAFKA_GATEWAY_STATS_INTERVAL_SECONDS".into(),
            s.stats_reporting.interval_seconds.to_string(),
        ),
        (
            "KAFKA_GATEWAY_STATS_MAX_WRITES_PER_SECOND".into(),
            s.stats_reporting.max_writes_per_second.to_string(),
        ),
    ])
}

/// A short stable hash of the settings, put on the pod template so a settings change rolls the
/// pods (env from a ConfigMap is read only at start). FNV-1a: stable across Rust versions,
/// unlike `DefaultHasher`.
fn settings_hash(settings: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in settings {
        for b in k.bytes().chain([0]).chain(v.bytes()).chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The gateway's write-ahead log volume and where it is mounted (the root filesystem is
/// read-only).
const WAL_VOLUME: &str = "wal";
const WAL_MOUNT: &str = "/var/lib/kafka-gateway";

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Probes use the named `http` port, so changing `httpPort` needs no probe change.
fn probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(10),
        failure_threshold: Some(3),
        timeout_seconds: Some(2),
        ..Default::default()
    }
}

/// The spec's pull secrets, else the operator's; none at all leaves the field out.
fn image_pull_secrets(
    gw: &KafkaGateway,
    defaults: &GatewayDefaults,
) -> Option<Vec<LocalObjectReference>> {
    let secrets = gw.spec.image_pull_secrets.clone().unwrap_or_else(|| {
        defaults
            .image_pull_secrets
            .iter()
            .map(|name| LocalObjectReference { name: name.clone() })
            .collect()
    });
    (!secrets.is_empty()).then_some(secrets)
}

pub fn build(gw: &KafkaGateway, defaults: &GatewayDefaults) -> Result<Owned> {
    let ns = gw.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    let owner = gw
        .controller_owner_ref(&())
        .ok_or(Error::MissingObjectKey("uid"))?;
    let name = gw.name_any();
    let s = &gw.spec;
    let settings = gateway_settings(gw);
    let config_name = format!("{name}-config");

    let service_account = ServiceAccount {
        metadata: meta(gw, account_name(gw), &owner),
        ..Default::default()
    };
    // Gateways read KafkaTopics and write only their status (the statistics), and elect their
    // statistics reporter through a Lease.
    let role = Role {
        metadata: meta(gw, account_name(gw), &owner),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec![kafka_crds::GROUP.into()]),
                resources: Some(vec!["kafkatopics".into()]),
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                ..Default::default()
            },
            PolicyRule {
                api_groups: Some(vec![kafka_crds::GROUP.into()]),
                resources: Some(vec!["kafkatopics/status".into()]),
                verbs: vec!["patch".into()],
                ..Default::default()
            },
            PolicyRule {
                api_groups: Some(vec!["coordination.k8s.io".into()]),
                resources: Some(vec!["leases".into()]),
                verbs: vec!["get".into(), "create".into(), "update".into()],
                ..Default::default()
            },
        ]),
    };
    let role_binding = RoleBinding {
        metadata: meta(gw, account_name(gw), &owner),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: account_name(gw),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: account_name(gw),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };
    let config_map = ConfigMap {
        metadata: meta(gw, config_name.clone(), &owner),
        data: Some(settings.clone()),
        ..Default::default()
    };
    let kafka_port = ServicePort {
        name: Some("kafka".into()),
        port: s.listener.port,
        target_port: Some(IntOrString::String("kafka".into())),
        ..Default::default()
    };
    // The StatefulSet's governing Service: it gives every pod the DNS name it advertises
    // (`<pod>.<name>-brokers.<ns>.svc`). Not-ready pods are published too: a gateway joins the
    // cluster, and so appears in other gateways' Metadata, before its readiness probe passes, and
    // clients must resolve whatever Metadata names.
    let headless = Service {
        metadata: meta(gw, headless_name(gw), &owner),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector_labels(gw)),
            ports: Some(vec![kafka_port.clone()]),
            publish_not_ready_addresses: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    // The gateways of one KafkaGateway form one Kafka cluster (docs/cluster.md): any ready pod
    // answers a bootstrap Metadata request, which names each partition's leader by its own
    // advertised address.
    let bootstrap = Service {
        metadata: meta(gw, name.clone(), &owner),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(gw)),
            ports: Some(vec![kafka_port]),
            ..Default::default()
        }),
        ..Default::default()
    };

    let advertised = match s.listener.advertised {
        AdvertisedScheme::PodDns => format!(
            "$(POD_NAME).{}.{ns}.svc:{}",
            headless_name(gw),
            s.listener.port
        ),
        AdvertisedScheme::ServiceDns => bootstrap_servers(gw),
    };
    let overrides = s.template.clone().unwrap_or_default();
    let mut container_env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        // Expanded by the kubelet per pod (`$(POD_NAME)` is defined above). The node id is not
        // set: in Kubernetes the gateway takes the StatefulSet ordinal ending its host name
        // (`<name>-2` → 2), which needs no downward-API feature of any Kubernetes version.
        env("KAFKA_GATEWAY_ADVERTISED_LISTENER", advertised),
        // Acknowledged records SMQ has not yet written live here, not in the heap, and a gateway
        // restarted in the same pod publishes them again (README: what an acknowledgement
        // guarantees). An emptyDir outlives the container, not the pod.
        env("KAFKA_GATEWAY_WAL_DIR", format!("{WAL_MOUNT}/wal")),
    ];
    container_env.extend(overrides.env.iter().cloned());
    let container = Container {
        name: "gateway".into(),
        image: Some(s.image.clone().unwrap_or_else(|| defaults.image.clone())),
        image_pull_policy: s.image_pull_policy.clone(),
        env: Some(container_env),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: config_name,
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(vec![
            ContainerPort {
                name: Some("kafka".into()),
                container_port: s.listener.port,
                ..Default::default()
            },
            ContainerPort {
                name: Some("http".into()),
                container_port: s.http_port,
                ..Default::default()
            },
        ]),
        volume_mounts: Some(vec![VolumeMount {
            name: WAL_VOLUME.into(),
            mount_path: WAL_MOUNT.into(),
            ..Default::default()
        }]),
        readiness_probe: Some(probe("/readyz")),
        liveness_probe: Some(probe("/healthz")),
        resources: s.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut pod_labels = overrides.labels.clone();
    pod_labels.extend(labels(gw));
    let mut pod_annotations = overrides.annotations.clone();
    pod_annotations.insert(
        "kafka.seaweedfs.com/config-hash".into(),
        settings_hash(&settings),
    );
    let stateful_set = StatefulSet {
        metadata: meta(gw, name, &owner),
        spec: Some(StatefulSetSpec {
            replicas: Some(s.replicas),
            service_name: Some(headless_name(gw)),
            // Pods are independent of each other; starting them one by one only slows rollouts.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(gw)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(account_name(gw)),
                    image_pull_secrets: image_pull_secrets(gw, defaults),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: WAL_VOLUME.into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    }]),
                    node_selector: (!overrides.node_selector.is_empty())
                        .then(|| overrides.node_selector.clone()),
                    tolerations: (!overrides.tolerations.is_empty())
                        .then(|| overrides.tolerations.clone()),
                    affinity: overrides.affinity.clone(),
                    priority_class_name: overrides.priority_class_name.clone(),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let pdb = (s.replicas > 1).then(|| PodDisruptionBudget {
        metadata: meta(gw, pdb_name(gw), &owner),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(s.pod_disruption_budget_max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(gw)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    Ok(Owned {
        service_account,
        role,
        role_binding,
        config_map,
        headless,
        bootstrap,
        stateful_set,
        pdb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_crds::gateway::{
        KafkaGatewaySpec, KafkaPolicy, ListenerSpec, SmqSpec, StatsReporting,
    };

    fn gateway(replicas: i32) -> KafkaGateway {
        let mut gw = KafkaGateway::new(
            "gw",
            KafkaGatewaySpec {
                replicas,
                image: None,
                image_pull_policy: None,
                image_pull_secrets: None,
                smq: SmqSpec {
                    master: "seaweedfs-master:9333".into(),
                    namespace: "kafka".into(),
                },
                listener: ListenerSpec::default(),
                http_port: 8080,
                kafka: KafkaPolicy::default(),
                stats_reporting: StatsReporting::default(),
                resources: None,
                template: None,
                pod_disruption_budget_max_unavailable: 1,
            },
        );
        gw.metadata.namespace = Some("apps".into());
        gw.metadata.uid = Some("uid-1".into());
        gw
    }

    fn defaults() -> GatewayDefaults {
        GatewayDefaults {
            image: "registry.example/kafka-gateway:1.2.3".into(),
            image_pull_secrets: vec!["operator-pull".into()],
        }
    }

    fn pod_spec(o: &Owned) -> &PodSpec {
        o.stateful_set
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
    }

    #[test]
    fn image_and_pull_secrets_default_to_the_operators_flags_and_the_spec_wins() {
        let o = build(&gateway(1), &defaults()).unwrap();
        let pod = pod_spec(&o);
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("registry.example/kafka-gateway:1.2.3")
        );
        let names = |pod: &PodSpec| -> Vec<String> {
            pod.image_pull_secrets
                .iter()
                .flatten()
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(names(pod), ["operator-pull"]);

        let mut g = gateway(1);
        g.spec.image = Some("mine/kafka-gateway:9".into());
        g.spec.image_pull_secrets = Some(vec![LocalObjectReference {
            name: "mine".into(),
        }]);
        let o = build(&g, &defaults()).unwrap();
        assert_eq!(
            pod_spec(&o).containers[0].image.as_deref(),
            Some("mine/kafka-gateway:9")
        );
        assert_eq!(names(pod_spec(&o)), ["mine"]);

        // No secrets anywhere: the field is left out, not written as an empty list.
        let none = GatewayDefaults {
            image_pull_secrets: vec![],
            ..defaults()
        };
        let o = build(&gateway(1), &none).unwrap();
        assert!(pod_spec(&o).image_pull_secrets.is_none());
    }

    #[test]
    fn the_builtin_default_is_the_image_of_this_version() {
        assert_eq!(
            GatewayDefaults::builtin_image(),
            format!(
                "localhost/kafka-smq/kafka-gateway:{}",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    fn env_value(sts: &StatefulSet, name: &str) -> Option<String> {
        let c = &sts.spec.as_ref()?.template.spec.as_ref()?.containers[0];
        c.env
            .as_ref()?
            .iter()
            .find(|e| e.name == name)?
            .value
            .clone()
    }

    #[test]
    fn every_object_is_owned_by_the_gateway() {
        let o = build(&gateway(3), &defaults()).unwrap();
        for meta in [
            &o.service_account.metadata,
            &o.role.metadata,
            &o.role_binding.metadata,
            &o.config_map.metadata,
            &o.headless.metadata,
            &o.bootstrap.metadata,
            &o.stateful_set.metadata,
            &o.pdb.as_ref().unwrap().metadata,
        ] {
            let owners = meta.owner_references.as_ref().unwrap();
            assert_eq!(owners[0].uid, "uid-1");
            assert_eq!(owners[0].controller, Some(true));
            assert_eq!(meta.namespace.as_deref(), Some("apps"));
        }
    }

    #[test]
    fn each_pod_advertises_its_own_dns_name_through_the_headless_service() {
        let o = build(&gateway(3), &defaults()).unwrap();
        let sts = o.stateful_set.spec.as_ref().unwrap();
        assert_eq!(sts.replicas, Some(3));
        // The governing Service is the headless one, so `<pod>.gw-brokers.apps.svc` resolves.
        assert_eq!(sts.service_name.as_deref(), Some("gw-brokers"));
        assert_eq!(o.headless.metadata.name.as_deref(), Some("gw-brokers"));
        let hl = o.headless.spec.as_ref().unwrap();
        assert_eq!(hl.cluster_ip.as_deref(), Some("None"));
        assert_eq!(hl.publish_not_ready_addresses, Some(true));
        assert_eq!(hl.selector.as_ref(), Some(&selector_labels(&gateway(3))));
        assert_eq!(
            env_value(&o.stateful_set, "KAFKA_GATEWAY_ADVERTISED_LISTENER").as_deref(),
            Some("$(POD_NAME).gw-brokers.apps.svc:9092")
        );
        // `$(POD_NAME)` is expanded only from variables defined earlier in the list.
        let env = pod_spec(&o).containers[0].env.clone().unwrap();
        let pos = |n: &str| env.iter().position(|e| e.name == n).unwrap();
        assert!(pos("POD_NAME") < pos("KAFKA_GATEWAY_ADVERTISED_LISTENER"));
        assert_eq!(
            env[pos("POD_NAME")]
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("metadata.name")
        );
        let data = o.config_map.data.unwrap();
        assert_eq!(data["KAFKA_GATEWAY_SMQ_MASTER"], "seaweedfs-master:9333");
        assert_eq!(data["KAFKA_GATEWAY_AUTO_CREATE_TOPICS"], "false");
    }

    #[test]
    fn node_ids_come_from_the_pod_host_name_not_from_the_operator() {
        // The gateway derives its node id from the StatefulSet ordinal ending HOSTNAME (pod
        // `gw-2` → 2) when KUBERNETES_SERVICE_HOST is set; one id for all pods would make every
        // pod but the first refuse to start.
        let o = build(&gateway(3), &defaults()).unwrap();
        assert_eq!(env_value(&o.stateful_set, "KAFKA_GATEWAY_NODE_ID"), None);
        assert!(
            !o.config_map
                .data
                .as_ref()
                .unwrap()
                .contains_key("KAFKA_GATEWAY_NODE_ID")
        );
        assert!(
            pod_spec(&o).hostname.is_none() && pod_spec(&o).set_hostname_as_fqdn.is_none(),
            "the pod's host name must stay its name"
        );
    }

    #[test]
    fn bootstrap_service_selects_every_pod_of_the_gateway() {
        let o = build(&gateway(3), &defaults()).unwrap();
        let spec = o.bootstrap.spec.as_ref().unwrap();
        let sel = spec.selector.as_ref().unwrap();
        assert_eq!(sel, &selector_labels(&gateway(3)));
        assert!(!sel.contains_key("statefulset.kubernetes.io/pod-name"));
        // A ClusterIP Service: endpoints are the ready pods only.
        assert_eq!(spec.cluster_ip, None);
        assert_ne!(spec.publish_not_ready_addresses, Some(true));
        // The selector matches the pods the StatefulSet makes.
        let labels = o
            .stateful_set
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        assert!(sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    }

    #[test]
    fn a_pdb_only_with_more_than_one_replica() {
        assert!(build(&gateway(1), &defaults()).unwrap().pdb.is_none());
        assert!(build(&gateway(0), &defaults()).unwrap().pdb.is_none());
        let o = build(&gateway(3), &defaults()).unwrap();
        let pdb = o.pdb.unwrap();
        assert_eq!(pdb.metadata.name.as_deref(), Some("gw"));
        assert_eq!(pdb_name(&gateway(3)), "gw");
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.selector.unwrap().match_labels,
            Some(selector_labels(&gateway(3)))
        );
        let mut g = gateway(5);
        g.spec.pod_disruption_budget_max_unavailable = 2;
        let spec = build(&g, &defaults()).unwrap().pdb.unwrap().spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(2)));
    }

    #[test]
    fn only_a_pdb_this_gateway_controls_counts_as_its_own() {
        let o = build(&gateway(3), &defaults()).unwrap();
        let meta = o.pdb.unwrap().metadata;
        assert!(controlled_by(&meta, "uid-1"));
        assert!(!controlled_by(&meta, "uid-2"));
        assert!(!controlled_by(&ObjectMeta::default(), "uid-1"));
        let mut not_controller = meta.clone();
        not_controller.owner_references.as_mut().unwrap()[0].controller = None;
        assert!(!controlled_by(&not_controller, "uid-1"));
    }

    #[test]
    fn gateway_role_can_only_patch_topic_status() {
        let o = build(&gateway(1), &defaults()).unwrap();
        let rules = o.role.rules.unwrap();
        let topic_writes: Vec<_> = rules
            .iter()
            .filter(|r| {
                r.verbs
                    .iter()
                    .any(|v| v == "patch" || v == "update" || v == "create")
            })
            .flat_map(|r| r.resources.clone().unwrap_or_default())
            .collect();
        assert_eq!(topic_writes, ["kafkatopics/status", "leases"]);
    }

    #[test]
    fn a_settings_change_changes_the_pod_template_hash() {
        let a = build(&gateway(1), &defaults()).unwrap();
        let mut g = gateway(1);
        g.spec.kafka.auto_create_topics = true;
        let b = build(&g, &defaults()).unwrap();
        let hash = |o: &Owned| {
            o.stateful_set
                .spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()["kafka.seaweedfs.com/config-hash"]
                .clone()
        };
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a), hash(&build(&gateway(1), &defaults()).unwrap()));
    }
}
