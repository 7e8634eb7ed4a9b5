use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse, RequestHeader};

use super::{Context, sb};
use crate::error::GatewayResult;

/// Classic groups (with members or committed offsets) and KIP-848 consumer groups; v4 filters by
/// state, v5 by type ("classic" or "consumer"), both case-insensitively.
pub async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    req: ListGroupsRequest,
) -> GatewayResult<ListGroupsResponse> {
    let v = header.request_api_version;
    let consumer = ctx.consumer_groups.list();
    // (group id, state, protocol type, group type)
    let mut all: Vec<(String, String, String, &str)> = ctx
        .groups
        .list()
        .into_iter()
        .filter(|(id, _, _)| !consumer.iter().any(|(c, _)| c == id))
        .map(|(id, state, protocol_type)| (id, state.name().to_string(), protocol_type, "classic"))
        .collect();
    all.extend(
        consumer
            .into_iter()
            .map(|(id, state)| (id, state.to_string(), "consumer".to_string(), "consumer")),
    );
    all.sort();
    let wanted = |filter: &[kafka_protocol::protocol::StrBytes], value: &str| {
        filter.is_empty() || filter.iter().any(|s| s.eq_ignore_ascii_case(value))
    };
    let groups = all
        .into_iter()
        // Each gateway lists the groups it coordinates, as each Kafka broker does.
        .filter(|(id, _, _, _)| ctx.cluster.coordinates(id))
        .filter(|(_, state, _, kind)| {
            wanted(&req.states_filter, state) && wanted(&req.types_filter, kind)
        })
        .map(|(id, state, protocol_type, kind)| {
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(sb(id)))
                .with_protocol_type(sb(protocol_type));
            if v >= 4 {
                g = g.with_group_state(sb(state));
            }
            if v >= 5 {
                g = g.with_group_type(sb(kind));
            }
            g
        })
        .collect();
    Ok(ListGroupsResponse::default().with_groups(groups))
}
