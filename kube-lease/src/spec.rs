//! The spec a holder writes when it takes or renews the Lease.

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;

use crate::LeaseConfig;

pub(crate) fn held_spec(
    cfg: &LeaseConfig,
    previous: Option<&LeaseSpec>,
    now: Timestamp,
    acquiring: bool,
) -> LeaseSpec {
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.duration.as_secs() as i32),
        acquire_time: if acquiring {
            Some(MicroTime(now))
        } else {
            previous.and_then(|p| p.acquire_time.clone())
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if acquiring && previous.is_some() {
            transitions + 1
        } else {
            transitions
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn takeover_counts_a_transition_and_renewal_keeps_the_acquire_time() {
        let cfg = LeaseConfig {
            name: "gw-stats".into(),
            namespace: "ns".into(),
            identity: "gw-1".into(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        };
        let old = LeaseSpec {
            holder_identity: Some("gw-0".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(at(10))),
            lease_transitions: Some(2),
            ..Default::default()
        };
        let taken = held_spec(&cfg, Some(&old), at(100), true);
        assert_eq!(taken.lease_transitions, Some(3));
        assert_eq!(taken.holder_identity.as_deref(), Some("gw-1"));
        assert_eq!(taken.lease_duration_seconds, Some(15));
        let renewed = held_spec(&cfg, Some(&taken), at(105), false);
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(100))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(105))));
    }

    #[test]
    fn a_created_lease_starts_at_no_transitions() {
        let cfg = LeaseConfig {
            name: "l".into(),
            namespace: "ns".into(),
            identity: "a".into(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        };
        let created = held_spec(&cfg, None, at(7), true);
        assert_eq!(created.lease_transitions, Some(0));
        assert_eq!(created.acquire_time, Some(MicroTime(at(7))));
    }
}
