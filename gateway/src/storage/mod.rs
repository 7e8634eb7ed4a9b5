//! Kafka topics and partitions on SMQ: Kafka topic T is SMQ topic `<namespace>/T`, and Kafka
//! partition p is the SMQ partition whose ring range is p's (matched by range, not position).

mod backend;
mod catalog;
mod deletion;
mod growth;
mod lock_tokens;
mod partition;
mod registry;
mod topic_config;
mod unflushed;
mod wal;

pub use deletion::Deletion;
pub use partition::{
    AppendTicket, Appended, PartitionLog, Placement, READ_AHEAD_BYTES, ReadResult, record_size,
    unit_size,
};
pub use topic_config::{KNOWN as TOPIC_CONFIGS, TopicConfigs, validate_topic_name};

/// Fails when `dir` cannot be the write-ahead log's directory (not creatable, or locked by
/// another process).
pub fn check_wal_dir(dir: &std::path::Path) -> crate::error::GatewayResult<()> {
    wal::WalDir::open(dir).map(drop)
}

/// Every topic config the gateway knows, with its default.
pub fn topic_config_known() -> &'static [(&'static str, &'static str)] {
    TOPIC_CONFIGS
}

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use smq_client::{SmqClient, SmqError, Topic, TopicSpec};
use tokio::sync::RwLock;

use crate::error::{GatewayError, GatewayResult};
use crate::ledger::{LedgerSlot, LedgerStore};
use crate::records::StorageFormat;
use registry::TopicRegistry;

/// Settings that shape how topics are created and served.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub namespace: String,
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    /// Format of new topics whose configs do not choose one.
    pub default_storage_format: StorageFormat,
    /// Per partition: bytes of the newest records kept in memory for consumers at the tail.
    pub tail_cache_bytes: usize,
    /// Read flushed records from the partitions' log files in the filer (broker otherwise).
    pub read_flushed_from_filer: bool,
    /// Acknowledged bytes held (all partitions) until SMQ has written them; appends wait past
    /// it. 0: no bound.
    pub max_unflushed_bytes: usize,
    pub max_message_bytes: usize,
    /// Where held acknowledged records are logged (`--wal-dir`); in memory when None.
    pub wal_dir: Option<std::path::PathBuf>,
}

/// A Kafka topic as the gateway serves it.
#[derive(Debug)]
pub struct TopicLog {
    pub name: String,
    pub smq_topic: Topic,
    /// Changed by AlterConfigs.
    configs: std::sync::RwLock<TopicConfigs>,
    pub partitions: Vec<Arc<PartitionLog>>,
    /// Kafka's topic id: new when a deleted name is created again (see `catalog.rs`).
    pub topic_id: [u8; 16],
}

impl TopicLog {
    /// The topic's configs as they are now.
    pub fn configs(&self) -> TopicConfigs {
        self.configs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn partition(&self, index: i32) -> GatewayResult<&Arc<PartitionLog>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .ok_or_else(|| {
                GatewayError::UnknownTopicOrPartition(format!("{} partition {index}", self.name))
            })
    }
}

pub struct Store {
    client: SmqClient,
    settings: StoreSettings,
    ledger_store: Arc<LedgerStore>,
    registry: TopicRegistry,
    recovered: std::sync::Mutex<LedgerSlot>,
    topics: RwLock<HashMap<String, Arc<TopicLog>>>,
    /// This gateway's identity in partition locks.
    owner: Arc<str>,
    unflushed: Arc<unflushed::UnflushedBudget>,
    wal: Option<wal::WalDir>,
    lock_tokens: Option<Arc<lock_tokens::LockTokens>>,
    /// Kafka name → SMQ topic; deleted names (see `catalog.rs`, `deletion.rs`).
    catalog: Arc<catalog::Catalog>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Store {
    /// Opens the ledger and recovers every partition's offsets from SMQ.
    pub async fn open(client: SmqClient, settings: StoreSettings) -> GatewayResult<Self> {
        let ledger_store = Arc::new(LedgerStore::open(client.clone()).await?);
        let recovered = ledger_store.recover(Duration::from_secs(120)).await?;
        let registry = TopicRegistry::open(client.clone()).await?;
        let catalog = Arc::new(catalog::Catalog::open(client.clone(), &settings.namespace).await?);
        let wal = settings
            .wal_dir
            .as_deref()
            .map(wal::WalDir::open)
            .transpose()?;
        let lock_tokens = wal
            .as_ref()
            .map(|w| w.lock_tokens().map(Arc::new))
            .transpose()?;
        Ok(Self {
            wal,
            lock_tokens,
            catalog,
            client,
            settings: settings.clone(),
            ledger_store,
            registry,
            recovered: std::sync::Mutex::new(recovered),
            topics: RwLock::new(HashMap::new()),
            owner: Arc::from(gateway_identity()),
            unflushed: Arc::new(unflushed::UnflushedBudget::new(
                settings.max_unflushed_bytes,
            )),
        })
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    pub fn client(&self) -> &SmqClient {
        &self.client
    }

    fn smq_topic(&self, name: &str) -> Topic {
        smq_client::topic(&self.settings.namespace, &self.catalog.smq_name_of(name))
    }

    /// The topic, if it exists in SMQ.
    pub async fn topic(&self, name: &str) -> GatewayResult<Option<Arc<TopicLog>>> {
        if let Some(t) = self.topics.read().await.get(name) {
            return Ok(Some(t.clone()));
        }
        if validate_topic_name(name).is_err() {
            return Ok(None);
        }
        let smq_topic = self.smq_topic(name);
        let config = match self.client.topic_configuration(&smq_topic).await {
            Ok(c) => c,
            Err(SmqError::TopicNotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let layout = self.client.lookup(&smq_topic).await?;
        // Partitions CreatePartitions added live in SMQ topics of their own (growth.rs).
        let extensions = self.extension_layouts(name).await?;
        let mut topics = self.topics.write().await;
        if let Some(t) = topics.get(name) {
            return Ok(Some(t.clone()));
        }
        if self.catalog.smq_name_of(name) != smq_topic.name {
            // Deleted while it was being looked up.
            return Ok(None);
        }
        let key = format!("{}/{}", smq_topic.namespace, smq_topic.name);
        let mut configs = self.registry.get(&key).unwrap_or_default();
        // Retention also lives in SMQ's own topic.conf, where the operator sets it (and SMQ's
        // purger reads it): a retention there wins, and "off" there counts unless the gateway
        // was told otherwise.
        for (k, v) in TopicConfigs::from_smq(&config).set {
            if v != "-1" || !configs.set.contains_key(&k) {
                configs.set.insert(k, v);
            }
        }
        // The record type registered in SMQ is the authority on the format (the operator creates
        // topics without our config registry); a topic without one gets it registered here, so
        // SMQ's own tools can read what the gateway writes.
        let format = match config
            .record_type
            .as_ref()
            .and_then(StorageFormat::of_record_type)
        {
            Some(f) => f,
            None => {
                let f = self.format_of(&configs);
                let spec = TopicSpec {
                    topic: smq_topic.clone(),
                    partitions: config.partition_count,
                    record_type: Some(f.record_type()),
                    retention_seconds: config.retention_seconds,
                };
                if let Err(e) = self.client.configure_topic(&spec).await {
                    tracing::warn!(topic = %key, error = %e, "registering the record type failed");
                }
                f
            }
        };
        configs.record_format(format);
        let mut partitions = self.partitions_of(&smq_topic, &layout, format)?;
        for (ext, ext_layout) in &extensions {
            partitions.extend(self.partitions_of(ext, ext_layout, format)?);
        }
        let t = Arc::new(TopicLog {
            name: name.to_string(),
            topic_id: catalog::topic_id(
                &smq_topic.namespace,
                &smq_topic.name,
                config.created_at_ns,
            ),
            smq_topic,
            configs: std::sync::RwLock::new(configs),
            partitions,
        });
        topics.insert(name.to_string(), t.clone());
        Ok(Some(t))
    }

    /// The topic, creating it with the default partition count when auto-creation is on.
    pub async fn topic_or_create(
        &self,
        name: &str,
        allow_create: bool,
    ) -> GatewayResult<Option<Arc<TopicLog>>> {
        if let Some(t) = self.topic(name).await? {
            return Ok(Some(t));
        }
        if !(allow_create && self.settings.auto_create_topics) {
            return Ok(None);
        }
        match self
            .create_topic(
                name,
                self.settings.default_partitions,
                &TopicConfigs::default(),
                false,
            )
            .await
        {
            Ok(()) | Err(GatewayError::TopicExists(_)) => self.topic(name).await,
            Err(e) => Err(e),
        }
    }

    /// The topic; `UnknownTopicOrPartition` when it does not exist.
    pub(crate) async fn existing_topic(&self, name: &str) -> GatewayResult<Arc<TopicLog>> {
        self.topic(name)
            .await?
            .ok_or_else(|| GatewayError::UnknownTopicOrPartition(name.to_string()))
    }

    pub async fn partition(&self, topic: &str, index: i32) -> GatewayResult<Arc<PartitionLog>> {
        let t = self
            .topic(topic)
            .await?
            .ok_or_else(|| GatewayError::UnknownTopicOrPartition(topic.to_string()))?;
        Ok(t.partition(index)?.clone())
    }

    /// Kafka topic names in this gateway's namespace.
    pub async fn list_topics(&self) -> GatewayResult<Vec<String>> {
        let topics = self.client.list_topics(&self.settings.namespace).await?;
        // Deleted incarnations stay listed by SMQ: only current ones are Kafka topics.
        Ok(topics
            .into_iter()
            .filter_map(|t| self.catalog.kafka_name_of(&t.name))
            .filter(|n| validate_topic_name(n).is_ok())
            .collect())
    }

    /// Creates a topic. Fails with `TopicExists` if it exists (whatever its partition count).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &TopicConfigs,
        validate_only: bool,
    ) -> GatewayResult<()> {
        validate_topic_name(name)?;
        if !(1..=smq_client::RING_SIZE).contains(&partitions) {
            return Err(GatewayError::InvalidPartitions(partitions));
        }
        let smq_topic = self.smq_topic(name);
        if self.topic(name).await?.is_some() {
            return Err(GatewayError::TopicExists(name.to_string()));
        }
        if validate_only {
            return Ok(());
        }
        // Configs first: a crash before the topic exists leaves only an unused record.
        if !configs.set.is_empty() {
            self.registry
                .put(
                    &format!("{}/{}", smq_topic.namespace, smq_topic.name),
                    configs,
                )
                .await?;
        }
        let spec = TopicSpec {
            topic: smq_topic,
            partitions,
            record_type: Some(self.format_of(configs).record_type()),
            retention_seconds: configs.retention_seconds(),
        };
        match self.client.ensure_topic(&spec).await {
            Ok(_) => {
                self.warm_up(name).await;
                Ok(())
            }
            Err(SmqError::PartitionCountMismatch { .. }) => {
                Err(GatewayError::TopicExists(name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Prepares a new topic's partitions for their first produce in the background (see
    /// `PartitionLog::warm_up`). Failures only cost the first produce its speed: it does the
    /// same work itself.
    async fn warm_up(&self, name: &str) {
        let topic = match self.topic(name).await {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(topic = name, error = %e, "warming up a new topic failed");
                return;
            }
        };
        for p in &topic.partitions {
            let p = p.clone();
            let name = name.to_string();
            tokio::spawn(async move {
                if let Err(e) = p.warm_up().await {
                    tracing::debug!(topic = %name, partition = p.index(), error = %e, "warming up a partition failed");
                }
            });
        }
    }

    /// Replaces a topic's explicitly set configs (AlterConfigs, IncrementalAlterConfigs). The
    /// storage format may change only while no partition holds a record; retention goes to SMQ's
    /// own topic config, where its purger reads it; the rest to the config registry.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        set: BTreeMap<String, String>,
        validate_only: bool,
    ) -> GatewayResult<()> {
        let t = self.existing_topic(name).await?;
        let configs = TopicConfigs::parse(set.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))))?;
        let format = self.format_of(&configs);
        let current = t.partitions.first().map(|p| p.format()).unwrap_or_default();
        if format != current
            && let Some(p) = t.partitions.iter().find(|p| p.high_water_mark() > 0)
        {
            return Err(GatewayError::InvalidConfig(format!(
                "smq.storage.format cannot change from {current} to {format}: partition {} already holds records",
                p.index()
            )));
        }
        if validate_only {
            return Ok(());
        }
        let key = format!("{}/{}", t.smq_topic.namespace, t.smq_topic.name);
        self.registry.put(&key, &configs).await?;
        // Each SMQ topic with its own partition count: another count would repartition it.
        let mut smq_topics = vec![(t.smq_topic.clone(), self.base_partitions(&t))];
        let extensions = self.catalog.extensions_of(name);
        for (i, (first, smq_name)) in extensions.iter().enumerate() {
            let end = extensions
                .get(i + 1)
                .map_or(t.partitions.len() as i32, |e| e.0);
            smq_topics.push((
                smq_client::topic(&self.settings.namespace, smq_name),
                end - first,
            ));
        }
        for (topic, partitions) in smq_topics {
            let spec = TopicSpec {
                topic,
                partitions,
                record_type: Some(format.record_type()),
                retention_seconds: Some(configs.smq_retention_seconds()),
            };
            self.client.configure_topic(&spec).await?;
        }
        for p in &t.partitions {
            p.set_format(format).await?;
        }
        let mut stored = configs;
        stored.record_format(format);
        *t.configs.write().unwrap_or_else(|e| e.into_inner()) = stored;
        Ok(())
    }

    /// The format a new topic with these configs gets.
    fn format_of(&self, configs: &TopicConfigs) -> StorageFormat {
        if configs.set.contains_key(kafka_smq_format::CONFIG_KEY) {
            configs.storage_format()
        } else {
            self.settings.default_storage_format
        }
    }

    /// Keeps the locks of the partitions this gateway leads alive, and hands over the ones whose
    /// leadership moved elsewhere (`leads(topic, partition)` says which it leads); runs until the
    /// task is dropped.
    pub async fn renew_locks(&self, leads: impl Fn(&str, i32) -> bool) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            for t in self.open_topics().await {
                // The position, not the SMQ partition's index (storage/growth.rs).
                for (index, p) in t.partitions.iter().enumerate() {
                    if p.is_writer() && !leads(&t.name, index as i32) {
                        p.hand_over().await;
                    } else {
                        p.renew_lock_if_due().await;
                    }
                }
            }
        }
    }

    /// The leader epoch of every open partition, as (topic, partition, epoch), for this
    /// gateway's member file; first raises each one's floor to what the other gateways
    /// published (`published(topic, partition)`), so a takeover here goes above their epochs.
    pub async fn leader_epochs(
        &self,
        published: impl Fn(&str, i32) -> i32,
    ) -> Vec<(String, i32, i32)> {
        let mut out = Vec::new();
        for t in self.open_topics().await {
            for (index, p) in t.partitions.iter().enumerate() {
                let index = index as i32;
                p.raise_epoch_floor(published(&t.name, index));
                let epoch = p.leader_epoch();
                if epoch > 0 {
                    out.push((t.name.clone(), index, epoch));
                }
            }
        }
        out
    }

    /// Enforces every topic's retention every `every` (Kafka's
    /// `log.retention.check.interval.ms`), on the partitions this gateway may write; runs until
    /// the task is dropped.
    pub async fn keep_retention(&self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let started = std::time::Instant::now();
            match self.retention_pass().await {
                Ok(partitions) => {
                    let took = started.elapsed();
                    if took > every {
                        tracing::info!(
                            partitions,
                            ?took,
                            "a retention pass took longer than its interval"
                        );
                    } else {
                        tracing::debug!(partitions, ?took, "retention pass");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "a retention pass failed; will retry"),
            }
        }
    }

    /// One retention pass over every topic of the namespace; returns how many partitions it
    /// looked at.
    pub async fn retention_pass(&self) -> GatewayResult<usize> {
        let now_ms = crate::clock::now_ms();
        let mut looked_at = 0;
        for name in self.list_topics().await? {
            let t = match self.topic(&name).await {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(topic = %name, error = %e, "opening a topic for retention failed; will retry");
                    continue;
                }
            };
            let policy = t.configs().retention();
            if !policy.applies() {
                continue;
            }
            for p in &t.partitions {
                looked_at += 1;
                let started = std::time::Instant::now();
                let result = p.enforce_retention(policy, now_ms).await;
                if started.elapsed() > Duration::from_secs(5) {
                    tracing::info!(topic = %name, partition = p.index(), took = ?started.elapsed(), "retention of one partition took long");
                }
                match result {
                    Ok(_) | Err(GatewayError::NotLeader) => {}
                    Err(e) => {
                        tracing::warn!(topic = %name, partition = p.index(), error = %e, "enforcing retention failed; will retry")
                    }
                }
            }
        }
        Ok(looked_at)
    }

    /// Writes checkpoints of the ledger and topic-config topics when `policy` says so, so
    /// that starts and takeovers read little; runs until the task is dropped.
    pub async fn keep_checkpointed(&self, policy: crate::state::CheckpointPolicy) {
        let owner = self.owner.to_string();
        tokio::join!(
            self.ledger_store.keep_checkpointed(owner.clone(), policy),
            self.registry.keep_checkpointed(owner, policy),
        );
    }

    /// This gateway's identity in locks.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Keeps acknowledged records safe until SMQ has written them (see
    /// [`PartitionLog::keep_durable`]); runs until the task is dropped.
    pub async fn keep_durable(&self) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for t in self.open_topics().await {
                for p in &t.partitions {
                    p.keep_durable().await;
                }
            }
        }
    }

    /// Opens the topics whose write-ahead logs an earlier process left records in, so that those
    /// records are published again (see [`PartitionLog::keep_durable`]) without waiting for a
    /// client to touch the topic. Logs of topics gone from SMQ are removed.
    pub async fn open_logged_topics(&self) {
        let Some(wal) = &self.wal else {
            return;
        };
        let namespace = &self.settings.namespace;
        for smq_name in wal.topics_with_files(namespace) {
            // A deleted incarnation's records are not published again.
            let Some(name) = self.catalog.owner_of(&smq_name) else {
                tracing::info!(smq_topic = %smq_name, "removing the write-ahead log of a deleted topic");
                wal.remove_topic(namespace, &smq_name);
                continue;
            };
            match self.topic(&name).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::info!(topic = %name, "removing the write-ahead log of a topic SMQ no longer has");
                    wal.remove_topic(namespace, &smq_name);
                }
                Err(e) => {
                    tracing::warn!(topic = %name, error = %e, "opening a topic with records in the write-ahead log failed; they are published again when it is next used");
                }
            }
        }
    }

    /// Acknowledged bytes held across partitions until SMQ has written them.
    pub fn unflushed_bytes(&self) -> usize {
        self.unflushed.used()
    }

    /// Bytes of the gateway's own state (offset ledger, topic configs) acknowledged and not yet
    /// seen written by SMQ.
    pub fn state_unflushed_bytes(&self) -> usize {
        self.ledger_store.retained_bytes() + self.registry.retained_bytes()
    }

    /// Whether this gateway writes any partition (see [`PartitionLog::is_writer`]).
    pub async fn writes_any_partition(&self) -> bool {
        self.topics
            .read()
            .await
            .values()
            .any(|t| t.partitions.iter().any(|p| p.is_writer()))
    }

    /// Every open partition, for stats and shutdown.
    pub async fn open_topics(&self) -> Vec<Arc<TopicLog>> {
        let mut v: Vec<_> = self.topics.read().await.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Waits for in-flight acks and closes every SMQ stream.
    pub async fn close(&self) {
        for t in self.open_topics().await {
            for p in &t.partitions {
                p.close().await;
            }
        }
        self.ledger_store.close().await;
        self.registry.close().await;
    }
}

/// `host-pid-random`: unique per process, readable in lock listings.
fn gateway_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".to_string());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}
