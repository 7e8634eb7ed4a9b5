use std::time::Duration;

use crate::retry::RetryPolicy;

/// How to reach SMQ and how hard to try.
#[derive(Debug, Clone)]
pub struct SmqConfig {
    /// Master gRPC address (`host:port`), used to discover brokers with `ListClusterNodes`.
    pub master: Option<String>,
    /// Broker gRPC addresses to use when no master is given (or in addition to it).
    pub brokers: Vec<String>,
    pub connect_timeout: Duration,
    /// Deadline for unary RPCs.
    pub request_timeout: Duration,
    /// HTTP/2 keepalive ping interval. SeaweedFS answers pings more frequent than every 20 s
    /// with GOAWAY "too_many_pings", so this is never set below that.
    pub keepalive_interval: Duration,
    /// Largest gRPC message we accept (the broker allows 1 GiB; fetches can reach 100 MiB).
    pub max_decoding_message_size: usize,
    /// Records a publish stream may have sent but not yet acknowledged.
    pub publish_window: usize,
    /// A publish stream whose oldest unacknowledged record waited this long is declared broken.
    pub ack_timeout: Duration,
    /// How long a topic's partition assignments are trusted before looking them up again.
    pub lookup_ttl: Duration,
    pub retry: RetryPolicy,
    /// Consecutive connection failures that open a broker's circuit.
    pub breaker_failure_threshold: u32,
    /// How long an open circuit rejects calls before letting one probe through.
    pub breaker_cooldown: Duration,
    /// Name reported to the broker for publish and subscribe streams.
    pub client_name: String,
    /// How long the brokers keep acked records only in memory. Set, publishers track which
    /// acked records are durable (see `crate::durability`) and replaying publishers keep
    /// records until then; None turns both off.
    pub flush_timing: Option<crate::durability::FlushTiming>,
    /// With `flush_timing`: replaying publishers prove records durable by finding them in the
    /// partition's log files (read from the filer and volume servers) instead of by time and
    /// the broker's buffer start, which also holds when the broker cannot write.
    pub confirm_from_log_files: bool,
    /// Send `AssignTopicPartitions` to a partition's leader before using it (see
    /// `SmqClient::assign_partition`). Only experiments turn it off, to show what SMQ does
    /// without it.
    pub assign_partitions: bool,
}

impl SmqConfig {
    pub fn with_master(master: impl Into<String>) -> Self {
        Self {
            master: Some(master.into()),
            ..Self::default()
        }
    }

    pub fn with_broker(broker: impl Into<String>) -> Self {
        Self {
            brokers: vec![broker.into()],
            ..Self::default()
        }
    }
}

impl Default for SmqConfig {
    fn default() -> Self {
        Self {
            master: None,
            brokers: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            keepalive_interval: Duration::from_secs(30),
            max_decoding_message_size: 256 * 1024 * 1024,
            publish_window: 1024,
            ack_timeout: Duration::from_secs(30),
            lookup_ttl: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            breaker_failure_threshold: 5,
            breaker_cooldown: Duration::from_secs(2),
            client_name: "kafka-gateway".to_string(),
            flush_timing: None,
            confirm_from_log_files: false,
            assign_partitions: true,
        }
    }
}
