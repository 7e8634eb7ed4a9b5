//! Ownership: one gateway writes a partition at a time, holding its lock in the filer. Taking
//! the lock (first write, or after it lapsed) reloads the ledger, since another gateway may have
//! written in between.
//!
//! Fencing: a holder writes ledger entries only while its lease, counted from when it *asked*
//! for it, is younger than [`LOCK_TTL`] less [`CLOCK_MARGIN`], and answers an append only if
//! that still holds once the entry is persisted. A stalled holder (SIGSTOP, a long pause) can
//! still have an entry on its way when its successor begins; the leader epoch settles that:
//! each holder writes its epoch into its entries, every new holder's epoch is higher, and replay
//! ignores an entry of an older epoch after a newer one's first. A new holder's epoch is one
//! above the highest it knows (in the ledger it loaded, held itself, or another gateway
//! published in its member file), and at least the wall clock's seconds since 2025: a holder
//! whose epoch reached neither the ledger nor its member file (it stalled within a heartbeat of
//! taking the partition) took it at least a lease (10 s, less the clock margin) earlier, so the
//! clock puts its successor above it. `docs/cluster.md` has the assumptions.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::append::Writer;
use super::{PartitionLog, lock_write};
use crate::error::{GatewayError, GatewayResult};
use crate::storage::backend::{Lock, PartitionBackend};

/// How long a partition's write lock lasts without renewal. It is also how long a gateway killed
/// with SIGKILL keeps its partitions from a successor (a clean stop releases them). Renewed on
/// writes after a third of it; after two thirds the ledger is reloaded before writing, as if
/// taking the partition over.
pub(super) const LOCK_TTL: Duration = Duration::from_secs(10);
/// How much sooner than the filer this gateway counts its lease as over: the filer's clock may
/// run faster than ours by this much over one TTL, plus the time a lock request takes to reach it.
pub(super) const CLOCK_MARGIN: Duration = Duration::from_secs(2);

/// The partition's write lock, when held, and when it was last renewed. Apart from the writer
/// lock so that renewals go on while appends wait for SMQ.
pub(super) struct Ownership<L> {
    lease: Mutex<Option<(L, Instant)>>,
    /// When the held lease was asked for, in ms since [`BASE`] (`NONE`: no lease); readable
    /// while a renewal holds `lease`.
    asked_ms: AtomicI64,
}

const NONE: i64 = i64::MIN;
static BASE: LazyLock<Instant> = LazyLock::new(Instant::now);

impl<L> Default for Ownership<L> {
    fn default() -> Self {
        Self {
            lease: Mutex::new(None),
            asked_ms: AtomicI64::new(NONE),
        }
    }
}

impl<L> Ownership<L> {
    fn note(&self, asked: Option<Instant>) {
        let ms = asked.map_or(NONE, |a| {
            a.saturating_duration_since(*BASE).as_millis() as i64
        });
        self.asked_ms.store(ms, Ordering::Release);
    }

    /// How long ago the held lease was asked for; None without one.
    fn lease_age(&self) -> Option<Duration> {
        let ms = self.asked_ms.load(Ordering::Acquire);
        (ms != NONE).then(|| {
            let now = Instant::now().saturating_duration_since(*BASE).as_millis() as i64;
            Duration::from_millis(now.saturating_sub(ms).max(0) as u64)
        })
    }
}

impl<B: PartitionBackend> PartitionLog<B> {
    /// Whether this gateway writes the partition: it holds the write lock (or is appending right
    /// now). Only then is its high water mark the partition's own rather than what it read when
    /// it opened the partition.
    pub fn is_writer(&self) -> bool {
        match self.ownership.lease.try_lock() {
            Ok(l) => l.as_ref().is_some_and(|(_, at)| at.elapsed() < LOCK_TTL),
            Err(_) => true,
        }
    }

    /// Makes sure this gateway holds the partition's write lock, so two gateways never write one
    /// ledger. Taking the lock (first write, or after it lapsed) reloads the ledger from SMQ.
    pub(super) async fn ensure_owner(&self, writer: &mut Writer) -> GatewayResult<()> {
        let mut slot = self.ownership.lease.lock().await;
        if let Some((lease, at)) = slot.as_ref() {
            let age = at.elapsed();
            if age < LOCK_TTL / 3 {
                return Ok(());
            }
            if age < LOCK_TTL * 2 / 3 {
                let asked = Instant::now();
                match self.backend.lock(LOCK_TTL, Some(lease)).await? {
                    Lock::Acquired(l) => {
                        *slot = Some((l, asked));
                        self.ownership.note(Some(asked));
                        return Ok(());
                    }
                    Lock::HeldBy(other) => {
                        *slot = None;
                        self.ownership.note(None);
                        tracing::warn!(topic = %self.smq_name, partition = self.index, %other, "lost the partition lock");
                        return Err(GatewayError::NotLeader);
                    }
                }
            }
            *slot = None;
            self.ownership.note(None);
        }
        let asked = Instant::now();
        match self.backend.lock(LOCK_TTL, None).await? {
            Lock::Acquired(lease) => {
                if let Err(e) = self.take_over(writer).await {
                    // Not kept without its lease: SMQ would answer "already owned" to this very
                    // gateway until the lock expired.
                    if let Err(u) = self.backend.unlock(&lease).await {
                        tracing::debug!(topic = %self.smq_name, partition = self.index, error = %u, "releasing the partition lock after a failed takeover failed; it expires");
                    }
                    return Err(e);
                }
                *slot = Some((lease, asked));
                self.ownership.note(Some(asked));
                Ok(())
            }
            Lock::HeldBy(other) => {
                tracing::debug!(topic = %self.smq_name, partition = self.index, %other, "partition owned by another gateway");
                Err(GatewayError::NotLeader)
            }
        }
    }

    /// Reloads the ledger on taking the lock. When what SMQ holds is a prefix of what this
    /// gateway wrote, nobody wrote in between (another writer would have added entries of its
    /// own) and the rest of ours is still held for publishing again: ours is kept. Otherwise the
    /// persisted ledger replaces ours, and every append begun under the lapsed lock fails.
    async fn take_over(&self, writer: &mut Writer) -> GatewayResult<()> {
        let crate::ledger::PartitionState {
            ledger: fresh,
            producers,
            log_start,
            home: _,
            leader_epoch,
        } = self.backend.load_ledger().await?;
        // Above every epoch an earlier holder wrote (the ledger), this gateway held, or another
        // gateway published (a holder that wrote nothing leaves its epoch only there).
        let before = self.leader_epoch.load(Ordering::Acquire);
        let floor = self.epoch_floor.load(Ordering::Acquire);
        let after = leader_epoch.max(before).max(floor);
        // At least the wall clock's seconds: a holding that left no trace (see the module
        // comment) began a lease earlier, and Metadata may have listed its epoch to clients,
        // which must not stay above the leader's.
        let epoch = (after + 1).max(crate::clock::epoch_seconds());
        self.epoch_began_after.store(after, Ordering::Release);
        self.leader_epoch.store(epoch, Ordering::Release);
        tracing::debug!(topic = %self.smq_name, partition = self.index, epoch, "leader epoch");
        let kept = {
            let mut ledger = lock_write(&self.ledger);
            let prefix = !ledger.is_empty() && fresh.is_prefix_of(&ledger);
            if !prefix {
                if fresh.next_offset() != ledger.next_offset() {
                    tracing::info!(topic = %self.smq_name, partition = self.index, before = ledger.next_offset(), after = fresh.next_offset(), "ledger reloaded on taking the partition");
                }
                *ledger = fresh;
                self.hwm.send_replace(ledger.next_offset());
            }
            prefix
        };
        self.log_start_floor.fetch_max(log_start, Ordering::AcqRel);
        if !kept {
            writer.committed_producers = producers.clone();
            writer.producers = producers;
            writer.restart(&self.appending);
            self.reading.clear_all();
            // What this gateway held belongs to the ledger it just replaced (what a restart
            // recovered is checked against it in `finish_recovery`).
            if !self.holding.is_recovering() {
                self.holding
                    .held
                    .lock()
                    .await
                    .clear(&self.holding.unflushed);
            }
        }
        Ok(())
    }

    /// Persists ledger entries with this holder's leader epoch, only while its lease is certainly
    /// valid, and fails (NOT_LEADER_OR_FOLLOWER, the append is not answered as written) when
    /// the lease may have run out meanwhile: a successor may then have begun, and replay
    /// ignores this entry if it did.
    pub(super) async fn persist_fenced(
        &self,
        entries: &[crate::storage::backend::EntryToPersist<'_>],
    ) -> GatewayResult<Vec<crate::ledger::LedgerToken>> {
        self.check_lease("before writing its ledger entry")?;
        let epoch = self.leader_epoch.load(Ordering::Acquire);
        let tokens = self.backend.persist(epoch, entries).await?;
        self.check_lease("while its ledger entry was written")?;
        Ok(tokens)
    }

    /// NOT_LEADER_OR_FOLLOWER unless the lease is younger than the TTL less the margin.
    fn check_lease(&self, when: &str) -> GatewayResult<()> {
        match self.ownership.lease_age() {
            Some(age) if age < LOCK_TTL - CLOCK_MARGIN => Ok(()),
            Some(age) => {
                tracing::warn!(topic = %self.smq_name, partition = self.index, ?age, "the partition's lease may have run out {when}; not answering the append as written");
                Err(GatewayError::NotLeader)
            }
            None => Err(GatewayError::NotLeader),
        }
    }

    /// Makes sure this gateway holds the partition before it answers a read from its ledger:
    /// in a cluster another gateway may have written it since this one last did.
    pub async fn claim(&self) -> GatewayResult<()> {
        // Not `is_writer`, which says yes while a takeover holds the lease: the ledger is
        // being replaced then, and a read must wait for the new one.
        {
            let slot = self.ownership.lease.lock().await;
            if slot
                .as_ref()
                .is_some_and(|(_, asked)| asked.elapsed() < LOCK_TTL / 3)
            {
                return Ok(());
            }
        }
        let mut writer = self.appending.writer.lock().await;
        self.ensure_owner(&mut writer).await
    }

    /// Gives the partition up because its leadership moved to another gateway: releases the lock
    /// once no append is in flight and every acknowledged record is written (so the next leader's
    /// takeover finds all of them), and answers whether it did. Called again until it does.
    pub async fn hand_over(&self) -> bool {
        let Ok(writer) = self.appending.writer.try_lock() else {
            return false;
        };
        let in_flight = writer
            .next
            .is_some_and(|next| next != super::lock_read(&self.ledger).next_offset());
        if in_flight || self.holding.is_recovering() {
            return false;
        }
        if !self.holding.held.try_lock().is_ok_and(|h| h.is_empty()) {
            return false;
        }
        let mut slot = self.ownership.lease.lock().await;
        self.ownership.note(None);
        if let Some((lease, _)) = slot.take() {
            match self.backend.unlock(&lease).await {
                Ok(()) => {
                    tracing::info!(topic = %self.smq_name, partition = self.index, "handed the partition over")
                }
                Err(e) => {
                    tracing::debug!(topic = %self.smq_name, partition = self.index, error = %e, "releasing a handed-over partition's lock failed; it expires")
                }
            }
        }
        drop(writer);
        true
    }

    /// Renews this partition's lock when due, so a live gateway keeps its partitions even while
    /// they are idle or their appends wait for SMQ.
    pub async fn renew_lock_if_due(&self) {
        let Ok(mut slot) = self.ownership.lease.try_lock() else {
            return;
        };
        let Some((lease, at)) = slot.clone() else {
            return;
        };
        if at.elapsed() < LOCK_TTL / 3 || at.elapsed() >= LOCK_TTL * 2 / 3 {
            return;
        }
        let asked = Instant::now();
        match self.backend.lock(LOCK_TTL, Some(&lease)).await {
            Ok(Lock::Acquired(l)) => {
                *slot = Some((l, asked));
                self.ownership.note(Some(asked));
            }
            Ok(Lock::HeldBy(other)) => {
                tracing::warn!(topic = %self.smq_name, partition = self.index, %other, "lost the partition lock");
                *slot = None;
                self.ownership.note(None);
            }
            Err(e) => {
                tracing::debug!(topic = %self.smq_name, partition = self.index, error = %e, "renewing the partition lock failed")
            }
        }
    }

    /// Releases the lock (a clean stop), unless an append stuck on a dead SMQ holds it: then it
    /// expires.
    pub(super) async fn release_lock(&self) {
        let slot = tokio::time::timeout(Duration::from_secs(5), self.ownership.lease.lock()).await;
        if let Ok(mut slot) = slot
            && let Some((lease, _)) = {
                self.ownership.note(None);
                slot.take()
            }
            && let Err(e) = self.backend.unlock(&lease).await
        {
            tracing::debug!(error = %e, "releasing a partition lock failed; it will expire");
        }
    }
}
