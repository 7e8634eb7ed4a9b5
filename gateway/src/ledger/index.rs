//! The sparse index over segments, and the journal of the newest entries.
//!
//! Blocks: every segment is cut into blocks of a few dozen entries (or a few thousand offsets),
//! each starting on an entry boundary and knowing its first SMQ record, its position in the
//! segment's byte list and the largest timestamp of its entries. Per-entry timestamps are not
//! kept, so a timestamp lookup answers with a block, which the caller reads from its start:
//! Kafka's time index is sparse in the same way. Block starts also let a read or a lookup start
//! decoding a long batch segment near where it needs to, not at the segment's start.
//!
//! Journal: the newest entries' boundaries and timestamps. A superseding entry (a retried write
//! whose first attempt landed too, records published again after a broken stream) cuts the
//! ledger, nearly always among its newest entries; the journal gives the cut block its exact
//! timestamp and entry count back. A cut older than the journal leaves the block's old maximum
//! as an upper bound (flag [`BOUND`]): lookups stay safe (never past a record that recent) but
//! the caller may read further than it needs to.

use std::collections::VecDeque;

/// The block's `max_ts` may be above every timestamp its records still have (it was cut where
/// the journal could not recompute it, or it ends inside an exact entry that was cut).
pub(super) const BOUND: u8 = 1;
/// The block's `entries` and `regressions` are estimates (counted across a cut the journal did
/// not cover).
pub(super) const UNCOUNTED: u8 = 2;
/// The block's first entry is older than the entry before it (counted only when that entry is
/// still in the ledger, so it is ignored in the first block).
pub(super) const FIRST_REGRESSES: u8 = 4;
pub(super) const FLAGS: u8 = BOUND | UNCOUNTED | FIRST_REGRESSES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Block {
    pub(super) kafka_offset: i64,
    pub(super) smq_offset: i64,
    /// Largest timestamp of its entries.
    pub(super) max_ts: i64,
    /// Largest `max_ts` of this block and every earlier one: monotonic, so binary-searchable.
    pub(super) prefix_max: i64,
    /// Where its first entry's coding starts in the segment's byte list (0 in exact segments).
    pub(super) pos: u32,
    pub(super) entries: u8,
    /// Entries after its first whose timestamp is older than the entry before them.
    pub(super) regressions: u8,
    pub(super) flags: u8,
}

impl Block {
    pub(super) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Recomputes every block's prefix maximum (after blocks were dropped from the front).
pub(super) fn recompute_prefix(blocks: &mut [Block]) {
    let mut max = i64::MIN;
    for b in blocks {
        max = max.max(b.max_ts);
        b.prefix_max = max;
    }
}

/// One of the newest entries: where it starts and its largest timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Recent {
    pub(super) kafka_offset: i64,
    pub(super) max_ts: i64,
    /// The entry was cut short by a superseding one inside it: `max_ts` is an upper bound.
    pub(super) bound: bool,
}

/// The newest `cap` entries, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Journal {
    pub(super) entries: VecDeque<Recent>,
    pub(super) cap: usize,
}

/// What the journal knows of a block cut short at some offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Recount {
    pub(super) entries: usize,
    pub(super) max_ts: i64,
    pub(super) regressions: usize,
    pub(super) bound: bool,
}

impl Journal {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            cap,
        }
    }

    pub(super) fn push(&mut self, kafka_offset: i64, max_ts: i64) {
        if self.cap == 0 {
            return;
        }
        if self.entries.len() == self.cap {
            self.entries.pop_front();
        }
        self.entries.push_back(Recent {
            kafka_offset,
            max_ts,
            bound: false,
        });
    }

    /// Whether the journal holds every entry from the one starting at `kafka_offset` on.
    pub(super) fn covers(&self, kafka_offset: i64) -> bool {
        self.entries
            .front()
            .is_some_and(|r| r.kafka_offset <= kafka_offset)
    }

    /// Whether an entry starts at `kafka_offset` (only meaningful where the journal covers it).
    pub(super) fn starts_at(&self, kafka_offset: i64) -> bool {
        let i = self
            .entries
            .partition_point(|r| r.kafka_offset < kafka_offset);
        self.entries
            .get(i)
            .is_some_and(|r| r.kafka_offset == kafka_offset)
    }

    /// The entries starting in `[from, to)`, as one block would count them.
    pub(super) fn recount(&self, from: i64, to: i64) -> Recount {
        let lo = self.entries.partition_point(|r| r.kafka_offset < from);
        let mut out = Recount {
            entries: 0,
            max_ts: i64::MIN,
            regressions: 0,
            bound: false,
        };
        let mut previous: Option<i64> = None;
        for r in self.entries.range(lo..) {
            if r.kafka_offset >= to {
                break;
            }
            out.entries += 1;
            out.max_ts = out.max_ts.max(r.max_ts);
            out.bound |= r.bound;
            if previous.is_some_and(|p| r.max_ts < p) {
                out.regressions += 1;
            }
            previous = Some(r.max_ts);
        }
        out
    }

    /// Forgets the entries from `kafka_offset` on; the one left holding `kafka_offset - 1`, if it
    /// continued past it, becomes an upper bound.
    pub(super) fn cut(&mut self, kafka_offset: i64) {
        let keep = self
            .entries
            .partition_point(|r| r.kafka_offset < kafka_offset);
        let mid = !self.starts_at(kafka_offset);
        self.entries.truncate(keep);
        if mid && let Some(last) = self.entries.back_mut() {
            last.bound = true;
        }
    }

    /// Forgets the entries before `kafka_offset` (retention moved the log start there).
    pub(super) fn drop_before(&mut self, kafka_offset: i64) {
        let drop = self
            .entries
            .partition_point(|r| r.kafka_offset < kafka_offset);
        self.entries.drain(..drop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_keeps_the_newest_entries_and_recounts_a_cut_block() {
        let mut j = Journal::new(4);
        for (k, ts) in [(0, 5), (2, 9), (3, 4), (7, 6), (9, 8)] {
            j.push(k, ts);
        }
        assert!(!j.covers(0), "the oldest entry fell out");
        assert!(j.covers(2) && j.covers(5));
        assert!(j.starts_at(7) && !j.starts_at(8));
        let r = j.recount(2, 9);
        assert_eq!(
            (r.entries, r.max_ts, r.regressions, r.bound),
            (3, 9, 1, false)
        );
        j.cut(8);
        assert_eq!(j.entries.len(), 3);
        assert!(j.entries.back().unwrap().bound, "7 was cut inside");
        assert!(j.recount(2, 8).bound);
        j.drop_before(3);
        assert_eq!(j.entries.len(), 2);
        let mut none = Journal::new(0);
        none.push(0, 1);
        assert!(!none.covers(0));
    }
}
