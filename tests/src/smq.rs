use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use smq_client::{SmqClient, SmqConfig};

/// A real SeaweedFS master, volume server, filer and MQ broker, each its own process, started
/// with `dev/smq up` in a temporary folder and stopped (and the folder removed) when dropped,
/// also when the test fails.
#[derive(Debug)]
pub struct SmqCluster {
    dir: tempfile::TempDir,
    pub master: String,
    /// The first broker (the balancer, as `dev/smq up` starts it first).
    pub broker: String,
    /// Every broker, in `dev/smq`'s order (broker `i` is `brokers[i]`).
    pub brokers: Vec<String>,
    pub filer: String,
}

/// The repository root, where `dev/smq` lives.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

fn smq(args: &[&str]) -> Result<HashMap<String, String>, String> {
    let script = repo_root().join("dev/smq");
    let out = Command::new(&script)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "dev/smq {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

impl SmqCluster {
    /// Starts a fresh cluster. Panics with the script's output if it cannot.
    pub fn start() -> Self {
        Self::start_with_brokers(1)
    }

    /// Starts a fresh cluster with `n` MQ brokers under one master and filer.
    pub fn start_with_brokers(n: usize) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("smq-test-")
            .tempdir()
            .expect("temp dir");
        let path = dir.path().to_str().expect("utf-8 temp path").to_string();
        let env = match smq(&["up", &path, "--brokers", &n.to_string()]) {
            Ok(env) => env,
            Err(e) => {
                let _ = smq(&["down", &path]);
                panic!("{e}");
            }
        };
        let get = |k: &str| {
            env.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("dev/smq up printed no {k}= line: {env:?}"))
        };
        Self {
            master: get("SMQ_MASTER"),
            broker: get("SMQ_BROKER"),
            brokers: get("SMQ_BROKERS").split(',').map(str::to_string).collect(),
            filer: get("SMQ_FILER"),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp path")
    }

    /// SIGKILLs the broker alone.
    pub fn kill_broker(&self) {
        smq(&["kill-broker", self.path()]).expect("kill-broker");
    }

    /// SIGTERMs the broker alone and waits for it to exit.
    pub fn stop_broker(&self) {
        smq(&["stop-broker", self.path()]).expect("stop-broker");
    }

    /// Starts the broker again on the same port and waits until it answers.
    pub fn start_broker(&self) {
        smq(&["start-broker", self.path()]).expect("start-broker");
    }

    /// SIGKILLs broker `i` alone.
    pub fn kill_broker_at(&self, i: usize) {
        smq(&["kill-broker", self.path(), &i.to_string()]).expect("kill-broker");
    }

    /// Starts broker `i` again on its port and waits until it answers and has connected to the
    /// balancer.
    pub fn start_broker_at(&self, i: usize) {
        smq(&["start-broker", self.path(), &i.to_string()]).expect("start-broker");
    }

    /// The index of the broker holding the balancer lock.
    pub fn balancer_index(&self) -> usize {
        let script = repo_root().join("dev/smq");
        let out = Command::new(&script)
            .args(["balancer", self.path()])
            .output()
            .expect("run dev/smq balancer");
        assert!(
            out.status.success(),
            "dev/smq balancer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("dev/smq balancer prints an index")
    }

    /// The broker's process id (for CPU accounting in benchmarks).
    pub fn broker_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir().join("broker.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// A client configured to discover brokers through this cluster's master.
    pub fn config(&self) -> SmqConfig {
        SmqConfig::with_master(self.master.clone())
    }

    pub async fn client(&self) -> SmqClient {
        SmqClient::connect(self.config())
            .await
            .expect("connect to the test SMQ")
    }
}

impl Drop for SmqCluster {
    fn drop(&mut self) {
        if let Err(e) = smq(&["down", self.path()]) {
            eprintln!("stopping the test SMQ failed: {e}");
        }
    }
}
