use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestHeader,
};

use super::{Context, sb};
use crate::error::GatewayResult;
use crate::groups::consumer::{self, Beat, TopicMeta};

/// KIP-848's ConsumerGroupHeartbeat: join, heartbeat, reconcile and leave in one API. A group
/// id that is a classic group with members is refused (GROUP_ID_NOT_FOUND, as Kafka answers when
/// it does not upgrade the group); an empty classic group is replaced by the consumer group.
pub async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    req: ConsumerGroupHeartbeatRequest,
) -> GatewayResult<ConsumerGroupHeartbeatResponse> {
    let interval = ctx
        .consumer_groups
        .heartbeat_interval
        .as_millis()
        .try_into()
        .unwrap_or(i32::MAX);
    let fail = |code: i16, msg: String| {
        Ok(ConsumerGroupHeartbeatResponse::default()
            .with_error_code(code)
            .with_error_message(Some(sb(msg)))
            .with_heartbeat_interval_ms(interval))
    };
    let group = req.group_id.0.to_string();
    if let Err(code) = ctx.coordinate(&group).await {
        return fail(
            code,
            format!("this gateway does not coordinate group {group}"),
        );
    }
    // v1: the client makes up its member id.
    if header.request_api_version >= 1 && req.member_id.is_empty() {
        return fail(E::InvalidRequest.code(), "MemberId can't be empty.".into());
    }
    if !ctx.consumer_groups.exists(&group) {
        if ctx.groups.is_active(&group) {
            return fail(
                E::GroupIdNotFound.code(),
                format!("Group {group} is not a consumer group"),
            );
        }
        if req.member_epoch == 0 {
            ctx.groups.forget(&group);
        }
    }
    let subscribed: Option<Vec<String>> = req
        .subscribed_topic_names
        .map(|ts| ts.into_iter().map(|t| t.0.to_string()).collect());
    // Fresh partition counts of every topic the group subscribes to (cached in the store).
    let mut seen = BTreeMap::new();
    if req.member_epoch >= 0 {
        for name in ctx
            .consumer_groups
            .topics_to_resolve(&group, subscribed.as_deref())
        {
            match ctx.store.topic(&name).await {
                Ok(Some(t)) => {
                    let meta = TopicMeta {
                        id: uuid::Uuid::from_bytes(t.topic_id),
                        partitions: t.partitions.len() as i32,
                    };
                    seen.insert(name, Some(meta));
                }
                Ok(None) => {
                    seen.insert(name, None);
                }
                // Keep the group's last view of the topic.
                Err(e) => {
                    tracing::warn!(topic = %name, error = %e, "topic lookup for a consumer group failed")
                }
            }
        }
    }
    let owned = req.topic_partitions.map(|ts| {
        let mut a = consumer::Assignment::new();
        for t in ts {
            a.entry(t.topic_id)
                .or_default()
                .extend(t.partitions.iter().copied());
        }
        a.retain(|_, p| !p.is_empty());
        a
    });
    let beat = Beat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|s| s.to_string()),
        rack_id: req.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topics: subscribed,
        assignor: req.server_assignor.map(|s| s.to_string()),
        owned,
        client_id: header
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        client_host: super::request::peer()
            .map(|p| format!("/{}", p.ip()))
            .unwrap_or_default(),
    };
    let regex = req
        .subscribed_topic_regex
        .as_ref()
        .is_some_and(|r| !r.is_empty());
    match ctx.consumer_groups.heartbeat(&group, beat, regex, &seen) {
        Err((code, msg)) => fail(code, msg),
        Ok(reply) => Ok(ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(sb(reply.member_id)))
            .with_member_epoch(reply.member_epoch)
            .with_heartbeat_interval_ms(interval)
            .with_assignment(reply.assignment.map(|a| {
                Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(t, parts)| {
                            TopicPartitions::default()
                                .with_topic_id(t)
                                .with_partitions(parts.into_iter().collect())
                        })
                        .collect(),
                )
            }))),
    }
}
