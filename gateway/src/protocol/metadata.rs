use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, RequestHeader, TopicName,
};

use kafka_protocol::error::ResponseError as E;

use super::{Context, sb};
use crate::error::{GatewayError, GatewayResult};
use crate::storage::validate_topic_name;

pub async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    req: MetadataRequest,
) -> GatewayResult<MetadataResponse> {
    let version = header.request_api_version;
    // v0: an empty list means every topic; v1+: null means every topic.
    // v10+ may name topics by id only (librdkafka does for KIP-848 assignments).
    let mut by_id = Vec::new();
    let wanted: Option<Vec<String>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .filter_map(|t| {
                    if t.name.is_none() && !t.topic_id.is_nil() {
                        by_id.push(t.topic_id);
                    }
                    t.name.map(|n| n.0.to_string())
                })
                .collect(),
        ),
    };
    // Before v4 there is no flag and Kafka creates topics whenever the broker allows it.
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    let names = match wanted {
        Some(n) => n,
        None => ctx.store.list_topics().await?,
    };
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        topics.push(describe(ctx, &name, allow_create).await);
    }
    for id in by_id {
        topics.push(match name_of(ctx, id).await? {
            Some(name) => describe(ctx, &name, false).await,
            None => MetadataResponseTopic::default()
                .with_topic_id(id)
                .with_error_code(E::UnknownTopicId.code()),
        });
    }
    let brokers = ctx.cluster.brokers();
    // Any gateway can create topics; the lowest node id is named as the controller.
    let controller = brokers.first().map_or(-1, |b| b.node_id);
    Ok(MetadataResponse::default()
        .with_brokers(
            brokers
                .into_iter()
                .map(|b| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.node_id))
                        .with_host(sb(b.host))
                        .with_port(b.port)
                })
                .collect(),
        )
        .with_cluster_id(Some(sb(ctx.config.cluster_id())))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics))
}

/// The highest epoch any gateway published for the partition; on its leader, at least the
/// leader's own (published with its next heartbeat).
fn leader_epoch(
    ctx: &Context,
    topic: &str,
    index: i32,
    leader: i32,
    part: &crate::storage::PartitionLog,
) -> i32 {
    let published = ctx.cluster.known_epoch(topic, index);
    if leader == ctx.cluster.node_id() {
        published.max(part.leader_epoch())
    } else {
        published
    }
}

/// The name of the topic with this id: the open topics first, then every topic.
async fn name_of(ctx: &Context, id: uuid::Uuid) -> GatewayResult<Option<String>> {
    let id = *id.as_bytes();
    if let Some(t) = ctx
        .store
        .open_topics()
        .await
        .iter()
        .find(|t| t.topic_id == id)
    {
        return Ok(Some(t.name.clone()));
    }
    for name in ctx.store.list_topics().await? {
        if let Ok(Some(t)) = ctx.store.topic(&name).await
            && t.topic_id == id
        {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

async fn describe(ctx: &Context, name: &str, allow_create: bool) -> MetadataResponseTopic {
    let t = MetadataResponseTopic::default().with_name(Some(TopicName(sb(name))));
    if let Err(e) = validate_topic_name(name) {
        return t.with_error_code(e.code());
    }
    match ctx.store.topic_or_create(name, allow_create).await {
        Ok(Some(topic)) => t
            .with_topic_id(uuid::Uuid::from_bytes(topic.topic_id))
            .with_partitions(
                topic
                    .partitions
                    .iter()
                    .enumerate()
                    // The position, not the SMQ partition's index: added partitions live in an
                    // SMQ topic of their own (storage/growth.rs).
                    .map(|(index, part)| {
                        let index = index as i32;
                        let p = MetadataResponsePartition::default().with_partition_index(index);
                        // SMQ keeps the copies; Kafka's replicas are just the leader.
                        match ctx.cluster.leader(name, index) {
                            Some(leader) => p
                                .with_leader_id(BrokerId(leader))
                                .with_leader_epoch(leader_epoch(ctx, name, index, leader, part))
                                .with_replica_nodes(vec![BrokerId(leader)])
                                .with_isr_nodes(vec![BrokerId(leader)]),
                            None => p
                                .with_error_code(
                                    kafka_protocol::error::ResponseError::LeaderNotAvailable.code(),
                                )
                                .with_leader_id(BrokerId(-1)),
                        }
                    })
                    .collect(),
            ),
        Ok(None) => {
            t.with_error_code(GatewayError::UnknownTopicOrPartition(name.to_string()).code())
        }
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "metadata lookup failed");
            t.with_error_code(e.code())
        }
    }
}
