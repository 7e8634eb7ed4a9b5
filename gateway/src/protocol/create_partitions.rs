//! CreatePartitions: refused for every topic, with INVALID_PARTITIONS and a message naming why.
//!
//! SMQ cannot repartition in place: ConfigureTopic with a new partition count starts a new
//! generation whose partitions are empty and whose ring ranges differ, and the old generation's
//! partitions refuse reads, so every record stored so far would vanish from the topic
//! (`docs/smq-protocol.md` §3 and §8; `SmqClient::ensure_topic` refuses a new count for
//! the same reason). The checks Kafka makes first (unknown topic, a count that is no increase,
//! assignments that do not match the increase, duplicate topics) give Kafka's own errors;
//! `validate_only` answers exactly what the real request would.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, RequestHeader};

use super::{Context, sb};
use crate::error::GatewayResult;

pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    req: CreatePartitionsRequest,
) -> GatewayResult<CreatePartitionsResponse> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for t in &req.topics {
        *seen.entry(t.name.0.as_str()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let (error, message) = if seen[t.name.0.as_str()] > 1 {
            (
                ResponseError::InvalidRequest,
                "Duplicate topic in request.".to_string(),
            )
        } else {
            check(ctx, t.name.0.as_str(), t.count, t.assignments.as_deref()).await
        };
        tracing::info!(
            topic = %t.name.0.as_str(),
            count = t.count,
            validate_only = req.validate_only,
            error = ?error,
            "CreatePartitions refused: {message}"
        );
        results.push(
            CreatePartitionsTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(error.code())
                .with_error_message(Some(sb(message))),
        );
    }
    Ok(CreatePartitionsResponse::default().with_results(results))
}

/// Why partitions cannot be added to this topic: Kafka's own answer where Kafka would refuse too,
/// else the SMQ limitation.
async fn check(
    ctx: &Context,
    name: &str,
    count: i32,
    assignments: Option<
        &[kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment],
    >,
) -> (ResponseError, String) {
    let current = match ctx.store.topic(name).await {
        Ok(Some(t)) => t.partitions.len() as i32,
        Ok(None) => {
            return (
                ResponseError::UnknownTopicOrPartition,
                format!("Topic '{name}' does not exist."),
            );
        }
        Err(e) => return (e.kafka_code(), e.to_string()),
    };
    if count < current {
        return (
            ResponseError::InvalidPartitions,
            format!(
                "Topic currently has {current} partitions, which is higher than the requested {count}."
            ),
        );
    }
    if count == current {
        return (
            ResponseError::InvalidPartitions,
            format!("Topic already has {current} partitions."),
        );
    }
    if let Some(a) = assignments
        && a.len() as i64 != i64::from(count - current)
    {
        return (
            ResponseError::InvalidReplicaAssignment,
            format!(
                "Increasing the number of partitions by {} but {} assignments provided.",
                count - current,
                a.len()
            ),
        );
    }
    (
        ResponseError::InvalidPartitions,
        format!(
            "Topic '{name}' keeps its {current} partitions: this gateway stores topics in SeaweedFS MQ, \
             which cannot add partitions to an existing topic (repartitioning starts a new, empty \
             generation and hides every stored record). Create a new topic with {count} partitions instead."
        ),
    )
}
