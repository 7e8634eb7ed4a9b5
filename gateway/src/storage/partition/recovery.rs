//! Recovery: a restarted gateway publishes again what its write-ahead log held (acknowledged
//! records SMQ may not have written), before the partition takes new records. When the log's
//! records do not continue the ledger SMQ holds, the partition fails closed: it refuses writes
//! rather than hand the log's acknowledged offsets out again, until an operator decides
//! ([`PartitionLog::discard_recovered`]).

use super::append::Writer;
use super::{PartitionLog, lock_read};
use crate::error::{GatewayError, GatewayResult};
use crate::storage::backend::PartitionBackend;

impl<B: PartitionBackend> PartitionLog<B> {
    /// Publishes again what a restart found in the write-ahead log, under the partition's lock,
    /// and writes ledger entries for it (superseding the ledger from the first recovered offset).
    /// The recovered offsets must continue the ledger SMQ holds: when another gateway wrote past
    /// them meanwhile, or the ledger ends before them, they are left alone with an error.
    pub(super) async fn finish_recovery(&self, writer: &mut Writer) -> GatewayResult<()> {
        self.ensure_owner(writer).await?;
        let mut held = self.holding.held.lock().await;
        if !self.holding.is_recovering() {
            return Ok(());
        }
        let range = held
            .entries()
            .front()
            .zip(held.entries().back())
            .map(|(a, b)| (a.entry.kafka_offset, b.entry.end()));
        let next = lock_read(&self.ledger).next_offset();
        if let Some((first, end)) = range {
            if next > end {
                // Every offset the log holds is in the ledger already: acknowledged records
                // have their entries persisted first, so a successor continued after them.
                tracing::warn!(topic = %self.smq_name, partition = self.index, first, end, ledger_end = next, "the ledger in SMQ already continues past the write-ahead log's records; they are not published again");
                held.clear(&self.holding.unflushed);
            } else if next < first {
                let reason = format!(
                    "the write-ahead log holds acknowledged offsets {first}..{end} but the ledger in SMQ ends at {next}: the entries of offsets {next}..{first} are missing, and taking writes would hand those offsets out again; POST /ledger/discard-wal/{}/{} (or run `kafka-gateway ledger discard-wal`) to drop the log's records and accept writes",
                    self.smq_name
                        .split_once('/')
                        .map_or(&self.smq_name[..], |(_, t)| t),
                    self.index
                );
                tracing::error!(topic = %self.smq_name, partition = self.index, first, end, ledger_end = next, "{reason}");
                self.holding.refuse(reason.clone());
                return Err(GatewayError::WritesRefused(reason));
            } else {
                self.republish(&mut held, 0).await?;
            }
        }
        self.holding.recovered();
        writer.next = None;
        self.prune_held(&mut held);
        Ok(())
    }

    /// Why the partition refuses writes, if it does.
    pub fn writes_refused(&self) -> Option<String> {
        self.holding.refusal()
    }

    /// The operator's way out of a refusal: drops the records the write-ahead log held for this
    /// partition (they are lost; the log records that they are not to be published again) and
    /// accepts writes from the ledger's end. Returns how many records were dropped; nothing
    /// happens unless writes are refused.
    pub async fn discard_recovered(&self) -> usize {
        let mut writer = self.appending.writer.lock().await;
        if self.holding.refusal().is_none() {
            return 0;
        }
        let mut held = self.holding.held.lock().await;
        let dropped: usize = held.entries().iter().map(|e| e.values.len()).sum();
        if let Some(first) = held.entries().front().map(|e| e.entry.kafka_offset) {
            self.holding
                .log_abort(self.generation, first, &self.smq_name);
        }
        held.clear(&self.holding.unflushed);
        self.prune_held(&mut held);
        self.holding.recovered();
        writer.next = None;
        self.holding.accept_writes();
        tracing::warn!(topic = %self.smq_name, partition = self.index, dropped, "the write-ahead log's records were discarded by an operator; the partition accepts writes again");
        dropped
    }
}
