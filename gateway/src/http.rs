//! The HTTP side: /healthz, /readyz, /metrics, /stats and the ledger inspection endpoints.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::watch;

use smq_client::{SmqClient, Topic, UnavailablePartition};

use crate::metrics::Metrics;
use crate::protocol::Context;

/// Set once the store is open and the Kafka listener is up.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<OnceLock<Arc<Context>>>,
}

pub async fn serve(
    addr: SocketAddr,
    state: HttpState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/stats", get(stats))
        .route("/led-partitions/{topic}", get(led_partitions))
        .route("/ledger/validate", get(validate))
        .route("/ledger/info/{topic}/{partition}/{offset}", get(info))
        .route("/ledger/discard-wal/{topic}/{partition}", post(discard_wal))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "HTTP endpoints listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}

fn json_response(status: StatusCode, v: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{v:#}\n"),
    )
        .into_response()
}

/// Why a Kafka partition cannot be written right now, if so: SMQ partitions this gateway could
/// not use the last time it tried (see `SmqClient::unavailable_partitions`), either the data
/// partition itself or the `kafka-system/offset-mappings` partition its ledger entries go to
/// (an append needs both).
fn partition_unavailable(
    client: &SmqClient,
    smq_topic: &Topic,
    partition: i32,
    ledger_partition: i32,
) -> Option<UnavailablePartition> {
    client
        .partition_unavailable(smq_topic, partition)
        .or_else(|| {
            let slot = ledger_partition;
            let mappings = smq_client::topic(
                crate::state::SYSTEM_NAMESPACE,
                crate::ledger::MAPPINGS_TOPIC,
            );
            client.partition_unavailable(&mappings, slot)
        })
}

fn unavailable_json(u: &UnavailablePartition) -> serde_json::Value {
    json!({
        "smq_topic": format!("{}/{}", u.topic.namespace, u.topic.name),
        "partition": u.partition,
        "reason": u.reason,
        "seconds": u.since.elapsed().as_secs_f64(),
    })
}

/// Ready once the ledger is recovered and while an SMQ broker the gateway uses answers: a
/// broker whose circuit is open is probed (at most once per breaker cooldown), so readiness
/// returns by itself when SMQ does. With several brokers and only some of them down, the
/// gateway stays ready (every gateway would fail alike, and the other partitions still work)
/// and the answer names the brokers that are down and the SMQ partitions it cannot use.
async fn readyz(State(s): State<HttpState>) -> Response {
    let Some(ctx) = s.ready.get() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: recovering the offset ledger\n",
        )
            .into_response();
    };
    let client = ctx.store.client();
    let mut down = Vec::new();
    for broker in client.open_circuits() {
        let probe = tokio::time::timeout(std::time::Duration::from_secs(2), client.probe(&broker));
        if !matches!(probe.await, Ok(Ok(()))) {
            down.push(broker);
        }
    }
    let unavailable: String = client
        .unavailable_partitions()
        .iter()
        .map(|u| {
            format!(
                "unavailable partition: {}/{} {} for {:.1}s: {}\n",
                u.topic.namespace,
                u.topic.name,
                u.partition,
                u.since.elapsed().as_secs_f64(),
                u.reason
            )
        })
        .collect();
    let live = client
        .known_brokers()
        .iter()
        .filter(|b| !down.contains(b))
        .count();
    if down.is_empty() {
        (StatusCode::OK, format!("ready\n{unavailable}")).into_response()
    } else if live > 0 {
        (
            StatusCode::OK,
            format!(
                "ready, degraded: SMQ broker unreachable (circuit open): {}\n{unavailable}",
                down.join(", ")
            ),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "SMQ broker unreachable (circuit open): {}\n{unavailable}",
                down.join(", ")
            ),
        )
            .into_response()
    }
}

async fn metrics(State(s): State<HttpState>) -> Response {
    if let Some(ctx) = s.ready.get() {
        s.metrics
            .set_unavailable_partitions(&ctx.store.client().unavailable_partitions());
        let mut lags = Vec::new();
        for (group, _, _) in ctx.groups.list() {
            for ((topic, partition), c) in ctx.groups.offsets.get(&group) {
                if let Ok(p) = ctx.store.partition(&topic, partition).await {
                    lags.push((
                        group.clone(),
                        topic,
                        partition,
                        (p.high_water_mark() - c.offset).max(0),
                    ));
                }
            }
        }
        s.metrics.set_group_lag(&lags);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn stats(State(s): State<HttpState>) -> Response {
    let Some(ctx) = s.ready.get() else {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, json!({"ready": false}));
    };
    let mut topics = Vec::new();
    let client = ctx.store.client();
    for t in ctx.store.open_topics().await {
        let partitions: Vec<_> = t
            .partitions
            .iter()
            .enumerate()
            .map(|(index, p)| {
                // A summary, not a copy of the ledger: /stats is scraped often.
                let l = p.ledger_summary();
                let (smq_topic, smq_index) = ctx.store.smq_partition(&t, index as i32);
                let unavailable =
                    partition_unavailable(client, &smq_topic, smq_index, p.ledger_partition());
                json!({
                    "partition": index,
                    "high_water_mark": p.high_water_mark(),
                    "log_start_offset": p.log_start(),
                    "ledger_entries": l.entries,
                    "ledger_segments": l.segments,
                    "ledger_bytes": l.memory_bytes,
                    "ledger_approximate": l.approximate,
                    "first_block_max_timestamp": l.first_max_timestamp,
                    "max_timestamp": l.max_timestamp,
                    "writes_refused": p.writes_refused(),
                    "available": unavailable.is_none(),
                    "unavailable": unavailable.as_ref().map(unavailable_json),
                })
            })
            .collect();
        topics.push(json!({
            "topic": t.name,
            "smq_topic": format!("{}/{}", t.smq_topic.namespace, t.smq_topic.name),
            "partitions": partitions,
        }));
    }
    let mut groups = Vec::new();
    for (group, state, _) in ctx.groups.list() {
        let mut partitions = Vec::new();
        for ((topic, partition), c) in ctx.groups.offsets.get(&group) {
            let hwm = match ctx.store.partition(&topic, partition).await {
                Ok(p) => Some(p.high_water_mark()),
                Err(_) => None,
            };
            partitions.push(json!({
                "topic": topic,
                "partition": partition,
                "committed_offset": c.offset,
                "high_water_mark": hwm,
                "lag": hwm.map(|h| (h - c.offset).max(0)),
            }));
        }
        groups.push(json!({"group": group, "state": state.name(), "offsets": partitions}));
    }
    // Deleted topics whose SMQ files are still being removed (retried until done).
    let deleting: Vec<_> = ctx
        .store
        .deletions()
        .into_iter()
        .map(|d| {
            json!({
                "topic": d.topic,
                "smq_topic": d.smq_topic,
                "deleted_at_ms": d.deleted_at_ms,
                "files_deleted_at_ms": d.files_deleted_at_ms,
                "failed_attempts": d.failed_attempts,
                "last_error": d.last_error,
            })
        })
        .collect();
    let smq_unavailable: Vec<_> = client
        .unavailable_partitions()
        .iter()
        .map(unavailable_json)
        .collect();
    json_response(
        StatusCode::OK,
        json!({
            "ready": true,
            "topics": topics,
            "groups": groups,
            "deleting_topics": deleting,
            "smq_unavailable_partitions": smq_unavailable,
        }),
    )
}

async fn validate(State(s): State<HttpState>) -> Response {
    let Some(ctx) = s.ready.get() else {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, json!({"ready": false}));
    };
    let mut report = Vec::new();
    let mut total = 0;
    for t in ctx.store.open_topics().await {
        for (index, p) in t.partitions.iter().enumerate() {
            let problems = p.ledger_snapshot().validate();
            total += problems.len();
            report.push(json!({"topic": t.name, "partition": index, "problems": problems}));
        }
    }
    json_response(
        StatusCode::OK,
        json!({"problems": total, "partitions": report}),
    )
}

/// The operator's answer to a partition that refuses writes because its write-ahead log does
/// not continue the ledger: drop the log's records (they are lost) and accept writes again.
async fn discard_wal(
    State(s): State<HttpState>,
    Path((topic, partition)): Path<(String, i32)>,
) -> Response {
    let Some(ctx) = s.ready.get() else {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, json!({"ready": false}));
    };
    match ctx.store.partition(&topic, partition).await {
        Ok(p) => {
            let refused = p.writes_refused();
            let dropped = p.discard_recovered().await;
            json_response(
                StatusCode::OK,
                json!({"topic": topic, "partition": partition, "was_refusing": refused, "records_dropped": dropped}),
            )
        }
        Err(e) => json_response(StatusCode::NOT_FOUND, json!({"error": e.to_string()})),
    }
}

/// The offsets of a topic's partitions this gateway leads, for the gateway that reports
/// KafkaTopic statistics (`cluster/peer.rs`).
async fn led_partitions(State(s): State<HttpState>, Path(topic): Path<String>) -> Response {
    let Some(ctx) = s.ready.get() else {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, json!({"ready": false}));
    };
    match ctx.store.topic(&topic).await {
        Ok(Some(t)) => {
            let led: Vec<_> = t
                .partitions
                .iter()
                .enumerate()
                .filter(|(index, _)| ctx.cluster.leads(&topic, *index as i32))
                .map(|(index, p)| crate::cluster::peer::LedOffsets {
                    partition: index as i32,
                    high_water_mark: p.high_water_mark(),
                    log_start_offset: p.log_start(),
                })
                .collect();
            json_response(StatusCode::OK, json!(led))
        }
        Ok(None) => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no topic {topic}")}),
        ),
        Err(e) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": e.to_string()}),
        ),
    }
}

async fn info(
    State(s): State<HttpState>,
    Path((topic, partition, offset)): Path<(String, i32, i64)>,
) -> Response {
    let Some(ctx) = s.ready.get() else {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, json!({"ready": false}));
    };
    match ctx.store.partition(&topic, partition).await {
        Ok(p) => json_response(
            StatusCode::OK,
            crate::ledger_tools::describe_offset(&topic, partition, offset, &p.ledger_snapshot()),
        ),
        Err(e) => json_response(StatusCode::NOT_FOUND, json!({"error": e.to_string()})),
    }
}
