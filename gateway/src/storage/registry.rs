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
use crate::system_topic::SystemTopic;

const CONFIGS_TOPIC: &str = "topic-configs";

pub struct TopicRegistry {
    log: SystemTopic,
    configs: Mutex<HashMap<String, TopicConfigs>>,
}

impl std::fmt::Debug for TopicRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicRegistry")
            .field("log", &self.log)
            .finish()
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
        let log = SystemTopic::open(client, CONFIGS_TOPIC, 1, record_type).await?;
        let mut configs = HashMap::new();
        for m in log.read_all(0, Duration::from_secs(30)).await? {
            let Ok(rv) = RecordValue::decode(m.value.as_slice()) else {
                tracing::warn!("skipping an undecodable topic config record");
                continue;
            };
            let (Some(topic), Some(json)) = (
                get_string(&rv.fields, "topic"),
                get_string(&rv.fields, "configs"),
            ) else {
                continue;
            };
            match serde_json::from_str::<BTreeMap<String, String>>(&json) {
                Ok(set) => {
                    configs.insert(topic, TopicConfigs { set });
                }
                Err(e) => tracing::warn!(%topic, error = %e, "skipping a bad topic config record"),
            }
        }
        Ok(Self {
            log,
            configs: Mutex::new(configs),
        })
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

    pub async fn close(&self) {
        self.log.close().await;
    }
}
