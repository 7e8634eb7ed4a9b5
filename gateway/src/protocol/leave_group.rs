use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse, RequestHeader};

use super::{Context, sb};
use crate::error::GatewayResult;

pub async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    req: LeaveGroupRequest,
) -> GatewayResult<LeaveGroupResponse> {
    if let Err(code) = ctx.coordinate(&req.group_id.0).await {
        return Ok(LeaveGroupResponse::default().with_error_code(code));
    }
    if header.request_api_version < 3 {
        let codes = ctx
            .groups
            .leave(&req.group_id.0, &[(req.member_id.to_string(), None)]);
        return Ok(LeaveGroupResponse::default().with_error_code(codes[0]));
    }
    let who: Vec<(String, Option<String>)> = req
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.group_instance_id.as_ref().map(|s| s.to_string()),
            )
        })
        .collect();
    let codes = ctx.groups.leave(&req.group_id.0, &who);
    let members = who
        .into_iter()
        .zip(codes)
        .map(|((id, iid), code)| {
            MemberResponse::default()
                .with_member_id(sb(id))
                .with_group_instance_id(iid.map(sb))
                .with_error_code(code)
        })
        .collect();
    Ok(LeaveGroupResponse::default().with_members(members))
}
