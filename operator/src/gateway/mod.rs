//! The KafkaGateway reconciler.

pub mod conflict;
pub mod reconcile;
pub mod resources;
pub mod status;
