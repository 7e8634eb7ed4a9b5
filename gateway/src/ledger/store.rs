//! Persistence of ledger entries in the SMQ topic `kafka-system/offset-mappings`.
//!
//! Every entry is one SMQ record on the mapping partition chosen by a stable hash of the data
//! topic and partition, so one data partition's entries stay in write order. Recovery reads every
//! mapping partition completely (see [`SystemTopic::read_all`]) and replays it.

use std::collections::HashMap;
use std::time::Duration;

use prost::Message;
use smq_client::SmqClient;
use smq_proto::schema_pb::{
    ListType, ListValue, RecordType, RecordValue, ScalarType, Type, Value, r#type, value,
};

use super::producers::{ProducerBatch, ProducerStates};
use super::{LedgerEntry, PartitionLedger};
use crate::error::GatewayResult;
use crate::record_value::{get_int, get_string, int32, int64, scalar_field, stable_slot, string};
use crate::state::{Replay, SYSTEM_NAMESPACE, SystemTopic};

pub const MAPPINGS_TOPIC: &str = "offset-mappings";
const MAPPING_PARTITIONS: i32 = 16;
/// The field of a record holding several entries.
const ENTRIES: &str = "entries";
/// The field of a record moving a partition's log start.
const LOG_START: &str = "log_start";
/// The field of an entry holding its writer's leader epoch.
const LEADER_EPOCH: &str = "leader_epoch";

/// One persisted ledger entry, naming its data partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRecord {
    /// `namespace/name` of the SMQ data topic.
    pub topic: String,
    pub partition: i32,
    /// The SMQ generation (`unix_time_ns`) of the data partition the entry points into.
    pub generation: i64,
    pub entry: LedgerEntry,
    /// The idempotent batches stored in the entry's offsets.
    pub producers: Vec<ProducerBatch>,
    /// The leader epoch of the gateway that wrote it (0: written before epochs). Replay ignores
    /// an entry of an older epoch found after a newer epoch's first: a gateway that lost the
    /// partition while its write was on the way cannot replace its successor's entries.
    pub leader_epoch: i64,
}

/// What one persisted ledger record says: an entry, or a new log start (retention or
/// DeleteRecords moved it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerUpdate {
    Entry(LedgerRecord),
    LogStart {
        topic: String,
        partition: i32,
        offset: i64,
    },
}

/// A data partition's state as recovered: its ledger, its idempotent producers, its log start
/// (the ledger's, or higher where DeleteRecords set it inside an entry), and the mapping
/// partition its entries are in (None: it has none yet).
#[derive(Debug, Clone, Default)]
pub struct PartitionState {
    pub ledger: PartitionLedger,
    pub producers: ProducerStates,
    pub log_start: i64,
    pub home: Option<i32>,
    /// The highest leader epoch among the partition's entries.
    pub leader_epoch: i64,
}

impl PartitionState {
    /// The state, found in mapping partition `slot`: its home when it has anything.
    fn at(mut self, slot: i32) -> Self {
        if self.ledger.entry_count() > 0 || self.log_start > 0 {
            self.home = Some(slot);
        }
        self
    }

    /// The mapping partition the partition's entries go to.
    pub fn home_or(&self, topic: &str) -> i32 {
        self.home.unwrap_or_else(|| mapping_partition(topic))
    }
}

/// Ledgers recovered at startup, keyed by (`namespace/name`, partition).
pub type RecoveredLedgers = HashMap<(String, i32), PartitionLedger>;
/// Idempotent producers' state recovered with the ledgers, keyed alike.
pub type RecoveredProducers = HashMap<(String, i32), ProducerStates>;

/// Where an appended entry went, to ask later whether SMQ has written it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerToken {
    slot: i32,
    /// None: the store's publisher does not track durability (durable acks are off).
    seq: Option<u64>,
}

impl LedgerToken {
    /// The entry's place: its mapping partition and its number there, in write order (None
    /// when durability is not tracked).
    pub fn new(slot: i32, seq: Option<u64>) -> Self {
        Self { slot, seq }
    }

    pub fn seq(&self) -> Option<u64> {
        self.seq
    }
}

pub struct LedgerStore {
    log: std::sync::Arc<SystemTopic>,
    writers: super::writer::Writers,
}

impl std::fmt::Debug for LedgerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerStore")
            .field("log", &self.log)
            .finish()
    }
}

/// The fields of one entry.
fn entry_fields() -> Vec<smq_proto::schema_pb::Field> {
    vec![
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
        scalar_field("producers", 10, ScalarType::String),
        scalar_field(LOG_START, 12, ScalarType::Int64),
        scalar_field(LEADER_EPOCH, 13, ScalarType::Int64),
    ]
}

/// One entry per record, or several under `entries` (see [`encode_many`]).
fn mapping_record_type() -> RecordType {
    let mut fields = entry_fields();
    fields.push(smq_proto::schema_pb::Field {
        name: ENTRIES.to_string(),
        field_index: 11,
        r#type: Some(Type {
            kind: Some(r#type::Kind::ListType(Box::new(ListType {
                element_type: Some(Box::new(Type {
                    kind: Some(r#type::Kind::RecordType(RecordType {
                        fields: entry_fields(),
                    })),
                })),
            }))),
        }),
        is_repeated: false,
        is_required: false,
    });
    RecordType { fields }
}

/// The `kafka-system/offset-mappings` partition where the ledger entries of every partition of
/// the SMQ topic `topic` (`namespace/name`) go, unless the partition already has entries in
/// its [`legacy_slot`]: one per topic, so that group commit joins the entries of a produce's
/// partitions into one SMQ record. A partition's entries stay in one mapping partition for
/// good, which keeps them in write order.
pub fn mapping_partition(topic: &str) -> i32 {
    stable_slot(topic.as_bytes(), MAPPING_PARTITIONS)
}

/// Where gateways before per-topic mapping partitions wrote a data partition's entries.
pub fn legacy_slot(topic: &str, partition: i32) -> i32 {
    let mut key = topic.as_bytes().to_vec();
    key.extend(partition.to_be_bytes());
    stable_slot(&key, MAPPING_PARTITIONS)
}

pub fn encode(rec: &LedgerRecord) -> Vec<u8> {
    fields_of(rec).encode_to_vec()
}

fn fields_of(rec: &LedgerRecord) -> RecordValue {
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
    let mut fields = fields;
    if rec.leader_epoch != 0 {
        fields.insert(LEADER_EPOCH.to_string(), int64(rec.leader_epoch));
    }
    if !rec.producers.is_empty() {
        fields.insert(
            "producers".to_string(),
            string(encode_producers(&rec.producers)),
        );
    }
    RecordValue { fields }
}

/// Several entries in one SMQ record (one entry is written as before, so older readers and the
/// SQL tool see the same record as ever): a list of entries under `entries`.
pub fn encode_many(records: &[&LedgerRecord]) -> Vec<u8> {
    if let [one] = records {
        return encode(one);
    }
    let values = records
        .iter()
        .map(|r| Value {
            kind: Some(value::Kind::RecordValue(fields_of(r))),
        })
        .collect();
    let fields = HashMap::from([(
        ENTRIES.to_string(),
        Value {
            kind: Some(value::Kind::ListValue(ListValue { values })),
        },
    )]);
    RecordValue { fields }.encode_to_vec()
}

/// A new log start of a data partition, as one SMQ record.
pub fn encode_log_start(topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    let fields = HashMap::from([
        (
            "topic_partition".to_string(),
            string(format!("{topic}/{partition}")),
        ),
        ("topic".to_string(), string(topic)),
        ("partition".to_string(), int32(partition)),
        (LOG_START.to_string(), int64(offset)),
    ]);
    RecordValue { fields }.encode_to_vec()
}

/// What one SMQ record of the mapping topic says, in order; None for anything else (recovery
/// skips it with a warning).
pub fn decode_many(data: &[u8]) -> Option<Vec<LedgerUpdate>> {
    let rv = RecordValue::decode(data).ok()?;
    match rv.fields.get(ENTRIES).and_then(|v| v.kind.as_ref()) {
        Some(value::Kind::ListValue(list)) => list
            .values
            .iter()
            .map(|v| match &v.kind {
                Some(value::Kind::RecordValue(r)) => record_of(&r.fields).map(LedgerUpdate::Entry),
                _ => None,
            })
            .collect(),
        _ => match get_int(&rv.fields, LOG_START) {
            Some(offset) => Some(vec![LedgerUpdate::LogStart {
                topic: get_string(&rv.fields, "topic")?,
                partition: get_int(&rv.fields, "partition")? as i32,
                offset,
            }]),
            None => record_of(&rv.fields).map(|r| vec![LedgerUpdate::Entry(r)]),
        },
    }
}

/// Decodes one persisted entry; None for anything else (recovery skips it with a warning).
pub fn decode(data: &[u8]) -> Option<LedgerRecord> {
    record_of(&RecordValue::decode(data).ok()?.fields)
}

fn record_of(f: &HashMap<String, Value>) -> Option<LedgerRecord> {
    let get_i = |k: &str| get_int(f, k);
    let get_s = |k: &str| get_string(f, k);
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
        // Entries written before producers were persisted carry none.
        producers: match get_s("producers") {
            Some(text) => decode_producers(&text)?,
            None => Vec::new(),
        },
        leader_epoch: get_i(LEADER_EPOCH).unwrap_or(0),
    })
}

/// Idempotent batches as text, readable with SMQ's SQL tool:
/// `producer_id:epoch:base_sequence:count:base_offset:time_ms`, separated by `;`.
fn encode_producers(batches: &[ProducerBatch]) -> String {
    batches
        .iter()
        .map(|b| {
            format!(
                "{}:{}:{}:{}:{}:{}",
                b.producer_id, b.epoch, b.base_sequence, b.count, b.base_offset, b.time_ms
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn decode_producers(text: &str) -> Option<Vec<ProducerBatch>> {
    text.split(';')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let f: Vec<&str> = s.split(':').collect();
            let [id, epoch, seq, count, base, time] = f.as_slice() else {
                return None;
            };
            Some(ProducerBatch {
                producer_id: id.parse().ok()?,
                epoch: epoch.parse().ok()?,
                base_sequence: seq.parse().ok()?,
                count: count.parse().ok().filter(|c: &i32| *c > 0)?,
                base_offset: base.parse().ok()?,
                time_ms: time.parse().ok()?,
            })
        })
        .collect()
}

impl LedgerStore {
    /// Opens (creating if needed) the mapping topic.
    pub async fn open(client: SmqClient) -> GatewayResult<Self> {
        let log = std::sync::Arc::new(
            SystemTopic::open(
                client,
                MAPPINGS_TOPIC,
                MAPPING_PARTITIONS,
                mapping_record_type(),
            )
            .await?,
        );
        Ok(Self {
            writers: super::writer::Writers::start(log.clone()),
            log,
        })
    }

    /// Persists one data partition's entries, in order, in mapping partition `slot` (the
    /// partition's [`PartitionState::home`]); returns once SMQ has acknowledged them, with
    /// tokens that tell when SMQ has also written them ([`LedgerStore::is_durable`]). Entries
    /// queued together go in one SMQ record.
    pub async fn append(
        &self,
        slot: i32,
        records: Vec<LedgerRecord>,
    ) -> GatewayResult<Vec<LedgerToken>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let n = records.len();
        let seq = self.writers.write(slot, records).await?;
        Ok(vec![LedgerToken { slot, seq }; n])
    }

    /// Whether the entry appended with `token` is written by SMQ, not only in a broker's memory.
    pub fn is_durable(&self, token: LedgerToken) -> bool {
        token
            .seq
            .is_none_or(|seq| seq < self.log.durable_before(token.slot))
    }

    /// Reads every persisted entry (the newest checkpoint of each mapping partition and the
    /// entries after it) and rebuilds each partition's ledger.
    pub async fn recover(&self, read_timeout: Duration) -> GatewayResult<LedgerSlot> {
        let reads = (0..MAPPING_PARTITIONS).map(|p| self.log.load::<LedgerSlot>(p, read_timeout));
        let mut all = LedgerSlot::default();
        let mut replayed = 0usize;
        for (slot, loaded) in (0..).zip(futures::future::join_all(reads).await) {
            let loaded = loaded?;
            replayed += loaded.replayed;
            all.merge(slot, loaded.state);
        }
        all.ledgers
            .values_mut()
            .for_each(PartitionLedger::shrink_to_fit);
        tracing::info!(
            partitions = all.ledgers.len(),
            replayed,
            entries = all.ledgers.values().map(|l| l.entry_count()).sum::<u64>(),
            memory_bytes = all
                .ledgers
                .values()
                .map(|l| l.memory_bytes())
                .sum::<usize>(),
            problems = all.problems,
            "ledger recovered from {SYSTEM_NAMESPACE}/{MAPPINGS_TOPIC}"
        );
        Ok(all)
    }

    /// Rebuilds one data partition's ledger from what is persisted now: what a gateway must do
    /// when it takes a partition over, since another gateway may have written since it started.
    pub async fn recover_partition(
        &self,
        topic: &str,
        partition: i32,
        read_timeout: Duration,
    ) -> GatewayResult<PartitionState> {
        let key = (topic.to_string(), partition);
        let legacy = legacy_slot(topic, partition);
        let slot = mapping_partition(topic);
        // Entries written before per-topic mapping partitions stay where they are.
        let mut loaded = self.log.load::<LedgerSlot>(legacy, read_timeout).await?;
        if loaded.state.ledgers.contains_key(&key) || legacy == slot {
            return Ok(loaded.state.take(&key).at(legacy));
        }
        let mut loaded = self.log.load::<LedgerSlot>(slot, read_timeout).await?;
        Ok(loaded.state.take(&key).at(slot))
    }

    /// Persists a data partition's new log start (retention, DeleteRecords); returns once SMQ
    /// has acknowledged it.
    pub async fn set_log_start(
        &self,
        slot: i32,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> GatewayResult<()> {
        let key = format!("{topic}/{partition}@start{offset}").into_bytes();
        crate::metrics::smq_writes("ledger", 1);
        self.log
            .append(slot, key, encode_log_start(topic, partition, offset))
            .await?;
        Ok(())
    }

    /// Writes the mapping partitions' checkpoints when due, every `every`; runs until dropped.
    pub async fn keep_checkpointed(&self, owner: String, policy: crate::state::CheckpointPolicy) {
        self.log
            .clone()
            .keep_checkpointed::<LedgerSlot>(owner, policy)
            .await
    }

    /// Writes a checkpoint of every mapping partition that has entries after its newest one.
    pub async fn checkpoint_now(&self, read_timeout: Duration) -> GatewayResult<usize> {
        let mut written = 0;
        for p in 0..MAPPING_PARTITIONS {
            if self
                .log
                .checkpoint::<LedgerSlot>(p, read_timeout, Default::default(), true)
                .await?
                .is_some()
            {
                written += 1;
            }
        }
        Ok(written)
    }

    /// See [`SystemTopic::retained_bytes`].
    pub fn retained_bytes(&self) -> usize {
        self.log.retained_bytes()
    }

    pub async fn close(&self) {
        self.writers.stop();
        self.log.close().await;
    }
}

/// The ledgers of the data partitions whose entries one mapping partition holds.
#[derive(Debug, Default)]
pub struct LedgerSlot {
    pub ledgers: RecoveredLedgers,
    pub producers: RecoveredProducers,
    /// Log starts set inside the ledger's first block (DeleteRecords), above its own.
    pub log_starts: HashMap<(String, i32), i64>,
    /// The mapping partition each partition's entries were found in (after [`LedgerSlot::merge`]).
    pub homes: HashMap<(String, i32), i32>,
    /// The highest leader epoch replayed per partition.
    pub epochs: HashMap<(String, i32), i64>,
    /// Entries ignored because a newer leader epoch had begun before them.
    pub fenced: usize,
    /// Entries refused during replay (logged).
    pub problems: usize,
    /// Of those, entries that started past their ledger's end: the read missed entries SMQ
    /// acknowledged before them (see [`crate::state::Replay::gaps`]).
    pub gaps: usize,
}

impl LedgerSlot {
    /// Adds mapping partition `slot`'s partitions (each data partition is in one).
    pub fn merge(&mut self, slot: i32, other: LedgerSlot) {
        let LedgerSlot {
            ledgers,
            producers,
            log_starts,
            problems,
            homes: _,
            epochs,
            fenced,
            gaps,
        } = other;
        for key in ledgers.keys() {
            if let Some(other_slot) = self.homes.insert(key.clone(), slot) {
                tracing::error!(topic = %key.0, partition = key.1, slot, other_slot, "ledger entries of one partition in two mapping partitions; the later one is used");
            }
        }
        self.ledgers.extend(ledgers);
        self.producers.extend(producers);
        self.log_starts.extend(log_starts);
        self.epochs.extend(epochs);
        self.problems += problems;
        self.fenced += fenced;
        self.gaps += gaps;
    }

    /// Replays one update.
    pub fn apply_update(&mut self, u: LedgerUpdate) {
        match u {
            LedgerUpdate::Entry(rec) => self.replay(rec),
            LedgerUpdate::LogStart {
                topic,
                partition,
                offset,
            } => {
                let key = (topic, partition);
                let ledger = self.ledgers.entry(key.clone()).or_default();
                ledger.truncate_before(offset);
                let floor = self.log_starts.entry(key).or_insert(offset);
                *floor = (*floor).max(offset);
            }
        }
    }

    /// A partition's recovered state, taken out of the slot.
    pub fn take(&mut self, key: &(String, i32)) -> PartitionState {
        let mut ledger = self.ledgers.remove(key).unwrap_or_default();
        ledger.shrink_to_fit();
        let log_start = self
            .log_starts
            .remove(key)
            .unwrap_or(0)
            .max(ledger.log_start());
        PartitionState {
            ledger,
            producers: self.producers.remove(key).unwrap_or_default(),
            log_start,
            home: self.homes.remove(key),
            leader_epoch: self.epochs.remove(key).unwrap_or(0),
        }
    }

    /// Replays one record: its entry into the partition's ledger and, when the entry was taken,
    /// its idempotent batches into the partition's producer state (after forgetting those of
    /// the entries it superseded).
    pub fn replay(&mut self, rec: LedgerRecord) {
        let key = (rec.topic.clone(), rec.partition);
        let newest = self.epochs.entry(key.clone()).or_insert(0);
        if rec.leader_epoch < *newest {
            // State records can be read twice (sent again after a broken stream): a repeat of
            // what the ledger holds is no news.
            let repeat = self
                .ledgers
                .get(&key)
                .and_then(|l| l.locate(rec.entry.kafka_offset))
                .is_some_and(|l| {
                    l.nonce == rec.entry.nonce && l.read_from <= rec.entry.kafka_offset
                });
            if repeat {
                tracing::debug!(topic = %rec.topic, partition = rec.partition, offset = rec.entry.kafka_offset, epoch = rec.leader_epoch, newer = *newest, "a former leader's ledger entry read again");
            } else {
                self.fenced += 1;
                tracing::warn!(topic = %rec.topic, partition = rec.partition, offset = rec.entry.kafka_offset, epoch = rec.leader_epoch, newer = *newest, "ignoring a ledger entry of a former leader written after its successor began");
            }
            return;
        }
        *newest = rec.leader_epoch;
        let end = self
            .ledgers
            .get(&key)
            .map_or(0, PartitionLedger::next_offset);
        let start = rec.entry.kafka_offset;
        let batches = rec.producers.clone();
        if replay_into(&mut self.ledgers, vec![rec]) > 0 {
            self.problems += 1;
            if start > end {
                self.gaps += 1;
            }
            return;
        }
        let producers = self.producers.entry(key).or_default();
        if start < end {
            producers.forget_from(start);
        }
        for b in &batches {
            producers.record(b);
        }
    }
}

impl Replay for LedgerSlot {
    fn apply(&mut self, message: &smq_client::DataMessage) {
        match decode_many(&message.value) {
            Some(updates) => updates.into_iter().for_each(|u| self.apply_update(u)),
            None => tracing::warn!("skipping an undecodable ledger record"),
        }
    }

    fn encode(&self) -> Vec<u8> {
        super::checkpoint::encode_ledgers(
            &self.ledgers,
            &self.producers,
            &self.log_starts,
            &self.epochs,
        )
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (ledgers, producers, log_starts, epochs) = super::checkpoint::decode_ledgers(bytes)?;
        Ok(Self {
            ledgers,
            producers,
            log_starts,
            homes: HashMap::new(),
            problems: 0,
            epochs,
            fenced: 0,
            gaps: 0,
        })
    }

    fn gaps(&self) -> usize {
        self.gaps
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
            producers: vec![ProducerBatch {
                producer_id: 77,
                epoch: 2,
                base_sequence: i32::MAX,
                count: 3,
                base_offset: 10,
                time_ms: 123,
            }],
            leader_epoch: 7,
        };
        assert_eq!(decode(&encode(&rec)), Some(rec.clone()));
        let entry = |r: &LedgerRecord| LedgerUpdate::Entry(r.clone());
        assert_eq!(decode_many(&encode(&rec)), Some(vec![entry(&rec)]));
        let other = LedgerRecord {
            partition: 3,
            producers: Vec::new(),
            ..rec.clone()
        };
        let many = encode_many(&[&rec, &other, &rec]);
        assert_eq!(
            decode_many(&many),
            Some(vec![entry(&rec), entry(&other), entry(&rec)])
        );
        assert_eq!(decode(&many), None, "a list is not one entry");
        assert_eq!(
            decode_many(&encode_log_start("kafka/orders", 2, 40)),
            Some(vec![LedgerUpdate::LogStart {
                topic: "kafka/orders".to_string(),
                partition: 2,
                offset: 40
            }])
        );
        assert_eq!(
            decode(&encode_many(&[&rec])),
            Some(rec.clone()),
            "one entry as ever"
        );
        assert_eq!(
            legacy_slot("kafka/orders", 2),
            legacy_slot("kafka/orders", 2)
        );
        let spread: std::collections::HashSet<_> =
            (0..64).map(|p| legacy_slot("kafka/orders", p)).collect();
        assert!(
            spread.len() > 8,
            "partitions spread over mapping partitions: {spread:?}"
        );
    }
}

#[cfg(test)]
mod log_start_tests {
    use super::*;
    use crate::state::Replay;

    fn msg(value: Vec<u8>) -> smq_client::DataMessage {
        smq_client::DataMessage {
            key: Vec::new(),
            value,
            ts_ns: 0,
            ctrl: None,
        }
    }

    #[test]
    fn a_log_start_survives_replay_and_checkpoints() {
        let rec = |k: i64, n: u32| LedgerRecord {
            topic: "kafka/t".to_string(),
            partition: 0,
            generation: 1,
            entry: LedgerEntry {
                kafka_offset: k,
                count: n,
                smq_offset: k,
                smq_count: n,
                max_timestamp: k,
                nonce: 1,
            },
            producers: Vec::new(),
            leader_epoch: 0,
        };
        let mut slot = LedgerSlot::default();
        slot.apply(&msg(encode(&rec(0, 20))));
        slot.apply(&msg(encode(&rec(20, 5))));
        slot.apply(&msg(encode_log_start("kafka/t", 0, 20)));
        let mut again = LedgerSlot::decode(&slot.encode()).unwrap();
        again.apply(&msg(encode_log_start("kafka/t", 0, 23)));
        let state = again.take(&("kafka/t".to_string(), 0));
        assert_eq!(state.log_start, 23);
        assert_eq!(state.ledger.next_offset(), 25);
    }
}

#[cfg(test)]
mod epoch_tests {
    use super::*;
    use crate::state::Replay;

    fn rec(k: i64, n: u32, epoch: i64) -> LedgerRecord {
        LedgerRecord {
            topic: "kafka/t".to_string(),
            partition: 0,
            generation: 1,
            entry: LedgerEntry {
                kafka_offset: k,
                count: n,
                smq_offset: k + epoch * 1000,
                smq_count: n,
                max_timestamp: k,
                nonce: epoch as u64,
            },
            producers: Vec::new(),
            leader_epoch: epoch,
        }
    }

    #[test]
    fn a_former_leaders_late_entry_does_not_replace_its_successors() {
        let key = ("kafka/t".to_string(), 0);
        let history = [
            rec(0, 10, 3),
            // Leader 5 took over at 10 and wrote; leader 3's entry for 10 arrives late.
            rec(10, 5, 5),
            rec(10, 4, 3),
            rec(15, 5, 5),
        ];
        let mut slot = LedgerSlot::default();
        history.iter().for_each(|r| slot.replay(r.clone()));
        assert_eq!(slot.fenced, 1);
        // The first leader's entry read again (a state record sent twice) is a repeat.
        slot.replay(rec(0, 10, 3));
        assert_eq!(slot.fenced, 1);
        let ledger = slot.ledgers.get(&key).unwrap().clone();
        assert_eq!(ledger.next_offset(), 20);
        assert_eq!(ledger.locate(12).map(|l| l.smq_offset), Some(5012));
        // A checkpoint keeps the newest epoch, so the fence holds across it.
        let mut again = LedgerSlot::decode(&slot.encode()).unwrap();
        again.replay(rec(20, 1, 3));
        assert_eq!(again.fenced, 1);
        let state = again.take(&key);
        assert_eq!(state.leader_epoch, 5);
        assert_eq!(state.ledger.next_offset(), 20);
        // Entries from before epochs (0) replay as ever.
        let mut old = LedgerSlot::default();
        old.replay(rec(0, 1, 0));
        old.replay(rec(0, 2, 0));
        assert_eq!((old.fenced, old.take(&key).ledger.next_offset()), (0, 2));
    }

    #[test]
    fn an_entry_past_the_ledger_end_is_a_gap_the_next_read_may_fill() {
        let key = ("kafka/t".to_string(), 0);
        // A read that missed the entry for 10..15: what follows it is refused and counted.
        let mut slot = LedgerSlot::default();
        for r in [rec(0, 10, 3), rec(15, 5, 3), rec(20, 1, 3)] {
            slot.replay(r);
        }
        assert_eq!((slot.gaps, slot.problems, slot.gaps()), (2, 2, 2));
        assert_eq!(slot.ledgers.get(&key).unwrap().next_offset(), 10);
        // A checkpoint carries state, not the count: a read after it counts its own gaps.
        let again = LedgerSlot::decode(&slot.encode()).unwrap();
        assert_eq!(again.gaps(), 0);
        // The same read without the miss has none; a fenced entry and a repeat are no gap.
        let mut whole = LedgerSlot::default();
        for r in [
            rec(0, 10, 3),
            rec(10, 5, 3),
            rec(15, 5, 4),
            rec(30, 1, 3),
            rec(0, 10, 3),
        ] {
            whole.replay(r);
        }
        assert_eq!((whole.gaps, whole.fenced), (0, 1));
        assert_eq!(whole.take(&key).ledger.next_offset(), 20);
    }
}
