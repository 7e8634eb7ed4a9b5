//! The seam under a partition: everything a [`PartitionLog`](super::PartitionLog) asks of the
//! world outside the gateway's memory. [`SmqBackend`] is SMQ itself (the broker's publish stream,
//! the ledger topic, the filer lock, the log files, FetchMessage and SubscribeMessage); tests run
//! the partition's decisions against an in-memory implementation instead (`memory.rs`).
//!
//! The trait speaks in SMQ's terms on purpose (streams with epochs, SMQ offsets, acks that are not
//! yet durable), so that the in-memory implementation has to reproduce the same hazards the
//! partition guards against: a broken stream leaves acks unknown, offsets can be handed out again
//! after a crash, and a lock can lapse.

#[cfg(test)]
pub mod memory;
mod smq;

pub use smq::SmqBackend;

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use smq_client::{DataMessage, FlushedRecord, PublishAck, SmqResult};

use crate::error::GatewayResult;
use crate::ledger::{LedgerEntry, LedgerToken, PartitionState, ProducerBatch};

/// A ledger entry to persist, with the idempotent batches stored in its offsets.
pub type EntryToPersist<'a> = (LedgerEntry, &'a [ProducerBatch]);

/// One of the partition's flushed log files in SMQ, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub name: String,
    /// When the broker buffer it holds began (its name), Unix ns.
    pub start_ns: i64,
    pub size: u64,
    /// The SMQ offsets it holds, where known (the broker records them only above 0).
    pub smq_min: Option<i64>,
    pub smq_max: Option<i64>,
}

/// The outcome of asking for a partition's write lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lock<L> {
    Acquired(L),
    /// Another gateway holds it.
    HeldBy(String),
}

/// One partition's storage, as the partition uses it.
pub trait PartitionBackend: Send + Sync + 'static {
    /// A record handed to the publish stream whose ack has not been awaited yet.
    type Pending: Send + 'static;
    /// Proof of holding the write lock, to renew or release it.
    type Lease: Clone + Send + Sync + std::fmt::Debug + 'static;
    /// An exact read from one SMQ offset on.
    type Subscription: Send + 'static;

    /// How long an append may wait for SMQ (and for room in the unflushed budget).
    fn ack_timeout(&self) -> Duration;
    /// Whether acknowledged records are held until SMQ has written them (else nothing is held
    /// and nothing published again).
    fn holds_acks(&self) -> bool;
    /// Whether flushed records can be read from the log files (and held ones confirmed there).
    fn reads_log_files(&self) -> bool;

    // The publish stream: records are stored in send order; each ack names the stream (epoch)
    // and the SMQ offset. When the stream breaks, every unacked record fails.

    fn send(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> impl Future<Output = SmqResult<Self::Pending>> + Send;
    fn wait(pending: Self::Pending) -> impl Future<Output = SmqResult<PublishAck>> + Send;
    /// Opens a stream unless an unbroken one exists; its epoch.
    fn ensure_open(&self) -> impl Future<Output = SmqResult<u64>> + Send;
    /// The current stream's epoch while it is unbroken.
    fn healthy_epoch(&self) -> Option<u64>;
    /// SMQ offsets below the returned one acked on stream `epoch` are written (None: the stream
    /// was replaced, and what it acked may be lost).
    fn durable_below(&self, epoch: u64) -> Option<i64>;
    /// Records of stream `epoch` below `below` were found written.
    fn confirm_written(&self, epoch: u64, below: i64);
    /// Waits for outstanding acks (bounded) and closes the stream.
    fn close_stream(&self) -> impl Future<Output = ()> + Send;

    // The persisted ledger.

    /// Persists entries in order; returns once SMQ acknowledged them, with tokens that tell when
    /// they are also written.
    fn persist(
        &self,
        leader_epoch: i64,
        entries: &[EntryToPersist<'_>],
    ) -> impl Future<Output = GatewayResult<Vec<LedgerToken>>> + Send;
    fn ledger_durable(&self, token: LedgerToken) -> bool;
    /// The partition's ledger and idempotent producers as persisted now (another gateway may
    /// have written since).
    fn load_ledger(&self) -> impl Future<Output = GatewayResult<PartitionState>> + Send;

    /// Persists the partition's new log start (retention, DeleteRecords).
    fn persist_log_start(&self, offset: i64) -> impl Future<Output = GatewayResult<()>> + Send;

    // The write lock: one writer per partition.

    /// Takes the lock for `ttl`, or renews `held`.
    fn lock(
        &self,
        ttl: Duration,
        held: Option<&Self::Lease>,
    ) -> impl Future<Output = SmqResult<Lock<Self::Lease>>> + Send;
    fn unlock(&self, lease: &Self::Lease) -> impl Future<Output = SmqResult<()>> + Send;

    // Reads by SMQ offset.

    /// Records with SMQ offsets in `[from, from + count)` from the flushed log files, in file
    /// order (an offset can occur twice after a crash), about `max_bytes` of them.
    fn read_flushed(
        &self,
        from: i64,
        count: i64,
        max_bytes: usize,
    ) -> impl Future<Output = SmqResult<Vec<FlushedRecord>>> + Send;
    /// The next flushed read lists the files again first.
    fn want_newer(&self);
    /// The newest written record with an SMQ offset in `offsets`, looking at the last
    /// `tail_bytes` of each recent chunk.
    fn newest_written(
        &self,
        tail_bytes: u64,
        offsets: Range<i64>,
    ) -> impl Future<Output = SmqResult<Option<FlushedRecord>>> + Send;
    /// Up to `max_records` records from SMQ offset `from`, numbered by position (the broker's
    /// FetchMessage: fast, but wrong where stored offsets repeat or skip).
    fn fetch(
        &self,
        from: i64,
        max_bytes: i32,
        max_records: i32,
    ) -> impl Future<Output = SmqResult<Vec<DataMessage>>> + Send;
    /// Every record from the first whose stored SMQ offset is ≥ `from`, in order.
    fn subscribe(&self, from: i64) -> impl Future<Output = SmqResult<Self::Subscription>> + Send;
    fn next(
        sub: &mut Self::Subscription,
    ) -> impl Future<Output = SmqResult<Option<DataMessage>>> + Send;

    // Reclaiming what retention removed.

    /// The partition's flushed log files, oldest first.
    fn log_files(&self) -> impl Future<Output = SmqResult<Vec<LogFile>>> + Send;
    fn delete_log_file(&self, name: &str) -> impl Future<Output = SmqResult<()>> + Send;
}
