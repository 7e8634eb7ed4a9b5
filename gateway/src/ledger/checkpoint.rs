//! The ledgers of one mapping partition as checkpoint bytes: a count, then per data partition
//! its topic, partition and ledger. Every length is checked before use: the bytes come back
//! from storage.

use std::collections::HashMap;

use super::producers::{PRODUCER_EXPIRY_MS, ProducerBatch, ProducerStates};
use super::{PartitionLedger, RecoveredLedgers, RecoveredProducers};

/// 4 added each partition's leader epoch; 3 (without it) is still read.
const VERSION: u8 = 4;

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err(format!(
                "checkpoint truncated: {n} bytes wanted, {} left",
                self.b.len()
            ));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().map_err(|_| "u32")?,
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().map_err(|_| "u64")?,
        ))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(self.u64()? as i64)
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(self.u32()? as i32)
    }

    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().map_err(|_| "i16")?,
        ))
    }
}

fn producers_bytes(p: Option<&ProducerStates>, out: &mut Vec<u8>) {
    let batches = p.map(ProducerStates::batches).unwrap_or_default();
    // Producers idle for a day before the newest batch are forgotten here as they would be live.
    let newest = batches.iter().map(|b| b.time_ms).max().unwrap_or(0);
    let kept: Vec<&ProducerBatch> = batches
        .iter()
        .filter(|b| b.time_ms >= newest.saturating_sub(PRODUCER_EXPIRY_MS))
        .collect();
    out.extend_from_slice(&(kept.len() as u32).to_be_bytes());
    for b in kept {
        out.extend_from_slice(&b.producer_id.to_be_bytes());
        out.extend_from_slice(&b.epoch.to_be_bytes());
        out.extend_from_slice(&b.base_sequence.to_be_bytes());
        out.extend_from_slice(&b.count.to_be_bytes());
        out.extend_from_slice(&b.base_offset.to_be_bytes());
        out.extend_from_slice(&b.time_ms.to_be_bytes());
    }
}

fn producers_from(r: &mut Reader<'_>) -> Result<ProducerStates, String> {
    let n = r.u32()? as usize;
    let mut s = ProducerStates::default();
    for _ in 0..n {
        let b = ProducerBatch {
            producer_id: r.i64()?,
            epoch: r.i16()?,
            base_sequence: r.i32()?,
            count: r.i32()?,
            base_offset: r.i64()?,
            time_ms: r.i64()?,
        };
        if b.count < 1 {
            return Err(format!("producer batch of {} records", b.count));
        }
        s.record(&b);
    }
    Ok(s)
}

/// A ledger as its own snapshot encoding (compact: a segment per discontinuity), length first.
fn ledger_bytes(l: &PartitionLedger, out: &mut Vec<u8>) {
    let snapshot = l.encode_snapshot();
    out.extend_from_slice(&(snapshot.len() as u32).to_be_bytes());
    out.extend_from_slice(&snapshot);
}

fn ledger_from(r: &mut Reader<'_>) -> Result<PartitionLedger, String> {
    let len = r.u32()? as usize;
    PartitionLedger::decode_snapshot(r.take(len)?)
}

pub fn encode_ledgers(
    ledgers: &RecoveredLedgers,
    producers: &RecoveredProducers,
    log_starts: &HashMap<(String, i32), i64>,
    epochs: &HashMap<(String, i32), i64>,
) -> Vec<u8> {
    let mut keys: Vec<_> = ledgers.keys().collect();
    keys.sort();
    let mut out = vec![VERSION];
    out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
    for key in keys {
        let (topic, partition) = key;
        out.extend_from_slice(&(topic.len() as u32).to_be_bytes());
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(&partition.to_be_bytes());
        ledger_bytes(&ledgers[key], &mut out);
        producers_bytes(producers.get(key), &mut out);
        out.extend_from_slice(&log_starts.get(key).copied().unwrap_or(-1).to_be_bytes());
        out.extend_from_slice(&epochs.get(key).copied().unwrap_or(0).to_be_bytes());
    }
    out
}

/// Ledgers, producers, log starts and leader epochs (see [`encode_ledgers`]).
pub type DecodedSlot = (
    RecoveredLedgers,
    RecoveredProducers,
    HashMap<(String, i32), i64>,
    HashMap<(String, i32), i64>,
);

pub fn decode_ledgers(bytes: &[u8]) -> Result<DecodedSlot, String> {
    let mut r = Reader { b: bytes };
    let v = r.u8()?;
    if v != VERSION && v != 3 {
        return Err(format!("ledger checkpoint version {v} unknown"));
    }
    let n = r.u32()? as usize;
    let mut out = RecoveredLedgers::new();
    let mut producers = RecoveredProducers::new();
    let mut log_starts = HashMap::new();
    let mut epochs = HashMap::new();
    for _ in 0..n {
        let len = r.u32()? as usize;
        let topic = std::str::from_utf8(r.take(len)?)
            .map_err(|e| format!("topic name: {e}"))?
            .to_string();
        let partition = r.u32()? as i32;
        let ledger = ledger_from(&mut r)?;
        let p = producers_from(&mut r)?;
        if !p.is_empty() {
            producers.insert((topic.clone(), partition), p);
        }
        let start = r.i64()?;
        if start >= 0 {
            log_starts.insert((topic.clone(), partition), start);
        }
        let epoch = if v >= 4 { r.i64()? } else { 0 };
        if epoch != 0 {
            epochs.insert((topic.clone(), partition), epoch);
        }
        out.insert((topic, partition), ledger);
    }
    if !r.b.is_empty() {
        return Err(format!("{} bytes after the last ledger", r.b.len()));
    }
    Ok((out, producers, log_starts, epochs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::LedgerEntry;

    #[test]
    fn ledgers_round_trip_and_damage_is_an_error() {
        let mut ledgers = RecoveredLedgers::new();
        let mut l = PartitionLedger::new();
        for k in 0..5 {
            l.append(LedgerEntry {
                kafka_offset: k * 2,
                count: 2,
                smq_offset: k * 3,
                smq_count: 1,
                max_timestamp: k,
                nonce: 9,
            })
            .unwrap();
        }
        ledgers.insert(("kafka/a".to_string(), 3), l);
        ledgers.insert(("kafka/b".to_string(), 0), PartitionLedger::new());
        let mut producers = RecoveredProducers::new();
        let mut p = ProducerStates::default();
        p.record(&ProducerBatch {
            producer_id: 4,
            epoch: 1,
            base_sequence: 0,
            count: 2,
            base_offset: 6,
            time_ms: 99,
        });
        producers.insert(("kafka/a".to_string(), 3), p);
        let starts = HashMap::from([(("kafka/a".to_string(), 3), 5)]);
        let epochs = HashMap::from([(("kafka/b".to_string(), 0), 12)]);
        let bytes = encode_ledgers(&ledgers, &producers, &starts, &epochs);
        let (back, back_producers, back_starts, back_epochs) = decode_ledgers(&bytes).unwrap();
        assert_eq!(back_starts, starts);
        assert_eq!(back_epochs, epochs);
        assert_eq!(
            back_producers[&("kafka/a".to_string(), 3)].batches(),
            producers[&("kafka/a".to_string(), 3)].batches()
        );
        assert_eq!(back.len(), 2);
        assert_eq!(
            back[&("kafka/a".to_string(), 3)],
            ledgers[&("kafka/a".to_string(), 3)]
        );
        for cut in [0, 1, 5, bytes.len() - 1] {
            assert!(decode_ledgers(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_ledgers(&longer).is_err());
    }
}
