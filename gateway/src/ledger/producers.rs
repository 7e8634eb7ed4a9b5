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
/// How long a batch that skips sequences is answered "retry" rather than out of order, from
/// the first such answer for the same missing sequence.
///
/// A producer pipelines batches (librdkafka and the Java client keep up to 5 produce requests in
/// flight per connection with idempotence). When an earlier one fails retriably (this gateway
/// could not take the partition yet, or its SMQ write failed) and a later one arrives once the
/// partition accepts writes again, the later one skips the earlier one's sequences. Kafka
/// answers OUT_OF_ORDER_SEQUENCE_NUMBER; librdkafka then bumps its producer epoch and numbers
/// every unacknowledged record again from 0, also on other partitions, where records whose acks
/// a killed gateway never sent are stored already: they were stored twice (seen in a failover
/// test). The earlier batch comes back within a retry
/// backoff (at most 1 s in librdkafka and Java), so a gap is answered retriably for this long,
/// and only one that outlasts it is the producer's error.
pub const GAP_GRACE_MS: i64 = 10_000;

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
    /// The sequence missing before the batches answered [`GatewayError::SequenceGap`], and
    /// since when; cleared by the next stored batch.
    gap: Option<Gap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gap {
    epoch: i16,
    expected: i32,
    since_ms: i64,
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

/// Whether `got` lies after `expected` (sequences wrap at i32::MAX; half the range counts as
/// after, as in Kafka's comparisons).
fn is_after(expected: i32, got: i32) -> bool {
    let ahead = (i64::from(got) - i64::from(expected)).rem_euclid(i64::from(i32::MAX) + 1);
    ahead > 0 && ahead <= i64::from(i32::MAX) / 2
}

impl ProducerStates {
    /// Whether to store an idempotent batch arriving at `now_ms` (the gateway's clock).
    pub fn check(
        &mut self,
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        count: i32,
        now_ms: i64,
    ) -> GatewayResult<SequenceCheck> {
        let Some(p) = self.producers.get_mut(&producer_id) else {
            // Unknown producer (new, or state lost in a restart): accept whatever it sends.
            return Ok(SequenceCheck::Append);
        };
        if epoch < p.epoch {
            return Err(GatewayError::ProducerFenced {
                got: epoch,
                current: p.epoch,
            });
        }
        let expected = if epoch > p.epoch {
            // A new epoch starts at sequence 0, as in Kafka: otherwise its first batches were
            // lost (they failed here, retriably), and storing a later one would make the
            // producer count them as written (librdkafka acknowledges the records before a
            // stored batch without an offset: an "implicit ack").
            0
        } else {
            if let Some(dup) = p.batches.iter().find(|b| {
                b.base_sequence == base_sequence
                    && b.last_sequence == next_seq(base_sequence, count - 1)
            }) {
                return Ok(SequenceCheck::Duplicate {
                    base_offset: dup.base_offset,
                });
            }
            p.batches
                .back()
                .map(|b| next_seq(b.last_sequence, 1))
                .unwrap_or(base_sequence)
        };
        if base_sequence == expected {
            return Ok(SequenceCheck::Append);
        }
        if is_after(expected, base_sequence) {
            let since_ms = match p.gap {
                Some(g) if g.epoch == epoch && g.expected == expected => g.since_ms,
                _ => {
                    p.gap = Some(Gap {
                        epoch,
                        expected,
                        since_ms: now_ms,
                    });
                    now_ms
                }
            };
            // A clock that went back ends the grace rather than stretching it.
            if (0..GAP_GRACE_MS).contains(&(now_ms - since_ms)) {
                return Err(GatewayError::SequenceGap {
                    expected,
                    got: base_sequence,
                });
            }
        }
        Err(GatewayError::OutOfOrderSequence {
            expected,
            got: base_sequence,
        })
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
        p.gap = None;
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

    #[derive(Debug, PartialEq, Eq)]
    enum Refusal {
        Gap,
        OutOfOrder,
    }
    use Refusal::{Gap, OutOfOrder};

    /// A sequence refusal as (kind, expected, got); None for any other answer.
    fn refused(r: GatewayResult<SequenceCheck>) -> Option<(Refusal, i32, i32)> {
        match r {
            Err(GatewayError::SequenceGap { expected, got }) => Some((Gap, expected, got)),
            Err(GatewayError::OutOfOrderSequence { expected, got }) => {
                Some((OutOfOrder, expected, got))
            }
            _ => None,
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
            again.check(2, 3, i32::MAX, 2, 1_000).unwrap(),
            SequenceCheck::Duplicate { base_offset: 40 },
            "a batch whose sequence wraps"
        );
        s.forget_from(20);
        assert_eq!(s.check(1, 0, 10, 2, 1_000).unwrap(), SequenceCheck::Append);
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
    fn a_new_epoch_starts_at_sequence_zero() {
        let mut s = ProducerStates::default();
        s.record(&batch(7, 0, 0, 10, 0));
        // The producer bumped its epoch (librdkafka does after an out-of-order answer) and the
        // new epoch's first batch (sequence 0) failed: a later batch must not be stored.
        assert_eq!(refused(s.check(7, 1, 2, 5, 1_000)), Some((Gap, 0, 2)));
        assert_eq!(
            refused(s.check(7, 1, 2, 5, 1_000 + GAP_GRACE_MS)),
            Some((OutOfOrder, 0, 2))
        );
        assert_eq!(s.check(7, 1, 0, 2, 1_000).unwrap(), SequenceCheck::Append);
        s.record(&batch(7, 1, 0, 2, 10));
        assert_eq!(s.check(7, 1, 2, 5, 1_000).unwrap(), SequenceCheck::Append);
    }

    #[test]
    fn duplicates_gaps_and_fencing() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(7, 0, 0, 3, 1_000).unwrap(), SequenceCheck::Append);
        s.record(&batch(7, 0, 0, 3, 100));
        assert_eq!(
            s.check(7, 0, 0, 3, 1_000).unwrap(),
            SequenceCheck::Duplicate { base_offset: 100 }
        );
        // Sequences 3 and 4 are missing: retriable while their batch may still come, the
        // producer's error once it did not come within the grace.
        assert_eq!(refused(s.check(7, 0, 5, 1, 1_000)), Some((Gap, 3, 5)));
        assert_eq!(
            refused(s.check(7, 0, 6, 1, 1_000 + GAP_GRACE_MS - 1)),
            Some((Gap, 3, 6))
        );
        assert_eq!(
            refused(s.check(7, 0, 5, 1, 1_000 + GAP_GRACE_MS)),
            Some((OutOfOrder, 3, 5))
        );
        assert_eq!(
            refused(s.check(7, 0, 5, 1, 500)),
            Some((OutOfOrder, 3, 5)),
            "a clock that went back ends the grace"
        );
        // A batch before the expected sequence that is no remembered batch is never retried
        // into place.
        assert_eq!(
            refused(s.check(7, 0, 1, 1, 1_000)),
            Some((OutOfOrder, 3, 1))
        );
        assert_eq!(s.check(7, 0, 3, 1, 1_000).unwrap(), SequenceCheck::Append);
        s.record(&batch(7, 0, 3, 1, 103));
        assert_eq!(
            refused(s.check(7, 0, 9, 1, 1_000 + GAP_GRACE_MS)),
            Some((Gap, 4, 9)),
            "a stored batch starts the grace of the next gap afresh"
        );
        s.record(&batch(7, 1, 0, 1, 200));
        assert!(matches!(
            s.check(7, 0, 4, 1, 1_000),
            Err(GatewayError::ProducerFenced { .. })
        ));
        assert_eq!(
            s.check(8, 0, 42, 1, 1_000).unwrap(),
            SequenceCheck::Append,
            "unknown producer"
        );
    }
}
