//! One Kafka partition: its ledger, its SMQ publish stream, and the produce and read paths.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use smq_client::{
    DataMessage, LockLease, LockOutcome, PartitionLogFiles, PartitionPublisher, SmqClient,
    Subscription, Topic,
};
use tokio::sync::{Mutex, oneshot, watch};

use super::held::{Held, HeldEntry, UnflushedBudget, group};
use super::producers::{ProducerStates, SequenceCheck};
use super::wal::{HeldValue, PartitionWal, RecoveredAppend};
use crate::error::{GatewayError, GatewayResult};
use crate::ledger::{LedgerEntry, LedgerRecord, LedgerStore, LedgerToken, PartitionLedger};
use crate::records::{
    Batch, StorageFormat, StoredBatch, StoredRecord, StoredUnit, TimestampType, decode_stored_unit,
    encode_stored, encode_stored_batch, parse_batch, rebase_batch,
};

/// Records read from SMQ per FetchMessage call at most.
const READ_CHUNK: i32 = 1000;
/// Bytes read from SMQ at once for a consumer behind the tail; what the fetch does not take is
/// kept for the consumer's next fetch. SMQ's cost is per call and its disk path reads whole
/// chunks, so one call for several client fetches is much cheaper than one call each.
pub const READ_AHEAD_BYTES: usize = 1 << 20;
/// Read-ahead bytes kept across all partitions at most; past it reads take only what the fetch
/// asked for (many partitions consumed from behind must not multiply memory).
const READ_AHEAD_TOTAL: usize = 256 << 20;
static READ_AHEAD_HELD: AtomicUsize = AtomicUsize::new(0);
/// Records an exact read passes over looking for the one the ledger names (SMQ offsets handed
/// out twice after a broker crash): about one flush interval's worth of records.
const SKIP_LIMIT: usize = 200_000;
/// How long a partition's write lock lasts without renewal. It is also how long a gateway killed
/// with SIGKILL keeps its partitions from a successor (a clean stop releases them). Renewed on writes after a third of
/// it; after two thirds the ledger is reloaded before writing, as if taking the partition over.
const LOCK_TTL: Duration = Duration::from_secs(10);

/// The single writer's state: offsets handed out, idempotence tables and the partition's lock.
#[derive(Default)]
struct Writer {
    /// Idempotence table including appends that have begun but not finished.
    producers: ProducerStates,
    /// Idempotence table of finished appends only, restored after a failure.
    committed_producers: ProducerStates,
    /// The next offset to hand out while appends are in flight (None: the ledger's end).
    next: Option<i64>,
    /// Resolves when the last begun append finished (true) or failed (false).
    last_done: Option<oneshot::Receiver<bool>>,
    /// Bumped by every roll-back; appends begun before it fail.
    epoch: u64,
}

/// (producer id, epoch, base sequence, record count, base offset) of an idempotent batch.
type Sequenced = (i64, i16, i32, i32, i64);

/// An append that has begun (offsets assigned, records sent to SMQ); `finish` completes it.
pub struct AppendTicket {
    log: Arc<PartitionLog>,
    epoch: u64,
    /// In the keys of the records this append published.
    nonce: u64,
    pending: Vec<smq_client::PendingAck>,
    /// Per SMQ record: the Kafka offsets it holds and their max timestamp.
    units: Vec<(i64, i64)>,
    /// Per SMQ record: what was published, kept until SMQ has written it (empty when acks are
    /// not held).
    values: Vec<HeldValue>,
    /// What was stored, for the tail cache.
    stored: Vec<StoredUnit>,
    base: i64,
    sequences: Vec<Sequenced>,
    previous: Option<oneshot::Receiver<bool>>,
    done: Option<oneshot::Sender<bool>>,
    appended: Appended,
}

impl AppendTicket {
    /// Waits for SMQ and for the appends begun earlier, writes the ledger entry, and returns the
    /// offsets. A ticket dropped unfinished counts as failed for the appends after it.
    pub async fn finish(mut self) -> GatewayResult<Appended> {
        let log = self.log.clone();
        let r = log.finish_append(&mut self).await;
        if r.is_err() {
            log.roll_back(self.epoch).await;
        }
        if let Some(done) = self.done.take() {
            let _ = done.send(r.is_ok());
        }
        r
    }
}

/// The result of appending one produce request's batches to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    /// Set when the topic uses LogAppendTime.
    pub log_append_time: Option<i64>,
}

pub struct PartitionLog {
    client: SmqClient,
    smq_topic: Topic,
    smq_name: String,
    index: i32,
    generation: i64,
    /// Changes only while the partition is empty (AlterConfigs before the first write).
    format: RwLock<StorageFormat>,
    publisher: PartitionPublisher,
    ledger_store: Arc<LedgerStore>,
    ledger: RwLock<PartitionLedger>,
    /// Serialises the start of appends: offsets are assigned in one order.
    writer: Mutex<Writer>,
    /// `Writer::epoch`, readable without the lock.
    epoch: AtomicU64,
    /// In the SMQ keys of records published now. Changed whenever Kafka offsets may be handed
    /// out again (a roll-back, a reloaded ledger; a new process starts with its own), so that a
    /// record never shares SMQ offset, Kafka offset and nonce with one the ledger does not name.
    nonce: AtomicU64,
    /// The partition's write lock, when held, and when it was last renewed. Apart from `writer`
    /// so that renewals go on while appends wait for SMQ (the lock lives in the filer).
    lease: Mutex<Option<(LockLease, std::time::Instant)>>,
    /// The newest stored units, so consumers at the tail do not go to SMQ.
    tail: std::sync::Mutex<TailCache>,
    /// Units read from SMQ beyond what the last fetch behind the tail took.
    ahead: std::sync::Mutex<TailCache>,
    /// This gateway's identity in the partition locks.
    owner: Arc<str>,
    hwm: watch::Sender<i64>,
    /// The last subscription used to read, with the SMQ offset it will deliver next, so a
    /// consumer reading sequentially through the slow path keeps one stream.
    reader: Mutex<Option<(i64, Subscription)>>,
    /// Finished appends not yet known durable. Locked whenever the ledger's tail changes
    /// (finishing an append, publishing held records again), never while taking `writer`.
    held: Mutex<Held>,
    unflushed: Arc<UnflushedBudget>,
    /// The partition's flushed log files in the filer, when reads may use them.
    log_files: Option<Arc<PartitionLogFiles>>,
    /// Where held records are kept (`--wal-dir`); in `held`'s memory otherwise.
    wal: Option<PartitionWal>,
    /// Records an earlier process logged in `wal` and may not have had written by SMQ are held
    /// and must be published again before this partition takes new records.
    recovering: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("topic", &self.smq_name)
            .field("partition", &self.index)
            .finish()
    }
}

/// Where a partition lives in SMQ and how it is stored.
#[derive(Debug, Clone)]
pub struct Placement {
    pub smq_topic: Topic,
    pub index: i32,
    /// The SMQ generation (`unix_time_ns`) of the partition.
    pub generation: i64,
    pub format: StorageFormat,
    /// Bytes of the newest records kept in memory for reads (0: none).
    pub tail_cache_bytes: usize,
    /// Read flushed records from the log files in the filer rather than through the broker.
    pub read_flushed_from_filer: bool,
    /// Shared bound of acknowledged bytes SMQ has not yet written.
    pub unflushed: Arc<UnflushedBudget>,
}

/// The newest units of a partition, contiguous, within a byte budget. Filled when SMQ has
/// acknowledged an append's records, just before its ledger entry moves the high water mark
/// (readers take only what is below the mark); cleared when the ledger is reloaded or an append
/// is rolled back.
#[derive(Debug, Default)]
struct TailCache {
    units: std::collections::VecDeque<StoredUnit>,
    bytes: usize,
    limit: usize,
}

impl TailCache {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    fn clear(&mut self) {
        self.units.clear();
        self.bytes = 0;
    }

    fn push(&mut self, units: Vec<StoredUnit>) {
        if self.limit == 0 {
            return;
        }
        if let (Some(last), Some(first)) = (self.units.back(), units.first())
            && last.end_offset() != first.first_offset()
        {
            // Not contiguous (cannot happen while the cache is cleared on reloads): start over.
            self.clear();
        }
        for u in units {
            self.bytes += unit_size(&u);
            self.units.push_back(u);
        }
        while self.bytes > self.limit
            && let Some(u) = self.units.pop_front()
        {
            self.bytes -= unit_size(&u);
        }
    }

    /// Units from `offset` on within `max_bytes` (at least one), when the cache holds `offset`.
    fn read(&self, offset: i64, max_bytes: usize) -> Option<Vec<StoredUnit>> {
        let first = self.units.front()?;
        let end = self.units.back()?.end_offset();
        if offset < first.first_offset() || offset >= end {
            return None;
        }
        let start = self.units.partition_point(|u| u.end_offset() <= offset);
        let mut out = Vec::new();
        let mut bytes = 0;
        for u in self.units.range(start..) {
            let size = unit_size(u);
            if !out.is_empty() && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            out.push(u.clone());
        }
        Some(out)
    }
}

/// What a fetch read from a partition: records (format `record`) or whole batches (format
/// `batch`; the first may start before the offset asked for, as in Kafka).
#[derive(Debug, Default)]
pub struct ReadResult {
    pub units: Vec<StoredUnit>,
    pub high_water_mark: i64,
    pub log_start: i64,
}

fn lock_read(l: &RwLock<PartitionLedger>) -> std::sync::RwLockReadGuard<'_, PartitionLedger> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

impl PartitionLog {
    pub fn new(
        client: SmqClient,
        place: Placement,
        ledger: PartitionLedger,
        ledger_store: Arc<LedgerStore>,
        owner: Arc<str>,
        wal: Option<(PartitionWal, Vec<RecoveredAppend>)>,
    ) -> Self {
        let Placement {
            smq_topic,
            index,
            generation,
            format,
            tail_cache_bytes,
            read_flushed_from_filer,
            unflushed,
        } = place;
        let smq_name = format!("{}/{}", smq_topic.namespace, smq_topic.name);
        let (hwm, _) = watch::channel(ledger.next_offset());
        let log_files = read_flushed_from_filer
            .then(|| PartitionLogFiles::new(client.clone(), smq_topic.clone(), index));
        // Reading the log files, held records are confirmed by finding them there, which also
        // holds when the broker cannot write (see `confirm_written`).
        let publisher = if log_files.is_some() {
            PartitionPublisher::confirmed_by_caller(client.clone(), smq_topic.clone(), index)
        } else {
            PartitionPublisher::new(client.clone(), smq_topic.clone(), index)
        };
        let (wal, recovered) = match wal {
            Some((w, r)) => (Some(w), r),
            None => (None, Vec::new()),
        };
        // Recovered records are held as if their stream had broken (epoch 0 is never a
        // stream's), so they are published again, superseding the ledger from the first.
        let mut held = Held::default();
        for a in recovered {
            let acks: Vec<(u64, i64)> = (0..a.units.len() as i64).map(|i| (0, i)).collect();
            for e in group(0, a.kafka_offset, &a.units, a.values, &acks) {
                held.push(e, &unflushed);
            }
        }
        if let Some(w) = &wal {
            w.sweep();
        }
        if !held.is_empty() {
            tracing::info!(topic = %smq_name, partition = index, records = held.entries().iter().map(|e| e.values.len()).sum::<usize>(), first_offset = held.entries().front().map(|e| e.entry.kafka_offset), "found acknowledged records in the write-ahead log; publishing them again");
        }
        let recovering = std::sync::atomic::AtomicBool::new(!held.is_empty());
        Self {
            wal,
            recovering,
            publisher,
            log_files,
            client,
            smq_topic,
            smq_name,
            index,
            generation,
            format: RwLock::new(format),
            ledger_store,
            ledger: RwLock::new(ledger),
            writer: Mutex::new(Writer::default()),
            epoch: AtomicU64::new(0),
            nonce: AtomicU64::new(new_nonce()),
            lease: Mutex::new(None),
            tail: std::sync::Mutex::new(TailCache::new(tail_cache_bytes)),
            ahead: std::sync::Mutex::new(TailCache::new(2 * READ_AHEAD_BYTES)),
            owner,
            hwm,
            reader: Mutex::new(None),
            held: Mutex::new(held),
            unflushed,
        }
    }

    pub fn index(&self) -> i32 {
        self.index
    }

    pub fn format(&self) -> StorageFormat {
        *self.format.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Switches the storage format; refused once the partition holds a record. Taken under the
    /// writer lock so no append runs with the old format after the check.
    pub async fn set_format(&self, format: StorageFormat) -> GatewayResult<()> {
        let _writer = self.writer.lock().await;
        if self.high_water_mark() > 0 && format != self.format() {
            return Err(GatewayError::InvalidConfig(format!(
                "smq.storage.format cannot change: partition {} already holds records",
                self.index
            )));
        }
        *self.format.write().unwrap_or_else(|e| e.into_inner()) = format;
        Ok(())
    }

    pub fn high_water_mark(&self) -> i64 {
        *self.hwm.borrow()
    }

    pub fn log_start(&self) -> i64 {
        lock_read(&self.ledger).log_start()
    }

    /// Whether this gateway writes the partition: it holds the write lock (or is appending right
    /// now). Only then is its high water mark the partition's own rather than what it read when
    /// it opened the partition.
    pub fn is_writer(&self) -> bool {
        match self.lease.try_lock() {
            Ok(l) => l.as_ref().is_some_and(|(_, at)| at.elapsed() < LOCK_TTL),
            Err(_) => true,
        }
    }

    pub fn subscribe_hwm(&self) -> watch::Receiver<i64> {
        self.hwm.subscribe()
    }

    /// A copy of the ledger, for inspection tools and stats.
    pub fn ledger_snapshot(&self) -> PartitionLedger {
        lock_read(&self.ledger).clone()
    }

    /// (entries, max timestamp of the first entry, max timestamp overall), without copying the
    /// ledger.
    pub fn ledger_summary(&self) -> (usize, Option<i64>, Option<i64>) {
        let l = lock_read(&self.ledger);
        (
            l.len(),
            l.entries().first().map(|e| e.max_timestamp),
            l.max_timestamp(),
        )
    }

    /// Stores the batches of one produce request and returns the base offset of the first
    /// ([`PartitionLog::begin_append`], then [`AppendTicket::finish`]).
    pub async fn append(
        self: &Arc<Self>,
        batches: &[Batch],
        timestamp_type: TimestampType,
        now_ms: i64,
    ) -> GatewayResult<Appended> {
        self.begin_append(batches, timestamp_type, now_ms)
            .await?
            .finish()
            .await
    }

    /// The first half of an append, done in request order: checks idempotence, assigns the
    /// offsets and hands the records to the SMQ stream without waiting for SMQ. Appends are
    /// pipelined: the next one may begin while this one waits for its acks.
    ///
    /// [`AppendTicket::finish`] then waits for SMQ, writes the ledger entry after every earlier
    /// append's, and only then makes the offsets visible. When an append fails, it and every
    /// append begun after it fail (retriably) and the partition continues from the last finished
    /// one: no offset is handed out with a hole before it, and records written for offsets that
    /// were not handed out are never served, because the ledger points elsewhere.
    pub async fn begin_append(
        self: &Arc<Self>,
        batches: &[Batch],
        timestamp_type: TimestampType,
        now_ms: i64,
    ) -> GatewayResult<AppendTicket> {
        let started = std::time::Instant::now();
        self.unflushed
            .wait_for_room(self.client.config().ack_timeout)
            .await?;
        let mut writer = self.writer.lock().await;
        self.ensure_owner(&mut writer).await?;
        if self.recovering.load(Ordering::Acquire) {
            self.finish_recovery(&mut writer).await?;
        }
        crate::metrics::append_stage("admit", started.elapsed());
        let mut idempotent = Vec::new();
        let mut to_store: Vec<&Batch> = Vec::with_capacity(batches.len());
        let mut duplicate_base = None;
        for b in batches {
            let h = &b.header;
            if h.producer_id >= 0 && h.base_sequence >= 0 {
                match writer.producers.check(
                    h.producer_id,
                    h.producer_epoch,
                    h.base_sequence,
                    h.record_count,
                )? {
                    SequenceCheck::Duplicate { base_offset } => {
                        duplicate_base.get_or_insert(base_offset);
                        continue;
                    }
                    SequenceCheck::Append => idempotent.push(b),
                }
            }
            to_store.push(b);
        }
        let log_append_time = (timestamp_type == TimestampType::LogAppendTime).then_some(now_ms);
        let format = self.format();
        let nonce = self.nonce.load(Ordering::Acquire);
        let base = writer
            .next
            .unwrap_or_else(|| lock_read(&self.ledger).next_offset());
        let mut offset = base;
        let mut pending = Vec::new();
        let mut units: Vec<(i64, i64)> = Vec::new();
        let mut stored_units = Vec::new();
        // (first Kafka offset, value) of each SMQ record, published once all are encoded.
        let mut firsts = Vec::new();
        let mut values = Vec::new();
        for b in &to_store {
            let n = b.records.len() as i64;
            if n == 0 {
                continue;
            }
            match format {
                StorageFormat::Record => {
                    for r in &b.records {
                        let ts = log_append_time.unwrap_or(r.timestamp);
                        let stored = StoredRecord {
                            offset,
                            partition: self.index,
                            timestamp: ts,
                            timestamp_type,
                            key: r.key.clone(),
                            value: r.value.clone(),
                            headers: r.headers.clone(),
                        };
                        firsts.push(offset);
                        values.push(encode_stored(&stored));
                        units.push((1, ts));
                        stored_units.push(StoredUnit::Record(stored));
                        offset += 1;
                    }
                }
                StorageFormat::Batch => {
                    let max_ts = log_append_time.unwrap_or_else(|| {
                        b.records.iter().map(|r| r.timestamp).max().unwrap_or(-1)
                    });
                    let stored = StoredBatch {
                        base_offset: offset,
                        partition: self.index,
                        record_count: n as i32,
                        max_timestamp: max_ts,
                        raw: rebase_batch(&b.raw, offset, log_append_time),
                    };
                    firsts.push(offset);
                    values.push(encode_stored_batch(&stored));
                    units.push((n, max_ts));
                    stored_units.push(StoredUnit::Batch(stored));
                    offset += n;
                }
            }
        }
        // What is published is kept when acks are held until SMQ has written it: in the
        // write-ahead log (written here, in offset order, under the writer lock) or in memory.
        let held_values: Vec<HeldValue> = match (&self.wal, self.holds_acks()) {
            (_, false) => Vec::new(),
            (Some(w), true) if !values.is_empty() => {
                w.append(self.generation, base, &units, &values)?
            }
            (_, true) => values.iter().cloned().map(HeldValue::Mem).collect(),
        };
        for (first, value) in firsts.into_iter().zip(values) {
            match self.publish(first, nonce, value).await {
                Ok(p) => pending.push(p),
                Err(e) => {
                    self.log_abort(base);
                    return Err(e);
                }
            }
        }
        // The batches' offsets for the idempotence table: recorded now for the appends begun
        // after this one, and in the finished table once this one finished.
        let mut sequences = Vec::new();
        let mut batch_base = base;
        for b in &to_store {
            if idempotent.iter().any(|i| std::ptr::eq(*i, *b)) {
                let h = &b.header;
                let seq = (
                    h.producer_id,
                    h.producer_epoch,
                    h.base_sequence,
                    h.record_count,
                    batch_base,
                );
                writer.producers.record(seq.0, seq.1, seq.2, seq.3, seq.4);
                sequences.push(seq);
            }
            batch_base += b.records.len() as i64;
        }
        if !units.is_empty() {
            writer.next = Some(offset);
        }
        // A duplicate also waits for the appends before it: its original may still fail.
        let (done, done_rx) = oneshot::channel();
        let previous = writer.last_done.replace(done_rx);
        let base_offset = if units.is_empty() {
            duplicate_base.unwrap_or(-1)
        } else {
            duplicate_base.map_or(base, |d| d.min(base))
        };
        Ok(AppendTicket {
            log: self.clone(),
            epoch: writer.epoch,
            nonce,
            pending,
            units,
            values: held_values,
            stored: stored_units,
            base,
            sequences,
            previous,
            done: Some(done),
            appended: Appended {
                base_offset,
                log_append_time,
            },
        })
    }

    /// The second half of an append: see [`PartitionLog::begin_append`].
    async fn finish_append(&self, t: &mut AppendTicket) -> GatewayResult<Appended> {
        let mut acks = Vec::with_capacity(t.pending.len());
        let mut failed = None;
        let started = std::time::Instant::now();
        for p in t.pending.drain(..) {
            match p.wait().await {
                Ok(ack) => acks.push((ack.epoch, ack.offset)),
                Err(e) => {
                    failed.get_or_insert(GatewayError::from(e));
                }
            }
        }
        crate::metrics::append_stage("smq_ack", started.elapsed());
        let started = std::time::Instant::now();
        let previous_ok = match t.previous.take() {
            Some(rx) => rx.await.unwrap_or(false),
            None => true,
        };
        crate::metrics::append_stage("previous", started.elapsed());
        let started = std::time::Instant::now();
        if let Some(e) = failed {
            return Err(e);
        }
        if !previous_ok || self.writer_epoch() != t.epoch {
            return Err(GatewayError::EarlierAppendFailed);
        }
        if t.units.is_empty() {
            return Ok(t.appended);
        }
        // Into the tail cache before the ledger entry moves the high water mark: a fetch woken
        // by the move then finds the records here instead of asking the broker for them (which
        // took up to ~100 ms in the e2e benchmark). Reads see only what is below the mark.
        self.tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(std::mem::take(&mut t.stored));
        // One ledger entry per run of consecutive SMQ offsets on one stream (a broken stream in
        // between leaves a hole, and the retried records land further on).
        if !self.holds_acks() {
            let values = vec![HeldValue::Mem(Vec::new()); t.units.len()];
            let entries = group(t.nonce, t.base, &t.units, values, &acks);
            self.append_ledger(entries.into_iter().map(|h| h.entry).collect())
                .await?;
        } else {
            let values = std::mem::take(&mut t.values);
            let mut held = self.held.lock().await;
            let entries = group(t.nonce, t.base, &t.units, values, &acks);
            let before = held.len();
            for e in entries {
                held.push(e, &self.unflushed);
            }
            if let Err(e) = self.write_ledger_tail(&mut held, before).await {
                // The roll-back that follows logs the abort in the write-ahead log.
                held.truncate(before, &self.unflushed);
                return Err(e);
            }
            self.prune_held(&mut held);
        }
        crate::metrics::append_stage("ledger", started.elapsed());
        let mut writer = self.writer.lock().await;
        for &(pid, epoch, seq, count, base) in &t.sequences {
            writer
                .committed_producers
                .record(pid, epoch, seq, count, base);
        }
        Ok(t.appended)
    }

    fn writer_epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether acknowledged records are held until SMQ has written them (`--smq-flush-interval`
    /// not 0); otherwise nothing is held and nothing is published again.
    fn holds_acks(&self) -> bool {
        self.client.config().flush_timing.is_some()
    }

    /// Persists and applies the ledger entries of the held entries from `from` on (just pushed
    /// by an append). When an earlier held entry's stream broke before SMQ wrote it, publishes
    /// every such entry again first and rewrites the ledger from the first of them.
    async fn write_ledger_tail(&self, held: &mut Held, from: usize) -> GatewayResult<()> {
        if let Some(stale) = held.first_stale(self.publisher.healthy_epoch()) {
            return self.republish(held, stale.min(from)).await;
        }
        let tokens = self
            .append_ledger(held.entries().range(from..).map(|h| h.entry).collect())
            .await?;
        held.set_ledger_tokens(from, tokens);
        Ok(())
    }

    /// Persists entries that continue the ledger, then applies them and moves the high water
    /// mark.
    async fn append_ledger(&self, entries: Vec<LedgerEntry>) -> GatewayResult<Vec<LedgerToken>> {
        let tokens = self.persist_entries(&entries).await?;
        let mut ledger = self.ledger.write().unwrap_or_else(|e| e.into_inner());
        for entry in entries {
            ledger
                .append(entry)
                .map_err(|e| GatewayError::Internal(format!("ledger append: {e}")))?;
        }
        self.hwm.send_replace(ledger.next_offset());
        Ok(tokens)
    }

    async fn persist_entries(&self, entries: &[LedgerEntry]) -> GatewayResult<Vec<LedgerToken>> {
        let mut tokens = Vec::with_capacity(entries.len());
        for entry in entries {
            tokens.push(
                self.ledger_store
                    .append(&LedgerRecord {
                        topic: self.smq_name.clone(),
                        partition: self.index,
                        generation: self.generation,
                        entry: *entry,
                    })
                    .await?,
            );
        }
        Ok(tokens)
    }

    /// Drops the held entries SMQ has written. With a write-ahead log, an entry also waits for
    /// its ledger entry to be written: a restart must find every acknowledged offset either in
    /// SMQ's ledger or in the log. The log's file is let go once nothing is held.
    fn prune_held(&self, held: &mut Held) {
        let store = &self.ledger_store;
        let needs_ledger = self.wal.is_some();
        held.prune(
            |e| self.publisher.durable_below(e),
            |t| !needs_ledger || t.is_some_and(|t| store.is_durable(t)),
            &self.unflushed,
        );
        if held.is_empty()
            && let Some(w) = &self.wal
        {
            w.seal();
        }
    }

    /// Publishes the held entries from `from` on again where their stream is gone, then
    /// persists ledger entries for all of them (the first supersedes everything from its start,
    /// in memory and on recovery). Nothing changes unless every step succeeds.
    async fn republish(&self, held: &mut Held, from: usize) -> GatewayResult<()> {
        let epoch = self.publisher.ensure_open().await?;
        let nonce = self.nonce.load(Ordering::Acquire);
        let mut pending = Vec::new();
        for h in held.entries().range(from..) {
            if h.epoch == epoch {
                continue;
            }
            for (first, value) in h.unit_offsets().zip(&h.values) {
                pending.push(self.publish(first, nonce, value.bytes()?).await?);
            }
        }
        let mut acks = Vec::with_capacity(pending.len());
        for p in pending {
            let ack = p.wait().await?;
            if ack.epoch != epoch {
                return Err(GatewayError::Smq(smq_client::SmqError::StreamBroken {
                    broker: String::new(),
                    reason: "the stream broke while publishing held records again".to_string(),
                }));
            }
            acks.push((ack.epoch, ack.offset));
        }
        let republished = acks.len();
        let mut acks = acks.into_iter();
        let mut replacement: Vec<HeldEntry> = Vec::new();
        for h in held.entries().range(from..) {
            if h.epoch == epoch {
                replacement.push(h.clone());
                continue;
            }
            let mine: Vec<(u64, i64)> = acks.by_ref().take(h.values.len()).collect();
            replacement.extend(group(
                nonce,
                h.entry.kafka_offset,
                &h.units,
                h.values.clone(),
                &mine,
            ));
        }
        let entries: Vec<LedgerEntry> = replacement.iter().map(|h| h.entry).collect();
        let tokens = self.persist_entries(&entries).await?;
        for (h, t) in replacement.iter_mut().zip(tokens) {
            h.ledger = Some(t);
        }
        {
            let mut ledger = self.ledger.write().unwrap_or_else(|e| e.into_inner());
            for entry in &entries {
                ledger.replay(*entry).map_err(|e| {
                    GatewayError::Internal(format!("ledger rewrite after a broken stream: {e}"))
                })?;
            }
            self.hwm.send_replace(ledger.next_offset());
        }
        held.replace_from(from, replacement, &self.unflushed);
        tracing::warn!(topic = %self.smq_name, partition = self.index, records = republished, from_offset = entries.first().map(|e| e.kafka_offset), "published again the acknowledged records SMQ had not yet written when its stream broke");
        crate::metrics::republished(republished as u64);
        Ok(())
    }

    /// Drops held entries SMQ has written, and publishes again those whose stream broke, so an
    /// idle partition recovers without waiting for the next produce. Called periodically.
    pub async fn keep_durable(&self) {
        if self.recovering.load(Ordering::Acquire) {
            if let Ok(mut writer) = self.writer.try_lock()
                && let Err(e) = self.finish_recovery(&mut writer).await
            {
                tracing::warn!(topic = %self.smq_name, partition = self.index, error = %e, "publishing the write-ahead log's records again failed; will retry");
            }
            return;
        }
        self.confirm_written().await;
        let Ok(mut held) = self.held.try_lock() else {
            return;
        };
        self.prune_held(&mut held);
        if let Some(stale) = held.first_stale(self.publisher.healthy_epoch())
            && let Err(e) = self.republish(&mut held, stale).await
        {
            tracing::debug!(topic = %self.smq_name, partition = self.index, error = %e, "publishing held records again failed; will retry");
        }
    }

    /// Confirms held records written by finding the newest of them at the end of the newest log
    /// file: the broker writes its buffers one at a time, in order, retrying until it succeeds,
    /// so every record acked before it on the same stream is written too. Needs the log-file
    /// reads (otherwise the publisher's timing rules confirm).
    async fn confirm_written(&self) {
        let Some(files) = &self.log_files else {
            return;
        };
        let Some(epoch) = self.publisher.healthy_epoch() else {
            return;
        };
        let Some((lo, hi, longest)) = self.held.try_lock().ok().and_then(|h| h.span(epoch)) else {
            return;
        };
        // A log record is the value, its 8-byte key and a few varint fields.
        let tail = (longest as u64).saturating_add(256);
        let found = files
            .newest_written(tail, |r| (lo..hi).contains(&r.offset))
            .await;
        let r = match found {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(topic = %self.smq_name, partition = self.index, error = %e, "looking for held records in the log files failed; will retry");
                return;
            }
        };
        // The same offset on the same stream could still be another record if SMQ handed it
        // out again after a crash (then the stream would have broken); the bytes settle it.
        let held = self.held.lock().await;
        let same = held
            .value_at(epoch, r.offset)
            .filter(|v| v.len() == r.data.len())
            .and_then(|v| v.bytes().ok())
            .is_some_and(|v| v == r.data);
        if same {
            self.publisher.confirm_written(epoch, r.offset + 1);
        }
    }

    /// Publishes again what a restart found in the write-ahead log, under the partition's lock,
    /// and writes ledger entries for it (superseding the ledger from the first recovered offset).
    /// The recovered offsets must continue the ledger SMQ holds: when another gateway wrote past
    /// them meanwhile, or the ledger ends before them, they are left alone with an error.
    async fn finish_recovery(&self, writer: &mut Writer) -> GatewayResult<()> {
        self.ensure_owner(writer).await?;
        let mut held = self.held.lock().await;
        if !self.recovering.load(Ordering::Acquire) {
            return Ok(());
        }
        let range = held
            .entries()
            .front()
            .zip(held.entries().back())
            .map(|(a, b)| (a.entry.kafka_offset, b.entry.end()));
        let next = lock_read(&self.ledger).next_offset();
        if let Some((first, end)) = range {
            if next < first || next > end {
                tracing::error!(topic = %self.smq_name, partition = self.index, first, end, ledger_end = next, "the write-ahead log's records do not continue the ledger in SMQ (another gateway wrote this partition, or ledger entries were lost); they are not published again");
                held.clear(&self.unflushed);
            } else {
                self.republish(&mut held, 0).await?;
            }
        }
        self.recovering.store(false, Ordering::Release);
        writer.next = None;
        self.prune_held(&mut held);
        Ok(())
    }

    /// Bytes of acknowledged records this partition holds until SMQ has written them.
    pub fn held_bytes(&self) -> usize {
        self.held.try_lock().map_or(0, |h| h.bytes())
    }

    /// Records in the write-ahead log that the offsets from `from` on were never acknowledged,
    /// so a restart does not publish them again.
    fn log_abort(&self, from: i64) {
        if let Some(w) = &self.wal
            && let Err(e) = w.abort(self.generation, from)
        {
            tracing::warn!(topic = %self.smq_name, partition = self.index, error = %e, "logging a failed append in the write-ahead log failed");
        }
    }

    /// After a failed append: unless another failure did so since `epoch`, forget every offset
    /// handed to an unfinished append and continue from the ledger's end.
    async fn roll_back(&self, epoch: u64) {
        let mut writer = self.writer.lock().await;
        if self.writer_epoch() != epoch {
            return;
        }
        writer.epoch = epoch + 1;
        self.epoch.store(epoch + 1, Ordering::Release);
        self.nonce.store(new_nonce(), Ordering::Release);
        // Every offset from the ledger's end on was handed to an append that failed; the tail
        // cache may hold some of them (below the high water mark it holds only what stands).
        self.log_abort(lock_read(&self.ledger).next_offset());
        self.tail.lock().unwrap_or_else(|e| e.into_inner()).clear();
        writer.next = None;
        writer.last_done = None;
        writer.producers = writer.committed_producers.clone();
    }

    async fn publish(
        &self,
        first_offset: i64,
        nonce: u64,
        value: Vec<u8>,
    ) -> GatewayResult<smq_client::PendingAck> {
        Ok(self
            .publisher
            .send(DataMessage {
                key: smq_key(first_offset, nonce),
                value,
                ts_ns: 0,
                ctrl: None,
            })
            .await?)
    }

    /// Takes the partition's lock and opens its SMQ stream before the first produce, so that
    /// the first records of a topic just created are acknowledged as fast as later ones (taking
    /// the lock, reading the partition's tail and opening the stream cost ~170 ms otherwise).
    pub async fn warm_up(&self) -> GatewayResult<()> {
        let mut writer = self.writer.lock().await;
        self.ensure_owner(&mut writer).await?;
        drop(writer);
        self.publisher.ensure_open().await?;
        Ok(())
    }

    fn lock_name(&self) -> String {
        format!("kafka-gateway/{}/{}", self.smq_name, self.index)
    }

    /// Makes sure this gateway holds the partition's write lock, so two gateways never write one
    /// ledger. Taking the lock (first write, or after it lapsed) reloads the ledger from SMQ,
    /// since another gateway may have written in between.
    async fn ensure_owner(&self, writer: &mut Writer) -> GatewayResult<()> {
        let name = self.lock_name();
        let mut slot = self.lease.lock().await;
        if let Some((lease, at)) = slot.as_ref() {
            let age = at.elapsed();
            if age < LOCK_TTL / 3 {
                return Ok(());
            }
            if age < LOCK_TTL * 2 / 3 {
                match self
                    .client
                    .lock(&name, &self.owner, LOCK_TTL, Some(lease))
                    .await?
                {
                    LockOutcome::Acquired(l) => {
                        *slot = Some((l, std::time::Instant::now()));
                        return Ok(());
                    }
                    LockOutcome::HeldBy(other) => {
                        *slot = None;
                        tracing::warn!(lock = %name, %other, "lost the partition lock");
                        return Err(GatewayError::NotLeader);
                    }
                }
            }
            *slot = None;
        }
        match self.client.lock(&name, &self.owner, LOCK_TTL, None).await? {
            LockOutcome::Acquired(lease) => {
                let fresh = match self
                    .ledger_store
                    .recover_partition(&self.smq_name, self.index, Duration::from_secs(60))
                    .await
                {
                    Ok(l) => l,
                    Err(e) => {
                        // Let the lock go: kept without its lease, it would answer this gateway
                        // "already owned" (SMQ's locks know no renewal without the token) until
                        // it expires, and the next produce could not take the partition.
                        if let Err(u) = self.client.unlock(&lease).await {
                            tracing::debug!(lock = %name, error = %u, "releasing the partition lock after a failed ledger read failed; it will expire");
                        }
                        return Err(e);
                    }
                };
                let kept = {
                    let mut ledger = self.ledger.write().unwrap_or_else(|e| e.into_inner());
                    // What SMQ holds is a prefix of what this gateway wrote: nobody wrote in
                    // between (another writer would have added entries of its own), and the rest
                    // of ours is still held for publishing again. Keep ours.
                    let ours = ledger.entries();
                    let prefix = fresh.len() <= ours.len()
                        && fresh.entries() == &ours[..fresh.len()]
                        && !ours.is_empty();
                    if !prefix {
                        if fresh.next_offset() != ledger.next_offset() {
                            tracing::info!(lock = %name, before = ledger.next_offset(), after = fresh.next_offset(), "ledger reloaded on taking the partition");
                        }
                        *ledger = fresh;
                        self.hwm.send_replace(ledger.next_offset());
                    }
                    prefix
                };
                if !kept {
                    // Appends begun under the lapsed lock fail: the ledger may have moved on.
                    writer.producers = ProducerStates::default();
                    writer.committed_producers = ProducerStates::default();
                    writer.next = None;
                    writer.last_done = None;
                    writer.epoch += 1;
                    self.epoch.store(writer.epoch, Ordering::Release);
                    self.nonce.store(new_nonce(), Ordering::Release);
                    self.tail.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    {
                        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
                        READ_AHEAD_HELD.fetch_sub(ahead.bytes, Ordering::Relaxed);
                        ahead.clear();
                    }
                    // What this gateway held belongs to the ledger it just replaced (what a
                    // restart recovered is checked against it in `finish_recovery`).
                    if !self.recovering.load(Ordering::Acquire) {
                        self.held.lock().await.clear(&self.unflushed);
                    }
                }
                *slot = Some((lease, std::time::Instant::now()));
                Ok(())
            }
            LockOutcome::HeldBy(other) => {
                tracing::debug!(lock = %name, %other, "partition owned by another gateway");
                Err(GatewayError::NotLeader)
            }
        }
    }

    /// Renews this partition's lock when due, so a live gateway keeps its partitions even while
    /// they are idle or their appends wait for SMQ.
    pub async fn renew_lock_if_due(&self) {
        let Ok(mut slot) = self.lease.try_lock() else {
            return;
        };
        let Some((lease, at)) = slot.clone() else {
            return;
        };
        if at.elapsed() < LOCK_TTL / 3 || at.elapsed() >= LOCK_TTL * 2 / 3 {
            return;
        }
        match self
            .client
            .lock(&self.lock_name(), &self.owner, LOCK_TTL, Some(&lease))
            .await
        {
            Ok(LockOutcome::Acquired(l)) => *slot = Some((l, std::time::Instant::now())),
            Ok(LockOutcome::HeldBy(other)) => {
                tracing::warn!(lock = %self.lock_name(), %other, "lost the partition lock");
                *slot = None;
            }
            Err(e) => {
                tracing::debug!(lock = %self.lock_name(), error = %e, "renewing the partition lock failed")
            }
        }
    }

    /// Reads records from `offset` on, about `max_bytes` worth (at least one record if any):
    /// from the tail cache when it holds `offset`, else from SMQ.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> GatewayResult<ReadResult> {
        self.read_ahead(offset, max_bytes, READ_AHEAD_BYTES).await
    }

    /// [`PartitionLog::read`], reading up to `read_ahead` bytes from SMQ (kept for the next
    /// fetch) when that is more than `max_bytes`: the caller decides what memory it may take.
    pub async fn read_ahead(
        &self,
        offset: i64,
        max_bytes: usize,
        read_ahead: usize,
    ) -> GatewayResult<ReadResult> {
        // The mark is taken once, before the caches: every record below it is in the tail cache
        // by then (records go there before their ledger entry moves the mark), so a mark that
        // moves while the caches are read cannot send a read of the newest records to SMQ.
        let (mark, log_start) = {
            let l = lock_read(&self.ledger);
            (l.next_offset(), l.log_start())
        };
        let mut units = self
            .tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read(offset, max_bytes)
            .or_else(|| {
                self.ahead
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read(offset, max_bytes)
            })
            .unwrap_or_default();
        // The tail cache takes an append's records before its ledger entry is written.
        units.retain(|u| u.end_offset() <= mark);
        if !units.is_empty() || offset == mark {
            return Ok(ReadResult {
                units,
                high_water_mark: mark,
                log_start,
            });
        }
        let (hwm, log_start, runs) = {
            let l = lock_read(&self.ledger);
            (
                l.next_offset(),
                l.log_start(),
                contiguous_runs(&l, offset, READ_CHUNK as i64 * 4),
            )
        };
        let mut result = ReadResult {
            units: Vec::new(),
            high_water_mark: hwm,
            log_start,
        };
        if offset == hwm {
            return Ok(result);
        }
        if offset < log_start || offset > hwm {
            return Err(GatewayError::OffsetOutOfRange {
                offset,
                start: log_start,
                end: hwm,
            });
        }
        let target = if READ_AHEAD_HELD.load(Ordering::Relaxed) < READ_AHEAD_TOTAL {
            max_bytes.max(read_ahead)
        } else {
            max_bytes
        };
        let mut read = Vec::new();
        let mut bytes = 0usize;
        for run in runs {
            let got = self.read_run(run, target.saturating_sub(bytes)).await?;
            let complete = got.len() as i64 == run.smq_count;
            for u in got {
                // Batches of the same entry that end before the offset asked for.
                if u.end_offset() <= offset {
                    continue;
                }
                bytes += unit_size(&u);
                read.push(u);
            }
            if !complete || bytes >= target {
                break;
            }
        }
        // SMQ measures its own encoding, not Kafka's: keep to the client's limit here, with at
        // least one record so a record larger than the limit still gets through (KIP-74).
        let mut served = 0usize;
        let mut take = 0;
        for u in &read {
            let size = unit_size(u);
            if take > 0 && served + size > max_bytes {
                break;
            }
            served += size;
            take += 1;
        }
        let rest = read.split_off(take);
        result.units = read;
        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        let before = ahead.bytes;
        ahead.clear();
        ahead.push(rest);
        READ_AHEAD_HELD.fetch_add(ahead.bytes, Ordering::Relaxed);
        READ_AHEAD_HELD.fetch_sub(before, Ordering::Relaxed);
        Ok(result)
    }

    /// Checks that SMQ records read for a run hold the Kafka offsets the ledger says, in order.
    fn check_unit(&self, run: Run, expected: i64, key: &[u8], u: &StoredUnit) -> GatewayResult<()> {
        let partition = match u {
            StoredUnit::Record(r) => r.partition,
            StoredUnit::Batch(b) => b.partition,
        };
        if run.nonce != 0 && key != smq_key(expected, run.nonce) {
            return Err(GatewayError::Corrupt(format!(
                "{} partition {}: SMQ record of the run at SMQ offset {} has key {:?}, not the one the ledger names for Kafka offset {expected}",
                self.smq_name,
                self.index,
                run.smq_offset,
                String::from_utf8_lossy(key)
            )));
        }
        if u.first_offset() != expected || partition != self.index {
            return Err(GatewayError::Corrupt(format!(
                "{} partition {}: SMQ record of the run at SMQ offset {} holds Kafka offset {} of partition {partition} but the ledger expects {expected}",
                self.smq_name,
                self.index,
                run.smq_offset,
                u.first_offset()
            )));
        }
        Ok(())
    }

    /// Reads one run of SMQ records stored at consecutive SMQ offsets, checking each record's own
    /// Kafka offset. FetchMessage first (fast, but positional and blind to first-window data
    /// after a reload); an exact subscription when it disagrees.
    async fn read_run(&self, run: Run, max_bytes: usize) -> GatewayResult<Vec<StoredUnit>> {
        if let Some(out) = self.read_run_flushed(run, max_bytes).await {
            crate::metrics::smq_read(
                "filer",
                out.len() as u64,
                out.iter().map(unit_size).sum::<usize>() as u64,
            );
            return Ok(out);
        }
        let out = self.read_run_broker(run, max_bytes).await?;
        crate::metrics::smq_read(
            "broker",
            out.len() as u64,
            out.iter().map(unit_size).sum::<usize>() as u64,
        );
        Ok(out)
    }

    /// The run's first records as far as SMQ has flushed them, read from the log files in the
    /// filer, each checked like any other. None when the files hold none of them yet (or cannot
    /// be read, or disagree): the caller then reads through the broker.
    async fn read_run_flushed(&self, run: Run, max_bytes: usize) -> Option<Vec<StoredUnit>> {
        let files = self.log_files.as_ref()?;
        let found = match files.read(run.smq_offset, run.smq_count, max_bytes).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(topic = %self.smq_name, partition = self.index, smq_offset = run.smq_offset, error = %e, "reading SMQ's log files failed; reading through the broker");
                return None;
            }
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut next_smq = run.smq_offset;
        let mut expected = run.kafka_offset;
        // In file order; an SMQ offset handed out twice (broker crash) has an older record
        // first, which does not hold the Kafka offset the ledger expects there: pass over it.
        for r in found {
            if r.offset != next_smq {
                continue;
            }
            let Ok(u) = decode_stored_unit(&r.data) else {
                continue;
            };
            if self.check_unit(run, expected, &r.key, &u).is_err() {
                continue;
            }
            expected = u.end_offset();
            bytes += unit_size(&u);
            out.push(u);
            next_smq += 1;
            if next_smq >= run.smq_offset + run.smq_count {
                break;
            }
        }
        if (out.len() as i64) < run.smq_count && bytes < max_bytes {
            // Not flushed yet, or flushed into a file not listed yet.
            files.want_newer();
        }
        if out.is_empty() {
            tracing::debug!(topic = %self.smq_name, partition = self.index, smq_offset = run.smq_offset, "SMQ's log files do not hold the run's first record (yet)");
            return None;
        }
        Some(out)
    }

    /// FetchMessage first, then an exact subscription.
    async fn read_run_broker(&self, run: Run, max_bytes: usize) -> GatewayResult<Vec<StoredUnit>> {
        let want = run.smq_count.min(READ_CHUNK as i64) as i32;
        let fetched = self
            .client
            .fetch(
                &self.smq_topic,
                self.index,
                run.smq_offset,
                max_bytes.clamp(1, 64 << 20) as i32,
                want,
            )
            .await;
        if let Ok(f) = fetched {
            let mut out = Vec::with_capacity(f.messages.len());
            let mut ok = !f.messages.is_empty();
            let mut expected = run.kafka_offset;
            for m in f.messages.iter().take(want as usize) {
                match decode_stored_unit(&m.value) {
                    Ok(u) if self.check_unit(run, expected, &m.key, &u).is_ok() => {
                        expected = u.end_offset();
                        out.push(u);
                    }
                    _ => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                return Ok(out);
            }
            tracing::debug!(topic = %self.smq_name, partition = self.index, smq_offset = run.smq_offset, "FetchMessage disagrees with the ledger; reading exactly");
        }
        self.read_run_exact(run, max_bytes).await
    }

    async fn read_run_exact(&self, run: Run, max_bytes: usize) -> GatewayResult<Vec<StoredUnit>> {
        let mut slot = self.reader.lock().await;
        let mut sub = match slot.take() {
            Some((next, sub)) if next == run.smq_offset => sub,
            _ => {
                self.client
                    .subscribe_exact(&self.smq_topic, self.index, run.smq_offset, "kafka-gateway")
                    .await?
            }
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut next_smq = run.smq_offset;
        let mut expected = run.kafka_offset;
        let mut skipped = 0usize;
        while (out.len() as i64) < run.smq_count && (out.is_empty() || bytes < max_bytes) {
            let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await
                .map_err(|_| GatewayError::Corrupt(format!(
                    "{} partition {}: SMQ has no record at offset {next_smq} that the ledger maps to Kafka offset {expected} ({skipped} other records skipped)",
                    self.smq_name,
                    self.index,
                )))??
                .ok_or_else(|| GatewayError::Internal("subscription ended".to_string()))?;
            let u = decode_stored_unit(&msg.value)?;
            if self.check_unit(run, expected, &msg.key, &u).is_err() {
                // After a broker crash SMQ can hand out offsets again, so a stored offset can
                // hold an older record (or one published again) before ours: skip it.
                skipped += 1;
                if skipped > SKIP_LIMIT {
                    return Err(GatewayError::Corrupt(format!(
                        "{} partition {}: no record with Kafka offset {expected} among {SKIP_LIMIT} records from SMQ offset {}",
                        self.smq_name, self.index, run.smq_offset
                    )));
                }
                continue;
            }
            expected = u.end_offset();
            bytes += unit_size(&u);
            out.push(u);
            next_smq += 1;
        }
        if skipped > 0 {
            tracing::info!(topic = %self.smq_name, partition = self.index, smq_offset = run.smq_offset, skipped, "skipped records SMQ stored twice at one offset");
        } else {
            // Where the stream stands is known only when nothing was skipped.
            *slot = Some((next_smq, sub));
        }
        Ok(out)
    }

    /// The first offset whose record timestamp is ≥ `ts`, with that timestamp.
    pub async fn offset_for_timestamp(&self, ts: i64) -> GatewayResult<Option<(i64, i64)>> {
        let entry = {
            let l = lock_read(&self.ledger);
            match l.first_entry_at_or_after(ts) {
                Some(i) => l.entries()[i],
                None => return Ok(None),
            }
        };
        let mut offset = entry.kafka_offset;
        while offset < entry.end() {
            let r = self.read(offset, 1 << 20).await?;
            if r.units.is_empty() {
                break;
            }
            for u in &r.units {
                if let Some(found) = first_at_or_after(u, ts)? {
                    return Ok(Some(found));
                }
            }
            offset = r.units.last().map_or(entry.end(), StoredUnit::end_offset);
        }
        Err(GatewayError::Corrupt(format!(
            "{} partition {}: ledger entry at {} claims a timestamp ≥ {ts} that its records lack",
            self.smq_name, self.index, entry.kafka_offset
        )))
    }

    pub async fn close(&self) {
        self.publisher.close().await;
        // An append stuck on a dead SMQ must not keep the gateway from stopping.
        let slot = tokio::time::timeout(Duration::from_secs(5), self.lease.lock()).await;
        if let Ok(mut slot) = slot
            && let Some((lease, _)) = slot.take()
            && let Err(e) = self.client.unlock(&lease).await
        {
            tracing::debug!(error = %e, "releasing a partition lock failed; it will expire");
        }
    }
}

/// The SMQ key of a stored record: its Kafka offset, unique within the partition. SMQ delivers a
/// record to a subscriber only after the previous record with the same key was acknowledged, and
/// ignores acknowledgements of empty keys (waiting 30 s instead), so Kafka's own keys (often
/// repeated or null) must not be used here; they are inside the stored value.
/// The SMQ key of a record holding Kafka offset `offset` (its first, for a batch), published
/// with `nonce` (see [`LedgerEntry::nonce`]).
fn smq_key(offset: i64, nonce: u64) -> Vec<u8> {
    if nonce == 0 {
        offset.to_string().into_bytes()
    } else {
        format!("{offset}.{nonce:016x}").into_bytes()
    }
}

/// A fresh publish nonce (never 0, which means "not checked").
fn new_nonce() -> u64 {
    rand::random::<u64>().max(1)
}

/// An upper bound of a record's size in an uncompressed v2 batch (fixed fields and varints).
pub fn record_size(r: &StoredRecord) -> usize {
    40 + r.key.as_ref().map_or(0, |k| k.len())
        + r.value.as_ref().map_or(0, |v| v.len())
        + r.headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()) + 10)
            .sum::<usize>()
}

/// What a stored unit adds to a fetch response: a record's size, or a batch's exact bytes.
pub fn unit_size(u: &StoredUnit) -> usize {
    match u {
        StoredUnit::Record(r) => record_size(r),
        StoredUnit::Batch(b) => b.raw.len(),
    }
}

/// The first record of a unit with timestamp ≥ `ts`, as (offset, timestamp).
fn first_at_or_after(u: &StoredUnit, ts: i64) -> GatewayResult<Option<(i64, i64)>> {
    match u {
        StoredUnit::Record(r) => Ok((r.timestamp >= ts).then_some((r.offset, r.timestamp))),
        StoredUnit::Batch(b) if b.max_timestamp < ts => Ok(None),
        StoredUnit::Batch(b) => {
            let batch = parse_batch(b.raw.clone(), usize::MAX)?;
            // With LogAppendTime every record of a batch has the batch's max timestamp.
            if batch.header.timestamp_type() == TimestampType::LogAppendTime {
                return Ok(Some((b.base_offset, b.max_timestamp)));
            }
            Ok(batch
                .records
                .iter()
                .find(|r| r.timestamp >= ts)
                .map(|r| (b.base_offset + i64::from(r.offset_delta), r.timestamp)))
        }
    }
}

/// Kafka offsets `[kafka_offset, kafka_offset + count)` in the SMQ records
/// `[smq_offset, smq_offset + smq_count)`, consecutive in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    kafka_offset: i64,
    smq_offset: i64,
    count: i64,
    smq_count: i64,
    /// The entries' publish nonce (a run never spans two).
    nonce: u64,
}

/// Splits the ledger from `offset` on into runs of consecutive SMQ offsets, covering at most
/// about `limit` Kafka offsets (whole entries of batches, which cannot be split).
fn contiguous_runs(l: &PartitionLedger, offset: i64, limit: i64) -> Vec<Run> {
    let Some(loc) = l.locate(offset) else {
        return Vec::new();
    };
    let mut runs: Vec<Run> = Vec::new();
    let mut left = limit;
    for (i, e) in l.entries()[loc.entry_index..].iter().enumerate() {
        if left <= 0 {
            break;
        }
        let (k, s, n, m) = if !e.is_exact() {
            (
                e.kafka_offset,
                e.smq_offset,
                i64::from(e.count),
                i64::from(e.smq_count),
            )
        } else {
            let (k, s) = if i == 0 {
                (offset, loc.smq_offset)
            } else {
                (e.kafka_offset, e.smq_offset)
            };
            let n = (e.end() - k).min(left);
            (k, s, n, n)
        };
        left -= n;
        match runs.last_mut() {
            Some(r)
                if r.smq_offset + r.smq_count == s
                    && r.kafka_offset + r.count == k
                    && r.nonce == e.nonce =>
            {
                r.count += n;
                r.smq_count += m;
            }
            _ => runs.push(Run {
                kafka_offset: k,
                smq_offset: s,
                count: n,
                smq_count: m,
                nonce: e.nonce,
            }),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(k: i64, n: u32, s: i64, m: u32) -> LedgerEntry {
        LedgerEntry {
            kafka_offset: k,
            count: n,
            smq_offset: s,
            smq_count: m,
            max_timestamp: 0,
            nonce: 0,
        }
    }

    fn run(kafka_offset: i64, smq_offset: i64, count: i64, smq_count: i64) -> Run {
        Run {
            kafka_offset,
            smq_offset,
            count,
            smq_count,
            nonce: 0,
        }
    }

    fn batch(base_offset: i64, record_count: i32, size: usize) -> StoredUnit {
        StoredUnit::Batch(StoredBatch {
            base_offset,
            partition: 0,
            record_count,
            max_timestamp: 0,
            raw: bytes::Bytes::from(vec![0u8; size]),
        })
    }

    #[test]
    fn tail_cache_serves_the_newest_units_within_its_budget() {
        let mut c = TailCache::new(250);
        c.push(vec![batch(0, 5, 100), batch(5, 5, 100)]);
        c.push(vec![batch(10, 2, 100)]); // evicts [0, 5)
        assert_eq!(c.bytes, 200);
        assert!(c.read(4, 1000).is_none(), "evicted");
        assert!(c.read(12, 1000).is_none(), "not stored yet");
        let from_middle = c.read(7, 1000).unwrap();
        assert_eq!(from_middle.first().map(StoredUnit::first_offset), Some(5));
        assert_eq!(from_middle.len(), 2);
        assert_eq!(
            c.read(5, 150).unwrap().len(),
            1,
            "byte limit, at least one unit"
        );
        c.push(vec![batch(20, 1, 10)]); // not contiguous: starts over
        assert_eq!(c.units.len(), 1);
        assert_eq!(c.read(20, 1).unwrap().len(), 1);
        let mut off = TailCache::new(0);
        off.push(vec![batch(0, 1, 1)]);
        assert!(off.read(0, 10).is_none());
    }

    #[test]
    fn runs_merge_contiguous_entries_and_split_at_holes() {
        let mut l = PartitionLedger::new();
        l.append(e(0, 2, 0, 2)).unwrap();
        l.append(e(2, 3, 2, 3)).unwrap();
        l.append(e(5, 2, 9, 2)).unwrap(); // orphans at SMQ 5..8
        assert_eq!(
            contiguous_runs(&l, 1, 100),
            [run(1, 1, 4, 4), run(5, 9, 2, 2)]
        );
        assert_eq!(contiguous_runs(&l, 1, 2), [run(1, 1, 2, 2)]);
        assert!(contiguous_runs(&l, 7, 10).is_empty());
    }

    #[test]
    fn runs_split_where_the_publish_nonce_changes_and_keys_carry_it() {
        let mut l = PartitionLedger::new();
        l.append(LedgerEntry {
            nonce: 7,
            ..e(0, 2, 0, 2)
        })
        .unwrap();
        l.append(LedgerEntry {
            nonce: 7,
            ..e(2, 2, 2, 2)
        })
        .unwrap();
        l.append(LedgerEntry {
            nonce: 8,
            ..e(4, 2, 4, 2)
        })
        .unwrap();
        let runs = contiguous_runs(&l, 0, 100);
        let got: Vec<_> = runs
            .iter()
            .map(|r| (r.kafka_offset, r.count, r.nonce))
            .collect();
        assert_eq!(got, [(0, 4, 7), (4, 2, 8)]);
        assert_eq!(smq_key(12, 0), b"12");
        assert_eq!(smq_key(12, 0xab), b"12.00000000000000ab");
    }

    #[test]
    fn runs_of_batches_start_at_the_entry_and_stay_whole() {
        let mut l = PartitionLedger::new();
        l.append(e(0, 10, 0, 2)).unwrap(); // batches of (say) 4 and 6 records
        l.append(e(10, 5, 2, 1)).unwrap();
        l.append(e(15, 8, 7, 2)).unwrap(); // after a hole in SMQ
        assert_eq!(
            contiguous_runs(&l, 6, 100),
            [run(0, 0, 15, 3), run(15, 7, 8, 2)]
        );
        // The limit stops after the entry that crosses it, never inside one.
        assert_eq!(contiguous_runs(&l, 12, 3), [run(10, 2, 5, 1)]);
    }
}
