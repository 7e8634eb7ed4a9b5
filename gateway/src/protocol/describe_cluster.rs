use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, RequestHeader,
};

use super::{Context, sb};
use crate::error::GatewayResult;

pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    _req: DescribeClusterRequest,
) -> GatewayResult<DescribeClusterResponse> {
    let brokers = ctx.cluster.brokers();
    let controller = brokers.first().map_or(-1, |b| b.node_id);
    Ok(DescribeClusterResponse::default()
        .with_cluster_id(sb(ctx.config.cluster_id()))
        .with_controller_id(BrokerId(controller))
        .with_brokers(
            brokers
                .into_iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.node_id))
                        .with_host(sb(b.host))
                        .with_port(b.port)
                })
                .collect(),
        ))
}
