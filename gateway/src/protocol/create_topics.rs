use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, RequestHeader};

use super::{Context, sb};
use crate::error::GatewayResult;
use crate::storage::TopicConfigs;

pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    req: CreateTopicsRequest,
) -> GatewayResult<CreateTopicsResponse> {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let partitions = if t.num_partitions == -1 {
            ctx.store.settings().default_partitions
        } else {
            t.num_partitions
        };
        let r = async {
            if !t.assignments.is_empty() {
                return Err(crate::error::GatewayError::InvalidConfig(
                    "manual replica assignments are not supported".into(),
                ));
            }
            let configs = TopicConfigs::parse(
                t.configs
                    .iter()
                    .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
            )?;
            ctx.store
                .create_topic(&name, partitions, &configs, req.validate_only)
                .await
        }
        .await;
        let result = CreatableTopicResult::default()
            .with_name(t.name)
            .with_num_partitions(partitions)
            .with_replication_factor(1);
        results.push(match r {
            Ok(()) => {
                tracing::info!(topic = %name, partitions, validate_only = req.validate_only, "topic created");
                result
            }
            Err(e) => result
                .with_error_code(e.code())
                .with_error_message(Some(sb(e.to_string()))),
        });
    }
    Ok(CreateTopicsResponse::default().with_topics(results))
}
