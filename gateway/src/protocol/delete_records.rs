use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, RequestHeader};

use super::Context;
use crate::error::GatewayResult;

/// Moves each partition's log start to the offset asked for (-1: the high water mark), as
/// Kafka does: the records below it can no longer be read, and SMQ's log files wholly below it
/// are deleted. An offset past the high water mark is `OFFSET_OUT_OF_RANGE`.
pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    req: DeleteRecordsRequest,
) -> GatewayResult<DeleteRecordsResponse> {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let r = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            let r = match ctx.store.partition(&t.name.0, p.partition_index).await {
                Err(e) => r.with_error_code(e.code()).with_low_watermark(-1),
                Ok(part) => match part.delete_records(p.offset).await {
                    Ok(low) => r.with_low_watermark(low),
                    Err(e) => {
                        tracing::debug!(topic = %t.name.0, partition = p.partition_index, offset = p.offset, error = %e, "DeleteRecords refused");
                        r.with_error_code(e.code()).with_low_watermark(-1)
                    }
                },
            };
            partitions.push(r);
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    Ok(DeleteRecordsResponse::default().with_topics(topics))
}
