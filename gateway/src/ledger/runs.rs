//! Runs: the ledger from an offset on, split where SMQ offsets or publish nonces do not
//! continue, so that each run is read from SMQ in one go.

use super::PartitionLedger;

/// Kafka offsets `[kafka_offset, kafka_offset + count)` in the SMQ records
/// `[smq_offset, smq_offset + smq_count)`, consecutive in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub kafka_offset: i64,
    pub smq_offset: i64,
    pub count: i64,
    pub smq_count: i64,
    /// The entries' publish nonce (a run never spans two).
    pub nonce: u64,
}

impl PartitionLedger {
    /// The ledger from `offset` on as runs of consecutive SMQ offsets, covering at most about
    /// `limit` Kafka offsets: an entry of batches is taken whole (a read starts at its first SMQ
    /// record and cannot be split), so the limit stops after the entry that crosses it.
    pub fn runs_from(&self, offset: i64, limit: i64) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::new();
        if offset < self.start || offset >= self.next_offset() {
            return runs;
        }
        let mut left = limit;
        let first = self.segments.partition_point(|s| s.end() <= offset);
        for (i, seg) in self.segments.iter().skip(first).enumerate() {
            if left <= 0 {
                break;
            }
            let from = if i == 0 { offset } else { seg.kafka_offset };
            if seg.is_exact() {
                let n = (seg.end() - from).min(left);
                left -= n;
                let smq = seg.smq_offset + (from - seg.kafka_offset);
                extend(&mut runs, from, smq, n, n, seg.nonce);
                continue;
            }
            let Some(b) = self.blocks.get(self.block_at(from)) else {
                break;
            };
            let entries = seg
                .walk(b.pos as usize, b.kafka_offset, b.smq_offset)
                .skip_while(|c| c.end() <= from);
            for c in entries {
                if left <= 0 {
                    break;
                }
                let (k, s, n, m) = if c.is_exact() {
                    let k = from.max(c.kafka_offset);
                    let n = (c.end() - k).min(left);
                    (k, c.smq_offset + (k - c.kafka_offset), n, n)
                } else {
                    (c.kafka_offset, c.smq_offset, c.count, c.smq_count)
                };
                left -= n;
                extend(&mut runs, k, s, n, m, seg.nonce);
            }
        }
        runs
    }
}

/// Adds a piece to the last run when it continues it, else starts a run.
fn extend(runs: &mut Vec<Run>, k: i64, s: i64, n: i64, m: i64, nonce: u64) {
    match runs.last_mut() {
        Some(r)
            if r.smq_offset + r.smq_count == s
                && r.kafka_offset + r.count == k
                && r.nonce == nonce =>
        {
            r.count += n;
            r.smq_count += m;
        }
        _ => runs.push(Run {
            kafka_offset: k,
            smq_offset: s,
            count: n,
            smq_count: m,
            nonce,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::LedgerEntry;

    fn e(k: i64, n: u32, s: i64, m: u32) -> LedgerEntry {
        LedgerEntry {
            kafka_offset: k,
            count: n,
            smq_offset: s,
            smq_count: m,
            max_timestamp: 0,
            nonce: 0,
        }
    }

    fn run(kafka_offset: i64, smq_offset: i64, count: i64, smq_count: i64) -> Run {
        Run {
            kafka_offset,
            smq_offset,
            count,
            smq_count,
            nonce: 0,
        }
    }

    #[test]
    fn runs_merge_contiguous_entries_and_split_at_holes() {
        let mut l = PartitionLedger::new();
        l.append(e(0, 2, 0, 2)).unwrap();
        l.append(e(2, 3, 2, 3)).unwrap();
        l.append(e(5, 2, 9, 2)).unwrap(); // orphans at SMQ 5..8
        assert_eq!(l.runs_from(1, 100), [run(1, 1, 4, 4), run(5, 9, 2, 2)]);
        assert_eq!(l.runs_from(1, 2), [run(1, 1, 2, 2)]);
        assert!(l.runs_from(7, 10).is_empty());
    }

    #[test]
    fn runs_split_where_the_publish_nonce_changes() {
        let mut l = PartitionLedger::new();
        for (k, nonce) in [(0, 7), (2, 7), (4, 8)] {
            l.append(LedgerEntry {
                nonce,
                ..e(k, 2, k, 2)
            })
            .unwrap();
        }
        let got: Vec<_> = l
            .runs_from(0, 100)
            .iter()
            .map(|r| (r.kafka_offset, r.count, r.nonce))
            .collect();
        assert_eq!(got, [(0, 4, 7), (4, 2, 8)]);
    }

    #[test]
    fn runs_of_batches_start_at_the_entry_and_stay_whole() {
        let mut l = PartitionLedger::new();
        l.append(e(0, 10, 0, 2)).unwrap(); // batches of (say) 4 and 6 records
        l.append(e(10, 5, 2, 1)).unwrap();
        l.append(e(15, 8, 7, 2)).unwrap(); // after a hole in SMQ
        assert_eq!(l.runs_from(6, 100), [run(0, 0, 15, 3), run(15, 7, 8, 2)]);
        // The limit stops after the entry that crosses it, never inside one.
        assert_eq!(l.runs_from(12, 3), [run(10, 2, 5, 1)]);
    }

    #[test]
    fn runs_cross_from_exact_entries_into_batches_that_continue_them() {
        let mut l = PartitionLedger::new();
        l.append(e(0, 3, 0, 3)).unwrap();
        l.append(e(3, 4, 3, 1)).unwrap(); // a segment of its own, continuing the first
        l.append(e(7, 2, 4, 2)).unwrap(); // exact, inside the batch segment
        assert_eq!(l.segment_count(), 2);
        assert_eq!(l.runs_from(1, 100), [run(1, 1, 8, 5)]);
        assert_eq!(l.runs_from(8, 100), [run(8, 5, 1, 1)]);
        assert_eq!(
            l.runs_from(1, 3),
            [run(1, 1, 6, 3)],
            "the batch entry is whole"
        );
    }
}
