//! Wiring: watchers, stores, both controllers, leader election, the HTTP endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use kafka_crds::{KafkaGateway, KafkaTopic};
use kafka_lease::LeaseConfig;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::predicates;
use kube::runtime::reflector;
use kube::runtime::utils::Predicate;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use prometheus_client::registry::Registry;

use crate::context::{Context, SmqPool};
use crate::gateway::resources::GatewayDefaults;
use crate::metrics::Metrics;
use crate::{gateway, topic};

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub http: SocketAddr,
    pub concurrency: u16,
    /// None: watch every namespace.
    pub namespace: Option<String>,
    /// None: no leader election (a single replica).
    pub lease: Option<LeaseConfig>,
    pub identity: String,
    /// Image and pull secrets of KafkaGateways that do not set them.
    pub gateway_defaults: GatewayDefaults,
}

fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

pub async fn run(cfg: RunConfig) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let registry = Arc::new(registry);
    let http = tokio::spawn(crate::http::serve(cfg.http, registry));

    let mut leadership = match &cfg.lease {
        Some(l) => {
            // The operator runs until the process ends, and does not release the Lease: a
            // replica that stops lets the next one wait out the lease duration.
            let (rx, _election) = kafka_lease::spawn(
                Api::<Lease>::namespaced(client.clone(), &l.namespace),
                l.clone(),
                None,
                std::future::pending(),
            );
            Some(rx)
        }
        None => None,
    };
    if let Some(rx) = leadership.as_mut() {
        tracing::info!("waiting for the leader lease");
        rx.wait_for(|l| *l).await?;
        tracing::info!("leading");
    }
    metrics.leader.set(1);

    // Objects in the stores carry no managedFields: they are large and never read here.
    let wc = watcher::Config::default().page_size(500);
    let (topics, topic_writer) = reflector::store();
    let (gateways, gateway_writer) = reflector::store();
    // Status-only changes (the operator's own writes, the gateways' statistics) must not wake
    // the controllers: only spec (generation), annotations and finalizers do. Marking an object
    // for deletion bumps its generation.
    let topic_stream = watcher(api::<KafkaTopic>(&client, &cfg.namespace), wc.clone())
        .default_backoff()
        .modify(|t| t.metadata.managed_fields = None)
        .reflect(topic_writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::annotations)
                .combine(predicates::finalizers),
            Default::default(),
        );
    let gateway_stream = watcher(api::<KafkaGateway>(&client, &cfg.namespace), wc.clone())
        .default_backoff()
        .modify(|g| g.metadata.managed_fields = None)
        .reflect(gateway_writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::annotations),
            Default::default(),
        );

    let ctx = Arc::new(Context {
        client: client.clone(),
        topics: topics.clone(),
        gateways: gateways.clone(),
        smq: SmqPool::default(),
        metrics: metrics.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "kafka-operator".into(),
                instance: Some(cfg.identity.clone()),
            },
        ),
        topic_memo: Default::default(),
        gateway_defaults: cfg.gateway_defaults.clone(),
    });
    let controller_cfg = ControllerConfig::default()
        .concurrency(cfg.concurrency)
        .debounce(Duration::from_millis(500));

    let topic_controller = Controller::for_stream(topic_stream, topics)
        .with_config(controller_cfg.clone())
        .shutdown_on_signal()
        .run(
            topic::reconcile::reconcile,
            topic::reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let owned_wc = wc.labels("app.kubernetes.io/managed-by=kafka-operator");
    let gateway_controller = Controller::for_stream(gateway_stream, gateways)
        .owns(api::<StatefulSet>(&client, &cfg.namespace), owned_wc)
        .with_config(controller_cfg)
        .shutdown_on_signal()
        .run(
            gateway::reconcile::reconcile,
            gateway::reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    let lost = async {
        match leadership.as_mut() {
            // Losing the lease ends the process: a fresh start is the simplest way to be sure no
            // reconcile of the old term is still running.
            Some(rx) => {
                let _ = rx.wait_for(|l| !*l).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = async { tokio::join!(topic_controller, gateway_controller) } => Ok(()),
        _ = lost => {
            metrics.leader.set(0);
            anyhow::bail!("lost the leader lease")
        }
        r = http => anyhow::bail!("HTTP server stopped: {r:?}"),
    }
}
