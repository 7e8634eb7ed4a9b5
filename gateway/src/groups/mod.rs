//! Kafka's classic consumer-group protocol: the gateway is the coordinator of every group. Group
//! membership lives in memory (after a restart members get UNKNOWN_MEMBER_ID and rejoin);
//! committed offsets are stored in SMQ before a commit is answered.

pub mod consumer;
mod coordinator;
mod offsets;

pub use consumer::ConsumerGroups;
pub use coordinator::{Coordinator, GroupView, JoinArgs, JoinOutcome, MemberView, State};
pub use offsets::{Committed, GroupOffsets, OffsetStore};
