//! Shortening the ledger: at its end, for a superseding entry (`cut`), and at its start, for
//! retention (`truncate_before`).

use super::index::{BOUND, UNCOUNTED, recompute_prefix};
use super::{PartitionLedger, Previous, segment};

/// How a segment ends once cut at some offset.
struct SegmentCut {
    smq_end: i64,
    /// Bytes of its list kept.
    keep: usize,
    /// The exact entry the cut falls inside, shortened to this many records.
    shortened: Option<u32>,
}

impl PartitionLedger {
    /// Forgets everything from `at` on (`start <= at < next_offset`), for a superseding entry
    /// starting there. `at` must start an entry, or fall inside an exact one; otherwise the
    /// ledger is left as it was.
    pub(super) fn cut(&mut self, at: i64) -> Result<(), String> {
        let si = self.segments.partition_point(|s| s.end() <= at);
        let bi = self.block_at(at);
        let (Some(seg), Some(&block)) = (self.segments.get(si), self.blocks.get(bi)) else {
            return Err(format!("offset {at} is not in the ledger"));
        };
        let how = match &seg.batches {
            None => SegmentCut {
                smq_end: seg.smq_offset + (at - seg.kafka_offset),
                keep: 0,
                shortened: None,
            },
            Some(_) => {
                let c = seg
                    .walk(block.pos as usize, block.kafka_offset, block.smq_offset)
                    .find(|c| c.end() > at)
                    .ok_or_else(|| format!("offset {at} is not in its segment's entries"))?;
                if c.kafka_offset == at {
                    SegmentCut {
                        smq_end: c.smq_offset,
                        keep: c.pos,
                        shortened: None,
                    }
                } else if c.is_exact() {
                    let n = at - c.kafka_offset;
                    SegmentCut {
                        smq_end: c.smq_offset + n,
                        keep: c.pos,
                        shortened: u32::try_from(n).ok(),
                    }
                } else {
                    return Err(format!("entry at {at} does not start on an entry boundary"));
                }
            }
        };
        // From here on nothing fails.
        let seg_start = seg.kafka_offset;
        let next = self.next_offset();
        let block_end = self.blocks.get(bi + 1).map_or(next, |b| b.kafka_offset);
        let first_gone = if block.kafka_offset == at { bi } else { bi + 1 };
        let gone: u64 = self.blocks[first_gone..]
            .iter()
            .map(|b| u64::from(b.entries))
            .sum();
        self.entries -= gone;
        self.blocks.truncate(first_gone);
        self.journal.cut(at);
        if block.kafka_offset < at {
            self.recount_cut_block(bi, at, block_end);
        }
        // The boundaries from segment `si` on go (and the one before it when it goes whole);
        // counting only those keeps a recovery with many superseding entries linear.
        let gone_from = if seg_start == at {
            si.saturating_sub(1)
        } else {
            si
        };
        self.smq_regressions -= regressions(self.segments.get(gone_from..).unwrap_or_default());
        self.segments.truncate(si + 1);
        match self.segments.last_mut() {
            Some(s) if s.kafka_offset == at => {
                self.segments.pop();
            }
            Some(s) => {
                s.count = at - s.kafka_offset;
                s.smq_count = how.smq_end - s.smq_offset;
                if let Some(b) = &mut s.batches {
                    b.truncate(how.keep);
                    if let Some(n) = how.shortened {
                        segment::put(b, n, n);
                    }
                }
            }
            None => {}
        }
        self.previous = if at == self.start {
            Previous::Nothing
        } else {
            // The journal, once cut, ends with the entry holding `at - 1` if it reached it.
            match self.journal.entries.back() {
                Some(r) if self.journal.covers(at - 1) => Previous::Ts(r.max_ts),
                _ => Previous::Unknown,
            }
        };
        Ok(())
    }

    /// Gives block `bi`, cut short at `at` (it ended at `block_end`), its entry count and
    /// maximum: from the journal when it reaches the block's start, else as estimates.
    fn recount_cut_block(&mut self, bi: usize, at: i64, block_end: i64) {
        let prefix = bi
            .checked_sub(1)
            .and_then(|i| self.blocks.get(i))
            .map(|b| b.prefix_max);
        let (journal, segments) = (&self.journal, &self.segments);
        let Some(b) = self.blocks.get_mut(bi) else {
            return;
        };
        let before = u64::from(b.entries);
        if journal.covers(b.kafka_offset) {
            let r = journal.recount(b.kafka_offset, at);
            b.entries = u8::try_from(r.entries.max(1)).unwrap_or(u8::MAX);
            b.max_ts = r.max_ts;
            b.regressions = u8::try_from(r.regressions).unwrap_or(u8::MAX);
            if r.bound {
                b.flags |= BOUND;
            } else {
                b.flags &= !BOUND;
            }
        } else {
            // The entries' timestamps are gone: the old maximum stays, as an upper bound.
            let seg = segments
                .get(segments.partition_point(|s| s.end() <= b.kafka_offset))
                .filter(|s| !s.is_exact());
            let kept = match seg {
                Some(s) => s
                    .walk(b.pos as usize, b.kafka_offset, b.smq_offset)
                    .take_while(|c| c.kafka_offset < at)
                    .count() as u64,
                // Exact entries' boundaries are gone too: in proportion to the offsets kept.
                None => {
                    let kept = i128::from(at - b.kafka_offset);
                    let all = i128::from(block_end - b.kafka_offset).max(1);
                    u64::try_from((i128::from(b.entries) * kept + all - 1) / all).unwrap_or(1)
                }
            };
            b.entries = u8::try_from(kept.clamp(1, before)).unwrap_or(u8::MAX);
            b.regressions = b.regressions.min(b.entries - 1);
            b.flags |= BOUND | UNCOUNTED;
        }
        b.prefix_max = prefix.map_or(b.max_ts, |p| p.max(b.max_ts));
        self.entries = self.entries - before + u64::from(b.entries);
    }

    /// Advances the log start for retention: to the start of the block holding `offset` (an
    /// entry boundary at or below it), dropping the blocks and segments before it; to the end
    /// when `offset` is past it (the next offset stays where it was). Never moves it backwards.
    pub fn truncate_before(&mut self, offset: i64) {
        let next = self.next_offset();
        let to = if offset >= next {
            next
        } else {
            match self.blocks.get(self.block_at(offset)) {
                Some(b) if b.kafka_offset <= offset => b.kafka_offset,
                _ => return,
            }
        };
        if to <= self.start {
            return;
        }
        let bi = self.blocks.partition_point(|b| b.kafka_offset < to);
        let gone: u64 = self.blocks[..bi].iter().map(|b| u64::from(b.entries)).sum();
        self.entries -= gone;
        self.blocks.drain(..bi);
        let si = self.segments.partition_point(|s| s.end() <= to);
        self.smq_regressions -= regressions(self.segments.get(..=si).unwrap_or(&self.segments));
        self.segments.drain(..si);
        if let Some(s) = self.segments.first_mut()
            && s.kafka_offset < to
        {
            // The segment now starts at its block starting at `to`.
            let (pos, smq) = self
                .blocks
                .first()
                .map_or((0, s.smq_offset), |b| (b.pos, b.smq_offset));
            if let Some(list) = &mut s.batches {
                list.drain(..pos as usize);
                let end = s.end();
                for b in self.blocks.iter_mut().take_while(|b| b.kafka_offset < end) {
                    b.pos -= pos;
                }
            }
            s.count -= to - s.kafka_offset;
            s.smq_count -= smq - s.smq_offset;
            s.kafka_offset = to;
            s.smq_offset = smq;
        }
        recompute_prefix(&mut self.blocks);
        self.journal.drop_before(to);
        self.start = to;
        if self.segments.is_empty() {
            self.previous = Previous::Nothing;
        }
    }
}

/// Boundaries between `segments` where the SMQ offset goes backwards.
pub(super) fn regressions(segments: &[super::segment::Segment]) -> usize {
    segments
        .windows(2)
        .filter(|w| w[1].smq_offset < w[0].smq_end())
        .count()
}
