use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, RequestHeader,
};

use super::{Context, sb};
use crate::error::GatewayResult;

/// Each group's coordinator follows from the live gateways (cluster/spread.rs). Transaction keys
/// get an answer the same way; the transactional InitProducerId that follows is what refuses
/// transactions, with a clear error.
pub async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    req: FindCoordinatorRequest,
) -> GatewayResult<FindCoordinatorResponse> {
    if header.request_api_version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key.clone());
                match ctx.cluster.coordinator(&key) {
                    Some(m) => c
                        .with_node_id(BrokerId(m.node_id))
                        .with_host(sb(m.host))
                        .with_port(m.port),
                    None => unavailable_v4(c),
                }
            })
            .collect();
        return Ok(FindCoordinatorResponse::default().with_coordinators(coordinators));
    }
    let r = FindCoordinatorResponse::default();
    Ok(match ctx.cluster.coordinator(&req.key) {
        Some(m) => r
            .with_node_id(BrokerId(m.node_id))
            .with_host(sb(m.host))
            .with_port(m.port),
        None => r
            .with_error_code(ResponseError::CoordinatorNotAvailable.code())
            .with_node_id(BrokerId(-1)),
    })
}

/// While this gateway, the last one, is leaving.
fn unavailable_v4(c: Coordinator) -> Coordinator {
    c.with_error_code(ResponseError::CoordinatorNotAvailable.code())
        .with_node_id(BrokerId(-1))
}
