//! Retention: a partition's log start moves forward as Kafka's does, by time (`retention.ms`)
//! and size (`retention.bytes`) over closed segments, and by DeleteRecords; SMQ's log files
//! wholly below the new log start are then deleted, so SMQ's storage is reclaimed too.
//!
//! SMQ's log files stand in for Kafka's segment files, with Kafka's roll rule: a file is in a
//! closed segment once `segment.ms` passed since its records were stored, or `segment.bytes`
//! were stored after it; the newest file never is. So records produced with old timestamps are
//! not removed the moment they are written, as in Kafka with its default segments. The new log
//! start is persisted before anything is deleted: a crash in between leaves files that nothing
//! reads, never a ledger pointing at deleted records.

use std::sync::atomic::Ordering;

use super::{PartitionLog, lock_read, lock_write};
use crate::error::{GatewayError, GatewayResult};
use crate::ledger::PartitionLedger;
use crate::storage::backend::{LogFile, PartitionBackend};
use crate::storage::topic_config::RetentionPolicy;

/// What one pass of retention did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    pub log_start: i64,
    pub files_deleted: usize,
    pub bytes_deleted: u64,
}

/// A log file with the SMQ offsets it holds (from its attributes, or below the next file's).
#[derive(Debug, Clone, Copy)]
struct Span {
    start_ns: i64,
    size: u64,
    smq_min: Option<i64>,
    smq_max: Option<i64>,
}

fn spans(files: &[LogFile]) -> Vec<Span> {
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let next_min = files.get(i + 1).and_then(|n| n.smq_min);
            Span {
                start_ns: f.start_ns,
                size: f.size,
                // The broker writes no offsets into a file whose smallest is 0.
                smq_min: f.smq_min.or((i == 0).then_some(0)),
                smq_max: f.smq_max.or(next_min.map(|m| m - 1)),
            }
        })
        .collect()
}

/// How many of the oldest files are in closed segments (see the module's doc).
fn closed_files(spans: &[Span], policy: RetentionPolicy, now_ns: i64) -> usize {
    let Some(newest) = spans.len().checked_sub(1) else {
        return 0;
    };
    let mut closed = 0;
    for i in 0..newest {
        // Every record of file i was stored before the next file's buffer began, at most a
        // second after its name.
        let stored_by = spans[i + 1].start_ns.saturating_add(1_000_000_000);
        let by_time = policy.segment_ms >= 0
            && now_ns.saturating_sub(stored_by) >= policy.segment_ms.saturating_mul(1_000_000);
        let after: u64 = spans[i + 1..].iter().map(|s| s.size).sum();
        let by_size = policy.segment_bytes >= 0 && after >= policy.segment_bytes as u64;
        if !(by_time || by_size) {
            break;
        }
        closed = i + 1;
    }
    closed
}

/// The Kafka offset the first record of SMQ offset `smq` holds, or where the ledger stops.
fn kafka_at(ledger: &PartitionLedger, smq: i64) -> i64 {
    ledger
        .kafka_offset_of(smq)
        .unwrap_or_else(|| ledger.next_offset())
}

/// The new log start retention allows (not below the current one): the first record of the
/// first file that is kept, bounded by the closed segments, by time and by size.
fn retention_start(
    spans: &[Span],
    ledger: &PartitionLedger,
    current: i64,
    policy: RetentionPolicy,
    now_ns: i64,
) -> i64 {
    let closed = closed_files(spans, policy, now_ns);
    if closed == 0 {
        return current;
    }
    // Everything below the first record of the first open file may go.
    let Some(open_min) = spans[closed].smq_min else {
        return current;
    };
    let closed_end = kafka_at(ledger, open_min);
    // By time: the ledger's blocks know the first offset whose records may be recent enough.
    let by_time = if policy.retention_ms >= 0 {
        let cutoff_ms = now_ns / 1_000_000 - policy.retention_ms;
        ledger
            .read_start_for_timestamp(cutoff_ms)
            .map_or(ledger.next_offset(), |t| t.start)
    } else {
        current
    };
    // By size: the oldest files go while the rest is still above the limit.
    let by_size = if policy.retention_bytes >= 0 {
        let total: u64 = spans.iter().map(|s| s.size).sum();
        let mut left = total;
        let mut first_kept = 0;
        while first_kept < closed
            && left.saturating_sub(spans[first_kept].size) >= policy.retention_bytes as u64
        {
            left -= spans[first_kept].size;
            first_kept += 1;
        }
        spans[first_kept]
            .smq_min
            .map_or(current, |m| kafka_at(ledger, m))
    } else {
        current
    };
    by_time.max(by_size).min(closed_end).max(current)
}

impl<B: PartitionBackend> PartitionLog<B> {
    /// One pass of retention under `policy` at `now_ms`: moves the log start and deletes the
    /// log files wholly below it. Takes the partition (as a produce would), so it runs only
    /// where this gateway may write; `NotLeader` when another gateway holds it.
    pub async fn enforce_retention(
        &self,
        policy: RetentionPolicy,
        now_ms: i64,
    ) -> GatewayResult<Retained> {
        if !policy.applies() {
            return Ok(Retained {
                log_start: self.log_start(),
                ..Retained::default()
            });
        }
        let files = self.backend.log_files().await?;
        let spans = spans(&files);
        let now_ns = now_ms.saturating_mul(1_000_000);
        let due = || {
            let l = lock_read(&self.ledger);
            let current = self.start_of(&l);
            let start = retention_start(&spans, &l, current, policy, now_ns);
            (start > current).then_some(start)
        };
        // Most passes find nothing to do: only then is the partition taken (and its ledger
        // reloaded if another gateway wrote it).
        if due().is_none() {
            return Ok(Retained {
                log_start: self.log_start(),
                ..Retained::default()
            });
        }
        let start = {
            let mut writer = self.appending.writer.lock().await;
            self.ensure_owner(&mut writer).await?;
            due()
        };
        match start {
            Some(start) => self.move_log_start(start, &files, &spans).await,
            None => Ok(Retained {
                log_start: self.log_start(),
                ..Retained::default()
            }),
        }
    }

    /// DeleteRecords: the log start becomes `offset` (the high water mark when -1), and the
    /// log files wholly below it are deleted. Returns the new log start (Kafka's low
    /// watermark).
    pub async fn delete_records(&self, offset: i64) -> GatewayResult<i64> {
        {
            let mut writer = self.appending.writer.lock().await;
            self.ensure_owner(&mut writer).await?;
        }
        let hwm = self.high_water_mark();
        let target = if offset == -1 { hwm } else { offset };
        if target < 0 || target > hwm {
            return Err(GatewayError::OffsetOutOfRange {
                offset,
                start: self.log_start(),
                end: hwm,
            });
        }
        let files = self.backend.log_files().await?;
        let spans = spans(&files);
        Ok(self.move_log_start(target, &files, &spans).await?.log_start)
    }

    async fn move_log_start(
        &self,
        start: i64,
        files: &[LogFile],
        spans: &[Span],
    ) -> GatewayResult<Retained> {
        let current = self.log_start();
        if start <= current {
            return Ok(Retained {
                log_start: current,
                ..Retained::default()
            });
        }
        self.backend.persist_log_start(start).await?;
        self.log_start_floor.fetch_max(start, Ordering::AcqRel);
        let (keep_from, regressions) = {
            let mut l = lock_write(&self.ledger);
            l.truncate_before(start);
            // Where reading the new log start begins in SMQ: files wholly before it can go.
            let keep_from = l.locate(start).map(|loc| loc.smq_offset);
            (
                keep_from,
                !l.validate()
                    .iter()
                    .all(|p| p.kind != "smq_offset_regression"),
            )
        };
        self.reading.clear_all();
        let mut retained = Retained {
            log_start: self.log_start(),
            ..Retained::default()
        };
        // After SMQ handed offsets out again, SMQ offsets do not order the files' records.
        if regressions {
            return Ok(retained);
        }
        for (f, s) in files.iter().zip(spans).take(files.len().saturating_sub(1)) {
            let Some(max) = s.smq_max else { break };
            if keep_from.is_some_and(|k| max >= k) {
                break;
            }
            self.backend.delete_log_file(&f.name).await?;
            retained.files_deleted += 1;
            retained.bytes_deleted += f.size;
        }
        if retained.files_deleted > 0 {
            tracing::info!(topic = %self.smq_name, partition = self.index, log_start = retained.log_start, files = retained.files_deleted, bytes = retained.bytes_deleted, "retention deleted log files");
        }
        Ok(retained)
    }
}
