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
    first_produce: Duration,
    rss_mb: f64,
}

fn start_gateway(bin: &std::path::Path, smq: &SmqCluster, port: u16, http: u16) -> Started {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(smq.dir().join("gateway.log"))
        .expect("gateway log");
    let started = Instant::now();
    let child = Command::new(bin)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--smq-master", &smq.master, "--no-wal"])
        .env("RUST_LOG", "info")
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
        assert!(Instant::now() < deadline, "gateway not ready in 600 s");
        std::thread::sleep(Duration::from_millis(20));
    };
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
    assert!(out.status.success(), "kcat produce failed");
    let first_produce = started.elapsed();
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
            let s = start_gateway(&bin, &smq, port, http);
            println!(
                "| {n} | {:.1} s | {:.1} | {:.2} | {how} | {:.2} | {:.2} | {:.0} |",
                written.as_secs_f64(),
                log as f64 / 1e6,
                ckpt as f64 / 1e6,
                s.ready.as_secs_f64(),
                s.first_produce.as_secs_f64(),
                s.rss_mb
            );
            stop(s, i == 1);
        }
    }
    Ok(())
}
