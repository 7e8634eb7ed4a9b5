use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, RequestHeader,
};

use super::{Context, NODE_ID, sb};
use crate::error::GatewayResult;

/// This gateway coordinates every group. Transaction keys get the same answer; the transactional
/// InitProducerId that follows is what refuses transactions, with a clear error.
pub async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    req: FindCoordinatorRequest,
) -> GatewayResult<FindCoordinatorResponse> {
    let (host, port) = ctx.config.advertised();
    if header.request_api_version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(NODE_ID))
                    .with_host(sb(host.clone()))
                    .with_port(port)
            })
            .collect();
        return Ok(FindCoordinatorResponse::default().with_coordinators(coordinators));
    }
    Ok(FindCoordinatorResponse::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(sb(host))
        .with_port(port))
}
