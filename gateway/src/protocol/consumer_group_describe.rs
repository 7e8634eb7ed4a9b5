use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, RequestHeader, TopicName,
};

use super::{Context, sb};
use crate::error::GatewayResult;

/// Authorized operations are not computed (no ACLs): Kafka's "not requested" value.
const NO_OPERATIONS: i32 = i32::MIN;
/// MemberType of a member using the consumer protocol (v1).
const CONSUMER_MEMBER: i8 = 1;

fn assignment(parts: Vec<(uuid::Uuid, String, Vec<i32>)>) -> Assignment {
    Assignment::default().with_topic_partitions(
        parts
            .into_iter()
            .map(|(id, name, p)| {
                TopicPartitions::default()
                    .with_topic_id(id)
                    .with_topic_name(TopicName(sb(name)))
                    .with_partitions(p)
            })
            .collect(),
    )
}

/// KIP-848's ConsumerGroupDescribe. A classic group or an unknown id gets GROUP_ID_NOT_FOUND, as
/// in Kafka (its admin client then falls back to DescribeGroups).
pub async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    req: ConsumerGroupDescribeRequest,
) -> GatewayResult<ConsumerGroupDescribeResponse> {
    let v1 = header.request_api_version >= 1;
    let mut denials = Vec::with_capacity(req.group_ids.len());
    for id in &req.group_ids {
        denials.push(ctx.coordinate(&id.0).await.err());
    }
    let groups = req
        .group_ids
        .into_iter()
        .zip(denials)
        .map(|(id, denied)| {
            if let Some(code) = denied {
                return DescribedGroup::default()
                    .with_group_id(id)
                    .with_error_code(code)
                    .with_authorized_operations(NO_OPERATIONS);
            }
            let Some(view) = ctx.consumer_groups.describe(&id.0) else {
                let msg = if ctx.groups.describe(&id.0).protocol_type.is_empty() {
                    format!("Group {} not found.", &*id.0)
                } else {
                    format!("Group {} is not a consumer group.", &*id.0)
                };
                return DescribedGroup::default()
                    .with_group_id(id)
                    .with_error_code(E::GroupIdNotFound.code())
                    .with_error_message(Some(sb(msg)))
                    .with_group_state(sb("Dead"))
                    .with_authorized_operations(NO_OPERATIONS);
            };
            DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(sb(view.state))
                .with_group_epoch(view.epoch)
                .with_assignment_epoch(view.assignment_epoch)
                .with_assignor_name(sb(view.assignor))
                .with_authorized_operations(NO_OPERATIONS)
                .with_members(
                    view.members
                        .into_iter()
                        .map(|m| {
                            Member::default()
                                .with_member_id(sb(m.member_id))
                                .with_instance_id(m.instance_id.map(sb))
                                .with_rack_id(m.rack_id.map(sb))
                                .with_member_epoch(m.member_epoch)
                                .with_client_id(sb(m.client_id))
                                .with_client_host(sb(m.client_host))
                                .with_subscribed_topic_names(
                                    m.subscribed.into_iter().map(|t| TopicName(sb(t))).collect(),
                                )
                                .with_assignment(assignment(m.assignment))
                                .with_target_assignment(assignment(m.target))
                                .with_member_type(if v1 { CONSUMER_MEMBER } else { -1 })
                        })
                        .collect(),
                )
        })
        .collect();
    Ok(ConsumerGroupDescribeResponse::default().with_groups(groups))
}
