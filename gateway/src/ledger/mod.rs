//! The offset ledger: the gateway, not SMQ, assigns Kafka offsets. Each partition's ledger maps
//! dense Kafka offset ranges (one entry per stored produce batch) to the SMQ offsets holding them.
//!
//! SMQ's own offsets can repeat or skip after a broker restart and a failed publish burns one, so
//! they are only positions; the Kafka offset is also stored inside every record, and the ledger
//! is persisted in the SMQ topic `kafka-system/offset-mappings` before a produce is acknowledged.
//!
//! In memory a partition's ledger costs what its discontinuities cost, not what its produce
//! requests do: entries that continue each other are one segment ([`segment`]), indexed by
//! blocks of a few dozen entries that carry the timestamps ([`index`]). A gateway publishing
//! steadily in the `record` format holds well under a byte per record. What that gives up:
//! per-entry timestamps (a timestamp lookup answers with a block to read from) and, in a stretch
//! of exact entries, where one entry ended and the next began (any offset there is a boundary).

mod checkpoint;
mod cut;
mod index;
mod producers;
mod query;
mod runs;
mod segment;
mod snapshot;
mod store;
#[cfg(test)]
mod tests;
mod writer;

pub use runs::Run;

pub use producers::{
    GAP_GRACE_MS, PRODUCER_EXPIRY_MS, ProducerBatch, ProducerStates, SequenceCheck,
};
pub use store::{
    LedgerRecord, LedgerSlot, LedgerStore, LedgerToken, LedgerUpdate, MAPPINGS_TOPIC,
    PartitionState, RecoveredLedgers, RecoveredProducers, decode as decode_record,
    decode_many as decode_records, encode as encode_record, encode_log_start,
    encode_many as encode_records, legacy_slot, mapping_partition, replay_into,
};

use serde::Serialize;

use index::{BOUND, Block, FIRST_REGRESSES, Journal, UNCOUNTED};
use segment::{Coded, Segment};

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

/// A stretch of the ledger: Kafka offsets `[kafka_offset, kafka_offset + count)` in the SMQ
/// records `[smq_offset, smq_offset + smq_count)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub kafka_offset: i64,
    pub count: i64,
    pub smq_offset: i64,
    pub smq_count: i64,
}

/// Where one Kafka offset lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The SMQ record a read of the offset starts at: the offset's own, or for an entry of
    /// batches the entry's first (its batches carry their offsets; the read skips those before).
    pub smq_offset: i64,
    /// The Kafka offset the record at `smq_offset` starts with.
    pub read_from: i64,
    /// The publish nonce in the SMQ keys there.
    pub nonce: u64,
    /// The entry holding the offset, in a segment of batches (which keeps its entries); None in
    /// a stretch of exact entries, whose boundaries are not kept.
    pub entry: Option<Span>,
    /// The segment holding it: the entries around it that continue each other.
    pub segment: Span,
}

/// A problem found by [`PartitionLedger::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Where it starts.
    pub kafka_offset: i64,
    pub kind: &'static str,
    pub detail: String,
}

/// Where to look for the first record with a timestamp at or after some time: no record before
/// `start` is that recent (every entry's maximum is older), and the first that is, if any, is
/// in `[start, end)`. `start` is an entry boundary, so a read can begin there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimestampStart {
    pub start: i64,
    pub end: i64,
    /// Whether `[start, end)` surely holds such a record (its maximum is exact, not an upper
    /// bound left by a cut the journal could not recompute): not finding one there is then
    /// corruption rather than an answer.
    pub certain: bool,
}

/// How finely a ledger indexes its entries. The defaults suit the gateway; tests use small
/// ones so that a short history crosses many blocks and outgrows the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerLimits {
    /// Entries a block holds at most (at least 1). A timestamp lookup reads up to a block, and a
    /// lookup in a segment of batches decodes up to a block's entries.
    pub block_entries: u8,
    /// Kafka offsets after which the next entry starts a new block (at least 1).
    pub block_offsets: i64,
    /// Newest entries whose boundaries and timestamps are kept, so that a superseding entry among
    /// them leaves exact timestamps and counts.
    pub journal: u16,
}

impl Default for LedgerLimits {
    fn default() -> Self {
        Self {
            block_entries: 64,
            block_offsets: 4096,
            journal: 128,
        }
    }
}

/// The figures `/stats` shows of a partition's ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LedgerSummary {
    pub entries: u64,
    pub segments: usize,
    /// The largest timestamp among the oldest entries (the first block's): what time-based
    /// retention compares.
    pub first_max_timestamp: Option<i64>,
    pub max_timestamp: Option<i64>,
    pub memory_bytes: usize,
    /// See [`PartitionLedger::approximate`].
    pub approximate: bool,
}

/// The newest entry's largest timestamp, to count entries older than the one before them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Previous {
    /// The ledger holds no entry.
    Nothing,
    Ts(i64),
    /// Cut away by a superseding entry older than the journal.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLedger {
    /// The log start: the first offset held (the next offset when the ledger holds none).
    start: i64,
    /// Dense from `start`, each starting where the previous ended.
    segments: Vec<Segment>,
    /// Every segment's blocks, in offset order; a block never spans two segments and every
    /// segment starts one.
    blocks: Vec<Block>,
    journal: Journal,
    previous: Previous,
    /// Entries represented (the sum of the blocks').
    entries: u64,
    /// Segment boundaries where the SMQ offset goes backwards (SMQ handed offsets out again).
    smq_regressions: usize,
    limits: LedgerLimits,
}

impl Default for PartitionLedger {
    fn default() -> Self {
        Self::new()
    }
}

impl PartitionLedger {
    pub fn new() -> Self {
        Self::with_limits(LedgerLimits::default())
    }

    /// A ledger indexing with `limits` (raised to their minimums where below them).
    pub fn with_limits(limits: LedgerLimits) -> Self {
        let limits = LedgerLimits {
            block_entries: limits.block_entries.max(1),
            block_offsets: limits.block_offsets.max(1),
            journal: limits.journal,
        };
        Self {
            start: 0,
            segments: Vec::new(),
            blocks: Vec::new(),
            journal: Journal::new(usize::from(limits.journal)),
            previous: Previous::Nothing,
            entries: 0,
            smq_regressions: 0,
            limits,
        }
    }

    pub fn limits(&self) -> LedgerLimits {
        self.limits
    }

    /// The next Kafka offset to assign: the high water mark.
    pub fn next_offset(&self) -> i64 {
        self.segments.last().map_or(self.start, Segment::end)
    }

    /// The first offset still held.
    pub fn log_start(&self) -> i64 {
        self.start
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// How many entries (produce requests' stored runs) the ledger represents.
    pub fn entry_count(&self) -> u64 {
        self.entries
    }

    /// Stretches of entries that continue each other: what the ledger's size follows.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The largest record timestamp held.
    pub fn max_timestamp(&self) -> Option<i64> {
        self.blocks.last().map(|b| b.prefix_max)
    }

    /// The largest timestamp among the oldest entries (the first block's).
    pub fn first_max_timestamp(&self) -> Option<i64> {
        self.blocks.first().map(|b| b.max_ts)
    }

    /// Whether some timestamp or count the ledger reports may be inexact: after a superseding
    /// entry cut the ledger further back than the journal reaches (or inside an exact entry), a
    /// block's maximum is an upper bound and its counts estimates. Lookups stay safe; see
    /// [`TimestampStart::certain`].
    pub fn approximate(&self) -> bool {
        self.blocks.iter().any(|b| b.has(BOUND | UNCOUNTED))
    }

    pub fn summary(&self) -> LedgerSummary {
        LedgerSummary {
            entries: self.entries,
            segments: self.segments.len(),
            first_max_timestamp: self.first_max_timestamp(),
            max_timestamp: self.max_timestamp(),
            memory_bytes: self.memory_bytes(),
            approximate: self.approximate(),
        }
    }

    /// Heap and inline bytes the ledger holds (capacity, not length: what the allocator gave).
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + self.segments.capacity() * size_of::<Segment>()
            + self
                .segments
                .iter()
                .map(|s| s.batches.as_ref().map_or(0, Vec::capacity))
                .sum::<usize>()
            + self.blocks.capacity() * size_of::<Block>()
            + self.journal.entries.capacity() * size_of::<index::Recent>()
    }

    /// Gives back the spare capacity of the ledger's buffers (after recovery built it).
    pub fn shrink_to_fit(&mut self) {
        self.segments.shrink_to_fit();
        for s in &mut self.segments {
            if let Some(b) = &mut s.batches {
                b.shrink_to_fit();
            }
        }
        self.blocks.shrink_to_fit();
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

    /// Replays a persisted entry during recovery: an entry that starts inside the ledger replaces
    /// everything from its start (a retried write whose first attempt also landed; the later one
    /// is what the gateway continued from). It must start where an entry does, or anywhere inside
    /// an exact entry (whose boundaries the ledger may no longer know). An entry beyond the end
    /// is a gap and is refused; so is one before the log start. A refused entry changes nothing.
    pub fn replay(&mut self, entry: LedgerEntry) -> Result<(), String> {
        check_counts(&entry)?;
        let next = self.next_offset();
        if entry.kafka_offset > next {
            return Err(format!(
                "entry starts at {} past the ledger end {next}",
                entry.kafka_offset
            ));
        }
        if entry.kafka_offset < self.start {
            return Err(format!(
                "entry starts at {} before the log start {}",
                entry.kafka_offset, self.start
            ));
        }
        if entry.kafka_offset < next {
            self.cut(entry.kafka_offset)?;
        }
        self.push(entry);
        Ok(())
    }

    /// Adds an entry starting at the ledger's end (checked by the caller).
    fn push(&mut self, e: LedgerEntry) {
        let next = self.next_offset();
        let exact = e.is_exact();
        let (count, smq_count) = (i64::from(e.count), i64::from(e.smq_count));
        let ts = e.max_timestamp;
        let regresses = matches!(self.previous, Previous::Ts(p) if ts < p);
        let unknown = self.previous == Previous::Unknown;
        // Where the entry's coding starts in its segment's byte list; None: it starts a segment.
        let pos = match self.segments.last_mut() {
            Some(s) if s.takes(e.smq_offset, e.nonce, exact) => {
                let pos = s.batches.as_ref().map_or(0, Vec::len);
                if let Some(b) = &mut s.batches {
                    segment::put(b, e.count, e.smq_count);
                }
                s.count += count;
                s.smq_count += smq_count;
                Some(pos)
            }
            last => {
                if last.is_some_and(|s| e.smq_offset < s.smq_end()) {
                    self.smq_regressions += 1;
                }
                let batches = (!exact).then(|| {
                    let mut b = Vec::new();
                    segment::put(&mut b, e.count, e.smq_count);
                    b
                });
                self.segments.push(Segment {
                    kafka_offset: e.kafka_offset,
                    smq_offset: e.smq_offset,
                    count,
                    smq_count,
                    nonce: e.nonce,
                    batches,
                });
                None
            }
        };
        let limits = self.limits;
        match self.blocks.last_mut() {
            Some(b)
                if pos.is_some()
                    && b.entries < limits.block_entries
                    && next - b.kafka_offset < limits.block_offsets =>
            {
                b.entries += 1;
                b.max_ts = b.max_ts.max(ts);
                b.prefix_max = b.prefix_max.max(ts);
                b.regressions += u8::from(regresses);
                if unknown {
                    b.flags |= UNCOUNTED;
                }
            }
            last => {
                let prefix_max = last.map_or(ts, |b| b.prefix_max.max(ts));
                let mut flags = 0;
                if regresses {
                    flags |= FIRST_REGRESSES;
                }
                if unknown {
                    flags |= UNCOUNTED;
                }
                segment::grow(&mut self.blocks, 1, 4);
                self.blocks.push(Block {
                    kafka_offset: e.kafka_offset,
                    smq_offset: e.smq_offset,
                    max_ts: ts,
                    prefix_max,
                    // `Segment::takes` keeps a list's positions within u32.
                    pos: u32::try_from(pos.unwrap_or(0)).unwrap_or(u32::MAX),
                    entries: 1,
                    regressions: 0,
                    flags,
                });
            }
        }
        self.entries += 1;
        self.journal.push(e.kafka_offset, ts);
        self.previous = Previous::Ts(ts);
    }

    /// The block holding `offset` (which the ledger holds).
    fn block_at(&self, offset: i64) -> usize {
        self.blocks
            .partition_point(|b| b.kafka_offset <= offset)
            .saturating_sub(1)
    }

    /// The entry of the batch segment `seg` holding `offset`, decoded from its block's start.
    fn coded_at(&self, seg: &Segment, offset: i64) -> Option<Coded> {
        let b = self.blocks.get(self.block_at(offset))?;
        seg.walk(b.pos as usize, b.kafka_offset, b.smq_offset)
            .find(|c| c.end() > offset)
    }

    /// The blocks of `seg`.
    fn blocks_of(&self, seg: &Segment) -> &[Block] {
        let lo = self
            .blocks
            .partition_point(|b| b.kafka_offset < seg.kafka_offset);
        let hi = self.blocks.partition_point(|b| b.kafka_offset < seg.end());
        self.blocks.get(lo..hi).unwrap_or_default()
    }

    fn count_smq_regressions(&self) -> usize {
        cut::regressions(&self.segments)
    }

    /// Whether this ledger (what SMQ holds) is a prefix of `other` (what a gateway wrote): the
    /// same log start and segments, the last possibly ending earlier at an entry boundary. Where
    /// records live is compared, not timestamps: the same SMQ positions under the same nonce
    /// hold the same records.
    pub fn is_prefix_of(&self, other: &PartitionLedger) -> bool {
        if self.start != other.start || self.segments.len() > other.segments.len() {
            return false;
        }
        let Some((last, rest)) = self.segments.split_last() else {
            return true;
        };
        rest == &other.segments[..rest.len()]
            && other
                .segments
                .get(rest.len())
                .is_some_and(|o| last.is_prefix_of(o))
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
