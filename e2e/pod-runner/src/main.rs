//! `pod-runner`: the kubelet stand-in of the e2e testbed, which has an API server but no nodes.
//!
//! It watches Deployments and StatefulSets and, for every pod their template describes, starts
//! the matching binary of this project (never anything else: the image's repository name must be
//! one of `--binary NAME=PATH`) with the template's args and env, under a token of the pod's
//! service account. Container ports are mapped to free loopback ports (bind addresses and the
//! pod's own cluster DNS names in args/env are rewritten to them). It creates a Pod object per
//! pod (annotation `e2e.kafka.seaweedfs.com/host-ports` says where each port went), probes the
//! readiness probe, reports readiness in the Pod and the workload status, restarts crashed
//! processes and stops them when the workload is scaled down, changed or deleted.

mod spec;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};

const PORTS_ANNOTATION: &str = "e2e.kafka.seaweedfs.com/host-ports";
const NODE_NAME: &str = "pod-runner";

#[derive(Parser)]
#[command(name = "pod-runner", about)]
struct Cli {
    /// IMAGE_NAME=PATH: pods whose image repository name is IMAGE_NAME run PATH. Repeatable.
    #[arg(long = "binary", value_parser = parse_binary, required = true)]
    binaries: Vec<(String, String)>,
    /// Working directories, logs and per-pod kubeconfigs go here.
    #[arg(long)]
    state_dir: PathBuf,
    /// Only workloads in this namespace (default: all).
    #[arg(long)]
    namespace: Option<String>,
    /// Kubeconfig whose server and CA the pods' token kubeconfigs use (default: $KUBECONFIG).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
}

fn parse_binary(s: &str) -> Result<(String, String), String> {
    let (name, path) = s.split_once('=').ok_or("expected NAME=PATH")?;
    let path = std::fs::canonicalize(path).map_err(|e| format!("{path}: {e}"))?;
    Ok((name.to_string(), path.to_string_lossy().into_owned()))
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Deployment,
    StatefulSet,
}

/// One pod some workload wants: who owns it and the template it runs.
struct Want {
    kind: Kind,
    workload: String,
    namespace: String,
    name: String,
    index: i32,
    template_hash: String,
    template: k8s_openapi::api::core::v1::PodTemplateSpec,
    owner: OwnerReference,
}

struct Running {
    kind: Kind,
    workload: String,
    template_hash: String,
    pid: Option<u32>,
    child: Option<tokio::process::Child>,
    /// container port name or number → host port
    readiness: Option<(String, u16)>,
    ready: bool,
    restarts: u32,
    next_start: Instant,
    grace: Duration,
    want_spec: Want,
    failed: Option<String>,
    /// uid of the Pod object created for this pod
    pod_uid: Option<String>,
    /// container port → loopback port, fixed at the first start
    host_ports: Option<BTreeMap<i32, u16>>,
}

struct Runner {
    client: Client,
    binaries: BTreeMap<String, String>,
    state_dir: PathBuf,
    server: String,
    ca_data: String,
    pods: BTreeMap<(String, String), Running>,
    reported: BTreeMap<(Kind, String, String), (i64, i32, i32)>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let kubeconfig = kube::config::Kubeconfig::read_from(&cli.kubeconfig)
        .with_context(|| format!("reading {}", cli.kubeconfig.display()))?;
    let cluster = kubeconfig
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| anyhow!("no cluster in the kubeconfig"))?;
    let client = Client::try_default().await?;
    std::fs::create_dir_all(cli.state_dir.join("pods"))?;
    let mut runner = Runner {
        client: client.clone(),
        binaries: cli.binaries.into_iter().collect(),
        state_dir: std::fs::canonicalize(&cli.state_dir)?,
        server: cluster
            .server
            .ok_or_else(|| anyhow!("no server in the kubeconfig"))?,
        ca_data: cluster
            .certificate_authority_data
            .ok_or_else(|| anyhow!("no certificate-authority-data in the kubeconfig"))?,
        pods: BTreeMap::new(),
        reported: BTreeMap::new(),
    };
    let (deployments, sets) = match &cli.namespace {
        Some(ns) => (
            Api::<Deployment>::namespaced(client.clone(), ns),
            Api::<StatefulSet>::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let pods = match &cli.namespace {
        Some(ns) => Api::<Pod>::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let deployments = watch(deployments, watcher::Config::default());
    let sets = watch(sets, watcher::Config::default());
    let pods = watch(
        pods,
        watcher::Config::default().fields(&format!("spec.nodeName={NODE_NAME}")),
    );
    info!(binaries = ?runner.binaries, "pod-runner watching Deployments and StatefulSets");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = runner.step(&deployments, &sets, &pods).await {
                    warn!("{e:#}");
                }
            }
            _ = sigterm.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    info!("stopping every pod");
    let keys: Vec<_> = runner.pods.keys().cloned().collect();
    for key in keys {
        runner.stop(&key, true).await;
    }
    Ok(())
}

fn watch<K>(api: Api<K>, config: watcher::Config) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config))
        .default_backoff()
        .applied_objects();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                warn!("watch: {e}");
            }
        }
    });
    store
}

/// FNV-1a of the template's JSON: a changed template restarts the pod.
fn hash(v: &impl serde::Serialize) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:010x}", h & 0xff_ffff_ffff)
}

fn wanted(deployments: &Store<Deployment>, sets: &Store<StatefulSet>) -> Vec<Want> {
    let mut out = Vec::new();
    let mut add = |kind: Kind,
                   meta: &kube::api::ObjectMeta,
                   owner: Option<OwnerReference>,
                   replicas: i32,
                   template: &k8s_openapi::api::core::v1::PodTemplateSpec| {
        if meta.deletion_timestamp.is_some() {
            return;
        }
        let (Some(ns), Some(name), Some(owner)) = (&meta.namespace, &meta.name, owner) else {
            return;
        };
        let template_hash = hash(template);
        for index in 0..replicas.max(0) {
            let pod = match kind {
                Kind::StatefulSet => format!("{name}-{index}"),
                Kind::Deployment => format!("{name}-{template_hash}-{index}"),
            };
            out.push(Want {
                kind,
                workload: name.clone(),
                namespace: ns.clone(),
                name: pod,
                index,
                template_hash: template_hash.clone(),
                template: template.clone(),
                owner: owner.clone(),
            });
        }
    };
    for d in deployments.state() {
        if let Some(spec) = &d.spec {
            add(
                Kind::Deployment,
                &d.metadata,
                d.controller_owner_ref(&()),
                spec.replicas.unwrap_or(1),
                &spec.template,
            );
        }
    }
    for s in sets.state() {
        if let Some(spec) = &s.spec {
            add(
                Kind::StatefulSet,
                &s.metadata,
                s.controller_owner_ref(&()),
                spec.replicas.unwrap_or(1),
                &spec.template,
            );
        }
    }
    out
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// GET http://127.0.0.1:port/path; 200–399 is ready (what a kubelet's httpGet probe accepts).
async fn probe(port: u16, path: &str) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await?;
        let mut buf = vec![0u8; 64];
        let n = s.read(&mut buf).await?;
        let line = String::from_utf8_lossy(&buf[..n]).to_string();
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok::<_, std::io::Error>((200..400).contains(&code))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(true))
    )
}

fn signal(pid: u32, sig: &str) {
    // The child leads its own process group: signal the group, as a kubelet stops a container.
    let _ = std::process::Command::new("kill")
        .args([sig, "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

impl Runner {
    async fn step(
        &mut self,
        deployments: &Store<Deployment>,
        sets: &Store<StatefulSet>,
        pod_objects: &Store<Pod>,
    ) -> Result<()> {
        let wants = wanted(deployments, sets);
        let want_keys: BTreeSet<(String, String)> = wants
            .iter()
            .map(|w| (w.namespace.clone(), w.name.clone()))
            .collect();
        // Pods being deleted (by a user, the garbage collector or the namespace controller): stop
        // the process, then confirm the deletion as a kubelet does. Pods of ours that nothing
        // wants (left from an earlier runner) are removed.
        for p in pod_objects.state() {
            let (Some(ns), Some(name)) = (p.metadata.namespace.clone(), p.metadata.name.clone())
            else {
                continue;
            };
            let key = (ns.clone(), name.clone());
            let ours = self
                .pods
                .get(&key)
                .is_some_and(|r| r.pod_uid.is_some() && r.pod_uid == p.metadata.uid);
            let terminating = p.metadata.deletion_timestamp.is_some();
            let orphan = !ours && !want_keys.contains(&key);
            if (terminating && ours) || orphan {
                if ours {
                    self.stop(&key, false).await;
                }
                let mut dp = DeleteParams::default().grace_period(0);
                dp.preconditions = Some(kube::api::Preconditions {
                    uid: p.metadata.uid.clone(),
                    resource_version: None,
                });
                let _ = Api::<Pod>::namespaced(self.client.clone(), &ns)
                    .delete(&name, &dp)
                    .await;
            }
        }
        // Stop pods no workload wants any more, or whose template changed.
        let stale: Vec<_> = self
            .pods
            .iter()
            .filter(|(k, r)| {
                !want_keys.contains(*k)
                    || wants.iter().any(|w| {
                        (&w.namespace, &w.name) == (&k.0, &k.1)
                            && w.template_hash != r.template_hash
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.stop(&key, true).await;
        }
        for w in wants {
            let key = (w.namespace.clone(), w.name.clone());
            if !self.pods.contains_key(&key) {
                let grace = w
                    .template
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30)
                    .clamp(1, 15);
                self.pods.insert(
                    key.clone(),
                    Running {
                        kind: w.kind,
                        workload: w.workload.clone(),
                        template_hash: w.template_hash.clone(),
                        pid: None,
                        child: None,
                        readiness: None,
                        ready: false,
                        restarts: 0,
                        next_start: Instant::now(),
                        grace: Duration::from_secs(grace as u64),
                        want_spec: w,
                        failed: None,
                        pod_uid: None,
                        host_ports: None,
                    },
                );
            }
        }
        // Start what is not running (with a growing back-off after crashes), notice exits, probe.
        let keys: Vec<_> = self.pods.keys().cloned().collect();
        for key in &keys {
            let exited = {
                let r = self.pods.get_mut(key).expect("key from the map");
                match r.child.as_mut().map(|c| c.try_wait()) {
                    Some(Ok(Some(status))) => Some(status),
                    _ => None,
                }
            };
            if let Some(status) = exited {
                let r = self.pods.get_mut(key).expect("key from the map");
                r.child = None;
                r.pid = None;
                r.ready = false;
                r.restarts += 1;
                let backoff = Duration::from_secs(1 << r.restarts.min(5));
                r.next_start = Instant::now() + backoff;
                warn!(pod = %key.1, %status, restarts = r.restarts, "process exited; restarting in {backoff:?}");
                self.pod_status(key).await;
            }
            let due = {
                let r = &self.pods[key];
                r.child.is_none() && Instant::now() >= r.next_start
            };
            if due && let Err(e) = self.start(key).await {
                let r = self.pods.get_mut(key).expect("key from the map");
                r.failed = Some(format!("{e:#}"));
                r.next_start = Instant::now() + Duration::from_secs(5);
                warn!(pod = %key.1, "cannot start: {e:#}");
                self.pod_status(key).await;
            }
            let (readiness, was) = {
                let r = &self.pods[key];
                (r.child.as_ref().and(r.readiness.clone()), r.ready)
            };
            let now_ready = match readiness {
                Some((path, port)) => probe(port, &path).await,
                None => self.pods[key].child.is_some(),
            };
            if now_ready != was {
                self.pods.get_mut(key).expect("key from the map").ready = now_ready;
                info!(pod = %key.1, ready = now_ready, "readiness changed");
                self.pod_status(key).await;
            }
        }
        self.workload_status(deployments, sets).await;
        Ok(())
    }

    async fn start(&mut self, key: &(String, String)) -> Result<()> {
        let (ns, name) = key;
        let w = &self.pods[key].want_spec;
        let spec: PodSpec = w
            .template
            .spec
            .clone()
            .ok_or_else(|| anyhow!("no pod spec"))?;
        let [container]: [Container; 1] = spec
            .containers
            .clone()
            .try_into()
            .map_err(|_| anyhow!("only single-container pods are supported"))?;
        let image = container.image.clone().unwrap_or_default();
        let argv = spec::argv(
            &self.binaries,
            &image,
            container.command.as_deref().unwrap_or_default(),
            container.args.as_deref().unwrap_or_default(),
        )
        .map_err(|e| anyhow!(e))?;

        // Ports: every container port gets a free loopback port, kept across restarts of the
        // process (a pod keeps its address while its container restarts).
        let mut ports: BTreeMap<i32, u16> = self.pods[key].host_ports.clone().unwrap_or_default();
        let mut named: BTreeMap<String, u16> = BTreeMap::new();
        for p in container.ports.iter().flatten() {
            let host = match ports.get(&p.container_port) {
                Some(h) => *h,
                None => free_port()?,
            };
            ports.insert(p.container_port, host);
            if let Some(n) = &p.name {
                named.insert(n.clone(), host);
            }
        }
        let readiness = container
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .map(|g| {
                let port = match &g.port {
                    IntOrString::Int(i) => ports.get(i).copied(),
                    IntOrString::String(s) => named.get(s).copied(),
                };
                port.map(|p| (g.path.clone().unwrap_or_else(|| "/".into()), p))
                    .ok_or_else(|| {
                        anyhow!("readiness probe port {:?} is not a container port", g.port)
                    })
            })
            .transpose()?;

        // Env: envFrom, then env (with $(VAR) expansion and the downward API), then ports.
        let dir = self.state_dir.join("pods").join(format!("{ns}_{name}"));
        std::fs::create_dir_all(&dir)?;
        let sa = spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into());
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut set = |env: &mut BTreeMap<String, String>, k: String, v: String| {
            if !order.contains(&k) {
                order.push(k.clone());
            }
            env.insert(k, v);
        };
        for from in container.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            if let Some(r) = &from.config_map_ref {
                let cm = Api::<ConfigMap>::namespaced(self.client.clone(), ns)
                    .get_opt(&r.name)
                    .await?;
                match cm {
                    Some(cm) => {
                        for (k, v) in cm.data.unwrap_or_default() {
                            set(&mut env, format!("{prefix}{k}"), v);
                        }
                    }
                    None if r.optional == Some(true) => {}
                    None => return Err(anyhow!("ConfigMap {ns}/{} not found", r.name)),
                }
            }
            if let Some(r) = &from.secret_ref {
                let s = Api::<Secret>::namespaced(self.client.clone(), ns)
                    .get_opt(&r.name)
                    .await?;
                match s {
                    Some(s) => {
                        for (k, v) in s.data.unwrap_or_default() {
                            set(
                                &mut env,
                                format!("{prefix}{k}"),
                                String::from_utf8_lossy(&v.0).into_owned(),
                            );
                        }
                    }
                    None if r.optional == Some(true) => {}
                    None => return Err(anyhow!("Secret {ns}/{} not found", r.name)),
                }
            }
        }
        for e in container.env.iter().flatten() {
            let value = if let Some(v) = &e.value {
                spec::expand(v, &env)
            } else if let Some(src) = &e.value_from {
                if let Some(f) = &src.field_ref {
                    match f.field_path.as_str() {
                        "metadata.name" => name.clone(),
                        "metadata.namespace" => ns.clone(),
                        "spec.nodeName" => NODE_NAME.into(),
                        "spec.serviceAccountName" => sa.clone(),
                        "status.podIP" | "status.hostIP" => "127.0.0.1".into(),
                        other => return Err(anyhow!("fieldRef {other} is not supported")),
                    }
                } else if let Some(r) = &src.config_map_key_ref {
                    let cm = Api::<ConfigMap>::namespaced(self.client.clone(), ns)
                        .get(&r.name)
                        .await?;
                    cm.data
                        .unwrap_or_default()
                        .get(&r.key)
                        .cloned()
                        .ok_or_else(|| anyhow!("key {} not in ConfigMap {}", r.key, r.name))?
                } else if let Some(r) = &src.secret_key_ref {
                    let s = Api::<Secret>::namespaced(self.client.clone(), ns)
                        .get(&r.name)
                        .await?;
                    let v = s
                        .data
                        .unwrap_or_default()
                        .get(&r.key)
                        .cloned()
                        .ok_or_else(|| anyhow!("key {} not in Secret {}", r.key, r.name))?;
                    String::from_utf8_lossy(&v.0).into_owned()
                } else {
                    return Err(anyhow!("env {}: unsupported valueFrom", e.name));
                }
            } else {
                String::new()
            };
            set(&mut env, e.name.clone(), value);
        }
        let argv: Vec<String> = argv
            .iter()
            .map(|a| spec::map_ports(&spec::expand(a, &env), &ports))
            .collect();
        for v in env.values_mut() {
            *v = spec::map_ports(v, &ports);
        }
        // Volumes become folders of the pod's own (an emptyDir outlives the process, as it
        // outlives the container): paths under a mount point in args and env are rewritten.
        let mounts: Vec<(String, std::path::PathBuf)> = container
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.mount_path.clone(), dir.join("volumes").join(&m.name)))
            .collect();
        for (_, host) in &mounts {
            std::fs::create_dir_all(host)?;
        }
        let argv: Vec<String> = argv
            .into_iter()
            .map(|a| spec::map_mounts(&a, &mounts))
            .collect();
        for v in env.values_mut() {
            *v = spec::map_mounts(v, &mounts);
        }

        // The pod's identity: a token of its service account in a kubeconfig of its own.
        let token = Api::<ServiceAccount>::namespaced(self.client.clone(), ns)
            .create_token_request(
                &sa,
                &PostParams::default(),
                &TokenRequest {
                    spec: TokenRequestSpec {
                        audiences: vec![],
                        expiration_seconds: Some(86_400),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("token for ServiceAccount {ns}/{sa}"))?
            .status
            .ok_or_else(|| anyhow!("TokenRequest without status"))?
            .token;
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: {sa}\n  user:\n    token: {token}\ncontexts:\n- name: pod\n  context: {{cluster: testbed, user: {sa}, namespace: {ns}}}\ncurrent-context: pod\n",
                self.server, self.ca_data
            ),
        )?;

        // The Pod object, so `kubectl get pods` shows it and tests find its ports.
        let host_ports = container
            .ports
            .iter()
            .flatten()
            .map(|p| {
                format!(
                    "{}=127.0.0.1:{}",
                    p.name
                        .clone()
                        .unwrap_or_else(|| p.container_port.to_string()),
                    ports[&p.container_port]
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let pod_uid = match self.pods[key].pod_uid.clone() {
            Some(uid) => Some(uid),
            None => self.create_pod(key, &spec, &host_ports).await,
        };

        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir.join("pods").join(format!("{ns}_{name}.log")))?;
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOSTNAME", name)
            // Logs go to files: no colour codes in them.
            .env("NO_COLOR", "1")
            .envs(order.iter().filter_map(|k| env.get(k).map(|v| (k, v))))
            .env("KUBECONFIG", &kubeconfig)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", argv[0]))?;
        let r = self.pods.get_mut(key).expect("key from the map");
        info!(pod = %name, pid = ?child.id(), %host_ports, argv = ?argv, "started");
        r.pid = child.id();
        r.child = Some(child);
        r.readiness = readiness;
        r.failed = None;
        r.pod_uid = pod_uid;
        r.host_ports = Some(ports);
        Ok(())
    }

    async fn create_pod(
        &self,
        key: &(String, String),
        spec: &PodSpec,
        host_ports: &str,
    ) -> Option<String> {
        let (ns, name) = key;
        let w = &self.pods[key].want_spec;
        let mut labels = w
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        if w.kind == Kind::StatefulSet {
            labels.insert("statefulset.kubernetes.io/pod-name".into(), name.clone());
            labels.insert("apps.kubernetes.io/pod-index".into(), w.index.to_string());
        }
        labels.insert("pod-template-hash".into(), w.template_hash.clone());
        let mut annotations = w
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default();
        annotations.insert(PORTS_ANNOTATION.into(), host_ports.into());
        let mut spec = spec.clone();
        spec.node_name = Some(NODE_NAME.into());
        let pod = Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: Some(vec![OwnerReference {
                    controller: Some(true),
                    ..w.owner.clone()
                }]),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        };
        let api = Api::<Pod>::namespaced(self.client.clone(), ns);
        // A stale Pod of an earlier incarnation goes first (no kubelet confirms its deletion).
        let _ = api
            .delete(name, &DeleteParams::default().grace_period(0))
            .await;
        for _ in 0..20 {
            match api.create(&PostParams::default(), &pod).await {
                Ok(p) => return p.metadata.uid,
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => {
                    warn!(pod = %name, "cannot create the Pod object: {e}");
                    return None;
                }
            }
        }
        None
    }

    async fn pod_status(&self, key: &(String, String)) {
        let (ns, name) = key;
        let r = &self.pods[key];
        let ready = if r.ready { "True" } else { "False" };
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let phase = if r.failed.is_some() {
            "Pending"
        } else {
            "Running"
        };
        let status = json!({"status": {
            "phase": phase,
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "hostIP": "127.0.0.1",
            "message": r.failed,
            "conditions": [
                {"type": "Ready", "status": ready, "lastTransitionTime": now},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            ],
            "containerStatuses": r.want_spec.template.spec.as_ref().map(|s| s.containers.iter().map(|c| json!({
                "name": c.name, "image": c.image, "imageID": "", "ready": r.ready,
                "restartCount": r.restarts, "started": r.child.is_some(),
                "state": if r.child.is_some() { json!({"running": {"startedAt": now}}) }
                         else { json!({"waiting": {"reason": if r.failed.is_some() { "CreateContainerError" } else { "CrashLoopBackOff" }, "message": r.failed}}) },
            })).collect::<Vec<_>>()),
        }});
        let api = Api::<Pod>::namespaced(self.client.clone(), ns);
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            warn!(pod = %name, "pod status: {e}");
        }
    }

    async fn stop(&mut self, key: &(String, String), delete: bool) {
        let Some(mut r) = self.pods.remove(key) else {
            return;
        };
        if let (Some(pid), Some(child)) = (r.pid, r.child.as_mut()) {
            signal(pid, "-TERM");
            if tokio::time::timeout(r.grace, child.wait()).await.is_err() {
                signal(pid, "-KILL");
                let _ = child.wait().await;
            }
            info!(pod = %key.1, pid, "stopped");
        }
        if delete {
            let _ = Api::<Pod>::namespaced(self.client.clone(), &key.0)
                .delete(&key.1, &DeleteParams::default().grace_period(0))
                .await;
        }
    }

    /// Writes each workload's replica counts into its status (what the StatefulSet and
    /// Deployment controllers and the kubelet would report), only when they changed.
    async fn workload_status(
        &mut self,
        deployments: &Store<Deployment>,
        sets: &Store<StatefulSet>,
    ) {
        let mut counts: BTreeMap<(Kind, String, String), (i32, i32)> = BTreeMap::new();
        for ((ns, _), r) in &self.pods {
            let c = counts
                .entry((r.kind, ns.clone(), r.workload.clone()))
                .or_default();
            if r.child.is_some() {
                c.0 += 1;
            }
            if r.ready {
                c.1 += 1;
            }
        }
        let mut seen = BTreeSet::new();
        for s in sets.state() {
            let (Some(ns), Some(name)) = (s.metadata.namespace.clone(), s.metadata.name.clone())
            else {
                continue;
            };
            let key = (Kind::StatefulSet, ns.clone(), name.clone());
            let (running, ready) = counts.get(&key).copied().unwrap_or_default();
            let generation = s.metadata.generation.unwrap_or(0);
            seen.insert(key.clone());
            if self.reported.get(&key) == Some(&(generation, running, ready)) {
                continue;
            }
            let revision = format!(
                "{name}-{}",
                s.spec
                    .as_ref()
                    .map(|x| hash(&x.template))
                    .unwrap_or_default()
            );
            let status = json!({"status": {
                "observedGeneration": generation,
                "replicas": running, "readyReplicas": ready, "availableReplicas": ready,
                "currentReplicas": running, "updatedReplicas": running,
                "currentRevision": revision, "updateRevision": revision,
            }});
            match Api::<StatefulSet>::namespaced(self.client.clone(), &ns)
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
            {
                Ok(_) => {
                    info!(statefulset = %format!("{ns}/{name}"), running, ready, "status");
                    self.reported.insert(key, (generation, running, ready));
                }
                Err(e) => warn!("statefulset {ns}/{name} status: {e}"),
            }
        }
        for d in deployments.state() {
            let (Some(ns), Some(name)) = (d.metadata.namespace.clone(), d.metadata.name.clone())
            else {
                continue;
            };
            let key = (Kind::Deployment, ns.clone(), name.clone());
            let (running, ready) = counts.get(&key).copied().unwrap_or_default();
            let generation = d.metadata.generation.unwrap_or(0);
            seen.insert(key.clone());
            if self.reported.get(&key) == Some(&(generation, running, ready)) {
                continue;
            }
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let available = if ready >= want.min(1) {
                "True"
            } else {
                "False"
            };
            let status = json!({"status": {
                "observedGeneration": generation,
                "replicas": running, "readyReplicas": ready, "availableReplicas": ready,
                "updatedReplicas": running, "unavailableReplicas": (want - ready).max(0),
                "conditions": [
                    {"type": "Available", "status": available, "reason": "PodRunner",
                     "lastUpdateTime": now, "lastTransitionTime": now},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                     "lastUpdateTime": now, "lastTransitionTime": now},
                ],
            }});
            match Api::<Deployment>::namespaced(self.client.clone(), &ns)
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
            {
                Ok(_) => {
                    info!(deployment = %format!("{ns}/{name}"), running, ready, "status");
                    self.reported.insert(key, (generation, running, ready));
                }
                Err(e) => warn!("deployment {ns}/{name} status: {e}"),
            }
        }
        self.reported.retain(|k, _| seen.contains(k));
    }
}
