//! The gateway's own state in SMQ: the topics it keeps it in (`kafka-system/...`: the offset
//! ledger, committed offsets, topic configs) and the checkpoints that bound what a start reads.

mod checkpoint;
mod topic;

pub use checkpoint::{CheckpointPolicy, Loaded, Replay, Written};
pub use topic::{SYSTEM_NAMESPACE, SystemTopic, Tail};
