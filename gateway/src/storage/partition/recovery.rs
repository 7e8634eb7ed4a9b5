//! Recovery: a restarted gateway publishes again what its write-ahead log held (acknowledged
//! records SMQ may not have written), before the partition takes new records.

use super::append::Writer;
use super::{PartitionLog, lock_read};
use crate::error::GatewayResult;
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
            if next < first || next > end {
                tracing::error!(topic = %self.smq_name, partition = self.index, first, end, ledger_end = next, "the write-ahead log's records do not continue the ledger in SMQ (another gateway wrote this partition, or ledger entries were lost); they are not published again");
                held.clear(&self.holding.unflushed);
            } else {
                self.republish(&mut held, 0).await?;
            }
        }
        self.holding.recovered();
        writer.next = None;
        self.prune_held(&mut held);
        Ok(())
    }
}
