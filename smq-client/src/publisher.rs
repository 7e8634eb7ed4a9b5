use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use smq_proto::messaging_pb::publish_message_request::{InitMessage, Message};
use smq_proto::messaging_pb::{DataMessage, PublishMessageRequest, PublishMessageResponse};
use smq_proto::schema_pb::Topic;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;

use std::hash::{Hash, Hasher};

use crate::client::{SmqClient, topic_name};
use crate::durability::Watermark;
use crate::error::{SmqError, SmqResult};
use crate::log_files::PartitionLogFiles;

/// What the broker said about one published record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishAck {
    /// The SMQ offset the broker assigned.
    pub offset: i64,
    /// The timestamp echoed by the broker (0 when the record was sent with ts_ns 0).
    pub ack_ts_ns: i64,
    /// The stream that acked it (see [`PartitionPublisher::durable_below`]).
    pub epoch: u64,
}

/// The acknowledgement of one record, to be awaited after more records have been sent.
#[derive(Debug)]
pub struct PendingAck {
    rx: oneshot::Receiver<SmqResult<PublishAck>>,
    broker: String,
    seq: Option<u64>,
}

impl PendingAck {
    /// A replaying publisher's number for the record, in send order: the record is durable once
    /// [`PartitionPublisher::durable_before`] has passed it. None for other publishers.
    pub fn seq(&self) -> Option<u64> {
        self.seq
    }

    pub async fn wait(self) -> SmqResult<PublishAck> {
        match self.rx.await {
            Ok(r) => r,
            Err(_) => Err(SmqError::StreamBroken {
                broker: self.broker,
                reason: "publisher dropped before the ack".to_string(),
            }),
        }
    }
}

/// Publishes to one partition over a single long-lived `PublishMessage` stream.
///
/// Records are pipelined: up to `publish_window` may be in flight, and the broker acks each one
/// exactly once, in order, so acks are matched to records first-in first-out. When the stream
/// breaks, every unacknowledged record fails with a retriable [`SmqError::StreamBroken`] (its fate
/// is unknown) and the next send opens a new stream, looking the leader up again.
///
/// With `SmqConfig::flush_timing` set, the publisher also tracks which acked records the broker
/// has provably written (see [`crate::durability`]): [`PartitionPublisher::durable_below`].
/// A publisher made with [`PartitionPublisher::replaying`] goes further and keeps every record
/// until it is durable, sending the kept ones again first whenever it opens a new stream. That
/// suits logs whose records describe themselves and tolerate a repeat (state topics); callers
/// that need to know where each record ends up replay for themselves.
pub struct PartitionPublisher {
    inner: Arc<Inner>,
}

struct Inner {
    client: SmqClient,
    topic: Topic,
    index: i32,
    window: Arc<Semaphore>,
    stream: tokio::sync::Mutex<Option<Stream>>,
    streams_opened: AtomicU64,
    /// Set by [`PartitionPublisher::close`]: the tracker no longer reopens a broken stream.
    closed: std::sync::atomic::AtomicBool,
    replay: bool,
    /// Only [`PartitionPublisher::confirm_written`] proves records durable.
    confirmed_by_caller: bool,
    /// Replaying publishers with `SmqConfig::confirm_from_log_files`: where they look for the
    /// records they keep (see [`crate::durability`]).
    log_files: Option<Arc<PartitionLogFiles>>,
    durable: Arc<Mutex<Durable>>,
}

/// A kept record: the (epoch, offset) that acked it, its sequence number, the record.
type Retained = (Option<(u64, i64)>, u64, DataMessage);

/// Durability state shared with the ack reader and the tracker.
struct Durable {
    /// The current stream's epoch and its pending table (to tell whether it is still unbroken).
    current: Option<(u64, Arc<Mutex<Pending>>)>,
    watermark: Watermark,
    /// Replaying publishers only: records not yet known durable, oldest first, with the
    /// (epoch, offset) that acked them (None: never acked, or acked by a stream since replaced)
    /// and their sequence number.
    retained: VecDeque<Retained>,
    retained_bytes: usize,
    /// Replaying publishers only: the sequence numbers of records sent and not yet durable
    /// (in flight or retained), and the next number to give.
    outstanding: std::collections::BTreeSet<u64>,
    next_seq: u64,
    tracker_running: bool,
}

impl Durable {
    fn healthy_epoch(&self) -> Option<u64> {
        self.current
            .as_ref()
            .filter(|(_, p)| lock(p).broken.is_none())
            .map(|(e, _)| *e)
    }

    fn prune(&mut self) {
        let (epoch, below) = (self.watermark.epoch(), self.watermark.durable_below());
        while let Some((Some((e, o)), _, _)) = self.retained.front() {
            if *e != epoch || *o >= below {
                break;
            }
            if let Some((_, seq, m)) = self.retained.pop_front() {
                self.retained_bytes -= m.value.len() + m.key.len();
                self.outstanding.remove(&seq);
            }
        }
    }

    /// Offsets below `below` acked on stream `epoch` were found written; nothing when `epoch`
    /// is no longer the current stream.
    fn on_written(&mut self, epoch: u64, below: i64) {
        if self.watermark.epoch() == epoch {
            self.watermark.on_written(below);
            self.prune();
        }
    }

    fn keep(&mut self, acked: Option<(u64, i64)>, (seq, msg): (u64, DataMessage)) {
        self.retained_bytes += msg.value.len() + msg.key.len();
        self.retained.push_back((acked, seq, msg));
    }
}

struct Stream {
    broker: String,
    epoch: u64,
    tx: mpsc::UnboundedSender<PublishMessageRequest>,
    pending: Arc<Mutex<Pending>>,
}

#[derive(Default)]
struct Pending {
    waiters: VecDeque<Waiter>,
    broken: Option<SmqError>,
}

struct Waiter {
    tx: oneshot::Sender<SmqResult<PublishAck>>,
    sent_at: Instant,
    /// Replaying publishers keep the record (and its sequence number) until it is durable.
    msg: Option<(u64, DataMessage)>,
    _permit: OwnedSemaphorePermit,
}

fn lock_durable(d: &Mutex<Durable>) -> std::sync::MutexGuard<'_, Durable> {
    d.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock(p: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for PartitionPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionPublisher")
            .field("topic", &topic_name(&self.inner.topic))
            .field("partition", &self.inner.index)
            .finish()
    }
}

impl PartitionPublisher {
    pub fn new(client: SmqClient, topic: Topic, index: i32) -> Self {
        Self::build(client, topic, index, false, false)
    }

    /// Like [`PartitionPublisher::new`], but time and the broker's buffer start prove nothing:
    /// only [`PartitionPublisher::confirm_written`] makes records durable, for a caller that
    /// finds them in SMQ's log files (evidence that holds even when the broker cannot write; see
    /// [`crate::durability`]).
    pub fn confirmed_by_caller(client: SmqClient, topic: Topic, index: i32) -> Self {
        Self::build(client, topic, index, false, true)
    }

    /// A publisher that keeps each record until it is durable and sends the kept records again,
    /// in order, whenever it opens a new stream (so a broker crash loses none of them, and some
    /// may be stored twice). Needs `SmqConfig::flush_timing`; without it, it behaves as
    /// [`PartitionPublisher::new`].
    pub fn replaying(client: SmqClient, topic: Topic, index: i32) -> Self {
        let replay = client.config().flush_timing.is_some();
        Self::build(client, topic, index, replay, false)
    }

    fn build(
        client: SmqClient,
        topic: Topic,
        index: i32,
        replay: bool,
        confirmed_by_caller: bool,
    ) -> Self {
        let window = client.config().publish_window.max(1);
        let log_files = (replay && client.config().confirm_from_log_files)
            .then(|| PartitionLogFiles::new(client.clone(), topic.clone(), index));
        Self {
            inner: Arc::new(Inner {
                log_files,
                client,
                topic,
                index,
                window: Arc::new(Semaphore::new(window)),
                stream: tokio::sync::Mutex::new(None),
                streams_opened: AtomicU64::new(0),
                closed: std::sync::atomic::AtomicBool::new(false),
                replay,
                confirmed_by_caller,
                durable: Arc::new(Mutex::new(Durable {
                    current: None,
                    watermark: Watermark::new(0),
                    retained: VecDeque::new(),
                    retained_bytes: 0,
                    outstanding: Default::default(),
                    next_seq: 0,
                    tracker_running: false,
                })),
            }),
        }
    }

    pub fn partition(&self) -> i32 {
        self.inner.index
    }

    /// How many streams this publisher has opened (1 while nothing broke).
    pub fn streams_opened(&self) -> u64 {
        self.inner.streams_opened.load(Ordering::Relaxed)
    }

    /// The epoch of the current stream while it is unbroken.
    pub fn healthy_epoch(&self) -> Option<u64> {
        lock_durable(&self.inner.durable).healthy_epoch()
    }

    /// Offsets below the returned one that were acked on stream `epoch` are durable; None when
    /// `epoch` is no longer the current stream (what it acked and was not durable then may be
    /// lost). Without `SmqConfig::flush_timing` nothing is tracked and this is always Some(0).
    pub fn durable_below(&self, epoch: u64) -> Option<i64> {
        let d = lock_durable(&self.inner.durable);
        (d.watermark.epoch() == epoch).then(|| d.watermark.durable_below())
    }

    /// Offsets below `below` acked on stream `epoch` were found in SMQ's log files: durable
    /// (see [`crate::durability`]). Ignored when `epoch` is no longer the current stream.
    pub fn confirm_written(&self, epoch: u64, below: i64) {
        lock_durable(&self.inner.durable).on_written(epoch, below);
    }

    /// Bytes a replaying publisher holds until SMQ has written them.
    pub fn retained_bytes(&self) -> usize {
        lock_durable(&self.inner.durable).retained_bytes
    }

    /// Every record of a replaying publisher whose [`PendingAck::seq`] is below the returned
    /// number is durable (u64::MAX for other publishers, which keep nothing).
    pub fn durable_before(&self) -> u64 {
        if !self.inner.replay {
            return u64::MAX;
        }
        let d = lock_durable(&self.inner.durable);
        d.outstanding.first().copied().unwrap_or(d.next_seq)
    }

    /// Opens a stream unless an unbroken one exists (replaying kept records first) and returns
    /// its epoch.
    pub async fn ensure_open(&self) -> SmqResult<u64> {
        let mut guard = self.inner.stream.lock().await;
        self.inner
            .stream_for_send(&mut guard)
            .await
            .map(|s| s.epoch)
    }

    /// Publishes one record and waits for its ack.
    pub async fn publish(&self, msg: DataMessage) -> SmqResult<PublishAck> {
        self.send(msg).await?.wait().await
    }

    /// Queues one record on the stream and returns its ack to await later. Records sent by
    /// successive calls are stored in call order. Waits while the in-flight window is full.
    pub async fn send(&self, msg: DataMessage) -> SmqResult<PendingAck> {
        let permit = self
            .inner
            .window
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SmqError::Protocol("publisher window closed".to_string()))?;
        let mut guard = self.inner.stream.lock().await;
        let stream = self.inner.stream_for_send(&mut guard).await?;
        let seq = self.inner.replay.then(|| {
            let mut d = lock_durable(&self.inner.durable);
            let seq = d.next_seq;
            d.next_seq += 1;
            d.outstanding.insert(seq);
            seq
        });
        let pending = Inner::enqueue(stream, msg, permit, seq);
        if let (Err(_), Some(seq)) = (&pending, seq) {
            lock_durable(&self.inner.durable).outstanding.remove(&seq);
        }
        pending
    }

    /// Waits until every record sent so far is acknowledged (or failed), then closes the stream.
    /// A replaying publisher first sends its kept records again if their stream broke: closing
    /// must not drop acknowledged records that are nowhere else.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let mut guard = self.inner.stream.lock().await;
        let kept = lock_durable(&self.inner.durable).retained.len();
        if self.inner.replay && kept > 0 {
            let limit = self.inner.client.config().ack_timeout;
            let sent = tokio::time::timeout(limit, self.inner.stream_for_send(&mut guard)).await;
            let error = match sent {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no stream within {limit:?}")),
            };
            if let Some(error) = error {
                tracing::warn!(topic = %topic_name(&self.inner.topic), partition = self.inner.index, records = kept, %error,
                    "closing with acknowledged records that a broken stream lost and that could not be sent again");
            }
        }
        let taken = guard.take();
        drop(guard);
        if let Some(stream) = taken {
            let deadline = Instant::now() + self.inner.client.config().ack_timeout;
            loop {
                let done = {
                    let p = lock(&stream.pending);
                    p.waiters.is_empty() || p.broken.is_some()
                };
                if done || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            drop(stream.tx);
        }
    }
}

/// How often a publisher with a live stream checks that its broker still leads the partition.
const LEADER_CHECK: Duration = Duration::from_secs(2);

impl Inner {
    /// Closes the stream when SMQ now names another broker as the partition's leader (the
    /// tracker then opens one to the new leader). A broker keeps serving a stream opened while
    /// it led the partition, so without this a publisher would go on writing to a broker that
    /// SMQ no longer reads the partition from (a new balancer, after the old one died, can
    /// reassign the partitions of live brokers). Records in flight fail as on any broken stream.
    async fn leave_moved_leader(&self) {
        let Ok(a) = self.client.leader_of(&self.topic, self.index).await else {
            return;
        };
        let Ok(mut guard) = self.stream.try_lock() else {
            return;
        };
        let Some(stream) = guard.as_ref() else {
            return;
        };
        if stream.broker == a.leader {
            return;
        }
        tracing::warn!(topic = %topic_name(&self.topic), partition = self.index, from = %stream.broker, to = %a.leader, "SMQ moved the partition to another broker; moving the publish stream");
        if let Some(s) = guard.take() {
            let mut p = lock(&s.pending);
            if p.broken.is_none() {
                p.broken = Some(SmqError::StreamBroken {
                    broker: s.broker.clone(),
                    reason: format!("the partition moved to broker {}", a.leader),
                });
            }
        }
    }

    /// The unbroken stream to send on, opened (and replayed into) if needed.
    async fn stream_for_send<'a>(
        self: &Arc<Self>,
        guard: &'a mut tokio::sync::MutexGuard<'_, Option<Stream>>,
    ) -> SmqResult<&'a Stream> {
        let healthy = guard
            .as_ref()
            .is_some_and(|s| lock(&s.pending).broken.is_none() && !s.tx.is_closed());
        if !healthy {
            **guard = None;
            let stream = self.open().await?;
            if self.replay {
                self.replay_into(&stream).await?;
            }
            **guard = Some(stream);
        }
        Ok(guard.as_ref().expect("stream was just opened"))
    }

    /// Queues one record and its waiter under one lock, so acks and records stay in one order.
    fn enqueue(
        stream: &Stream,
        msg: DataMessage,
        permit: OwnedSemaphorePermit,
        keep: Option<u64>,
    ) -> SmqResult<PendingAck> {
        let (tx, rx) = oneshot::channel();
        let mut pending = lock(&stream.pending);
        if let Some(e) = &pending.broken {
            return Err(e.clone());
        }
        let kept = keep.map(|seq| (seq, msg.clone()));
        pending.waiters.push_back(Waiter {
            tx,
            sent_at: Instant::now(),
            msg: kept,
            _permit: permit,
        });
        if stream
            .tx
            .send(PublishMessageRequest {
                message: Some(Message::Data(msg)),
            })
            .is_err()
        {
            pending.waiters.pop_back();
            return Err(SmqError::StreamBroken {
                broker: stream.broker.clone(),
                reason: "request stream closed".to_string(),
            });
        }
        Ok(PendingAck {
            rx,
            broker: stream.broker.clone(),
            seq: keep,
        })
    }

    /// Sends every kept record again on a fresh stream, oldest first, and waits for their acks
    /// (the ack reader keeps them again, under their new offsets).
    async fn replay_into(&self, stream: &Stream) -> SmqResult<()> {
        let kept: Vec<(u64, DataMessage)> = {
            let mut d = lock_durable(&self.durable);
            d.retained_bytes = 0;
            d.retained.drain(..).map(|(_, seq, m)| (seq, m)).collect()
        };
        if kept.is_empty() {
            return Ok(());
        }
        let n = kept.len();
        let mut acks = Vec::with_capacity(n);
        let mut iter = kept.into_iter();
        let mut failed = None;
        for (seq, msg) in iter.by_ref() {
            let permit = self
                .window
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| SmqError::Protocol("publisher window closed".to_string()))?;
            match Self::enqueue(stream, msg.clone(), permit, Some(seq)) {
                Ok(a) => acks.push(a),
                Err(e) => {
                    lock_durable(&self.durable).keep(None, (seq, msg));
                    failed = Some(e);
                    break;
                }
            }
        }
        // Whatever could not even be queued stays kept, after the ones the reader re-keeps.
        for msg in iter {
            lock_durable(&self.durable).keep(None, msg);
        }
        for a in acks {
            if let Err(e) = a.wait().await {
                failed.get_or_insert(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => {
                tracing::warn!(topic = %topic_name(&self.topic), partition = self.index, records = n, "published again the records a broken stream had not made durable");
                Ok(())
            }
        }
    }

    /// Opens a stream to the partition's leader and consumes the broker's empty "hello".
    /// Failures here happen before any record was sent, so they are retried.
    async fn open(self: &Arc<Self>) -> SmqResult<Stream> {
        let policy = self.client.config().retry.clone();
        let r = policy
            .retry("open publish stream", |_| async {
                let r = self.try_open().await;
                if let Err(e) = &r {
                    if e.invalidates_lookup() {
                        self.client.invalidate(&self.topic);
                    }
                    // At once, not after the retries: they can take a while.
                    self.client.mark_unavailable(&self.topic, self.index, e);
                }
                r
            })
            .await;
        match &r {
            Ok(_) => self.client.mark_available(&self.topic, self.index),
            Err(e) => self.client.mark_unavailable(&self.topic, self.index, e),
        }
        r
    }

    async fn try_open(self: &Arc<Self>) -> SmqResult<Stream> {
        let assignment = self.client.leader_of(&self.topic, self.index).await?;
        let broker = assignment.leader.clone();
        let breaker = self.client.breaker(&broker);
        breaker.admit().map_err(|retry_in| SmqError::CircuitOpen {
            broker: broker.clone(),
            retry_in,
        })?;
        let result = match self.client.assign_partition(&self.topic, &assignment).await {
            Ok(()) => self.handshake(&broker, assignment.partition).await,
            Err(e) => Err(e),
        };
        self.client.record(&breaker, &result);
        let (tx, responses) = result?;
        let epoch = self.streams_opened.fetch_add(1, Ordering::Relaxed) + 1;
        let pending = Arc::new(Mutex::new(Pending::default()));
        {
            let mut d = lock_durable(&self.durable);
            d.current = Some((epoch, pending.clone()));
            d.watermark = Watermark::new(epoch);
            // Kept records acked by the old stream are no longer known to be anywhere.
            for r in d.retained.iter_mut() {
                r.0 = None;
            }
        }
        tokio::spawn(read_acks(
            responses,
            pending.clone(),
            broker.clone(),
            self.client.config().ack_timeout,
            epoch,
            self.durable.clone(),
        ));
        self.start_tracker();
        tracing::debug!(topic = %topic_name(&self.topic), partition = self.index, %broker, epoch, "publish stream open");
        Ok(Stream {
            broker,
            epoch,
            tx,
            pending,
        })
    }

    /// Starts the durability tracker unless it runs or nothing is tracked.
    fn start_tracker(self: &Arc<Self>) {
        let Some(timing) = self.client.config().flush_timing else {
            return;
        };
        {
            let mut d = lock_durable(&self.durable);
            if d.tracker_running {
                return;
            }
            d.tracker_running = true;
        }
        tokio::spawn(track_durability(Arc::downgrade(self), timing));
    }

    /// Confirms kept records written by finding the newest of them in the newest log chunks
    /// (the "Written" evidence of [`crate::durability`]). Other gateways may write to the same
    /// partition (state topics are shared), so a record counts only with the offset this stream
    /// got for it and the same bytes.
    async fn confirm_from(&self, files: &PartitionLogFiles, epoch: u64) {
        let digest = |key: &[u8], value: &[u8]| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            value.hash(&mut h);
            h.finish()
        };
        let (ours, longest) = {
            let d = lock_durable(&self.durable);
            let mut ours = std::collections::HashMap::new();
            let mut longest = 0;
            for (a, _, m) in &d.retained {
                if let Some((e, o)) = a
                    && *e == epoch
                {
                    ours.insert(*o, digest(&m.key, &m.value));
                    longest = longest.max(m.value.len() + m.key.len());
                }
            }
            (ours, longest)
        };
        if ours.is_empty() {
            return;
        }
        let tail = (longest as u64).saturating_add(256);
        let found = files
            .newest_written(tail, |r| {
                ours.get(&r.offset) == Some(&digest(&r.key, &r.data))
            })
            .await;
        let r = match found {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(topic = %topic_name(&self.topic), partition = self.index, error = %e, "looking for kept records in the log files failed; will retry");
                return;
            }
        };
        let mut d = lock_durable(&self.durable);
        let same = d
            .retained
            .iter()
            .any(|(a, _, m)| *a == Some((epoch, r.offset)) && m.value == r.data && m.key == r.key);
        if same {
            d.on_written(epoch, r.offset + 1);
        }
    }

    /// Asks the stream's broker for its buffer start; Some((sent, answered, start)) when the
    /// stream of `epoch` was still unbroken after the answer.
    async fn probe(&self, epoch: u64) -> Option<(Instant, Instant, i64)> {
        let sent = Instant::now();
        // An offset far past the end: the broker answers at once, without reading.
        let r = self
            .client
            .fetch(&self.topic, self.index, i64::MAX / 4, 1, 1)
            .await
            .ok()?;
        let answered = Instant::now();
        let d = lock_durable(&self.durable);
        (d.healthy_epoch() == Some(epoch)).then_some((sent, answered, r.buffer_start_offset))
    }
    async fn handshake(
        &self,
        broker: &str,
        partition: smq_proto::schema_pb::Partition,
    ) -> SmqResult<(
        mpsc::UnboundedSender<PublishMessageRequest>,
        Streaming<PublishMessageResponse>,
    )> {
        let (tx, rx) = mpsc::unbounded_channel();
        // The init must be queued before the call: the broker sends its response headers only
        // with its first message, which comes after it has read the init.
        let _ = tx.send(PublishMessageRequest {
            message: Some(Message::Init(InitMessage {
                topic: Some(self.topic.clone()),
                partition: Some(partition),
                ack_interval: 1,
                follower_broker: String::new(),
                publisher_name: self.client.config().client_name.clone(),
            })),
        });
        let mut client = self.client.messaging(broker)?;
        let timeout = self.client.config().request_timeout;
        let timed_out = || SmqError::Timeout {
            what: format!("PublishMessage handshake with {broker}"),
            after: timeout,
        };
        let mut responses = tokio::time::timeout(
            timeout,
            client.publish_message(UnboundedReceiverStream::new(rx)),
        )
        .await
        .map_err(|_| timed_out())?
        .map_err(|s| SmqError::rpc(broker, s))?
        .into_inner();
        let hello = tokio::time::timeout(timeout, responses.message())
            .await
            .map_err(|_| timed_out())?
            .map_err(|s| SmqError::rpc(broker, s))?;
        match hello {
            Some(r) if r.error_code == 0 && r.error.is_empty() => Ok((tx, responses)),
            Some(r) => Err(SmqError::Broker {
                code: r.error_code,
                message: r.error,
            }),
            None => Err(SmqError::StreamBroken {
                broker: broker.to_string(),
                reason: "stream closed before the broker's hello".to_string(),
            }),
        }
    }
}

/// Matches the broker's acks to the waiting records, oldest first, until the stream ends.
async fn read_acks(
    mut responses: Streaming<PublishMessageResponse>,
    pending: Arc<Mutex<Pending>>,
    broker: String,
    ack_timeout: Duration,
    epoch: u64,
    durable: Arc<Mutex<Durable>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500).min(ack_timeout));
    let reason: SmqError = loop {
        tokio::select! {
            r = responses.message() => match r {
                Ok(Some(resp)) => {
                    if resp.error_code != 0 || !resp.error.is_empty() {
                        break SmqError::Broker { code: resp.error_code, message: resp.error };
                    }
                    // Never hold `pending` while taking `durable`: the tracker locks them the
                    // other way round.
                    let waiter = lock(&pending).waiters.pop_front();
                    match waiter {
                        Some(w) => {
                            {
                                let mut d = lock_durable(&durable);
                                if d.watermark.epoch() == epoch {
                                    d.watermark.on_ack(resp.assigned_offset);
                                }
                                if let Some(msg) = w.msg {
                                    d.keep(Some((epoch, resp.assigned_offset)), msg);
                                }
                            }
                            let _ = w.tx.send(Ok(PublishAck {
                                offset: resp.assigned_offset,
                                ack_ts_ns: resp.ack_ts_ns,
                                epoch,
                            }));
                        }
                        None => break SmqError::Protocol(format!(
                            "broker {broker} acked offset {} with no record in flight",
                            resp.assigned_offset
                        )),
                    }
                }
                Ok(None) => break SmqError::StreamBroken {
                    broker: broker.clone(),
                    reason: "broker closed the stream".to_string(),
                },
                Err(status) => break SmqError::StreamBroken {
                    broker: broker.clone(),
                    reason: format!("{:?}: {}", status.code(), status.message()),
                },
            },
            _ = tick.tick() => {
                let p = lock(&pending);
                if let Some(w) = p.waiters.front()
                    && w.sent_at.elapsed() > ack_timeout
                {
                    break SmqError::StreamBroken {
                        broker: broker.clone(),
                        reason: format!("no ack within {ack_timeout:?}"),
                    };
                }
            }
        }
    };
    let mut p = lock(&pending);
    let failed = p.waiters.len();
    let err = match reason {
        e @ SmqError::StreamBroken { .. } => e,
        other => SmqError::StreamBroken {
            broker: broker.clone(),
            reason: other.to_string(),
        },
    };
    if failed > 0 {
        tracing::warn!(%broker, failed, error = %err, "publish stream broke with records in flight");
    }
    // Marked broken first: a stream seen unbroken after a probe is then known to have lived.
    p.broken = Some(err.clone());
    let waiters: Vec<Waiter> = p.waiters.drain(..).collect();
    drop(p);
    for w in waiters {
        // A replaying publisher keeps what it could not confirm: its fate is unknown.
        if let Some(msg) = w.msg {
            lock_durable(&durable).keep(None, msg);
        }
        let _ = w.tx.send(Err(err.clone()));
    }
}

/// Confirms durability while something acked is unconfirmed, and reopens a broken stream of a
/// replaying publisher that still holds records (so they are written again without waiting for
/// the next send). Ends when the publisher is dropped.
///
/// With several brokers, any other broken stream is reopened too, about every second while that
/// fails (unless the publisher was closed): the partition's broker died or restarted, and the
/// stream follows the partition to whichever broker leads it now (and makes that broker load it;
/// see `SmqClient::assign_partition`) before the next record needs it, which also keeps
/// [`SmqClient::unavailable_partitions`] current for idle partitions; and a stream whose broker
/// no longer leads the partition is moved. With one broker an idle partition's stream is
/// reopened by its next record, as before (a restarted broker is not sent every idle partition
/// at once).
async fn track_durability(inner: Weak<Inner>, timing: crate::durability::FlushTiming) {
    let period = (timing.settle / 4).clamp(Duration::from_millis(50), Duration::from_millis(250));
    let mut reopen = crate::retry::RetryPolicy {
        initial: Duration::from_millis(250),
        max: Duration::from_secs(1),
        multiplier: 2.0,
        max_attempts: u32::MAX,
    }
    .backoff();
    let mut next_reopen = Instant::now();
    let mut next_leader_check = Instant::now() + LEADER_CHECK;
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let (epoch, unconfirmed, orphaned) = {
            let mut d = lock_durable(&inner.durable);
            d.watermark.sample(Instant::now());
            let epoch = d.healthy_epoch();
            (
                epoch,
                d.watermark.has_unconfirmed(),
                epoch.is_none() && !d.retained.is_empty(),
            )
        };
        let several = inner.client.brokers_seen() > 1;
        if several && epoch.is_none() && !inner.closed.load(Ordering::Acquire) {
            // The stream broke (its broker died or restarted, or the partition moved): unusable
            // until a stream is open again.
            let e = SmqError::StreamBroken {
                broker: String::new(),
                reason: "the publish stream broke; reopening".to_string(),
            };
            if inner
                .client
                .partition_unavailable(&inner.topic, inner.index)
                .is_none()
            {
                inner.client.mark_unavailable(&inner.topic, inner.index, &e);
            }
        }
        if orphaned && inner.replay && !inner.closed.load(Ordering::Acquire) {
            if let Ok(mut guard) = inner.stream.try_lock()
                && let Err(e) = inner.stream_for_send(&mut guard).await
            {
                tracing::debug!(topic = %topic_name(&inner.topic), partition = inner.index, error = %e, "reopening a stream to replay kept records failed");
            }
            continue;
        }
        if epoch.is_some() {
            // A live stream: the partition can be written (whatever an earlier failure said).
            inner.client.mark_available(&inner.topic, inner.index);
        }
        if several && epoch.is_some() && Instant::now() >= next_leader_check {
            next_leader_check = Instant::now() + LEADER_CHECK;
            inner.leave_moved_leader().await;
        }
        let Some(epoch) = epoch else {
            if several && !inner.closed.load(Ordering::Acquire) && Instant::now() >= next_reopen {
                let Ok(mut guard) = inner.stream.try_lock() else {
                    continue;
                };
                match inner.stream_for_send(&mut guard).await {
                    Ok(_) => reopen.reset(),
                    Err(e) => {
                        next_reopen = Instant::now() + reopen.next_delay_unbounded();
                        tracing::debug!(topic = %topic_name(&inner.topic), partition = inner.index, error = %e, "reopening a broken publish stream failed; will retry");
                    }
                }
            }
            continue;
        };
        if !unconfirmed || inner.confirmed_by_caller {
            continue;
        }
        if let Some(files) = &inner.log_files {
            inner.confirm_from(files, epoch).await;
            continue;
        }
        if let Some((sent, answered, start)) = inner.probe(epoch).await {
            let mut d = lock_durable(&inner.durable);
            if d.watermark.epoch() == epoch {
                d.watermark.on_live_probe(timing, sent, answered, start);
                d.prune();
            }
        }
    }
}
