//! `deletionPolicy: Delete`: the topic is deleted as Kafka's DeleteTopics deletes it. The
//! operator does not delete it itself: it writes a deletion request to the filer
//! (`smq_client::DeletionRequest`), a gateway deletes the topic exactly as DeleteTopics does
//! (committed offsets, the name's catalog entry, the SMQ files) and removes the request, and the
//! finalizer goes once the request is gone and SMQ no longer has the topic. A failure the
//! gateways report stays in the request and shows as `Ready=False, DeletionFailed` until a retry
//! succeeds.
//!
//! Without a gateway (its KafkaGateway is being deleted, e.g. with the namespace, or none took
//! the request within [`GATEWAY_GRACE`]) the operator retires the name in the catalog itself, so
//! that the name is free and any gateway that runs later removes the SMQ files; a Warning Event
//! says that committed offsets were not dropped. Deletion so never hangs on a missing gateway.

use std::time::Duration;

use kafka_crds::KafkaTopic;
use kafka_crds::conditions::reasons;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use smq_client::{DeletionRequest, SmqError};

use super::decide::{EventSpec, GatewayFacts, TopicFacts, Verdict};
use crate::Result;
use crate::context::Context;

/// How long a request may wait for a gateway to take it before the operator does without one.
pub const GATEWAY_GRACE: Duration = Duration::from_secs(120);
/// Re-check interval while a gateway works on the request.
const POLL: Duration = Duration::from_secs(3);

/// What the operator sees of a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionFacts {
    /// SMQ has the topic's current incarnation.
    pub topic_exists: bool,
    pub request: Option<DeletionRequest>,
    /// The KafkaGateway exists and is not being deleted.
    pub gateway_running: bool,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeletionStep {
    /// Write the request, then wait.
    Request,
    /// Wait for a gateway, showing this verdict.
    Wait(Verdict),
    /// Retire the name in the catalog without a gateway, then as `Done`.
    WithoutGateway(EventSpec),
    /// Remove the finalizer, first recording this Event.
    Done(EventSpec),
}

pub fn deletion_step(topic: &str, smq_topic: &str, f: &DeletionFacts) -> DeletionStep {
    if !f.topic_exists && f.request.is_none() {
        return DeletionStep::Done(EventSpec {
            warning: false,
            reason: "TopicDeleted",
            message: format!(
                "deletionPolicy Delete: topic {topic} is deleted (SMQ topic {smq_topic}); the name can be created again"
            ),
        });
    }
    let waited_out = f.request.as_ref().is_some_and(|r| {
        r.failed_attempts == 0 && f.now_ms - r.requested_at_ms > GATEWAY_GRACE.as_millis() as i64
    });
    if f.topic_exists && (!f.gateway_running || waited_out) {
        let why = if f.gateway_running {
            format!(
                "no gateway took the request within {}s",
                GATEWAY_GRACE.as_secs()
            )
        } else {
            "its KafkaGateway is being deleted".to_string()
        };
        return DeletionStep::WithoutGateway(EventSpec {
            warning: true,
            reason: "TopicDeletedWithoutGateway",
            message: format!(
                "deletionPolicy Delete: topic {topic} is deleted, but {why}: the name is free, SMQ topic {smq_topic} is removed by the next gateway that runs, and the topic's committed offsets were not dropped"
            ),
        });
    }
    match &f.request {
        None => DeletionStep::Request,
        Some(r) if r.failed_attempts > 0 => DeletionStep::Wait(Verdict::Progressing {
            reason: reasons::DELETION_FAILED,
            message: format!(
                "deleting topic {topic} failed {} times, retrying: {}",
                r.failed_attempts,
                r.last_error.as_deref().unwrap_or("no error given")
            ),
        }),
        Some(_) => DeletionStep::Wait(Verdict::Progressing {
            reason: reasons::DELETING,
            message: format!(
                "waiting for a gateway to delete topic {topic} (SMQ topic {smq_topic})"
            ),
        }),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Carries out one step of the deletion of `obj`'s topic. `gateway`: None when its KafkaGateway
/// is gone (then where the topic lives is unknown: it is left, and the Event says so).
pub async fn delete(
    ctx: &Context,
    api: &Api<KafkaTopic>,
    obj: &KafkaTopic,
    facts: &TopicFacts,
    gateway: Option<(GatewayFacts, bool)>,
) -> Result<Action> {
    let name = facts.desired_name.as_str();
    let Some((gw, gateway_running)) = gateway else {
        let event = EventSpec {
            warning: true,
            reason: "TopicDataRetained",
            message: format!(
                "deletionPolicy Delete: the KafkaGateway {} is gone, so where topic {name} lives is unknown; it is not deleted",
                obj.spec.gateway_ref.name
            ),
        };
        return finish(ctx, api, obj, event).await;
    };
    let smq = ctx.smq.get(&gw.master);
    let ns = gw.smq_namespace.as_str();
    let smq_name = smq.current_topic_name(ns, name).await?;
    let topic_exists = match smq
        .topic_configuration(&smq_client::topic(ns, &smq_name))
        .await
    {
        Ok(_) => true,
        Err(SmqError::TopicNotFound(_)) => false,
        Err(e) => return Err(e.into()),
    };
    let f = DeletionFacts {
        topic_exists,
        request: smq.topic_deletion_request(ns, name).await?,
        gateway_running,
        now_ms: now_ms(),
    };
    let smq_topic = format!("{ns}/{smq_name}");
    match deletion_step(name, &smq_topic, &f) {
        DeletionStep::Request => {
            let request = DeletionRequest {
                requested_by: format!(
                    "KafkaTopic {}/{}",
                    obj.namespace().unwrap_or_default(),
                    obj.name_any()
                ),
                requested_at_ms: f.now_ms,
                ..Default::default()
            };
            smq.put_topic_deletion_request(ns, name, &request).await?;
            let verdict = Verdict::Progressing {
                reason: reasons::DELETING,
                message: format!("asked the gateways to delete topic {name} ({smq_topic})"),
            };
            super::reconcile::deleting_status(ctx, api, obj, facts, verdict).await?;
            Ok(Action::requeue(POLL))
        }
        DeletionStep::Wait(verdict) => {
            super::reconcile::deleting_status(ctx, api, obj, facts, verdict).await?;
            Ok(Action::requeue(POLL))
        }
        DeletionStep::WithoutGateway(event) => {
            smq.retire_topic_name(ns, name, Vec::new(), f.now_ms)
                .await?;
            smq.remove_topic_deletion_request(ns, name).await?;
            finish(ctx, api, obj, event).await
        }
        DeletionStep::Done(event) => finish(ctx, api, obj, event).await,
    }
}

async fn finish(
    ctx: &Context,
    api: &Api<KafkaTopic>,
    obj: &KafkaTopic,
    event: EventSpec,
) -> Result<Action> {
    ctx.event(obj, event.warning, event.reason, &event.message, "Delete")
        .await;
    super::reconcile::remove_finalizer(api, obj).await?;
    if let Some(uid) = obj.uid() {
        ctx.topic_memo.forget(&uid);
    }
    Ok(Action::await_change())
}
