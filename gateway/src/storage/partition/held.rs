//! Appends acknowledged to clients whose SMQ records the broker may not have written yet.
//!
//! SMQ acks a record once it is in the broker's memory and writes it to the filer seconds later
//! (see `smq_client::durability`). Until the publisher proves a record durable, the gateway keeps
//! it, one [`HeldEntry`] per ledger entry; when the publish stream breaks before that, the
//! partition publishes the held records again and writes ledger entries that supersede the old
//! ones (a later entry replaces everything from its start, on replay as in memory).

use std::collections::VecDeque;

use crate::ledger::{LedgerEntry, LedgerToken, ProducerBatch};
use crate::storage::unflushed::UnflushedBudget;
use crate::storage::wal::HeldValue;

/// One ledger entry's SMQ records, as published on stream `epoch`: SMQ record `i` is at
/// `entry.smq_offset + i` and holds `units[i].0` Kafka records.
#[derive(Debug, Clone)]
pub struct HeldEntry {
    pub entry: LedgerEntry,
    pub epoch: u64,
    pub values: Vec<HeldValue>,
    /// (Kafka records, max timestamp) of each SMQ record.
    pub units: Vec<(i64, i64)>,
    /// The persisted ledger entry, once written (see `LedgerStore::is_durable`).
    pub ledger: Option<LedgerToken>,
    /// The idempotent batches stored in the entry's offsets, persisted with it.
    pub producers: Vec<ProducerBatch>,
}

impl HeldEntry {
    fn bytes(&self) -> usize {
        self.values.iter().map(HeldValue::len).sum()
    }

    /// The Kafka offset of each SMQ record's first record.
    pub fn unit_offsets(&self) -> impl Iterator<Item = i64> + '_ {
        self.units
            .iter()
            .scan(self.entry.kafka_offset, |k, &(n, _)| {
                let first = *k;
                *k += n;
                Some(first)
            })
    }
}

/// Groups SMQ records published for consecutive Kafka offsets from `kafka_offset` into ledger
/// entries: a new entry wherever the SMQ offset does not continue or the stream changed.
/// `acks[i]` is (epoch, SMQ offset) of record `i`; `nonce` is the one in the records' SMQ keys.
pub fn group(
    nonce: u64,
    kafka_offset: i64,
    units: &[(i64, i64)],
    values: Vec<HeldValue>,
    acks: &[(u64, i64)],
) -> Vec<HeldEntry> {
    let mut out: Vec<HeldEntry> = Vec::new();
    let mut kafka = kafka_offset;
    for (i, ((&(n, ts), value), &(epoch, smq))) in units.iter().zip(values).zip(acks).enumerate() {
        match out.last_mut() {
            Some(h) if i > 0 && h.epoch == epoch && smq == acks[i - 1].1 + 1 => {
                h.entry.count += n as u32;
                h.entry.smq_count += 1;
                h.entry.max_timestamp = h.entry.max_timestamp.max(ts);
                h.values.push(value);
                h.units.push((n, ts));
            }
            _ => out.push(HeldEntry {
                entry: LedgerEntry {
                    kafka_offset: kafka,
                    count: n as u32,
                    smq_offset: smq,
                    smq_count: 1,
                    max_timestamp: ts,
                    nonce,
                },
                epoch,
                values: vec![value],
                units: vec![(n, ts)],
                ledger: None,
                producers: Vec::new(),
            }),
        }
        kafka += n;
    }
    out
}

/// Gives each entry the batches whose base offsets it holds.
pub fn attach(entries: &mut [HeldEntry], batches: &[ProducerBatch]) {
    for b in batches {
        if let Some(e) = entries
            .iter_mut()
            .find(|e| e.entry.kafka_offset <= b.base_offset && b.base_offset < e.entry.end())
        {
            e.producers.push(*b);
        }
    }
}

/// A partition's held entries, oldest first; a suffix of its ledger, entry for entry.
#[derive(Debug, Default)]
pub struct Held {
    entries: VecDeque<HeldEntry>,
    bytes: usize,
}

impl Held {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn entries(&self) -> &VecDeque<HeldEntry> {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn push(&mut self, e: HeldEntry, budget: &UnflushedBudget) {
        let b = e.bytes();
        self.bytes += b;
        budget.add(b);
        e.values.iter().for_each(HeldValue::hold);
        self.entries.push_back(e);
    }

    /// Drops entries from `len` on (an append that failed after pushing them).
    pub fn truncate(&mut self, len: usize, budget: &UnflushedBudget) {
        while self.entries.len() > len {
            if let Some(e) = self.entries.pop_back() {
                self.release(&e, budget);
            }
        }
    }

    /// Records where the ledger entries of the entries from `from` on were persisted.
    pub fn set_ledger_tokens(&mut self, from: usize, tokens: Vec<LedgerToken>) {
        for (e, t) in self.entries.range_mut(from..).zip(tokens) {
            e.ledger = Some(t);
        }
    }

    /// Replaces the entries from `from` on.
    pub fn replace_from(&mut self, from: usize, new: Vec<HeldEntry>, budget: &UnflushedBudget) {
        self.truncate(from, budget);
        for e in new {
            self.push(e, budget);
        }
    }

    pub fn clear(&mut self, budget: &UnflushedBudget) {
        self.truncate(0, budget);
    }

    /// Drops the oldest entries while they are durable: `durable_below(epoch)` is the SMQ
    /// offset below which records acked on that stream are written (None: stream replaced), and
    /// `ledger_durable` says whether an entry's persisted ledger entry is written.
    pub fn prune(
        &mut self,
        durable_below: impl Fn(u64) -> Option<i64>,
        ledger_durable: impl Fn(Option<LedgerToken>) -> bool,
        budget: &UnflushedBudget,
    ) {
        while let Some(e) = self.entries.front() {
            if durable_below(e.epoch).is_none_or(|below| below < e.entry.smq_end())
                || !ledger_durable(e.ledger)
            {
                break;
            }
            if let Some(e) = self.entries.pop_front() {
                self.release(&e, budget);
            }
        }
    }

    /// (first SMQ offset, one past the last, longest value) of the records held from stream
    /// `epoch`, when there are any.
    pub fn span(&self, epoch: u64) -> Option<(i64, i64, usize)> {
        let mut on = self.entries.iter().filter(|e| e.epoch == epoch);
        let first = on.next()?;
        let longest = |e: &HeldEntry| e.values.iter().map(HeldValue::len).max().unwrap_or(0);
        Some(on.fold(
            (
                first.entry.smq_offset,
                first.entry.smq_end(),
                longest(first),
            ),
            |(lo, hi, l), e| {
                (
                    lo.min(e.entry.smq_offset),
                    hi.max(e.entry.smq_end()),
                    l.max(longest(e)),
                )
            },
        ))
    }

    /// The value held for SMQ offset `offset` of stream `epoch`.
    pub fn value_at(&self, epoch: u64, offset: i64) -> Option<&HeldValue> {
        self.entries.iter().find_map(|e| {
            let i = offset.checked_sub(e.entry.smq_offset)?;
            (e.epoch == epoch && i >= 0)
                .then(|| e.values.get(i as usize))
                .flatten()
        })
    }

    /// The first entry published on a stream other than the healthy one.
    pub fn first_stale(&self, healthy: Option<u64>) -> Option<usize> {
        self.entries.iter().position(|e| Some(e.epoch) != healthy)
    }

    fn release(&mut self, e: &HeldEntry, budget: &UnflushedBudget) {
        let b = e.bytes();
        self.bytes -= b;
        budget.sub(b);
        e.values.iter().for_each(HeldValue::release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(values: Vec<Vec<u8>>) -> Vec<HeldValue> {
        values.into_iter().map(HeldValue::Mem).collect()
    }

    #[test]
    fn group_splits_where_the_smq_offset_or_the_stream_changes() {
        let units = [(1, 10), (1, 11), (3, 12), (1, 13)];
        let values = mem(vec![vec![0u8; 1], vec![0; 2], vec![0; 3], vec![0; 4]]);
        let got = group(9, 100, &units, values, &[(1, 7), (1, 8), (2, 0), (2, 1)]);
        let entries: Vec<_> = got.iter().map(|h| (h.entry, h.epoch)).collect();
        let e = |k, n, s, m, ts| LedgerEntry {
            kafka_offset: k,
            count: n,
            smq_offset: s,
            smq_count: m,
            max_timestamp: ts,
            nonce: 9,
        };
        assert_eq!(
            entries,
            [(e(100, 2, 7, 2, 11), 1), (e(102, 4, 0, 2, 13), 2)]
        );
        assert_eq!(got[1].unit_offsets().collect::<Vec<_>>(), [102, 105]);
    }

    #[test]
    fn prune_stops_at_the_first_entry_not_yet_durable_and_budget_follows() {
        let budget = UnflushedBudget::new(0);
        let mut held = Held::default();
        for (k, s) in [(0, 0), (5, 5), (10, 10)] {
            held.push(
                group(0, k, &[(5, 0)], mem(vec![vec![0u8; 100]]), &[(1, s)]).remove(0),
                &budget,
            );
        }
        assert_eq!(budget.used(), 300);
        held.prune(|_| Some(5), |_| true, &budget);
        assert_eq!((held.len(), budget.used()), (2, 200));
        held.prune(|_| Some(15), |_| false, &budget);
        assert_eq!(held.len(), 2, "the ledger entry is not yet written");
        held.prune(|_| None, |_| true, &budget);
        assert_eq!(held.len(), 2, "a replaced stream proves nothing");
        assert_eq!(held.first_stale(Some(1)), None);
        assert_eq!(held.first_stale(Some(2)), Some(0));
        held.truncate(1, &budget);
        assert_eq!(budget.used(), 100);
        held.clear(&budget);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn span_and_value_at_see_only_the_named_stream() {
        let budget = UnflushedBudget::new(0);
        let mut held = Held::default();
        let values = mem(vec![vec![1u8; 3], vec![2; 7], vec![3; 5]]);
        for h in group(
            0,
            40,
            &[(1, 0), (1, 0), (1, 0)],
            values,
            &[(1, 8), (1, 9), (2, 0)],
        ) {
            held.push(h, &budget);
        }
        assert_eq!(held.span(1), Some((8, 10, 7)));
        assert_eq!(held.span(2), Some((0, 1, 5)));
        assert_eq!(held.span(3), None);
        let at = |e, o| held.value_at(e, o).map(|v| v.bytes().unwrap());
        assert_eq!(at(1, 9), Some(vec![2u8; 7]));
        assert_eq!(at(2, 0), Some(vec![3u8; 5]));
        assert_eq!(at(1, 0), None);
        assert_eq!(at(1, 10), None);
    }
}
