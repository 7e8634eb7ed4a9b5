//! The KafkaTopic reconciler.

pub mod decide;
pub mod deletion;
pub mod memo;
pub mod reconcile;

#[cfg(test)]
mod decide_tests;
#[cfg(test)]
mod deletion_tests;
