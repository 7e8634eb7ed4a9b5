use kafka_protocol::messages::{RequestHeader, SyncGroupRequest, SyncGroupResponse};

use super::{Context, sb};
use crate::error::GatewayResult;

pub async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    req: SyncGroupRequest,
) -> GatewayResult<SyncGroupResponse> {
    if let Err(code) = ctx.coordinate(&req.group_id.0).await {
        return Ok(SyncGroupResponse::default().with_error_code(code));
    }
    let assignments = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let (error, protocol_type, protocol, assignment) = ctx
        .groups
        .sync(
            &req.group_id.0,
            req.generation_id,
            &req.member_id,
            req.group_instance_id.as_deref(),
            assignments,
        )
        .await;
    let v5 = header.request_api_version >= 5;
    Ok(SyncGroupResponse::default()
        .with_error_code(error)
        .with_protocol_type(if v5 { protocol_type.map(sb) } else { None })
        .with_protocol_name(if v5 { protocol.map(sb) } else { None })
        .with_assignment(assignment))
}
