//! Idempotent-producer state per partition: rejects sequence gaps, answers retried batches with
//! their original offset instead of storing them twice, and fences old epochs.
//!
//! Every stored idempotent batch is persisted with its ledger entry ([`ProducerBatch`]), so a
//! restart or a takeover rebuilds the state and a retry after it is still recognised. Producers
//! idle for longer than [`PRODUCER_EXPIRY_MS`] are forgotten, as Kafka does
//! (`producer.id.expiration.ms`, KIP-854), so the state does not grow with every producer that
//! ever wrote.

use std::collections::{HashMap, VecDeque};

use crate::error::{GatewayError, GatewayResult};

/// Batches remembered per producer for duplicate detection (Kafka keeps 5 in flight).
const REMEMBERED: usize = 5;
/// Kafka's default `producer.id.expiration.ms`: one day.
pub const PRODUCER_EXPIRY_MS: i64 = 86_400_000;
/// Expired producers are looked for after this many new ones.
const EXPIRE_EVERY: usize = 1024;

/// One idempotent batch as stored: who sent it, its sequences, where it went and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
    pub count: i32,
    pub base_offset: i64,
    /// The gateway's clock when the batch was appended (ms).
    pub time_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Appended {
    base_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
}

#[derive(Debug, Default, Clone)]
struct Producer {
    epoch: i16,
    batches: VecDeque<Appended>,
    last_time_ms: i64,
}

/// What to do with an incoming idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Store it.
    Append,
    /// Already stored at this base offset: acknowledge without storing again.
    Duplicate { base_offset: i64 },
}

#[derive(Debug, Default, Clone)]
pub struct ProducerStates {
    producers: HashMap<i64, Producer>,
    /// New producers since the last look for expired ones.
    added: usize,
}

fn next_seq(seq: i32, count: i32) -> i32 {
    // Sequences wrap at i32::MAX like Kafka's.
    ((i64::from(seq) + i64::from(count)) % (i64::from(i32::MAX) + 1)) as i32
}

impl ProducerStates {
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        count: i32,
    ) -> GatewayResult<SequenceCheck> {
        let Some(p) = self.producers.get(&producer_id) else {
            // Unknown producer (new, or state lost in a restart): accept whatever it sends.
            return Ok(SequenceCheck::Append);
        };
        if epoch < p.epoch {
            return Err(GatewayError::ProducerFenced {
                got: epoch,
                current: p.epoch,
            });
        }
        if epoch > p.epoch {
            return Ok(SequenceCheck::Append);
        }
        if let Some(dup) = p.batches.iter().find(|b| {
            b.base_sequence == base_sequence
                && b.last_sequence == next_seq(base_sequence, count - 1)
        }) {
            return Ok(SequenceCheck::Duplicate {
                base_offset: dup.base_offset,
            });
        }
        let expected = p
            .batches
            .back()
            .map(|b| next_seq(b.last_sequence, 1))
            .unwrap_or(base_sequence);
        if base_sequence != expected {
            return Err(GatewayError::OutOfOrderSequence {
                expected,
                got: base_sequence,
            });
        }
        Ok(SequenceCheck::Append)
    }

    /// Remembers a stored batch (the last few per producer).
    pub fn record(&mut self, b: &ProducerBatch) {
        if !self.producers.contains_key(&b.producer_id) {
            self.added += 1;
            if self.added >= EXPIRE_EVERY {
                self.added = 0;
                self.expire(b.time_ms.saturating_sub(PRODUCER_EXPIRY_MS));
            }
        }
        let p = self.producers.entry(b.producer_id).or_default();
        if b.epoch != p.epoch {
            p.epoch = b.epoch;
            p.batches.clear();
        }
        p.batches.push_back(Appended {
            base_sequence: b.base_sequence,
            last_sequence: next_seq(b.base_sequence, b.count - 1),
            base_offset: b.base_offset,
        });
        p.last_time_ms = p.last_time_ms.max(b.time_ms);
        while p.batches.len() > REMEMBERED {
            p.batches.pop_front();
        }
    }

    /// Forgets batches stored at `offset` or later (their ledger entries were superseded; the
    /// entries that replace them bring their own batches).
    pub fn forget_from(&mut self, offset: i64) {
        for p in self.producers.values_mut() {
            p.batches.retain(|b| b.base_offset < offset);
        }
        self.producers.retain(|_, p| !p.batches.is_empty());
    }

    /// Forgets producers whose last batch was appended before `before_ms`.
    pub fn expire(&mut self, before_ms: i64) {
        self.producers.retain(|_, p| p.last_time_ms >= before_ms);
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Every remembered batch (count 1 + last - base, in order per producer), to checkpoint.
    pub fn batches(&self) -> Vec<ProducerBatch> {
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        let mut out = Vec::new();
        for id in ids {
            let p = &self.producers[&id];
            for a in &p.batches {
                let count = (i64::from(a.last_sequence) - i64::from(a.base_sequence))
                    .rem_euclid(i64::from(i32::MAX) + 1)
                    + 1;
                out.push(ProducerBatch {
                    producer_id: id,
                    epoch: p.epoch,
                    base_sequence: a.base_sequence,
                    count: count as i32,
                    base_offset: a.base_offset,
                    time_ms: p.last_time_ms,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(id: i64, epoch: i16, seq: i32, count: i32, base: i64) -> ProducerBatch {
        ProducerBatch {
            producer_id: id,
            epoch,
            base_sequence: seq,
            count,
            base_offset: base,
            time_ms: 1_000,
        }
    }

    #[test]
    fn batches_read_back_rebuild_the_state_and_superseded_or_idle_ones_go() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record(&batch(1, 0, i * 2, 2, 10 + i64::from(i) * 2));
        }
        s.record(&batch(2, 3, i32::MAX, 2, 40));
        let mut again = ProducerStates::default();
        for b in s.batches() {
            again.record(&b);
        }
        assert_eq!(again.batches(), s.batches());
        assert_eq!(s.batches().len(), 6, "five per producer, and one");
        assert_eq!(
            again.check(2, 3, i32::MAX, 2).unwrap(),
            SequenceCheck::Duplicate { base_offset: 40 },
            "a batch whose sequence wraps"
        );
        s.forget_from(20);
        assert_eq!(s.check(1, 0, 10, 2).unwrap(), SequenceCheck::Append);
        assert_eq!(s.len(), 1, "producer 2's only batch was superseded");
        let mut t = ProducerStates::default();
        t.record(&ProducerBatch {
            time_ms: 5,
            ..batch(1, 0, 0, 1, 0)
        });
        t.record(&ProducerBatch {
            time_ms: 50,
            ..batch(2, 0, 0, 1, 1)
        });
        t.expire(10);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn duplicates_gaps_and_fencing() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(7, 0, 0, 3).unwrap(), SequenceCheck::Append);
        s.record(&batch(7, 0, 0, 3, 100));
        assert_eq!(
            s.check(7, 0, 0, 3).unwrap(),
            SequenceCheck::Duplicate { base_offset: 100 }
        );
        assert!(matches!(
            s.check(7, 0, 5, 1),
            Err(GatewayError::OutOfOrderSequence {
                expected: 3,
                got: 5
            })
        ));
        assert_eq!(s.check(7, 0, 3, 1).unwrap(), SequenceCheck::Append);
        s.record(&batch(7, 1, 0, 1, 200));
        assert!(matches!(
            s.check(7, 0, 4, 1),
            Err(GatewayError::ProducerFenced { .. })
        ));
        assert_eq!(
            s.check(8, 0, 42, 1).unwrap(),
            SequenceCheck::Append,
            "unknown producer"
        );
    }
}
