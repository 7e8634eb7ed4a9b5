//! Building condition lists so that a no-op reconcile produces a byte-identical status: a
//! condition keeps its `lastTransitionTime` unless its status flips, so comparing old and new
//! status tells whether a write is needed (status writes are what wake every watcher).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition without its timestamp: what the decision logic produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    /// "True", "False" or "Unknown".
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

impl Cond {
    pub fn yes(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Cond::new(type_, "True", reason, message)
    }

    pub fn no(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Cond::new(type_, "False", reason, message)
    }

    pub fn new(
        type_: &'static str,
        status: &'static str,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Cond {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Turns `desired` into full conditions. `lastTransitionTime` comes from `previous` when the
/// status of that type did not change, else it is `now`. Conditions absent from `desired` are
/// dropped. The order is that of `desired`, so equal inputs give equal output.
pub fn materialize(
    previous: &[Condition],
    desired: &[Cond],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|d| {
            let status = d.status;
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == d.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: d.type_.to_string(),
                status: d.status.to_string(),
                reason: d.reason.to_string(),
                message: d.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The reason of condition `type_`, if present.
pub fn reason_of<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.reason.as_str())
}

pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn unchanged_status_keeps_its_transition_time() {
        let first = materialize(
            &[],
            &[Cond::new("Ready", "True", "Reconciled", "ok")],
            Some(1),
            &at(100),
        );
        let again = materialize(
            &first,
            &[Cond::new("Ready", "True", "Reconciled", "ok")],
            Some(1),
            &at(200),
        );
        assert_eq!(first, again);
    }

    #[test]
    fn a_flip_takes_the_new_time_and_a_reason_change_alone_does_not() {
        let first = materialize(
            &[],
            &[Cond::new("Ready", "True", "Reconciled", "ok")],
            Some(1),
            &at(100),
        );
        let reason = materialize(
            &first,
            &[Cond::new("Ready", "True", "Other", "ok")],
            Some(2),
            &at(200),
        );
        assert_eq!(reason[0].last_transition_time, at(100));
        assert_eq!(reason[0].observed_generation, Some(2));
        let flipped = materialize(
            &reason,
            &[Cond::new("Ready", "False", "Broken", "no")],
            Some(2),
            &at(300),
        );
        assert_eq!(flipped[0].last_transition_time, at(300));
        assert_eq!(flipped[0].status, "False");
    }

    #[test]
    fn conditions_not_desired_are_dropped() {
        let first = materialize(
            &[],
            &[
                Cond::new("Ready", "True", "Reconciled", ""),
                Cond::new("UnsupportedConfig", "True", "UnsupportedConfig", "x"),
            ],
            Some(1),
            &at(1),
        );
        let next = materialize(
            &first,
            &[Cond::new("Ready", "True", "Reconciled", "")],
            Some(1),
            &at(2),
        );
        assert_eq!(next.len(), 1);
        assert_eq!(reason_of(&next, "Ready"), Some("Reconciled"));
        assert_eq!(reason_of(&next, "UnsupportedConfig"), None);
    }
}
