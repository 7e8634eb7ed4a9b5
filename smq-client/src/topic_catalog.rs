//! The Kafka gateway's topic catalog in the filer, shared by the gateway and the operator: which
//! SMQ topic holds a Kafka topic name, and requests to delete one.
//!
//! SMQ 4.48 cannot delete a topic so that its name can be used again (its broker keeps the name's
//! offsets in memory), so a deleted Kafka topic `T` moves to SMQ topic `T~1`, then `T~2`, ... (the
//! gateway's `storage/catalog.rs` tells the whole story). The files:
//!
//! - `/kafka-gateway/topics/<namespace>/<name>`: a [`CatalogEntry`] (JSON), for each Kafka name
//!   ever deleted;
//! - `/kafka-gateway/topic-deletions/<namespace>/<name>`: a [`DeletionRequest`] (JSON) from the
//!   operator; a gateway deletes the topic as DeleteTopics does and removes the request.

use serde::{Deserialize, Serialize};

use crate::client::SmqClient;
use crate::error::{SmqError, SmqResult, codes};

/// Between a Kafka name and its incarnation in SMQ topic names; it cannot occur in a Kafka name.
pub const CATALOG_SEPARATOR: char = '~';
const CATALOG_ROOT: &str = "/kafka-gateway/topics";
const REQUESTS_ROOT: &str = "/kafka-gateway/topic-deletions";

/// One Kafka name's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The incarnation new lookups and creations use.
    pub incarnation: u32,
    /// Earlier incarnations whose SMQ topic is still being removed.
    #[serde(default)]
    pub retired: Vec<RetiredTopic>,
    /// Partitions added to the current incarnation (CreatePartitions): the first Kafka partition
    /// of each extension SMQ topic ([`extension_name`]), ascending. SMQ cannot add partitions to
    /// a topic without hiding its records, so new partitions live in a topic of their own.
    #[serde(default)]
    pub extensions: Vec<i32>,
}

/// A deleted incarnation whose removal has not finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredTopic {
    pub smq_name: String,
    pub deleted_at_ms: i64,
    /// Each partition's high water mark when it was deleted.
    #[serde(default)]
    pub log_ends: Vec<i64>,
    /// When its SMQ files were last deleted.
    #[serde(default)]
    pub files_deleted_at_ms: Option<i64>,
}

/// A request to delete a Kafka topic (the operator's `deletionPolicy: Delete`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionRequest {
    pub requested_by: String,
    pub requested_at_ms: i64,
    /// Failed attempts of the gateways so far, and the last failure.
    #[serde(default)]
    pub failed_attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// The SMQ topic name of a Kafka name's incarnation.
pub fn incarnation_name(kafka: &str, incarnation: u32) -> String {
    if incarnation == 0 {
        kafka.to_string()
    } else {
        format!("{kafka}{CATALOG_SEPARATOR}{incarnation}")
    }
}

/// The SMQ topic holding a Kafka topic's partitions from `first` on, added by CreatePartitions.
/// Like incarnation names it cannot be a Kafka name, nor parse as an incarnation.
pub fn extension_name(kafka: &str, incarnation: u32, first: i32) -> String {
    format!("{kafka}{CATALOG_SEPARATOR}{incarnation}.p{first}")
}

/// (Kafka name, incarnation, first partition) of an extension name; None for others.
pub fn parse_extension(smq: &str) -> Option<(&str, u32, i32)> {
    let (name, rest) = smq.rsplit_once(CATALOG_SEPARATOR)?;
    let (incarnation, first) = rest.split_once(".p")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(incarnation) || !digits(first) {
        return None;
    }
    Some((name, incarnation.parse().ok()?, first.parse().ok()?))
}

/// (Kafka name, incarnation) of an SMQ topic name [`incarnation_name`] writes; None for others.
pub fn parse_incarnation(smq: &str) -> Option<(&str, u32)> {
    match smq.rsplit_once(CATALOG_SEPARATOR) {
        None => Some((smq, 0)),
        Some((name, n)) => match n.parse::<u32>() {
            Ok(i) if i > 0 && !n.starts_with('0') => Some((name, i)),
            _ => None,
        },
    }
}

fn bad(what: String, e: impl std::fmt::Display) -> SmqError {
    SmqError::Broker {
        code: codes::UNKNOWN,
        message: format!("{what}: {e}"),
    }
}

fn dir(root: &str, namespace: &str) -> String {
    format!("{root}/{namespace}")
}

impl SmqClient {
    async fn json_file<T: for<'de> Deserialize<'de>>(
        &self,
        dir: &str,
        name: &str,
    ) -> SmqResult<Option<T>> {
        match self.get_file(dir, name).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| bad(format!("reading {dir}/{name}"), e)),
        }
    }

    async fn put_json<T: Serialize>(&self, dir: &str, name: &str, value: &T) -> SmqResult<()> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| bad(format!("encoding {dir}/{name}"), e))?;
        self.put_file(dir, name, bytes).await
    }

    /// The catalog's files of a namespace (name, size, mtime), to read only changed entries.
    pub async fn catalog_listing(&self, namespace: &str) -> SmqResult<Vec<crate::FilerEntry>> {
        let mut v = self.list_dir(&dir(CATALOG_ROOT, namespace)).await?;
        v.retain(|e| !e.is_directory);
        Ok(v)
    }

    /// A Kafka name's catalog entry (the default, incarnation 0, when it was never deleted).
    pub async fn catalog_entry(&self, namespace: &str, kafka: &str) -> SmqResult<CatalogEntry> {
        Ok(self
            .json_file(&dir(CATALOG_ROOT, namespace), kafka)
            .await?
            .unwrap_or_default())
    }

    pub async fn put_catalog_entry(
        &self,
        namespace: &str,
        kafka: &str,
        entry: &CatalogEntry,
    ) -> SmqResult<()> {
        self.put_json(&dir(CATALOG_ROOT, namespace), kafka, entry)
            .await
    }

    /// The SMQ topic name that serves Kafka topic `kafka` now.
    pub async fn current_topic_name(&self, namespace: &str, kafka: &str) -> SmqResult<String> {
        let entry = self.catalog_entry(namespace, kafka).await?;
        Ok(incarnation_name(kafka, entry.incarnation))
    }

    /// Moves `kafka` to its next incarnation, retiring the current one (which any gateway then
    /// removes): what DeleteTopics does to the catalog; the operator's fallback when no gateway
    /// can.
    /// `log_ends`: each partition's high water mark, when known (the gateway drops the ledger
    /// up to there). Returns the new entry.
    pub async fn retire_topic_name(
        &self,
        namespace: &str,
        kafka: &str,
        log_ends: Vec<i64>,
        now_ms: i64,
    ) -> SmqResult<CatalogEntry> {
        let mut entry = self.catalog_entry(namespace, kafka).await?;
        // The base topic and each extension, with their own partitions' log ends.
        let mut topics = vec![(incarnation_name(kafka, entry.incarnation), 0)];
        for first in &entry.extensions {
            topics.push((extension_name(kafka, entry.incarnation, *first), *first));
        }
        for (i, (smq_name, first)) in topics.iter().enumerate() {
            let end = topics.get(i + 1).map_or(log_ends.len(), |t| t.1 as usize);
            let start = (*first as usize).min(log_ends.len());
            entry.retired.push(RetiredTopic {
                smq_name: smq_name.clone(),
                deleted_at_ms: now_ms,
                log_ends: log_ends
                    .get(start..end.max(start).min(log_ends.len()))
                    .unwrap_or_default()
                    .to_vec(),
                files_deleted_at_ms: None,
            });
        }
        entry.incarnation += 1;
        entry.extensions.clear();
        self.put_catalog_entry(namespace, kafka, &entry).await?;
        Ok(entry)
    }

    /// Records an extension of the current incarnation (its SMQ topic must exist already);
    /// returns the new entry.
    pub async fn add_topic_extension(
        &self,
        namespace: &str,
        kafka: &str,
        first: i32,
    ) -> SmqResult<CatalogEntry> {
        let mut entry = self.catalog_entry(namespace, kafka).await?;
        if !entry.extensions.contains(&first) {
            entry.extensions.push(first);
            entry.extensions.sort_unstable();
            self.put_catalog_entry(namespace, kafka, &entry).await?;
        }
        Ok(entry)
    }

    /// Every pending deletion request of a namespace, by Kafka name.
    pub async fn topic_deletion_requests(
        &self,
        namespace: &str,
    ) -> SmqResult<Vec<(String, DeletionRequest)>> {
        let dir = dir(REQUESTS_ROOT, namespace);
        let mut out = Vec::new();
        for e in self.list_dir(&dir).await? {
            if e.is_directory {
                continue;
            }
            if let Some(r) = self.json_file(&dir, &e.name).await? {
                out.push((e.name, r));
            }
        }
        Ok(out)
    }

    pub async fn topic_deletion_request(
        &self,
        namespace: &str,
        kafka: &str,
    ) -> SmqResult<Option<DeletionRequest>> {
        self.json_file(&dir(REQUESTS_ROOT, namespace), kafka).await
    }

    /// Writes (or rewrites, with a failure noted) a deletion request.
    pub async fn put_topic_deletion_request(
        &self,
        namespace: &str,
        kafka: &str,
        request: &DeletionRequest,
    ) -> SmqResult<()> {
        self.put_json(&dir(REQUESTS_ROOT, namespace), kafka, request)
            .await
    }

    /// Removes a request (the deletion is done).
    pub async fn remove_topic_deletion_request(
        &self,
        namespace: &str,
        kafka: &str,
    ) -> SmqResult<()> {
        self.delete_path(&dir(REQUESTS_ROOT, namespace), kafka)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_never_look_like_a_kafka_name() {
        for (kafka, i) in [("orders", 0), ("orders", 1), ("a.b-c_d", 12)] {
            let smq = incarnation_name(kafka, i);
            assert_eq!(parse_incarnation(&smq), Some((kafka, i)), "{smq}");
        }
        assert_eq!(incarnation_name("orders", 2), "orders~2");
        for odd in ["orders~", "orders~0", "orders~01", "orders~x", "orders~-1"] {
            assert_eq!(parse_incarnation(odd), None, "{odd}");
        }
        let ext = extension_name("orders", 2, 3);
        assert_eq!(ext, "orders~2.p3");
        assert_eq!(parse_extension(&ext), Some(("orders", 2, 3)));
        assert_eq!(
            parse_incarnation(&ext),
            None,
            "an extension is no incarnation"
        );
        for odd in [
            "orders",
            "orders~2",
            "orders~2.p",
            "orders~.p3",
            "orders~2.px",
        ] {
            assert_eq!(parse_extension(odd), None, "{odd}");
        }
    }
}
