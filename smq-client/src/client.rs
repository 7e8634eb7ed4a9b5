use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use smq_proto::master_pb::ListClusterNodesRequest;
use smq_proto::master_pb::seaweed_client::SeaweedClient;
use smq_proto::messaging_pb::seaweed_messaging_client::SeaweedMessagingClient;
use smq_proto::messaging_pb::{
    AssignTopicPartitionsRequest, BrokerPartitionAssignment, FindBrokerLeaderRequest,
    LookupTopicBrokersRequest,
};
use smq_proto::schema_pb::Topic;
use tonic::transport::{Channel, Endpoint};

use crate::breaker::CircuitBreaker;
use crate::config::SmqConfig;
use crate::error::{SmqError, SmqResult};
use crate::partition::TopicLayout;

pub(crate) type Messaging = SeaweedMessagingClient<Channel>;

/// Cached partition assignments per (namespace, name), with the time they were looked up.
type LookupCache = HashMap<(String, String), (Arc<TopicLayout>, Instant)>;

/// A partition this client could not use the last time it tried (see
/// [`SmqClient::unavailable_partitions`]).
#[derive(Debug, Clone, PartialEq)]
pub struct UnavailablePartition {
    pub topic: Topic,
    pub partition: i32,
    /// What failed the last time.
    pub reason: String,
    /// The first failure since the partition was last usable.
    pub since: Instant,
}

/// A handle on an SMQ cluster. Cheap to clone; all clones share connections, circuit breakers
/// and the partition-assignment cache.
#[derive(Clone)]
pub struct SmqClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: SmqConfig,
    channels: Mutex<HashMap<String, Channel>>,
    breakers: Mutex<HashMap<String, Arc<CircuitBreaker>>>,
    brokers: Mutex<Vec<String>>,
    lookups: Mutex<LookupCache>,
    /// Partitions whose last publish-stream open, fetch or subscription failed, keyed by
    /// (namespace, name, partition).
    unavailable: Mutex<HashMap<(String, String, i32), UnavailablePartition>>,
    brokers_seen: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for SmqClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmqClient")
            .field("master", &self.inner.config.master)
            .field("brokers", &*lock(&self.inner.brokers))
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded maps stay consistent even if a holder panicked: every update is one insert.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SmqClient {
    /// Creates a client and discovers the brokers, retrying while the cluster is coming up.
    pub async fn connect(config: SmqConfig) -> SmqResult<Self> {
        let client = Self::new(config);
        let policy = client.inner.config.retry.clone();
        policy
            .retry("discover brokers", |_| client.refresh_brokers())
            .await?;
        Ok(client)
    }

    /// Creates a client without contacting anything; brokers are discovered on first use.
    pub fn new(config: SmqConfig) -> Self {
        let brokers = config.brokers.clone();
        let seen = brokers.len();
        Self {
            inner: Arc::new(Inner {
                config,
                channels: Mutex::new(HashMap::new()),
                breakers: Mutex::new(HashMap::new()),
                brokers: Mutex::new(brokers),
                lookups: Mutex::new(HashMap::new()),
                unavailable: Mutex::new(HashMap::new()),
                brokers_seen: std::sync::atomic::AtomicUsize::new(seen),
            }),
        }
    }

    pub fn config(&self) -> &SmqConfig {
        &self.inner.config
    }

    /// The brokers known right now.
    pub fn known_brokers(&self) -> Vec<String> {
        lock(&self.inner.brokers).clone()
    }

    /// The most brokers this client has known at once: whether SMQ runs several (a dead broker
    /// leaves the master's list, so the current count can drop to one while it is down).
    pub fn brokers_seen(&self) -> usize {
        self.inner
            .brokers_seen
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Asks the master for the current brokers (`ListClusterNodes`, client type "broker").
    pub async fn refresh_brokers(&self) -> SmqResult<Vec<String>> {
        let mut found = self.inner.config.brokers.clone();
        if let Some(master) = &self.inner.config.master {
            let channel = self.channel(master)?;
            let mut client = SeaweedClient::new(channel);
            let fut = client.list_cluster_nodes(ListClusterNodesRequest {
                client_type: "broker".to_string(),
                filer_group: String::new(),
                limit: 0,
            });
            let resp = tokio::time::timeout(self.inner.config.request_timeout, fut)
                .await
                .map_err(|_| SmqError::Timeout {
                    what: format!("ListClusterNodes on master {master}"),
                    after: self.inner.config.request_timeout,
                })?
                .map_err(|s| SmqError::rpc(master, s))?;
            for node in resp.into_inner().cluster_nodes {
                if !node.address.is_empty() && !found.contains(&node.address) {
                    found.push(node.address);
                }
            }
        }
        if found.is_empty() {
            return Err(SmqError::NoBroker(match &self.inner.config.master {
                Some(m) => format!("master {m} lists no MQ broker"),
                None => "no master and no broker address configured".to_string(),
            }));
        }
        self.inner
            .brokers_seen
            .fetch_max(found.len(), std::sync::atomic::Ordering::Relaxed);
        *lock(&self.inner.brokers) = found.clone();
        Ok(found)
    }

    /// A lazily connected channel to `addr` (`host:port`), shared by all calls.
    pub(crate) fn channel(&self, addr: &str) -> SmqResult<Channel> {
        if let Some(c) = lock(&self.inner.channels).get(addr) {
            return Ok(c.clone());
        }
        let cfg = &self.inner.config;
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|_| SmqError::InvalidAddress(addr.to_string()))?
            .connect_timeout(cfg.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(
                cfg.keepalive_interval
                    .max(std::time::Duration::from_secs(20)),
            )
            .keep_alive_timeout(std::time::Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let channel = endpoint.connect_lazy();
        lock(&self.inner.channels).insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    pub(crate) fn messaging(&self, broker: &str) -> SmqResult<Messaging> {
        Ok(SeaweedMessagingClient::new(self.channel(broker)?)
            .max_decoding_message_size(self.inner.config.max_decoding_message_size)
            .max_encoding_message_size(self.inner.config.max_decoding_message_size))
    }

    pub(crate) fn breaker(&self, broker: &str) -> Arc<CircuitBreaker> {
        lock(&self.inner.breakers)
            .entry(broker.to_string())
            .or_insert_with(|| {
                Arc::new(CircuitBreaker::new(
                    self.inner.config.breaker_failure_threshold,
                    self.inner.config.breaker_cooldown,
                ))
            })
            .clone()
    }

    /// The state of a broker's circuit, for health reporting.
    pub fn breaker_state(&self, broker: &str) -> crate::BreakerState {
        self.breaker(broker).state()
    }

    /// Brokers whose circuit is open (repeated connection failures).
    pub fn open_circuits(&self) -> Vec<String> {
        let mut open: Vec<String> = lock(&self.inner.breakers)
            .iter()
            .filter(|(_, b)| b.state() == crate::BreakerState::Open)
            .map(|(k, _)| k.clone())
            .collect();
        open.sort();
        open
    }

    /// One cheap call to `broker` under its circuit breaker, so that an open circuit closes once
    /// the broker is back even when nothing else calls it (a health check with no traffic).
    pub async fn probe(&self, broker: &str) -> SmqResult<()> {
        self.unary(broker, "FindBrokerLeader", |mut c| async move {
            c.find_broker_leader(smq_proto::messaging_pb::FindBrokerLeaderRequest {
                filer_group: String::new(),
            })
            .await
        })
        .await
        .map(|_| ())
    }

    /// Runs one unary call against `broker` under its circuit breaker and the request deadline.
    pub(crate) async fn unary<T, F, Fut>(&self, broker: &str, what: &str, call: F) -> SmqResult<T>
    where
        F: FnOnce(Messaging) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let breaker = self.breaker(broker);
        breaker.admit().map_err(|retry_in| SmqError::CircuitOpen {
            broker: broker.to_string(),
            retry_in,
        })?;
        let client = self.messaging(broker)?;
        let timeout = self.inner.config.request_timeout;
        let result = match tokio::time::timeout(timeout, call(client)).await {
            Err(_) => Err(SmqError::Timeout {
                what: format!("{what} on {broker}"),
                after: timeout,
            }),
            Ok(r) => r
                .map(|r| r.into_inner())
                .map_err(|s| SmqError::rpc(broker, s)),
        };
        self.record(&breaker, &result);
        result
    }

    pub(crate) fn record<T>(&self, breaker: &CircuitBreaker, result: &SmqResult<T>) {
        match result {
            Ok(_) => breaker.on_success(),
            Err(e) if e.is_connection_failure() => breaker.on_failure(),
            // The broker answered: it is alive, whatever it said.
            Err(_) => breaker.on_success(),
        }
    }

    /// Runs a control-plane call on any broker (non-balancer brokers proxy it to the balancer),
    /// moving to the next broker and backing off on retriable failures.
    pub(crate) async fn control<T, F, Fut>(&self, what: &str, call: F) -> SmqResult<T>
    where
        F: Fn(Messaging) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let policy = self.inner.config.retry.clone();
        policy
            .retry(what, |attempt| {
                let call = &call;
                async move {
                    let mut brokers = self.known_brokers();
                    if brokers.is_empty() || attempt > 0 && self.inner.config.master.is_some() {
                        // Brokers come and go; ask the master again before retrying.
                        if let Ok(b) = self.refresh_brokers().await {
                            brokers = b;
                        }
                    }
                    if brokers.is_empty() {
                        return Err(SmqError::NoBroker("none known".to_string()));
                    }
                    // Brokers whose circuit is open (a dead broker) go last: every broker
                    // answers control calls, so a live one is tried first.
                    let open = self.open_circuits();
                    brokers.sort_by_key(|b| open.contains(b));
                    let broker = brokers[attempt as usize % brokers.len()].clone();
                    self.unary(&broker, what, call).await
                }
            })
            .await
    }

    /// The broker currently acting as balancer.
    pub async fn balancer(&self) -> SmqResult<String> {
        let r = self
            .control("FindBrokerLeader", |mut c| async move {
                c.find_broker_leader(FindBrokerLeaderRequest::default())
                    .await
            })
            .await?;
        Ok(r.broker)
    }

    /// The topic's partitions and their leaders, from a short-lived cache.
    pub async fn lookup(&self, topic: &Topic) -> SmqResult<Arc<TopicLayout>> {
        let key = (topic.namespace.clone(), topic.name.clone());
        if let Some((layout, at)) = lock(&self.inner.lookups).get(&key)
            && at.elapsed() < self.inner.config.lookup_ttl
        {
            return Ok(layout.clone());
        }
        let t = topic.clone();
        let resp = self
            .control("LookupTopicBrokers", |mut c| {
                let t = t.clone();
                async move {
                    c.lookup_topic_brokers(LookupTopicBrokersRequest { topic: Some(t) })
                        .await
                }
            })
            .await
            .map_err(|e| not_found_as_topic(e, topic))?;
        let name = topic_name(topic);
        let layout = Arc::new(TopicLayout::from_assignments(
            &name,
            resp.broker_partition_assignments
                .into_iter()
                .filter_map(|a| a.partition.map(|p| (p, a.leader_broker, a.follower_broker))),
        )?);
        lock(&self.inner.lookups).insert(key, (layout.clone(), Instant::now()));
        Ok(layout)
    }

    /// Makes the partition's leader load the partition, as the balancer does for every partition
    /// of a topic it creates (`AssignTopicPartitions`; idempotent).
    ///
    /// SMQ 4.48 needs this with several brokers: a broker other than the balancer cannot load a
    /// partition by itself (it checks the assignment against its own list of live brokers, which
    /// only the balancer fills, so it finds no leader), and publishing to it then crashes the
    /// broker process (nil pointer in `LocalPartition.MaybeConnectToFollowers`), while fetches
    /// and subscriptions fail with "partition not found". That happens to a partition whenever
    /// such a broker got it without a ConfigureTopic: after the broker restarted, after it took
    /// over a dead broker's partition, and after it unloaded the partition because its last
    /// publisher and subscriber left. Sent before every publish stream and subscription, and
    /// when a fetch finds no partition.
    pub(crate) async fn assign_partition(
        &self,
        topic: &Topic,
        a: &crate::PartitionAssignment,
    ) -> SmqResult<()> {
        if !self.inner.config.assign_partitions {
            return Ok(());
        }
        let req = AssignTopicPartitionsRequest {
            topic: Some(topic.clone()),
            broker_partition_assignments: vec![BrokerPartitionAssignment {
                partition: Some(a.partition),
                leader_broker: a.leader.clone(),
                follower_broker: String::new(),
            }],
            // Not "leader": the broker would forward the request to the partition's follower.
            is_leader: false,
            is_draining: false,
        };
        self.unary(&a.leader, "AssignTopicPartitions", |mut c| async move {
            c.assign_topic_partitions(req).await
        })
        .await
        .map(|_| ())
    }

    /// Partitions this client could not use the last time it tried: a publish stream broke, or
    /// opening one, a fetch or a subscription failed (no leader, leader unreachable or not
    /// serving the partition). A partition leaves the list once a stream to it is open or a
    /// fetch succeeds. Publishers with `SmqConfig::flush_timing` reopen a broken stream by
    /// themselves, so their partitions are tried again about every second even while idle.
    pub fn unavailable_partitions(&self) -> Vec<UnavailablePartition> {
        let mut v: Vec<UnavailablePartition> =
            lock(&self.inner.unavailable).values().cloned().collect();
        v.sort_by(|a, b| {
            (&a.topic.namespace, &a.topic.name, a.partition).cmp(&(
                &b.topic.namespace,
                &b.topic.name,
                b.partition,
            ))
        });
        v
    }

    /// Whether the partition is in [`SmqClient::unavailable_partitions`].
    pub fn partition_unavailable(
        &self,
        topic: &Topic,
        partition: i32,
    ) -> Option<UnavailablePartition> {
        lock(&self.inner.unavailable)
            .get(&(topic.namespace.clone(), topic.name.clone(), partition))
            .cloned()
    }

    pub(crate) fn mark_unavailable(&self, topic: &Topic, partition: i32, error: &SmqError) {
        let key = (topic.namespace.clone(), topic.name.clone(), partition);
        let mut m = lock(&self.inner.unavailable);
        let since = m.get(&key).map_or_else(Instant::now, |u| u.since);
        m.insert(
            key,
            UnavailablePartition {
                topic: topic.clone(),
                partition,
                reason: error.to_string(),
                since,
            },
        );
    }

    pub(crate) fn mark_available(&self, topic: &Topic, partition: i32) {
        let mut m = lock(&self.inner.unavailable);
        if !m.is_empty() {
            m.remove(&(topic.namespace.clone(), topic.name.clone(), partition));
        }
    }

    /// Forgets the cached assignments of a topic (after an error or a reconfiguration).
    pub fn invalidate(&self, topic: &Topic) {
        lock(&self.inner.lookups).remove(&(topic.namespace.clone(), topic.name.clone()));
    }

    /// The assignment of one partition, with a leader, or a retriable `NoLeader`.
    pub(crate) async fn leader_of(
        &self,
        topic: &Topic,
        index: i32,
    ) -> SmqResult<crate::PartitionAssignment> {
        let layout = self.lookup(topic).await?;
        let a = layout.get(&topic_name(topic), index)?.clone();
        if a.leader.is_empty() {
            self.invalidate(topic);
            return Err(SmqError::NoLeader {
                topic: topic_name(topic),
                partition: index,
            });
        }
        Ok(a)
    }
}

pub(crate) fn topic_name(topic: &Topic) -> String {
    format!("{}/{}", topic.namespace, topic.name)
}

/// The broker reports unknown topics as errors with text; give them a type.
pub(crate) fn not_found_as_topic(e: SmqError, topic: &Topic) -> SmqError {
    match &e {
        SmqError::Rpc { code, message, .. }
            if *code == tonic::Code::NotFound
                || crate::error::is_not_found_message(&message.to_ascii_lowercase()) =>
        {
            SmqError::TopicNotFound(topic_name(topic))
        }
        _ => e,
    }
}
