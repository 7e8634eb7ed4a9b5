//! Appending: offsets are assigned in request order under the writer lock, records go to SMQ
//! pipelined, and an append is acknowledged only once SMQ acked its records and its ledger entry
//! is persisted after every earlier append's. A failure rolls the partition back to the last
//! finished append, so no offset is ever handed out with a hole before it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, oneshot};

use super::held::{attach, group};
use super::keys::{new_nonce, smq_key};
use super::{PartitionLog, lock_read};
use crate::error::{GatewayError, GatewayResult};
use crate::ledger::{LedgerToken, ProducerBatch, ProducerStates, SequenceCheck};
use crate::records::{
    Batch, StorageFormat, StoredBatch, StoredRecord, StoredUnit, TimestampType, encode_stored,
    encode_stored_batch, rebase_batch,
};
use crate::storage::backend::{EntryToPersist, PartitionBackend};
use crate::storage::wal::HeldValue;

/// The append pipeline's state.
pub(super) struct Appending {
    /// Serialises the start of appends: offsets are assigned in one order.
    pub(super) writer: Mutex<Writer>,
    /// `Writer::epoch`, readable without the lock.
    pub(super) epoch: AtomicU64,
    /// In the SMQ keys of records published now. Changed whenever Kafka offsets may be handed
    /// out again (a roll-back, a reloaded ledger; a new process starts with its own), so that a
    /// record never shares SMQ offset, Kafka offset and nonce with one the ledger does not name.
    pub(super) nonce: AtomicU64,
}

impl Appending {
    /// Starting with the idempotent producers recovered with the ledger.
    pub(super) fn new(producers: ProducerStates) -> Self {
        Self {
            writer: Mutex::new(Writer {
                committed_producers: producers.clone(),
                producers,
                ..Writer::default()
            }),
            epoch: AtomicU64::new(0),
            nonce: AtomicU64::new(new_nonce()),
        }
    }
}

/// The single writer's state: offsets handed out and idempotence tables.
#[derive(Default)]
pub(super) struct Writer {
    /// Idempotence table including appends that have begun but not finished.
    pub(super) producers: ProducerStates,
    /// Idempotence table of finished appends only, restored after a failure.
    pub(super) committed_producers: ProducerStates,
    /// The next offset to hand out while appends are in flight (None: the ledger's end).
    pub(super) next: Option<i64>,
    /// Resolves when the last begun append finished (true) or failed (false).
    pub(super) last_done: Option<oneshot::Receiver<bool>>,
    /// Bumped by every roll-back; appends begun before it fail.
    pub(super) epoch: u64,
}

impl Writer {
    /// Forgets every append in flight: they fail, and offsets continue from the ledger's end.
    pub(super) fn restart(&mut self, appending: &Appending) {
        self.next = None;
        self.last_done = None;
        self.epoch += 1;
        appending.epoch.store(self.epoch, Ordering::Release);
        appending.nonce.store(new_nonce(), Ordering::Release);
    }
}

/// An append that has begun (offsets assigned, records sent to SMQ); `finish` completes it.
pub struct AppendTicket<B: PartitionBackend = crate::storage::backend::SmqBackend> {
    log: Arc<PartitionLog<B>>,
    epoch: u64,
    /// In the keys of the records this append published.
    nonce: u64,
    pending: Vec<B::Pending>,
    /// Per SMQ record: the Kafka offsets it holds and their max timestamp.
    units: Vec<(i64, i64)>,
    /// Per SMQ record: what was published, kept until SMQ has written it (empty when acks are
    /// not held).
    values: Vec<HeldValue>,
    /// What was stored, for the tail cache.
    stored: Vec<StoredUnit>,
    base: i64,
    /// The idempotent batches this append stores.
    sequences: Vec<ProducerBatch>,
    previous: Option<oneshot::Receiver<bool>>,
    done: Option<oneshot::Sender<bool>>,
    appended: Appended,
    throttled: Duration,
}

impl<B: PartitionBackend> AppendTicket<B> {
    /// How long the append waited for room in the unflushed budget before it began: the
    /// client is asked to back off as long.
    pub fn throttled(&self) -> Duration {
        self.throttled
    }

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

/// One produce request's records, encoded for SMQ.
#[derive(Default)]
struct Encoded {
    /// The Kafka offset of each SMQ record's first record.
    firsts: Vec<i64>,
    values: Vec<Vec<u8>>,
    /// (Kafka records, max timestamp) of each SMQ record.
    units: Vec<(i64, i64)>,
    stored: Vec<StoredUnit>,
}

impl<B: PartitionBackend> PartitionLog<B> {
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
    ) -> GatewayResult<AppendTicket<B>> {
        let started = std::time::Instant::now();
        let throttled = self
            .holding
            .unflushed
            .wait_for_room(self.backend.ack_timeout())
            .await?;
        if let Some(reason) = self.holding.refusal() {
            return Err(GatewayError::WritesRefused(reason));
        }
        let mut writer = self.appending.writer.lock().await;
        self.ensure_owner(&mut writer).await?;
        if self.holding.is_recovering() {
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
                    now_ms,
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
        let nonce = self.appending.nonce.load(Ordering::Acquire);
        let base = writer
            .next
            .unwrap_or_else(|| lock_read(&self.ledger).next_offset());
        let encoded = self.encode(&to_store, base, timestamp_type, log_append_time);
        let end = base + encoded.units.iter().map(|u| u.0).sum::<i64>();
        // What is published is kept when acks are held until SMQ has written it: in the
        // write-ahead log (written here, in offset order, under the writer lock) or in memory.
        let held_values = if self.backend.holds_acks() {
            self.holding
                .keep(self.generation, base, &encoded.units, &encoded.values)?
        } else {
            Vec::new()
        };
        let mut pending = Vec::with_capacity(encoded.values.len());
        for (first, value) in encoded.firsts.into_iter().zip(encoded.values) {
            match self.publish(first, nonce, value).await {
                Ok(p) => pending.push(p),
                Err(e) => {
                    self.holding
                        .log_abort(self.generation, base, &self.smq_name);
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
                let seq = ProducerBatch {
                    producer_id: h.producer_id,
                    epoch: h.producer_epoch,
                    base_sequence: h.base_sequence,
                    count: h.record_count,
                    base_offset: batch_base,
                    time_ms: now_ms,
                };
                writer.producers.record(&seq);
                sequences.push(seq);
            }
            batch_base += b.records.len() as i64;
        }
        if !encoded.units.is_empty() {
            writer.next = Some(end);
        }
        // A duplicate also waits for the appends before it: its original may still fail.
        let (done, done_rx) = oneshot::channel();
        let previous = writer.last_done.replace(done_rx);
        let base_offset = if encoded.units.is_empty() {
            duplicate_base.unwrap_or(-1)
        } else {
            duplicate_base.map_or(base, |d| d.min(base))
        };
        Ok(AppendTicket {
            log: self.clone(),
            epoch: writer.epoch,
            nonce,
            pending,
            units: encoded.units,
            values: held_values,
            stored: encoded.stored,
            base,
            sequences,
            previous,
            done: Some(done),
            appended: Appended {
                base_offset,
                log_append_time,
            },
            throttled,
        })
    }

    /// Encodes the batches as SMQ records in the partition's format, from Kafka offset `base`.
    fn encode(
        &self,
        batches: &[&Batch],
        base: i64,
        timestamp_type: TimestampType,
        log_append_time: Option<i64>,
    ) -> Encoded {
        let mut out = Encoded::default();
        let mut offset = base;
        let format = self.format();
        for b in batches {
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
                        out.firsts.push(offset);
                        out.values.push(encode_stored(&stored));
                        out.units.push((1, ts));
                        out.stored.push(StoredUnit::Record(stored));
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
                    out.firsts.push(offset);
                    out.values.push(encode_stored_batch(&stored));
                    out.units.push((n, max_ts));
                    out.stored.push(StoredUnit::Batch(stored));
                    offset += n;
                }
            }
        }
        out
    }

    /// The second half of an append: see [`PartitionLog::begin_append`].
    async fn finish_append(&self, t: &mut AppendTicket<B>) -> GatewayResult<Appended> {
        let mut acks = Vec::with_capacity(t.pending.len());
        let mut failed = None;
        let started = std::time::Instant::now();
        for p in t.pending.drain(..) {
            match B::wait(p).await {
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
        self.reading.cache_appended(std::mem::take(&mut t.stored));
        // One ledger entry per run of consecutive SMQ offsets on one stream (a broken stream in
        // between leaves a hole, and the retried records land further on).
        if !self.backend.holds_acks() {
            let values = vec![HeldValue::Mem(Vec::new()); t.units.len()];
            let mut entries = group(t.nonce, t.base, &t.units, values, &acks);
            attach(&mut entries, &t.sequences);
            let persist: Vec<EntryToPersist<'_>> = entries
                .iter()
                .map(|h| (h.entry, &h.producers[..]))
                .collect();
            self.append_ledger(&persist).await?;
        } else {
            let values = std::mem::take(&mut t.values);
            self.hold_appended(t.nonce, t.base, &t.units, values, &acks, &t.sequences)
                .await?;
        }
        crate::metrics::append_stage("ledger", started.elapsed());
        let mut writer = self.appending.writer.lock().await;
        for b in &t.sequences {
            writer.committed_producers.record(b);
        }
        Ok(t.appended)
    }

    pub(super) fn writer_epoch(&self) -> u64 {
        self.appending.epoch.load(Ordering::Acquire)
    }

    /// Persists entries that continue the ledger, then applies them and moves the high water
    /// mark.
    pub(super) async fn append_ledger(
        &self,
        entries: &[EntryToPersist<'_>],
    ) -> GatewayResult<Vec<LedgerToken>> {
        let tokens = self.persist_fenced(entries).await?;
        self.apply_entries(entries.iter().map(|(e, _)| *e))?;
        Ok(tokens)
    }

    /// After a failed append: unless another failure did so since `epoch`, forget every offset
    /// handed to an unfinished append and continue from the ledger's end.
    async fn roll_back(&self, epoch: u64) {
        let mut writer = self.appending.writer.lock().await;
        if self.writer_epoch() != epoch {
            return;
        }
        writer.restart(&self.appending);
        // Every offset from the ledger's end on was handed to an append that failed; the tail
        // cache may hold some of them (below the high water mark it holds only what stands).
        self.holding.log_abort(
            self.generation,
            lock_read(&self.ledger).next_offset(),
            &self.smq_name,
        );
        self.reading.clear_tail();
        writer.producers = writer.committed_producers.clone();
    }

    pub(super) async fn publish(
        &self,
        first_offset: i64,
        nonce: u64,
        value: Vec<u8>,
    ) -> GatewayResult<B::Pending> {
        crate::metrics::smq_writes("data", 1);
        Ok(self
            .backend
            .send(smq_key(first_offset, nonce), value)
            .await?)
    }
}
