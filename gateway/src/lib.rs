//! Kafka wire-protocol gateway on the SeaweedFS message queue (SMQ).
//!
//! Layers, outside in: `server` (TCP, framing, connections) → `protocol` (one handler per Kafka
//! API) → `storage` (topics and partitions on SMQ) → `ledger` (the Kafka offsets) and `records`
//! (Kafka's batch format and how a record is stored in SMQ).

pub mod budget;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod groups;
pub mod http;
pub mod kube_stats;
pub mod ledger;
pub mod ledger_tools;
pub mod metrics;
pub mod protocol;
pub mod record_value;
pub mod records;
pub mod server;
pub mod state;
pub mod storage;
