//! Kafka topic configs that SMQ's topic.conf cannot hold (timestamp type, size limit, storage
//! format…), kept in the SMQ topic `kafka-system/topic-configs` and reloaded on start.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use prost::Message;
use smq_client::SmqClient;
use smq_proto::schema_pb::{RecordType, RecordValue, ScalarType};

use super::TopicConfigs;
use crate::error::GatewayResult;
use crate::record_value::{get_string, scalar_field, string};
use crate::state::{Replay, SystemTopic};

const CONFIGS_TOPIC: &str = "topic-configs";

pub struct TopicRegistry {
    log: std::sync::Arc<SystemTopic>,
    configs: Mutex<HashMap<String, TopicConfigs>>,
}

impl std::fmt::Debug for TopicRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicRegistry")
            .field("log", &self.log)
            .finish()
    }
}

/// Every topic's configs, as the configs topic holds them.
#[derive(Debug, Default)]
pub struct Configs {
    pub topics: HashMap<String, TopicConfigs>,
}

impl Replay for Configs {
    fn apply(&mut self, message: &smq_client::DataMessage) {
        let Ok(rv) = RecordValue::decode(message.value.as_slice()) else {
            tracing::warn!("skipping an undecodable topic config record");
            return;
        };
        let (Some(topic), Some(json)) = (
            get_string(&rv.fields, "topic"),
            get_string(&rv.fields, "configs"),
        ) else {
            return;
        };
        match serde_json::from_str::<BTreeMap<String, String>>(&json) {
            Ok(set) => {
                self.topics.insert(topic, TopicConfigs { set });
            }
            Err(e) => tracing::warn!(%topic, error = %e, "skipping a bad topic config record"),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let all: BTreeMap<&String, &BTreeMap<String, String>> =
            self.topics.iter().map(|(k, v)| (k, &v.set)).collect();
        serde_json::to_vec(&all).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let all: BTreeMap<String, BTreeMap<String, String>> =
            serde_json::from_slice(bytes).map_err(|e| format!("configs checkpoint: {e}"))?;
        Ok(Self {
            topics: all
                .into_iter()
                .map(|(k, set)| (k, TopicConfigs { set }))
                .collect(),
        })
    }
}

impl TopicRegistry {
    pub async fn open(client: SmqClient) -> GatewayResult<Self> {
        let record_type = RecordType {
            fields: vec![
                scalar_field("topic", 0, ScalarType::String),
                scalar_field("configs", 1, ScalarType::String),
            ],
        };
        let log =
            std::sync::Arc::new(SystemTopic::open(client, CONFIGS_TOPIC, 1, record_type).await?);
        let loaded = log.load::<Configs>(0, Duration::from_secs(30)).await?;
        Ok(Self {
            log,
            configs: Mutex::new(loaded.state.topics),
        })
    }

    /// Writes the configs topic's checkpoint when due, every `every`; runs until dropped.
    pub async fn keep_checkpointed(&self, owner: String, policy: crate::state::CheckpointPolicy) {
        self.log
            .clone()
            .keep_checkpointed::<Configs>(owner, policy)
            .await
    }

    /// The configs stored for `namespace/name`, if any.
    pub fn get(&self, smq_name: &str) -> Option<TopicConfigs> {
        self.configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(smq_name)
            .cloned()
    }

    /// Stores the configs of `namespace/name` (durably, before returning).
    pub async fn put(&self, smq_name: &str, configs: &TopicConfigs) -> GatewayResult<()> {
        let json = serde_json::to_string(&configs.set).unwrap_or_else(|_| "{}".to_string());
        let fields = HashMap::from([
            ("topic".to_string(), string(smq_name.to_string())),
            ("configs".to_string(), string(json)),
        ]);
        self.log
            .append(
                0,
                format!("{smq_name}@{}", rand::random::<u64>()).into_bytes(),
                RecordValue { fields }.encode_to_vec(),
            )
            .await?;
        self.configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(smq_name.to_string(), configs.clone());
        Ok(())
    }

    /// See [`SystemTopic::retained_bytes`].
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

    fn put(topic: &str, key: &str, value: &str) -> smq_client::DataMessage {
        let json = serde_json::to_string(&BTreeMap::from([(key, value)])).unwrap();
        let fields = HashMap::from([
            ("topic".to_string(), string(topic.to_string())),
            ("configs".to_string(), string(json)),
        ]);
        smq_client::DataMessage {
            key: Vec::new(),
            value: RecordValue { fields }.encode_to_vec(),
            ts_ns: 0,
            ctrl: None,
        }
    }

    #[test]
    fn a_checkpoint_and_its_tail_give_the_configs_every_record_gives() {
        let history = [
            put("kafka/a", "retention.ms", "1000"),
            put("kafka/b", "cleanup.policy", "delete"),
            put("kafka/a", "retention.ms", "2000"),
        ];
        let mut full = Configs::default();
        history.iter().for_each(|m| full.apply(m));
        for cut in 0..=history.len() {
            let mut s = Configs::default();
            history[..cut].iter().for_each(|m| s.apply(m));
            let mut s = Configs::decode(&s.encode()).unwrap();
            history[cut..].iter().for_each(|m| s.apply(m));
            assert_eq!(s.topics, full.topics, "checkpoint after {cut} records");
        }
        assert_eq!(full.topics["kafka/a"].set["retention.ms"], "2000");
    }
}
