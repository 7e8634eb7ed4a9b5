use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Kafka wire-protocol gateway storing records in the SeaweedFS message queue (SMQ).
#[derive(Debug, Parser)]
#[command(name = "kafka-gateway", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: GatewayConfig,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve Kafka clients (the default).
    Serve,
    /// Inspect the persistent offset ledger kept in SMQ.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Check every partition's ledger: dense offsets, SMQ positions, timestamp order.
    Validate,
    /// Show where one Kafka offset is stored.
    Info {
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// Ask the running gateway (at `--http`) to drop the write-ahead log's records of a
    /// partition that refuses writes because they do not continue its ledger. Those records
    /// are lost; the partition accepts writes again from its ledger's end.
    DiscardWal { topic: String, partition: i32 },
}

#[derive(Debug, Clone, Args)]
pub struct GatewayConfig {
    /// Address to accept Kafka clients on.
    #[arg(long, env = "KAFKA_GATEWAY_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// HOST:PORT clients are told to connect to (Metadata); defaults to the listen address.
    #[arg(long, env = "KAFKA_GATEWAY_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// This gateway's broker id in a cluster of gateways sharing one SMQ namespace (see
    /// docs/cluster.md). Default in Kubernetes: the StatefulSet ordinal at the end of the host
    /// name (`<name>-<i>`). Without either the gateway runs standalone as node 1.
    #[arg(long, env = "KAFKA_GATEWAY_NODE_ID")]
    pub node_id: Option<i32>,
    /// SMQ master gRPC address (HOST:PORT), used to discover the brokers.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_SMQ_MASTER",
        default_value = "127.0.0.1:19333"
    )]
    pub smq_master: String,
    /// SMQ namespace holding the Kafka topics.
    #[arg(long, env = "KAFKA_GATEWAY_NAMESPACE", default_value = "kafka")]
    pub namespace: String,
    /// Address for /metrics, /healthz, /readyz, /stats and /ledger.
    #[arg(long, env = "KAFKA_GATEWAY_HTTP", default_value = "127.0.0.1:9095")]
    pub http: SocketAddr,
    /// Create unknown topics when clients produce to them or ask for them in Metadata.
    #[arg(long, env = "KAFKA_GATEWAY_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics with num_partitions -1.
    #[arg(long, env = "KAFKA_GATEWAY_DEFAULT_PARTITIONS", default_value_t = 1)]
    pub default_partitions: i32,
    /// Storage format of new topics that do not set `smq.storage.format`: `record` (one SMQ
    /// record per Kafka record, readable by SMQ's tools) or `batch` (one per record batch, much
    /// faster, Kafka clients only).
    #[arg(long, env = "KAFKA_GATEWAY_DEFAULT_STORAGE_FORMAT", default_value = "record", value_parser = parse_format)]
    pub default_storage_format: kafka_smq_format::StorageFormat,
    /// Per partition, bytes of the newest records kept in memory so consumers at the tail are
    /// served without reading SMQ (0 turns the cache off). Memory bound: partitions × this.
    #[arg(long, env = "KAFKA_GATEWAY_TAIL_CACHE_BYTES", default_value_t = 1024 * 1024)]
    pub tail_cache_bytes: usize,
    /// Read records SMQ has already flushed straight from the partition's log files in the
    /// filer instead of through the broker's FetchMessage (whose cost is broker CPU per
    /// record). Every record is still checked against the ledger; whatever is missing or
    /// disagrees is read through the broker. The same reads prove held acknowledged records
    /// written (off: a timing rule does). `--read-flushed-from-filer=false` turns it off.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_READ_FLUSHED_FROM_FILER",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub read_flushed_from_filer: bool,
    /// The SMQ brokers' flush interval (`weed mq.broker -logFlushInterval`, seconds). Records
    /// SMQ acknowledged are held by the gateway until SMQ has provably written them (at the
    /// latest this long plus a second after the ack) and published again if the broker's
    /// stream breaks first, so acks=all survives a broker crash. 0 turns this off: acks then
    /// mean "in the broker's memory".
    #[arg(long, env = "KAFKA_GATEWAY_SMQ_FLUSH_INTERVAL", default_value_t = 5)]
    pub smq_flush_interval: u64,
    /// Acknowledged bytes held across partitions until SMQ has written them; produces wait
    /// (then fail retriably) past it.
    #[arg(long, env = "KAFKA_GATEWAY_MAX_UNFLUSHED_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub max_unflushed_bytes: usize,
    /// Directory of the gateway's write-ahead log: acknowledged records SMQ has not yet written
    /// are kept in files here instead of memory, and a restarted gateway publishes again what it
    /// finds there, so acks=all also survives the gateway dying while the broker is down or
    /// right after a broker crash. One directory per gateway process (it is locked); in
    /// Kubernetes a volume that outlives the container. Default: `<data-dir>/wal-<listen port>`.
    #[arg(long, env = "KAFKA_GATEWAY_WAL_DIR")]
    pub wal_dir: Option<std::path::PathBuf>,
    /// Where the gateway keeps its files (the write-ahead log) when `--wal-dir` is not given.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_DATA_DIR",
        default_value = "kafka-gateway-data"
    )]
    pub data_dir: std::path::PathBuf,
    /// Keep acknowledged records SMQ has not yet written in memory instead of a write-ahead log
    /// (bounded by `--max-unflushed-bytes`; lost if the gateway dies before SMQ writes them).
    #[arg(long, env = "KAFKA_GATEWAY_NO_WAL")]
    pub no_wal: bool,
    /// Largest record batch accepted (Kafka's message.max.bytes). Larger than Kafka's 1 MiB
    /// default so that a 1 MiB record with its batch overhead fits.
    #[arg(long, env = "KAFKA_GATEWAY_MAX_MESSAGE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Largest request frame accepted; larger frames close the connection.
    #[arg(long, env = "KAFKA_GATEWAY_MAX_REQUEST_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Bytes of requests read but not yet answered, plus responses not yet written, across all
    /// connections. Past it the gateway stops reading sockets until responses go out, so memory
    /// stays bounded under many producers and slow consumers. A single request larger than this
    /// is still served, alone.
    #[arg(long, env = "KAFKA_GATEWAY_MAX_INFLIGHT_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_inflight_bytes: usize,
    /// The same bound for one connection (its pipelined requests), so that one client cannot
    /// take the whole global budget.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_MAX_CONNECTION_INFLIGHT_BYTES",
        default_value_t = 32 * 1024 * 1024
    )]
    pub max_connection_inflight_bytes: usize,
    /// Connections served at once; more wait to be accepted.
    #[arg(long, env = "KAFKA_GATEWAY_MAX_CONNECTIONS", default_value_t = 1000)]
    pub max_connections: usize,
    /// Close connections idle for this many seconds.
    #[arg(long, env = "KAFKA_GATEWAY_IDLE_TIMEOUT_SECS", default_value_t = 600)]
    pub idle_timeout_secs: u64,
    /// How long a new consumer group waits for more members before its first generation
    /// (Kafka's group.initial.rebalance.delay.ms).
    #[arg(
        long,
        env = "KAFKA_GATEWAY_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 1000
    )]
    pub group_initial_rebalance_delay_ms: u64,
    /// A KIP-848 consumer group member (`group.protocol=consumer`) that sends no heartbeat for
    /// this long is fenced (Kafka's group.consumer.session.timeout.ms).
    #[arg(
        long,
        env = "KAFKA_GATEWAY_GROUP_CONSUMER_SESSION_TIMEOUT_MS",
        default_value_t = 45_000
    )]
    pub group_consumer_session_timeout_ms: u64,
    /// The heartbeat interval KIP-848 consumer group members are told to use (Kafka's
    /// group.consumer.heartbeat.interval.ms).
    #[arg(
        long,
        env = "KAFKA_GATEWAY_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS",
        default_value_t = 5_000
    )]
    pub group_consumer_heartbeat_interval_ms: u64,
    /// On SIGTERM, wait this long for in-flight requests before closing.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_SHUTDOWN_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub shutdown_timeout_secs: u64,
    /// How often the state topics (ledger, committed offsets, topic configs) are checked for a
    /// checkpoint that is due (see docs/state.md); 0: never checkpoint.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_CHECKPOINT_INTERVAL_SECS",
        default_value_t = 10
    )]
    pub checkpoint_interval_secs: u64,
    /// A state partition gets a checkpoint once this many records follow its newest one (and
    /// once its newest is a minute old, if any record follows it).
    #[arg(
        long,
        env = "KAFKA_GATEWAY_CHECKPOINT_MIN_RECORDS",
        default_value_t = 5000
    )]
    pub checkpoint_min_records: usize,
    /// How often every topic's retention is enforced (Kafka's
    /// `log.retention.check.interval.ms`); 0: never.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_RETENTION_CHECK_INTERVAL_SECS",
        default_value_t = 300
    )]
    pub retention_check_interval_secs: u64,
    /// Name of the KafkaGateway this gateway belongs to. Set (the operator sets it), the gateways
    /// elect one of them through a Lease to write each KafkaTopic's `status.stats`.
    #[arg(long, env = "KAFKA_GATEWAY_KUBE_GATEWAY")]
    pub kube_gateway: Option<String>,
    /// Kubernetes namespace of the KafkaGateway, its KafkaTopics and the Lease; defaults to the
    /// client's namespace (the pod's, in a cluster).
    #[arg(long, env = "POD_NAMESPACE")]
    pub kube_namespace: Option<String>,
    /// This gateway's identity in the Lease and in `status.stats.reporter`; defaults to the host
    /// name and process id.
    #[arg(long, env = "POD_NAME")]
    pub kube_identity: Option<String>,
    /// What the statistics reporter writes: disabled, summary (totals) or full (totals and
    /// per-partition offsets, up to 128 partitions).
    #[arg(
        long,
        env = "KAFKA_GATEWAY_STATS_MODE",
        value_enum,
        ignore_case = true,
        default_value = "summary"
    )]
    pub stats_mode: StatsMode,
    /// Least time between two statistics writes for one KafkaTopic.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_STATS_INTERVAL_SECONDS",
        default_value_t = 60
    )]
    pub stats_interval_seconds: u64,
    /// Cap on statistics writes per second over all KafkaTopics.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_STATS_MAX_WRITES_PER_SECOND",
        default_value_t = 10
    )]
    pub stats_max_writes_per_second: u32,
}

impl GatewayConfig {
    /// The write-ahead log's directory: `--wal-dir`, else one of its own under `--data-dir`
    /// (keyed by the listen port, so gateways sharing a data directory do not share a log);
    /// None with `--no-wal`.
    pub fn wal_dir(&self) -> Option<std::path::PathBuf> {
        if self.no_wal {
            return None;
        }
        Some(
            self.wal_dir
                .clone()
                .unwrap_or_else(|| self.data_dir.join(format!("wal-{}", self.listen.port()))),
        )
    }

    /// Whether the KafkaTopic statistics reporter runs: a KafkaGateway is named and the mode is
    /// not `Disabled`.
    pub fn stats_reporting(&self) -> bool {
        self.kube_gateway.is_some() && self.stats_mode != StatsMode::Disabled
    }

    /// The advertised host and port.
    pub fn advertised(&self) -> (String, i32) {
        if let Some(a) = &self.advertised_listener
            && let Some((host, port)) = a.rsplit_once(':')
            && let Ok(port) = port.parse()
        {
            return (host.trim_matches(['[', ']']).to_string(), port);
        }
        (self.listen.ip().to_string(), i32::from(self.listen.port()))
    }

    /// The node id given, or in Kubernetes the pod's StatefulSet ordinal; None: standalone.
    pub fn node_id(&self) -> Option<i32> {
        if self.node_id.is_some() {
            return self.node_id;
        }
        std::env::var_os("KUBERNETES_SERVICE_HOST")?;
        let host = std::env::var("HOSTNAME").ok()?;
        ordinal_of(&host)
    }

    pub fn cluster_id(&self) -> String {
        format!("seaweedfs-smq-{}", self.namespace)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }

    /// Checks values clap cannot, with messages naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(a) = &self.advertised_listener {
            match a.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {}
                _ => return Err(format!("--advertised-listener {a:?} is not HOST:PORT")),
            }
        }
        if let Some(id) = self.node_id
            && id < 0
        {
            return Err(format!("--node-id {id} must be 0 or more"));
        }
        if !(1..=smq_client::RING_SIZE).contains(&self.default_partitions) {
            return Err(format!(
                "--default-partitions {} is outside 1..={}",
                self.default_partitions,
                smq_client::RING_SIZE
            ));
        }
        if self.namespace.is_empty() || self.namespace.contains('/') {
            return Err(format!(
                "--namespace {:?} must be a non-empty name without '/'",
                self.namespace
            ));
        }
        if self.stats_interval_seconds == 0 {
            return Err("--stats-interval-seconds must be at least 1".to_string());
        }
        if self.stats_max_writes_per_second == 0 {
            return Err("--stats-max-writes-per-second must be at least 1".to_string());
        }
        if self.kube_gateway.as_deref() == Some("") {
            return Err("--kube-gateway must not be empty".to_string());
        }
        if self.max_inflight_bytes == 0 || self.max_connection_inflight_bytes == 0 {
            return Err(
                "--max-inflight-bytes and --max-connection-inflight-bytes must be positive"
                    .to_string(),
            );
        }
        if self.max_message_bytes > self.max_request_bytes {
            return Err("--max-message-bytes must not exceed --max-request-bytes".to_string());
        }
        Ok(())
    }
}

fn parse_format(s: &str) -> Result<kafka_smq_format::StorageFormat, String> {
    s.parse()
        .map_err(|e: kafka_smq_format::UnknownFormat| e.to_string())
}

/// The KafkaTopic statistics reporter's mode, a configuration value even in builds without the
/// `kube` feature.
/// How much the reporter writes (`KAFKA_GATEWAY_STATS_MODE`, the KafkaGateway's
/// `statsReporting.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatsMode {
    /// No reporting at all (no Lease, no watch).
    Disabled,
    /// Totals only (`status.stats`).
    Summary,
    /// Totals and per-partition offsets (`status.partitions`, up to 128 partitions).
    Full,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<GatewayConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("kafka-gateway").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.config.validate()?;
        Ok(cli.config)
    }

    #[test]
    fn a_plain_gateway_keeps_held_records_in_a_write_ahead_log_of_its_own() {
        let c = parse(&["--listen", "127.0.0.1:9192"]).unwrap();
        assert_eq!(
            c.wal_dir(),
            Some(std::path::PathBuf::from("kafka-gateway-data/wal-9192"))
        );
        let c = parse(&["--data-dir", "/var/lib/kgw"]).unwrap();
        assert_eq!(
            c.wal_dir(),
            Some(std::path::PathBuf::from("/var/lib/kgw/wal-9092"))
        );
        let c = parse(&["--wal-dir", "/wal"]).unwrap();
        assert_eq!(c.wal_dir(), Some(std::path::PathBuf::from("/wal")));
        assert_eq!(parse(&["--no-wal"]).unwrap().wal_dir(), None);
    }

    #[test]
    fn stats_reporting_is_off_without_a_gateway_name_and_takes_the_operators_mode_names() {
        let c = parse(&[]).unwrap();
        assert!(!c.stats_reporting());
        assert_eq!(c.stats_mode, StatsMode::Summary);
        assert_eq!(c.stats_interval_seconds, 60);
        assert_eq!(c.stats_max_writes_per_second, 10);

        // The operator writes the KafkaGateway's enum values as they are spelled in the CRD.
        let c = parse(&["--kube-gateway", "gw", "--stats-mode", "Full"]).unwrap();
        assert!(c.stats_reporting());
        assert_eq!(c.stats_mode, StatsMode::Full);
        let c = parse(&["--kube-gateway", "gw", "--stats-mode", "Disabled"]).unwrap();
        assert!(!c.stats_reporting());

        assert!(parse(&["--stats-interval-seconds", "0"]).is_err());
        assert!(parse(&["--stats-max-writes-per-second", "0"]).is_err());
        assert!(parse(&["--stats-mode", "verbose"]).is_err());
    }
}

/// The StatefulSet ordinal ending a pod's host name (`kgw-2` → 2).
fn ordinal_of(host: &str) -> Option<i32> {
    let (name, ordinal) = host.rsplit_once('-')?;
    if name.is_empty() || ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ordinal.parse().ok()
}

#[cfg(test)]
mod node_id_tests {
    use super::ordinal_of;

    #[test]
    fn ordinals_come_from_statefulset_host_names_only() {
        assert_eq!(ordinal_of("kgw-0"), Some(0));
        assert_eq!(ordinal_of("my-gateway-12"), Some(12));
        assert_eq!(ordinal_of("gateway"), None);
        assert_eq!(ordinal_of("kgw-"), None);
        assert_eq!(ordinal_of("-3"), None);
        assert_eq!(ordinal_of("kgw-7b9f"), None);
    }
}
