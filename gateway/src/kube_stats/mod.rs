//! Offset statistics in KafkaTopic status: the gateways of one KafkaGateway elect one of them
//! through a Lease (`<gateway>-stats`), and it applies each KafkaTopic's `status.stats` (and, in
//! `Full` mode, `status.partitions`) under the field manager `kafka-gateway-stats`.
//!
//! Off unless `--kube-gateway` / `KAFKA_GATEWAY_KUBE_GATEWAY` is set (the operator sets it) and
//! the mode is not `Disabled`. Kafka clients are served whatever happens here: a missing or
//! unreachable API server only costs the statistics.

//!
//! The Kubernetes client is the cargo feature `kube` (on by default); builds without it (the fuzz
//! targets) keep the flags but cannot report.

#[cfg(feature = "kube")]
pub mod decide;
#[cfg(feature = "kube")]
pub mod lease;
mod mode;
#[cfg(feature = "kube")]
pub mod writer;

use std::sync::Arc;
#[cfg(feature = "kube")]
use std::time::Duration;

#[cfg(feature = "kube")]
use k8s_openapi::api::coordination::v1::Lease;
#[cfg(feature = "kube")]
use kafka_crds::KafkaTopic;
#[cfg(feature = "kube")]
use kube::Api;
use tokio::sync::watch;

pub use mode::StatsMode;

use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use crate::storage::Store;

/// The Lease lasts this long without renewal before another gateway takes over.
#[cfg(feature = "kube")]
const LEASE_DURATION: Duration = Duration::from_secs(15);
#[cfg(feature = "kube")]
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(5);

/// Whether the configuration asks for the reporter.
pub fn enabled(config: &GatewayConfig) -> bool {
    config.kube_gateway.is_some() && config.stats_mode != StatsMode::Disabled
}

#[cfg(feature = "kube")]
/// `host-pid` when POD_NAME is not set: two gateways on one host must not share an identity,
/// or both would believe they hold the Lease.
fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kafka-gateway".to_string());
    format!("{host}-{}", std::process::id())
}

/// Without the `kube` feature: says so when reporting was asked for.
#[cfg(not(feature = "kube"))]
pub fn start(
    config: &GatewayConfig,
    _store: Arc<Store>,
    _metrics: Arc<Metrics>,
    _shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if enabled(config) {
        tracing::error!(
            "this kafka-gateway was built without the kube feature: KafkaTopic statistics are not reported"
        );
    }
    None
}

/// Starts the election and the writer in the background, if enabled. The returned task ends
/// after `shutdown`, once the Lease is released.
#[cfg(feature = "kube")]
pub fn start(
    config: &GatewayConfig,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !enabled(config) {
        return None;
    }
    let gateway = config.kube_gateway.clone()?;
    let namespace = config.kube_namespace.clone();
    let identity = config
        .kube_identity
        .clone()
        .unwrap_or_else(default_identity);
    let writer_cfg = writer::WriterConfig {
        gateway: gateway.clone(),
        identity: identity.clone(),
        mode: config.stats_mode,
        interval: Duration::from_secs(config.stats_interval_seconds.max(1)),
        max_writes_per_second: config.stats_max_writes_per_second,
    };
    Some(tokio::spawn(async move {
        // try_default reads the in-cluster service account or KUBECONFIG; no request is made,
        // so a failure here is a configuration problem that retrying would not fix.
        let client = match kube::Client::try_default().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no Kubernetes client configuration: KafkaTopic statistics are not reported");
                return;
            }
        };
        let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
        tracing::info!(%gateway, %namespace, %identity, mode = ?writer_cfg.mode, "reporting KafkaTopic statistics when elected");
        // Whether this gateway writes partitions, for the election (see lease.rs).
        let (eager_tx, eager) = watch::channel(false);
        {
            let store = store.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    eager_tx.send_replace(store.writes_any_partition().await);
                    tokio::select! {
                        _ = tokio::time::sleep(LEASE_RENEW_EVERY) => {}
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                }
            });
        }
        let (leader, election) = lease::spawn(
            Api::<Lease>::namespaced(client.clone(), &namespace),
            lease::LeaseConfig {
                name: format!("{gateway}-stats"),
                namespace: namespace.clone(),
                identity,
                duration: LEASE_DURATION,
                renew_every: LEASE_RENEW_EVERY,
            },
            eager,
            shutdown.clone(),
        );
        let writer = writer::Writer::new(
            writer_cfg,
            Api::<KafkaTopic>::namespaced(client, &namespace),
            store,
            metrics,
        );
        writer.run(leader, shutdown).await;
        let _ = election.await;
    }))
}
