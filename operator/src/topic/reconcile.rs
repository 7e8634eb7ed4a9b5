//! The KafkaTopic reconcile: gathers facts, asks [`super::decide`], carries out the answer.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kafka_crds::annotations::{self, TOPIC_FINALIZER};
use kafka_crds::conditions::{reasons, types};
use kafka_crds::{KafkaGateway, KafkaTopic, KafkaTopicStatus};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use smq_client::{SmqError, TopicSpec};

use super::decide::{
    self, CacheView, EventSpec, FinalizerStep, GatewayFacts, Observed, Plan, Recorded, TopicFacts,
    Verdict,
};
use crate::context::{Context, FIELD_MANAGER, jittered};
use crate::{Error, Result};

const KIND: &str = "KafkaTopic";

pub fn facts_of(obj: &KafkaTopic) -> TopicFacts {
    let a = Some(obj.annotations());
    TopicFacts {
        generation: obj.meta().generation,
        desired_name: obj.desired_topic_name(),
        recorded_name: obj.status.as_ref().and_then(|s| s.topic_name.clone()),
        recorded_partitions: obj.status.as_ref().and_then(|s| s.partition_count),
        partitions: obj.spec.partitions,
        config: obj.spec.config.clone(),
        paused: annotations::is_set(a, annotations::PAUSED, "true"),
        unmanaged: annotations::is_set(a, annotations::MANAGED, "false"),
        adopt: annotations::is_set(a, annotations::ADOPT, "true"),
    }
}

pub fn gateway_facts(gw: &KafkaGateway) -> GatewayFacts {
    GatewayFacts {
        master: gw.spec.smq.master.clone(),
        smq_namespace: gw.spec.smq.namespace.clone(),
        default_partitions: gw.spec.kafka.default_partitions,
    }
}

fn gateway_of(ctx: &Context, obj: &KafkaTopic, ns: &str) -> Option<GatewayFacts> {
    ctx.gateways
        .get(&ObjectRef::new(&obj.spec.gateway_ref.name).within(ns))
        .map(|g| gateway_facts(&g))
}

fn key(obj: &KafkaTopic) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// The older object, if any, that wants the same SMQ topic (same SMQ cluster and namespace, same
/// name) and is still managed.
fn conflict_winner(ctx: &Context, obj: &KafkaTopic, gateway: &GatewayFacts) -> Option<String> {
    let desired = obj.desired_topic_name();
    let contenders: Vec<(String, Option<k8s_openapi::jiff::Timestamp>)> = ctx
        .topics
        .state()
        .iter()
        .filter(|t| t.desired_topic_name() == desired)
        .filter(|t| !annotations::is_set(Some(t.annotations()), annotations::MANAGED, "false"))
        .filter(|t| {
            let ns = t.namespace().unwrap_or_default();
            gateway_of(ctx, t, &ns).as_ref().is_some_and(|g| {
                g.master == gateway.master && g.smq_namespace == gateway.smq_namespace
            })
        })
        .map(|t| (key(t), t.meta().creation_timestamp.as_ref().map(|c| c.0)))
        .collect();
    let me = key(obj);
    let mine = (
        me.clone(),
        obj.meta().creation_timestamp.as_ref().map(|c| c.0),
    );
    let all = contenders.iter().chain(std::iter::once(&mine));
    decide::conflict_winner(&me, all.map(|(k, t)| (k.as_str(), t.as_ref())))
}

/// The object to decide on: the cached one, unless the cache does not show the status this
/// process last wrote yet; then the API server's (None: it is gone).
async fn current_object(
    ctx: &Context,
    api: &Api<KafkaTopic>,
    cached: Arc<KafkaTopic>,
) -> Result<Option<Arc<KafkaTopic>>> {
    let Some(uid) = cached.uid() else {
        return Ok(Some(cached));
    };
    let written = ctx.topic_memo.take_written(&uid);
    match decide::cache_view(cached.status.as_ref(), written.as_ref()) {
        CacheView::Current => Ok(Some(cached)),
        CacheView::Stale => {
            ctx.metrics.stale_read(KIND);
            match api.get_opt(&cached.name_any()).await? {
                Some(fresh) if fresh.uid().as_deref() == Some(uid.as_str()) => {
                    Ok(Some(Arc::new(fresh)))
                }
                _ => {
                    ctx.topic_memo.forget(&uid);
                    Ok(None)
                }
            }
        }
    }
}

pub async fn reconcile(obj: Arc<KafkaTopic>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.start(KIND);
    let ns = obj
        .namespace()
        .ok_or(Error::MissingObjectKey("namespace"))?;
    let api: Api<KafkaTopic> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(obj) = current_object(&ctx, &api, obj).await? else {
        return Ok(Action::await_change());
    };
    let uid = obj.uid().unwrap_or_default();
    let mut facts = facts_of(&obj);
    if facts.recorded_name.is_none() {
        facts.recorded_name = ctx.topic_memo.created_name(&uid);
    }
    let gateway = gateway_of(&ctx, &obj, &ns);

    let deleting = obj.meta().deletion_timestamp.is_some();
    let has_finalizer = obj.finalizers().iter().any(|f| f == TOPIC_FINALIZER);
    let force = annotations::is_set(Some(obj.annotations()), annotations::FORCE_DELETE, "true");
    let smq_topic = obj.status.as_ref().and_then(|s| s.smq_topic.as_deref());
    match decide::finalizer_step(
        has_finalizer,
        deleting,
        &facts,
        force,
        obj.spec.deletion_policy,
        smq_topic,
    ) {
        FinalizerStep::Add => set_finalizer(&api, &obj, true).await?,
        FinalizerStep::Remove(event) => {
            if let Some(e) = event {
                ctx.event(obj.as_ref(), e.warning, e.reason, &e.message, "Delete")
                    .await;
            }
            set_finalizer(&api, &obj, false).await?;
        }
        FinalizerStep::DeleteTopic => {
            let gateway = ctx
                .gateways
                .get(&ObjectRef::new(&obj.spec.gateway_ref.name).within(&ns))
                .map(|g| (gateway_facts(&g), g.meta().deletion_timestamp.is_none()));
            return super::deletion::delete(&ctx, &api, &obj, &facts, gateway).await;
        }
        FinalizerStep::None => {}
    }
    if deleting {
        ctx.topic_memo.forget(&uid);
        return Ok(Action::await_change());
    }

    let winner = gateway
        .as_ref()
        .and_then(|g| conflict_winner(&ctx, &obj, g));
    let config = match decide::precheck(&facts, gateway.as_ref(), winner.as_deref()) {
        Ok(config) => config,
        Err(verdict) => {
            let unsupported = decide::analyze_config(&facts.config)
                .map(|c| c.unsupported)
                .unwrap_or_default();
            let status = Outcome {
                verdict,
                recorded: None,
                action: None,
            };
            return finish(&ctx, &api, &obj, &facts, status, &unsupported).await;
        }
    };
    let gateway = gateway.ok_or(Error::MissingObjectKey("gateway"))?;
    let smq = ctx.smq.get(&gateway.master);
    // A deleted name lives on under a new SMQ name, and added partitions in SMQ topics of their
    // own (smq_client's topic catalog).
    let entry = match smq
        .catalog_entry(&gateway.smq_namespace, &facts.desired_name)
        .await
    {
        Ok(e) => e,
        Err(e) => {
            return backend_failed(&ctx, &api, &obj, &facts, &config.unsupported, None, e).await;
        }
    };
    let current = smq_client::incarnation_name(&facts.desired_name, entry.incarnation);
    let topic = smq_client::topic(&gateway.smq_namespace, &current);
    let smq_name = format!("{}/{}", gateway.smq_namespace, current);
    let recorded = |partitions: Option<i32>, retention_seconds: Option<i64>| Recorded {
        topic_name: facts.desired_name.clone(),
        smq_topic: smq_name.clone(),
        partitions,
        retention_seconds,
    };
    let event = |reason: &'static str, message: String| EventSpec {
        warning: false,
        reason,
        message,
    };

    let observed = match observe(&smq, &topic, &facts.desired_name, &entry).await {
        Ok(o) => o,
        Err(e) => {
            return backend_failed(&ctx, &api, &obj, &facts, &config.unsupported, None, e).await;
        }
    };

    let outcome = match decide::plan(&facts, &config, &gateway, observed) {
        Plan::Create {
            partitions,
            retention_seconds,
        } => {
            let spec = TopicSpec {
                topic: topic.clone(),
                partitions,
                record_type: config.format.map(|f| f.record_type()),
                retention_seconds,
            };
            // SMQ has just reported the topic missing, so ConfigureTopic creates it
            // (ensure_topic would only ask SMQ again first).
            if let Err(e) = smq.configure_topic(&spec).await {
                // It may exist now (created, then the lookup failed): it is this object's.
                let claim = recorded(None, None);
                return backend_failed(
                    &ctx,
                    &api,
                    &obj,
                    &facts,
                    &config.unsupported,
                    Some(&claim),
                    e,
                )
                .await;
            }
            ctx.topic_memo.created(&uid, &facts.desired_name);
            Outcome {
                verdict: Verdict::Ready,
                recorded: Some(recorded(
                    Some(partitions),
                    retention_seconds.filter(|s| *s > 0),
                )),
                action: Some(event(
                    "Created",
                    format!("created SMQ topic {smq_name} with {partitions} partitions"),
                )),
            }
        }
        Plan::UpdateRetention {
            partitions,
            retention_seconds,
        } => {
            let spec = TopicSpec {
                topic: topic.clone(),
                partitions,
                record_type: None,
                retention_seconds,
            };
            if let Err(e) = smq.configure_topic(&spec).await {
                return backend_failed(&ctx, &api, &obj, &facts, &config.unsupported, None, e)
                    .await;
            }
            Outcome {
                verdict: Verdict::Ready,
                recorded: Some(recorded(
                    Some(partitions),
                    retention_seconds.filter(|s| *s > 0),
                )),
                action: Some(event(
                    "ConfigUpdated",
                    format!(
                        "retention of {smq_name} set to {:?} seconds",
                        retention_seconds.filter(|s| *s > 0)
                    ),
                )),
            }
        }
        Plan::Grow { from, to } => {
            let ext = smq_client::topic(
                &gateway.smq_namespace,
                &smq_client::extension_name(&facts.desired_name, entry.incarnation, from),
            );
            let spec = TopicSpec {
                topic: ext.clone(),
                partitions: to - from,
                record_type: config.format.map(|f| f.record_type()),
                retention_seconds: None,
            };
            let grown = async {
                smq.ensure_topic(&spec).await?;
                smq.add_topic_extension(&gateway.smq_namespace, &facts.desired_name, from)
                    .await
            };
            if let Err(e) = grown.await {
                return backend_failed(&ctx, &api, &obj, &facts, &config.unsupported, None, e)
                    .await;
            }
            let o = observed.ok_or(Error::MissingObjectKey("observed topic"))?;
            Outcome {
                verdict: Verdict::Ready,
                recorded: Some(recorded(Some(to), o.retention_seconds)),
                action: Some(event(
                    "PartitionsAdded",
                    format!(
                        "partitions {from}..{} added in SMQ topic {}/{} (SMQ cannot grow {smq_name} without hiding its records)",
                        to - 1,
                        ext.namespace,
                        ext.name
                    ),
                )),
            }
        }
        Plan::InSync => {
            let o = observed.ok_or(Error::MissingObjectKey("observed topic"))?;
            let action = (!facts.claimed()).then(|| {
                event(
                    "Adopted",
                    format!(
                        "adopted existing SMQ topic {smq_name} ({} partitions)",
                        o.partitions
                    ),
                )
            });
            Outcome {
                verdict: Verdict::Ready,
                recorded: Some(recorded(Some(o.partitions), o.retention_seconds)),
                action,
            }
        }
        // What SMQ holds is still worth showing when refusing to change it; an unclaimed topic
        // is someone else's and stays out of this object's status.
        Plan::Refuse(verdict) => Outcome {
            verdict,
            recorded: observed
                .filter(|_| facts.claimed())
                .map(|o| recorded(Some(o.partitions), o.retention_seconds)),
            action: None,
        },
    };
    finish(&ctx, &api, &obj, &facts, outcome, &config.unsupported).await
}

/// What SMQ holds of the topic: its base SMQ topic and the extensions CreatePartitions added
/// (None: no base topic).
async fn observe(
    smq: &smq_client::SmqClient,
    base: &smq_client::Topic,
    name: &str,
    entry: &smq_client::CatalogEntry,
) -> std::result::Result<Option<Observed>, SmqError> {
    let c = match smq.topic_configuration(base).await {
        Ok(c) => c,
        Err(SmqError::TopicNotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut partitions = c.partition_count;
    for first in &entry.extensions {
        let ext = smq_client::topic(
            &base.namespace,
            &smq_client::extension_name(name, entry.incarnation, *first),
        );
        partitions += smq.topic_configuration(&ext).await?.partition_count;
    }
    Ok(Some(Observed {
        partitions,
        base_partitions: c.partition_count,
        retention_seconds: c.retention_seconds,
    }))
}

/// How a reconcile ended: the verdict, what SMQ was seen to hold (None: nothing new) and the
/// Event of what the reconcile did to SMQ.
struct Outcome {
    verdict: Verdict,
    recorded: Option<Recorded>,
    action: Option<EventSpec>,
}

/// Reports an SMQ failure in the status, then returns it so the error policy counts it and backs
/// off.
async fn backend_failed(
    ctx: &Context,
    api: &Api<KafkaTopic>,
    obj: &KafkaTopic,
    facts: &TopicFacts,
    unsupported: &[String],
    recorded: Option<&Recorded>,
    e: SmqError,
) -> Result<Action> {
    let reason = if e.is_retriable() {
        reasons::BACKEND_UNAVAILABLE
    } else {
        reasons::BACKEND_ERROR
    };
    let outcome = Outcome {
        verdict: Verdict::Progressing {
            reason,
            message: e.to_string(),
        },
        recorded: recorded.cloned(),
        action: None,
    };
    write_status(ctx, api, obj, facts, &outcome, unsupported).await?;
    Err(e.into())
}

async fn finish(
    ctx: &Context,
    api: &Api<KafkaTopic>,
    obj: &KafkaTopic,
    facts: &TopicFacts,
    outcome: Outcome,
    unsupported: &[String],
) -> Result<Action> {
    write_status(ctx, api, obj, facts, &outcome, unsupported).await?;
    Ok(Action::requeue(jittered(decide::requeue_after(
        &outcome.verdict,
    ))))
}

/// Writes the operator's part of the status if it changed, then records the reconcile's Event
/// (in the background), if any.
async fn write_status(
    ctx: &Context,
    api: &Api<KafkaTopic>,
    obj: &KafkaTopic,
    facts: &TopicFacts,
    outcome: &Outcome,
    unsupported: &[String],
) -> Result<()> {
    let stored = obj.status.as_ref();
    let new = decide::status(
        stored,
        &outcome.verdict,
        unsupported,
        outcome.recorded.as_ref(),
        facts.generation,
        &crate::conditions::now(),
    );
    let write = decide::status_needs_write(stored, &new);
    ctx.metrics.status_write(KIND, write);
    tracing::debug!(
        reason = outcome.verdict.ready_reason(),
        write,
        "KafkaTopic status"
    );
    let written = if write {
        patch_status(api, &obj.name_any(), &new).await.map(Some)
    } else {
        Ok(None)
    };
    // What the API server stored (timestamps in whole seconds), to compare the cache with.
    if let Ok(Some(stored)) = &written
        && let (Some(uid), Some(status)) = (obj.uid(), stored.status.as_ref())
    {
        ctx.topic_memo.wrote(&uid, decide::operator_part(status));
        let live =
            || -> HashSet<String> { ctx.topics.state().iter().filter_map(|t| t.uid()).collect() };
        ctx.topic_memo
            .prune(2 * ctx.topics.state().len() + 64, live);
    }
    let previous = stored.and_then(|s| crate::conditions::reason_of(&s.conditions, types::READY));
    let event = decide::reconcile_event(
        previous,
        &outcome.verdict,
        outcome.action.clone(),
        matches!(written, Ok(Some(_))),
    );
    if let Some(e) = event {
        ctx.event_in_background(obj, e.warning, e.reason, &e.message, "Reconcile");
    }
    written.map(|_| ())
}

/// Server-side apply of the status under the operator's field manager. Fields the operator no
/// longer sends (a condition that went away) are removed; the gateway's `stats` and `partitions`
/// belong to another manager and are left alone.
async fn patch_status(
    api: &Api<KafkaTopic>,
    name: &str,
    status: &KafkaTopicStatus,
) -> Result<KafkaTopic> {
    let body = json!({
        "apiVersion": KafkaTopic::api_version(&()),
        "kind": KafkaTopic::kind(&()),
        "metadata": {"name": name},
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Into::into)
}

/// The status of an object whose topic is being deleted.
pub(super) async fn deleting_status(
    ctx: &Context,
    api: &Api<KafkaTopic>,
    obj: &KafkaTopic,
    facts: &TopicFacts,
    verdict: Verdict,
) -> Result<()> {
    let outcome = Outcome {
        verdict,
        recorded: None,
        action: None,
    };
    write_status(ctx, api, obj, facts, &outcome, &[]).await
}

pub(super) async fn remove_finalizer(api: &Api<KafkaTopic>, obj: &KafkaTopic) -> Result<()> {
    set_finalizer(api, obj, false).await
}

/// Adds or removes the finalizer with a merge patch that carries the resourceVersion, so a
/// concurrent change of the list makes the patch fail (409) instead of overwriting it.
async fn set_finalizer(api: &Api<KafkaTopic>, obj: &KafkaTopic, present: bool) -> Result<()> {
    let mut finalizers: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != TOPIC_FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(TOPIC_FINALIZER.to_string());
    }
    let body =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Already gone: nothing left to release.
        Err(kube::Error::Api(s)) if s.code == 404 && !present => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Error policy: count the failure by its label and retry, sooner for transient failures.
pub fn error_policy(_obj: Arc<KafkaTopic>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(KIND, error);
    tracing::warn!(%error, "KafkaTopic reconcile failed");
    let base = if error.is_transient() {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(300)
    };
    Action::requeue(jittered(base))
}
