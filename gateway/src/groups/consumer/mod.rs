//! KIP-848 consumer groups (`group.protocol=consumer`): the ConsumerGroupHeartbeat protocol with
//! server-side assignment. Like the classic groups, membership lives in memory (after a restart
//! members get UNKNOWN_MEMBER_ID and rejoin); committed offsets are the shared
//! [`OffsetStore`](super::OffsetStore)'s.

pub mod assignor;
mod group;
pub mod reconcile;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError as E;

pub use assignor::{ASSIGNORS, Assignment};
use group::Group;
pub use group::{Beat, LEAVE_EPOCH, LEAVE_STATIC_EPOCH, Reply, TopicMeta};

/// A heartbeat's outcome: the reply, or an error code with a message.
pub type Outcome = Result<Reply, (i16, String)>;

/// One member as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: Vec<String>,
    /// (topic id, topic name, partitions).
    pub assignment: Vec<(uuid::Uuid, String, Vec<i32>)>,
    pub target: Vec<(uuid::Uuid, String, Vec<i32>)>,
}

#[derive(Debug, Clone)]
pub struct GroupView {
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<MemberView>,
}

pub struct ConsumerGroups {
    groups: Mutex<HashMap<String, Group>>,
    session_timeout: Duration,
    pub heartbeat_interval: Duration,
}

impl std::fmt::Debug for ConsumerGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerGroups")
            .field("session_timeout", &self.session_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .finish()
    }
}

fn names(g: &Group, a: &Assignment) -> Vec<(uuid::Uuid, String, Vec<i32>)> {
    a.iter()
        .map(|(t, parts)| {
            (
                *t,
                g.topic_name(*t).unwrap_or_default().to_string(),
                parts.iter().copied().collect(),
            )
        })
        .collect()
}

impl ConsumerGroups {
    pub fn new(session_timeout: Duration, heartbeat_interval: Duration) -> Self {
        Self {
            groups: Mutex::new(HashMap::new()),
            session_timeout,
            heartbeat_interval,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The topic names a heartbeat needs looked up: every member's subscription and the new one.
    pub fn topics_to_resolve(&self, group_id: &str, new: Option<&[String]>) -> BTreeSet<String> {
        let mut out = self
            .lock()
            .get(group_id)
            .map(Group::subscribed_names)
            .unwrap_or_default();
        out.extend(new.into_iter().flatten().cloned());
        out
    }

    /// A heartbeat (MemberEpoch >= 0) or a leave (-1, -2), validated as Kafka does.
    /// `seen` holds fresh lookups of the topics [`Self::topics_to_resolve`] named.
    pub fn heartbeat(
        &self,
        group_id: &str,
        b: Beat,
        regex: bool,
        seen: &BTreeMap<String, Option<TopicMeta>>,
    ) -> Outcome {
        let invalid = |msg: &str| Err((E::InvalidRequest.code(), msg.to_string()));
        if group_id.is_empty() {
            return invalid("GroupId can't be empty.");
        }
        if b.instance_id.as_deref() == Some("") {
            return invalid("InstanceId can't be empty.");
        }
        if b.rack_id.as_deref() == Some("") {
            return invalid("RackId can't be empty.");
        }
        if regex {
            return invalid(
                "SubscribedTopicRegex is not supported by this gateway: subscribe by topic names.",
            );
        }
        match b.member_epoch {
            e if e > 0 || e == LEAVE_EPOCH => {
                if b.member_id.is_empty() {
                    return invalid("MemberId can't be empty.");
                }
            }
            0 => {
                if b.rebalance_timeout_ms == -1 {
                    return invalid("RebalanceTimeoutMs must be provided in first request.");
                }
                if b.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                    return invalid("TopicPartitions must be empty when (re-)joining.");
                }
                if b.subscribed_topics.as_ref().is_none_or(Vec::is_empty) {
                    return invalid("SubscribedTopicNames must be set in first request.");
                }
            }
            LEAVE_STATIC_EPOCH => {
                if b.member_id.is_empty() {
                    return invalid("MemberId can't be empty.");
                }
                if b.instance_id.is_none() {
                    return invalid("InstanceId can't be null.");
                }
            }
            _ => return invalid("MemberEpoch is invalid."),
        }
        if let Some(a) = &b.assignor
            && !ASSIGNORS.contains(&a.as_str())
        {
            return Err((
                E::UnsupportedAssignor.code(),
                format!(
                    "ServerAssignor {a} is not supported. Supported assignors: {}.",
                    ASSIGNORS.join(", ")
                ),
            ));
        }
        let mut groups = self.lock();
        let refuse = |(e, msg): (E, String)| Err((e.code(), msg));
        if b.member_epoch < 0 {
            let Some(g) = groups.get_mut(group_id) else {
                return Err((
                    E::UnknownMemberId.code(),
                    format!("group {group_id} has no members"),
                ));
            };
            let member_id = b.member_id.clone();
            return match g.leave(&b.member_id, b.instance_id.as_deref(), b.member_epoch) {
                Ok(epoch) => {
                    tracing::info!(group = %group_id, member = %member_id, epoch, "consumer group member left");
                    Ok(Reply {
                        member_id,
                        member_epoch: epoch,
                        assignment: None,
                    })
                }
                Err(r) => refuse(r),
            };
        }
        if b.member_epoch > 0 && !groups.contains_key(group_id) {
            // Membership is not kept across restarts: the member rejoins.
            return Err((
                E::UnknownMemberId.code(),
                format!("group {group_id} has no members"),
            ));
        }
        let g = groups.entry(group_id.to_string()).or_default();
        let epoch_before = g.epoch;
        let out = g.heartbeat(b, seen, Instant::now());
        if g.epoch != epoch_before {
            tracing::info!(group = %group_id, epoch = g.epoch, members = g.members.len(), "consumer group epoch bumped");
        }
        out.or_else(refuse)
    }

    /// Fences members whose session ended or who did not revoke partitions within their
    /// rebalance timeout. Run periodically.
    pub fn tick(&self) {
        let now = Instant::now();
        let mut groups = self.lock();
        for (id, g) in groups.iter_mut() {
            for (member, why) in g.expired(now, self.session_timeout) {
                tracing::info!(group = %id, member = %member, reason = ?why, "fencing consumer group member");
                g.remove(&member, why);
            }
        }
    }

    /// Whether the group exists as a consumer-protocol group.
    pub fn exists(&self, group_id: &str) -> bool {
        self.lock().contains_key(group_id)
    }

    /// Whether the group has members.
    pub fn is_active(&self, group_id: &str) -> bool {
        self.lock().get(group_id).is_some_and(|g| !g.is_empty())
    }

    /// Drops the group if it has no members (DeleteGroups, or a classic join converting it).
    pub fn forget(&self, group_id: &str) -> bool {
        let mut groups = self.lock();
        if groups.get(group_id).is_some_and(Group::is_empty) {
            groups.remove(group_id);
            return true;
        }
        false
    }

    /// Every consumer-protocol group with its state.
    pub fn list(&self) -> Vec<(String, &'static str)> {
        let mut out: Vec<_> = self
            .lock()
            .iter()
            .map(|(id, g)| (id.clone(), g.state()))
            .collect();
        out.sort();
        out
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupView> {
        let groups = self.lock();
        let g = groups.get(group_id)?;
        Some(GroupView {
            state: g.state(),
            epoch: g.epoch,
            assignment_epoch: g.assignment_epoch,
            assignor: g.assignor(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberView {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.progress.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed: m.subscribed.iter().cloned().collect(),
                    assignment: names(g, &m.progress.assigned),
                    target: names(g, &g.target.get(id).cloned().unwrap_or_default()),
                })
                .collect(),
        })
    }

    /// OffsetCommit from a consumer-protocol group's member: None if the group is not one.
    pub fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
        api_version: i16,
    ) -> Option<i16> {
        let groups = self.lock();
        let g = groups.get(group_id)?;
        Some(g.check_commit(member_id, epoch, api_version))
    }

    /// OffsetFetch (v9+) with a member id and epoch: None if the group is not a consumer group.
    pub fn check_fetch(&self, group_id: &str, member_id: Option<&str>, epoch: i32) -> Option<i16> {
        let groups = self.lock();
        let g = groups.get(group_id)?;
        Some(g.check_fetch(member_id, epoch))
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
