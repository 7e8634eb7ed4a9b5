use std::time::Duration;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader};

use super::{Context, sb};
use crate::error::GatewayResult;
use crate::groups::JoinArgs;

pub async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    req: JoinGroupRequest,
) -> GatewayResult<JoinGroupResponse> {
    let v = header.request_api_version;
    if let Err(code) = ctx.coordinate(&req.group_id.0).await {
        return Ok(JoinGroupResponse::default()
            .with_error_code(code)
            .with_generation_id(-1)
            .with_member_id(req.member_id));
    }
    // A KIP-848 consumer group with members takes no classic members (Kafka 4 can mix them;
    // this gateway does not); an empty one becomes a classic group.
    if ctx.consumer_groups.is_active(&req.group_id.0) {
        return Ok(JoinGroupResponse::default()
            .with_error_code(E::InconsistentGroupProtocol.code())
            .with_generation_id(-1)
            .with_member_id(req.member_id));
    }
    ctx.consumer_groups.forget(&req.group_id.0);
    let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
    // v0 has no rebalance timeout: Kafka uses the session timeout.
    let rebalance = if v >= 1 {
        Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64)
    } else {
        session
    };
    let out = ctx
        .groups
        .join(JoinArgs {
            group_id: req.group_id.0.to_string(),
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.map(|s| s.to_string()),
            client_id: header
                .client_id
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            // Kafka reports hosts as "/<ip>".
            client_host: super::request::peer()
                .map(|p| format!("/{}", p.ip()))
                .unwrap_or_default(),
            session_timeout: session,
            rebalance_timeout: rebalance,
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .into_iter()
                .map(|p| (p.name.to_string(), p.metadata))
                .collect(),
            require_known_member_id: v >= 4,
        })
        .await;
    let members = out
        .members
        .into_iter()
        .map(|(id, iid, meta)| {
            JoinGroupResponseMember::default()
                .with_member_id(sb(id))
                .with_group_instance_id(if v >= 5 { iid.map(sb) } else { None })
                .with_metadata(meta)
        })
        .collect();
    Ok(JoinGroupResponse::default()
        .with_error_code(out.error)
        .with_generation_id(out.generation)
        .with_protocol_type(if v >= 7 {
            out.protocol_type.map(sb)
        } else {
            None
        })
        .with_protocol_name(Some(sb(out.protocol.unwrap_or_default())))
        .with_leader(sb(out.leader))
        .with_member_id(sb(out.member_id))
        .with_members(members))
}
