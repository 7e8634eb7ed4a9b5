//! Membership: every gateway of a cluster keeps a small file in the filer,
//! `/kafka-gateway/members/<namespace>/<node id>`, rewritten every [`HEARTBEAT`] with the time.
//! Gateways list that directory and take as live the members heard from within [`MEMBER_TTL`]
//! that are not leaving. Nothing else is needed: the gateways already share SMQ and its filer.
//!
//! Membership only decides who *should* lead a partition; who *may* write it is still decided
//! by the partition's lock in the filer (`storage/partition/ownership.rs`). So clocks that
//! disagree, or a filer that cannot be reached, can make partitions unavailable for a while
//! but never give one partition two writers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use smq_client::SmqClient;

use crate::clock::now_ms;
use crate::error::{GatewayError, GatewayResult};

/// How often a member rewrites its file (and reads everyone else's).
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A member not heard from for this long is taken as gone. It bounds how long the gateways can
/// disagree about a dead member's partitions, and with the partition lock's expiry how long
/// they stay unavailable after a crash. Assumes gateway clocks within 2 s of each other.
pub const MEMBER_TTL: Duration = Duration::from_secs(6);
/// Files of members gone for this long are removed, so the directory does not grow with every
/// gateway that ever ran.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

pub fn members_dir(namespace: &str) -> String {
    format!("/kafka-gateway/members/{namespace}")
}

/// A gateway as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    /// The member's HTTP port (at `host`), where peers read the offsets of the partitions it
    /// leads (`/led-partitions`); 0: not known.
    #[serde(default)]
    pub http_port: u16,
}

/// What a member's file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    #[serde(flatten)]
    pub member: Member,
    /// Random per process: tells a restart of the same gateway from two gateways given one id.
    pub instance: String,
    pub heartbeat_ms: i64,
    /// Set on SIGTERM: the others stop counting this member at once, before its file expires.
    pub leaving: bool,
    /// The leader epoch of every partition this member has open (`"<topic>/<partition>"`): the
    /// epoch of its holding where it leads, else the highest it knows. Metadata on every
    /// gateway lists the highest published, and a takeover goes above it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub epochs: BTreeMap<String, i32>,
}

/// The key of a partition in [`MemberRecord::epochs`].
pub fn epoch_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// The topic and partition of an [`epoch_key`] (topic names hold no `/`); None for a key that
/// is not one.
pub fn parse_epoch_key(key: &str) -> Option<(&str, i32)> {
    let (topic, partition) = key.rsplit_once('/')?;
    Some((topic, partition.parse().ok()?))
}

impl MemberRecord {
    pub fn is_live(&self, now_ms: i64) -> bool {
        !self.leaving && now_ms.saturating_sub(self.heartbeat_ms) < MEMBER_TTL.as_millis() as i64
    }

    fn is_forgotten(&self, now_ms: i64) -> bool {
        now_ms.saturating_sub(self.heartbeat_ms) > FORGET_AFTER.as_millis() as i64
    }
}

/// Reads and writes the member files of one namespace.
#[derive(Debug, Clone)]
pub struct MemberFiles {
    client: SmqClient,
    dir: String,
}

impl MemberFiles {
    pub fn new(client: SmqClient, namespace: &str) -> Self {
        Self {
            client,
            dir: members_dir(namespace),
        }
    }

    pub async fn write(&self, record: &MemberRecord) -> GatewayResult<()> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| GatewayError::Internal(format!("encoding a member record: {e}")))?;
        self.client
            .put_file(&self.dir, &record.member.node_id.to_string(), bytes)
            .await?;
        Ok(())
    }

    /// Every member file that parses; old ones of long-gone members are removed on the way.
    pub async fn read_all(&self) -> GatewayResult<Vec<MemberRecord>> {
        let now = now_ms();
        let mut out = Vec::new();
        for entry in self.client.list_dir(&self.dir).await? {
            if entry.is_directory || entry.name.parse::<i32>().is_err() {
                continue;
            }
            let Some(bytes) = self.client.get_file(&self.dir, &entry.name).await? else {
                continue;
            };
            match serde_json::from_slice::<MemberRecord>(&bytes) {
                Ok(r) if r.is_forgotten(now) => {
                    tracing::info!(
                        node_id = r.member.node_id,
                        "removing the file of a member gone for an hour"
                    );
                    if let Err(e) = self.client.delete_path(&self.dir, &entry.name).await {
                        tracing::debug!(error = %e, "removing an old member file failed");
                    }
                }
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(file = %entry.name, dir = %self.dir, error = %e, "ignoring a member file that does not parse")
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(heartbeat_ms: i64, leaving: bool) -> MemberRecord {
        MemberRecord {
            member: Member {
                node_id: 1,
                host: "h".to_string(),
                port: 9092,
                http_port: 9095,
            },
            instance: "i".to_string(),
            heartbeat_ms,
            leaving,
            epochs: BTreeMap::from([(epoch_key("orders", 3), 7)]),
        }
    }

    #[test]
    fn live_means_heard_from_recently_and_not_leaving() {
        let now = 1_000_000;
        assert!(record(now - 1_000, false).is_live(now));
        assert!(!record(now - 1_000, true).is_live(now));
        assert!(!record(now - MEMBER_TTL.as_millis() as i64, false).is_live(now));
        // A clock ahead of ours still counts as live.
        assert!(record(now + 1_500, false).is_live(now));
        assert!(record(now - 4_000_000, false).is_forgotten(now));
    }

    #[test]
    fn records_round_trip_as_json() {
        let r = record(42, false);
        let bytes = serde_json::to_vec(&r).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"node_id\":1"), "{text}");
        assert!(text.contains("\"epochs\":{\"orders/3\":7}"), "{text}");
        assert_eq!(serde_json::from_slice::<MemberRecord>(&bytes).unwrap(), r);
    }

    #[test]
    fn epoch_keys_round_trip() {
        assert_eq!(
            parse_epoch_key(&epoch_key("orders.v1", 12)),
            Some(("orders.v1", 12))
        );
        assert_eq!(parse_epoch_key("orders"), None);
        assert_eq!(parse_epoch_key("orders/x"), None);
    }

    #[test]
    fn a_file_from_before_epochs_reads_as_publishing_none() {
        let old = br#"{"node_id":2,"host":"h","port":9092,"instance":"i","heartbeat_ms":5,"leaving":false}"#;
        let r: MemberRecord = serde_json::from_slice(old).unwrap();
        assert!(r.epochs.is_empty());
        assert_eq!(r.member.node_id, 2);
    }
}
