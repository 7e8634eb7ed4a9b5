use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, RequestHeader};

use super::{Context, sb};
use crate::error::{GatewayError, GatewayResult};
use crate::storage::TopicConfigs;

pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    req: CreateTopicsRequest,
) -> GatewayResult<CreateTopicsResponse> {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let r = async {
            let partitions = if !t.assignments.is_empty() {
                manual_partitions(
                    t.num_partitions,
                    t.replication_factor,
                    &t.assignments,
                    &ctx.cluster
                        .brokers()
                        .iter()
                        .map(|b| b.node_id)
                        .collect::<Vec<_>>(),
                )?
            } else if t.num_partitions == -1 {
                ctx.store.settings().default_partitions
            } else {
                t.num_partitions
            };
            let configs = TopicConfigs::parse(
                t.configs
                    .iter()
                    .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
            )?;
            ctx.store
                .create_topic(&name, partitions, &configs, req.validate_only)
                .await?;
            Ok::<_, GatewayError>(partitions)
        }
        .await;
        let result = CreatableTopicResult::default()
            .with_name(t.name)
            .with_replication_factor(1);
        // v7+: the new topic's id (a name created again after a deletion gets a new one).
        let id = match (&r, req.validate_only) {
            (Ok(_), false) => match ctx.store.topic(&name).await {
                Ok(Some(t)) => uuid::Uuid::from_bytes(t.topic_id),
                _ => uuid::Uuid::nil(),
            },
            _ => uuid::Uuid::nil(),
        };
        results.push(match r {
            Ok(partitions) => {
                tracing::info!(topic = %name, partitions, validate_only = req.validate_only, "topic created");
                result.with_num_partitions(partitions).with_topic_id(id)
            }
            Err(e) => result
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_error_code(e.code())
                .with_error_message(Some(sb(e.to_string()))),
        });
    }
    Ok(CreateTopicsResponse::default().with_topics(results))
}

/// The partition count of a manual replica assignment, checked as Kafka checks it. This gateway is
/// `live` brokers: each broker named must be one of them (SMQ keeps the copies, and the
/// partition's leader follows from the live gateways, not from the assignment).
fn manual_partitions(
    num_partitions: i32,
    replication_factor: i16,
    assignments: &[CreatableReplicaAssignment],
    live: &[i32],
) -> GatewayResult<i32> {
    if num_partitions != -1 {
        return Err(GatewayError::InvalidRequest(
            "A manual partition assignment was specified, but numPartitions was not set to -1."
                .into(),
        ));
    }
    if replication_factor != -1 {
        return Err(GatewayError::InvalidRequest(
            "A manual partition assignment was specified, but replicationFactor was not set to -1."
                .into(),
        ));
    }
    let mut indexes: Vec<i32> = assignments.iter().map(|a| a.partition_index).collect();
    indexes.sort_unstable();
    if indexes
        .iter()
        .enumerate()
        .any(|(i, p)| *p as i64 != i as i64)
    {
        return Err(GatewayError::InvalidReplicaAssignment(
            "partitions should be a consecutive 0-based integer sequence".into(),
        ));
    }
    for a in assignments {
        let mut brokers: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
        if brokers.is_empty() {
            return Err(GatewayError::InvalidReplicaAssignment(
                "The manual partition assignment includes an empty replica list.".into(),
            ));
        }
        brokers.sort_unstable();
        if let Some(w) = brokers.windows(2).find(|w| w[0] == w[1]) {
            return Err(GatewayError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes the broker {} more than once.",
                w[0]
            )));
        }
        if let Some(b) = brokers.iter().find(|b| !live.contains(b)) {
            return Err(GatewayError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes broker {b}, but no broker with that ID was found."
            )));
        }
    }
    i32::try_from(assignments.len()).map_err(|_| GatewayError::InvalidPartitions(i32::MAX))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::BrokerId;

    use super::*;

    const NODE_ID: i32 = 1;

    fn assignment(partition: i32, brokers: &[i32]) -> CreatableReplicaAssignment {
        CreatableReplicaAssignment::default()
            .with_partition_index(partition)
            .with_broker_ids(brokers.iter().map(|b| BrokerId(*b)).collect())
    }

    #[test]
    fn one_partition_per_assignment_on_this_broker() {
        let a: Vec<_> = (0..22).map(|p| assignment(p, &[NODE_ID])).collect();
        assert_eq!(manual_partitions(-1, -1, &a, &[NODE_ID]).unwrap(), 22);
        // Order does not matter, only that the indexes are 0..n.
        let a = vec![assignment(1, &[NODE_ID]), assignment(0, &[NODE_ID])];
        assert_eq!(manual_partitions(-1, -1, &a, &[NODE_ID]).unwrap(), 2);
    }

    #[test]
    fn refused_as_kafka_refuses() {
        let ok = vec![assignment(0, &[NODE_ID])];
        let code = |r: GatewayResult<i32>| r.unwrap_err().kafka_code();
        use kafka_protocol::error::ResponseError as E;
        assert_eq!(
            code(manual_partitions(1, -1, &ok, &[NODE_ID])),
            E::InvalidRequest
        );
        assert_eq!(
            code(manual_partitions(-1, 1, &ok, &[NODE_ID])),
            E::InvalidRequest
        );
        let gap = vec![assignment(0, &[NODE_ID]), assignment(2, &[NODE_ID])];
        assert_eq!(
            code(manual_partitions(-1, -1, &gap, &[NODE_ID])),
            E::InvalidReplicaAssignment
        );
        let empty = vec![assignment(0, &[])];
        assert_eq!(
            code(manual_partitions(-1, -1, &empty, &[NODE_ID])),
            E::InvalidReplicaAssignment
        );
        let twice = vec![assignment(0, &[NODE_ID, NODE_ID])];
        assert_eq!(
            code(manual_partitions(-1, -1, &twice, &[NODE_ID])),
            E::InvalidReplicaAssignment
        );
        let other = vec![assignment(0, &[NODE_ID + 1])];
        let e = manual_partitions(-1, -1, &other, &[NODE_ID]).unwrap_err();
        assert_eq!(e.kafka_code(), E::InvalidReplicaAssignment);
        assert!(e.to_string().contains("broker 2"), "{e}");
    }
}
