//! Prometheus metrics of the operator, served on `/metrics`.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: &'static str,
    /// `written` or `skipped` (nothing changed).
    pub result: &'static str,
}

pub struct Metrics {
    pub reconciles: Family<KindLabel, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Family<KindLabel, Histogram>,
    pub status_writes: Family<WriteLabels, Counter>,
    /// Reconciles whose cached object did not show the operator's last status write yet, so the
    /// object was read from the API server.
    pub stale_reads: Family<KindLabel, Counter>,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them under the `kafka_operator` prefix.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            }),
            status_writes: Family::default(),
            stale_reads: Family::default(),
            leader: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("kafka_operator");
        r.register("reconciles", "Reconciles started", m.reconciles.clone());
        r.register(
            "reconcile_errors",
            "Reconciles that failed, by error",
            m.errors.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            m.duration.clone(),
        );
        r.register(
            "status_writes",
            "Status writes made or skipped because nothing changed",
            m.status_writes.clone(),
        );
        r.register(
            "stale_cache_reads",
            "Objects read from the API server because the watch cache lagged the operator's own status write",
            m.stale_reads.clone(),
        );
        r.register(
            "leader",
            "1 while this replica is the leader",
            m.leader.clone(),
        );
        m
    }

    /// Counts a reconcile and returns a guard that records its duration when dropped.
    pub fn start(&self, kind: &'static str) -> ReconcileTimer<'_> {
        self.reconciles.get_or_create(&KindLabel { kind }).inc();
        ReconcileTimer {
            metrics: self,
            kind,
            start: Instant::now(),
        }
    }

    pub fn error(&self, kind: &'static str, error: &crate::Error) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind,
                reason: error.metric_label(),
            })
            .inc();
    }

    pub fn stale_read(&self, kind: &'static str) {
        self.stale_reads.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn status_write(&self, kind: &'static str, written: bool) {
        let result = if written { "written" } else { "skipped" };
        self.status_writes
            .get_or_create(&WriteLabels { kind, result })
            .inc();
    }
}

pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    kind: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&KindLabel { kind: self.kind })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counts_errors_and_durations() {
        let mut registry = Registry::default();
        let m = Metrics::new(&mut registry);
        drop(m.start("KafkaTopic"));
        m.error("KafkaTopic", &crate::Error::MissingObjectKey("uid"));
        m.status_write("KafkaTopic", false);
        m.stale_read("KafkaTopic");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("kafka_operator_reconciles_total{kind=\"KafkaTopic\"} 1"),
            "{out}"
        );
        assert!(out.contains("kafka_operator_reconcile_errors_total{kind=\"KafkaTopic\",reason=\"missing_object_key\"} 1"), "{out}");
        assert!(
            out.contains("kafka_operator_reconcile_duration_seconds_count{kind=\"KafkaTopic\"} 1"),
            "{out}"
        );
        assert!(out.contains("result=\"skipped\"} 1"), "{out}");
        assert!(
            out.contains("kafka_operator_stale_cache_reads_total{kind=\"KafkaTopic\"} 1"),
            "{out}"
        );
    }
}
