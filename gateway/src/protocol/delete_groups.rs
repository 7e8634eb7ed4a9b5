use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, RequestHeader};

use super::Context;
use crate::error::GatewayResult;

/// Deletes groups without members, with their committed offsets.
pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    req: DeleteGroupsRequest,
) -> GatewayResult<DeleteGroupsResponse> {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in req.groups_names {
        let code = if let Err(code) = ctx.coordinate(&id.0).await {
            code
        } else if ctx.groups.is_active(&id.0) || ctx.consumer_groups.is_active(&id.0) {
            E::NonEmptyGroup.code()
        } else {
            let committed = ctx.groups.offsets.get(&id.0);
            if committed.is_empty()
                && ctx.groups.describe(&id.0).protocol_type.is_empty()
                && !ctx.consumer_groups.exists(&id.0)
            {
                E::GroupIdNotFound.code()
            } else {
                let deletes: Vec<_> = committed
                    .into_keys()
                    .map(|(t, p)| (t, p, -1, String::new()))
                    .collect();
                match ctx.groups.offsets.commit(&id.0, &deletes).await {
                    Ok(()) => {
                        ctx.groups.forget(&id.0);
                        ctx.consumer_groups.forget(&id.0);
                        0
                    }
                    Err(e) => {
                        tracing::warn!(group = %id.0, error = %e, "deleting a group's offsets failed");
                        E::CoordinatorNotAvailable.code()
                    }
                }
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code),
        );
    }
    Ok(DeleteGroupsResponse::default().with_results(results))
}
