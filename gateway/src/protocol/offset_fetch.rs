use std::collections::BTreeMap;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, RequestHeader, TopicName};

use super::{Context, sb};
use crate::error::GatewayResult;

/// (topic → [(partition, offset, metadata)]) for the asked partitions, or every committed one.
fn lookup(
    ctx: &Context,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> BTreeMap<String, Vec<(i32, i64, String)>> {
    let committed = ctx.groups.offsets.get(group);
    let mut out: BTreeMap<String, Vec<(i32, i64, String)>> = BTreeMap::new();
    match wanted {
        None => {
            for ((t, p), c) in committed {
                out.entry(t).or_default().push((p, c.offset, c.metadata));
            }
        }
        Some(topics) => {
            for (t, parts) in topics {
                let row = out.entry(t.clone()).or_default();
                for p in parts {
                    match committed.get(&(t.clone(), p)) {
                        Some(c) => row.push((p, c.offset, c.metadata.clone())),
                        None => row.push((p, -1, String::new())),
                    }
                }
            }
        }
    }
    out
}

pub async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    req: OffsetFetchRequest,
) -> GatewayResult<OffsetFetchResponse> {
    if header.request_api_version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                // v9: a KIP-848 member's fetch carries its member epoch, checked as Kafka does.
                let check = ctx.consumer_groups.check_fetch(
                    &g.group_id.0,
                    g.member_id.as_deref(),
                    g.member_epoch,
                );
                if let Some(code) = check.filter(|c| *c != 0) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(code);
                }
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let topics = lookup(ctx, &g.group_id.0, wanted)
                    .into_iter()
                    .map(|(t, parts)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(sb(t)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, o, m)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(o)
                                            .with_metadata(Some(sb(m)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        return Ok(OffsetFetchResponse::default().with_groups(groups));
    }
    let wanted = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let topics = lookup(ctx, &req.group_id.0, wanted)
        .into_iter()
        .map(|(t, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(sb(t)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, o, m)| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_metadata(Some(sb(m)))
                        })
                        .collect(),
                )
        })
        .collect();
    Ok(OffsetFetchResponse::default().with_topics(topics))
}
