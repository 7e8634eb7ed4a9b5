//! The reporting mode, a configuration value even in builds without the `kube` feature.

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
