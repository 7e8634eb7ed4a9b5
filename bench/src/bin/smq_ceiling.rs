//! The raw SMQ ceiling: what the broker sustains through our client, with no gateway in between.
//!
//! For each record size, partition count and mode it publishes a fresh topic and reads it back,
//! reporting records/s, MB/s and the broker's CPU time per record (from /proc). It starts its own
//! SMQ with `dev/smq`.
//!
//!     cargo run --release -p kafka-smq-bench --bin smq-ceiling
//!     cargo run --release -p kafka-smq-bench --bin smq-ceiling -- --sustained --records 200000
//!     cargo run --release -p kafka-smq-bench --bin smq-ceiling -- --sustained --record-value
//!     cargo run --release -p kafka-smq-bench --bin smq-ceiling -- --sustained --record-value --publish-only

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use integration_tests::SmqCluster;
use kafka_gateway::records::{StoredRecord, TimestampType, encode_stored};
use kafka_smq_bench::process_cpu;
use smq_client::{DataMessage, PartitionPublisher, SmqClient, TopicSpec, topic};

#[derive(Parser, Debug)]
struct Args {
    /// Records per cell for 1 KiB records sent pipelined (scaled down for the other cells).
    #[arg(long, default_value_t = 30_000)]
    records: usize,
    /// Only the pipelined 1 KiB cell over 3 partitions (the gateways' comparison row); with a
    /// large --records it measures what SMQ sustains once its flushes (gzip, upload) run along.
    #[arg(long)]
    sustained: bool,
    /// Publish what the gateway's `record` storage format stores instead of bare values: each
    /// 1 KiB value inside a `RecordValue` (Kafka offset, partition, timestamp, key, value), to a
    /// topic registered with that record type, keyed by the offset. Rows say "RecordValue".
    #[arg(long)]
    record_value: bool,
    /// Publish only, no read-back (for comparisons of produce rates run back to back).
    #[arg(long)]
    publish_only: bool,
    /// Run id, so topics from earlier runs on the same cluster never collide.
    #[arg(long, default_value_t = std::process::id())]
    run: u32,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Pipelined,
    OneAtATime,
}

struct Cell {
    record_value: bool,
    size: usize,
    partitions: i32,
    mode: Mode,
    records: usize,
}

struct Measured {
    records: usize,
    bytes: usize,
    wall: Duration,
    broker_cpu: Duration,
}

impl Measured {
    fn row(&self, what: &str, cell: &Cell) -> String {
        let secs = self.wall.as_secs_f64();
        format!(
            "| {what} | {}{} | {} | {} | {} | {:.0} | {:.1} | {:.1} |",
            human_size(cell.size),
            if cell.record_value {
                " RecordValue"
            } else {
                ""
            },
            cell.partitions,
            match cell.mode {
                Mode::Pipelined => "pipelined",
                Mode::OneAtATime => "one at a time",
            },
            self.records,
            self.records as f64 / secs,
            self.bytes as f64 / secs / 1e6,
            self.broker_cpu.as_secs_f64() * 1e6 / self.records as f64,
        )
    }
}

/// Record `offset` as the gateway's `record` format publishes it.
fn stored(offset: i64, partition: i32, value: &[u8]) -> DataMessage {
    let r = StoredRecord {
        offset,
        partition,
        timestamp: 1_700_000_000_000 + offset,
        timestamp_type: TimestampType::CreateTime,
        key: Some(Bytes::from(format!("key-{offset}"))),
        value: Some(Bytes::copy_from_slice(value)),
        headers: Vec::new(),
    };
    DataMessage {
        key: offset.to_string().into_bytes(),
        value: encode_stored(&r),
        ts_ns: 0,
        ctrl: None,
    }
}

fn human_size(n: usize) -> String {
    if n >= 1024 {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let smq = SmqCluster::start();
    let pid = smq
        .broker_pid()
        .ok_or_else(|| anyhow::anyhow!("no broker pid"))?;
    let client = smq.client().await;

    let mut cells = Vec::new();
    for size in [1024usize, 256 * 1024] {
        for partitions in [1, 3] {
            for mode in [Mode::Pipelined, Mode::OneAtATime] {
                let base = if size == 1024 {
                    args.records
                } else {
                    args.records / 50
                };
                let records = match mode {
                    Mode::Pipelined => base,
                    Mode::OneAtATime => base / 5,
                };
                if args.sustained
                    && !(size == 1024 && partitions == 3 && matches!(mode, Mode::Pipelined))
                {
                    continue;
                }
                cells.push(Cell {
                    record_value: args.record_value,
                    size,
                    partitions,
                    mode,
                    records: records.max(partitions as usize * 10),
                });
            }
        }
    }

    println!(
        "| op | record | partitions | mode | records | records/s | MB/s | broker CPU µs/record |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, cell) in cells.iter().enumerate() {
        let name = format!("ceiling-{}-{i}", args.run);
        let t = topic("bench", &name);
        client
            .ensure_topic(&TopicSpec {
                topic: t.clone(),
                partitions: cell.partitions,
                record_type: cell
                    .record_value
                    .then(|| kafka_smq_format::StorageFormat::Record.record_type()),
                retention_seconds: None,
            })
            .await?;
        // Publishers stay open until the reads are done: once the last one leaves, SMQ unloads
        // the partition and (4.48) FetchMessage can no longer see first-window data.
        let publishers: Vec<Arc<PartitionPublisher>> = (0..cell.partitions)
            .map(|p| Arc::new(PartitionPublisher::new(client.clone(), t.clone(), p)))
            .collect();
        let published = publish(&publishers, cell, pid).await?;
        println!("{}", published.row("publish", cell));
        if !args.publish_only {
            let fetched = fetch(&client, &t, cell, pid).await?;
            println!("{}", fetched.row("fetch", cell));
        }
        for p in &publishers {
            p.close().await;
        }
    }
    Ok(())
}

async fn publish(
    publishers: &[Arc<PartitionPublisher>],
    cell: &Cell,
    pid: u32,
) -> anyhow::Result<Measured> {
    let per_partition = cell.records / publishers.len();
    let value = vec![b'v'; cell.size];
    let record_value = cell.record_value;
    let cpu0 = process_cpu(pid).unwrap_or_default();
    let start = Instant::now();
    let tasks = publishers.iter().map(|p| {
        let p = p.clone();
        let value = value.clone();
        let mode = cell.mode;
        tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..per_partition {
                let msg = if record_value {
                    stored(i as i64, p.partition(), &value)
                } else {
                    DataMessage {
                        key: format!("k{i}").into_bytes(),
                        value: value.clone(),
                        ts_ns: 0,
                        ctrl: None,
                    }
                };
                match mode {
                    Mode::Pipelined => acks.push(p.send(msg).await?),
                    Mode::OneAtATime => {
                        p.publish(msg).await?;
                    }
                }
            }
            for a in acks {
                a.wait().await?;
            }
            anyhow::Ok(())
        })
    });
    for r in futures::future::join_all(tasks).await {
        r??;
    }
    let wall = start.elapsed();
    let records = per_partition * publishers.len();
    Ok(Measured {
        records,
        bytes: records * cell.size,
        wall,
        broker_cpu: process_cpu(pid).unwrap_or_default().saturating_sub(cpu0),
    })
}

async fn fetch(
    client: &SmqClient,
    t: &smq_client::Topic,
    cell: &Cell,
    pid: u32,
) -> anyhow::Result<Measured> {
    let per_partition = (cell.records / cell.partitions as usize) as i64;
    let max_messages = match cell.mode {
        Mode::Pipelined => 1000,
        Mode::OneAtATime => 1,
    };
    let cpu0 = process_cpu(pid).unwrap_or_default();
    let start = Instant::now();
    let tasks = (0..cell.partitions).map(|p| {
        let client = client.clone();
        let t = t.clone();
        tokio::spawn(async move {
            let (mut next, mut bytes, mut empty) = (0i64, 0usize, 0u32);
            while next < per_partition {
                let r = client.fetch(&t, p, next, 8 << 20, max_messages).await?;
                if r.messages.is_empty() {
                    // Records that left the broker's memory are unreadable until their flush
                    // lands; count how often that happens and wait for it.
                    empty += 1;
                    anyhow::ensure!(
                        empty < 200,
                        "fetch at {next} of partition {p} kept returning nothing (HWM {}, next {}, end {})",
                        r.high_water_mark,
                        r.next_offset,
                        r.end_of_partition
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                next += r.messages.len() as i64;
                bytes += r.messages.iter().map(|m| m.value.len()).sum::<usize>();
            }
            if empty > 0 {
                eprintln!("partition {p}: {empty} empty fetches while data was being flushed");
            }
            anyhow::Ok((next as usize, bytes))
        })
    });
    let (mut records, mut bytes) = (0, 0);
    for r in futures::future::join_all(tasks).await {
        let (n, b) = r??;
        records += n;
        bytes += b;
    }
    Ok(Measured {
        records,
        bytes,
        wall: start.elapsed(),
        broker_cpu: process_cpu(pid).unwrap_or_default().saturating_sub(cpu0),
    })
}
