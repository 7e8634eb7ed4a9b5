//! Offset statistics in KafkaTopic status: the gateways of one KafkaGateway elect one of them
//! through a Lease (`<gateway>-stats`, [`kafka_lease`] with the handover on), and it applies each
//! KafkaTopic's `status.stats` (and, in [`Mode::Full`], `status.partitions`) under the field
//! manager [`FIELD_MANAGER`].
//!
//! The gateway it runs in is a [`Host`]: this crate does not depend on the gateway, so the gateway
//! builds without Kubernetes' client when it has no use for it (the fuzz targets). Kafka clients
//! are served whatever happens here: a missing or unreachable API server only costs the
//! statistics.

pub mod decide;
mod host;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kafka_crds::KafkaTopic;
use kafka_lease::LeaseConfig;
use kube::Api;
use tokio::sync::watch;

pub use decide::{Figures, Mode};
pub use host::Host;
pub use writer::FIELD_MANAGER;

/// The Lease lasts this long without renewal before another gateway takes over.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const LEASE_RENEW_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// The KafkaGateway whose KafkaTopics are reported.
    pub gateway: String,
    /// None: the client configuration's namespace.
    pub namespace: Option<String>,
    /// This gateway's identity in the Lease and in `status.stats.reporter`; None: `host-pid`.
    pub identity: Option<String>,
    pub mode: Mode,
    /// At most one write per KafkaTopic per interval.
    pub interval: Duration,
    pub max_writes_per_second: u32,
}

/// `host-pid` when no identity is given: two gateways on one host must not share an identity,
/// or both would believe they hold the Lease.
fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kafka-gateway".to_string());
    format!("{host}-{}", std::process::id())
}

/// Starts the election and the writer in the background. The returned task ends after
/// `shutdown`, once the Lease is released.
pub fn start<H: Host>(
    cfg: ReporterConfig,
    host: Arc<H>,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let identity = cfg.identity.clone().unwrap_or_else(default_identity);
    let writer_cfg = writer::WriterConfig {
        gateway: cfg.gateway.clone(),
        identity: identity.clone(),
        mode: cfg.mode,
        interval: cfg.interval,
        max_writes_per_second: cfg.max_writes_per_second,
    };
    tokio::spawn(async move {
        // try_default reads the in-cluster service account or KUBECONFIG; no request is made,
        // so a failure here is a configuration problem that retrying would not fix.
        let client = match kube::Client::try_default().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no Kubernetes client configuration: KafkaTopic statistics are not reported");
                return;
            }
        };
        let gateway = cfg.gateway;
        let namespace = cfg
            .namespace
            .unwrap_or_else(|| client.default_namespace().to_string());
        tracing::info!(%gateway, %namespace, %identity, mode = ?writer_cfg.mode, "reporting KafkaTopic statistics when elected");
        // Whether this gateway writes partitions: its figures are current only for those, so
        // the election hands the Lease to such a gateway.
        let (eager_tx, eager) = watch::channel(false);
        {
            let host = host.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    eager_tx.send_replace(host.writes_any_partition().await);
                    tokio::select! {
                        _ = tokio::time::sleep(LEASE_RENEW_EVERY) => {}
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                }
            });
        }
        let mut election_shutdown = shutdown.clone();
        let (leader, election) = kafka_lease::spawn(
            Api::<Lease>::namespaced(client.clone(), &namespace),
            LeaseConfig {
                name: format!("{gateway}-stats"),
                namespace: namespace.clone(),
                identity,
                duration: LEASE_DURATION,
                renew_every: LEASE_RENEW_EVERY,
            },
            Some(eager),
            async move {
                let _ = election_shutdown.wait_for(|s| *s).await;
            },
        );
        let writer = writer::Writer::new(
            writer_cfg,
            Api::<KafkaTopic>::namespaced(client, &namespace),
            host,
        );
        writer.run(leader, shutdown).await;
        let _ = election.await;
    })
}
