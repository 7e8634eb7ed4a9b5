//! Lookups: where an offset lives, which offset an SMQ record holds, where to read for a time,
//! and the consistency report.

use super::index::{BOUND, FIRST_REGRESSES};
use super::segment::Segment;
use super::{Location, PartitionLedger, Problem, Span, TimestampStart};

impl PartitionLedger {
    /// Where Kafka offset `offset` is stored, if the ledger holds it.
    pub fn locate(&self, offset: i64) -> Option<Location> {
        if offset < self.start || offset >= self.next_offset() {
            return None;
        }
        let seg = self
            .segments
            .get(self.segments.partition_point(|s| s.end() <= offset))?;
        let segment = span(seg);
        if seg.is_exact() {
            return Some(Location {
                smq_offset: seg.smq_offset + (offset - seg.kafka_offset),
                read_from: offset,
                nonce: seg.nonce,
                entry: None,
                segment,
            });
        }
        let c = self.coded_at(seg, offset)?;
        let (smq_offset, read_from) = if c.is_exact() {
            (c.smq_offset + (offset - c.kafka_offset), offset)
        } else {
            (c.smq_offset, c.kafka_offset)
        };
        Some(Location {
            smq_offset,
            read_from,
            nonce: seg.nonce,
            entry: Some(Span {
                kafka_offset: c.kafka_offset,
                count: c.count,
                smq_offset: c.smq_offset,
                smq_count: c.smq_count,
            }),
            segment,
        })
    }

    /// The Kafka offset stored at SMQ offset `smq`, if any. For an entry of batches, whose
    /// records the ledger does not place one by one, the entry's first offset.
    pub fn kafka_offset_of(&self, smq: i64) -> Option<i64> {
        let holds = |s: &Segment| smq >= s.smq_offset && smq < s.smq_end();
        let seg = if self.smq_regressions == 0 {
            let i = self.segments.partition_point(|s| s.smq_end() <= smq);
            self.segments.get(i).filter(|s| holds(s))
        } else {
            // After SMQ reused offsets, the newest segment holding it is the live one (within
            // a segment SMQ offsets only grow).
            self.segments.iter().rev().find(|s| holds(s))
        }?;
        if seg.is_exact() {
            return Some(seg.kafka_offset + (smq - seg.smq_offset));
        }
        let blocks = self.blocks_of(seg);
        let b = blocks.get(
            blocks
                .partition_point(|b| b.smq_offset <= smq)
                .checked_sub(1)?,
        )?;
        let c = seg
            .walk(b.pos as usize, b.kafka_offset, b.smq_offset)
            .find(|c| c.smq_end() > smq)?;
        Some(if c.is_exact() {
            c.kafka_offset + (smq - c.smq_offset)
        } else {
            c.kafka_offset
        })
    }

    /// Where to read for the first record with a timestamp ≥ `ts`: from the start of the first
    /// block whose entries may hold one. None when no record is that recent.
    pub fn read_start_for_timestamp(&self, ts: i64) -> Option<TimestampStart> {
        let first = self.blocks.partition_point(|b| b.prefix_max < ts);
        let start = self.blocks.get(first)?.kafka_offset;
        // Normally that very block holds one. Past a block whose maximum is only an upper bound
        // (rare: see `approximate`), the read goes on to the first block known to hold one.
        let sure = self
            .blocks
            .get(first..)
            .unwrap_or_default()
            .iter()
            .position(|b| !b.has(BOUND) && b.max_ts >= ts)
            .map(|i| first + i);
        let end = |i: usize| {
            self.blocks
                .get(i + 1)
                .map_or(self.next_offset(), |b| b.kafka_offset)
        };
        Some(TimestampStart {
            start,
            end: sure.map_or(self.next_offset(), end),
            certain: sure.is_some(),
        })
    }

    /// Checks what may go wrong in a ledger built from persisted entries: SMQ positions that go
    /// backwards (SMQ handed offsets out again), and entries whose timestamps go backwards
    /// (allowed with CreateTime, but worth seeing; reported once, with how many). Gaps and
    /// overlaps of Kafka offsets cannot be represented.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for w in self.segments.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            if b.smq_offset < a.smq_end() {
                problems.push(Problem {
                    kafka_offset: b.kafka_offset,
                    kind: "smq_offset_regression",
                    detail: format!(
                        "SMQ offset {} after an entry ending at {}",
                        b.smq_offset,
                        a.smq_end()
                    ),
                });
            }
        }
        let mut older = 0u64;
        let mut first = None;
        for (i, b) in self.blocks.iter().enumerate() {
            let here = u64::from(b.regressions) + u64::from(i > 0 && b.has(FIRST_REGRESSES));
            if here > 0 {
                first.get_or_insert(b.kafka_offset);
                older += here;
            }
        }
        if let Some(at) = first {
            problems.push(Problem {
                kafka_offset: at,
                kind: "timestamp_not_monotonic",
                detail: format!(
                    "{older} entries from the block at {at} on have a max timestamp older than the entry before them"
                ),
            });
        }
        problems
    }
}

fn span(s: &Segment) -> Span {
    Span {
        kafka_offset: s.kafka_offset,
        count: s.count,
        smq_offset: s.smq_offset,
        smq_count: s.smq_count,
    }
}
