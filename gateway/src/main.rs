use std::process::ExitCode;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clap::Parser;
use kafka_gateway::cluster::{Cluster, Member, MemberFiles};
use kafka_gateway::config::{Cli, Command, GatewayConfig, LedgerCommand};
use kafka_gateway::groups::{ConsumerGroups, Coordinator, OffsetStore};
use kafka_gateway::http::{self, HttpState};
use kafka_gateway::ledger::LedgerStore;
use kafka_gateway::metrics::Metrics;
use kafka_gateway::protocol::Context;
use kafka_gateway::storage::{Store, StoreSettings};
use kafka_gateway::{ledger_tools, server};
use smq_client::{RetryPolicy, SmqClient, SmqConfig};
use tokio::sync::watch;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = cli.config.validate() {
        eprintln!("kafka-gateway: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kafka-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            None | Some(Command::Serve) => serve(cli.config).await,
            Some(Command::Ledger { command }) => ledger(cli.config, command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kafka-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn smq_config(config: &GatewayConfig) -> SmqConfig {
    SmqConfig {
        client_name: format!("kafka-gateway-{}", std::process::id()),
        flush_timing: (config.smq_flush_interval > 0).then(|| smq_client::FlushTiming {
            interval: Duration::from_secs(config.smq_flush_interval),
            settle: Duration::from_secs(1),
        }),
        confirm_from_log_files: config.read_flushed_from_filer,
        ..SmqConfig::with_master(config.smq_master.clone())
    }
}

/// Retries `op` with backoff until it succeeds or shutdown is asked for: SMQ may start after us.
async fn until_ready<T, F, Fut>(
    what: &str,
    shutdown: &watch::Receiver<bool>,
    mut op: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut backoff = RetryPolicy {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(5),
        ..RetryPolicy::default()
    }
    .backoff();
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                if *shutdown.borrow() {
                    return Err(e.context(format!("{what} (shutting down)")));
                }
                let d = backoff.next_delay_unbounded();
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?d, "{what} failed");
                tokio::time::sleep(d).await;
            }
        }
    }
}

async fn serve(config: GatewayConfig) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        let _ = shutdown_tx.send(true);
    });
    let ready = Arc::new(OnceLock::new());
    let http_state = HttpState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let http_addr = config.http;
    let http_shutdown = shutdown_rx.clone();
    let http_task = tokio::spawn(async move {
        if let Err(e) = http::serve(http_addr, http_state, http_shutdown).await {
            tracing::error!(error = %e, addr = %http_addr, "HTTP endpoints failed");
        }
    });

    let settings = StoreSettings {
        namespace: config.namespace.clone(),
        auto_create_topics: config.auto_create_topics,
        default_partitions: config.default_partitions,
        default_storage_format: config.default_storage_format,
        tail_cache_bytes: config.tail_cache_bytes,
        read_flushed_from_filer: config.read_flushed_from_filer,
        max_unflushed_bytes: config.max_unflushed_bytes,
        max_message_bytes: config.max_message_bytes,
        wal_dir: config.wal_dir(),
    };
    // A directory another gateway uses is a configuration error: fail now, not retry.
    if let Some(dir) = &config.wal_dir() {
        kafka_gateway::storage::check_wal_dir(dir)?;
    }
    // Recover the ledger before accepting clients, so nobody ever sees a partial one.
    let (store, offsets) = until_ready(
        "opening SMQ and recovering the offset ledger",
        &shutdown_rx,
        || async {
            let client = SmqClient::connect(smq_config(&config)).await?;
            let store = Store::open(client.clone(), settings.clone()).await?;
            let offsets = OffsetStore::open(client).await?;
            Ok((store, offsets))
        },
    )
    .await?;
    let store = Arc::new(store);
    let cluster = Arc::new({
        let (host, port) = config.advertised();
        match config.node_id() {
            None => Cluster::standalone(host, port),
            Some(node_id) => {
                let me = Member {
                    node_id,
                    host,
                    port,
                    http_port: config.http.port(),
                };
                let files = MemberFiles::new(store.client().clone(), &config.namespace);
                let cluster = until_ready("joining the cluster", &shutdown_rx, || async {
                    match Cluster::join(files.clone(), me.clone()).await {
                        // Another gateway with this id is a configuration error: stop.
                        Err(e @ kafka_gateway::error::GatewayError::InvalidConfig(_)) => Ok(Err(e)),
                        r => Ok(Ok(r?)),
                    }
                })
                .await??;
                tracing::info!(node_id, members = ?cluster.brokers().iter().map(|m| m.node_id).collect::<Vec<_>>(), "joined the cluster");
                cluster
            }
        }
    });
    let membership = {
        let (cluster, store) = (cluster.clone(), store.clone());
        tokio::spawn(async move {
            let published = cluster.clone();
            cluster
                .keep_membership(|| {
                    let (store, published) = (store.clone(), published.clone());
                    async move {
                        store
                            .leader_epochs(|t, p| published.known_epoch(t, p))
                            .await
                    }
                })
                .await
        })
    };
    let groups = Arc::new(Coordinator::new(
        offsets,
        Duration::from_millis(config.group_initial_rebalance_delay_ms),
    ));
    let consumer_groups = Arc::new(ConsumerGroups::new(
        Duration::from_millis(config.group_consumer_session_timeout_ms),
        Duration::from_millis(config.group_consumer_heartbeat_interval_ms),
    ));
    let renewer = {
        let (store, cluster) = (store.clone(), cluster.clone());
        tokio::spawn(async move { store.renew_locks(|t, p| cluster.leads(t, p)).await })
    };
    let durable = {
        let store = store.clone();
        tokio::spawn(async move {
            store.open_logged_topics().await;
            store.keep_durable().await
        })
    };
    let checkpointer = (config.checkpoint_interval_secs > 0).then(|| {
        let (store, groups) = (store.clone(), groups.clone());
        let policy = kafka_gateway::state::CheckpointPolicy {
            every: Duration::from_secs(config.checkpoint_interval_secs),
            min_records: config.checkpoint_min_records.max(1),
            ..Default::default()
        };
        tokio::spawn(async move {
            let owner = store.owner().to_string();
            tokio::join!(
                store.keep_checkpointed(policy),
                groups.offsets.keep_checkpointed(owner, policy)
            );
        })
    });
    // Deleted topics: their SMQ files are removed, and other gateways' deletions followed.
    let deleter = {
        let store = store.clone();
        tokio::spawn(async move { store.keep_deleting().await })
    };
    let retention = (config.retention_check_interval_secs > 0).then(|| {
        let store = store.clone();
        let every = Duration::from_secs(config.retention_check_interval_secs);
        tokio::spawn(async move { store.keep_retention(every).await })
    });
    let ticker = {
        let (groups, consumer_groups) = (groups.clone(), consumer_groups.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                groups.tick();
                consumer_groups.tick();
            }
        })
    };
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let budgets = kafka_gateway::budget::Budgets::new(
        config.max_inflight_bytes,
        metrics.inflight_bytes.clone(),
        metrics.response_bytes.clone(),
    );
    let ctx = Arc::new(Context {
        store: store.clone(),
        config: Arc::new(config.clone()),
        metrics,
        groups: groups.clone(),
        cluster: cluster.clone(),
        consumer_groups,
        budgets,
        next_producer_id: AtomicI64::new(rand::random_range(0..1i64 << 47)),
    });
    let _ = ready.set(ctx.clone());
    let deletion_requests = tokio::spawn(server::serve_deletion_requests(ctx.clone()));
    let stats = kafka_gateway::kube_stats::start(
        &config,
        store.clone(),
        ctx.metrics.clone(),
        cluster.clone(),
        shutdown_rx.clone(),
    );
    let (host, port) = config.advertised();
    tracing::info!(listen = %config.listen, advertised = %format!("{host}:{port}"), namespace = %config.namespace, "serving Kafka clients");
    // In a cluster, SIGTERM first hands this gateway's partitions and groups to the others while
    // it still answers (NOT_LEADER_OR_FOLLOWER, NOT_COORDINATOR: clients move), then stops.
    let (serve_stop_tx, serve_stop_rx) = watch::channel(false);
    let handover = {
        let (cluster, store, mut shutdown_rx) =
            (cluster.clone(), store.clone(), shutdown_rx.clone());
        let wait = Duration::from_secs(config.smq_flush_interval + 5);
        tokio::spawn(async move {
            let _ = shutdown_rx.wait_for(|s| *s).await;
            if cluster.is_clustered() {
                cluster.leave().await;
                let started = tokio::time::Instant::now();
                while store.writes_any_partition().await && started.elapsed() < wait {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tracing::info!(took = ?started.elapsed(), "partitions handed over");
            }
            let _ = serve_stop_tx.send(true);
        })
    };
    server::run(
        ctx,
        listener,
        serve_stop_rx,
        Duration::from_secs(config.shutdown_timeout_secs),
    )
    .await;
    handover.abort();
    membership.abort();
    ticker.abort();
    deleter.abort();
    deletion_requests.abort();
    renewer.abort();
    if let Some(c) = checkpointer {
        c.abort();
    }
    if let Some(r) = retention {
        r.abort();
    }
    if let Some(stats) = stats {
        // Releasing the statistics Lease lets another gateway take over at once; an unreachable
        // API server must not hold up the shutdown.
        let _ = tokio::time::timeout(Duration::from_secs(5), stats).await;
    }
    // Acknowledged records SMQ has not yet written, the gateway's own state (committed offsets,
    // ledger entries) included: wait for its next flush, so that a broker crash right after this
    // gateway stopped loses none of them. State records a broken stream left behind are sent
    // again meanwhile (their publishers do that by themselves).
    let wait = Duration::from_secs(config.smq_flush_interval + 3);
    let started = tokio::time::Instant::now();
    let unflushed = || {
        store.unflushed_bytes() + store.state_unflushed_bytes() + groups.offsets.retained_bytes()
    };
    while unflushed() > 0 && started.elapsed() < wait {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if unflushed() > 0 {
        tracing::warn!(
            bytes = store.unflushed_bytes(),
            state_bytes = store.state_unflushed_bytes() + groups.offsets.retained_bytes(),
            "stopping with acknowledged records SMQ has not yet confirmed written"
        );
    }
    durable.abort();
    store.close().await;
    groups.offsets.close().await;
    let _ = http_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// The `ledger` commands answered from what SMQ holds.
enum Offline {
    Validate,
    Info {
        topic: String,
        partition: i32,
        offset: i64,
    },
}

/// A POST without a body to the gateway's own HTTP endpoints; the response body, or an error
/// naming the status.
async fn http_post(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
        anyhow::anyhow!("connecting to the gateway's HTTP endpoint {addr} (--http): {e}")
    })?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        anyhow::bail!("POST {path} to {addr}: {status}: {body}");
    }
    Ok(body.trim().to_string())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

async fn ledger(config: GatewayConfig, command: LedgerCommand) -> anyhow::Result<()> {
    // Read from SMQ, except what only the running gateway can do.
    let offline = match command {
        LedgerCommand::DiscardWal { topic, partition } => {
            let path = format!("/ledger/discard-wal/{topic}/{partition}");
            let body = http_post(config.http, &path).await?;
            println!("{body}");
            return Ok(());
        }
        LedgerCommand::Validate => Offline::Validate,
        LedgerCommand::Info {
            topic,
            partition,
            offset,
        } => Offline::Info {
            topic,
            partition,
            offset,
        },
    };
    let client = SmqClient::connect(smq_config(&config)).await?;
    let store = LedgerStore::open(client).await?;
    let ledgers = store.recover(Duration::from_secs(30)).await?.ledgers;
    store.close().await;
    let prefix = format!("{}/", config.namespace);
    let out = match offline {
        Offline::Validate => {
            let mut partitions = Vec::new();
            let mut total = 0;
            let mut keys: Vec<_> = ledgers
                .keys()
                .filter(|(t, _)| t.starts_with(&prefix))
                .cloned()
                .collect();
            keys.sort();
            for key in keys {
                let l = &ledgers[&key];
                let problems = l.validate();
                total += problems.len();
                partitions.push(serde_json::json!({
                    "topic": key.0.trim_start_matches(&prefix),
                    "partition": key.1,
                    "entries": l.entry_count(),
                    "segments": l.segment_count(),
                    "high_water_mark": l.next_offset(),
                    "problems": problems,
                }));
            }
            serde_json::json!({"problems": total, "partitions": partitions})
        }
        Offline::Info {
            topic,
            partition,
            offset,
        } => {
            let key = (format!("{prefix}{topic}"), partition);
            let l = ledgers.get(&key).cloned().unwrap_or_default();
            ledger_tools::describe_offset(&topic, partition, offset, &l)
        }
    };
    println!("{out:#}");
    Ok(())
}
