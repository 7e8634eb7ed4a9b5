use std::time::{SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, RequestHeader};

use super::{Context, sb};
use crate::error::{GatewayError, GatewayResult};
use crate::records::{Batch, parse_batch, split_batches};

pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    req: ProduceRequest,
) -> GatewayResult<ProduceResponse> {
    if req.transactional_id.is_some() {
        return Err(GatewayError::NotSupported("transactions".to_string()));
    }
    // Partitions are stored concurrently: each has its own SMQ stream and ledger order, and the
    // broker works on them in parallel. Responses keep the request's order.
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let results = futures::future::join_all(topic.partition_data.into_iter().map(|pd| {
            let name = &name;
            async move {
                (
                    pd.index,
                    produce_partition(ctx, name, pd.index, pd.records).await,
                )
            }
        }))
        .await;
        let partitions = results
            .into_iter()
            .map(|(index, r)| {
                let resp = PartitionProduceResponse::default().with_index(index);
                match r {
                    Ok((base, append_time, log_start)) => resp
                        .with_base_offset(base)
                        .with_log_append_time_ms(append_time.unwrap_or(-1))
                        .with_log_start_offset(log_start),
                    Err(e) => {
                        ctx.metrics.produce_error(&e);
                        tracing::debug!(topic = %name, partition = index, error = %e, "produce failed");
                        resp.with_error_code(e.code())
                            .with_base_offset(-1)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(-1)
                            .with_error_message(Some(sb(e.to_string())))
                    }
                }
            })
            .collect();
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }
    // acks=0: the connection layer sends nothing back.
    Ok(ProduceResponse::default().with_responses(responses))
}

async fn produce_partition(
    ctx: &Context,
    topic: &str,
    index: i32,
    records: Option<bytes::Bytes>,
) -> GatewayResult<(i64, Option<i64>, i64)> {
    let t = ctx
        .store
        .topic_or_create(topic, true)
        .await?
        .ok_or_else(|| GatewayError::UnknownTopicOrPartition(topic.to_string()))?;
    let partition = t.partition(index)?.clone();
    let data = records.unwrap_or_default();
    let configs = t.configs();
    let limit = configs
        .get("max.message.bytes")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(ctx.store.settings().max_message_bytes)
        .max(ctx.store.settings().max_message_bytes);
    let mut batches: Vec<Batch> = Vec::new();
    for raw in split_batches(data)? {
        if raw.len() > limit {
            return Err(GatewayError::MessageTooLarge(format!(
                "batch of {} bytes exceeds max.message.bytes {limit}",
                raw.len()
            )));
        }
        let b = parse_batch(raw, limit.saturating_mul(64))?;
        if b.header.is_transactional() || b.header.is_control() {
            return Err(GatewayError::NotSupported(
                "transactional batches".to_string(),
            ));
        }
        batches.push(b);
    }
    if batches.iter().all(|b| b.records.is_empty()) {
        return Err(GatewayError::Record(crate::records::RecordError::Invalid(
            "produce request without records".to_string(),
        )));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let bytes: usize = batches.iter().map(|b| b.raw.len()).sum();
    let records: usize = batches.iter().map(|b| b.records.len()).sum();
    let appended = partition
        .append(&batches, configs.timestamp_type(), now)
        .await?;
    ctx.metrics.produced(topic, records as u64, bytes as u64);
    Ok((
        appended.base_offset,
        appended.log_append_time,
        partition.log_start(),
    ))
}
