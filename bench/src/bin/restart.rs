//! Restart cost against history (issue 16): writes a history of N produce requests' ledger
//! entries into `kafka-system/offset-mappings` exactly as the gateway writes its own (through
//! `LedgerStore`, which groups entries into SMQ records), checkpoints it as the gateway's
//! checkpointer would, then starts the release gateway on it and measures the time from start
//! to ready and to the first acknowledged produce, and the gateway's RSS then; then SIGTERM and
//! again, then SIGKILL and again. It starts its own SMQ with `dev/smq`.
//!
//!     cargo build --release -p kafka-gateway -p kafka-smq-bench
//!     target/release/restart --entries 100000 --entries 1000000 --entries 10000000
//!
//! Needs `kcat` on PATH for the produce.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use integration_tests::SmqCluster;
use kafka_gateway::ledger::{LedgerEntry, LedgerRecord, LedgerStore, mapping_partition};
use smq_client::{SmqClient, TopicSpec, topic};

#[derive(Parser, Debug)]
struct Args {
    /// History sizes, in produce requests (ledger entries); one fresh SMQ each.
    #[arg(long, default_values_t = [100_000usize])]
    entries: Vec<usize>,
    /// Partitions the entries are spread over (round robin).
    #[arg(long, default_value_t = 100)]
    partitions: i32,
    /// Records per produce request.
    #[arg(long, default_value_t = 1)]
    records: u32,
    /// Every entry's SMQ records follow a burned SMQ offset, so no two entries continue each
    /// other (the worst case for the ledger's memory).
    #[arg(long)]
    discontinuous: bool,
    /// Leave the history without a checkpoint: the first start then replays all of it (what
    /// every start cost before checkpoints), and writes one for the starts after it.
    #[arg(long)]
    no_checkpoint: bool,
    /// The gateway binary (default: the release build next to this one).
    #[arg(long)]
    gateway: Option<std::path::PathBuf>,
}

fn gateway_binary(args: &Args) -> std::path::PathBuf {
    args.gateway.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .expect("own path")
            .with_file_name("kafka-gateway")
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Writes the history: entry i goes to partition i % P, each continuing its partition's ledger.
async fn write_history(client: &SmqClient, args: &Args, n: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let store = LedgerStore::open(client.clone()).await?;
    let layout = client.lookup(&topic("kafka", "hist")).await?;
    let generation = layout.partitions[0].partition.unix_time_ns;
    let parts = args.partitions as usize;
    let per_part = n.div_ceil(parts);
    // Each partition's entries in chunks, many partitions at once: the ledger writer joins
    // what is queued together into one SMQ record, as it does for concurrent produces.
    const CHUNK: usize = 500;
    let step = if args.discontinuous { 2 } else { 1 };
    let mut tasks = futures::stream::FuturesUnordered::new();
    use futures::StreamExt;
    let mut chunk_starts: Vec<(i32, usize)> = Vec::new();
    for start in (0..per_part).step_by(CHUNK) {
        for p in 0..parts as i32 {
            chunk_starts.push((p, start));
        }
    }
    let total = chunk_starts.len();
    let mut next = 0;
    let mut done = 0;
    while done < total {
        while next < total && tasks.len() < 64 {
            let (p, start) = chunk_starts[next];
            next += 1;
            let end = (start + CHUNK).min(per_part);
            let records: Vec<LedgerRecord> = (start..end)
                .map(|i| {
                    let k = i as i64 * i64::from(args.records);
                    LedgerRecord {
                        topic: "kafka/hist".to_string(),
                        partition: p,
                        generation,
                        entry: LedgerEntry {
                            kafka_offset: k,
                            count: args.records,
                            smq_offset: k * step,
                            smq_count: args.records,
                            max_timestamp: 1_700_000_000_000 + i as i64,
                            nonce: 7,
                        },
                        producers: Vec::new(),
                        leader_epoch: 0,
                    }
                })
                .collect();
            let store = &store;
            let slot = mapping_partition("kafka/hist");
            tasks.push(async move { store.append(slot, records).await });
        }
        if let Some(r) = tasks.next().await {
            r?;
            done += 1;
        }
    }
    let written = started.elapsed();
    eprintln!("[restart] wrote {n} entries in {written:?}");
    if !args.no_checkpoint {
        let t = Instant::now();
        let slots = store.checkpoint_now(Duration::from_secs(1800)).await?;
        eprintln!("[restart] {slots} checkpoints written in {:?}", t.elapsed());
    }
    store.close().await;
    Ok(written)
}

/// Bytes the state takes in the filer: the mapping topic's log files and the checkpoints.
async fn state_bytes(client: &SmqClient) -> anyhow::Result<(u64, u64)> {
    async fn tree(client: &SmqClient, dir: &str) -> anyhow::Result<u64> {
        let mut total = 0;
        let mut stack = vec![dir.to_string()];
        while let Some(d) = stack.pop() {
            for e in client.list_dir(&d).await? {
                if e.is_directory {
                    stack.push(format!("{d}/{}", e.name));
                } else {
                    total += e.size;
                }
            }
        }
        Ok(total)
    }
    Ok((
        tree(client, "/topics/kafka-system/offset-mappings").await?,
        tree(
            client,
            "/kafka-gateway/checkpoints/kafka-system/offset-mappings",
        )
        .await?,
    ))
}

struct Started {
    child: Child,
    ready: Duration,
    first_produce: Option<Duration>,
    rss_mb: f64,
}

/// One record to partition 0 of `hist` with acks=all; whether it was acknowledged.
fn produce_one(port: u16) -> bool {
    let out = Command::new("kcat")
        .args([
            "-b",
            &format!("127.0.0.1:{port}"),
            "-t",
            "hist",
            "-p",
            "0",
            "-P",
        ])
        .args(["-X", "acks=all", "-X", "message.timeout.ms=120000"])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(b"after-restart\n")?;
            c.wait_with_output()
        })
        .expect("kcat");
    out.status.success()
}

fn start_gateway(
    bin: &std::path::Path,
    smq: &SmqCluster,
    port: u16,
    http: u16,
    extra: &[&str],
) -> Started {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(smq.dir().join("gateway.log"))
        .expect("gateway log");
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--smq-master", &smq.master])
        // The default setup: a data directory (write-ahead log, lock tokens), the same one at
        // every start, as a pod's volume.
        .arg("--data-dir")
        .arg(smq.dir().join("gateway-data"))
        .args(extra)
        .env("NO_COLOR", "1")
        .env(
            "RUST_LOG",
            std::env::var("RESTART_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start the gateway");
    let deadline = started + Duration::from_secs(600);
    let ready = loop {
        let ok = std::net::TcpStream::connect(("127.0.0.1", http))
            .and_then(|mut s| {
                use std::io::{Read, Write};
                s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n")?;
                let mut b = String::new();
                s.read_to_string(&mut b)?;
                Ok(b.starts_with("HTTP/1.1 200") || b.starts_with("HTTP/1.0 200"))
            })
            .unwrap_or(false);
        if ok {
            break started.elapsed();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("gateway not ready in 600 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let produced = produce_one(port);
    // A failed produce is a result too (the row says so), not a reason to leave the gateway
    // running.
    let first_produce = produced.then(|| started.elapsed());
    let rss_mb = rss_mb(child.id());
    Started {
        child,
        ready,
        first_produce,
        rss_mb,
    }
}

fn stop(mut s: Started, kill: bool) {
    let sig = if kill { "-KILL" } else { "-TERM" };
    let _ = Command::new("kill")
        .args([sig, &s.child.id().to_string()])
        .status();
    let _ = s.child.wait();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = gateway_binary(&args);
    println!(
        "| produce requests in history | written in | state log MB | checkpoint MB | start | ready s | first produce s | RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut reclaimed = Vec::new();
    for &n in &args.entries {
        let smq = SmqCluster::start();
        let client = smq.client().await;
        client
            .ensure_topic(&TopicSpec {
                topic: topic("kafka", "hist"),
                partitions: args.partitions,
                record_type: Some(kafka_smq_format::StorageFormat::Record.record_type()),
                retention_seconds: None,
            })
            .await?;
        let written = write_history(&client, &args, n).await?;
        let (log, ckpt) = state_bytes(&client).await?;
        let (port, http) = (free_port(), free_port());
        for (i, how) in ["first", "after SIGTERM", "after SIGKILL"]
            .iter()
            .enumerate()
        {
            let s = start_gateway(&bin, &smq, port, http, &[]);
            println!(
                "| {n} | {:.1} s | {:.1} | {:.2} | {how} | {:.2} | {} | {:.0} |",
                written.as_secs_f64(),
                log as f64 / 1e6,
                ckpt as f64 / 1e6,
                s.ready.as_secs_f64(),
                s.first_produce
                    .map_or("failed (kcat timed out)".to_string(), |d| format!(
                        "{:.2}",
                        d.as_secs_f64()
                    )),
                s.rss_mb
            );
            stop(s, i == 1);
        }
        if !args.no_checkpoint {
            reclaimed.push(reclaim(&bin, &smq, &client, port, http, n, log + ckpt).await?);
        }
    }
    if !reclaimed.is_empty() {
        println!();
        println!(
            "| produce requests in history | state MB before | state MB after a run with checkpoints | mapping log files left | first log files removed after |"
        );
        println!("|---|---|---|---|---|");
        for row in reclaimed {
            println!("{row}");
        }
    }
    Ok(())
}

/// A gateway run that checkpoints as soon as anything follows the newest checkpoint: two
/// checkpoints later, the log files before the older one are deleted. Returns a table row.
async fn reclaim(
    bin: &std::path::Path,
    smq: &SmqCluster,
    client: &SmqClient,
    port: u16,
    http: u16,
    n: usize,
    before: u64,
) -> anyhow::Result<String> {
    let s = start_gateway(
        bin,
        smq,
        port,
        http,
        &[
            "--checkpoint-interval-secs",
            "1",
            "--checkpoint-min-records",
            "1",
        ],
    );
    // A produce every 6 s (SMQ writes its buffers every 5 s), until a checkpoint of the mapping
    // topic has removed log files: the two newest checkpoints are kept, so the history's files
    // go once two checkpoints follow it. A pass looks at every state partition in turn.
    let log_path = smq.dir().join("gateway.log");
    let log_start = std::fs::metadata(&log_path).map_or(0, |m| m.len() as usize);
    let started = Instant::now();
    let mut reclaimed_after = None;
    while started.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_secs(6));
        produce_one(port);
        let log = std::fs::read(&log_path).unwrap_or_default();
        let log = String::from_utf8_lossy(log.get(log_start..).unwrap_or_default());
        if log.lines().any(|l| {
            l.contains("checkpoint written")
                && l.contains("topic=offset-mappings")
                && !l.contains("log_files_removed=0")
        }) {
            reclaimed_after = Some(started.elapsed());
            break;
        }
    }
    stop(s, false);
    let (log, ckpt) = state_bytes(client).await?;
    let files = log_files(client).await?;
    let kept = std::env::temp_dir().join(format!("restart-gateway-{n}.log"));
    if std::fs::copy(smq.dir().join("gateway.log"), &kept).is_ok() {
        eprintln!("[restart] the gateway's log: {}", kept.display());
    }
    Ok(format!(
        "| {n} | {:.1} | {:.2} | {files} | {} |",
        before as f64 / 1e6,
        (log + ckpt) as f64 / 1e6,
        reclaimed_after.map_or("not in 300 s".to_string(), |d| format!(
            "{:.0} s",
            d.as_secs_f64()
        ))
    ))
}

/// Log files of the mapping topic, over all its partitions.
async fn log_files(client: &SmqClient) -> anyhow::Result<usize> {
    let mut count = 0;
    let mut stack = vec!["/topics/kafka-system/offset-mappings".to_string()];
    while let Some(d) = stack.pop() {
        for e in client.list_dir(&d).await? {
            if e.is_directory {
                stack.push(format!("{d}/{}", e.name));
            } else if smq_client::log_file_start_ns(&e.name).is_some() {
                count += 1;
            }
        }
    }
    Ok(count)
}
