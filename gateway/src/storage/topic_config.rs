//! Kafka topic configuration: what the gateway honours and what DescribeConfigs reports.

use std::collections::BTreeMap;

use smq_client::TopicConfig;

use crate::error::{GatewayError, GatewayResult};
use crate::records::{StorageFormat, TimestampType};

/// Configs a topic may set, with Kafka's defaults as the gateway applies them.
pub const KNOWN: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("compression.type", "producer"),
    // Tombstone retention of compacted topics: accepted and reported as Kafka does for a topic
    // with cleanup.policy=delete (the only policy here), where it has no effect.
    ("delete.retention.ms", "86400000"),
    ("max.message.bytes", "8388608"),
    ("message.timestamp.type", "CreateTime"),
    ("retention.bytes", "-1"),
    ("retention.ms", "604800000"),
    ("segment.bytes", "1073741824"),
    ("segment.ms", "604800000"),
    ("smq.storage.format", "record"),
];

/// When a partition's oldest records go (Kafka's topic configs of the same names): records in
/// closed segments whose timestamps are all older than `retention_ms`, or beyond
/// `retention_bytes` of newer data. A segment closes `segment_ms` after its records were
/// stored or once `segment_bytes` were stored after it; the newest never closes. -1: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_ms: i64,
    pub segment_bytes: i64,
}

impl RetentionPolicy {
    /// Whether it can remove anything at all.
    pub fn applies(&self) -> bool {
        self.retention_ms >= 0 || self.retention_bytes >= 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfigs {
    /// Only explicitly set values; defaults come from [`KNOWN`].
    pub set: BTreeMap<String, String>,
}

impl TopicConfigs {
    /// Validates configs from CreateTopics. Unknown keys and unsupported values are refused with
    /// a message naming them, as Kafka does.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> GatewayResult<Self> {
        let mut set = BTreeMap::new();
        for (k, v) in pairs {
            let Some(v) = v else { continue };
            if !KNOWN.iter().any(|(name, _)| *name == k) {
                return Err(GatewayError::InvalidConfig(format!(
                    "unknown topic config {k}"
                )));
            }
            match k {
                "cleanup.policy" if v != "delete" => {
                    return Err(GatewayError::InvalidConfig(format!(
                        "cleanup.policy={v} is not supported (only delete)"
                    )));
                }
                "message.timestamp.type" if v != "CreateTime" && v != "LogAppendTime" => {
                    return Err(GatewayError::InvalidConfig(format!(
                        "message.timestamp.type={v}"
                    )));
                }
                kafka_smq_format::CONFIG_KEY => {
                    v.parse::<StorageFormat>()
                        .map_err(|e| GatewayError::InvalidConfig(e.to_string()))?;
                }
                "retention.ms"
                | "max.message.bytes"
                | "delete.retention.ms"
                | "retention.bytes"
                | "segment.ms"
                | "segment.bytes"
                    if v.parse::<i64>().is_err() =>
                {
                    return Err(GatewayError::InvalidConfig(format!(
                        "{k}={v} is not a number"
                    )));
                }
                _ => {}
            }
            set.insert(k.to_string(), v.to_string());
        }
        Ok(Self { set })
    }

    /// What SMQ's topic.conf says (retention, written there by the operator or by this
    /// gateway): retention off is `retention.ms=-1`, none said is Kafka's default.
    pub fn from_smq(c: &TopicConfig) -> Self {
        let mut set = BTreeMap::new();
        if let Some(s) = c.retention_seconds {
            set.insert("retention.ms".to_string(), (s * 1000).to_string());
        } else if c.retention_disabled {
            set.insert("retention.ms".to_string(), "-1".to_string());
        }
        Self { set }
    }

    /// The retention to write into SMQ's topic.conf: the effective `retention.ms` in whole
    /// seconds (rounded up), 0 for none.
    pub fn smq_retention_seconds(&self) -> i64 {
        let ms = self.retention().retention_ms;
        if ms <= 0 { 0 } else { (ms + 999) / 1000 }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.set
            .get(key)
            .map(String::as_str)
            .or_else(|| KNOWN.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
    }

    pub fn is_default(&self, key: &str) -> bool {
        !self.set.contains_key(key)
    }

    pub fn retention_seconds(&self) -> Option<i64> {
        let ms: i64 = self.set.get("retention.ms")?.parse().ok()?;
        (ms > 0).then(|| (ms / 1000).max(1))
    }

    /// The storage format set in the configs (the SMQ topic's record type also tells it).
    pub fn storage_format(&self) -> StorageFormat {
        self.get(kafka_smq_format::CONFIG_KEY)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    }

    /// Records the format the topic really has (read from SMQ): explicit unless it is the
    /// default, so DescribeConfigs reports the default as a default.
    pub fn record_format(&mut self, format: StorageFormat) {
        self.set.remove(kafka_smq_format::CONFIG_KEY);
        if format != StorageFormat::default() {
            self.set.insert(
                kafka_smq_format::CONFIG_KEY.to_string(),
                format.as_str().to_string(),
            );
        }
    }

    pub fn retention(&self) -> RetentionPolicy {
        let num = |k: &str, default: i64| {
            self.get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(default)
        };
        RetentionPolicy {
            retention_ms: num("retention.ms", 604_800_000),
            retention_bytes: num("retention.bytes", -1),
            segment_ms: num("segment.ms", 604_800_000),
            segment_bytes: num("segment.bytes", 1 << 30),
        }
    }

    pub fn timestamp_type(&self) -> TimestampType {
        match self.get("message.timestamp.type") {
            Some("LogAppendTime") => TimestampType::LogAppendTime,
            _ => TimestampType::CreateTime,
        }
    }
}

/// Kafka's topic-name rules: 1..=249 characters of `[a-zA-Z0-9._-]`, not "." or "..".
pub fn validate_topic_name(name: &str) -> GatewayResult<()> {
    let bad = |why: &str| {
        Err(GatewayError::InvalidTopic(
            name.to_string(),
            why.to_string(),
        ))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 249 {
        return bad("longer than 249 characters");
    }
    if name == "." || name == ".." {
        return bad("not allowed");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a b", "ä", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn configs_are_validated_and_defaulted() {
        let c = TopicConfigs::parse([
            ("retention.ms", Some("60000")),
            ("message.timestamp.type", Some("LogAppendTime")),
        ])
        .unwrap();
        assert_eq!(c.retention_seconds(), Some(60));
        assert_eq!(c.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(c.get("cleanup.policy"), Some("delete"));
        assert!(c.is_default("cleanup.policy"));
        let err = TopicConfigs::parse([("segment.bogus", Some("1"))]).unwrap_err();
        assert!(err.to_string().contains("segment.bogus"));
        assert!(TopicConfigs::parse([("cleanup.policy", Some("compact"))]).is_err());
        let d = TopicConfigs::parse([("delete.retention.ms", Some("900"))]).unwrap();
        assert_eq!(d.get("delete.retention.ms"), Some("900"));
        assert!(TopicConfigs::parse([("delete.retention.ms", Some("soon"))]).is_err());
        let batch = TopicConfigs::parse([("smq.storage.format", Some("batch"))]).unwrap();
        assert_eq!(batch.storage_format(), StorageFormat::Batch);
        assert_eq!(c.storage_format(), StorageFormat::Record);
        let err = TopicConfigs::parse([("smq.storage.format", Some("parquet"))]).unwrap_err();
        assert!(
            err.to_string().contains("smq.storage.format=parquet"),
            "{err}"
        );
    }
}
