use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, RequestHeader};

use super::{Context, sb};
use crate::error::{GatewayError, GatewayResult};
use crate::records::{Batch, parse_batch, split_batches};
use crate::storage::AppendTicket;

pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    req: ProduceRequest,
) -> GatewayResult<ProduceResponse> {
    if req.transactional_id.is_some() {
        return Err(GatewayError::NotSupported("transactions".to_string()));
    }
    // Partitions are stored concurrently: each has its own SMQ stream and ledger order, and the
    // broker works on them in parallel. First every partition's append begins (offsets assigned,
    // records on their way to SMQ); then the connection may start the next request while this
    // one waits for SMQ. Responses keep the request's order.
    let parts: Vec<(usize, String, i32, Option<bytes::Bytes>)> = req
        .topic_data
        .iter()
        .enumerate()
        .flat_map(|(ti, t)| {
            t.partition_data
                .iter()
                .map(move |pd| (ti, t.name.0.to_string(), pd.index, pd.records.clone()))
        })
        .collect();
    let begun = futures::future::join_all(
        parts
            .iter()
            .map(|(_, name, index, records)| begin_partition(ctx, name, *index, records.clone())),
    )
    .await;
    super::request::mark_sequenced();
    let finished = futures::future::join_all(begun.into_iter().map(|b| async move {
        let b = b?;
        let appended = b.ticket.finish().await?;
        ctx.metrics.produced(&b.topic, b.records, b.bytes);
        Ok::<_, GatewayError>((
            appended.base_offset,
            appended.log_append_time,
            b.partition.log_start(),
        ))
    }))
    .await;
    let mut responses: Vec<TopicProduceResponse> = req
        .topic_data
        .iter()
        .map(|t| TopicProduceResponse::default().with_name(t.name.clone()))
        .collect();
    for ((ti, name, index, _), r) in parts.iter().zip(finished) {
        let resp = PartitionProduceResponse::default().with_index(*index);
        let resp = match r {
            Ok((base, append_time, log_start)) => resp
                .with_base_offset(base)
                .with_log_append_time_ms(append_time.unwrap_or(-1))
                .with_log_start_offset(log_start),
            Err(e) => {
                ctx.metrics.produce_error(&e);
                if matches!(e, GatewayError::OutOfOrderSequence { .. }) {
                    // The producer's error, which librdkafka answers with a new producer epoch.
                    tracing::warn!(topic = %name, partition = index, error = %e, "produce refused");
                } else {
                    tracing::debug!(topic = %name, partition = index, error = %e, "produce failed");
                }
                resp.with_error_code(e.code())
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(-1)
                    .with_error_message(Some(sb(e.to_string())))
            }
        };
        responses[*ti].partition_responses.push(resp);
    }
    // acks=0: the connection layer sends nothing back.
    Ok(ProduceResponse::default().with_responses(responses))
}

/// A partition's append that has begun.
struct Begun {
    topic: String,
    partition: std::sync::Arc<crate::storage::PartitionLog>,
    ticket: AppendTicket,
    records: u64,
    bytes: u64,
}

async fn begin_partition(
    ctx: &Context,
    topic: &str,
    index: i32,
    records: Option<bytes::Bytes>,
) -> GatewayResult<Begun> {
    let t = ctx
        .store
        .topic_or_create(topic, true)
        .await?
        .ok_or_else(|| GatewayError::UnknownTopicOrPartition(topic.to_string()))?;
    let partition = t.partition(index)?.clone();
    if !ctx.cluster.leads(topic, index) {
        return Err(GatewayError::NotLeader);
    }
    let data = records.unwrap_or_default();
    let configs = t.configs();
    // The topic's max.message.bytes replaces the gateway's default, as in Kafka, but cannot
    // raise it: the gateway's limit bounds what it buffers per batch.
    let limit = configs
        .get("max.message.bytes")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(ctx.store.settings().max_message_bytes)
        .min(ctx.store.settings().max_message_bytes);
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
    let now = crate::clock::now_ms();
    let bytes: usize = batches.iter().map(|b| b.raw.len()).sum();
    let records: usize = batches.iter().map(|b| b.records.len()).sum();
    let ticket = partition
        .begin_append(&batches, configs.timestamp_type(), now)
        .await?;
    super::request::note_throttle(ticket.throttled());
    Ok(Begun {
        topic: topic.to_string(),
        partition,
        ticket,
        records: records as u64,
        bytes: bytes as u64,
    })
}
