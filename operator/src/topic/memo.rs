//! What this process did to KafkaTopics that its watch cache may not show yet.
//!
//! The controller reads objects from the watch cache, which lags the API server: a reconcile
//! that starts right after this process wrote an object's status (the finalizer's own watch
//! event wakes one) can be handed the object as it was before that write. The memo keeps, per
//! object uid, the status last written (until the next reconcile of the object has compared it
//! with the cache) and the SMQ topic created but not yet recorded in the status (until a status
//! with the claim is written).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kafka_crds::KafkaTopicStatus;

#[derive(Default)]
struct Entry {
    written: Option<KafkaTopicStatus>,
    created: Option<String>,
}

#[derive(Default)]
pub struct TopicMemo {
    entries: Mutex<HashMap<String, Entry>>,
}

impl TopicMemo {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> R) -> R {
        // Every holder does one small map operation, so a poisoned map is still consistent.
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut entries)
    }

    /// The operator's part of the status last written for `uid`, forgotten by this call: the
    /// reconcile that takes it either finds it in the cache or reads the object afresh.
    pub fn take_written(&self, uid: &str) -> Option<KafkaTopicStatus> {
        self.with(|m| {
            let e = m.get_mut(uid)?;
            let w = e.written.take();
            if e.created.is_none() {
                m.remove(uid);
            }
            w
        })
    }

    /// Remembers a status written for `uid`. A status that records `topicName` settles the
    /// pending claim of a created topic of that name.
    pub fn wrote(&self, uid: &str, status: KafkaTopicStatus) {
        self.with(|m| {
            let e = m.entry(uid.to_string()).or_default();
            if e.created.is_some() && e.created == status.topic_name {
                e.created = None;
            }
            e.written = Some(status);
        })
    }

    /// Remembers that this process created SMQ topic `name` (the Kafka name) for `uid`.
    pub fn created(&self, uid: &str, name: &str) {
        self.with(|m| m.entry(uid.to_string()).or_default().created = Some(name.to_string()))
    }

    /// The topic created for `uid` whose claim is not in a written status yet.
    pub fn created_name(&self, uid: &str) -> Option<String> {
        self.with(|m| m.get(uid).and_then(|e| e.created.clone()))
    }

    pub fn forget(&self, uid: &str) {
        self.with(|m| m.remove(uid));
    }

    /// Drops entries of objects that no longer exist, once there are more than `limit`.
    pub fn prune(&self, limit: usize, live: impl FnOnce() -> HashSet<String>) {
        self.with(|m| {
            if m.len() > limit {
                let live = live();
                m.retain(|uid, _| live.contains(uid));
            }
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.with(|m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(name: &str) -> KafkaTopicStatus {
        KafkaTopicStatus {
            topic_name: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_written_status_is_handed_out_once() {
        let m = TopicMemo::default();
        m.wrote("u", claimed("orders"));
        assert_eq!(m.take_written("u"), Some(claimed("orders")));
        assert_eq!(m.take_written("u"), None);
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn a_created_topic_stays_claimed_until_a_status_records_it() {
        let m = TopicMemo::default();
        m.created("u", "orders");
        // A status write without the claim (say, a backend error elsewhere) keeps it pending.
        m.wrote("u", KafkaTopicStatus::default());
        assert_eq!(m.take_written("u"), Some(KafkaTopicStatus::default()));
        assert_eq!(m.created_name("u").as_deref(), Some("orders"));
        m.wrote("u", claimed("orders"));
        assert_eq!(m.created_name("u"), None);
        m.take_written("u");
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn prune_keeps_live_objects_only_past_the_limit() {
        let m = TopicMemo::default();
        m.wrote("a", claimed("a"));
        m.wrote("b", claimed("b"));
        m.prune(2, || unreachable!("under the limit"));
        m.prune(1, || HashSet::from(["a".to_string()]));
        assert_eq!(m.len(), 1);
        assert!(m.take_written("a").is_some());
    }
}
