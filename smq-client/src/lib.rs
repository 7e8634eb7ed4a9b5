//! Client for the SeaweedFS message queue (SMQ) broker gRPC API, shared by the gateway and the
//! operator.
//!
//! The broker's real behaviour (see `docs/smq-protocol.md`) shapes this crate:
//! data RPCs are not proxied, so they are routed to each partition's leader; the Partition must be
//! sent back exactly as looked up; a publish stream acks each record once, in order, after an empty
//! "hello"; a broken stream leaves every unacked record's fate unknown.

mod breaker;
mod client;
mod config;
mod durability;
mod error;
mod filer_files;
mod lock;
mod log_files;
mod partition;
mod publisher;
mod reader;
mod retry;
mod topic_catalog;
mod topics;

pub use breaker::{BreakerState, CircuitBreaker};
pub use client::{SmqClient, UnavailablePartition};
pub use config::SmqConfig;
pub use durability::FlushTiming;
pub use error::{SmqError, SmqResult, codes};
pub use filer_files::{FilerEntry, log_file_start_ns};
pub use lock::{LockLease, LockOutcome};
pub use log_files::{FlushedRecord, Parsed, PartitionLogFiles, generation_dir, parse_records};
pub use partition::{PartitionAssignment, RING_SIZE, TopicLayout, ring_range};
pub use publisher::{PartitionPublisher, PendingAck, PublishAck};
pub use reader::{FetchResult, RangeInfo, Subscription};
pub use retry::{Backoff, RetryPolicy};
pub use topic_catalog::{
    CATALOG_SEPARATOR, CatalogEntry, DeletionRequest, RetiredTopic, extension_name,
    incarnation_name, parse_extension, parse_incarnation,
};
pub use topics::{TopicConfig, TopicSpec};

pub use smq_proto::messaging_pb::DataMessage;
pub use smq_proto::schema_pb::{RecordType, Topic};

/// Builds an SMQ topic identifier.
pub fn topic(namespace: &str, name: &str) -> Topic {
    Topic {
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}
