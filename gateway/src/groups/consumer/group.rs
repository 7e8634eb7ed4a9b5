//! One KIP-848 consumer group: its members, group epoch, target assignment and which member owns
//! which partition at which epoch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError as E;
use uuid::Uuid;

use super::assignor::{self, Assignment, MemberSpec};
use super::reconcile::{MemberState, Progress, reconcile};

/// The member epoch a static member leaves with (it may come back under a new member id).
pub const LEAVE_STATIC_EPOCH: i32 = -2;
pub const LEAVE_EPOCH: i32 = -1;

/// A subscribed topic as the group last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicMeta {
    pub id: Uuid,
    pub partitions: i32,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout: Duration,
    pub assignor: Option<String>,
    pub subscribed: BTreeSet<String>,
    pub progress: Progress,
    pub last_heartbeat: Instant,
    /// A static member that left with epoch -2 and may be replaced.
    pub static_left: bool,
    /// Set while the member must revoke partitions: it is fenced if it has not by then.
    pub revoke_deadline: Option<Instant>,
}

/// Why a member was removed.
#[derive(Debug, Clone, Copy)]
pub enum Removal {
    Left,
    SessionExpired,
    RevocationTimedOut,
}

#[derive(Debug, Default)]
pub struct Group {
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, Member>,
    /// Target assignment by member id, computed at `assignment_epoch`.
    pub target: BTreeMap<String, Assignment>,
    /// Subscribed topics by name.
    pub topics: BTreeMap<String, TopicMeta>,
    /// (topic, partition) → epoch of the member that owns it or is revoking it.
    pub owners: HashMap<(Uuid, i32), (String, i32)>,
}

/// The heartbeat as the group sees it (validated by the caller).
#[derive(Debug, Clone)]
pub struct Beat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topics: Option<Vec<String>>,
    pub assignor: Option<String>,
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

/// A successful heartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub member_id: String,
    pub member_epoch: i32,
    /// None when it did not change and the request was not a full one.
    pub assignment: Option<Assignment>,
}

pub type Refusal = (E, String);

impl Group {
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kafka's `ConsumerGroupState`: Empty, Assigning, Reconciling or Stable.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.epoch > self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.progress.state != MemberState::Stable || m.progress.epoch != self.assignment_epoch
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The assignor most members asked for, else the default.
    pub fn assignor(&self) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(name, n)| (*n, std::cmp::Reverse(*name)))
            .map(|(n, _)| n.to_string())
            .unwrap_or_else(|| assignor::DEFAULT_ASSIGNOR.to_string())
    }

    /// Topic names any member subscribes to.
    pub fn subscribed_names(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.subscribed.iter().cloned())
            .collect()
    }

    pub fn topic_name(&self, id: Uuid) -> Option<&str> {
        self.topics
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(n, _)| n.as_str())
    }

    fn set_owners(&mut self, member_id: &str, old: Option<&Progress>, new: Option<&Progress>) {
        if let Some(old) = old {
            for (t, parts) in old.assigned.iter().chain(&old.pending_revocation) {
                for p in parts {
                    if self
                        .owners
                        .get(&(*t, *p))
                        .is_some_and(|(m, _)| m == member_id)
                    {
                        self.owners.remove(&(*t, *p));
                    }
                }
            }
        }
        if let Some(new) = new {
            for (t, parts) in new.assigned.iter().chain(&new.pending_revocation) {
                for p in parts {
                    self.owners
                        .insert((*t, *p), (member_id.to_string(), new.epoch));
                }
            }
        }
    }

    /// Removes a member; the others get a new target assignment at the next group epoch.
    pub fn remove(&mut self, member_id: &str, why: Removal) -> bool {
        let Some(m) = self.members.remove(member_id) else {
            return false;
        };
        tracing::info!(member = %member_id, reason = ?why, "consumer group member removed");
        self.set_owners(member_id, Some(&m.progress), None);
        self.target.remove(member_id);
        self.epoch += 1;
        true
    }

    /// Merges fresh topic lookups (None: the topic does not exist) into the group's view; names
    /// not looked up keep their last view. Whether anything changed.
    fn refresh_topics(&mut self, seen: &BTreeMap<String, Option<TopicMeta>>) -> bool {
        let subscribed = self.subscribed_names();
        let mut next = BTreeMap::new();
        for name in subscribed {
            let meta = match seen.get(&name) {
                Some(m) => *m,
                None => self.topics.get(&name).copied(),
            };
            if let Some(m) = meta {
                next.insert(name, m);
            }
        }
        let changed = next != self.topics;
        self.topics = next;
        changed
    }

    fn compute_target(&mut self) {
        let ids: BTreeMap<&str, Uuid> = self
            .topics
            .iter()
            .map(|(n, t)| (n.as_str(), t.id))
            .collect();
        let specs: BTreeMap<String, MemberSpec> = self
            .members
            .iter()
            .map(|(id, m)| {
                let spec = MemberSpec {
                    topics: m
                        .subscribed
                        .iter()
                        .filter_map(|n| ids.get(n.as_str()).copied())
                        .collect(),
                    previous: self.target.get(id).cloned().unwrap_or_default(),
                };
                (id.clone(), spec)
            })
            .collect();
        let counts: BTreeMap<Uuid, i32> =
            self.topics.values().map(|t| (t.id, t.partitions)).collect();
        self.target = assignor::assign(&self.assignor(), &specs, &counts);
        self.assignment_epoch = self.epoch;
    }

    /// One heartbeat of a member (not a leave): join, subscription changes, target assignment,
    /// reconciliation.
    pub fn heartbeat(
        &mut self,
        b: Beat,
        seen: &BTreeMap<String, Option<TopicMeta>>,
        now: Instant,
    ) -> Result<Reply, Refusal> {
        let joining = b.member_epoch == 0;
        let mut member_id = b.member_id.clone();
        if member_id.is_empty() {
            member_id = uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string();
        }
        let mut bump = false;
        let old = match &b.instance_id {
            Some(iid) => self.static_member(&member_id, iid, &b, joining)?,
            None => match self.members.get(&member_id) {
                Some(m) if joining => {
                    // A member rejoining under its id with epoch 0 (after being fenced) has
                    // given up its partitions: start it over.
                    let mut m = m.clone();
                    self.set_owners(&member_id, Some(&m.progress), None);
                    m.progress = Progress::joining();
                    Some(m)
                }
                Some(m) => {
                    check_epoch(&m.progress, b.member_epoch, b.owned.as_ref())?;
                    Some(m.clone())
                }
                None if joining => None,
                None => {
                    return Err((
                        E::UnknownMemberId,
                        format!("member {member_id} is not in the group"),
                    ));
                }
            },
        };
        let previous_assigned = old.as_ref().map(|m| m.progress.assigned.clone());
        let mut m = old.clone().unwrap_or_else(|| Member {
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout: Duration::from_secs(300),
            assignor: None,
            subscribed: BTreeSet::new(),
            progress: Progress::joining(),
            last_heartbeat: now,
            static_left: false,
            revoke_deadline: None,
        });
        if old.is_none() {
            bump = true;
        }
        m.client_id = b.client_id.clone();
        m.client_host = b.client_host.clone();
        m.last_heartbeat = now;
        m.static_left = false;
        if b.instance_id.is_some() {
            m.instance_id = b.instance_id.clone();
        }
        if b.rack_id.is_some() {
            m.rack_id = b.rack_id.clone();
        }
        if b.rebalance_timeout_ms >= 0 {
            m.rebalance_timeout = Duration::from_millis(b.rebalance_timeout_ms as u64);
        }
        if let Some(a) = &b.assignor
            && m.assignor.as_ref() != Some(a)
        {
            m.assignor = Some(a.clone());
            bump = true;
        }
        if let Some(names) = &b.subscribed_topics {
            let names: BTreeSet<String> = names.iter().cloned().collect();
            if names != m.subscribed {
                m.subscribed = names;
                bump = true;
            }
        }
        self.members.insert(member_id.clone(), m);
        if self.refresh_topics(seen) {
            bump = true;
        }
        if bump {
            self.epoch += 1;
        }
        if self.epoch > self.assignment_epoch {
            self.compute_target();
        }
        let target = self.target.get(&member_id).cloned().unwrap_or_default();
        let current = self.members[&member_id].progress.clone();
        let owners = &self.owners;
        let me = member_id.as_str();
        let next = reconcile(
            &current,
            self.assignment_epoch,
            &target,
            b.owned.as_ref(),
            |t, p| {
                owners
                    .get(&(t, p))
                    .filter(|(owner, _)| owner != me)
                    .map(|(_, e)| *e)
            },
        );
        if next != current {
            self.set_owners(&member_id, Some(&current), Some(&next));
        }
        let m = self.members.get_mut(&member_id).expect("inserted");
        m.revoke_deadline = match next.state {
            MemberState::UnrevokedPartitions => {
                Some(m.revoke_deadline.unwrap_or(now + m.rebalance_timeout))
            }
            _ => None,
        };
        m.progress = next;
        let full = joining
            || (b.rebalance_timeout_ms != -1 && b.subscribed_topics.is_some() && b.owned.is_some());
        let changed = previous_assigned.as_ref() != Some(&m.progress.assigned);
        Ok(Reply {
            member_id,
            member_epoch: m.progress.epoch,
            assignment: (full || changed).then(|| m.progress.assigned.clone()),
        })
    }

    /// The member a static member's heartbeat is for (a rejoin replaces one that left with
    /// epoch -2 and takes over its assignment).
    fn static_member(
        &mut self,
        member_id: &str,
        instance_id: &str,
        b: &Beat,
        joining: bool,
    ) -> Result<Option<Member>, Refusal> {
        let existing = self
            .members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance_id))
            .map(|(id, m)| (id.clone(), m.clone()));
        if joining {
            let Some((old_id, old)) = existing else {
                return Ok(None);
            };
            if old_id == member_id {
                let mut m = old;
                self.set_owners(member_id, Some(&m.progress), None);
                m.progress = Progress::joining();
                return Ok(Some(m));
            }
            if !old.static_left {
                return Err((
                    E::UnreleasedInstanceId,
                    format!("static member {instance_id} is still in the group as {old_id}"),
                ));
            }
            // Replace: same assignment and target, new member id.
            self.members.remove(&old_id);
            if let Some(t) = self.target.remove(&old_id) {
                self.target.insert(member_id.to_string(), t);
            }
            self.set_owners(&old_id, Some(&old.progress), None);
            let mut m = old;
            m.progress.epoch = 0;
            m.progress.previous_epoch = 0;
            self.set_owners(member_id, None, Some(&m.progress));
            return Ok(Some(m));
        }
        let Some((id, m)) = existing else {
            return Err((
                E::UnknownMemberId,
                format!("no static member with instance id {instance_id}"),
            ));
        };
        if id != member_id {
            return Err((
                E::FencedInstanceId,
                format!("instance id {instance_id} belongs to member {id}"),
            ));
        }
        check_epoch(&m.progress, b.member_epoch, b.owned.as_ref())?;
        Ok(Some(m))
    }

    /// A member leaving (epoch -1), or a static member leaving for a while (epoch -2, it keeps
    /// its partitions until its session ends or it comes back).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        epoch: i32,
    ) -> Result<i32, Refusal> {
        let id = match instance_id {
            Some(iid) => {
                let Some((id, _)) = self
                    .members
                    .iter()
                    .find(|(_, m)| m.instance_id.as_deref() == Some(iid))
                else {
                    return Err((
                        E::UnknownMemberId,
                        format!("no static member with instance id {iid}"),
                    ));
                };
                if id != member_id {
                    return Err((
                        E::FencedInstanceId,
                        format!("instance id {iid} belongs to member {id}"),
                    ));
                }
                id.clone()
            }
            None => member_id.to_string(),
        };
        if !self.members.contains_key(&id) {
            return Err((
                E::UnknownMemberId,
                format!("member {id} is not in the group"),
            ));
        }
        if epoch == LEAVE_STATIC_EPOCH {
            let m = self.members.get_mut(&id).expect("checked");
            m.static_left = true;
            m.revoke_deadline = None;
            return Ok(LEAVE_STATIC_EPOCH);
        }
        self.remove(&id, Removal::Left);
        Ok(LEAVE_EPOCH)
    }

    /// Members whose session ended or who did not revoke in time.
    pub fn expired(&self, now: Instant, session: Duration) -> Vec<(String, Removal)> {
        self.members
            .iter()
            .filter_map(|(id, m)| {
                if now.duration_since(m.last_heartbeat) > session {
                    Some((id.clone(), Removal::SessionExpired))
                } else if m.revoke_deadline.is_some_and(|d| now >= d) {
                    Some((id.clone(), Removal::RevocationTimedOut))
                } else {
                    None
                }
            })
            .collect()
    }

    /// Kafka's `validateOffsetCommit` of consumer groups: 0 or the error code.
    pub fn check_commit(&self, member_id: &str, epoch: i32, api_version: i16) -> i16 {
        if epoch < 0 && self.members.is_empty() {
            return 0;
        }
        let Some(m) = self.members.get(member_id) else {
            return E::UnknownMemberId.code();
        };
        if api_version < 9 {
            return E::UnsupportedVersion.code();
        }
        if epoch != m.progress.epoch {
            return E::StaleMemberEpoch.code();
        }
        0
    }

    /// Kafka's `validateOffsetFetch` of consumer groups.
    pub fn check_fetch(&self, member_id: Option<&str>, epoch: i32) -> i16 {
        let Some(member_id) = member_id.filter(|_| epoch >= 0) else {
            return 0;
        };
        match self.members.get(member_id) {
            None => E::UnknownMemberId.code(),
            Some(m) if m.progress.epoch != epoch => E::StaleMemberEpoch.code(),
            Some(_) => 0,
        }
    }
}

/// Kafka's member epoch check: a newer epoch than known, or an older one that is not the
/// previous epoch with a subset of the assignment (a lost response), fences the member.
fn check_epoch(p: &Progress, received: i32, owned: Option<&Assignment>) -> Result<(), Refusal> {
    let subset = || {
        owned.is_some_and(|o| {
            o.iter().all(|(t, parts)| {
                p.assigned
                    .get(t)
                    .is_some_and(|a| parts.iter().all(|x| a.contains(x)))
            })
        })
    };
    if received > p.epoch || (received < p.epoch && (received != p.previous_epoch || !subset())) {
        return Err((
            E::FencedMemberEpoch,
            format!(
                "member epoch {received} does not match the coordinator's {}; the member must \
                 abandon its partitions and rejoin",
                p.epoch
            ),
        ));
    }
    Ok(())
}
