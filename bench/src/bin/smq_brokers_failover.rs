//! What SMQ 4.48 itself does when one of several brokers dies and restarts, through the SMQ
//! client alone (no gateway): the experiment behind `docs/smq-brokers.md`.
//!
//! Starts `dev/smq up --brokers N`, creates a 6-partition topic, publishes one record to every
//! partition, then for each broker of `--order`: SIGKILLs it, prints every change of the
//! partitions' leaders (LookupTopicBrokers) for up to `--wait` seconds or until no partition is
//! led by the dead broker or by nobody, publishes to every partition (retrying, with the time each
//! succeeded), starts the broker again, publishes again, and prints `dev/smq status` (a broker that
//! crashed shows as stopped).
//!
//! ```sh
//! cargo run -p kafka-smq-bench --bin smq-brokers-failover -- --brokers 3 --order 1,0
//! cargo run -p kafka-smq-bench --bin smq-brokers-failover -- --brokers 2 --order 1 --wait 5 --no-assign
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use integration_tests::SmqCluster;
use smq_client::{DataMessage, PartitionPublisher, SmqClient, TopicSpec};

#[derive(Parser, Debug)]
struct Args {
    /// Brokers in the cluster.
    #[arg(long, default_value_t = 3)]
    brokers: usize,
    /// The brokers to kill, in turn (0-based, comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,0")]
    order: Vec<usize>,
    /// Longest wait for new leaders after a kill, in seconds.
    #[arg(long, default_value_t = 45)]
    wait: u64,
    /// Do not load partitions on their leader first (`SmqConfig::assign_partitions` off): shows
    /// the crash of a restarted non-balancer broker.
    #[arg(long)]
    no_assign: bool,
}

fn msg(i: usize) -> DataMessage {
    DataMessage {
        key: format!("k{i}").into_bytes(),
        value: format!("v{i}").into_bytes(),
        ts_ns: 0,
        ctrl: None,
    }
}

async fn leaders(c: &SmqClient, t: &smq_client::Topic) -> Vec<String> {
    c.invalidate(t);
    match c.lookup(t).await {
        Ok(l) => l.partitions.iter().map(|p| p.leader.clone()).collect(),
        Err(e) => vec![format!("ERR {e}")],
    }
}

async fn publish_all(pubs: &[PartitionPublisher], t0: Instant, n: usize) {
    let mut done = vec![None; pubs.len()];
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, p) in pubs.iter().enumerate() {
            if done[i].is_some() {
                continue;
            }
            match tokio::time::timeout(Duration::from_secs(5), p.publish(msg(n))).await {
                Ok(Ok(_)) => done[i] = Some(t0.elapsed()),
                Ok(Err(e)) => println!("  p{i} after {:?}: {e}", t0.elapsed()),
                Err(_) => println!("  p{i}: no ack within 5 s"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("  published to every partition after: {done:?}");
}

fn status(smq: &SmqCluster) {
    let out = std::process::Command::new(integration_tests::repo_root().join("dev/smq"))
        .args(["status", smq.dir().to_str().expect("utf-8 path")])
        .output()
        .expect("dev/smq status");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    // A crashed broker's last words.
    for i in 0..smq.brokers.len() {
        let name = if i == 0 {
            "broker".to_string()
        } else {
            format!("broker{i}")
        };
        let log = std::fs::read_to_string(smq.dir().join("logs").join(format!("{name}.log")))
            .unwrap_or_default();
        for l in log
            .lines()
            .filter(|l| {
                l.contains("panic") || l.contains("nil pointer") || l.contains("LocalPartition")
            })
            .take(6)
        {
            println!("  {name}.log: {l}");
        }
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let smq = SmqCluster::start_with_brokers(args.brokers);
    println!(
        "brokers {:?}, balancer {}",
        smq.brokers,
        smq.balancer_index()
    );
    let c = SmqClient::connect(smq_client::SmqConfig {
        assign_partitions: !args.no_assign,
        ..smq.config()
    })
    .await
    .expect("connect");
    let t = smq_client::topic("test", "failover");
    c.ensure_topic(&TopicSpec {
        topic: t.clone(),
        partitions: 6,
        record_type: None,
        retention_seconds: None,
    })
    .await
    .expect("create the topic");
    println!("leaders {:?}", leaders(&c, &t).await);
    let pubs: Vec<_> = (0..6)
        .map(|p| PartitionPublisher::new(c.clone(), t.clone(), p))
        .collect();
    publish_all(&pubs, Instant::now(), 0).await;
    for (k, victim) in args.order.into_iter().enumerate() {
        println!(
            "== SIGKILL broker {victim} ({}); the balancer is {}",
            smq.brokers[victim],
            smq.balancer_index()
        );
        smq.kill_broker_at(victim);
        let t0 = Instant::now();
        let mut last = Vec::new();
        while t0.elapsed() < Duration::from_secs(args.wait) {
            let l = leaders(&c, &t).await;
            if l != last {
                println!("  {:?}: leaders {l:?}", t0.elapsed());
                last = l.clone();
            }
            if !l
                .iter()
                .any(|x| x.is_empty() || x == &smq.brokers[victim] || x.starts_with("ERR"))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        publish_all(&pubs, t0, 100 + k).await;
        println!("== start broker {victim} again");
        smq.start_broker_at(victim);
        let t0 = Instant::now();
        publish_all(&pubs, t0, 200 + k).await;
        println!(
            "  leaders {:?}, balancer {}",
            leaders(&c, &t).await,
            smq.balancer_index()
        );
        status(&smq);
    }
}
