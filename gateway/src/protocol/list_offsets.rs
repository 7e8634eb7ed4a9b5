use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, RequestHeader};

use super::Context;
use crate::error::GatewayResult;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub async fn handle(
    ctx: &Context,
    header: &RequestHeader,
    req: ListOffsetsRequest,
) -> GatewayResult<ListOffsetsResponse> {
    let mut topics = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let resp =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let r = async {
                let part = ctx
                    .led_partition_at(&name, p.partition_index, p.current_leader_epoch)
                    .await?;
                let epoch = part.leader_epoch();
                let found = match p.timestamp {
                    LATEST => (part.high_water_mark(), -1),
                    EARLIEST => (part.log_start(), -1),
                    MAX_TIMESTAMP => {
                        let hwm = part.high_water_mark();
                        match part.max_timestamp() {
                            Some(ts) => part
                                .offset_for_timestamp(ts)
                                .await?
                                .map_or((hwm, -1), |(o, t)| (o, t)),
                            None => (-1, -1),
                        }
                    }
                    ts => part.offset_for_timestamp(ts).await?.unwrap_or((-1, -1)),
                };
                Ok::<_, crate::error::GatewayError>((found, epoch))
            }
            .await;
            partitions.push(match r {
                Ok(((offset, ts), epoch)) => resp
                    .with_offset(offset)
                    .with_timestamp(ts)
                    // From v4 (older versions refuse a value in it).
                    .with_leader_epoch(if header.request_api_version >= 4 {
                        epoch
                    } else {
                        -1
                    }),
                Err(e) => resp
                    .with_error_code(e.code())
                    .with_offset(-1)
                    .with_timestamp(-1),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    Ok(ListOffsetsResponse::default().with_topics(topics))
}
