//! The newest units of a partition (and, for consumers behind the tail, what was read ahead),
//! contiguous and within a byte budget.

use super::read::unit_size;
use crate::records::StoredUnit;

/// The newest units of a partition, contiguous, within a byte budget. Filled when SMQ has
/// acknowledged an append's records, just before its ledger entry moves the high water mark
/// (readers take only what is below the mark); cleared when the ledger is reloaded or an append
/// is rolled back.
#[derive(Debug, Default)]
pub(super) struct TailCache {
    units: std::collections::VecDeque<StoredUnit>,
    bytes: usize,
    limit: usize,
}

impl TailCache {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn clear(&mut self) {
        self.units.clear();
        self.bytes = 0;
    }

    pub(super) fn push(&mut self, units: Vec<StoredUnit>) {
        if self.limit == 0 {
            return;
        }
        if let (Some(last), Some(first)) = (self.units.back(), units.first())
            && last.end_offset() != first.first_offset()
        {
            // Not contiguous (cannot happen while the cache is cleared on reloads): start over.
            self.clear();
        }
        for u in units {
            self.bytes += unit_size(&u);
            self.units.push_back(u);
        }
        while self.bytes > self.limit
            && let Some(u) = self.units.pop_front()
        {
            self.bytes -= unit_size(&u);
        }
    }

    /// Units from `offset` on within `max_bytes` (at least one), when the cache holds `offset`.
    pub(super) fn read(&self, offset: i64, max_bytes: usize) -> Option<Vec<StoredUnit>> {
        let first = self.units.front()?;
        let end = self.units.back()?.end_offset();
        if offset < first.first_offset() || offset >= end {
            return None;
        }
        let start = self.units.partition_point(|u| u.end_offset() <= offset);
        let mut out = Vec::new();
        let mut bytes = 0;
        for u in self.units.range(start..) {
            let size = unit_size(u);
            if !out.is_empty() && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            out.push(u.clone());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::StoredBatch;

    fn batch(base_offset: i64, record_count: i32, size: usize) -> StoredUnit {
        StoredUnit::Batch(StoredBatch {
            base_offset,
            partition: 0,
            record_count,
            max_timestamp: 0,
            raw: bytes::Bytes::from(vec![0u8; size]),
        })
    }

    #[test]
    fn tail_cache_serves_the_newest_units_within_its_budget() {
        let mut c = TailCache::new(250);
        c.push(vec![batch(0, 5, 100), batch(5, 5, 100)]);
        c.push(vec![batch(10, 2, 100)]); // evicts [0, 5)
        assert_eq!(c.bytes, 200);
        assert!(c.read(4, 1000).is_none(), "evicted");
        assert!(c.read(12, 1000).is_none(), "not stored yet");
        let from_middle = c.read(7, 1000).unwrap();
        assert_eq!(from_middle.first().map(StoredUnit::first_offset), Some(5));
        assert_eq!(from_middle.len(), 2);
        assert_eq!(
            c.read(5, 150).unwrap().len(),
            1,
            "byte limit, at least one unit"
        );
        c.push(vec![batch(20, 1, 10)]); // not contiguous: starts over
        assert_eq!(c.units.len(), 1);
        assert_eq!(c.read(20, 1).unwrap().len(), 1);
        let mut off = TailCache::new(0);
        off.push(vec![batch(0, 1, 1)]);
        assert!(off.read(0, 10).is_none());
    }
}
