//! CreatePartitions: grows a topic. SMQ cannot repartition a topic without hiding its records
//! (a new partition count starts a new, empty generation: `docs/smq-protocol.md` §3), so the new
//! partitions live in an SMQ topic of their own and every stored record stays where it is
//! (`storage/growth.rs`). The checks Kafka makes first (unknown topic, a count that is no
//! increase, assignments that do not match the increase or name another broker, duplicate topics)
//! give Kafka's own errors; `validate_only` answers exactly what the real request would.

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
        let name = t.name.0.as_str();
        let refused = if seen[name] > 1 {
            Some((
                ResponseError::InvalidRequest,
                "Duplicate topic in request.".to_string(),
            ))
        } else {
            check(ctx, name, t.count, t.assignments.as_deref()).await
        };
        let refused = match refused {
            Some(r) => Some(r),
            None => ctx
                .store
                .create_partitions(name, t.count, req.validate_only)
                .await
                .err()
                .map(|e| (e.kafka_code(), e.to_string())),
        };
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        results.push(match refused {
            Some((error, message)) => {
                tracing::info!(topic = name, count = t.count, error = ?error, "CreatePartitions refused: {message}");
                result
                    .with_error_code(error.code())
                    .with_error_message(Some(sb(message)))
            }
            None => result,
        });
    }
    Ok(CreatePartitionsResponse::default().with_results(results))
}

/// Kafka's refusal of this request, if any.
async fn check(
    ctx: &Context,
    name: &str,
    count: i32,
    assignments: Option<
        &[kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment],
    >,
) -> Option<(ResponseError, String)> {
    let current = match ctx.store.topic(name).await {
        Ok(Some(t)) => t.partitions.len() as i32,
        Ok(None) => {
            return Some((
                ResponseError::UnknownTopicOrPartition,
                format!("Topic '{name}' does not exist."),
            ));
        }
        Err(e) => return Some((e.kafka_code(), e.to_string())),
    };
    if count < current {
        return Some((
            ResponseError::InvalidPartitions,
            format!(
                "Topic currently has {current} partitions, which is higher than the requested {count}."
            ),
        ));
    }
    if count == current {
        return Some((
            ResponseError::InvalidPartitions,
            format!("Topic already has {current} partitions."),
        ));
    }
    if let Some(a) = assignments {
        if a.len() as i64 != i64::from(count - current) {
            return Some((
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "Increasing the number of partitions by {} but {} assignments provided.",
                    count - current,
                    a.len()
                ),
            ));
        }
        if let Some(b) = a
            .iter()
            .flat_map(|a| &a.broker_ids)
            .find(|b| !ctx.cluster.brokers().iter().any(|m| m.node_id == b.0))
        {
            return Some((
                ResponseError::InvalidReplicaAssignment,
                format!("Unknown broker(s) in the assignment: {}.", b.0),
            ));
        }
    }
    None
}
