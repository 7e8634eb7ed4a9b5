//! Leader election through a coordination.k8s.io Lease, for the operator (one replica reconciles)
//! and for the gateways' statistics reporter (one gateway of a KafkaGateway writes KafkaTopic
//! statistics). kube has no election of its own; this is client-go's algorithm in small: the
//! holder renews every `renew_every`; the others take over once `renewTime +
//! leaseDurationSeconds` has passed, or at once when the holder released it. Writes use `replace`
//! with the resourceVersion just read, so two candidates cannot both win a round.
//!
//! The reporter adds a handover ([`Handover`]): a gateway's figures are current only for the
//! partitions it writes, so one that writes partitions asks a holder that writes none to hand the
//! Lease over. The operator runs with it off, and then the handover annotation is never read or
//! written.

mod decide;
mod election;
mod error;
mod spec;

pub use decide::{Handover, Seen, Step, decide};
pub use election::{LeaseConfig, spawn};
pub use error::LeaseError;

/// Lease annotation: the candidate that asks the holder to hand over (see [`Handover`]).
pub const PREFERRED_HOLDER: &str = "kafka.seaweedfs.com/preferred-holder";
