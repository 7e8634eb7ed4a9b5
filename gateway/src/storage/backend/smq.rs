//! [`PartitionBackend`] on SMQ: the partition's publish stream, its ledger entries in
//! `kafka-system/offset-mappings`, its lock in the filer, its log files and the broker's reads.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use smq_client::{
    DataMessage, FlushedRecord, LockLease, LockOutcome, PartitionLogFiles, PartitionPublisher,
    PendingAck, PublishAck, SmqClient, SmqResult, Subscription, Topic,
};

use super::{EntryToPersist, Lock, LogFile, PartitionBackend};
use crate::error::GatewayResult;
use crate::ledger::{LedgerRecord, LedgerStore, LedgerToken, PartitionState};
use crate::storage::lock_tokens::LockTokens;

/// How long reading a partition's persisted ledger may take when taking it over.
const LOAD_LEDGER_TIMEOUT: Duration = Duration::from_secs(60);

pub struct SmqBackend {
    client: SmqClient,
    topic: Topic,
    /// `namespace/name`, as in ledger records.
    smq_name: String,
    index: i32,
    generation: i64,
    publisher: PartitionPublisher,
    ledger_store: Arc<LedgerStore>,
    /// This gateway's identity in the filer lock.
    owner: Arc<str>,
    lock_name: String,
    /// The partition's flushed log files in the filer, when reads may use them.
    log_files: Option<Arc<PartitionLogFiles>>,
    /// The `kafka-system/offset-mappings` partition its ledger entries go to (see
    /// `ledger::mapping_partition`).
    home: std::sync::atomic::AtomicI32,
    /// Renew tokens kept on disk (see `storage::lock_tokens`), when the gateway has a data
    /// directory.
    lock_tokens: Option<Arc<LockTokens>>,
}

impl SmqBackend {
    /// `generation` is the SMQ partition's `unix_time_ns`; with `read_log_files`, flushed records
    /// are read from the filer and held records confirmed written there.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: SmqClient,
        topic: Topic,
        index: i32,
        generation: i64,
        ledger_store: Arc<LedgerStore>,
        owner: Arc<str>,
        read_log_files: bool,
        ledger_home: i32,
    ) -> Self {
        let smq_name = format!("{}/{}", topic.namespace, topic.name);
        let log_files =
            read_log_files.then(|| PartitionLogFiles::new(client.clone(), topic.clone(), index));
        // Reading the log files, held records are confirmed by finding them there, which also
        // holds when the broker cannot write.
        let publisher = if log_files.is_some() {
            PartitionPublisher::confirmed_by_caller(client.clone(), topic.clone(), index)
        } else {
            PartitionPublisher::new(client.clone(), topic.clone(), index)
        };
        Self {
            home: std::sync::atomic::AtomicI32::new(ledger_home),
            lock_name: format!("kafka-gateway/{smq_name}/{index}"),
            client,
            topic,
            smq_name,
            index,
            generation,
            publisher,
            ledger_store,
            owner,
            log_files,
            lock_tokens: None,
        }
    }

    pub fn with_lock_tokens(mut self, tokens: Option<Arc<LockTokens>>) -> Self {
        self.lock_tokens = tokens;
        self
    }

    /// Takes the lock back with the renew token a killed predecessor left (see
    /// `storage::lock_tokens`); None when there is none or the filer no longer accepts it.
    async fn resume_lock(&self, ttl: Duration) -> Option<LockLease> {
        let tokens = self.lock_tokens.as_ref()?;
        let r = tokens.remembered(&self.lock_name)?;
        let old = LockLease::resume(&self.lock_name, &self.owner, &r.token, &r.filer);
        match self
            .client
            .lock(&self.lock_name, &self.owner, ttl, Some(&old))
            .await
        {
            Ok(LockOutcome::Acquired(lease)) => {
                tracing::info!(topic = %self.smq_name, partition = self.index, "took the partition lock back from this data directory's previous process");
                Some(lease)
            }
            // Expired, taken by another gateway, or the filer restarted: the token is stale.
            Ok(LockOutcome::HeldBy(_)) | Err(_) => {
                tokens.forget(&self.lock_name);
                None
            }
        }
    }
}

impl SmqBackend {
    /// The mapping partition the partition's ledger entries go to.
    pub fn ledger_home(&self) -> i32 {
        self.home.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl PartitionBackend for SmqBackend {
    type Pending = PendingAck;
    type Lease = LockLease;
    type Subscription = Subscription;

    fn ack_timeout(&self) -> Duration {
        self.client.config().ack_timeout
    }

    fn holds_acks(&self) -> bool {
        self.client.config().flush_timing.is_some()
    }

    fn reads_log_files(&self) -> bool {
        self.log_files.is_some()
    }

    async fn send(&self, key: Vec<u8>, value: Vec<u8>) -> SmqResult<PendingAck> {
        self.publisher
            .send(DataMessage {
                key,
                value,
                ts_ns: 0,
                ctrl: None,
            })
            .await
    }

    async fn wait(pending: PendingAck) -> SmqResult<PublishAck> {
        pending.wait().await
    }

    async fn ensure_open(&self) -> SmqResult<u64> {
        self.publisher.ensure_open().await
    }

    fn healthy_epoch(&self) -> Option<u64> {
        self.publisher.healthy_epoch()
    }

    fn durable_below(&self, epoch: u64) -> Option<i64> {
        self.publisher.durable_below(epoch)
    }

    fn confirm_written(&self, epoch: u64, below: i64) {
        self.publisher.confirm_written(epoch, below);
    }

    async fn close_stream(&self) {
        self.publisher.close().await;
    }

    async fn persist(
        &self,
        leader_epoch: i64,
        entries: &[EntryToPersist<'_>],
    ) -> GatewayResult<Vec<LedgerToken>> {
        let records = entries
            .iter()
            .map(|(entry, producers)| LedgerRecord {
                topic: self.smq_name.clone(),
                partition: self.index,
                generation: self.generation,
                entry: *entry,
                producers: producers.to_vec(),
                leader_epoch,
            })
            .collect();
        self.ledger_store.append(self.ledger_home(), records).await
    }

    fn ledger_durable(&self, token: LedgerToken) -> bool {
        self.ledger_store.is_durable(token)
    }

    async fn persist_log_start(&self, offset: i64) -> GatewayResult<()> {
        self.ledger_store
            .set_log_start(self.ledger_home(), &self.smq_name, self.index, offset)
            .await
    }

    async fn load_ledger(&self) -> GatewayResult<PartitionState> {
        let state = self
            .ledger_store
            .recover_partition(&self.smq_name, self.index, LOAD_LEDGER_TIMEOUT)
            .await?;
        if let Some(home) = state.home {
            self.home.store(home, std::sync::atomic::Ordering::Release);
        }
        Ok(state)
    }

    async fn lock(&self, ttl: Duration, held: Option<&LockLease>) -> SmqResult<Lock<LockLease>> {
        let resumed = match held {
            None => self.resume_lock(ttl).await,
            Some(_) => None,
        };
        let outcome = match resumed {
            Some(lease) => {
                crate::metrics::partition_lock_taken("resumed");
                LockOutcome::Acquired(lease)
            }
            None => {
                let outcome = self
                    .client
                    .lock(&self.lock_name, &self.owner, ttl, held)
                    .await?;
                if held.is_none() && matches!(outcome, LockOutcome::Acquired(_)) {
                    crate::metrics::partition_lock_taken("new");
                }
                outcome
            }
        };
        Ok(match outcome {
            LockOutcome::Acquired(l) => {
                if let Some(tokens) = &self.lock_tokens {
                    tokens.remember(&self.lock_name, l.filer(), &l.renew_token);
                }
                Lock::Acquired(l)
            }
            LockOutcome::HeldBy(other) => Lock::HeldBy(other),
        })
    }

    async fn unlock(&self, lease: &LockLease) -> SmqResult<()> {
        if let Some(tokens) = &self.lock_tokens {
            tokens.forget(&self.lock_name);
        }
        self.client.unlock(lease).await
    }

    async fn read_flushed(
        &self,
        from: i64,
        count: i64,
        max_bytes: usize,
    ) -> SmqResult<Vec<FlushedRecord>> {
        match &self.log_files {
            Some(files) => files.read(from, count, max_bytes).await,
            None => Ok(Vec::new()),
        }
    }

    fn want_newer(&self) {
        if let Some(files) = &self.log_files {
            files.want_newer();
        }
    }

    async fn newest_written(
        &self,
        tail_bytes: u64,
        offsets: Range<i64>,
    ) -> SmqResult<Option<FlushedRecord>> {
        match &self.log_files {
            Some(files) => {
                files
                    .newest_written(tail_bytes, |r| offsets.contains(&r.offset))
                    .await
            }
            None => Ok(None),
        }
    }

    async fn fetch(
        &self,
        from: i64,
        max_bytes: i32,
        max_records: i32,
    ) -> SmqResult<Vec<DataMessage>> {
        Ok(self
            .client
            .fetch(&self.topic, self.index, from, max_bytes, max_records)
            .await?
            .messages)
    }

    async fn subscribe(&self, from: i64) -> SmqResult<Subscription> {
        self.client
            .subscribe_exact(&self.topic, self.index, from, "kafka-gateway")
            .await
    }

    async fn next(sub: &mut Subscription) -> SmqResult<Option<DataMessage>> {
        sub.next().await
    }

    async fn log_files(&self) -> SmqResult<Vec<LogFile>> {
        let dir = self.client.partition_dir(&self.topic, self.index).await?;
        let mut files: Vec<LogFile> = self
            .client
            .list_dir(&dir)
            .await?
            .into_iter()
            .filter(|e| !e.is_directory)
            .filter_map(|e| {
                Some(LogFile {
                    start_ns: smq_client::log_file_start_ns(&e.name)?,
                    name: e.name,
                    size: e.size,
                    smq_min: e.offset_min,
                    smq_max: e.offset_max,
                })
            })
            .collect();
        files.sort_by_key(|f| f.start_ns);
        Ok(files)
    }

    async fn delete_log_file(&self, name: &str) -> SmqResult<()> {
        let dir = self.client.partition_dir(&self.topic, self.index).await?;
        self.client.delete_path(&dir, name).await
    }
}
