use kafka_protocol::error::ResponseError;
use smq_client::SmqError;
use thiserror::Error;

use crate::records::RecordError;

pub type GatewayResult<T> = Result<T, GatewayError>;

/// Everything that can go wrong in the gateway. Each variant maps to the Kafka error code a
/// client sees ([`GatewayError::kafka_code`]) and to a metric label.
#[derive(Debug, Error, Clone)]
pub enum GatewayError {
    #[error("SMQ: {0}")]
    Smq(#[from] SmqError),
    #[error("{0}")]
    Record(#[from] RecordError),
    #[error("unknown topic or partition: {0}")]
    UnknownTopicOrPartition(String),
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("invalid topic name {0:?}: {1}")]
    InvalidTopic(String, String),
    #[error("invalid partition count {0}")]
    InvalidPartitions(i32),
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("message too large: {0}")]
    MessageTooLarge(String),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("another gateway owns this partition")]
    NotLeader,
    #[error("leader epoch {requested} is older than this leader's (epoch {current})")]
    FencedLeaderEpoch { requested: i32, current: i32 },
    #[error("leader epoch {requested} is newer than this gateway's ({current})")]
    UnknownLeaderEpoch { requested: i32, current: i32 },
    #[error("an earlier produce to this partition failed; retry")]
    EarlierAppendFailed,
    /// Acknowledged bytes SMQ has not yet written reached the gateway's bound.
    #[error("{0} acknowledged bytes are waiting for SMQ to write them; retry")]
    UnflushedBacklog(usize),
    /// The partition refuses writes until an operator resolves a conflict (see
    /// `docs/state.md`, "When the write-ahead log and the ledger disagree").
    #[error("partition refuses writes: {0}")]
    WritesRefused(String),
    #[error("unsupported version {version} of API {api}")]
    UnsupportedVersion { api: i16, version: i16 },
    #[error("the operation is not supported: {0}")]
    NotSupported(String),
    #[error("out of order sequence: expected {expected}, got {got}")]
    OutOfOrderSequence { expected: i32, got: i32 },
    /// A batch skipping sequences while the missing ones may still be retried (see
    /// `ledger::producers::GAP_GRACE_MS`).
    #[error("sequence {got} skips sequence {expected}, whose batch may still be retried; retry")]
    SequenceGap { expected: i32, got: i32 },
    #[error("producer epoch {got} is older than {current}")]
    ProducerFenced { got: i16, current: i16 },
    #[error("the stored data disagrees with the ledger: {0}")]
    Corrupt(String),
    /// The gateway's write-ahead log (`--wal-dir`) could not be written or read.
    #[error("write-ahead log: {0}")]
    Wal(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// The Kafka error a client should see.
    pub fn kafka_code(&self) -> ResponseError {
        use ResponseError as E;
        match self {
            GatewayError::Smq(e) => match e {
                SmqError::InvalidPartitionCount(_) => E::InvalidPartitions,
                SmqError::TopicNotFound(_) | SmqError::PartitionNotFound { .. } => {
                    E::UnknownTopicOrPartition
                }
                SmqError::PartitionCountMismatch { .. } => E::InvalidPartitions,
                e if e.is_retriable() => match e {
                    SmqError::NoLeader { .. } => E::LeaderNotAvailable,
                    SmqError::Timeout { .. } => E::RequestTimedOut,
                    _ => E::NotEnoughReplicas,
                },
                _ => E::KafkaStorageError,
            },
            GatewayError::Record(RecordError::Crc { .. }) => E::CorruptMessage,
            GatewayError::Record(RecordError::TooLarge { .. }) => E::MessageTooLarge,
            GatewayError::Record(RecordError::UnsupportedMagic(_)) => {
                E::UnsupportedForMessageFormat
            }
            GatewayError::Record(RecordError::UnsupportedCompression(_)) => {
                E::UnsupportedCompressionType
            }
            GatewayError::Record(_) => E::CorruptMessage,
            GatewayError::UnknownTopicOrPartition(_) => E::UnknownTopicOrPartition,
            GatewayError::TopicExists(_) => E::TopicAlreadyExists,
            GatewayError::InvalidTopic(..) => E::InvalidTopicException,
            GatewayError::InvalidPartitions(_) => E::InvalidPartitions,
            GatewayError::OffsetOutOfRange { .. } => E::OffsetOutOfRange,
            GatewayError::MessageTooLarge(_) => E::MessageTooLarge,
            GatewayError::InvalidConfig(_) => E::InvalidConfig,
            GatewayError::InvalidReplicaAssignment(_) => E::InvalidReplicaAssignment,
            GatewayError::InvalidRequest(_) => E::InvalidRequest,
            GatewayError::NotLeader => E::NotLeaderOrFollower,
            GatewayError::FencedLeaderEpoch { .. } => E::FencedLeaderEpoch,
            GatewayError::UnknownLeaderEpoch { .. } => E::UnknownLeaderEpoch,
            // Retriable: the producer sends the batch again after the earlier one.
            GatewayError::EarlierAppendFailed => E::NotEnoughReplicas,
            GatewayError::UnflushedBacklog(_) => E::NotEnoughReplicas,
            GatewayError::WritesRefused(_) => E::KafkaStorageError,
            GatewayError::UnsupportedVersion { .. } => E::UnsupportedVersion,
            GatewayError::NotSupported(_) => E::InvalidRequest,
            GatewayError::OutOfOrderSequence { .. } => E::OutOfOrderSequenceNumber,
            // Retriable and not stored, like an earlier append's failure: the producer sends it
            // again after the batch it skipped.
            GatewayError::SequenceGap { .. } => E::NotEnoughReplicas,
            GatewayError::ProducerFenced { .. } => E::InvalidProducerEpoch,
            GatewayError::Corrupt(_) => E::KafkaStorageError,
            // Retriable in Kafka: a disk error on the broker.
            GatewayError::Wal(_) => E::KafkaStorageError,
            GatewayError::Internal(_) => E::UnknownServerError,
        }
    }

    pub fn code(&self) -> i16 {
        self.kafka_code().code()
    }

    pub fn metric_label(&self) -> &'static str {
        match self {
            GatewayError::Smq(e) => e.metric_label(),
            GatewayError::Record(_) => "bad_record",
            GatewayError::UnknownTopicOrPartition(_) => "unknown_topic_or_partition",
            GatewayError::TopicExists(_) => "topic_exists",
            GatewayError::InvalidTopic(..) => "invalid_topic",
            GatewayError::InvalidPartitions(_) => "invalid_partitions",
            GatewayError::OffsetOutOfRange { .. } => "offset_out_of_range",
            GatewayError::MessageTooLarge(_) => "message_too_large",
            GatewayError::InvalidConfig(_) => "invalid_config",
            GatewayError::InvalidReplicaAssignment(_) => "invalid_replica_assignment",
            GatewayError::InvalidRequest(_) => "invalid_request",
            GatewayError::NotLeader => "not_leader",
            GatewayError::FencedLeaderEpoch { .. } => "fenced_leader_epoch",
            GatewayError::UnknownLeaderEpoch { .. } => "unknown_leader_epoch",
            GatewayError::EarlierAppendFailed => "earlier_append_failed",
            GatewayError::UnflushedBacklog(_) => "unflushed_backlog",
            GatewayError::WritesRefused(_) => "writes_refused",
            GatewayError::UnsupportedVersion { .. } => "unsupported_version",
            GatewayError::NotSupported(_) => "not_supported",
            GatewayError::OutOfOrderSequence { .. } => "out_of_order_sequence",
            GatewayError::SequenceGap { .. } => "sequence_gap",
            GatewayError::ProducerFenced { .. } => "producer_fenced",
            GatewayError::Corrupt(_) => "corrupt",
            GatewayError::Wal(_) => "wal",
            GatewayError::Internal(_) => "internal",
        }
    }
}
