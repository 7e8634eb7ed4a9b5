//! Electing the one gateway of a KafkaGateway that writes statistics, through a
//! coordination.k8s.io Lease. The algorithm is client-go's in small (as in the operator, whose
//! crate the gateway does not depend on): the holder renews every `renew_every`; the others take
//! over once `renewTime + leaseDurationSeconds` has passed. Writes use `replace` with the
//! resourceVersion just read, so two candidates cannot both win a round.
//!
//! One addition: a gateway's figures are current only for partitions it writes, so a gateway
//! that writes partitions ("eager") asks a holder that writes none to hand over, by naming itself
//! in the Lease annotation [`PREFERRED_HOLDER`]; such a holder then releases the Lease, and the
//! others leave it to the named gateway until the Lease expires.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use crate::error::{GatewayError, GatewayResult};

/// Lease annotation: the gateway that writes partitions and wants to report.
pub const PREFERRED_HOLDER: &str = "kafka.seaweedfs.com/preferred-holder";

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
    /// Someone else holds it (or it was released for them).
    Follow {
        holder: String,
    },
    /// We hold it but write no partitions, and a gateway that does asked for it: release it.
    Release,
    /// Someone else holds it and we write partitions: ask for it.
    Prefer,
}

/// The Lease as far as the election cares.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen<'a> {
    pub spec: Option<&'a LeaseSpec>,
    pub preferred: Option<&'a str>,
}

pub fn decide(
    lease: Option<Seen<'_>>,
    me: &str,
    eager: bool,
    now: Timestamp,
    default_duration: Duration,
) -> Step {
    let Some(lease) = lease else {
        return Step::Create;
    };
    let default_spec = LeaseSpec::default();
    let spec = lease.spec.unwrap_or(&default_spec);
    let preferred = lease.preferred.filter(|p| !p.is_empty());
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
        // Released: for the gateway it was released to, if any.
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

fn annotations(lease: &mut Lease) -> &mut BTreeMap<String, String> {
    lease.metadata.annotations.get_or_insert_with(BTreeMap::new)
}

/// One round: whether this gateway holds the Lease afterwards.
async fn round(api: &Api<Lease>, cfg: &LeaseConfig, eager: bool) -> GatewayResult<bool> {
    let now = Timestamp::now();
    let current = api
        .get_opt(&cfg.name)
        .await
        .map_err(|e| kube_error("reading the Lease", e))?;
    let step = decide(
        current.as_ref().map(|l| Seen {
            spec: l.spec.as_ref(),
            preferred: l
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(PREFERRED_HOLDER))
                .map(String::as_str),
        }),
        &cfg.identity,
        eager,
        now,
        cfg.duration,
    );
    // Every write below is a replace with the resourceVersion just read: a compare-and-swap.
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
            let acquiring = step == Step::Acquire;
            lease.spec = Some(held_spec(cfg, lease.spec.as_ref(), now, acquiring));
            if acquiring {
                // Whoever asked has been served, or has gone (the Lease expired).
                annotations(&mut lease).remove(PREFERRED_HOLDER);
            }
            api.replace(&cfg.name, &PostParams::default(), &lease)
                .await
                .map(|_| true)
        }
        (Step::Release, Some(mut lease)) => {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
            }
            tracing::info!(lease = %cfg.name, "handing the statistics lease to a gateway that writes partitions");
            api.replace(&cfg.name, &PostParams::default(), &lease)
                .await
                .map(|_| false)
        }
        (Step::Prefer, Some(mut lease)) => {
            annotations(&mut lease).insert(PREFERRED_HOLDER.into(), cfg.identity.clone());
            api.replace(&cfg.name, &PostParams::default(), &lease)
                .await
                .map(|_| false)
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
///
/// `eager` says whether this gateway currently writes partitions.
pub fn spawn(
    api: Api<Lease>,
    cfg: LeaseConfig,
    eager: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut last_renewal: Option<tokio::time::Instant> = None;
        loop {
            let eager_now = *eager.borrow();
            match round(&api, &cfg, eager_now).await {
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

    fn seen<'a>(spec: &'a LeaseSpec, preferred: Option<&'a str>) -> Option<Seen<'a>> {
        Some(Seen {
            spec: Some(spec),
            preferred,
        })
    }

    #[test]
    fn creates_renews_follows_and_takes_over_only_after_expiry_or_release() {
        let d = Duration::from_secs(15);
        for eager in [false, true] {
            assert_eq!(decide(None, "a", eager, at(100), d), Step::Create);
            assert_eq!(
                decide(seen(&held_by("a", 90), None), "a", eager, at(100), d),
                Step::Renew
            );
            assert_eq!(
                decide(seen(&held_by("b", 80), None), "a", eager, at(100), d),
                Step::Acquire
            );
            // Released on shutdown: taken over at once.
            let mut released = held_by("b", 99);
            released.holder_identity = None;
            assert_eq!(
                decide(seen(&released, None), "a", eager, at(100), d),
                Step::Acquire
            );
        }
        assert_eq!(
            decide(seen(&held_by("b", 90), None), "a", false, at(100), d),
            Step::Follow { holder: "b".into() }
        );
    }

    #[test]
    fn a_holder_that_writes_no_partitions_hands_over_to_one_that_does() {
        let d = Duration::from_secs(15);
        // a writes partitions, b holds the Lease: a asks, once.
        let held = held_by("b", 95);
        assert_eq!(
            decide(seen(&held, None), "a", true, at(100), d),
            Step::Prefer
        );
        assert_eq!(
            decide(seen(&held, Some("a")), "a", true, at(100), d),
            Step::Follow { holder: "b".into() }
        );
        // b writes none: it releases. Had it written partitions too, it would keep the Lease.
        assert_eq!(
            decide(seen(&held, Some("a")), "b", false, at(100), d),
            Step::Release
        );
        assert_eq!(
            decide(seen(&held, Some("a")), "b", true, at(100), d),
            Step::Renew
        );
        // Released for a: the others leave it to a, a takes it.
        let mut released = held.clone();
        released.holder_identity = None;
        assert_eq!(
            decide(seen(&released, Some("a")), "c", false, at(100), d),
            Step::Follow { holder: "a".into() }
        );
        assert_eq!(
            decide(seen(&released, Some("a")), "a", true, at(100), d),
            Step::Acquire
        );
        // Had a gone away, the Lease expires and anyone takes it.
        assert_eq!(
            decide(seen(&released, Some("a")), "c", false, at(200), d),
            Step::Acquire
        );
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
