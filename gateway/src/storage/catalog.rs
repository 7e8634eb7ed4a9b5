//! Which SMQ topic holds a Kafka topic, so that a deleted name can be used again.
//!
//! SMQ 4.48 has no topic deletion, and removing a topic's directory through the filer is not
//! enough to reuse its name: the broker keeps the topic in its caches and its in-memory offsets,
//! and a topic configured again under the same name continued the old offsets
//! (`docs/smq-protocol.md` §3). So no SMQ topic name is ever used twice: Kafka topic `T` is SMQ
//! topic `T` until it is first deleted, then `T~1`, `T~2`, ... (`~` cannot occur in a Kafka
//! name, so these never collide with another Kafka topic). Everything keyed by the SMQ name (the
//! ledger, the write-ahead log, configs, partition locks) starts empty for the new topic.
//!
//! The catalog holds, for each Kafka name that was ever deleted, its current incarnation and the
//! SMQ topics of earlier incarnations whose removal has not finished. It is one small file per
//! name in the filer, `/kafka-gateway/topics/<namespace>/<name>`, written before DeleteTopics is
//! answered; names never deleted have no file.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use smq_client::{
    CatalogEntry as Entry, RetiredTopic as Retired, SmqClient, extension_name, incarnation_name,
    parse_extension, parse_incarnation,
};

use crate::error::GatewayResult;

pub struct Catalog {
    client: SmqClient,
    namespace: String,
    entries: Mutex<HashMap<String, Entry>>,
    /// The last failure of each retired SMQ topic's removal, for /stats (not persisted).
    failures: Mutex<HashMap<String, (u32, String)>>,
    /// Retired SMQ topics whose partitions this process is still letting go (not persisted: a
    /// restart has none open).
    closing: Mutex<HashSet<String>>,
    /// (mtime, size) of each entry file when last read.
    seen: Mutex<HashMap<String, (i64, u64)>>,
    refreshes: Mutex<u64>,
}

/// Every this many refreshes, every entry is read again.
const FULL_READ_EVERY: u64 = 20;

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl Catalog {
    pub async fn open(client: SmqClient, namespace: &str) -> GatewayResult<Self> {
        let c = Self {
            client,
            namespace: namespace.to_string(),
            entries: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            closing: Mutex::new(HashSet::new()),
            seen: Mutex::new(HashMap::new()),
            refreshes: Mutex::new(0),
        };
        c.refresh().await?;
        Ok(c)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the entries that changed in the filer (another gateway may have deleted a topic;
    /// every [`FULL_READ_EVERY`]th call reads all, for changes within one mtime second);
    /// returns the Kafka names whose incarnation changed (deleted) and those that got partitions
    /// (grown). Entries are never removed, so only changed ones are read: a namespace that
    /// deleted thousands of names stays cheap to follow.
    pub async fn refresh(&self) -> GatewayResult<(Vec<String>, Vec<String>)> {
        let listing = self.client.catalog_listing(&self.namespace).await?;
        let full = {
            let mut n = self.refreshes.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            *n % FULL_READ_EVERY == 1
        };
        let (mut changed, mut grown) = (Vec::new(), Vec::new());
        for e in listing {
            let stamp = (e.mtime, e.size);
            let known = self
                .seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&e.name)
                .copied();
            if !full && known == Some(stamp) {
                continue;
            }
            let entry = self.client.catalog_entry(&self.namespace, &e.name).await?;
            let mut entries = self.lock();
            let before = entries.get(&e.name).cloned().unwrap_or_default();
            if before.incarnation != entry.incarnation {
                changed.push(e.name.clone());
            } else if before.extensions != entry.extensions {
                grown.push(e.name.clone());
            }
            entries.insert(e.name.clone(), entry);
            drop(entries);
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(e.name, stamp);
        }
        Ok((changed, grown))
    }

    /// The SMQ topic name that serves Kafka topic `kafka` now.
    pub fn smq_name_of(&self, kafka: &str) -> String {
        incarnation_name(kafka, self.lock().get(kafka).map_or(0, |e| e.incarnation))
    }

    /// The Kafka name an SMQ topic lists as, if it is the current incarnation of that name (an
    /// extension holds more of its partitions and is not listed).
    pub fn kafka_name_of(&self, smq: &str) -> Option<String> {
        let (name, incarnation) = parse_incarnation(smq)?;
        let current = self.lock().get(name).map_or(0, |e| e.incarnation);
        (incarnation == current).then(|| name.to_string())
    }

    /// The Kafka name whose current incarnation an SMQ topic (base or extension) belongs to.
    pub fn owner_of(&self, smq: &str) -> Option<String> {
        if let Some((name, incarnation, first)) = parse_extension(smq) {
            let entries = self.lock();
            let e = entries.get(name)?;
            return (e.incarnation == incarnation && e.extensions.contains(&first))
                .then(|| name.to_string());
        }
        self.kafka_name_of(smq)
    }

    /// The extension SMQ topics of a Kafka name's current incarnation: (first partition, SMQ
    /// name), ascending.
    pub fn extensions_of(&self, kafka: &str) -> Vec<(i32, String)> {
        let entries = self.lock();
        let Some(e) = entries.get(kafka) else {
            return Vec::new();
        };
        e.extensions
            .iter()
            .map(|f| (*f, extension_name(kafka, e.incarnation, *f)))
            .collect()
    }

    /// The SMQ name of a new extension starting at Kafka partition `first`.
    pub fn extension_name_of(&self, kafka: &str, first: i32) -> String {
        extension_name(
            kafka,
            self.lock().get(kafka).map_or(0, |e| e.incarnation),
            first,
        )
    }

    /// Records a new extension (its SMQ topic exists), persisted before it returns.
    pub async fn add_extension(&self, kafka: &str, first: i32) -> GatewayResult<()> {
        let entry = self
            .client
            .add_topic_extension(&self.namespace, kafka, first)
            .await?;
        self.lock().insert(kafka.to_string(), entry);
        Ok(())
    }

    async fn store(&self, kafka: &str, entry: &Entry) -> GatewayResult<()> {
        Ok(self
            .client
            .put_catalog_entry(&self.namespace, kafka, entry)
            .await?)
    }

    /// Deletes the current incarnation of `kafka`: from now on the name maps to a new SMQ
    /// topic, which does not exist until the name is created again. Persisted before it
    /// returns; returns the retired SMQ name.
    pub async fn retire(
        &self,
        kafka: &str,
        log_ends: Vec<i64>,
        now_ms: i64,
    ) -> GatewayResult<String> {
        let old = self.smq_name_of(kafka);
        let entry = self
            .client
            .retire_topic_name(&self.namespace, kafka, log_ends, now_ms)
            .await?;
        self.lock().insert(kafka.to_string(), entry);
        Ok(old)
    }

    /// Every retired incarnation still being removed, with its Kafka name.
    pub fn retired(&self) -> Vec<(String, Retired)> {
        let mut v: Vec<(String, Retired)> = self
            .lock()
            .iter()
            .flat_map(|(k, e)| e.retired.iter().map(move |r| (k.clone(), r.clone())))
            .collect();
        v.sort_by(|a, b| a.1.smq_name.cmp(&b.1.smq_name));
        v
    }

    /// Records that a retired incarnation's files were deleted at `at_ms` (`None`: its removal
    /// is done and it is forgotten).
    pub async fn update_retired(
        &self,
        kafka: &str,
        smq: &str,
        files_deleted_at_ms: Option<i64>,
    ) -> GatewayResult<()> {
        let Some(mut entry) = self.lock().get(kafka).cloned() else {
            return Ok(());
        };
        match files_deleted_at_ms {
            Some(at) => entry
                .retired
                .iter_mut()
                .filter(|r| r.smq_name == smq)
                .for_each(|r| r.files_deleted_at_ms = Some(at)),
            None => entry.retired.retain(|r| r.smq_name != smq),
        }
        self.store(kafka, &entry).await?;
        self.lock().insert(kafka.to_string(), entry);
        if files_deleted_at_ms.is_none() {
            self.failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(smq);
        }
        Ok(())
    }

    /// Notes a failed removal attempt.
    pub fn failed(&self, smq: &str, error: String) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let slot = f.entry(smq.to_string()).or_insert((0, String::new()));
        slot.0 += 1;
        slot.1 = error;
    }

    /// Marks a retired SMQ topic whose partitions are being let go (`true`), or done.
    pub fn closing(&self, smq: &str, closing: bool) {
        let mut c = self.closing.lock().unwrap_or_else(|e| e.into_inner());
        if closing {
            c.insert(smq.to_string());
        } else {
            c.remove(smq);
        }
    }

    pub fn is_closing(&self, smq: &str) -> bool {
        self.closing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(smq)
    }

    /// (failed attempts, last error) of a retired SMQ topic's removal.
    pub fn failure(&self, smq: &str) -> Option<(u32, String)> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(smq)
            .cloned()
    }
}

/// The first Kafka partition an extension SMQ topic holds.
pub fn first_of(smq: &str) -> Option<i32> {
    parse_extension(smq).map(|(_, _, first)| first)
}

/// A Kafka topic id (KIP-516) for one incarnation: from its SMQ name and creation time, so it
/// is the same on every gateway and across restarts, and new when the name is created again.
pub fn topic_id(namespace: &str, smq_name: &str, created_at_ns: i64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&created_at_ns.to_be_bytes());
    id[8..12].copy_from_slice(&crc32c::crc32c(namespace.as_bytes()).to_be_bytes());
    id[12..].copy_from_slice(&crc32c::crc32c(smq_name.as_bytes()).to_be_bytes());
    // Version 8 (custom) and the RFC 4122 variant, so tools parse it as a UUID.
    id[6] = (id[6] & 0x0f) | 0x80;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

#[cfg(test)]
mod tests {
    #[test]
    fn incarnations_are_never_kafka_names() {
        for i in 1..3 {
            let name = smq_client::incarnation_name("t", i);
            assert!(
                crate::storage::validate_topic_name(&name).is_err(),
                "{name}"
            );
        }
    }
}
