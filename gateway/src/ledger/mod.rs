//! The offset ledger: the gateway, not SMQ, assigns Kafka offsets. Each partition's ledger maps
//! dense Kafka offset ranges (one entry per stored produce batch) to the SMQ offsets holding them.
//!
//! SMQ's own offsets can repeat or skip after a broker restart and a failed publish burns one, so
//! they are only positions; the Kafka offset is also stored inside every record, and the ledger
//! is persisted in the SMQ topic `kafka-system/offset-mappings` before a produce is acknowledged.

mod checkpoint;
mod producers;
mod store;
mod writer;

pub use producers::{PRODUCER_EXPIRY_MS, ProducerBatch, ProducerStates, SequenceCheck};
pub use store::{
    LedgerRecord, LedgerSlot, LedgerStore, LedgerToken, RecoveredLedgers, RecoveredProducers,
    decode as decode_record, decode_many as decode_records, encode as encode_record,
    encode_many as encode_records, replay_into,
};

use serde::Serialize;

/// Kafka offsets `[kafka_offset, kafka_offset + count)` are stored in the SMQ records
/// `[smq_offset, smq_offset + smq_count)` of the partition's current generation.
///
/// In the `record` format every Kafka record is one SMQ record (`smq_count == count`), so the
/// position of each offset is known exactly. In the `batch` format each SMQ record holds one
/// batch (`smq_count` batches for `count` records): a read starts at the entry's first SMQ record
/// and goes by the base offsets the batches carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub kafka_offset: i64,
    pub count: u32,
    pub smq_offset: i64,
    pub smq_count: u32,
    /// Largest record timestamp in the entry (ms).
    pub max_timestamp: i64,
    /// The publish nonce in the SMQ keys of the entry's records (0: not checked, entries written
    /// before it existed). After a broker crash SMQ can hand one offset out twice, and a record
    /// published again can then share both its SMQ offset and its Kafka offset with an older,
    /// never acknowledged one; the nonce tells them apart.
    #[serde(default)]
    pub nonce: u64,
}

impl LedgerEntry {
    pub fn end(&self) -> i64 {
        self.kafka_offset + i64::from(self.count)
    }

    /// The SMQ offset after the entry's last SMQ record.
    pub fn smq_end(&self) -> i64 {
        self.smq_offset + i64::from(self.smq_count)
    }

    /// Whether Kafka offset `k + i` is SMQ record `s + i` (one Kafka record per SMQ record).
    pub fn is_exact(&self) -> bool {
        self.smq_count == self.count
    }
}

/// Where one Kafka offset lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Location {
    pub entry_index: usize,
    pub entry: LedgerEntry,
    pub smq_offset: i64,
}

/// A problem found by [`PartitionLedger::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub entry_index: usize,
    pub kind: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct PartitionLedger {
    entries: Vec<LedgerEntry>,
    /// prefix_max_ts[i] = max timestamp of entries[0..=i], for timestamp lookups.
    prefix_max_ts: Vec<i64>,
    /// Whether SMQ offsets increase with Kafka offsets (false after SMQ reused offsets).
    smq_monotonic: bool,
}

impl Default for PartitionLedger {
    fn default() -> Self {
        Self::new()
    }
}

impl PartitionLedger {
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
            prefix_max_ts: Vec::new(),
            smq_monotonic: true,
        }
    }

    /// The next Kafka offset to assign: the high water mark.
    pub fn next_offset(&self) -> i64 {
        self.entries.last().map(|e| e.end()).unwrap_or(0)
    }

    /// The first offset still held.
    pub fn log_start(&self) -> i64 {
        self.entries.first().map(|e| e.kafka_offset).unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[LedgerEntry] {
        &self.entries
    }

    pub fn max_timestamp(&self) -> Option<i64> {
        self.prefix_max_ts.last().copied()
    }

    /// Appends an entry that continues the ledger exactly (dense offsets, never reused).
    pub fn append(&mut self, entry: LedgerEntry) -> Result<(), String> {
        check_counts(&entry)?;
        let next = self.next_offset();
        if entry.kafka_offset != next {
            return Err(format!(
                "entry starts at {} but the ledger continues at {next}",
                entry.kafka_offset
            ));
        }
        self.push(entry);
        Ok(())
    }

    fn push(&mut self, entry: LedgerEntry) {
        if let Some(last) = self.entries.last()
            && entry.smq_offset < last.smq_end()
        {
            self.smq_monotonic = false;
        }
        let max = self
            .prefix_max_ts
            .last()
            .map_or(entry.max_timestamp, |m| (*m).max(entry.max_timestamp));
        self.entries.push(entry);
        self.prefix_max_ts.push(max);
    }

    /// Replays a persisted entry during recovery: an entry that starts inside the ledger replaces
    /// everything from its start (a retried write whose first attempt also landed; the later one
    /// is what the gateway continued from). An entry beyond the end is a gap and is refused.
    pub fn replay(&mut self, entry: LedgerEntry) -> Result<(), String> {
        check_counts(&entry)?;
        let next = self.next_offset();
        if entry.kafka_offset > next {
            return Err(format!(
                "entry starts at {} past the ledger end {next}",
                entry.kafka_offset
            ));
        }
        if entry.kafka_offset < next {
            let keep = self
                .entries
                .partition_point(|e| e.kafka_offset < entry.kafka_offset);
            if self
                .entries
                .get(keep)
                .is_some_and(|e| e.kafka_offset != entry.kafka_offset)
                || keep == self.entries.len()
            {
                return Err(format!(
                    "entry at {} does not start on an entry boundary",
                    entry.kafka_offset
                ));
            }
            self.entries.truncate(keep);
            self.prefix_max_ts.truncate(keep);
            self.smq_monotonic = self
                .entries
                .windows(2)
                .all(|w| w[1].smq_offset >= w[0].smq_end());
        }
        self.push(entry);
        Ok(())
    }

    /// Where Kafka offset `offset` is stored, if the ledger holds it.
    pub fn locate(&self, offset: i64) -> Option<Location> {
        if offset < self.log_start() || offset >= self.next_offset() {
            return None;
        }
        let i = self.entries.partition_point(|e| e.end() <= offset);
        let entry = *self.entries.get(i)?;
        let smq_offset = if entry.is_exact() {
            entry.smq_offset + (offset - entry.kafka_offset)
        } else {
            entry.smq_offset
        };
        Some(Location {
            entry_index: i,
            entry,
            smq_offset,
        })
    }

    /// The Kafka offset stored at SMQ offset `smq`, if any. For an entry of batches, whose
    /// records the ledger does not place one by one, the entry's first offset.
    pub fn kafka_offset_of(&self, smq: i64) -> Option<i64> {
        let holds = |e: &LedgerEntry| smq >= e.smq_offset && smq < e.smq_end();
        let e = if self.smq_monotonic {
            let i = self.entries.partition_point(|e| e.smq_end() <= smq);
            self.entries.get(i).filter(|e| holds(e))
        } else {
            // After SMQ reused offsets, the newest entry holding it is the live one.
            self.entries.iter().rev().find(|e| holds(e))
        }?;
        Some(if e.is_exact() {
            e.kafka_offset + (smq - e.smq_offset)
        } else {
            e.kafka_offset
        })
    }

    /// The first entry that may hold a record with timestamp ≥ `ts`: every earlier entry's
    /// records are all older. None when no record is that recent.
    pub fn first_entry_at_or_after(&self, ts: i64) -> Option<usize> {
        let i = self.prefix_max_ts.partition_point(|m| *m < ts);
        (i < self.entries.len()).then_some(i)
    }

    /// Checks the invariants: dense Kafka offsets, SMQ positions that do not overlap, and reports
    /// entries whose timestamps go backwards (allowed with CreateTime, but worth seeing).
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (i, w) in self.entries.windows(2).enumerate() {
            let (a, b) = (w[0], w[1]);
            if b.kafka_offset != a.end() {
                problems.push(Problem {
                    entry_index: i + 1,
                    kind: if b.kafka_offset > a.end() {
                        "offset_gap"
                    } else {
                        "offset_overlap"
                    },
                    detail: format!(
                        "entry ends at {} but the next starts at {}",
                        a.end(),
                        b.kafka_offset
                    ),
                });
            }
            if b.smq_offset < a.smq_end() {
                problems.push(Problem {
                    entry_index: i + 1,
                    kind: "smq_offset_regression",
                    detail: format!(
                        "SMQ offset {} after an entry ending at {}",
                        b.smq_offset,
                        a.smq_end()
                    ),
                });
            }
            if b.max_timestamp < a.max_timestamp {
                problems.push(Problem {
                    entry_index: i + 1,
                    kind: "timestamp_not_monotonic",
                    detail: format!(
                        "max timestamp {} after {}",
                        b.max_timestamp, a.max_timestamp
                    ),
                });
            }
        }
        problems
    }
}

fn check_counts(entry: &LedgerEntry) -> Result<(), String> {
    if entry.count == 0 || entry.smq_count == 0 || entry.smq_count > entry.count {
        return Err(format!(
            "ledger entry with {} offsets in {} SMQ records",
            entry.count, entry.smq_count
        ));
    }
    // Found by fuzzing recovery: an entry whose range ends past i64::MAX (only a damaged
    // mappings topic holds one) made every later lookup overflow.
    if entry.kafka_offset.checked_add(entry.count.into()).is_none()
        || entry
            .smq_offset
            .checked_add(entry.smq_count.into())
            .is_none()
    {
        return Err(format!(
            "ledger entry {entry:?} ends past the largest offset"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(k: i64, n: u32, s: i64, ts: i64) -> LedgerEntry {
        LedgerEntry {
            kafka_offset: k,
            count: n,
            smq_offset: s,
            smq_count: n,
            max_timestamp: ts,
            nonce: 0,
        }
    }

    #[test]
    fn batch_entries_start_reads_at_their_first_smq_record() {
        let mut l = PartitionLedger::new();
        // Two batches of 3 and 2 records in SMQ records 7 and 8, then one single-record batch.
        l.append(LedgerEntry {
            smq_count: 2,
            ..e(0, 5, 7, 10)
        })
        .unwrap();
        l.append(e(5, 1, 9, 11)).unwrap();
        assert_eq!(l.locate(3).unwrap().smq_offset, 7);
        assert_eq!(l.locate(5).unwrap().smq_offset, 9);
        assert_eq!(l.kafka_offset_of(8), Some(0));
        assert_eq!(l.kafka_offset_of(9), Some(5));
        assert!(l.validate().is_empty());
        assert!(
            l.append(LedgerEntry {
                smq_count: 2,
                ..e(6, 1, 10, 12)
            })
            .is_err(),
            "more SMQ records than offsets"
        );
    }

    #[test]
    fn appends_must_be_dense() {
        let mut l = PartitionLedger::new();
        l.append(e(0, 3, 0, 10)).unwrap();
        assert!(l.append(e(4, 1, 3, 10)).is_err(), "gap");
        assert!(l.append(e(2, 1, 3, 10)).is_err(), "reuse");
        l.append(e(3, 2, 5, 20)).unwrap();
        assert_eq!(l.next_offset(), 5);
    }

    #[test]
    fn lookups_both_ways() {
        let mut l = PartitionLedger::new();
        l.append(e(0, 3, 0, 10)).unwrap();
        l.append(e(3, 2, 5, 20)).unwrap(); // SMQ offsets 3 and 4 were burned
        assert_eq!(l.locate(4).unwrap().smq_offset, 6);
        assert_eq!(l.locate(2).unwrap().smq_offset, 2);
        assert!(l.locate(5).is_none());
        assert_eq!(l.kafka_offset_of(6), Some(4));
        assert_eq!(l.kafka_offset_of(3), None);
        assert_eq!(l.first_entry_at_or_after(15), Some(1));
        assert_eq!(l.first_entry_at_or_after(10), Some(0));
        assert_eq!(l.first_entry_at_or_after(21), None);
    }

    #[test]
    fn replay_lets_a_rewrite_supersede_and_refuses_gaps() {
        let mut l = PartitionLedger::new();
        l.replay(e(0, 3, 0, 10)).unwrap();
        l.replay(e(3, 2, 3, 10)).unwrap();
        l.replay(e(3, 2, 9, 11)).unwrap(); // the retried write
        assert_eq!(l.len(), 2);
        assert_eq!(l.locate(3).unwrap().smq_offset, 9);
        assert!(l.replay(e(9, 1, 20, 11)).is_err());
        assert!(l.replay(e(1, 1, 20, 11)).is_err(), "not an entry boundary");
        assert!(
            l.replay(e(5, 2, i64::MAX - 1, 11)).is_err(),
            "SMQ range overflows"
        );
        assert_eq!(l.next_offset(), 5);
    }

    #[test]
    fn smq_offset_reuse_is_reported_and_still_resolved() {
        let mut l = PartitionLedger::new();
        l.append(e(0, 3, 10, 1)).unwrap();
        l.append(e(3, 3, 11, 2)).unwrap(); // SMQ handed out 11..13 again after a crash
        let kinds: Vec<_> = l.validate().iter().map(|p| p.kind).collect();
        assert_eq!(kinds, ["smq_offset_regression"]);
        assert_eq!(l.kafka_offset_of(11), Some(3), "the newest entry wins");
        assert_eq!(l.locate(4).unwrap().smq_offset, 12);
    }
}
