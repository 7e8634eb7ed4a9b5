use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, RequestHeader};

use super::Context;
use crate::error::GatewayResult;

/// Kafka's `offset.metadata.max.bytes`.
const MAX_METADATA_BYTES: usize = 4096;

/// Stores commits in SMQ before answering. As in Kafka, any offset is taken, also one past the
/// high water mark (tools reset offsets ahead, mirror offsets between clusters, commit on empty
/// partitions); a negative one reads back as "no committed offset". An unknown partition and
/// too long metadata are refused per partition; a failed write is a retriable error, never a
/// silent success.
pub async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    req: OffsetCommitRequest,
) -> GatewayResult<OffsetCommitResponse> {
    let group = req.group_id.0.to_string();
    let version = header.request_api_version;
    let epoch = req.generation_id_or_member_epoch;
    // A KIP-848 group checks the member epoch; a classic one the generation.
    let membership = match ctx.coordinate(&group).await {
        Err(code) => code,
        Ok(()) => match ctx
            .consumer_groups
            .check_commit(&group, &req.member_id, epoch, version)
        {
            Some(code) => code,
            // Kafka answers GROUP_ID_NOT_FOUND from v9 when the group does not exist; here groups
            // are not kept across restarts, so a member's commit to an unknown group stays
            // ILLEGAL_GENERATION, which makes classic members rejoin.
            None => ctx.groups.check_commit(
                &group,
                epoch,
                &req.member_id,
                req.group_instance_id.as_deref(),
            ),
        },
    };
    let mut codes: Vec<Vec<i16>> = Vec::with_capacity(req.topics.len());
    let mut valid = Vec::new();
    for t in &req.topics {
        let mut row = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let code = if membership != 0 {
                membership
            } else {
                match ctx.store.partition(&t.name.0, p.partition_index).await {
                    Err(e) => e.code(),
                    Ok(_)
                        if p.committed_metadata
                            .as_ref()
                            .is_some_and(|m| m.len() > MAX_METADATA_BYTES) =>
                    {
                        E::OffsetMetadataTooLarge.code()
                    }
                    Ok(_) => {
                        valid.push((
                            t.name.0.to_string(),
                            p.partition_index,
                            p.committed_offset,
                            p.committed_metadata
                                .as_ref()
                                .map(|m| m.to_string())
                                .unwrap_or_default(),
                        ));
                        0
                    }
                }
            };
            row.push(code);
        }
        codes.push(row);
    }
    let write_error = match ctx.groups.offsets.commit(&group, &valid).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::warn!(%group, error = %e, "storing committed offsets failed");
            E::CoordinatorNotAvailable.code()
        }
    };
    let topics = req
        .topics
        .into_iter()
        .zip(codes)
        .map(|(t, row)| {
            let partitions = t
                .partitions
                .iter()
                .zip(row)
                .map(|(p, code)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(if code == 0 { write_error } else { code })
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    Ok(OffsetCommitResponse::default().with_topics(topics))
}
