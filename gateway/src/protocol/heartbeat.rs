use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse, RequestHeader};

use super::Context;
use crate::error::GatewayResult;

pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    req: HeartbeatRequest,
) -> GatewayResult<HeartbeatResponse> {
    if let Err(code) = ctx.coordinate(&req.group_id.0).await {
        return Ok(HeartbeatResponse::default().with_error_code(code));
    }
    let error = ctx.groups.heartbeat(
        &req.group_id.0,
        req.generation_id,
        &req.member_id,
        req.group_instance_id.as_deref(),
    );
    Ok(HeartbeatResponse::default().with_error_code(error))
}
