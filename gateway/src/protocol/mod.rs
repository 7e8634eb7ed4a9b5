//! Kafka APIs: one small handler per API. The table below is the single list of what the gateway
//! implements; ApiVersions advertises exactly it, and dispatch routes by it.

mod alter_configs;
mod api_versions;
mod consumer_group_describe;
mod consumer_group_heartbeat;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod error_codes;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod produce;
pub mod request;
mod sync_group;

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};

use crate::cluster::Cluster;
use crate::config::GatewayConfig;
use crate::error::{GatewayError, GatewayResult};
use crate::groups::{ConsumerGroups, Coordinator};
use crate::metrics::Metrics;
use crate::storage::Store;

pub use api_versions::response as api_versions_response;
pub use delete_topics::delete as delete_topic;
pub use error_codes::error_codes;

/// What every handler can reach.
#[derive(Debug)]
pub struct Context {
    pub store: Arc<Store>,
    pub config: Arc<GatewayConfig>,
    pub metrics: Arc<Metrics>,
    pub groups: Arc<Coordinator>,
    /// The other gateways of the cluster, and who leads what.
    pub cluster: Arc<Cluster>,
    /// KIP-848 consumer groups (ConsumerGroupHeartbeat); a group id is in at most one of the two.
    pub consumer_groups: Arc<ConsumerGroups>,
    /// Byte budgets of requests in flight and of responses not yet written.
    pub budgets: crate::budget::Budgets,
    /// Source of producer ids for InitProducerId; seeded randomly so ids do not repeat across
    /// restarts.
    pub next_producer_id: AtomicI64,
}

impl Context {
    /// A partition for Produce, Fetch and ListOffsets: NOT_LEADER_OR_FOLLOWER unless this gateway
    /// leads it. In a cluster the leader also holds the partition's lock before it answers from
    /// its ledger, since another gateway may have written the partition since it last did.
    pub async fn led_partition(
        &self,
        topic: &str,
        index: i32,
    ) -> GatewayResult<Arc<crate::storage::PartitionLog>> {
        let part = self.store.partition(topic, index).await?;
        if !self.cluster.leads(topic, index) {
            return Err(GatewayError::NotLeader);
        }
        if self.cluster.is_clustered() {
            part.claim().await?;
        }
        Ok(part)
    }

    /// [`Context::led_partition`] for a Fetch or ListOffsets carrying the client's
    /// `current_leader_epoch`: FENCED_LEADER_EPOCH when it predates this leadership. A client
    /// ahead of this gateway (UNKNOWN_LEADER_EPOCH) saw an epoch of a holding this gateway has
    /// not taken yet (a standalone gateway takes the partition on its first produce, so after a
    /// restart Metadata lists the ledger's epoch until then): it takes the partition and checks
    /// again, so a client is never left waiting for an epoch nothing will reach.
    pub async fn led_partition_at(
        &self,
        topic: &str,
        index: i32,
        leader_epoch: i32,
    ) -> GatewayResult<Arc<crate::storage::PartitionLog>> {
        let part = self.led_partition(topic, index).await?;
        match part.check_leader_epoch(leader_epoch) {
            Err(GatewayError::UnknownLeaderEpoch { .. }) if !part.is_writer() => {
                part.claim().await?;
                part.check_leader_epoch(leader_epoch)?;
            }
            r => r?,
        }
        Ok(part)
    }

    /// Whether this gateway coordinates `group`; NOT_COORDINATOR's code otherwise. Coordinating a
    /// group newly (the members changed) reads its committed offsets again first: the previous
    /// coordinator may have committed since this gateway last read them.
    pub async fn coordinate(&self, group: &str) -> Result<(), i16> {
        if !self.cluster.coordinates(group) {
            return Err(kafka_protocol::error::ResponseError::NotCoordinator.code());
        }
        if self.cluster.is_clustered()
            && let Err(e) = self
                .groups
                .offsets
                .refresh(group, self.cluster.view().version)
                .await
        {
            tracing::warn!(group, error = %e, "reading a group's committed offsets failed");
            return Err(kafka_protocol::error::ResponseError::CoordinatorLoadInProgress.code());
        }
        Ok(())
    }
}

macro_rules! handlers {
    ($( $key:ident => $module:ident, $min:expr, $max:expr; )*) => {
        /// (API, lowest version, highest version) of every implemented API.
        pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[ $( (ApiKey::$key, $min, $max), )* ];

        /// A stable name for metrics and logs.
        pub fn api_name(key: ApiKey) -> &'static str {
            match key {
                $( ApiKey::$key => stringify!($key), )*
                _ => "Unsupported",
            }
        }

        /// Runs the handler of a decoded request.
        pub async fn dispatch(
            ctx: &Context,
            header: &RequestHeader,
            request: RequestKind,
        ) -> GatewayResult<ResponseKind> {
            match request {
                $( RequestKind::$key(r) => Ok(ResponseKind::$key($module::handle(ctx, header, r).await?)), )*
                _ => Err(GatewayError::UnsupportedVersion {
                    api: header.request_api_key,
                    version: header.request_api_version,
                }),
            }
        }
    };
}

handlers! {
    // Produce is advertised from v0 as Kafka 4 does, so that librdkafka < 2.11.1 keeps
    // compression on; clients pick the highest shared version, and v0-2 (which the codec cannot
    // read) never arrive in practice. v13 addresses topics by id only.
    Produce => produce, 0, 12;
    // Fetch v13+ addresses topics by id only.
    Fetch => fetch, 4, 12;
    ListOffsets => list_offsets, 1, 8;
    Metadata => metadata, 0, 12;
    ApiVersions => api_versions, 0, 4;
    CreateTopics => create_topics, 2, 7;
    DeleteTopics => delete_topics, 1, 5;
    DeleteRecords => delete_records, 0, 2;
    // Grows topics with partitions in an SMQ topic of their own (storage/growth.rs).
    CreatePartitions => create_partitions, 0, 3;
    InitProducerId => init_producer_id, 0, 5;
    DescribeConfigs => describe_configs, 1, 4;
    AlterConfigs => alter_configs, 0, 2;
    IncrementalAlterConfigs => incremental_alter_configs, 0, 1;
    DescribeCluster => describe_cluster, 0, 1;
    FindCoordinator => find_coordinator, 0, 4;
    // JoinGroup from v0: librdkafka before 2.11 turns its balanced consumer off otherwise.
    JoinGroup => join_group, 0, 9;
    SyncGroup => sync_group, 0, 5;
    Heartbeat => heartbeat, 0, 4;
    LeaveGroup => leave_group, 0, 5;
    // v9: commits and fetches of KIP-848 members carry their member epoch, checked.
    OffsetCommit => offset_commit, 2, 9;
    OffsetFetch => offset_fetch, 1, 9;
    DescribeGroups => describe_groups, 0, 5;
    // v5 filters by group type (classic or consumer).
    ListGroups => list_groups, 0, 5;
    DeleteGroups => delete_groups, 0, 2;
    OffsetDelete => offset_delete, 0, 0;
    // KIP-848 consumer groups (group.protocol=consumer); v1 adds regex subscriptions, which are
    // refused with INVALID_REQUEST.
    ConsumerGroupHeartbeat => consumer_group_heartbeat, 0, 1;
    ConsumerGroupDescribe => consumer_group_describe, 0, 1;
}

/// The version range of an implemented API.
pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// The lowest version the codec can decode (below it we advertise but cannot read).
pub fn decodable_min(key: ApiKey) -> i16 {
    key.valid_versions().min
}

/// Shorthand for building protocol strings.
pub(crate) fn sb(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_ranges_are_decodable_except_old_produce() {
        for (key, min, max) in SUPPORTED {
            let valid = key.valid_versions();
            assert!(
                *max <= valid.max,
                "{key:?} advertises v{max} beyond the codec's v{}",
                valid.max
            );
            if *key != ApiKey::Produce {
                assert!(
                    *min >= valid.min,
                    "{key:?} advertises v{min} below the codec's v{}",
                    valid.min
                );
            }
        }
    }
}
