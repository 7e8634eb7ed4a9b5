use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse, RequestHeader};

use super::{Context, sb};
use crate::error::GatewayResult;

pub async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    req: ListGroupsRequest,
) -> GatewayResult<ListGroupsResponse> {
    let v4 = header.request_api_version >= 4;
    let groups = ctx
        .groups
        .list()
        .into_iter()
        // Each gateway lists the groups it coordinates, as each Kafka broker does.
        .filter(|(id, _, _)| ctx.cluster.coordinates(id))
        .filter(|(_, state, _)| {
            req.states_filter.is_empty()
                || req
                    .states_filter
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(state.name()))
        })
        .map(|(id, state, protocol_type)| {
            let g = ListedGroup::default()
                .with_group_id(GroupId(sb(id)))
                .with_protocol_type(sb(protocol_type));
            if v4 {
                g.with_group_state(sb(state.name()))
            } else {
                g
            }
        })
        .collect();
    Ok(ListGroupsResponse::default().with_groups(groups))
}
