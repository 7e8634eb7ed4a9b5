use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, RequestHeader};
use tokio::time::Instant;

use super::Context;
use crate::error::{GatewayError, GatewayResult};
use crate::records::{Record, StoredRecord, StoredUnit, encode_batch};
use crate::storage::{READ_AHEAD_BYTES, unit_size};

pub async fn handle(
    ctx: &Context,
    _header: &RequestHeader,
    req: FetchRequest,
) -> GatewayResult<FetchResponse> {
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.clamp(0, 60_000) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    // The response is bounded by the request's max_bytes, the connection's in-flight budget
    // and what is free of the gateway's response budget, reserved before anything is read.
    let want = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    }
    .min(ctx.config.max_connection_inflight_bytes)
    // At least eight fetches read at full size at once before any waits.
    .min((ctx.config.max_inflight_bytes / 16).max(1));
    loop {
        // Consumers waiting at the tail reserve nothing until there is something to read.
        let mut grant = if has_data(ctx, &req).await {
            super::request::reserve_response(ctx, want, deadline).await
        } else {
            super::request::empty_grant(ctx)
        };
        let mut watchers = Vec::new();
        let (response, bytes) = fetch_once(ctx, &req, grant.bytes(), &mut watchers).await;
        if bytes >= min_bytes.max(1) || Instant::now() >= deadline || watchers.is_empty() {
            super::request::keep_until_written(grant);
            return Ok(response);
        }
        // Only what was read is held while waiting for more.
        grant.resize(bytes);
        // Long-poll here: SMQ ignores max_wait_ms. Wake on any partition's new high water mark.
        let changed = watchers.iter_mut().map(|w| Box::pin(w.changed()));
        let _ = tokio::time::timeout_at(deadline, futures::future::select_all(changed)).await;
        if Instant::now() >= deadline && bytes > 0 {
            super::request::keep_until_written(grant);
            return Ok(response);
        }
    }
}

/// Whether any partition asked for has records at or past the fetch offset (or an error to
/// report).
async fn has_data(ctx: &Context, req: &FetchRequest) -> bool {
    for t in &req.topics {
        for p in &t.partitions {
            if !ctx.cluster.leads(&t.topic.0, p.partition) {
                return true;
            }
            match ctx.store.partition(&t.topic.0, p.partition).await {
                Ok(part) if part.high_water_mark() == p.fetch_offset => {}
                _ => return true,
            }
        }
    }
    false
}

/// Bytes of a v2 batch header.
const BATCH_HEADER: usize = 61;

/// One read of every partition asked for, within `max_total` bytes of records (0: only the first
/// record batch).
async fn fetch_once(
    ctx: &Context,
    req: &FetchRequest,
    max_total: usize,
    watchers: &mut Vec<tokio::sync::watch::Receiver<i64>>,
) -> (FetchResponse, usize) {
    let count = req
        .topics
        .iter()
        .map(|t| t.partitions.len())
        .sum::<usize>()
        .max(1);
    // Partitions are read concurrently, each within an even share of the response limit (and at
    // least one record, as Kafka returns past the limits: KIP-74).
    let share = (max_total / count).max(1);
    let reads = req.topics.iter().flat_map(|topic| {
        topic.partitions.iter().map(move |p| async move {
            let name = topic.topic.0.to_string();
            // Less the batch header this partition's records will be wrapped in.
            let budget = (p.partition_max_bytes.max(0) as usize)
                .min(share)
                .saturating_sub(BATCH_HEADER)
                .max(1);
            let found = match ctx
                .led_partition_at(&name, p.partition, p.current_leader_epoch)
                .await
            {
                Ok(part) => {
                    // Watching from before the read: a mark that moves during it wakes the wait.
                    let watch = part.subscribe_hwm();
                    // Reading ahead of the fetch (for the next one) takes memory too: only as
                    // much as the response budget has free now, held while reading.
                    let ahead = super::request::try_reserve_response(ctx, READ_AHEAD_BYTES);
                    let allowed = ahead.as_ref().map_or(0, |a| a.bytes());
                    let read = part.read_ahead(p.fetch_offset, budget, allowed).await;
                    drop(ahead);
                    Ok((part, watch, read))
                }
                Err(e) => Err(e),
            };
            (name, p, found)
        })
    });
    let results = futures::future::join_all(reads).await;
    let mut total = 0usize;
    let mut topics: Vec<FetchableTopicResponse> = Vec::with_capacity(req.topics.len());
    let mut results = results.into_iter();
    for topic in &req.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for (name, p, found) in results.by_ref().take(topic.partitions.len()) {
            let data = PartitionData::default().with_partition_index(p.partition);
            let (part, watch, read) = match found {
                Ok(found) => found,
                Err(e) => {
                    partitions.push(data.with_error_code(e.code()).with_high_watermark(-1));
                    continue;
                }
            };
            match read {
                Ok(mut r) => {
                    if r.units.is_empty() {
                        watchers.push(watch);
                    }
                    // The whole response stays within max_bytes; only the first record of the
                    // response may exceed it (KIP-74). Records left out are fetched next time.
                    let mut keep = 0;
                    let mut size = BATCH_HEADER;
                    for u in &r.units {
                        let s = unit_size(u);
                        if total + size + s > max_total && !(total == 0 && keep == 0) {
                            break;
                        }
                        size += s;
                        keep += 1;
                    }
                    r.units.truncate(keep);
                    let records: i64 = r.units.iter().map(StoredUnit::count).sum();
                    let encoded = encode_units(&r.units);
                    let len = encoded.len();
                    total += len;
                    ctx.metrics.fetched(&name, records as u64, len as u64);
                    partitions.push(
                        data.with_high_watermark(r.high_water_mark)
                            .with_last_stable_offset(r.high_water_mark)
                            .with_log_start_offset(r.log_start)
                            .with_records(Some(encoded)),
                    );
                }
                Err(e) => {
                    if !matches!(e, GatewayError::OffsetOutOfRange { .. }) {
                        tracing::warn!(topic = %name, partition = p.partition, offset = p.fetch_offset, error = %e, "fetch failed");
                    }
                    partitions.push(
                        data.with_error_code(e.code())
                            .with_high_watermark(part.high_water_mark())
                            .with_last_stable_offset(part.high_water_mark())
                            .with_log_start_offset(part.log_start()),
                    );
                }
            }
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    // session_id 0: fetch sessions are declined, clients keep sending full fetches (KIP-227).
    (
        FetchResponse::default()
            .with_session_id(0)
            .with_responses(topics),
        total,
    )
}

/// Stored batches as they are; stored records as one uncompressed v2 batch per run with the same
/// timestamp type. Empty results are empty bytes, not null: clients reject a null record set.
fn encode_units(units: &[StoredUnit]) -> bytes::Bytes {
    let mut out = BytesMut::new();
    let mut records: Vec<&StoredRecord> = Vec::new();
    for u in units {
        match u {
            StoredUnit::Record(r) => {
                if records
                    .first()
                    .is_some_and(|f| f.timestamp_type != r.timestamp_type)
                {
                    encode_records(&mut out, &records);
                    records.clear();
                }
                records.push(r);
            }
            StoredUnit::Batch(b) => {
                encode_records(&mut out, &records);
                records.clear();
                out.extend_from_slice(&b.raw);
            }
        }
    }
    encode_records(&mut out, &records);
    out.freeze()
}

/// One batch of records with consecutive offsets and one timestamp type.
fn encode_records(out: &mut BytesMut, run: &[&StoredRecord]) {
    let Some(first) = run.first() else {
        return;
    };
    let base = first.offset;
    let converted: Vec<Record> = run
        .iter()
        .map(|r| Record {
            offset_delta: (r.offset - base) as i32,
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
        })
        .collect();
    encode_batch(out, base, first.timestamp_type, &converted);
}
