//! Offset statistics in KafkaTopic status, reported by the crate `kafka-kube-stats`: this module
//! turns the configuration into the reporter's and lets it read the store ([`host`]).
//!
//! Off unless `--kube-gateway` / `KAFKA_GATEWAY_KUBE_GATEWAY` is set (the operator sets it) and
//! the mode is not `Disabled`. Kafka clients are served whatever happens there: a missing or
//! unreachable API server only costs the statistics.
//!
//! The reporter is the cargo feature `kube` (on by default); builds without it (the fuzz targets)
//! keep the flags but cannot report.

#[cfg(feature = "kube")]
mod host;

use std::sync::Arc;

use tokio::sync::watch;

pub use crate::config::StatsMode;

use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use crate::storage::Store;

/// Whether the configuration asks for the reporter.
pub fn enabled(config: &GatewayConfig) -> bool {
    config.stats_reporting()
}

/// Without the `kube` feature: says so when reporting was asked for.
#[cfg(not(feature = "kube"))]
pub fn start(
    config: &GatewayConfig,
    _store: Arc<Store>,
    _metrics: Arc<Metrics>,
    _cluster: Arc<crate::cluster::Cluster>,
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
    cluster: Arc<crate::cluster::Cluster>,
    shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    use kafka_kube_stats::{Mode, ReporterConfig};

    if !enabled(config) {
        return None;
    }
    let mode = match config.stats_mode {
        StatsMode::Disabled => return None,
        StatsMode::Summary => Mode::Summary,
        StatsMode::Full => Mode::Full,
    };
    let cfg = ReporterConfig {
        gateway: config.kube_gateway.clone()?,
        namespace: config.kube_namespace.clone(),
        identity: config.kube_identity.clone(),
        mode,
        interval: std::time::Duration::from_secs(config.stats_interval_seconds.max(1)),
        max_writes_per_second: config.stats_max_writes_per_second,
    };
    Some(kafka_kube_stats::start(
        cfg,
        Arc::new(host::StoreHost {
            store,
            metrics,
            cluster,
        }),
        shutdown,
    ))
}
