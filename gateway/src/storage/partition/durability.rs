//! Holding and publishing again: SMQ acks a record once it is in the broker's memory and writes
//! it seconds later, so the partition keeps every acknowledged record (in memory or in the
//! write-ahead log) until SMQ has provably written it. When the publish stream breaks first, the
//! held records are published again and ledger entries superseding the old ones are written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Mutex;

use super::held::{Held, HeldEntry, attach, group};
use super::{PartitionLog, lock_write};
use crate::error::{GatewayError, GatewayResult};
use crate::ledger::{LedgerEntry, ProducerBatch};
use crate::storage::backend::{EntryToPersist, PartitionBackend};
use crate::storage::unflushed::UnflushedBudget;
use crate::storage::wal::{HeldValue, PartitionWal, RecoveredAppend};

/// Acknowledged records not yet known written by SMQ.
pub(super) struct Holding {
    /// Finished appends not yet known durable, a suffix of the ledger. Locked whenever the
    /// ledger's tail changes (finishing an append, publishing held records again), never while
    /// taking the writer lock.
    pub(super) held: Mutex<Held>,
    pub(super) unflushed: Arc<UnflushedBudget>,
    /// Where held records are kept (`--wal-dir`); in `held`'s memory otherwise.
    wal: Option<PartitionWal>,
    /// Records an earlier process logged in `wal` and may not have had written by SMQ are held
    /// and must be published again before this partition takes new records.
    recovering: AtomicBool,
    /// Why the partition refuses writes: what the write-ahead log holds does not continue the
    /// ledger, and handing its offsets out again would break acknowledged records' offsets.
    pub(super) refused: std::sync::Mutex<Option<String>>,
}

impl Holding {
    /// Holds what a restart found in the write-ahead log, as if its stream had broken (epoch 0
    /// is never a stream's), so it is published again, superseding the ledger from the first.
    pub(super) fn new(
        unflushed: Arc<UnflushedBudget>,
        wal: Option<(PartitionWal, Vec<RecoveredAppend>)>,
        smq_name: &str,
        index: i32,
    ) -> Self {
        let (wal, recovered) = match wal {
            Some((w, r)) => (Some(w), r),
            None => (None, Vec::new()),
        };
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
        Self {
            recovering: AtomicBool::new(!held.is_empty()),
            refused: std::sync::Mutex::new(None),
            held: Mutex::new(held),
            unflushed,
            wal,
        }
    }

    /// Why writes are refused, if they are.
    pub(super) fn refusal(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn refuse(&self, reason: String) {
        let mut r = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            crate::metrics::refusing_writes(true);
        }
        *r = Some(reason);
    }

    pub(super) fn accept_writes(&self) {
        let mut r = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if r.take().is_some() {
            crate::metrics::refusing_writes(false);
        }
    }

    pub(super) fn is_recovering(&self) -> bool {
        self.recovering.load(Ordering::Acquire)
    }

    pub(super) fn recovered(&self) {
        self.recovering.store(false, Ordering::Release);
    }

    /// Keeps what an append publishes until SMQ has written it: in the write-ahead log (written
    /// under the writer lock, so in offset order) or in memory.
    pub(super) fn keep(
        &self,
        generation: i64,
        base: i64,
        units: &[(i64, i64)],
        values: &[Vec<u8>],
    ) -> GatewayResult<Vec<HeldValue>> {
        match &self.wal {
            Some(w) if !values.is_empty() => w.append(generation, base, units, values),
            _ => Ok(values.iter().cloned().map(HeldValue::Mem).collect()),
        }
    }

    /// Records in the write-ahead log that the offsets from `from` on were never acknowledged,
    /// so a restart does not publish them again.
    pub(super) fn log_abort(&self, generation: i64, from: i64, smq_name: &str) {
        if let Some(w) = &self.wal
            && let Err(e) = w.abort(generation, from)
        {
            tracing::warn!(topic = %smq_name, error = %e, "logging a failed append in the write-ahead log failed");
        }
    }

    pub(super) fn has_wal(&self) -> bool {
        self.wal.is_some()
    }

    /// Lets the write-ahead log's file go once nothing is held.
    fn seal_if_empty(&self, held: &Held) {
        if held.is_empty()
            && let Some(w) = &self.wal
        {
            w.seal();
        }
    }
}

impl<B: PartitionBackend> PartitionLog<B> {
    /// Bytes of acknowledged records this partition holds until SMQ has written them.
    pub fn held_bytes(&self) -> usize {
        self.holding.held.try_lock().map_or(0, |h| h.bytes())
    }

    /// Holds a finished append's records and persists their ledger entries (the second half of
    /// an append when acks are held).
    pub(super) async fn hold_appended(
        &self,
        nonce: u64,
        base: i64,
        units: &[(i64, i64)],
        values: Vec<HeldValue>,
        acks: &[(u64, i64)],
        batches: &[ProducerBatch],
    ) -> GatewayResult<()> {
        let mut held = self.holding.held.lock().await;
        let before = held.len();
        let mut entries = group(nonce, base, units, values, acks);
        attach(&mut entries, batches);
        for e in entries {
            held.push(e, &self.holding.unflushed);
        }
        if let Err(e) = self.write_ledger_tail(&mut held, before).await {
            // The roll-back that follows logs the abort in the write-ahead log.
            held.truncate(before, &self.holding.unflushed);
            return Err(e);
        }
        self.prune_held(&mut held);
        Ok(())
    }

    /// Persists and applies the ledger entries of the held entries from `from` on (just pushed
    /// by an append). When an earlier held entry's stream broke before SMQ wrote it, publishes
    /// every such entry again first and rewrites the ledger from the first of them.
    async fn write_ledger_tail(&self, held: &mut Held, from: usize) -> GatewayResult<()> {
        if let Some(stale) = held.first_stale(self.backend.healthy_epoch()) {
            return self.republish(held, stale.min(from)).await;
        }
        let entries: Vec<EntryToPersist<'_>> = held
            .entries()
            .range(from..)
            .map(|h| (h.entry, &h.producers[..]))
            .collect();
        let tokens = self.append_ledger(&entries).await?;
        held.set_ledger_tokens(from, tokens);
        Ok(())
    }

    /// Drops the held entries SMQ has written. With a write-ahead log, an entry also waits for
    /// its ledger entry to be written: a restart must find every acknowledged offset either in
    /// SMQ's ledger or in the log. The log's file is let go once nothing is held.
    pub(super) fn prune_held(&self, held: &mut Held) {
        let needs_ledger = self.holding.has_wal();
        held.prune(
            |e| self.backend.durable_below(e),
            |t| !needs_ledger || t.is_some_and(|t| self.backend.ledger_durable(t)),
            &self.holding.unflushed,
        );
        self.holding.seal_if_empty(held);
    }

    /// Publishes the held entries from `from` on again where their stream is gone, then
    /// persists ledger entries for all of them (the first supersedes everything from its start,
    /// in memory and on recovery). Nothing changes unless every step succeeds.
    pub(super) async fn republish(&self, held: &mut Held, from: usize) -> GatewayResult<()> {
        let epoch = self.backend.ensure_open().await?;
        let nonce = self.appending.nonce.load(Ordering::Acquire);
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
            let ack = B::wait(p).await?;
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
            let mut regrouped = group(
                nonce,
                h.entry.kafka_offset,
                &h.units,
                h.values.clone(),
                &mine,
            );
            attach(&mut regrouped, &h.producers);
            replacement.extend(regrouped);
        }
        let entries: Vec<LedgerEntry> = replacement.iter().map(|h| h.entry).collect();
        let persist: Vec<EntryToPersist<'_>> = replacement
            .iter()
            .map(|h| (h.entry, &h.producers[..]))
            .collect();
        let tokens = self.persist_fenced(&persist).await?;
        for (h, t) in replacement.iter_mut().zip(tokens) {
            h.ledger = Some(t);
        }
        {
            let mut ledger = lock_write(&self.ledger);
            for entry in &entries {
                ledger.replay(*entry).map_err(|e| {
                    GatewayError::Internal(format!("ledger rewrite after a broken stream: {e}"))
                })?;
            }
            self.hwm.send_replace(ledger.next_offset());
        }
        held.replace_from(from, replacement, &self.holding.unflushed);
        tracing::warn!(topic = %self.smq_name, partition = self.index, records = republished, from_offset = entries.first().map(|e| e.kafka_offset), "published again the acknowledged records SMQ had not yet written when its stream broke");
        crate::metrics::republished(republished as u64);
        Ok(())
    }

    /// Drops held entries SMQ has written, and publishes again those whose stream broke, so an
    /// idle partition recovers without waiting for the next produce. Called periodically.
    pub async fn keep_durable(&self) {
        if self.holding.refusal().is_some() {
            return;
        }
        if self.holding.is_recovering() {
            if let Ok(mut writer) = self.appending.writer.try_lock()
                && let Err(e) = self.finish_recovery(&mut writer).await
            {
                tracing::warn!(topic = %self.smq_name, partition = self.index, error = %e, "publishing the write-ahead log's records again failed; will retry");
            }
            return;
        }
        self.confirm_written().await;
        let Ok(mut held) = self.holding.held.try_lock() else {
            return;
        };
        self.prune_held(&mut held);
        if let Some(stale) = held.first_stale(self.backend.healthy_epoch())
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
        if !self.backend.reads_log_files() {
            return;
        }
        let Some(epoch) = self.backend.healthy_epoch() else {
            return;
        };
        let Some((lo, hi, longest)) = self
            .holding
            .held
            .try_lock()
            .ok()
            .and_then(|h| h.span(epoch))
        else {
            return;
        };
        // A log record is the value, its 8-byte key and a few varint fields.
        let tail = (longest as u64).saturating_add(256);
        let r = match self.backend.newest_written(tail, lo..hi).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(topic = %self.smq_name, partition = self.index, error = %e, "looking for held records in the log files failed; will retry");
                return;
            }
        };
        // The same offset on the same stream could still be another record if SMQ handed it
        // out again after a crash (then the stream would have broken); the bytes settle it.
        let held = self.holding.held.lock().await;
        let same = held
            .value_at(epoch, r.offset)
            .filter(|v| v.len() == r.data.len())
            .and_then(|v| v.bytes().ok())
            .is_some_and(|v| v == r.data);
        if same {
            self.backend.confirm_written(epoch, r.offset + 1);
        }
    }
}
