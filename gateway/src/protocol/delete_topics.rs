use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    DeleteTopicsRequest, DeleteTopicsResponse, RequestHeader, TopicName,
};

use super::{Context, sb};
use crate::error::GatewayResult;

/// SMQ has no topic deletion (and a removed topic directory leaves stale broker state behind), so
/// deletion is reported as disabled, as a Kafka broker with `delete.topic.enable=false` does,
/// rather than answered with a success that deletes nothing.
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
        let code = match ctx.store.topic(&name.0).await {
            Ok(Some(_)) => ResponseError::TopicDeletionDisabled.code(),
            Ok(None) => ResponseError::UnknownTopicOrPartition.code(),
            Err(e) => e.code(),
        };
        responses.push(
            DeletableTopicResult::default()
                .with_name(Some(name))
                .with_error_code(code)
                .with_error_message(Some(sb("SeaweedFS MQ cannot delete topics"))),
        );
    }
    Ok(DeleteTopicsResponse::default().with_responses(responses))
}
