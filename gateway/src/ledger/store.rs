//! Persistence of ledger entries in the SMQ topic `kafka-system/offset-mappings`.
//!
//! Every entry is one SMQ record on the mapping partition chosen by a stable hash of the data
//! topic and partition, so one data partition's entries stay in write order. Recovery reads every
//! mapping partition completely (see [`SystemTopic::read_all`]) and replays it.

use std::collections::HashMap;
use std::time::Duration;

use prost::Message;
use smq_client::SmqClient;
use smq_proto::schema_pb::{RecordType, RecordValue, ScalarType};

use super::{LedgerEntry, PartitionLedger};
use crate::error::GatewayResult;
use crate::record_value::{get_int, get_string, int32, int64, scalar_field, stable_slot, string};
use crate::system_topic::{SYSTEM_NAMESPACE, SystemTopic};

pub const MAPPINGS_TOPIC: &str = "offset-mappings";
const MAPPING_PARTITIONS: i32 = 16;

/// One persisted ledger entry, naming its data partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRecord {
    /// `namespace/name` of the SMQ data topic.
    pub topic: String,
    pub partition: i32,
    /// The SMQ generation (`unix_time_ns`) of the data partition the entry points into.
    pub generation: i64,
    pub entry: LedgerEntry,
}

/// Ledgers recovered at startup, keyed by (`namespace/name`, partition).
pub type RecoveredLedgers = HashMap<(String, i32), PartitionLedger>;

/// Where an appended entry went, to ask later whether SMQ has written it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerToken {
    slot: i32,
    /// None: the store's publisher does not track durability (durable acks are off).
    seq: Option<u64>,
}

pub struct LedgerStore {
    log: SystemTopic,
}

impl std::fmt::Debug for LedgerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerStore")
            .field("log", &self.log)
            .finish()
    }
}

fn mapping_record_type() -> RecordType {
    RecordType {
        fields: vec![
            scalar_field("topic_partition", 0, ScalarType::String),
            scalar_field("topic", 1, ScalarType::String),
            scalar_field("partition", 2, ScalarType::Int32),
            scalar_field("kafka_offset", 3, ScalarType::Int64),
            scalar_field("count", 4, ScalarType::Int32),
            scalar_field("smq_offset", 5, ScalarType::Int64),
            scalar_field("generation", 6, ScalarType::Int64),
            scalar_field("max_timestamp", 7, ScalarType::Int64),
            scalar_field("smq_count", 8, ScalarType::Int32),
            scalar_field("nonce", 9, ScalarType::Int64),
        ],
    }
}

/// The `kafka-system/offset-mappings` partition that holds the ledger entries of data
/// partition `partition` of the SMQ topic `topic` (`namespace/name`): appends to the data
/// partition need it as much as the data partition itself.
pub fn mapping_partition(topic: &str, partition: i32) -> i32 {
    slot(topic, partition)
}

/// The mapping partition of a data partition's entries.
fn slot(topic: &str, partition: i32) -> i32 {
    let mut key = topic.as_bytes().to_vec();
    key.extend(partition.to_be_bytes());
    stable_slot(&key, MAPPING_PARTITIONS)
}

pub fn encode(rec: &LedgerRecord) -> Vec<u8> {
    let e = &rec.entry;
    let fields = HashMap::from([
        (
            "topic_partition".to_string(),
            string(format!("{}/{}", rec.topic, rec.partition)),
        ),
        ("topic".to_string(), string(rec.topic.as_str())),
        ("partition".to_string(), int32(rec.partition)),
        ("kafka_offset".to_string(), int64(e.kafka_offset)),
        ("count".to_string(), int32(e.count as i32)),
        ("smq_offset".to_string(), int64(e.smq_offset)),
        ("generation".to_string(), int64(rec.generation)),
        ("max_timestamp".to_string(), int64(e.max_timestamp)),
        ("smq_count".to_string(), int32(e.smq_count as i32)),
        ("nonce".to_string(), int64(e.nonce as i64)),
    ]);
    RecordValue { fields }.encode_to_vec()
}

/// Decodes one persisted entry; None for anything else (recovery skips it with a warning).
pub fn decode(data: &[u8]) -> Option<LedgerRecord> {
    let f = RecordValue::decode(data).ok()?.fields;
    let get_i = |k: &str| get_int(&f, k);
    let get_s = |k: &str| get_string(&f, k);
    let count = u32::try_from(get_i("count")?).ok()?;
    Some(LedgerRecord {
        topic: get_s("topic")?,
        partition: get_i("partition")? as i32,
        generation: get_i("generation").unwrap_or(0),
        entry: LedgerEntry {
            kafka_offset: get_i("kafka_offset")?,
            count,
            smq_offset: get_i("smq_offset")?,
            // Entries written before the batch format have one SMQ record per offset.
            smq_count: match get_i("smq_count") {
                Some(n) => u32::try_from(n).ok()?,
                None => count,
            },
            max_timestamp: get_i("max_timestamp").unwrap_or(-1),
            // Entries written before the nonce: their records are not checked by key.
            nonce: get_i("nonce").unwrap_or(0) as u64,
        },
    })
}

impl LedgerStore {
    /// Opens (creating if needed) the mapping topic.
    pub async fn open(client: SmqClient) -> GatewayResult<Self> {
        Ok(Self {
            log: SystemTopic::open(
                client,
                MAPPINGS_TOPIC,
                MAPPING_PARTITIONS,
                mapping_record_type(),
            )
            .await?,
        })
    }

    /// Persists one entry; returns once SMQ has acknowledged it, with a token that tells when
    /// SMQ has also written it ([`LedgerStore::is_durable`]).
    pub async fn append(&self, rec: &LedgerRecord) -> GatewayResult<LedgerToken> {
        // Unique keys: SMQ holds back a subscriber's next record with a key still unacknowledged.
        let key =
            format!("{}/{}@{}", rec.topic, rec.partition, rec.entry.kafka_offset).into_bytes();
        let slot = slot(&rec.topic, rec.partition);
        let seq = self.log.append(slot, key, encode(rec)).await?;
        Ok(LedgerToken { slot, seq })
    }

    /// Whether the entry appended with `token` is written by SMQ, not only in a broker's memory.
    pub fn is_durable(&self, token: LedgerToken) -> bool {
        token
            .seq
            .is_none_or(|seq| seq < self.log.durable_before(token.slot))
    }

    async fn read_slot(
        &self,
        slot: i32,
        read_timeout: Duration,
    ) -> GatewayResult<Vec<LedgerRecord>> {
        let messages = self.log.read_all(slot, read_timeout).await?;
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            match decode(&m.value) {
                Some(r) => out.push(r),
                None => tracing::warn!(slot, "skipping an undecodable ledger record"),
            }
        }
        Ok(out)
    }

    /// Reads every persisted entry and rebuilds each partition's ledger.
    pub async fn recover(&self, read_timeout: Duration) -> GatewayResult<RecoveredLedgers> {
        let reads = (0..MAPPING_PARTITIONS).map(|p| self.read_slot(p, read_timeout));
        let mut ledgers = RecoveredLedgers::new();
        let mut problems = 0usize;
        for records in futures::future::join_all(reads).await {
            problems += replay_into(&mut ledgers, records?);
        }
        tracing::info!(
            partitions = ledgers.len(),
            entries = ledgers.values().map(|l| l.len()).sum::<usize>(),
            problems,
            "ledger recovered from {SYSTEM_NAMESPACE}/{MAPPINGS_TOPIC}"
        );
        Ok(ledgers)
    }

    /// Rebuilds one data partition's ledger from what is persisted now: what a gateway must do
    /// when it takes a partition over, since another gateway may have written since it started.
    pub async fn recover_partition(
        &self,
        topic: &str,
        partition: i32,
        read_timeout: Duration,
    ) -> GatewayResult<PartitionLedger> {
        let records = self
            .read_slot(slot(topic, partition), read_timeout)
            .await?
            .into_iter()
            .filter(|r| r.topic == topic && r.partition == partition)
            .collect();
        let mut ledgers = RecoveredLedgers::new();
        replay_into(&mut ledgers, records);
        Ok(ledgers
            .remove(&(topic.to_string(), partition))
            .unwrap_or_default())
    }

    pub async fn close(&self) {
        self.log.close().await;
    }
}

/// Replays records in order; returns how many were refused.
pub fn replay_into(ledgers: &mut RecoveredLedgers, records: Vec<LedgerRecord>) -> usize {
    let mut problems = 0;
    for rec in records {
        let ledger = ledgers
            .entry((rec.topic.clone(), rec.partition))
            .or_default();
        if let Err(e) = ledger.replay(rec.entry) {
            problems += 1;
            tracing::error!(topic = %rec.topic, partition = rec.partition, error = %e, "ledger entry refused during recovery");
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_slots_are_stable() {
        let rec = LedgerRecord {
            topic: "kafka/orders".into(),
            partition: 2,
            generation: 99,
            entry: LedgerEntry {
                kafka_offset: 10,
                count: 3,
                smq_offset: 12,
                smq_count: 2,
                max_timestamp: 5,
                nonce: u64::MAX - 5,
            },
        };
        assert_eq!(decode(&encode(&rec)), Some(rec));
        assert_eq!(slot("kafka/orders", 2), slot("kafka/orders", 2));
        let spread: std::collections::HashSet<_> =
            (0..64).map(|p| slot("kafka/orders", p)).collect();
        assert!(
            spread.len() > 8,
            "partitions spread over mapping partitions: {spread:?}"
        );
    }
}
