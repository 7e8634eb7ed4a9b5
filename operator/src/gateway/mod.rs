//! The KafkaGateway reconciler.

pub mod reconcile;
pub mod resources;
pub mod status;
