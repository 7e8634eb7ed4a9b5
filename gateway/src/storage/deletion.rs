//! DeleteTopics on SMQ 4.48, which cannot delete a topic (see `catalog.rs` for how a deleted
//! name is used again). Deleting a topic:
//!
//! 1. The catalog moves the name to its next incarnation, persisted before DeleteTopics is
//!    answered: from then on every lookup (Metadata, Produce, Fetch, commits) finds no topic,
//!    and CreateTopics makes a new, empty one under a new SMQ name.
//! 2. The old partitions are let go in the background: their acknowledged records that SMQ has
//!    not yet written are waited for (bounded), then their SMQ streams and partition locks are
//!    closed, so the broker flushes and unloads them.
//! 3. Retried every few seconds until done, each step idempotent: each partition's ledger is
//!    dropped (its log start moved to its high water mark, so recovery keeps nothing of it), its
//!    configs and write-ahead log are dropped, and its SMQ directory `/topics/<ns>/<smq name>`
//!    is deleted through the filer. A later look must find that directory gone before the
//!    incarnation is forgotten: a broker flush that comes after the deletion writes a log file
//!    again, and is deleted again.
//!
//! Committed offsets are the groups layer's: DeleteTopics drops them before it deletes.

use std::sync::Arc;
use std::time::Duration;

use super::{Store, TopicConfigs, TopicLog};
use crate::clock::now_ms;
use crate::error::GatewayResult;

/// Time SMQ gets after the streams closed (or after a file deletion) before the next step: it
/// flushes a partition's buffer when its last publisher leaves (5 s flush interval by default).
const SETTLE: Duration = Duration::from_secs(6);
/// How long the old partitions wait for SMQ to write their acknowledged records.
const DRAIN: Duration = Duration::from_secs(30);
/// How often retired incarnations are worked on, and the catalog read again.
pub const REAP_EVERY: Duration = Duration::from_secs(3);

/// A deletion still in progress, for /stats.
#[derive(Debug, Clone)]
pub struct Deletion {
    pub topic: String,
    pub smq_topic: String,
    pub deleted_at_ms: i64,
    pub files_deleted_at_ms: Option<i64>,
    pub failed_attempts: u32,
    pub last_error: Option<String>,
}

impl Store {
    /// Deletes a topic (step 1 above, and starts step 2). `UnknownTopicOrPartition` when there
    /// is no such topic.
    pub async fn delete_topic(&self, name: &str) -> GatewayResult<()> {
        let t = self.existing_topic(name).await?;
        {
            // Under the write lock: no lookup may cache the old topic again in between.
            let mut topics = self.topics.write().await;
            let log_ends = t.partitions.iter().map(|p| p.high_water_mark()).collect();
            self.catalog.retire(name, log_ends, now_ms()).await?;
            topics.remove(name);
        }
        tracing::info!(topic = name, smq_topic = %t.smq_topic.name, "topic deleted");
        self.let_go(t);
        Ok(())
    }

    /// Step 2, in the background.
    fn let_go(&self, t: Arc<TopicLog>) {
        let catalog = self.catalog.clone();
        catalog.closing(&t.smq_topic.name, true);
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            for p in &t.partitions {
                while p.held_bytes() > 0 && started.elapsed() < DRAIN {
                    p.keep_durable().await;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                if p.held_bytes() > 0 {
                    tracing::warn!(topic = %t.name, partition = p.index(), bytes = p.held_bytes(), "a deleted partition's records were not all written by SMQ in time; they are dropped");
                }
                p.close().await;
            }
            catalog.closing(&t.smq_topic.name, false);
        });
    }

    /// Works on deletions every [`REAP_EVERY`] and follows deletions made by other gateways;
    /// runs until the task is dropped.
    pub async fn keep_deleting(&self) {
        let mut tick = tokio::time::interval(REAP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Topics another gateway grew, until their new partitions are open here.
        let mut growing = std::collections::BTreeSet::new();
        loop {
            tick.tick().await;
            match self.catalog.refresh().await {
                Ok((changed, grown)) => {
                    growing.extend(grown);
                    for name in std::mem::take(&mut growing) {
                        if let Err(e) = self.follow_growth(&name).await {
                            tracing::warn!(topic = %name, error = %e, "opening partitions another gateway added failed; will retry");
                            growing.insert(name);
                        }
                    }
                    for name in changed {
                        let old = self.topics.write().await.remove(&name);
                        if let Some(t) = old {
                            tracing::info!(topic = %name, "topic deleted by another gateway");
                            self.let_go(t);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the topic catalog failed; will retry")
                }
            }
            self.reap_pass().await;
        }
    }

    /// One pass of step 3 over every retired incarnation.
    pub async fn reap_pass(&self) {
        for (kafka, r) in self.catalog.retired() {
            if let Err(e) = self.reap(&kafka, &r).await {
                tracing::warn!(topic = %kafka, smq_topic = %r.smq_name, error = %e, "removing a deleted topic failed; will retry");
                self.catalog.failed(&r.smq_name, e.to_string());
            }
        }
    }

    async fn reap(&self, kafka: &str, r: &smq_client::RetiredTopic) -> GatewayResult<()> {
        let now = now_ms();
        let settle = SETTLE.as_millis() as i64;
        if self.catalog.is_closing(&r.smq_name) || now - r.deleted_at_ms < settle {
            return Ok(());
        }
        let namespace = &self.settings.namespace;
        let topics_dir = format!("/topics/{namespace}");
        match r.files_deleted_at_ms {
            None => {
                let key = format!("{namespace}/{}", r.smq_name);
                for (index, end) in r.log_ends.iter().enumerate() {
                    let index = index as i32;
                    let recovered = self
                        .recovered
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take(&(key.clone(), index));
                    if *end > 0 {
                        let home = recovered.home_or(&key);
                        self.ledger_store
                            .set_log_start(home, &key, index, *end)
                            .await?;
                    }
                }
                if self.registry.get(&key).is_some_and(|c| !c.set.is_empty()) {
                    self.registry.put(&key, &TopicConfigs::default()).await?;
                }
                if let Some(wal) = &self.wal {
                    wal.remove_topic(namespace, &r.smq_name);
                }
                self.client.delete_path(&topics_dir, &r.smq_name).await?;
                self.catalog
                    .update_retired(kafka, &r.smq_name, Some(now))
                    .await
            }
            Some(at) if now - at >= settle => {
                let left = self
                    .client
                    .list_dir(&format!("{topics_dir}/{}", r.smq_name))
                    .await?;
                self.client.delete_path(&topics_dir, &r.smq_name).await?;
                if left.is_empty() {
                    tracing::info!(topic = kafka, smq_topic = %r.smq_name, "a deleted topic's SMQ files are removed");
                    self.catalog.update_retired(kafka, &r.smq_name, None).await
                } else {
                    // Written again after the deletion (a late flush): look again later.
                    tracing::info!(topic = kafka, smq_topic = %r.smq_name, entries = left.len(), "a deleted topic's SMQ directory was written again after its deletion; deleted again");
                    self.catalog
                        .update_retired(kafka, &r.smq_name, Some(now))
                        .await
                }
            }
            Some(_) => Ok(()),
        }
    }

    /// Deletions not yet finished.
    pub fn deletions(&self) -> Vec<Deletion> {
        self.catalog
            .retired()
            .into_iter()
            .map(|(topic, r)| {
                let failure = self.catalog.failure(&r.smq_name);
                Deletion {
                    topic,
                    smq_topic: format!("{}/{}", self.settings.namespace, r.smq_name),
                    deleted_at_ms: r.deleted_at_ms,
                    files_deleted_at_ms: r.files_deleted_at_ms,
                    failed_attempts: failure.as_ref().map_or(0, |f| f.0),
                    last_error: failure.map(|f| f.1),
                }
            })
            .collect()
    }
}
