use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, RequestHeader};

use super::Context;
use crate::error::GatewayResult;

/// Deletes committed offsets of a group that has no members (a consuming group would commit them
/// again; Kafka refuses with GROUP_SUBSCRIBED_TO_TOPIC then).
pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    req: OffsetDeleteRequest,
) -> GatewayResult<OffsetDeleteResponse> {
    let group = req.group_id.0.to_string();
    if let Err(code) = ctx.coordinate(&group).await {
        return Ok(OffsetDeleteResponse::default().with_error_code(code));
    }
    let active = ctx.groups.is_active(&group) || ctx.consumer_groups.is_active(&group);
    if ctx.groups.offsets.get(&group).is_empty() && !active {
        return Ok(OffsetDeleteResponse::default().with_error_code(E::GroupIdNotFound.code()));
    }
    let deletes: Vec<_> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index, -1, String::new()))
        })
        .collect();
    let code = if active {
        E::GroupSubscribedToTopic.code()
    } else {
        match ctx.groups.offsets.commit(&group, &deletes).await {
            Ok(()) => 0,
            Err(_) => E::CoordinatorNotAvailable.code(),
        }
    };
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    Ok(OffsetDeleteResponse::default().with_topics(topics))
}
