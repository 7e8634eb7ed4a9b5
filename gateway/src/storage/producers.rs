//! Idempotent-producer state per partition: rejects sequence gaps, answers retried batches with
//! their original offset instead of storing them twice, and fences old epochs.

use std::collections::{HashMap, VecDeque};

use crate::error::{GatewayError, GatewayResult};

/// Batches remembered per producer for duplicate detection (Kafka keeps 5 in flight).
const REMEMBERED: usize = 5;

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
            // A new epoch starts at sequence 0, as in Kafka: otherwise its first batches were
            // lost (they failed here, retriably), and storing a later one would make the
            // producer count them as written (librdkafka acknowledges the records before a
            // stored batch without an offset: an "implicit ack").
            if base_sequence != 0 {
                return Err(GatewayError::OutOfOrderSequence {
                    expected: 0,
                    got: base_sequence,
                });
            }
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

    pub fn record(
        &mut self,
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        count: i32,
        base_offset: i64,
    ) {
        let p = self.producers.entry(producer_id).or_default();
        if epoch != p.epoch {
            p.epoch = epoch;
            p.batches.clear();
        }
        p.batches.push_back(Appended {
            base_sequence,
            last_sequence: next_seq(base_sequence, count - 1),
            base_offset,
        });
        while p.batches.len() > REMEMBERED {
            p.batches.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_gaps_and_fencing() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(7, 0, 0, 3).unwrap(), SequenceCheck::Append);
        s.record(7, 0, 0, 3, 100);
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
        s.record(7, 1, 0, 1, 200);
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

    #[test]
    fn a_new_epoch_starts_at_sequence_zero() {
        let mut s = ProducerStates::default();
        s.record(7, 0, 0, 10, 0);
        // The producer bumped its epoch (librdkafka does after an out-of-order answer) and the
        // new epoch's first batch (sequence 0) failed: a later batch must not be stored.
        assert!(matches!(
            s.check(7, 1, 2, 5),
            Err(GatewayError::OutOfOrderSequence {
                expected: 0,
                got: 2
            })
        ));
        assert_eq!(s.check(7, 1, 0, 2).unwrap(), SequenceCheck::Append);
        s.record(7, 1, 0, 2, 10);
        assert_eq!(s.check(7, 1, 2, 5).unwrap(), SequenceCheck::Append);
    }
}
