//! Runs: the ledger from an offset on, split where SMQ offsets do not continue, so each run is
//! read from SMQ in one go; and the SMQ keys that tie each stored record to its Kafka offset.

use crate::ledger::PartitionLedger;

/// The SMQ key of a stored record: its Kafka offset, unique within the partition. SMQ delivers a
/// record to a subscriber only after the previous record with the same key was acknowledged, and
/// ignores acknowledgements of empty keys (waiting 30 s instead), so Kafka's own keys (often
/// repeated or null) must not be used here; they are inside the stored value.
/// The SMQ key of a record holding Kafka offset `offset` (its first, for a batch), published
/// with `nonce` (see [`LedgerEntry::nonce`]).
pub(super) fn smq_key(offset: i64, nonce: u64) -> Vec<u8> {
    if nonce == 0 {
        offset.to_string().into_bytes()
    } else {
        format!("{offset}.{nonce:016x}").into_bytes()
    }
}

/// A fresh publish nonce (never 0, which means "not checked").
pub(super) fn new_nonce() -> u64 {
    rand::random::<u64>().max(1)
}

/// Kafka offsets `[kafka_offset, kafka_offset + count)` in the SMQ records
/// `[smq_offset, smq_offset + smq_count)`, consecutive in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) kafka_offset: i64,
    pub(super) smq_offset: i64,
    pub(super) count: i64,
    pub(super) smq_count: i64,
    /// The entries' publish nonce (a run never spans two).
    pub(super) nonce: u64,
}

/// Splits the ledger from `offset` on into runs of consecutive SMQ offsets, covering at most
/// about `limit` Kafka offsets (whole entries of batches, which cannot be split).
pub(super) fn contiguous_runs(l: &PartitionLedger, offset: i64, limit: i64) -> Vec<Run> {
    let Some(loc) = l.locate(offset) else {
        return Vec::new();
    };
    let mut runs: Vec<Run> = Vec::new();
    let mut left = limit;
    for (i, e) in l.entries()[loc.entry_index..].iter().enumerate() {
        if left <= 0 {
            break;
        }
        let (k, s, n, m) = if !e.is_exact() {
            (
                e.kafka_offset,
                e.smq_offset,
                i64::from(e.count),
                i64::from(e.smq_count),
            )
        } else {
            let (k, s) = if i == 0 {
                (offset, loc.smq_offset)
            } else {
                (e.kafka_offset, e.smq_offset)
            };
            let n = (e.end() - k).min(left);
            (k, s, n, n)
        };
        left -= n;
        match runs.last_mut() {
            Some(r)
                if r.smq_offset + r.smq_count == s
                    && r.kafka_offset + r.count == k
                    && r.nonce == e.nonce =>
            {
                r.count += n;
                r.smq_count += m;
            }
            _ => runs.push(Run {
                kafka_offset: k,
                smq_offset: s,
                count: n,
                smq_count: m,
                nonce: e.nonce,
            }),
        }
    }
    runs
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
        assert_eq!(
            contiguous_runs(&l, 1, 100),
            [run(1, 1, 4, 4), run(5, 9, 2, 2)]
        );
        assert_eq!(contiguous_runs(&l, 1, 2), [run(1, 1, 2, 2)]);
        assert!(contiguous_runs(&l, 7, 10).is_empty());
    }

    #[test]
    fn runs_split_where_the_publish_nonce_changes_and_keys_carry_it() {
        let mut l = PartitionLedger::new();
        l.append(LedgerEntry {
            nonce: 7,
            ..e(0, 2, 0, 2)
        })
        .unwrap();
        l.append(LedgerEntry {
            nonce: 7,
            ..e(2, 2, 2, 2)
        })
        .unwrap();
        l.append(LedgerEntry {
            nonce: 8,
            ..e(4, 2, 4, 2)
        })
        .unwrap();
        let runs = contiguous_runs(&l, 0, 100);
        let got: Vec<_> = runs
            .iter()
            .map(|r| (r.kafka_offset, r.count, r.nonce))
            .collect();
        assert_eq!(got, [(0, 4, 7), (4, 2, 8)]);
        assert_eq!(smq_key(12, 0), b"12");
        assert_eq!(smq_key(12, 0xab), b"12.00000000000000ab");
    }

    #[test]
    fn runs_of_batches_start_at_the_entry_and_stay_whole() {
        let mut l = PartitionLedger::new();
        l.append(e(0, 10, 0, 2)).unwrap(); // batches of (say) 4 and 6 records
        l.append(e(10, 5, 2, 1)).unwrap();
        l.append(e(15, 8, 7, 2)).unwrap(); // after a hole in SMQ
        assert_eq!(
            contiguous_runs(&l, 6, 100),
            [run(0, 0, 15, 3), run(15, 7, 8, 2)]
        );
        // The limit stops after the entry that crosses it, never inside one.
        assert_eq!(contiguous_runs(&l, 12, 3), [run(10, 2, 5, 1)]);
    }
}
