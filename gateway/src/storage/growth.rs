//! CreatePartitions on SMQ 4.48, which cannot add partitions to a topic: ConfigureTopic with a
//! new count starts a new generation with other ring ranges, and the old generation's
//! partitions refuse reads and writes, so every stored record would vanish from the topic
//! (`docs/smq-protocol.md` §3). So the topic is not repartitioned: the partitions added live in
//! an SMQ topic of their own, an *extension* (`smq_client::extension_name`, `T~<incarnation>.p<first>`
//! holding Kafka partitions `first..`), recorded in the name's catalog entry. A Kafka partition
//! is then one SMQ partition of the base topic or of an extension, and its ledger, write-ahead
//! log and lock are that SMQ partition's: nothing stored moves and nothing is hidden.

use std::sync::Arc;

use smq_client::{SmqError, Topic, TopicLayout, TopicSpec};

use super::{PartitionLog, Placement, Store, TopicLog};
use crate::error::{GatewayError, GatewayResult};
use crate::records::StorageFormat;
use crate::storage::backend::SmqBackend;

impl Store {
    /// The partitions of one SMQ topic (the base, or an extension), with what was recovered for
    /// them.
    pub(super) fn partitions_of(
        &self,
        smq_topic: &Topic,
        layout: &TopicLayout,
        format: StorageFormat,
    ) -> GatewayResult<Vec<Arc<PartitionLog>>> {
        let key = format!("{}/{}", smq_topic.namespace, smq_topic.name);
        // Every partition's log first: a failure must not take any recovered ledger away.
        let mut wals = Vec::with_capacity(layout.partitions.len());
        for a in &layout.partitions {
            wals.push(match &self.wal {
                Some(w) => Some(w.partition(
                    &smq_topic.namespace,
                    &smq_topic.name,
                    a.index,
                    a.partition.unix_time_ns,
                )?),
                None => None,
            });
        }
        let mut recovered = self.recovered.lock().unwrap_or_else(|e| e.into_inner());
        let mut partitions = Vec::with_capacity(layout.partitions.len());
        for (a, wal) in layout.partitions.iter().zip(wals) {
            let ledger = recovered.take(&(key.clone(), a.index));
            let home = ledger.home_or(&key);
            let backend = SmqBackend::new(
                self.client.clone(),
                smq_topic.clone(),
                a.index,
                a.partition.unix_time_ns,
                self.ledger_store.clone(),
                self.owner.clone(),
                self.settings.read_flushed_from_filer,
                home,
            )
            .with_lock_tokens(self.lock_tokens.clone());
            partitions.push(Arc::new(PartitionLog::new(
                backend,
                Placement {
                    smq_topic: smq_topic.clone(),
                    index: a.index,
                    generation: a.partition.unix_time_ns,
                    format,
                    tail_cache_bytes: self.settings.tail_cache_bytes,
                    unflushed: self.unflushed.clone(),
                },
                ledger,
                wal,
            )));
        }
        Ok(partitions)
    }

    /// The extension SMQ topics of a topic, in partition order, with their layouts.
    pub(super) async fn extension_layouts(
        &self,
        name: &str,
    ) -> GatewayResult<Vec<(Topic, Arc<TopicLayout>)>> {
        let mut out = Vec::new();
        for (_, smq_name) in self.catalog.extensions_of(name) {
            let t = smq_client::topic(&self.settings.namespace, &smq_name);
            let layout = self.client.lookup(&t).await?;
            out.push((t, layout));
        }
        Ok(out)
    }

    /// The number of a topic's partitions in its base SMQ topic (the rest are extensions).
    pub fn base_partitions(&self, t: &TopicLog) -> i32 {
        self.catalog
            .extensions_of(&t.name)
            .first()
            .map_or(t.partitions.len() as i32, |(first, _)| *first)
    }

    /// The SMQ topic and partition index of a topic's Kafka partition `index`.
    pub fn smq_partition(&self, t: &TopicLog, index: i32) -> (Topic, i32) {
        match self
            .catalog
            .extensions_of(&t.name)
            .into_iter()
            .rev()
            .find(|(first, _)| *first <= index)
        {
            Some((first, smq_name)) => (
                smq_client::topic(&self.settings.namespace, &smq_name),
                index - first,
            ),
            None => (t.smq_topic.clone(), index),
        }
    }

    /// Grows a topic to `total` partitions (the caller checked that it is an increase): an
    /// extension SMQ topic with the new partitions is created, then recorded in the catalog,
    /// then opened here.
    pub async fn create_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> GatewayResult<()> {
        let t = self.existing_topic(name).await?;
        let first = t.partitions.len() as i32;
        let added = total - first;
        if added < 1 || total > smq_client::RING_SIZE {
            return Err(GatewayError::InvalidPartitions(total));
        }
        if validate_only {
            return Ok(());
        }
        let format = t.partitions.first().map(|p| p.format()).unwrap_or_default();
        let ext = smq_client::topic(
            &self.settings.namespace,
            &self.catalog.extension_name_of(name, first),
        );
        let spec = TopicSpec {
            topic: ext.clone(),
            partitions: added,
            record_type: Some(format.record_type()),
            retention_seconds: Some(t.configs().smq_retention_seconds()),
        };
        match self.client.ensure_topic(&spec).await {
            Ok(_) => {}
            // Left by an attempt that failed before recording it, with another count.
            Err(SmqError::PartitionCountMismatch { .. }) => {
                return Err(GatewayError::InvalidPartitions(total));
            }
            Err(e) => return Err(e.into()),
        }
        self.catalog.add_extension(name, first).await?;
        self.follow_growth(name).await?;
        tracing::info!(topic = name, from = first, to = total, smq_topic = %ext.name, "partitions added");
        Ok(())
    }

    /// Opens the partitions of extensions the cached topic does not have yet (added here, or by
    /// another gateway): the cached partitions stay as they are, with their state.
    pub(super) async fn follow_growth(&self, name: &str) -> GatewayResult<()> {
        let extensions = self.extension_layouts(name).await?;
        let mut topics = self.topics.write().await;
        let Some(t) = topics.get(name).cloned() else {
            return Ok(()); // not open here: the next lookup opens every partition
        };
        let mut partitions = t.partitions.clone();
        for (ext, layout) in &extensions {
            let first = super::catalog::first_of(&ext.name);
            if first.is_some_and(|f| f as usize >= partitions.len()) {
                let format = partitions.first().map(|p| p.format()).unwrap_or_default();
                partitions.extend(self.partitions_of(ext, layout, format)?);
            }
        }
        if partitions.len() == t.partitions.len() {
            return Ok(());
        }
        let grown = Arc::new(TopicLog {
            name: t.name.clone(),
            smq_topic: t.smq_topic.clone(),
            configs: std::sync::RwLock::new(t.configs()),
            partitions,
            topic_id: t.topic_id,
        });
        topics.insert(name.to_string(), grown);
        Ok(())
    }
}
