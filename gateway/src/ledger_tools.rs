//! The ledger inspection tools behind `kafka-gateway ledger …` and the /ledger endpoints.

use serde_json::{Value, json};

use crate::ledger::PartitionLedger;

/// The full mapping of one Kafka offset.
pub fn describe_offset(topic: &str, partition: i32, offset: i64, l: &PartitionLedger) -> Value {
    let loc = l.locate(offset);
    json!({
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "log_start_offset": l.log_start(),
        "high_water_mark": l.next_offset(),
        "found": loc.is_some(),
        "smq_offset": loc.map(|x| x.smq_offset),
        "read_from": loc.map(|x| x.read_from),
        "nonce": loc.map(|x| x.nonce),
        "entry": loc.and_then(|x| x.entry),
        "segment": loc.map(|x| x.segment),
        "ledger": l.summary(),
    })
}
