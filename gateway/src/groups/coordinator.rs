use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError as E;
use tokio::sync::watch;

use super::offsets::OffsetStore;

/// The states of Kafka's group state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

#[derive(Debug)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    /// Has rejoined during the current rebalance.
    joined: bool,
}

#[derive(Debug)]
struct Group {
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pending: HashSet<String>,
    rebalance_deadline: Instant,
    /// A new group waits this long for more members before its first generation.
    initial_until: Option<Instant>,
    sync_deadline: Instant,
    version: watch::Sender<u64>,
}

impl Group {
    fn new() -> Self {
        Self {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            pending: HashSet::new(),
            rebalance_deadline: Instant::now(),
            initial_until: None,
            sync_deadline: Instant::now(),
            version: watch::channel(0).0,
        }
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(30))
    }

    fn prepare_rebalance(&mut self, initial_delay: Duration) {
        let now = Instant::now();
        if self.state == State::Empty {
            self.initial_until = Some(now + initial_delay);
        }
        self.state = State::PreparingRebalance;
        self.rebalance_deadline = now + self.max_rebalance_timeout();
        for m in self.members.values_mut() {
            m.joined = false;
        }
        self.bump();
    }

    /// Ends the join phase when everyone rejoined (and a new group's initial delay passed), or
    /// when the deadline passed, dropping members that did not rejoin.
    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.joined);
        let initial_over = self.initial_until.is_none_or(|t| now >= t);
        if !((all_joined && initial_over) || now >= self.rebalance_deadline) {
            return;
        }
        self.members.retain(|_, m| m.joined);
        self.initial_until = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.protocol = None;
            self.leader = None;
            self.bump();
            return;
        }
        self.protocol = self.choose_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            m.last_seen = now;
        }
        self.state = State::CompletingRebalance;
        self.sync_deadline = now + self.max_rebalance_timeout();
        self.bump();
    }

    /// The first protocol, in the first member's preference order, that every member supports.
    fn choose_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .find(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
            })
            .cloned()
    }

    /// Whether a request from `member_id` with this group.instance.id comes from a static
    /// member that another member with the same instance id has replaced (Kafka answers such a
    /// request with FENCED_INSTANCE_ID, a fatal error for the old member).
    fn is_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        let Some(iid) = instance_id else {
            return false;
        };
        self.members
            .iter()
            .any(|(id, m)| m.instance_id.as_deref() == Some(iid) && id != member_id)
    }

    /// Kafka's `validateMember`: a static member's instance id must name this member id
    /// (another one: FENCED_INSTANCE_ID; none: UNKNOWN_MEMBER_ID), and the member must belong to
    /// the group.
    fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), E> {
        if let Some(iid) = instance_id {
            match self
                .members
                .iter()
                .find(|(_, m)| m.instance_id.as_deref() == Some(iid))
            {
                None => return Err(E::UnknownMemberId),
                Some((id, _)) if id != member_id => return Err(E::FencedInstanceId),
                Some(_) => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(E::UnknownMemberId);
        }
        Ok(())
    }

    /// See [`Coordinator::check_commit`].
    fn validate_commit(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        if generation < 0 && self.state == State::Empty {
            return 0;
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            if let Err(e) = self.validate_member(member_id, instance_id) {
                return code(e);
            }
            if generation != self.generation {
                return code(E::IllegalGeneration);
            }
        } else if self.state != State::Empty {
            return code(E::UnknownMemberId);
        }
        if self.state == State::CompletingRebalance {
            return code(E::RebalanceInProgress);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_seen = Instant::now();
        }
        0
    }

    fn remove_member(&mut self, id: &str, initial_delay: Duration) {
        if self.members.shift_remove(id).is_none() {
            return;
        }
        if self.members.is_empty() {
            self.state = State::Empty;
            self.generation += 1;
            self.protocol = None;
            self.leader = None;
            self.bump();
        } else if self.state != State::PreparingRebalance {
            self.prepare_rebalance(initial_delay);
        } else {
            self.maybe_complete_join(Instant::now());
            self.bump();
        }
    }
}

/// What a member sent in JoinGroup.
#[derive(Debug, Clone)]
pub struct JoinArgs {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new member first gets its id with MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
}

/// The JoinGroup answer.
#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only for the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct GroupView {
    pub group_id: String,
    pub state: State,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberView>,
}

pub struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    pub offsets: OffsetStore,
    initial_delay: Duration,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").finish()
    }
}

fn code(e: E) -> i16 {
    e.code()
}

impl Coordinator {
    pub fn new(offsets: OffsetStore, initial_delay: Duration) -> Self {
        Self {
            groups: Mutex::new(HashMap::new()),
            offsets,
            initial_delay,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Expires members whose session ran out and ends join and sync phases whose deadline
    /// passed. Run periodically.
    pub fn tick(&self) {
        let now = Instant::now();
        let mut groups = self.lock();
        for (id, g) in groups.iter_mut() {
            match g.state {
                State::PreparingRebalance => g.maybe_complete_join(now),
                State::CompletingRebalance if now >= g.sync_deadline => {
                    tracing::info!(group = %id, "leader did not send assignments in time; rebalancing");
                    g.prepare_rebalance(self.initial_delay);
                }
                _ => {}
            }
            if matches!(g.state, State::Stable | State::CompletingRebalance) {
                let expired: Vec<String> = g
                    .members
                    .iter()
                    .filter(|(_, m)| now.duration_since(m.last_seen) > m.session_timeout)
                    .map(|(k, _)| k.clone())
                    .collect();
                for m in expired {
                    tracing::info!(group = %id, member = %m, "member session expired");
                    g.remove_member(&m, self.initial_delay);
                }
            }
        }
    }

    pub async fn join(&self, a: JoinArgs) -> JoinOutcome {
        let fail = |e: E, member_id: String| JoinOutcome {
            error: code(e),
            generation: -1,
            member_id,
            ..Default::default()
        };
        if a.group_id.is_empty() {
            return fail(E::InvalidGroupId, a.member_id);
        }
        if a.session_timeout < Duration::from_millis(1000)
            || a.session_timeout > Duration::from_secs(1800)
        {
            return fail(E::InvalidSessionTimeout, a.member_id);
        }
        let (member_id, start_generation, mut rx) = {
            let mut groups = self.lock();
            let g = groups.entry(a.group_id.clone()).or_insert_with(Group::new);
            if !g.members.is_empty()
                && (g.protocol_type.as_deref() != Some(a.protocol_type.as_str())
                    || !g.members.values().all(|m| {
                        m.protocols
                            .iter()
                            .any(|(n, _)| a.protocols.iter().any(|(p, _)| p == n))
                    }))
            {
                return fail(E::InconsistentGroupProtocol, a.member_id);
            }
            let mut member_id = a.member_id.clone();
            if member_id.is_empty() {
                let static_old = a.instance_id.as_ref().and_then(|iid| {
                    g.members
                        .iter()
                        .find(|(_, m)| m.instance_id.as_ref() == Some(iid))
                        .map(|(k, _)| k.clone())
                });
                member_id = format!("{}-{:016x}", a.client_id, rand::random::<u64>());
                if let Some(old) = static_old {
                    // A static member coming back: it takes over its old slot. If nothing else
                    // changed, the group does not rebalance and the member gets its assignment.
                    let m = g.members.shift_remove(&old).expect("found above");
                    let same = m.protocols == a.protocols;
                    g.members.insert(member_id.clone(), m);
                    if g.leader.as_deref() == Some(old.as_str()) {
                        g.leader = Some(member_id.clone());
                    }
                    if same && g.state == State::Stable {
                        let m = g.members.get_mut(&member_id).expect("inserted");
                        m.last_seen = Instant::now();
                        m.session_timeout = a.session_timeout;
                        return joined(g, member_id);
                    }
                } else if a.require_known_member_id && a.instance_id.is_none() {
                    g.pending.insert(member_id.clone());
                    return fail(E::MemberIdRequired, member_id);
                }
            } else if g.is_fenced(a.instance_id.as_deref(), &member_id) {
                return fail(E::FencedInstanceId, member_id);
            } else if !g.members.contains_key(&member_id) && !g.pending.remove(&member_id) {
                return fail(E::UnknownMemberId, member_id);
            }
            let now = Instant::now();
            let m = g
                .members
                .entry(member_id.clone())
                .or_insert_with(|| Member {
                    instance_id: a.instance_id.clone(),
                    client_id: a.client_id.clone(),
                    client_host: a.client_host.clone(),
                    session_timeout: a.session_timeout,
                    rebalance_timeout: a.rebalance_timeout,
                    protocols: Vec::new(),
                    assignment: Bytes::new(),
                    last_seen: now,
                    joined: false,
                });
            m.protocols = a.protocols.clone();
            m.session_timeout = a.session_timeout;
            m.rebalance_timeout = a.rebalance_timeout;
            m.last_seen = now;
            g.protocol_type = Some(a.protocol_type.clone());
            if g.state != State::PreparingRebalance {
                g.prepare_rebalance(self.initial_delay);
            }
            g.members.get_mut(&member_id).expect("inserted").joined = true;
            // Read before completing: this very join may end the phase and bump the generation.
            let generation = g.generation;
            g.maybe_complete_join(now);
            (member_id, generation, g.version.subscribe())
        };
        let give_up = Instant::now() + a.rebalance_timeout + Duration::from_secs(5);
        loop {
            {
                let groups = self.lock();
                let Some(g) = groups.get(&a.group_id) else {
                    return fail(E::UnknownMemberId, member_id);
                };
                if g.is_fenced(a.instance_id.as_deref(), &member_id) {
                    return fail(E::FencedInstanceId, member_id);
                }
                if !g.members.contains_key(&member_id) {
                    return fail(E::UnknownMemberId, member_id);
                }
                if g.generation > start_generation && g.state != State::PreparingRebalance {
                    return joined(g, member_id);
                }
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return fail(E::RebalanceInProgress, member_id);
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(250)), rx.changed()).await;
        }
    }

    pub async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> (i16, Option<String>, Option<String>, Bytes) {
        let mut rx = {
            let mut groups = self.lock();
            let Some(g) = groups.get_mut(group_id) else {
                return (code(E::UnknownMemberId), None, None, Bytes::new());
            };
            if g.is_fenced(instance_id, member_id) {
                return (code(E::FencedInstanceId), None, None, Bytes::new());
            }
            if !g.members.contains_key(member_id) {
                return (code(E::UnknownMemberId), None, None, Bytes::new());
            }
            if generation != g.generation {
                return (code(E::IllegalGeneration), None, None, Bytes::new());
            }
            match g.state {
                State::PreparingRebalance | State::Empty => {
                    return (code(E::RebalanceInProgress), None, None, Bytes::new());
                }
                State::Stable => {
                    let m = &g.members[member_id];
                    return (
                        0,
                        g.protocol_type.clone(),
                        g.protocol.clone(),
                        m.assignment.clone(),
                    );
                }
                State::CompletingRebalance => {
                    if g.leader.as_deref() == Some(member_id) {
                        let map: HashMap<String, Bytes> = assignments.into_iter().collect();
                        for (id, m) in g.members.iter_mut() {
                            m.assignment = map.get(id).cloned().unwrap_or_default();
                            m.last_seen = Instant::now();
                        }
                        g.state = State::Stable;
                        g.bump();
                        let m = &g.members[member_id];
                        return (
                            0,
                            g.protocol_type.clone(),
                            g.protocol.clone(),
                            m.assignment.clone(),
                        );
                    }
                }
            }
            g.version.subscribe()
        };
        loop {
            let _ = tokio::time::timeout(Duration::from_millis(250), rx.changed()).await;
            let groups = self.lock();
            let Some(g) = groups.get(group_id) else {
                return (code(E::UnknownMemberId), None, None, Bytes::new());
            };
            if g.is_fenced(instance_id, member_id) {
                return (code(E::FencedInstanceId), None, None, Bytes::new());
            }
            let Some(m) = g.members.get(member_id) else {
                return (code(E::UnknownMemberId), None, None, Bytes::new());
            };
            if g.generation != generation || g.state == State::PreparingRebalance {
                return (code(E::RebalanceInProgress), None, None, Bytes::new());
            }
            if g.state == State::Stable {
                return (
                    0,
                    g.protocol_type.clone(),
                    g.protocol.clone(),
                    m.assignment.clone(),
                );
            }
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return code(E::UnknownMemberId);
        };
        if g.is_fenced(instance_id, member_id) {
            return code(E::FencedInstanceId);
        }
        let state = g.state;
        let gen_now = g.generation;
        let Some(m) = g.members.get_mut(member_id) else {
            return code(E::UnknownMemberId);
        };
        m.last_seen = Instant::now();
        if state == State::PreparingRebalance {
            return code(E::RebalanceInProgress);
        }
        if generation != gen_now {
            return code(E::IllegalGeneration);
        }
        0
    }

    /// Removes members by member id, or by instance id when the member id is empty.
    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<i16> {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return members.iter().map(|_| code(E::UnknownMemberId)).collect();
        };
        members
            .iter()
            .map(|(id, iid)| {
                if !id.is_empty() && g.is_fenced(iid.as_deref(), id) {
                    return code(E::FencedInstanceId);
                }
                let target = if id.is_empty() {
                    g.members
                        .iter()
                        .find(|(_, m)| m.instance_id.is_some() && m.instance_id == *iid)
                        .map(|(k, _)| k.clone())
                } else {
                    g.members.contains_key(id).then(|| id.clone())
                };
                match target {
                    Some(t) => {
                        g.remove_member(&t, self.initial_delay);
                        0
                    }
                    None => code(E::UnknownMemberId),
                }
            })
            .collect()
    }

    /// Whether an OffsetCommit may be stored, by Kafka's rules for classic groups
    /// (`ClassicGroup.validateOffsetCommit`): a commit without a generation (-1) from a simple
    /// consumer or admin client is taken while the group has no members; a member's commit needs
    /// its member id and the current generation, and is taken in Stable and also in
    /// PreparingRebalance (clients commit what they consumed before they rejoin, so refusing it
    /// would hand those records out again), but not in CompletingRebalance, where the member
    /// already holds the next generation's id and must wait for its assignment. An accepted
    /// member commit also counts as a heartbeat, as in Kafka.
    pub fn check_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let mut groups = self.lock();
        match groups.get_mut(group_id) {
            Some(g) => g.validate_commit(generation, member_id, instance_id),
            // Kafka creates a "simple" group for a generation-less commit; the offsets store
            // is record enough of it.
            None if generation < 0 => 0,
            None => code(E::IllegalGeneration),
        }
    }

    pub fn describe(&self, group_id: &str) -> GroupView {
        let groups = self.lock();
        match groups.get(group_id) {
            Some(g) => GroupView {
                group_id: group_id.to_string(),
                state: g.state,
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                protocol: if g.state == State::Stable {
                    g.protocol.clone().unwrap_or_default()
                } else {
                    String::new()
                },
                members: g
                    .members
                    .iter()
                    .map(|(id, m)| MemberView {
                        member_id: id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: g
                            .protocol
                            .as_ref()
                            .and_then(|p| m.protocols.iter().find(|(n, _)| n == p))
                            .map(|(_, b)| b.clone())
                            .unwrap_or_default(),
                        assignment: m.assignment.clone(),
                    })
                    .collect(),
            },
            None => GroupView {
                group_id: group_id.to_string(),
                state: State::Empty,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            },
        }
    }

    /// Every known group: with members, or with committed offsets.
    pub fn list(&self) -> Vec<(String, State, String)> {
        let mut out: Vec<(String, State, String)> = self
            .lock()
            .iter()
            .filter(|(_, g)| !g.members.is_empty() || g.protocol_type.is_some())
            .map(|(id, g)| {
                (
                    id.clone(),
                    g.state,
                    g.protocol_type.clone().unwrap_or_default(),
                )
            })
            .collect();
        for id in self.offsets.groups() {
            if !out.iter().any(|(g, _, _)| *g == id) {
                out.push((id, State::Empty, "consumer".to_string()));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether the group has members (DeleteGroups and OffsetDelete refuse then).
    pub fn is_active(&self, group_id: &str) -> bool {
        self.lock()
            .get(group_id)
            .is_some_and(|g| !g.members.is_empty())
    }

    pub fn forget(&self, group_id: &str) {
        let mut groups = self.lock();
        if groups.get(group_id).is_some_and(|g| g.members.is_empty()) {
            groups.remove(group_id);
        }
    }
}

/// The successful JoinGroup answer for a member of the group's current generation; only the
/// leader gets the member list it must compute assignments from.
fn joined(g: &Group, member_id: String) -> JoinOutcome {
    let is_leader = g.leader.as_deref() == Some(member_id.as_str());
    JoinOutcome {
        error: 0,
        generation: g.generation,
        protocol_type: g.protocol_type.clone(),
        protocol: g.protocol.clone(),
        leader: g.leader.clone().unwrap_or_default(),
        members: if is_leader { members_of(g) } else { Vec::new() },
        member_id,
    }
}

fn members_of(g: &Group) -> Vec<(String, Option<String>, Bytes)> {
    let Some(p) = g.protocol.as_ref() else {
        return Vec::new();
    };
    g.members
        .iter()
        .map(|(id, m)| {
            let meta = m
                .protocols
                .iter()
                .find(|(n, _)| n == p)
                .map(|(_, b)| b.clone())
                .unwrap_or_default();
            (id.clone(), m.instance_id.clone(), meta)
        })
        .collect()
}

#[cfg(test)]
#[path = "coordinator_tests.rs"]
mod tests;
