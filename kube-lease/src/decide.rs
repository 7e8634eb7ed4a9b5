//! The election's rule: what a candidate does with the Lease as it reads it. Pure, so every case
//! is unit-tested without an API server.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::PREFERRED_HOLDER;

/// Whether a candidate takes part in the preferred-holder handover, and how.
///
/// With it on, a candidate that should hold the Lease ("eager": for the reporter, a gateway that
/// writes partitions) names itself in the annotation [`PREFERRED_HOLDER`] when another holds it;
/// a holder that is not eager then releases the Lease, and the other candidates leave a Lease
/// released for someone to that one until it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handover {
    /// Whoever holds a live Lease keeps it; the annotation is ignored (the operator).
    Off,
    On {
        eager: bool,
    },
}

/// What to do with the Lease as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Create,
    /// We hold it: renew.
    Renew,
    /// Expired or released: take it over.
    Acquire,
    /// Someone else holds it (or it was released for them).
    Follow {
        holder: String,
    },
    /// Handover only: we hold it, are not eager, and an eager candidate asked for it.
    Release,
    /// Handover only: someone else holds it and we are eager: ask for it.
    Prefer,
}

/// The Lease as far as the election cares.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen<'a> {
    pub spec: Option<&'a LeaseSpec>,
    pub preferred: Option<&'a str>,
}

impl<'a> Seen<'a> {
    pub fn of(lease: &'a Lease) -> Self {
        Seen {
            spec: lease.spec.as_ref(),
            preferred: lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(PREFERRED_HOLDER))
                .map(String::as_str),
        }
    }
}

/// `default_duration` applies when the Lease does not say how long it lasts.
pub fn decide(
    lease: Option<Seen<'_>>,
    me: &str,
    handover: Handover,
    now: Timestamp,
    default_duration: Duration,
) -> Step {
    let Some(lease) = lease else {
        return Step::Create;
    };
    // A Lease without a spec is one nobody holds: taken over like a released one.
    let default_spec = LeaseSpec::default();
    let spec = lease.spec.unwrap_or(&default_spec);
    let (eager, preferred) = match handover {
        Handover::Off => (false, None),
        Handover::On { eager } => (eager, lease.preferred.filter(|p| !p.is_empty())),
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return match preferred {
            Some(p) if p != me && !eager => Step::Release,
            _ => Step::Renew,
        };
    }
    let duration = spec
        .lease_duration_seconds
        .map(|s| SignedDuration::from_secs(i64::from(s)))
        .unwrap_or_else(|| {
            SignedDuration::try_from(default_duration).unwrap_or(SignedDuration::from_secs(15))
        });
    let live = matches!(&spec.renew_time, Some(MicroTime(renewed)) if *renewed + duration > now);
    if !live {
        return Step::Acquire;
    }
    if holder.is_empty() {
        // Released: for the candidate it was released to, if any.
        return match preferred {
            Some(p) if p != me => Step::Follow { holder: p.into() },
            _ => Step::Acquire,
        };
    }
    if eager && preferred != Some(me) {
        Step::Prefer
    } else {
        Step::Follow { holder }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFF: Handover = Handover::Off;
    const EAGER: Handover = Handover::On { eager: true };
    const IDLE: Handover = Handover::On { eager: false };

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(renewed))),
            ..Default::default()
        }
    }

    fn seen<'a>(spec: &'a LeaseSpec, preferred: Option<&'a str>) -> Option<Seen<'a>> {
        Some(Seen {
            spec: Some(spec),
            preferred,
        })
    }

    #[test]
    fn creates_renews_follows_and_takes_over_only_after_expiry_or_release() {
        let d = Duration::from_secs(15);
        for handover in [OFF, IDLE, EAGER] {
            assert_eq!(decide(None, "a", handover, at(100), d), Step::Create);
            assert_eq!(
                decide(seen(&held_by("a", 90), None), "a", handover, at(100), d),
                Step::Renew
            );
            assert_eq!(
                decide(seen(&held_by("b", 80), None), "a", handover, at(100), d),
                Step::Acquire
            );
            // Released on shutdown: taken over at once.
            let mut released = held_by("b", 99);
            released.holder_identity = None;
            assert_eq!(
                decide(seen(&released, None), "a", handover, at(100), d),
                Step::Acquire
            );
            assert_eq!(
                decide(seen(&held_by("", 99), None), "a", handover, at(100), d),
                Step::Acquire
            );
        }
        for handover in [OFF, IDLE] {
            assert_eq!(
                decide(seen(&held_by("b", 90), None), "a", handover, at(100), d),
                Step::Follow { holder: "b".into() }
            );
        }
    }

    #[test]
    fn the_leases_own_duration_wins_over_the_default() {
        let mut spec = held_by("b", 90);
        spec.lease_duration_seconds = Some(5);
        let d = Duration::from_secs(15);
        assert_eq!(
            decide(seen(&spec, None), "a", OFF, at(100), d),
            Step::Acquire
        );
        spec.lease_duration_seconds = None;
        assert_eq!(
            decide(seen(&spec, None), "a", OFF, at(100), d),
            Step::Follow { holder: "b".into() }
        );
    }

    #[test]
    fn a_lease_without_a_spec_is_free() {
        let specless = Some(Seen::default());
        for handover in [OFF, IDLE, EAGER] {
            assert_eq!(
                decide(specless, "a", handover, at(100), Duration::from_secs(15)),
                Step::Acquire
            );
        }
    }

    #[test]
    fn a_holder_that_is_not_eager_hands_over_to_one_that_is() {
        let d = Duration::from_secs(15);
        // a writes partitions, b holds the Lease: a asks, once.
        let held = held_by("b", 95);
        assert_eq!(
            decide(seen(&held, None), "a", EAGER, at(100), d),
            Step::Prefer
        );
        assert_eq!(
            decide(seen(&held, Some("a")), "a", EAGER, at(100), d),
            Step::Follow { holder: "b".into() }
        );
        // b writes none: it releases. Had it written partitions too, it would keep the Lease.
        assert_eq!(
            decide(seen(&held, Some("a")), "b", IDLE, at(100), d),
            Step::Release
        );
        assert_eq!(
            decide(seen(&held, Some("a")), "b", EAGER, at(100), d),
            Step::Renew
        );
        // Released for a: the others leave it to a, a takes it.
        let mut released = held.clone();
        released.holder_identity = None;
        assert_eq!(
            decide(seen(&released, Some("a")), "c", IDLE, at(100), d),
            Step::Follow { holder: "a".into() }
        );
        assert_eq!(
            decide(seen(&released, Some("a")), "a", EAGER, at(100), d),
            Step::Acquire
        );
        // Had a gone away, the Lease expires and anyone takes it.
        assert_eq!(
            decide(seen(&released, Some("a")), "c", IDLE, at(200), d),
            Step::Acquire
        );
        // An empty annotation asks for nothing.
        assert_eq!(
            decide(seen(&held, Some("")), "b", IDLE, at(100), d),
            Step::Renew
        );
    }

    #[test]
    fn without_the_handover_the_annotation_changes_nothing() {
        let d = Duration::from_secs(15);
        let held = held_by("b", 95);
        assert_eq!(
            decide(seen(&held, Some("a")), "b", OFF, at(100), d),
            Step::Renew
        );
        assert_eq!(
            decide(seen(&held, None), "a", OFF, at(100), d),
            Step::Follow { holder: "b".into() }
        );
        let mut released = held.clone();
        released.holder_identity = None;
        assert_eq!(
            decide(seen(&released, Some("a")), "c", OFF, at(100), d),
            Step::Acquire
        );
    }

    #[test]
    fn seen_reads_the_spec_and_the_annotation() {
        let mut lease = Lease {
            spec: Some(held_by("b", 1)),
            ..Default::default()
        };
        assert!(Seen::of(&lease).preferred.is_none());
        lease.metadata.annotations = Some([(PREFERRED_HOLDER.to_string(), "a".to_string())].into());
        let seen = Seen::of(&lease);
        assert_eq!(seen.preferred, Some("a"));
        assert_eq!(
            seen.spec.and_then(|s| s.holder_identity.as_deref()),
            Some("b")
        );
    }
}
