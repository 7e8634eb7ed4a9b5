//! The election against the API server: one round per `renew_every`, leadership published on a
//! watch channel, the Lease released on shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use crate::decide::{Handover, Seen, Step, decide};
use crate::spec::held_spec;
use crate::{LeaseError, PREFERRED_HOLDER};

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
    pub renew_every: Duration,
}

fn annotations(lease: &mut Lease) -> &mut BTreeMap<String, String> {
    lease.metadata.annotations.get_or_insert_with(BTreeMap::new)
}

/// One round: whether this candidate holds the Lease afterwards.
async fn round(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    handover: Handover,
) -> Result<bool, LeaseError> {
    let now = Timestamp::now();
    let current = api.get_opt(&cfg.name).await.map_err(LeaseError::Read)?;
    let step = decide(
        current.as_ref().map(Seen::of),
        &cfg.identity,
        handover,
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
            if acquiring && handover != Handover::Off {
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
            tracing::info!(lease = %cfg.name, "handing the lease over to the candidate that asked for it");
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
        Err(e) => Err(LeaseError::Write(e)),
    }
}

/// Gives the Lease up (empty holder) if we hold it, so another candidate takes over at once
/// instead of after the lease duration.
async fn release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<(), LeaseError> {
    let Some(mut lease) = api.get_opt(&cfg.name).await.map_err(LeaseError::Read)? else {
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
        .map_err(LeaseError::Release)?;
    Ok(())
}

/// Runs the election until `shutdown` completes, publishing leadership on the returned channel.
/// A leader that fails to renew steps down (publishes false) before anyone else can take over,
/// since a takeover needs the whole duration to pass. On shutdown it releases the Lease; the
/// returned task ends after that.
///
/// `eager` turns the handover on ([`Handover`]) and says, at each round, whether this candidate
/// is eager; `None` leaves it off.
pub fn spawn(
    api: Api<Lease>,
    cfg: LeaseConfig,
    eager: Option<watch::Receiver<bool>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        tokio::pin!(shutdown);
        let mut last_renewal: Option<tokio::time::Instant> = None;
        loop {
            let handover = match &eager {
                Some(e) => Handover::On { eager: *e.borrow() },
                None => Handover::Off,
            };
            match round(&api, &cfg, handover).await {
                Ok(true) => last_renewal = Some(tokio::time::Instant::now()),
                Ok(false) => last_renewal = None,
                Err(e) => tracing::warn!(error = %e, lease = %cfg.name, "lease round failed"),
            }
            // Step down a little before the lease could be taken over by someone else.
            let leading = last_renewal.is_some_and(|t| t.elapsed() < cfg.duration.mul_f32(0.8));
            if tx.send_if_modified(|l| std::mem::replace(l, leading) != leading) {
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, leading, "lease leadership changed");
            }
            tokio::select! {
                _ = tokio::time::sleep(cfg.renew_every) => {}
                _ = &mut shutdown => break,
            }
        }
        tx.send_replace(false);
        if last_renewal.is_some()
            && let Err(e) = release(&api, &cfg).await
        {
            tracing::warn!(error = %e, lease = %cfg.name, "could not release the lease");
        }
    });
    (rx, task)
}
