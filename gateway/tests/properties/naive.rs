//! The oracle: the ledger as a plain list of entries, one per produce request, answering every
//! query by scanning it. What the compact ledger answers must agree with it.

use kafka_gateway::ledger::{LedgerEntry, Run};

/// An entry and whether its timestamp is only an upper bound (it was cut short inside).
#[derive(Debug, Clone, Copy)]
pub struct Held {
    pub e: LedgerEntry,
    pub bound: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Naive {
    pub start: i64,
    pub entries: Vec<Held>,
}

fn valid(e: &LedgerEntry) -> bool {
    e.count >= 1
        && e.smq_count >= 1
        && e.smq_count <= e.count
        && e.kafka_offset.checked_add(e.count.into()).is_some()
        && e.smq_offset.checked_add(e.smq_count.into()).is_some()
}

impl Naive {
    pub fn next(&self) -> i64 {
        self.entries.last().map_or(self.start, |h| h.e.end())
    }

    pub fn append(&mut self, e: LedgerEntry) -> bool {
        if !valid(&e) || e.kafka_offset != self.next() {
            return false;
        }
        self.entries.push(Held { e, bound: false });
        true
    }

    /// A superseding entry replaces everything from its start, which must be an entry's start
    /// or inside an exact entry (that entry is then cut short there).
    pub fn replay(&mut self, e: LedgerEntry) -> bool {
        if !valid(&e) || e.kafka_offset > self.next() || e.kafka_offset < self.start {
            return false;
        }
        if e.kafka_offset < self.next() {
            let i = self
                .entries
                .partition_point(|h| h.e.end() <= e.kafka_offset);
            let h = self.entries[i];
            if h.e.kafka_offset == e.kafka_offset {
                self.entries.truncate(i);
            } else if h.e.is_exact() {
                let n = (e.kafka_offset - h.e.kafka_offset) as u32;
                self.entries.truncate(i + 1);
                self.entries[i] = Held {
                    e: LedgerEntry {
                        count: n,
                        smq_count: n,
                        ..h.e
                    },
                    bound: true,
                };
            } else {
                return false;
            }
        }
        self.entries.push(Held { e, bound: false });
        true
    }

    /// Retention to `start`, which must be an entry start (or the end).
    pub fn drop_before(&mut self, start: i64) -> bool {
        let i = self.entries.partition_point(|h| h.e.kafka_offset < start);
        if start != self.next()
            && self
                .entries
                .get(i)
                .is_none_or(|h| h.e.kafka_offset != start)
        {
            return false;
        }
        self.entries.drain(..i);
        self.start = start;
        true
    }

    pub fn is_start(&self, k: i64) -> bool {
        k == self.next() || self.entries.iter().any(|h| h.e.kafka_offset == k)
    }

    pub fn has_bound(&self) -> bool {
        self.entries.iter().any(|h| h.bound)
    }

    pub fn entry_at(&self, offset: i64) -> Option<&LedgerEntry> {
        self.entries
            .iter()
            .map(|h| &h.e)
            .find(|e| e.kafka_offset <= offset && offset < e.end())
    }

    /// (SMQ record a read starts at, the Kafka offset it starts with, nonce).
    pub fn locate(&self, offset: i64) -> Option<(i64, i64, u64)> {
        let e = self.entry_at(offset)?;
        Some(if e.is_exact() {
            (e.smq_offset + (offset - e.kafka_offset), offset, e.nonce)
        } else {
            (e.smq_offset, e.kafka_offset, e.nonce)
        })
    }

    pub fn kafka_offset_of(&self, smq: i64) -> Option<i64> {
        let e = self
            .entries
            .iter()
            .rev()
            .map(|h| &h.e)
            .find(|e| smq >= e.smq_offset && smq < e.smq_end())?;
        Some(if e.is_exact() {
            e.kafka_offset + (smq - e.smq_offset)
        } else {
            e.kafka_offset
        })
    }

    /// The gateway's `contiguous_runs` as it was over a list of entries.
    pub fn runs_from(&self, offset: i64, limit: i64) -> Vec<Run> {
        let Some(first) = self
            .entries
            .iter()
            .position(|h| h.e.kafka_offset <= offset && offset < h.e.end())
        else {
            return Vec::new();
        };
        let (smq_at, _, _) = self.locate(offset).expect("held");
        let mut runs: Vec<Run> = Vec::new();
        let mut left = limit;
        for (i, h) in self.entries[first..].iter().enumerate() {
            let e = h.e;
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
                    (offset, smq_at)
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

    /// Kafka offsets of the entries whose SMQ offset goes back from the entry before.
    pub fn smq_regressions(&self) -> Vec<i64> {
        self.entries
            .windows(2)
            .filter(|w| w[1].e.smq_offset < w[0].e.smq_end())
            .map(|w| w[1].e.kafka_offset)
            .collect()
    }

    /// (How many entries are older than the one before them, the first of them).
    pub fn ts_regressions(&self) -> (u64, Option<i64>) {
        let older: Vec<i64> = self
            .entries
            .windows(2)
            .filter(|w| w[1].e.max_timestamp < w[0].e.max_timestamp)
            .map(|w| w[1].e.kafka_offset)
            .collect();
        (older.len() as u64, older.first().copied())
    }

    pub fn max_timestamp(&self) -> Option<i64> {
        self.entries.iter().map(|h| h.e.max_timestamp).max()
    }

    pub fn first_at_or_after(&self, ts: i64) -> Option<&LedgerEntry> {
        self.entries
            .iter()
            .map(|h| &h.e)
            .find(|e| e.max_timestamp >= ts)
    }
}
