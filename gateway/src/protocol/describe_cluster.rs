use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, RequestHeader,
};

use super::{Context, NODE_ID, sb};
use crate::error::GatewayResult;

pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    _req: DescribeClusterRequest,
) -> GatewayResult<DescribeClusterResponse> {
    let (host, port) = ctx.config.advertised();
    Ok(DescribeClusterResponse::default()
        .with_cluster_id(sb(ctx.config.cluster_id()))
        .with_controller_id(BrokerId(NODE_ID))
        .with_brokers(vec![
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(NODE_ID))
                .with_host(sb(host))
                .with_port(port),
        ]))
}
