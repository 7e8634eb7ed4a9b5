//! The crate's one error type.

use thiserror::Error;

/// A round of the election that could not be completed; the next round tries again.
#[derive(Debug, Error)]
pub enum LeaseError {
    #[error("reading the Lease: {0}")]
    Read(#[source] kube::Error),

    #[error("writing the Lease: {0}")]
    Write(#[source] kube::Error),

    #[error("releasing the Lease: {0}")]
    Release(#[source] kube::Error),
}
