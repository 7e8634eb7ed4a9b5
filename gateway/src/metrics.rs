//! Prometheus metrics of the gateway.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::GatewayError;

type Labels = Vec<(String, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Records published to SMQ a second time because their stream broke before SMQ wrote them.
static REPUBLISHED: std::sync::LazyLock<Counter> = std::sync::LazyLock::new(Counter::default);
/// Acknowledged bytes held until SMQ has written them.
static UNFLUSHED_BYTES: std::sync::LazyLock<Gauge> = std::sync::LazyLock::new(Gauge::default);

/// Records published to SMQ, by what they hold: `data` (Kafka records or batches) or `ledger`
/// (ledger records). SMQ's cost is per record, so this over produce requests is the first
/// design figure.
static SMQ_WRITES: std::sync::LazyLock<Family<Labels, Counter>> =
    std::sync::LazyLock::new(Family::default);

pub fn smq_writes(kind: &'static str, records: u64) {
    SMQ_WRITES
        .get_or_create(&vec![("kind".to_string(), kind.to_string())])
        .inc_by(records);
}

/// Partition write locks taken (not renewals), by how: `new` (the lock was free or had
/// expired) or `resumed` (with the renew token this data directory's previous process left).
static PARTITION_LOCKS_TAKEN: std::sync::LazyLock<Family<Labels, Counter>> =
    std::sync::LazyLock::new(Family::default);

pub fn partition_lock_taken(how: &'static str) {
    PARTITION_LOCKS_TAKEN
        .get_or_create(&vec![("how".to_string(), how.to_string())])
        .inc();
}

/// Partitions refusing writes until an operator resolves a conflict.
static PARTITIONS_REFUSING_WRITES: std::sync::LazyLock<Gauge> =
    std::sync::LazyLock::new(Gauge::default);

/// Where an append's time goes, by stage (see `append_stage`).
static APPEND_STAGE_SECONDS: std::sync::LazyLock<HistogramFamily> =
    std::sync::LazyLock::new(|| Family::new_with_constructor(latency));

/// Records how long one stage of a partition append took: `admit` (room in the unflushed
/// budget, the partition's writer, its lock), `smq_ack` (SMQ's acks of the records), `previous`
/// (the append begun before it finishing), `ledger` (persisting the ledger entry).
pub fn append_stage(stage: &'static str, elapsed: Duration) {
    APPEND_STAGE_SECONDS
        .get_or_create(&vec![("stage".into(), stage.into())])
        .observe(elapsed.as_secs_f64());
}

/// Records and bytes read from SMQ for fetches, by where they came from (`filer`: the
/// partition's flushed log files; `broker`: FetchMessage or a subscription).
static SMQ_READ_RECORDS: std::sync::LazyLock<Family<Labels, Counter>> =
    std::sync::LazyLock::new(Family::default);
static SMQ_READ_BYTES: std::sync::LazyLock<Family<Labels, Counter>> =
    std::sync::LazyLock::new(Family::default);

pub fn smq_read(source: &str, records: u64, bytes: u64) {
    if records == 0 {
        return;
    }
    let l = vec![("source".to_string(), source.to_string())];
    SMQ_READ_RECORDS.get_or_create(&l).inc_by(records);
    SMQ_READ_BYTES.get_or_create(&l).inc_by(bytes);
}

pub fn republished(records: u64) {
    REPUBLISHED.inc_by(records);
}

/// One more partition refuses writes (`true`), or one fewer.
pub fn refusing_writes(started: bool) {
    if started {
        PARTITIONS_REFUSING_WRITES.inc();
    } else {
        PARTITIONS_REFUSING_WRITES.dec();
    }
}

pub fn set_unflushed_bytes(bytes: usize) {
    UNFLUSHED_BYTES.set(bytes as i64);
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// 0 (the first bucket) to 32 s, in milliseconds.
fn throttle_ms() -> Histogram {
    Histogram::new([0.0].into_iter().chain(exponential_buckets(1.0, 2.0, 16)))
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    response_errors: Family<Labels, Counter>,
    request_seconds: HistogramFamily,
    produce_errors: Family<Labels, Counter>,
    throttle_time_ms: Family<Labels, Histogram, fn() -> Histogram>,
    records_in: Family<Labels, Counter>,
    bytes_in: Family<Labels, Counter>,
    records_out: Family<Labels, Counter>,
    bytes_out: Family<Labels, Counter>,
    pub connections: Gauge,
    pub bad_frames: Counter,
    pub inflight_bytes: Gauge,
    pub response_bytes: Gauge,
    pub backpressure_waits: Counter,
    group_lag: Family<Labels, Gauge>,
    status_writes: Family<Labels, Counter>,
    /// 1 while this gateway is the elected statistics reporter of its KafkaGateway.
    pub stats_leader: Gauge,
    unavailable: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    unavailable_count: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kafka_gateway");
        let requests = Family::<Labels, Counter>::default();
        let response_errors = Family::<Labels, Counter>::default();
        let request_seconds =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        let produce_errors = Family::<Labels, Counter>::default();
        let throttle_time_ms =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(throttle_ms);
        let records_in = Family::<Labels, Counter>::default();
        let bytes_in = Family::<Labels, Counter>::default();
        let records_out = Family::<Labels, Counter>::default();
        let bytes_out = Family::<Labels, Counter>::default();
        let connections = Gauge::default();
        let bad_frames = Counter::default();
        let inflight_bytes = Gauge::default();
        let response_bytes = Gauge::default();
        let backpressure_waits = Counter::default();
        let group_lag = Family::<Labels, Gauge>::default();
        let status_writes = Family::<Labels, Counter>::default();
        let stats_leader = Gauge::default();
        let unavailable = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let unavailable_count = Gauge::default();
        registry.register(
            "smq_partition_unavailable_seconds",
            "SMQ partitions this gateway could not use the last time it tried (no leader, leader \
             unreachable or not serving it), with how long that has lasted; absent once usable",
            unavailable.clone(),
        );
        registry.register(
            "smq_unavailable_partitions",
            "Number of SMQ partitions this gateway could not use the last time it tried",
            unavailable_count.clone(),
        );
        registry.register(
            "requests",
            "Kafka requests by API and error code: the response's own, else the first of its topics, partitions or groups (0: none)",
            requests.clone(),
        );
        registry.register(
            "response_errors",
            "Kafka error codes inside responses, one per topic, partition, group or member that got one, by API and error code",
            response_errors.clone(),
        );
        registry.register(
            "request_seconds",
            "Kafka request latency by API",
            request_seconds.clone(),
        );
        registry.register(
            "produce_errors",
            "Failed partition produces by reason",
            produce_errors.clone(),
        );
        registry.register(
            "throttle_time_ms",
            "throttle_time_ms of Produce and Fetch responses (time the request waited for byte budget), by API",
            throttle_time_ms.clone(),
        );
        registry.register(
            "produced_records",
            "Records stored, by topic",
            records_in.clone(),
        );
        registry.register(
            "produced_bytes",
            "Record batch bytes received, by topic",
            bytes_in.clone(),
        );
        registry.register(
            "fetched_records",
            "Records served, by topic",
            records_out.clone(),
        );
        registry.register(
            "fetched_bytes",
            "Record batch bytes served, by topic",
            bytes_out.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "bad_frames",
            "Connections closed for malformed requests",
            bad_frames.clone(),
        );
        registry.register(
            "consumer_group_lag",
            "Records between a group's committed offset and the high water mark, by group, topic and partition",
            group_lag.clone(),
        );
        registry.register(
            "topic_status_writes",
            "KafkaTopic statistics writes by result (ok, error)",
            status_writes.clone(),
        );
        registry.register(
            "stats_leader",
            "1 while this gateway writes its KafkaGateway's KafkaTopic statistics",
            stats_leader.clone(),
        );
        registry.register(
            "inflight_bytes",
            "Bytes of requests read and responses not yet written (bounded by --max-inflight-bytes)",
            inflight_bytes.clone(),
        );
        registry.register(
            "response_bytes",
            "Of those, bytes reserved for Fetch responses and their reads (bounded by half of --max-inflight-bytes, and one batch per fetch past it)",
            response_bytes.clone(),
        );
        registry.register(
            "smq_read_records",
            "Records (format record) or batches (format batch) read from SMQ for fetches, by source: filer (flushed log files) or broker",
            SMQ_READ_RECORDS.clone(),
        );
        registry.register(
            "smq_read_bytes",
            "Kafka bytes of what was read from SMQ for fetches, by source: filer (flushed log files) or broker",
            SMQ_READ_BYTES.clone(),
        );
        registry.register(
            "republished_records",
            "Acknowledged records published again after their SMQ stream broke before SMQ wrote them",
            REPUBLISHED.clone(),
        );
        registry.register(
            "unflushed_bytes",
            "Acknowledged bytes held until SMQ has written them (bounded by --max-unflushed-bytes)",
            UNFLUSHED_BYTES.clone(),
        );
        registry.register(
            "smq_writes",
            "Records published to SMQ, by kind: data (Kafka records or batches) or ledger (ledger records)",
            SMQ_WRITES.clone(),
        );
        registry.register(
            "partition_locks_taken",
            "Partition write locks taken, by how: new (free or expired) or resumed (with the renew token this data directory's previous process left, after a SIGKILL)",
            PARTITION_LOCKS_TAKEN.clone(),
        );
        registry.register(
            "partitions_refusing_writes",
            "Partitions refusing writes until an operator resolves a conflict between the write-ahead log and the ledger (see /stats)",
            PARTITIONS_REFUSING_WRITES.clone(),
        );
        registry.register(
            "append_stage_seconds",
            "Time spent per stage of a partition append (admit, smq_ack, previous, ledger)",
            APPEND_STAGE_SECONDS.clone(),
        );
        registry.register(
            "backpressure_waits",
            "Requests whose reading waited for in-flight byte budget",
            backpressure_waits.clone(),
        );
        Self {
            registry,
            requests,
            response_errors,
            request_seconds,
            produce_errors,
            throttle_time_ms,
            records_in,
            bytes_in,
            records_out,
            bytes_out,
            connections,
            bad_frames,
            inflight_bytes,
            response_bytes,
            backpressure_waits,
            group_lag,
            status_writes,
            stats_leader,
            unavailable,
            unavailable_count,
        }
    }
}

impl Metrics {
    pub fn request(&self, api: &str, error_code: i16, elapsed: Duration) {
        self.requests
            .get_or_create(&vec![
                ("api".into(), api.into()),
                ("error_code".into(), error_code.to_string()),
            ])
            .inc();
        self.request_seconds
            .get_or_create(&vec![("api".into(), api.into())])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts every error code a response carries (see `protocol::error_codes`). Labels are
    /// API × error code, both from small fixed sets.
    pub fn response_errors(&self, api: &str, codes: &[i16]) {
        for code in codes {
            self.response_errors
                .get_or_create(&vec![
                    ("api".into(), api.into()),
                    ("error_code".into(), code.to_string()),
                ])
                .inc();
        }
    }

    pub fn produce_error(&self, e: &GatewayError) {
        self.produce_errors
            .get_or_create(&vec![("reason".into(), e.metric_label().into())])
            .inc();
    }

    pub fn throttled(&self, api: &str, ms: i32) {
        self.throttle_time_ms
            .get_or_create(&vec![("api".into(), api.into())])
            .observe(f64::from(ms));
    }

    pub fn produced(&self, topic: &str, records: u64, bytes: u64) {
        let l = vec![("topic".into(), topic.into())];
        self.records_in.get_or_create(&l).inc_by(records);
        self.bytes_in.get_or_create(&l).inc_by(bytes);
    }

    pub fn fetched(&self, topic: &str, records: u64, bytes: u64) {
        if records == 0 {
            return;
        }
        let l = vec![("topic".into(), topic.into())];
        self.records_out.get_or_create(&l).inc_by(records);
        self.bytes_out.get_or_create(&l).inc_by(bytes);
    }

    /// Replaces the consumer-group lag gauges: (group, topic, partition, lag).
    pub fn set_group_lag(&self, lags: &[(String, String, i32, i64)]) {
        self.group_lag.clear();
        for (g, t, p, lag) in lags {
            self.group_lag
                .get_or_create(&vec![
                    ("group".into(), g.clone()),
                    ("topic".into(), t.clone()),
                    ("partition".into(), p.to_string()),
                ])
                .set(*lag);
        }
    }

    /// Replaces the unavailable-partition gauges.
    pub fn set_unavailable_partitions(&self, parts: &[smq_client::UnavailablePartition]) {
        self.unavailable.clear();
        for u in parts {
            self.unavailable
                .get_or_create(&vec![
                    (
                        "smq_topic".into(),
                        format!("{}/{}", u.topic.namespace, u.topic.name),
                    ),
                    ("partition".into(), u.partition.to_string()),
                ])
                .set(u.since.elapsed().as_secs_f64());
        }
        self.unavailable_count.set(parts.len() as i64);
    }

    pub fn status_write(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.status_writes
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
