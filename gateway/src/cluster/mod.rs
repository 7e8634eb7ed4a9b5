//! Several gateways as one Kafka cluster: each gateway is a broker (its `--node-id`), they find
//! each other through files in the filer (`members`), and every partition's leader and every
//! group's coordinator follow from the live members alone (`spread`).
//!
//! A gateway started without a node id is standalone, as before clusters existed: node 1, it
//! leads every partition and coordinates every group (partition locks still keep a second
//! standalone gateway from writing what the first one holds).

pub mod members;
pub mod peer;
pub mod spread;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use members::{
    HEARTBEAT, MEMBER_TTL, Member, MemberFiles, MemberRecord, epoch_key, parse_epoch_key,
};

/// Leader epochs published in member files: topic → partition → the highest epoch.
type Published = HashMap<String, HashMap<i32, i32>>;

use crate::clock::now_ms;
use crate::error::{GatewayError, GatewayResult};

/// The node id of a standalone gateway.
pub const STANDALONE_NODE_ID: i32 = 1;

/// The live members as this gateway last saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The live members, sorted by node id; without this gateway while it is leaving.
    pub members: Vec<Member>,
    /// Every node id with a member file, live or not (sorted): each keeps its preferred share
    /// of the partitions (`spread`).
    pub known: Vec<i32>,
    /// Grows whenever `members` changes.
    pub version: u64,
}

impl View {
    fn ids(&self) -> Vec<i32> {
        self.members.iter().map(|m| m.node_id).collect()
    }
}

#[derive(Debug)]
pub struct Cluster {
    me: Member,
    instance: String,
    /// None when standalone.
    files: Option<MemberFiles>,
    view: RwLock<Arc<View>>,
    versions: AtomicU64,
    leaving: AtomicBool,
    /// What this gateway publishes in its member file: its open partitions' leader epochs.
    own_epochs: Mutex<BTreeMap<String, i32>>,
    /// The highest leader epoch any member file publishes for each partition, as last read
    /// (by topic name, so Metadata looks partitions up without building keys).
    known_epochs: RwLock<Arc<Published>>,
}

impl Cluster {
    /// A gateway that is the whole cluster.
    pub fn standalone(host: String, port: i32) -> Self {
        let me = Member {
            node_id: STANDALONE_NODE_ID,
            host,
            port,
            http_port: 0,
        };
        Self::with(me, None)
    }

    fn with(me: Member, files: Option<MemberFiles>) -> Self {
        let view = View {
            members: vec![me.clone()],
            known: vec![me.node_id],
            version: 0,
        };
        Self {
            me,
            instance: format!("{:016x}", rand::random::<u64>()),
            files,
            view: RwLock::new(Arc::new(view)),
            versions: AtomicU64::new(0),
            leaving: AtomicBool::new(false),
            own_epochs: Mutex::new(BTreeMap::new()),
            known_epochs: RwLock::new(Arc::new(Published::new())),
        }
    }

    /// Joins the cluster of the gateways sharing this SMQ namespace as `me`: registers, then
    /// reads who else is there. Fails when another live gateway at another address has the same
    /// node id.
    pub async fn join(files: MemberFiles, me: Member) -> GatewayResult<Self> {
        let cluster = Self::with(me, Some(files.clone()));
        let now = now_ms();
        for r in files.read_all().await? {
            if r.member.node_id == cluster.me.node_id
                && r.is_live(now)
                && (r.member.host != cluster.me.host || r.member.port != cluster.me.port)
            {
                return Err(GatewayError::InvalidConfig(format!(
                    "--node-id {} is in use by the gateway at {}:{} (heard from {} ms ago); give every gateway of a namespace its own node id",
                    r.member.node_id,
                    r.member.host,
                    r.member.port,
                    now - r.heartbeat_ms
                )));
            }
        }
        cluster.heartbeat().await?;
        Ok(cluster)
    }

    pub fn node_id(&self) -> i32 {
        self.me.node_id
    }

    pub fn is_clustered(&self) -> bool {
        self.files.is_some()
    }

    pub fn view(&self) -> Arc<View> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The brokers Metadata lists.
    pub fn brokers(&self) -> Vec<Member> {
        self.view().members.clone()
    }

    /// The node leading a partition; None while no member is live (this one leaving last).
    pub fn leader(&self, topic: &str, index: i32) -> Option<i32> {
        let view = self.view();
        spread::partition_leader(&view.known, &view.ids(), topic, index)
    }

    pub fn leads(&self, topic: &str, index: i32) -> bool {
        self.leader(topic, index) == Some(self.me.node_id)
    }

    /// The member leading a partition, when it is another gateway.
    pub fn peer_leader(&self, topic: &str, index: i32) -> Option<Member> {
        let id = self.leader(topic, index)?;
        if id == self.me.node_id {
            return None;
        }
        self.view()
            .members
            .iter()
            .find(|m| m.node_id == id)
            .cloned()
    }

    /// The member coordinating a group (or a transaction id); None while no member is live.
    pub fn coordinator(&self, key: &str) -> Option<Member> {
        let view = self.view();
        let id = spread::coordinator(&view.known, &view.ids(), key)?;
        view.members.iter().find(|m| m.node_id == id).cloned()
    }

    pub fn coordinates(&self, key: &str) -> bool {
        self.coordinator(key)
            .is_some_and(|m| m.node_id == self.me.node_id)
    }

    /// The highest leader epoch a member file publishes for a partition (0: none does). Together
    /// with the leader's own epoch it is what Metadata lists: published epochs only grow (a
    /// takeover goes above them), so every gateway's answer is at least what a client saw before.
    pub fn known_epoch(&self, topic: &str, partition: i32) -> i32 {
        self.known_epochs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .and_then(|partitions| partitions.get(&partition))
            .copied()
            .unwrap_or(0)
    }

    /// Sets the epochs (topic, partition, epoch) this gateway's next heartbeat publishes.
    fn publish_epochs(&self, epochs: Vec<(String, i32, i32)>) {
        let keyed = epochs
            .into_iter()
            .map(|(topic, partition, epoch)| (epoch_key(&topic, partition), epoch))
            .collect();
        *self.own_epochs.lock().unwrap_or_else(|e| e.into_inner()) = keyed;
    }

    /// Writes this member's file and reads everyone's; the view changes when the live set does.
    /// On a filer error the view stays as it was: leadership then rests on the partition locks.
    pub async fn heartbeat(&self) -> GatewayResult<()> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        let leaving = self.leaving.load(Ordering::Acquire);
        let own = self
            .own_epochs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        files
            .write(&MemberRecord {
                member: self.me.clone(),
                instance: self.instance.clone(),
                heartbeat_ms: now_ms(),
                leaving,
                epochs: own.clone(),
            })
            .await?;
        let now = now_ms();
        let mut live: Vec<Member> = Vec::new();
        let mut known = vec![self.me.node_id];
        // Every file's, live or not: a member that died keeps its epochs published, so its
        // successor goes above them.
        let mut epochs = Published::new();
        let mut note = |key: &str, epoch: i32| {
            if let Some((topic, partition)) = parse_epoch_key(key) {
                let slot = epochs
                    .entry(topic.to_string())
                    .or_default()
                    .entry(partition)
                    .or_insert(epoch);
                *slot = (*slot).max(epoch);
            }
        };
        for (key, epoch) in &own {
            note(key, *epoch);
        }
        for r in files.read_all().await? {
            known.push(r.member.node_id);
            if r.instance != self.instance {
                for (key, epoch) in &r.epochs {
                    note(key, *epoch);
                }
            }
            if r.member.node_id == self.me.node_id {
                if r.instance != self.instance && r.is_live(now) {
                    tracing::error!(node_id = r.member.node_id, other = %format!("{}:{}", r.member.host, r.member.port), "another gateway uses this node id; give every gateway its own --node-id");
                }
                continue;
            }
            if r.is_live(now) {
                live.push(r.member);
            }
        }
        if !leaving {
            live.push(self.me.clone());
        }
        live.sort_by_key(|m| m.node_id);
        known.sort_unstable();
        known.dedup();
        *self.known_epochs.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(epochs);
        self.set_members(live, known);
        Ok(())
    }

    fn set_members(&self, members: Vec<Member>, known: Vec<i32>) {
        let mut view = self.view.write().unwrap_or_else(|e| e.into_inner());
        if view.members == members && view.known == known {
            return;
        }
        let version = self.versions.fetch_add(1, Ordering::AcqRel) + 1;
        tracing::info!(
            version,
            members = ?members.iter().map(|m| m.node_id).collect::<Vec<_>>(),
            "cluster membership changed"
        );
        *view = Arc::new(View {
            members,
            known,
            version,
        });
    }

    /// Heartbeats every [`HEARTBEAT`], publishing the epochs (topic, partition, epoch) that
    /// `open_epochs` gives each time; runs until the task is dropped.
    pub async fn keep_membership<F, Fut>(&self, open_epochs: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Vec<(String, i32, i32)>>,
    {
        if self.files.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.publish_epochs(open_epochs().await);
            if let Err(e) = self.heartbeat().await {
                tracing::warn!(error = %e, "cluster heartbeat failed; keeping the last membership");
            }
        }
    }

    /// Starts leaving (SIGTERM): the others stop counting this gateway at their next heartbeat,
    /// and this gateway stops leading, so its partitions and groups move before it exits.
    pub async fn leave(&self) {
        if self.leaving.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = self.heartbeat().await {
            tracing::warn!(error = %e, "announcing the departure failed; the others notice when this member's file expires");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standalone_gateway_leads_and_coordinates_everything() {
        let c = Cluster::standalone("127.0.0.1".to_string(), 9092);
        assert!(!c.is_clustered());
        assert_eq!(c.node_id(), STANDALONE_NODE_ID);
        assert!((0..16).all(|p| c.leads("orders", p)));
        assert!(c.coordinates("group"));
        assert_eq!(c.brokers().len(), 1);
    }

    #[test]
    fn the_view_version_grows_only_when_members_change() {
        let c = Cluster::standalone("h".to_string(), 1);
        let m = |id| Member {
            node_id: id,
            host: "h".to_string(),
            port: 9000 + id,
            http_port: 0,
        };
        c.set_members(vec![m(0), m(1)], vec![0, 1]);
        let v1 = c.view().version;
        c.set_members(vec![m(0), m(1)], vec![0, 1]);
        assert_eq!(c.view().version, v1);
        c.set_members(vec![m(0)], vec![0, 1]);
        assert!(c.view().version > v1);
        c.set_members(Vec::new(), vec![0, 1]);
        assert_eq!(c.leader("t", 0), None);
        assert!(!c.leads("t", 0));
        assert!(c.coordinator("g").is_none());
    }
}
