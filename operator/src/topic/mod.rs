//! The KafkaTopic reconciler.

pub mod decide;
pub mod memo;
pub mod reconcile;

#[cfg(test)]
mod decide_tests;
