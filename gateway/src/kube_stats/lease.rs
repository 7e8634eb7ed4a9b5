//! Electing the one gateway of a KafkaGateway that writes statistics, through a
//! coordination.k8s.io Lease. The algorithm is client-go's in small (as in the operator, whose
//! crate the gateway does not depend on): the holder renews every `renew_every`; the others take
//! over once `renewTime + leaseDurationSeconds` has passed. Writes use `replace` with the
//! resourceVersion just read, so two candidates cannot both win a round.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use crate::error::{GatewayError, GatewayResult};

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
    /// Expired or released: take it over.
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

fn kube_error(what: &str, e: kube::Error) -> GatewayError {
    GatewayError::Kube(format!("{what}: {e}"))
}

/// One round: whether this gateway holds the Lease afterwards.
async fn round(api: &Api<Lease>, cfg: &LeaseConfig) -> GatewayResult<bool> {
    let now = Timestamp::now();
    let current = api
        .get_opt(&cfg.name)
        .await
        .map_err(|e| kube_error("reading the Lease", e))?;
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
            // The resourceVersion from the read makes this a compare-and-swap.
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
        Err(e) => Err(kube_error("writing the Lease", e)),
    }
}

/// Gives the Lease up (empty holder) if we hold it, so another gateway takes over at once
/// instead of after the lease duration.
async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> GatewayResult<()> {
    let Some(mut lease) = api
        .get_opt(&cfg.name)
        .await
        .map_err(|e| kube_error("reading the Lease", e))?
    else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    api.replace(&cfg.name, &PostParams::default(), &lease)
        .await
        .map_err(|e| kube_error("releasing the Lease", e))?;
    Ok(())
}

/// Runs the election until `shutdown`, publishing leadership on the returned channel. A leader
/// that fails to renew steps down (publishes false) before anyone else can take over, since a
/// takeover needs the whole duration to pass. On shutdown it releases the Lease.
pub fn spawn(
    api: Api<Lease>,
    cfg: LeaseConfig,
    mut shutdown: watch::Receiver<bool>,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut last_renewal: Option<tokio::time::Instant> = None;
        loop {
            match round(&api, &cfg).await {
                Ok(true) => last_renewal = Some(tokio::time::Instant::now()),
                Ok(false) => last_renewal = None,
                Err(e) => {
                    tracing::warn!(error = %e, lease = %cfg.name, "statistics lease round failed")
                }
            }
            let leading = last_renewal.is_some_and(|t| t.elapsed() < cfg.duration.mul_f32(0.8));
            if tx.send_if_modified(|l| std::mem::replace(l, leading) != leading) {
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, leading, "statistics reporter leadership changed");
            }
            tokio::select! {
                _ = tokio::time::sleep(cfg.renew_every) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        tx.send_replace(false);
        if last_renewal.is_some()
            && let Err(e) = release(&api, &cfg).await
        {
            tracing::warn!(error = %e, "could not release the statistics lease");
        }
    });
    (rx, task)
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
    fn creates_renews_follows_and_takes_over_only_after_expiry_or_release() {
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
        // Released on shutdown: taken over at once.
        let mut released = held_by("b", 99);
        released.holder_identity = None;
        assert_eq!(decide(Some(&released), "a", at(100), d), Step::Acquire);
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
        let mut old = held_by("gw-0", 10);
        old.lease_transitions = Some(2);
        let taken = held_spec(&cfg, Some(&old), at(100), true);
        assert_eq!(taken.lease_transitions, Some(3));
        assert_eq!(taken.holder_identity.as_deref(), Some("gw-1"));
        let renewed = held_spec(&cfg, Some(&taken), at(105), false);
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(100))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(105))));
    }
}
