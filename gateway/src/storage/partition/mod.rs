//! One Kafka partition: its ledger, and the concerns built around it, each in its own module
//! and each owning its own state:
//!
//! | module | what it does | state it owns |
//! |---|---|---|
//! | `append` | assigns offsets, publishes, writes ledger entries, rolls back failures | [`append::Appending`] |
//! | `ownership` | the partition's write lock, and reloading the ledger on taking it | [`ownership::Ownership`] |
//! | `durability` | holds acknowledged records until SMQ wrote them, publishes them again | [`durability::Holding`] |
//! | `recovery` | publishes again what the write-ahead log of an earlier process held | (part of `Holding`) |
//! | `read` | serves fetches: tail cache, read-ahead, SMQ's log files, the broker | [`read::Reading`] |
//!
//! The ledger (`ledger`, with the high water mark `hwm`) is shared: reads take it, and only
//! finishing an append, publishing held records again, and taking the partition over change it.
//! Everything outside the gateway's memory goes through the [`PartitionBackend`] seam, so that
//! the rules above are tested against an in-memory backend (`tests.rs`) as well as real SMQ.
//!
//! Lock order: `appending.writer` before `ownership.lease` before `holding.held`; `ledger`, the
//! caches and `appending`'s atomics are never held across an await.

mod append;
mod durability;
mod held;
mod keys;
mod ownership;
mod read;
mod recovery;
mod retention;
mod tail_cache;
#[cfg(test)]
mod tests;

pub use append::{AppendTicket, Appended};
pub use read::{READ_AHEAD_BYTES, ReadResult, record_size, unit_size};

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use smq_client::Topic;
use tokio::sync::watch;

use super::backend::{PartitionBackend, SmqBackend};
use super::unflushed::UnflushedBudget;
use super::wal::{PartitionWal, RecoveredAppend};
use crate::error::{GatewayError, GatewayResult};
use crate::ledger::{LedgerSummary, PartitionLedger, PartitionState};
use crate::records::StorageFormat;

pub struct PartitionLog<B: PartitionBackend = SmqBackend> {
    backend: B,
    /// `namespace/name` of the SMQ topic, for logs and errors.
    smq_name: String,
    index: i32,
    /// The SMQ generation (`unix_time_ns`) of the partition.
    generation: i64,
    /// Changes only while the partition is empty (AlterConfigs before the first write).
    format: RwLock<StorageFormat>,
    ledger: RwLock<PartitionLedger>,
    /// The log start where DeleteRecords set it inside the ledger's first block (the ledger's
    /// own log start is a block start at or below it).
    log_start_floor: AtomicI64,
    /// The ledger's end, watched by fetches waiting for records.
    hwm: watch::Sender<i64>,
    appending: append::Appending,
    ownership: ownership::Ownership<B::Lease>,
    /// The epoch written into this gateway's ledger entries while it holds the partition: higher
    /// than every earlier holder's (see `ownership.rs`). Also the leader epoch Metadata lists.
    leader_epoch: AtomicI64,
    /// The highest leader epoch other gateways published for this partition (`cluster`): a
    /// takeover's epoch is above it even when the holder it follows wrote no ledger entry.
    epoch_floor: AtomicI64,
    /// The highest epoch clients could have been told before this gateway's current holding
    /// began: a Fetch or ListOffsets with an epoch below it comes from a client whose Metadata
    /// predates this leader (FENCED_LEADER_EPOCH).
    epoch_began_after: AtomicI64,
    holding: durability::Holding,
    reading: read::Reading<B::Subscription>,
}

impl<B: PartitionBackend> std::fmt::Debug for PartitionLog<B> {
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
    /// Shared bound of acknowledged bytes SMQ has not yet written.
    pub unflushed: Arc<UnflushedBudget>,
}

/// Ledger epochs are i64; Kafka's leader epochs are i32 (and grow by about one per takeover).
fn clamp_epoch(epoch: i64) -> i32 {
    epoch.clamp(0, i32::MAX as i64) as i32
}

fn lock_read(l: &RwLock<PartitionLedger>) -> std::sync::RwLockReadGuard<'_, PartitionLedger> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn lock_write(l: &RwLock<PartitionLedger>) -> std::sync::RwLockWriteGuard<'_, PartitionLedger> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl PartitionLog<SmqBackend> {
    /// The `kafka-system/offset-mappings` partition its ledger entries go to.
    pub fn ledger_partition(&self) -> i32 {
        self.backend.ledger_home()
    }
}

impl<B: PartitionBackend> PartitionLog<B> {
    /// A partition starting from its recovered `state`, with the write-ahead log an earlier
    /// process may have left records in (`wal`).
    pub fn new(
        backend: B,
        place: Placement,
        state: PartitionState,
        wal: Option<(PartitionWal, Vec<RecoveredAppend>)>,
    ) -> Self {
        let PartitionState {
            ledger,
            producers,
            log_start,
            home: _,
            leader_epoch,
        } = state;
        let Placement {
            smq_topic,
            index,
            generation,
            format,
            tail_cache_bytes,
            unflushed,
        } = place;
        let smq_name = format!("{}/{}", smq_topic.namespace, smq_topic.name);
        let (hwm, _) = watch::channel(ledger.next_offset());
        let holding = durability::Holding::new(unflushed, wal, &smq_name, index);
        Self {
            backend,
            smq_name,
            index,
            generation,
            format: RwLock::new(format),
            ledger: RwLock::new(ledger),
            log_start_floor: AtomicI64::new(log_start),
            hwm,
            appending: append::Appending::new(producers),
            ownership: ownership::Ownership::default(),
            leader_epoch: AtomicI64::new(leader_epoch),
            epoch_floor: AtomicI64::new(0),
            epoch_began_after: AtomicI64::new(leader_epoch),
            holding,
            reading: read::Reading::new(tail_cache_bytes),
        }
    }

    pub fn index(&self) -> i32 {
        self.index
    }

    /// The partition's leader epoch as this gateway knows it: while it holds the partition, the
    /// epoch of its holding; otherwise the highest it wrote, held or found in the ledger.
    pub fn leader_epoch(&self) -> i32 {
        clamp_epoch(self.leader_epoch.load(Ordering::Acquire))
    }

    /// Another gateway published `epoch` for this partition; the next takeover here goes above it.
    pub fn raise_epoch_floor(&self, epoch: i32) {
        self.epoch_floor.fetch_max(epoch as i64, Ordering::AcqRel);
    }

    /// Checks a Fetch's or ListOffsets' `current_leader_epoch` (-1: not given) against the
    /// leadership this gateway holds: FENCED_LEADER_EPOCH when the client's Metadata predates it,
    /// UNKNOWN_LEADER_EPOCH when the client has seen a newer one than this gateway's.
    pub fn check_leader_epoch(&self, requested: i32) -> GatewayResult<()> {
        if requested < 0 {
            return Ok(());
        }
        let began_after = clamp_epoch(self.epoch_began_after.load(Ordering::Acquire));
        let current = self.leader_epoch();
        if requested < began_after {
            Err(GatewayError::FencedLeaderEpoch { requested, current })
        } else if requested > current {
            Err(GatewayError::UnknownLeaderEpoch { requested, current })
        } else {
            Ok(())
        }
    }

    pub fn format(&self) -> StorageFormat {
        *self.format.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Switches the storage format; refused once the partition holds a record. Taken under the
    /// writer lock so no append runs with the old format after the check.
    pub async fn set_format(&self, format: StorageFormat) -> GatewayResult<()> {
        let _writer = self.appending.writer.lock().await;
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
        self.start_of(&lock_read(&self.ledger))
    }

    /// The first offset a read may ask for: the ledger's log start, or above it where
    /// DeleteRecords put it.
    fn start_of(&self, l: &PartitionLedger) -> i64 {
        l.log_start()
            .max(self.log_start_floor.load(Ordering::Acquire))
            .min(l.next_offset())
    }

    pub fn subscribe_hwm(&self) -> watch::Receiver<i64> {
        self.hwm.subscribe()
    }

    /// A copy of the ledger, for inspection tools.
    pub fn ledger_snapshot(&self) -> PartitionLedger {
        lock_read(&self.ledger).clone()
    }

    /// The ledger's figures for /stats, without copying it.
    pub fn ledger_summary(&self) -> LedgerSummary {
        lock_read(&self.ledger).summary()
    }

    /// Applies entries that continue the ledger and moves the high water mark.
    fn apply_entries(
        &self,
        entries: impl Iterator<Item = crate::ledger::LedgerEntry>,
    ) -> GatewayResult<()> {
        let mut ledger = lock_write(&self.ledger);
        for entry in entries {
            ledger
                .append(entry)
                .map_err(|e| GatewayError::Internal(format!("ledger append: {e}")))?;
        }
        self.hwm.send_replace(ledger.next_offset());
        Ok(())
    }

    /// Takes the partition's lock and opens its SMQ stream before the first produce, so that
    /// the first records of a topic just created are acknowledged as fast as later ones (taking
    /// the lock, reading the partition's tail and opening the stream cost ~170 ms otherwise).
    pub async fn warm_up(&self) -> GatewayResult<()> {
        let mut writer = self.appending.writer.lock().await;
        self.ensure_owner(&mut writer).await?;
        drop(writer);
        self.backend.ensure_open().await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.backend.close_stream().await;
        self.release_lock().await;
    }
}
