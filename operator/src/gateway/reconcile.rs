//! The KafkaGateway reconcile: server-side apply of the owned objects, status from the workload.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kafka_crds::annotations;
use kafka_crds::conditions::{reasons, types};
use kafka_crds::{KafkaGateway, KafkaGatewayStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{conflict, resources, status};
use crate::context::{Context, FIELD_MANAGER, jittered};
use crate::{Error, Result};

const KIND: &str = "KafkaGateway";

async fn apply<K>(ctx: &Context, ns: &str, obj: &K) -> Result<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    // Server-side apply needs apiVersion and kind in the body, which the typed structs leave out.
    let mut body = serde_json::to_value(obj)?;
    body["apiVersion"] = json!(K::api_version(&()));
    body["kind"] = json!(K::kind(&()));
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingObjectKey("name"))?;
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?)
}

/// Deletes the gateway's PodDisruptionBudget if there is one (scaled down to one pod). Only a
/// budget this KafkaGateway controls is deleted, never a user's object of the same name.
async fn delete_pdb(ctx: &Context, ns: &str, name: &str, owner_uid: &str) -> Result<()> {
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), ns);
    let Some(pdb) = api.get_opt(name).await? else {
        return Ok(());
    };
    if !resources::controlled_by(pdb.meta(), owner_uid) {
        return Ok(());
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pdb.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes the status when it changed; true when its Ready reason changed (worth an Event).
async fn write_status(
    ctx: &Context,
    gw: &KafkaGateway,
    ns: &str,
    new: &KafkaGatewayStatus,
) -> Result<bool> {
    let write = gw.status.as_ref() != Some(new);
    ctx.metrics.status_write(KIND, write);
    if !write {
        return Ok(false);
    }
    let api: Api<KafkaGateway> = Api::namespaced(ctx.client.clone(), ns);
    let body = json!({
        "apiVersion": KafkaGateway::api_version(&()),
        "kind": KafkaGateway::kind(&()),
        "metadata": {"name": gw.name_any()},
        "status": new,
    });
    api.patch_status(
        &gw.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    let old = gw
        .status
        .as_ref()
        .and_then(|s| crate::conditions::reason_of(&s.conditions, types::READY));
    Ok(old != crate::conditions::reason_of(&new.conditions, types::READY))
}

pub async fn reconcile(gw: Arc<KafkaGateway>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.start(KIND);
    let ns = gw.namespace().ok_or(Error::MissingObjectKey("namespace"))?;
    if gw.meta().deletion_timestamp.is_some() {
        // Owned objects go with the gateway through their owner references.
        return Ok(Action::await_change());
    }
    let paused = annotations::is_set(Some(gw.annotations()), annotations::PAUSED, "true");
    let gateways = ctx.gateways.state();
    if !paused
        && let Some(holder) =
            conflict::holder_of_namespace(&gw, gateways.iter().map(|g| g.as_ref()))
    {
        let msg = conflict::message(&gw, holder);
        let new = status::conflicting(&gw, &msg, &crate::conditions::now());
        if write_status(&ctx, &gw, &ns, &new).await? {
            ctx.event(
                gw.as_ref(),
                true,
                reasons::SMQ_NAMESPACE_IN_USE,
                &msg,
                "Reconcile",
            )
            .await;
        }
        // Deleting the other KafkaGateway does not wake this one: look again now and then.
        return Ok(Action::requeue(jittered(Duration::from_secs(30))));
    }
    let sts = if paused {
        Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&gw.name_any())
            .await?
    } else {
        let owned = resources::build(&gw, &ctx.gateway_defaults)?;
        apply(&ctx, &ns, &owned.service_account).await?;
        apply(&ctx, &ns, &owned.role).await?;
        apply(&ctx, &ns, &owned.role_binding).await?;
        apply(&ctx, &ns, &owned.config_map).await?;
        apply(&ctx, &ns, &owned.headless).await?;
        apply(&ctx, &ns, &owned.bootstrap).await?;
        match &owned.pdb {
            Some(pdb) => {
                apply(&ctx, &ns, pdb).await?;
            }
            None => {
                let uid = gw.uid().ok_or(Error::MissingObjectKey("uid"))?;
                delete_pdb(&ctx, &ns, &resources::pdb_name(&gw), &uid).await?;
            }
        }
        Some(apply(&ctx, &ns, &owned.stateful_set).await?)
    };
    let new = status::status(
        &gw,
        status::workload_state(sts.as_ref()),
        paused,
        &crate::conditions::now(),
    );
    if write_status(&ctx, &gw, &ns, &new).await?
        && let Some(reason) = crate::conditions::reason_of(&new.conditions, types::READY)
    {
        let msg = format!("{} of {} pods ready", new.ready_replicas, gw.spec.replicas);
        ctx.event(gw.as_ref(), false, reason, &msg, "Reconcile")
            .await;
    }
    // StatefulSet changes wake this reconcile (it owns the StatefulSet); the timer only catches
    // drift of the other owned objects.
    Ok(Action::requeue(jittered(Duration::from_secs(600))))
}

pub fn error_policy(_gw: Arc<KafkaGateway>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(KIND, error);
    tracing::warn!(%error, "KafkaGateway reconcile failed");
    let base = if error.is_transient() {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(300)
    };
    Action::requeue(jittered(base))
}
