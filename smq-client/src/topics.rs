use std::sync::Arc;

use smq_proto::messaging_pb::{
    ConfigureTopicRequest, GetTopicConfigurationRequest, ListTopicsRequest, TopicExistsRequest,
    TopicRetention,
};
use smq_proto::schema_pb::{RecordType, Topic};

use crate::client::{SmqClient, not_found_as_topic, topic_name};
use crate::error::{SmqError, SmqResult};
use crate::partition::{RING_SIZE, TopicLayout};

/// What a topic should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    pub topic: Topic,
    pub partitions: i32,
    /// Registered so SMQ's own tools (SQL, shell) can decode the records.
    pub record_type: Option<RecordType>,
    pub retention_seconds: Option<i64>,
}

/// A topic's configuration as the broker reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub topic: Topic,
    pub partition_count: i32,
    pub created_at_ns: i64,
    pub last_updated_ns: i64,
    pub retention_seconds: Option<i64>,
    /// topic.conf says retention is off (keep forever), as opposed to saying nothing.
    pub retention_disabled: bool,
    pub record_type: Option<RecordType>,
}

fn validate_count(count: i32) -> SmqResult<()> {
    if (1..=RING_SIZE).contains(&count) {
        Ok(())
    } else {
        Err(SmqError::InvalidPartitionCount(count))
    }
}

impl SmqClient {
    /// Creates the topic if it does not exist; if it exists, checks that it has the requested
    /// partition count. Never changes an existing topic's count: SMQ would start a new, empty
    /// generation and hide every stored record.
    pub async fn ensure_topic(&self, spec: &TopicSpec) -> SmqResult<Arc<TopicLayout>> {
        validate_count(spec.partitions)?;
        match self.topic_configuration(&spec.topic).await {
            Ok(existing) if existing.partition_count == spec.partitions => {
                self.lookup(&spec.topic).await
            }
            Ok(existing) => Err(SmqError::PartitionCountMismatch {
                topic: topic_name(&spec.topic),
                existing: existing.partition_count,
                requested: spec.partitions,
            }),
            Err(SmqError::TopicNotFound(_)) => self.configure_topic(spec).await,
            Err(e) => Err(e),
        }
    }

    /// Sends ConfigureTopic. On an existing topic with the same count this is idempotent (and
    /// updates retention and record type); use [`SmqClient::ensure_topic`] unless the caller has
    /// checked the count itself.
    pub async fn configure_topic(&self, spec: &TopicSpec) -> SmqResult<Arc<TopicLayout>> {
        validate_count(spec.partitions)?;
        let req = ConfigureTopicRequest {
            topic: Some(spec.topic.clone()),
            partition_count: spec.partitions,
            retention: spec.retention_seconds.map(|s| TopicRetention {
                retention_seconds: s,
                enabled: s > 0,
            }),
            message_record_type: spec.record_type.clone(),
            key_columns: Vec::new(),
            schema_format: String::new(),
        };
        self.control("ConfigureTopic", |mut c| {
            let req = req.clone();
            async move { c.configure_topic(req).await }
        })
        .await?;
        self.invalidate(&spec.topic);
        let layout = self.lookup(&spec.topic).await?;
        if layout.count() != spec.partitions {
            return Err(SmqError::Protocol(format!(
                "configured {} with {} partitions but the broker reports {}",
                topic_name(&spec.topic),
                spec.partitions,
                layout.count()
            )));
        }
        Ok(layout)
    }

    pub async fn topic_exists(&self, topic: &Topic) -> SmqResult<bool> {
        let t = topic.clone();
        let r = self
            .control("TopicExists", |mut c| {
                let t = t.clone();
                async move { c.topic_exists(TopicExistsRequest { topic: Some(t) }).await }
            })
            .await?;
        Ok(r.exists)
    }

    /// Topics in one namespace (the broker lists every namespace).
    pub async fn list_topics(&self, namespace: &str) -> SmqResult<Vec<Topic>> {
        let r = self
            .control("ListTopics", |mut c| async move {
                c.list_topics(ListTopicsRequest {}).await
            })
            .await?;
        let mut topics: Vec<Topic> = r
            .topics
            .into_iter()
            .filter(|t| t.namespace == namespace)
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics.dedup();
        Ok(topics)
    }

    pub async fn topic_configuration(&self, topic: &Topic) -> SmqResult<TopicConfig> {
        let t = topic.clone();
        let r = self
            .control("GetTopicConfiguration", |mut c| {
                let t = t.clone();
                async move {
                    c.get_topic_configuration(GetTopicConfigurationRequest { topic: Some(t) })
                        .await
                }
            })
            .await
            .map_err(|e| not_found_as_topic(e, topic))?;
        if r.partition_count == 0 && r.broker_partition_assignments.is_empty() {
            return Err(SmqError::TopicNotFound(topic_name(topic)));
        }
        Ok(TopicConfig {
            topic: r.topic.unwrap_or_else(|| topic.clone()),
            partition_count: r.partition_count,
            created_at_ns: r.created_at_ns,
            last_updated_ns: r.last_updated_ns,
            retention_seconds: r
                .retention
                .filter(|ret| ret.enabled)
                .map(|ret| ret.retention_seconds),
            retention_disabled: r.retention.is_some_and(|ret| !ret.enabled),
            record_type: r.message_record_type,
        })
    }
}
