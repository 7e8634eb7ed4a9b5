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
    denied: Option<i16>,
) -> BTreeMap<String, Vec<(i32, i64, String)>> {
    // Another gateway's group: what this one has may be stale, so nothing is read.
    let committed = match denied {
        None => ctx.groups.offsets.get(group),
        Some(_) => Default::default(),
    };
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
        let mut denials = Vec::with_capacity(req.groups.len());
        for g in &req.groups {
            denials.push(ctx.coordinate(&g.group_id.0).await.err());
        }
        let groups = req
            .groups
            .into_iter()
            .zip(denials)
            .map(|(g, denied)| {
                // v9: a KIP-848 member's fetch carries its member epoch, checked as Kafka does.
                let check = ctx.consumer_groups.check_fetch(
                    &g.group_id.0,
                    g.member_id.as_deref(),
                    g.member_epoch,
                );
                if let Some(code) = denied.or(check.filter(|c| *c != 0)) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(code);
                }
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let topics = lookup(ctx, &g.group_id.0, wanted, denied)
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
                                            .with_error_code(denied.unwrap_or(0))
                                            .with_committed_offset(o)
                                            .with_metadata(Some(sb(m)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_error_code(denied.unwrap_or(0))
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
    let denied = ctx.coordinate(&req.group_id.0).await.err();
    let topics = lookup(ctx, &req.group_id.0, wanted, denied)
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
                                .with_error_code(denied.unwrap_or(0))
                                .with_committed_offset(o)
                                .with_metadata(Some(sb(m)))
                        })
                        .collect(),
                )
        })
        .collect();
    // v1 has no top-level error code: its partitions carry it.
    let top = if header.request_api_version >= 2 {
        denied.unwrap_or(0)
    } else {
        0
    };
    Ok(OffsetFetchResponse::default()
        .with_error_code(top)
        .with_topics(topics))
}
