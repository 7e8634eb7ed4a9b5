//! Kubernetes operator for KafkaGateway fleets and KafkaTopics stored in the SeaweedFS message
//! queue. See `operator/README.md` for the semantics users rely on.

pub mod conditions;
pub mod context;
pub mod controller;
pub mod error;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod topic;

pub use error::{Error, Result};
