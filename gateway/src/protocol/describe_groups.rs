use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, RequestHeader};

use super::{Context, sb};
use crate::error::GatewayResult;
use crate::groups::State;

pub async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    req: DescribeGroupsRequest,
) -> GatewayResult<DescribeGroupsResponse> {
    let v4 = header.request_api_version >= 4;
    let mut denials = Vec::with_capacity(req.groups.len());
    for id in &req.groups {
        denials.push(ctx.coordinate(&id.0).await.err());
    }
    let groups = req
        .groups
        .into_iter()
        .zip(denials)
        .map(|(id, denied)| {
            if let Some(code) = denied {
                return DescribedGroup::default()
                    .with_group_id(id)
                    .with_error_code(code);
            }
            // A KIP-848 group: its state, "consumer", its assignor as the protocol and its
            // members without the classic metadata and assignment bytes (Kafka answers "Dead"
            // here and describes such groups with ConsumerGroupDescribe only).
            if let Some(view) = ctx.consumer_groups.describe(&id.0) {
                return DescribedGroup::default()
                    .with_group_id(id)
                    .with_group_state(sb(view.state))
                    .with_protocol_type(sb("consumer"))
                    .with_protocol_data(sb(view.assignor))
                    .with_members(
                        view.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(sb(m.member_id))
                                    .with_group_instance_id(if v4 {
                                        m.instance_id.map(sb)
                                    } else {
                                        None
                                    })
                                    .with_client_id(sb(m.client_id))
                                    .with_client_host(sb(m.client_host))
                            })
                            .collect(),
                    );
            }
            let view = ctx.groups.describe(&id.0);
            let known = view.state != State::Empty || !ctx.groups.offsets.get(&id.0).is_empty();
            DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(sb(if known { view.state.name() } else { "Dead" }))
                .with_protocol_type(sb(view.protocol_type))
                .with_protocol_data(sb(view.protocol))
                .with_members(
                    view.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(sb(m.member_id))
                                .with_group_instance_id(if v4 {
                                    m.instance_id.map(sb)
                                } else {
                                    None
                                })
                                .with_client_id(sb(m.client_id))
                                .with_client_host(sb(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                )
        })
        .collect();
    Ok(DescribeGroupsResponse::default().with_groups(groups))
}
