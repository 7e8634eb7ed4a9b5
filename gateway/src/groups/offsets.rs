//! Committed offsets, stored in the SMQ topic `kafka-system/consumer-offsets` before a commit is
//! answered, and reloaded on start. A deleted offset is a record with offset -1.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use prost::Message;
use smq_client::SmqClient;
use smq_proto::schema_pb::{RecordType, RecordValue, ScalarType};

use crate::clock::now_ms;
use crate::error::GatewayResult;
use crate::record_value::{get_int, get_string, int64, scalar_field, stable_slot, string};
use crate::state::{Replay, SystemTopic};

const OFFSETS_TOPIC: &str = "consumer-offsets";
const PARTITIONS: i32 = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub metadata: String,
    pub commit_time_ms: i64,
}

/// One commit to store: (topic, partition, offset, metadata).
pub type Commit = (String, i32, i64, String);

/// (topic, partition) → committed offset, for one group.
pub type GroupOffsets = BTreeMap<(String, i32), Committed>;

pub struct OffsetStore {
    log: std::sync::Arc<SystemTopic>,
    groups: Mutex<HashMap<String, GroupOffsets>>,
    /// Per partition of the offsets topic, the cluster membership version its groups were last
    /// read at (absent: at start, version 0).
    read_at: Mutex<HashMap<i32, u64>>,
}

impl std::fmt::Debug for OffsetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetStore")
            .field("log", &self.log)
            .finish()
    }
}

fn slot(group: &str) -> i32 {
    stable_slot(group.as_bytes(), PARTITIONS)
}

struct Row {
    group: String,
    topic: String,
    partition: i32,
    committed: Committed,
}

fn encode(r: &Row) -> Vec<u8> {
    let s = |v: &str| string(v);
    let i = int64;
    let fields = HashMap::from([
        ("group".to_string(), s(&r.group)),
        ("topic".to_string(), s(&r.topic)),
        ("partition".to_string(), i(r.partition.into())),
        ("offset".to_string(), i(r.committed.offset)),
        ("metadata".to_string(), s(&r.committed.metadata)),
        ("commit_time_ms".to_string(), i(r.committed.commit_time_ms)),
    ]);
    RecordValue { fields }.encode_to_vec()
}

fn decode(data: &[u8]) -> Option<Row> {
    let f = RecordValue::decode(data).ok()?.fields;
    let s = |k: &str| get_string(&f, k);
    let i = |k: &str| get_int(&f, k);
    Some(Row {
        group: s("group")?,
        topic: s("topic")?,
        partition: i("partition")? as i32,
        committed: Committed {
            offset: i("offset")?,
            metadata: s("metadata").unwrap_or_default(),
            commit_time_ms: i("commit_time_ms").unwrap_or(0),
        },
    })
}

/// The committed offsets of the groups one partition of the offsets topic holds.
#[derive(Debug, Default)]
pub struct OffsetsSlot {
    pub groups: HashMap<String, GroupOffsets>,
}

impl Replay for OffsetsSlot {
    fn apply(&mut self, message: &smq_client::DataMessage) {
        let Some(r) = decode(&message.value) else {
            return;
        };
        let g = self.groups.entry(r.group.clone()).or_default();
        if r.committed.offset < 0 {
            g.remove(&(r.topic, r.partition));
            if g.is_empty() {
                self.groups.remove(&r.group);
            }
        } else {
            g.insert((r.topic, r.partition), r.committed);
        }
    }

    fn encode(&self) -> Vec<u8> {
        let rows: Vec<serde_json::Value> = self
            .groups
            .iter()
            .flat_map(|(group, offsets)| {
                offsets.iter().map(move |((topic, partition), c)| {
                    serde_json::json!([
                        group,
                        topic,
                        partition,
                        c.offset,
                        c.metadata,
                        c.commit_time_ms
                    ])
                })
            })
            .collect();
        serde_json::to_vec(&rows).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        type Row = (String, String, i32, i64, String, i64);
        let rows: Vec<Row> =
            serde_json::from_slice(bytes).map_err(|e| format!("offsets checkpoint: {e}"))?;
        let mut groups: HashMap<String, GroupOffsets> = HashMap::new();
        for (group, topic, partition, offset, metadata, commit_time_ms) in rows {
            groups.entry(group).or_default().insert(
                (topic, partition),
                Committed {
                    offset,
                    metadata,
                    commit_time_ms,
                },
            );
        }
        Ok(Self { groups })
    }
}

impl OffsetStore {
    pub async fn open(client: SmqClient) -> GatewayResult<Self> {
        let record_type = RecordType {
            fields: vec![
                scalar_field("group", 0, ScalarType::String),
                scalar_field("topic", 1, ScalarType::String),
                scalar_field("partition", 2, ScalarType::Int64),
                scalar_field("offset", 3, ScalarType::Int64),
                scalar_field("metadata", 4, ScalarType::String),
                scalar_field("commit_time_ms", 5, ScalarType::Int64),
            ],
        };
        let log = std::sync::Arc::new(
            SystemTopic::open(client, OFFSETS_TOPIC, PARTITIONS, record_type).await?,
        );
        let reads = (0..PARTITIONS).map(|p| log.load::<OffsetsSlot>(p, Duration::from_secs(120)));
        let mut groups: HashMap<String, GroupOffsets> = HashMap::new();
        let mut rows = 0;
        for loaded in futures::future::join_all(reads).await {
            let loaded = loaded?;
            rows += loaded.replayed;
            groups.extend(loaded.state.groups);
        }
        tracing::info!(groups = groups.len(), rows, "committed offsets recovered");
        Ok(Self {
            log,
            groups: Mutex::new(groups),
            read_at: Mutex::new(HashMap::new()),
        })
    }

    /// Writes checkpoints of the offsets topic's partitions when due, every `every`; runs until
    /// dropped.
    pub async fn keep_checkpointed(&self, owner: String, policy: crate::state::CheckpointPolicy) {
        self.log
            .clone()
            .keep_checkpointed::<OffsetsSlot>(owner, policy)
            .await
    }

    /// Reads the committed offsets of `group`'s partition of the offsets topic again unless they
    /// were read at membership `version`: a gateway that newly coordinates a group finds what
    /// the previous coordinator committed.
    pub async fn refresh(&self, group: &str, version: u64) -> GatewayResult<()> {
        let slot = slot(group);
        let read_at = |s: &Self| {
            s.read_at
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&slot)
                .copied()
                .unwrap_or(0)
        };
        if read_at(self) == version {
            return Ok(());
        }
        let loaded = self
            .log
            .load::<OffsetsSlot>(slot, Duration::from_secs(30))
            .await?;
        {
            let mut groups = self.lock();
            groups.retain(|g, _| self::slot(g) != slot);
            groups.extend(loaded.state.groups);
        }
        self.read_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(slot, version);
        tracing::debug!(
            slot,
            version,
            rows = loaded.replayed,
            "committed offsets read again"
        );
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, GroupOffsets>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores commits durably, then makes them visible. `offset < 0` deletes.
    pub async fn commit(&self, group: &str, commits: &[Commit]) -> GatewayResult<()> {
        let now = now_ms();
        for (topic, partition, offset, metadata) in commits {
            let row = Row {
                group: group.to_string(),
                topic: topic.clone(),
                partition: *partition,
                committed: Committed {
                    offset: *offset,
                    metadata: metadata.clone(),
                    commit_time_ms: now,
                },
            };
            let key = format!(
                "{group}/{topic}/{partition}@{now}-{}",
                rand::random::<u32>()
            )
            .into_bytes();
            self.log.append(slot(group), key, encode(&row)).await?;
            let mut groups = self.lock();
            let g = groups.entry(group.to_string()).or_default();
            if *offset < 0 {
                g.remove(&(topic.clone(), *partition));
            } else {
                g.insert((topic.clone(), *partition), row.committed);
            }
        }
        Ok(())
    }

    /// Drops every group's committed offsets of a topic (it is being deleted, as Kafka drops
    /// them), durably.
    pub async fn delete_topic(&self, topic: &str) -> GatewayResult<()> {
        let doomed: Vec<(String, Vec<Commit>)> = self
            .lock()
            .iter()
            .map(|(group, offsets)| {
                let rows = offsets
                    .keys()
                    .filter(|(t, _)| t == topic)
                    .map(|(t, p)| (t.clone(), *p, -1, String::new()))
                    .collect::<Vec<_>>();
                (group.clone(), rows)
            })
            .filter(|(_, rows)| !rows.is_empty())
            .collect();
        for (group, rows) in doomed {
            self.commit(&group, &rows).await?;
        }
        Ok(())
    }

    pub fn get(&self, group: &str) -> GroupOffsets {
        self.lock().get(group).cloned().unwrap_or_default()
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, g)| !g.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// See [`crate::state::SystemTopic::retained_bytes`].
    pub fn retained_bytes(&self) -> usize {
        self.log.retained_bytes()
    }

    pub async fn close(&self) {
        self.log.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(group: &str, topic: &str, partition: i32, offset: i64) -> smq_client::DataMessage {
        let row = Row {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
            committed: Committed {
                offset,
                metadata: format!("m{offset}"),
                commit_time_ms: offset * 10,
            },
        };
        smq_client::DataMessage {
            key: Vec::new(),
            value: encode(&row),
            ts_ns: 0,
            ctrl: None,
        }
    }

    #[test]
    fn a_checkpoint_and_its_tail_give_the_offsets_every_commit_gives() {
        let history = [
            commit("g1", "a", 0, 5),
            commit("g1", "a", 1, 7),
            commit("g2", "a", 0, 1),
            commit("g1", "a", 0, 9),
            commit("g2", "a", 0, -1),
            commit("g1", "b", 0, 3),
            commit("g1", "a", 1, -1),
            commit("g3", "c", 2, 4),
        ];
        let mut full = OffsetsSlot::default();
        history.iter().for_each(|m| full.apply(m));
        assert!(
            !full.groups.contains_key("g2"),
            "a group whose offsets are deleted is gone"
        );
        for cut in 0..=history.len() {
            let mut s = OffsetsSlot::default();
            history[..cut].iter().for_each(|m| s.apply(m));
            let mut s = OffsetsSlot::decode(&s.encode()).unwrap();
            history[cut..].iter().for_each(|m| s.apply(m));
            assert_eq!(s.groups, full.groups, "checkpoint after {cut} records");
        }
        assert!(OffsetsSlot::decode(b"not json").is_err());
    }
}
