//! Reading: a fetch is served from the tail cache or the read-ahead when they hold its offset;
//! otherwise the ledger splits the range into runs of consecutive SMQ records, read from SMQ's
//! log files in the filer, else through the broker (FetchMessage, then an exact subscription
//! where FetchMessage disagrees). Every record read is checked against the Kafka offset the
//! ledger expects there.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;

use super::runs::{Run, contiguous_runs, smq_key};
use super::tail_cache::TailCache;
use super::{PartitionLog, lock_read};
use crate::error::{GatewayError, GatewayResult};
use crate::records::{StoredRecord, StoredUnit, TimestampType, decode_stored_unit, parse_batch};
use crate::storage::backend::PartitionBackend;

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
/// How long an exact read waits for SMQ's next record.
const EXACT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What reads keep between fetches.
pub(super) struct Reading<S> {
    /// The newest stored units, so consumers at the tail do not go to SMQ.
    tail: std::sync::Mutex<TailCache>,
    /// Units read from SMQ beyond what the last fetch behind the tail took.
    ahead: std::sync::Mutex<TailCache>,
    /// The last subscription used to read, with the SMQ offset it will deliver next, so a
    /// consumer reading sequentially through the slow path keeps one stream.
    reader: Mutex<Option<(i64, S)>>,
}

impl<S> Reading<S> {
    pub(super) fn new(tail_cache_bytes: usize) -> Self {
        Self {
            tail: std::sync::Mutex::new(TailCache::new(tail_cache_bytes)),
            ahead: std::sync::Mutex::new(TailCache::new(2 * READ_AHEAD_BYTES)),
            reader: Mutex::new(None),
        }
    }

    /// An append's records, before its ledger entry moves the high water mark.
    pub(super) fn cache_appended(&self, units: Vec<StoredUnit>) {
        self.tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(units);
    }

    /// After a roll-back: the tail cache may hold offsets handed to appends that failed.
    pub(super) fn clear_tail(&self) {
        self.tail.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// After the ledger was replaced: nothing cached may stand.
    pub(super) fn clear_all(&self) {
        self.clear_tail();
        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        READ_AHEAD_HELD.fetch_sub(ahead.bytes(), Ordering::Relaxed);
        ahead.clear();
    }

    /// Units from `offset` on within `max_bytes`, from the tail cache or the read-ahead.
    fn cached(&self, offset: i64, max_bytes: usize) -> Option<Vec<StoredUnit>> {
        self.tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read(offset, max_bytes)
            .or_else(|| {
                self.ahead
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read(offset, max_bytes)
            })
    }

    /// Keeps what a read from SMQ got beyond what the fetch took.
    fn keep_ahead(&self, rest: Vec<StoredUnit>) {
        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        let before = ahead.bytes();
        ahead.clear();
        ahead.push(rest);
        READ_AHEAD_HELD.fetch_add(ahead.bytes(), Ordering::Relaxed);
        READ_AHEAD_HELD.fetch_sub(before, Ordering::Relaxed);
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

impl<B: PartitionBackend> PartitionLog<B> {
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
        let mut units = self.reading.cached(offset, max_bytes).unwrap_or_default();
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
        self.reading.keep_ahead(rest);
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
    /// Kafka offset: from the log files as far as flushed, else through the broker.
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
        if !self.backend.reads_log_files() {
            return None;
        }
        let found = match self
            .backend
            .read_flushed(run.smq_offset, run.smq_count, max_bytes)
            .await
        {
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
            self.backend.want_newer();
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
            .backend
            .fetch(run.smq_offset, max_bytes.clamp(1, 64 << 20) as i32, want)
            .await;
        if let Ok(messages) = fetched {
            let mut out = Vec::with_capacity(messages.len());
            let mut ok = !messages.is_empty();
            let mut expected = run.kafka_offset;
            for m in messages.iter().take(want as usize) {
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
        let mut slot = self.reading.reader.lock().await;
        let mut sub = match slot.take() {
            Some((next, sub)) if next == run.smq_offset => sub,
            _ => self.backend.subscribe(run.smq_offset).await?,
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut next_smq = run.smq_offset;
        let mut expected = run.kafka_offset;
        let mut skipped = 0usize;
        while (out.len() as i64) < run.smq_count && (out.is_empty() || bytes < max_bytes) {
            let msg = tokio::time::timeout(EXACT_READ_TIMEOUT, B::next(&mut sub))
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

    /// The largest record timestamp in the partition (ListOffsets' MAX_TIMESTAMP).
    pub fn max_timestamp(&self) -> Option<i64> {
        lock_read(&self.ledger).max_timestamp()
    }
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
