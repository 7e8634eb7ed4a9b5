//! Leader election through a coordination.k8s.io Lease, so two operator replicas never reconcile
//! at once. kube has no election of its own; this is the client-go algorithm in small: the holder
//! renews every `renew_every`; others take over once `renewTime + leaseDurationSeconds` passed.
//! Writes use `replace` with the read resourceVersion, so two candidates cannot both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
    pub renew_every: Duration,
}

/// What to do with the Lease as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Create,
    /// We hold it: renew.
    Renew,
    /// Expired or released by another holder: take it over.
    Acquire,
    /// Someone else holds it.
    Follow {
        holder: String,
    },
}

pub fn decide(
    spec: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    default_duration: Duration,
) -> Step {
    let Some(spec) = spec else {
        return Step::Create;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return Step::Renew;
    }
    if holder.is_empty() {
        return Step::Acquire;
    }
    let duration = spec
        .lease_duration_seconds
        .map(|s| SignedDuration::from_secs(i64::from(s)))
        .unwrap_or_else(|| {
            SignedDuration::try_from(default_duration).unwrap_or(SignedDuration::from_secs(15))
        });
    match &spec.renew_time {
        Some(MicroTime(renewed)) if *renewed + duration > now => Step::Follow { holder },
        _ => Step::Acquire,
    }
}

fn held_spec(
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

/// One round: returns whether this replica holds the Lease afterwards.
async fn round(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool> {
    let now = Timestamp::now();
    let current = api.get_opt(&cfg.name).await?;
    let step = decide(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &cfg.identity,
        now,
        cfg.duration,
    );
    let result = match (&step, current) {
        (Step::Create, _) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(held_spec(cfg, None, now, true)),
            };
            api.create(&PostParams::default(), &lease)
                .await
                .map(|_| true)
        }
        (Step::Renew | Step::Acquire, Some(mut lease)) => {
            lease.spec = Some(held_spec(
                cfg,
                lease.spec.as_ref(),
                now,
                step == Step::Acquire,
            ));
            // resourceVersion from the read makes this a compare-and-swap.
            api.replace(&cfg.name, &PostParams::default(), &lease)
                .await
                .map(|_| true)
        }
        (Step::Follow { .. }, _) | (_, None) => Ok(false),
    };
    match result {
        Ok(held) => Ok(held),
        // Lost a race with another candidate: not the leader this round.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(Error::Lease(e.to_string())),
    }
}

/// Runs the election forever, publishing leadership on the returned channel. A leader that fails
/// to renew within the lease duration steps down (publishes false) before anyone else can take
/// over, since a takeover needs the full duration to pass.
pub fn spawn(api: Api<Lease>, cfg: LeaseConfig) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut last_renewal: Option<tokio::time::Instant> = None;
        loop {
            match round(&api, &cfg).await {
                Ok(true) => last_renewal = Some(tokio::time::Instant::now()),
                Ok(false) => last_renewal = None,
                Err(e) => tracing::warn!(error = %e, "lease round failed"),
            }
            // Step down a little before the lease could be taken over by someone else.
            let leading = last_renewal.is_some_and(|t| t.elapsed() < cfg.duration.mul_f32(0.8));
            tx.send_if_modified(|l| std::mem::replace(l, leading) != leading);
            tokio::time::sleep(cfg.renew_every).await;
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn creates_renews_follows_and_takes_over_only_after_expiry() {
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "a", at(100), d), Step::Create);
        assert_eq!(
            decide(Some(&held_by("a", 90)), "a", at(100), d),
            Step::Renew
        );
        assert_eq!(
            decide(Some(&held_by("b", 90)), "a", at(100), d),
            Step::Follow { holder: "b".into() }
        );
        assert_eq!(
            decide(Some(&held_by("b", 80)), "a", at(100), d),
            Step::Acquire
        );
        assert_eq!(
            decide(Some(&held_by("", 99)), "a", at(100), d),
            Step::Acquire
        );
    }

    #[test]
    fn takeover_counts_a_transition_and_renewal_keeps_the_acquire_time() {
        let cfg = LeaseConfig {
            name: "l".into(),
            namespace: "ns".into(),
            identity: "a".into(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        };
        let mut old = held_by("b", 10);
        old.lease_transitions = Some(2);
        let taken = held_spec(&cfg, Some(&old), at(100), true);
        assert_eq!(taken.lease_transitions, Some(3));
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        let renewed = held_spec(&cfg, Some(&taken), at(105), false);
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(100))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(105))));
    }
}
