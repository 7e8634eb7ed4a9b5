use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    DeleteTopicsRequest, DeleteTopicsResponse, RequestHeader, TopicName,
};

use super::{Context, sb};
use crate::error::{GatewayError, GatewayResult};

/// Deletes topics as Kafka does: once answered, the topic is gone from Metadata and every other
/// API, its committed offsets are dropped, and its name can be created again as a new, empty
/// topic. SMQ's files are removed in the background (`storage/deletion.rs`; /stats shows what
/// is still being removed).
pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    req: DeleteTopicsRequest,
) -> GatewayResult<DeleteTopicsResponse> {
    let names: Vec<TopicName> = req
        .topic_names
        .into_iter()
        .chain(req.topics.into_iter().filter_map(|t| t.name))
        .collect();
    let mut responses = Vec::with_capacity(names.len());
    for name in names {
        let result = DeletableTopicResult::default().with_name(Some(name.clone()));
        responses.push(match delete(ctx, &name.0).await {
            Ok(()) => result,
            Err(e) => result
                .with_error_code(e.code())
                .with_error_message(Some(sb(e.to_string()))),
        });
    }
    Ok(DeleteTopicsResponse::default().with_responses(responses))
}

/// Deletes one topic, as DeleteTopics does (also for the operator's deletion requests).
pub async fn delete(ctx: &Context, name: &str) -> GatewayResult<()> {
    if ctx.store.topic(name).await?.is_none() {
        return Err(GatewayError::UnknownTopicOrPartition(name.to_string()));
    }
    // Offsets first: a failure leaves the topic in place, to be deleted again; the other order
    // could leave a topic created again under the name with the old topic's offsets.
    ctx.groups.offsets.delete_topic(name).await?;
    ctx.store.delete_topic(name).await
}
