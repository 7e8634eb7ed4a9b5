//! The crate's one error type.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("SMQ: {0}")]
    Smq(#[from] smq_client::SmqError),

    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),

    /// The object lacks something the API server always sets (name, namespace, uid).
    #[error("object is missing {0}")]
    MissingObjectKey(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Short, stable label for the `errors` metric.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(s)) => {
                format!("kube_api_{}", s.reason.to_ascii_lowercase())
            }
            Error::Kube(_) => "kube".into(),
            Error::Smq(e) => format!("smq_{}", e.metric_label()),
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer".into(),
            },
            Error::Serialization(_) => "serialization".into(),
            Error::MissingObjectKey(_) => "missing_object_key".into(),
        }
    }

    /// Whether retrying soon can help (a conflict or an unreachable backend) rather than waiting
    /// for a change of the object.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(s)) => s.code == 409 || s.code == 429 || s.code >= 500,
            Error::Kube(_) => true,
            Error::Smq(e) => e.is_retriable(),
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.is_transient(),
                _ => true,
            },
            Error::Serialization(_) | Error::MissingObjectKey(_) => false,
        }
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Self {
        Error::Finalizer(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable_and_see_through_the_finalizer_wrapper() {
        let smq = Error::Smq(smq_client::SmqError::TopicNotFound("kafka/t".into()));
        assert_eq!(smq.metric_label(), "smq_topic_not_found");
        let wrapped: Error = kube::runtime::finalizer::Error::ApplyFailed(smq).into();
        assert_eq!(wrapped.metric_label(), "smq_topic_not_found");
        assert_eq!(
            Error::MissingObjectKey("uid").metric_label(),
            "missing_object_key"
        );
    }
}
