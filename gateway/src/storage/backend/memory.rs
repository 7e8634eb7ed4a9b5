//! An in-memory SMQ partition for the partition's own tests: one [`Cluster`] is the partition as
//! SMQ keeps it (its log, offset counter, ledger records and lock), shared by any number of
//! gateways, each with its own [`MemoryBackend`] (its publish stream). It reproduces the hazards
//! of `docs/smq-findings.md` on demand: acks that wait, streams that break with acks unknown,
//! records in the broker's memory lost in a crash with their offsets handed out again, ledger
//! writes that fail, and locks that lapse (on tokio's clock, so tests can pause it).

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use smq_client::{DataMessage, FlushedRecord, PublishAck, SmqError, SmqResult};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{EntryToPersist, Lock, LogFile, PartitionBackend};
use crate::error::{GatewayError, GatewayResult};
use crate::ledger::{LedgerRecord, LedgerSlot, LedgerToken, LedgerUpdate, PartitionState};

/// One stored record.
#[derive(Debug, Clone)]
pub struct Stored {
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The stream that published it.
    pub epoch: u64,
    /// Its log file was deleted.
    pub deleted: bool,
}

/// A flushed log file: the records `log[first..end]`, from a buffer begun at `start_ns`.
#[derive(Debug, Clone)]
struct File {
    start_ns: i64,
    first: usize,
    end: usize,
    deleted: bool,
}

/// A lease on the memory lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLease {
    owner: String,
    token: u64,
}

#[derive(Default)]
struct State {
    /// Every stored record, in store order; `log[..flushed]` is written to disk.
    log: Vec<Stored>,
    flushed: usize,
    /// The next SMQ offset, and the one persisted for a restart (SMQ's `checkpoint.offset`).
    next_offset: i64,
    checkpoint: i64,
    epochs: u64,
    /// Streams broken since they opened.
    broken: Vec<u64>,
    /// When set, acks wait here until released (or the stream breaks).
    hold_acks: bool,
    held_acks: Vec<(oneshot::Sender<SmqResult<PublishAck>>, PublishAck)>,
    /// Ledger records in order, with whether each is written.
    ledger: Vec<LedgerUpdate>,
    ledger_written: usize,
    /// The next this many ledger writes fail.
    failing_ledger_writes: usize,
    lock: Option<(MemoryLease, Instant)>,
    lock_tokens: u64,
    files: Vec<File>,
}

impl State {
    /// Writes what is stored as a new log file begun at `start_ns`.
    fn flush_file(&mut self, start_ns: i64) {
        if self.flushed < self.log.len() {
            self.files.push(File {
                start_ns,
                first: self.flushed,
                end: self.log.len(),
                deleted: false,
            });
        }
        self.flushed = self.log.len();
    }
}

impl State {
    fn break_streams(&mut self) {
        for e in 1..=self.epochs {
            if !self.broken.contains(&e) {
                self.broken.push(e);
            }
        }
        for (tx, ack) in self.held_acks.drain(..) {
            let _ = tx.send(Err(broken(ack.epoch)));
        }
    }
}

fn broken(epoch: u64) -> SmqError {
    SmqError::StreamBroken {
        broker: "memory".to_string(),
        reason: format!("stream {epoch} broke"),
    }
}

/// The partition as SMQ keeps it, shared by the gateways of a test.
#[derive(Clone, Default)]
pub struct Cluster {
    state: Arc<Mutex<State>>,
}

impl Cluster {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A gateway's view: its own publish stream. `holds_acks`: acknowledged records are kept
    /// until written (as with `--smq-flush-interval`); `log_files`: reads and write
    /// confirmations may use the written log.
    pub fn gateway(&self, owner: &str, holds_acks: bool, log_files: bool) -> MemoryBackend {
        MemoryBackend {
            cluster: self.clone(),
            owner: owner.to_string(),
            holds_acks,
            log_files,
            stream: Mutex::new(None),
        }
    }

    /// Acks wait until [`Cluster::release_acks`] (or a break fails them).
    pub fn hold_acks(&self, hold: bool) {
        self.state().hold_acks = hold;
    }

    pub fn release_acks(&self) {
        let mut s = self.state();
        for (tx, ack) in s.held_acks.drain(..) {
            let _ = tx.send(Ok(ack));
        }
    }

    /// Acks waiting to be released.
    pub fn waiting_acks(&self) -> usize {
        self.state().held_acks.len()
    }

    /// Every open stream breaks: acks not yet given fail, and their records stay stored.
    pub fn break_streams(&self) {
        self.state().break_streams();
    }

    /// Writes everything stored (records and ledger) and persists the offset counter.
    pub fn flush(&self) {
        let mut s = self.state();
        let t = s.files.last().map_or(0, |f| f.start_ns + 1_000_000_000);
        s.flush_file(t);
        s.checkpoint = s.next_offset;
        s.ledger_written = s.ledger.len();
    }

    /// Like [`Cluster::flush`], the new log file's buffer begun at `start_ns`.
    pub fn flush_at(&self, start_ns: i64) {
        let mut s = self.state();
        s.flush_file(start_ns);
        s.checkpoint = s.next_offset;
        s.ledger_written = s.ledger.len();
    }

    /// Writes the records stored so far without persisting the offset counter.
    pub fn flush_records_only(&self) {
        let mut s = self.state();
        let t = s.files.last().map_or(0, |f| f.start_ns + 1_000_000_000);
        s.flush_file(t);
    }

    /// Log files deleted so far.
    pub fn deleted_files(&self) -> usize {
        self.state().files.iter().filter(|f| f.deleted).count()
    }

    /// The broker crashes and restarts: streams break, what was not written is lost, and the
    /// offset counter restarts from its checkpoint (handing written offsets out again when the
    /// checkpoint lags the data, as SMQ 4.48 does).
    pub fn crash(&self) {
        let mut s = self.state();
        s.break_streams();
        let flushed = s.flushed;
        s.log.truncate(flushed);
        s.next_offset = s.checkpoint;
    }

    /// The next `n` ledger writes fail.
    pub fn fail_ledger_writes(&self, n: usize) {
        self.state().failing_ledger_writes = n;
    }

    /// The partition's state as a gateway recovers it from what was persisted.
    pub fn recovered(&self) -> PartitionState {
        let mut slot = LedgerSlot::default();
        for u in self.state().ledger.iter() {
            slot.apply_update(u.clone());
        }
        slot.take(&("memory".to_string(), 0))
    }

    /// Records stored so far, in store order.
    pub fn log(&self) -> Vec<Stored> {
        self.state().log.clone()
    }
}

/// One gateway's access to a [`Cluster`].
pub struct MemoryBackend {
    cluster: Cluster,
    owner: String,
    holds_acks: bool,
    log_files: bool,
    /// The epoch of this gateway's stream, and the SMQ offset below which its records were
    /// confirmed written (log-file mode).
    stream: Mutex<Option<(u64, i64)>>,
}

impl MemoryBackend {
    fn stream(&self) -> MutexGuard<'_, Option<(u64, i64)>> {
        self.stream.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This gateway's unbroken stream, opened if needed.
    fn open(&self, s: &mut State) -> u64 {
        let mut stream = self.stream();
        match *stream {
            Some((e, _)) if !s.broken.contains(&e) => e,
            _ => {
                s.epochs += 1;
                *stream = Some((s.epochs, 0));
                s.epochs
            }
        }
    }
}

/// An exact read: the records stored from the first whose offset is ≥ where it started.
pub struct MemorySubscription {
    cluster: Cluster,
    from: i64,
    /// The next position in the log, once the first record was found.
    pos: Option<usize>,
}

impl PartitionBackend for MemoryBackend {
    type Pending = oneshot::Receiver<SmqResult<PublishAck>>;
    type Lease = MemoryLease;
    type Subscription = MemorySubscription;

    fn ack_timeout(&self) -> Duration {
        Duration::from_secs(30)
    }

    fn holds_acks(&self) -> bool {
        self.holds_acks
    }

    fn reads_log_files(&self) -> bool {
        self.log_files
    }

    async fn send(&self, key: Vec<u8>, value: Vec<u8>) -> SmqResult<Self::Pending> {
        let mut s = self.cluster.state();
        let epoch = self.open(&mut s);
        let offset = s.next_offset;
        s.next_offset += 1;
        s.log.push(Stored {
            offset,
            key,
            value,
            epoch,
            deleted: false,
        });
        let ack = PublishAck {
            offset,
            ack_ts_ns: 0,
            epoch,
        };
        let (tx, rx) = oneshot::channel();
        if s.hold_acks {
            s.held_acks.push((tx, ack));
        } else {
            let _ = tx.send(Ok(ack));
        }
        Ok(rx)
    }

    async fn wait(pending: Self::Pending) -> SmqResult<PublishAck> {
        pending.await.unwrap_or_else(|_| Err(broken(0)))
    }

    async fn ensure_open(&self) -> SmqResult<u64> {
        let mut s = self.cluster.state();
        Ok(self.open(&mut s))
    }

    fn healthy_epoch(&self) -> Option<u64> {
        let s = self.cluster.state();
        self.stream()
            .map(|(e, _)| e)
            .filter(|e| !s.broken.contains(e))
    }

    fn durable_below(&self, epoch: u64) -> Option<i64> {
        if !self.holds_acks {
            return Some(0);
        }
        let s = self.cluster.state();
        let (current, confirmed) = (*self.stream())?;
        if current != epoch {
            return None;
        }
        if self.log_files {
            return Some(confirmed);
        }
        // Timing rules: what this stream stored before the first unwritten record is written.
        Some(
            s.log[s.flushed..]
                .iter()
                .find(|r| r.epoch == epoch)
                .map_or(s.next_offset, |r| r.offset),
        )
    }

    fn confirm_written(&self, epoch: u64, below: i64) {
        if let Some((e, confirmed)) = self.stream().as_mut()
            && *e == epoch
        {
            *confirmed = (*confirmed).max(below);
        }
    }

    async fn close_stream(&self) {
        *self.stream() = None;
    }

    async fn persist(
        &self,
        leader_epoch: i64,
        entries: &[EntryToPersist<'_>],
    ) -> GatewayResult<Vec<LedgerToken>> {
        let mut s = self.cluster.state();
        if s.failing_ledger_writes > 0 {
            s.failing_ledger_writes -= 1;
            return Err(GatewayError::Smq(broken(0)));
        }
        let mut tokens = Vec::with_capacity(entries.len());
        for (entry, producers) in entries {
            tokens.push(LedgerToken::new(0, Some(s.ledger.len() as u64)));
            s.ledger.push(LedgerUpdate::Entry(LedgerRecord {
                topic: "memory".to_string(),
                partition: 0,
                generation: 1,
                entry: *entry,
                producers: producers.to_vec(),
                leader_epoch,
            }));
        }
        Ok(tokens)
    }

    fn ledger_durable(&self, token: LedgerToken) -> bool {
        let written = self.cluster.state().ledger_written as u64;
        token.seq().is_none_or(|seq| seq < written)
    }

    async fn load_ledger(&self) -> GatewayResult<PartitionState> {
        Ok(self.cluster.recovered())
    }

    async fn persist_log_start(&self, offset: i64) -> GatewayResult<()> {
        let mut s = self.cluster.state();
        if s.failing_ledger_writes > 0 {
            s.failing_ledger_writes -= 1;
            return Err(GatewayError::Smq(broken(0)));
        }
        s.ledger.push(LedgerUpdate::LogStart {
            topic: "memory".to_string(),
            partition: 0,
            offset,
        });
        Ok(())
    }

    async fn lock(
        &self,
        ttl: Duration,
        held: Option<&MemoryLease>,
    ) -> SmqResult<Lock<MemoryLease>> {
        let mut s = self.cluster.state();
        let now = Instant::now();
        if let Some((lease, until)) = &s.lock
            && *until > now
            && held != Some(lease)
        {
            return Ok(Lock::HeldBy(lease.owner.clone()));
        }
        let lease = match held {
            Some(l) if s.lock.as_ref().is_some_and(|(c, _)| c == l) => l.clone(),
            _ => {
                s.lock_tokens += 1;
                MemoryLease {
                    owner: self.owner.clone(),
                    token: s.lock_tokens,
                }
            }
        };
        s.lock = Some((lease.clone(), now + ttl));
        Ok(Lock::Acquired(lease))
    }

    async fn unlock(&self, lease: &MemoryLease) -> SmqResult<()> {
        let mut s = self.cluster.state();
        if s.lock.as_ref().is_some_and(|(l, _)| l == lease) {
            s.lock = None;
        }
        Ok(())
    }

    async fn read_flushed(
        &self,
        from: i64,
        count: i64,
        max_bytes: usize,
    ) -> SmqResult<Vec<FlushedRecord>> {
        let s = self.cluster.state();
        let mut out = Vec::new();
        let mut bytes = 0;
        for r in s.log[..s.flushed]
            .iter()
            .filter(|r| !r.deleted && (from..from + count.max(1)).contains(&r.offset))
        {
            if !out.is_empty() && bytes >= max_bytes {
                break;
            }
            bytes += r.value.len();
            out.push(flushed(r));
        }
        Ok(out)
    }

    fn want_newer(&self) {}

    async fn newest_written(
        &self,
        _tail_bytes: u64,
        offsets: Range<i64>,
    ) -> SmqResult<Option<FlushedRecord>> {
        let s = self.cluster.state();
        Ok(s.log[..s.flushed]
            .iter()
            .rev()
            .find(|r| !r.deleted && offsets.contains(&r.offset))
            .map(flushed))
    }

    async fn fetch(
        &self,
        from: i64,
        _max_bytes: i32,
        max_records: i32,
    ) -> SmqResult<Vec<DataMessage>> {
        // The broker's in-memory path: stored records from the offset on, in store order.
        let s = self.cluster.state();
        Ok(s.log
            .iter()
            .filter(|r| !r.deleted && r.offset >= from)
            .take(max_records.max(0) as usize)
            .map(message)
            .collect())
    }

    async fn subscribe(&self, from: i64) -> SmqResult<MemorySubscription> {
        Ok(MemorySubscription {
            cluster: self.cluster.clone(),
            from,
            pos: None,
        })
    }

    async fn next(sub: &mut MemorySubscription) -> SmqResult<Option<DataMessage>> {
        loop {
            {
                let s = sub.cluster.state();
                let pos = match sub.pos {
                    Some(p) => Some(p),
                    None => s
                        .log
                        .iter()
                        .position(|r| !r.deleted && r.offset >= sub.from),
                };
                if let Some(mut p) = pos {
                    while s.log.get(p).is_some_and(|r| r.deleted) {
                        p += 1;
                    }
                    if let Some(r) = s.log.get(p) {
                        sub.pos = Some(p + 1);
                        return Ok(Some(message(r)));
                    }
                    sub.pos = Some(p);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn log_files(&self) -> SmqResult<Vec<LogFile>> {
        let s = self.cluster.state();
        Ok(s.files
            .iter()
            .filter(|f| !f.deleted)
            .map(|f| {
                let offsets = s.log[f.first..f.end].iter().map(|r| r.offset);
                let (min, max) = (offsets.clone().min(), offsets.max());
                // As SMQ 4.48: no offset attributes on a file whose smallest offset is 0.
                let known = min.is_some_and(|m| m > 0);
                LogFile {
                    name: f.start_ns.to_string(),
                    start_ns: f.start_ns,
                    size: s.log[f.first..f.end]
                        .iter()
                        .map(|r| r.value.len() as u64)
                        .sum(),
                    smq_min: min.filter(|_| known),
                    smq_max: max.filter(|_| known),
                }
            })
            .collect())
    }

    async fn delete_log_file(&self, name: &str) -> SmqResult<()> {
        let mut s = self.cluster.state();
        let Some(i) = s
            .files
            .iter()
            .position(|f| !f.deleted && f.start_ns.to_string() == name)
        else {
            return Ok(());
        };
        s.files[i].deleted = true;
        let (first, end) = (s.files[i].first, s.files[i].end);
        for r in &mut s.log[first..end] {
            r.deleted = true;
        }
        Ok(())
    }
}

fn flushed(r: &Stored) -> FlushedRecord {
    FlushedRecord {
        offset: r.offset,
        ts_ns: 0,
        key: r.key.clone(),
        data: r.value.clone(),
    }
}

fn message(r: &Stored) -> DataMessage {
    DataMessage {
        key: r.key.clone(),
        value: r.value.clone(),
        ts_ns: 0,
        ctrl: None,
    }
}
