use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smq_proto::messaging_pb::publish_message_request::{InitMessage, Message};
use smq_proto::messaging_pb::{DataMessage, PublishMessageRequest, PublishMessageResponse};
use smq_proto::schema_pb::Topic;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;

use crate::client::{SmqClient, topic_name};
use crate::error::{SmqError, SmqResult};

/// What the broker said about one published record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishAck {
    /// The SMQ offset the broker assigned.
    pub offset: i64,
    /// The timestamp echoed by the broker (0 when the record was sent with ts_ns 0).
    pub ack_ts_ns: i64,
}

/// The acknowledgement of one record, to be awaited after more records have been sent.
#[derive(Debug)]
pub struct PendingAck {
    rx: oneshot::Receiver<SmqResult<PublishAck>>,
    broker: String,
}

impl PendingAck {
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
pub struct PartitionPublisher {
    client: SmqClient,
    topic: Topic,
    index: i32,
    window: Arc<Semaphore>,
    stream: tokio::sync::Mutex<Option<Stream>>,
    streams_opened: AtomicU64,
}

struct Stream {
    broker: String,
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
    _permit: OwnedSemaphorePermit,
}

fn lock(p: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for PartitionPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionPublisher")
            .field("topic", &topic_name(&self.topic))
            .field("partition", &self.index)
            .finish()
    }
}

impl PartitionPublisher {
    pub fn new(client: SmqClient, topic: Topic, index: i32) -> Self {
        let window = client.config().publish_window.max(1);
        Self {
            client,
            topic,
            index,
            window: Arc::new(Semaphore::new(window)),
            stream: tokio::sync::Mutex::new(None),
            streams_opened: AtomicU64::new(0),
        }
    }

    pub fn partition(&self) -> i32 {
        self.index
    }

    /// How many streams this publisher has opened (1 while nothing broke).
    pub fn streams_opened(&self) -> u64 {
        self.streams_opened.load(Ordering::Relaxed)
    }

    /// Publishes one record and waits for its ack.
    pub async fn publish(&self, msg: DataMessage) -> SmqResult<PublishAck> {
        self.send(msg).await?.wait().await
    }

    /// Queues one record on the stream and returns its ack to await later. Records sent by
    /// successive calls are stored in call order. Waits while the in-flight window is full.
    pub async fn send(&self, msg: DataMessage) -> SmqResult<PendingAck> {
        let permit = self
            .window
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SmqError::Protocol("publisher window closed".to_string()))?;
        let mut guard = self.stream.lock().await;
        let healthy = guard
            .as_ref()
            .is_some_and(|s| lock(&s.pending).broken.is_none() && !s.tx.is_closed());
        if !healthy {
            *guard = None;
            *guard = Some(self.open().await?);
        }
        let stream = guard.as_ref().expect("stream was just opened");
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&stream.pending);
            if let Some(e) = &pending.broken {
                return Err(e.clone());
            }
            pending.waiters.push_back(Waiter {
                tx,
                sent_at: Instant::now(),
                _permit: permit,
            });
            // Queued under the same lock as the waiter so acks and records stay in one order.
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
        }
        Ok(PendingAck {
            rx,
            broker: stream.broker.clone(),
        })
    }

    /// Waits until every record sent so far is acknowledged (or failed), then closes the stream.
    pub async fn close(&self) {
        let taken = self.stream.lock().await.take();
        if let Some(stream) = taken {
            let deadline = Instant::now() + self.client.config().ack_timeout;
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

    /// Opens a stream to the partition's leader and consumes the broker's empty "hello".
    /// Failures here happen before any record was sent, so they are retried.
    async fn open(&self) -> SmqResult<Stream> {
        let policy = self.client.config().retry.clone();
        policy
            .retry("open publish stream", |_| async {
                let r = self.try_open().await;
                if let Err(e) = &r
                    && e.invalidates_lookup()
                {
                    self.client.invalidate(&self.topic);
                }
                r
            })
            .await
    }

    async fn try_open(&self) -> SmqResult<Stream> {
        let assignment = self.client.leader_of(&self.topic, self.index).await?;
        let broker = assignment.leader.clone();
        let breaker = self.client.breaker(&broker);
        breaker.admit().map_err(|retry_in| SmqError::CircuitOpen {
            broker: broker.clone(),
            retry_in,
        })?;
        let result = self.handshake(&broker, assignment.partition).await;
        self.client.record(&breaker, &result);
        let (tx, responses) = result?;
        self.streams_opened.fetch_add(1, Ordering::Relaxed);
        let pending = Arc::new(Mutex::new(Pending::default()));
        tokio::spawn(read_acks(
            responses,
            pending.clone(),
            broker.clone(),
            self.client.config().ack_timeout,
        ));
        tracing::debug!(topic = %topic_name(&self.topic), partition = self.index, %broker, "publish stream open");
        Ok(Stream {
            broker,
            tx,
            pending,
        })
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
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500).min(ack_timeout));
    let reason: SmqError = loop {
        tokio::select! {
            r = responses.message() => match r {
                Ok(Some(resp)) => {
                    let mut p = lock(&pending);
                    if resp.error_code != 0 || !resp.error.is_empty() {
                        break SmqError::Broker { code: resp.error_code, message: resp.error };
                    }
                    match p.waiters.pop_front() {
                        Some(w) => {
                            let _ = w.tx.send(Ok(PublishAck {
                                offset: resp.assigned_offset,
                                ack_ts_ns: resp.ack_ts_ns,
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
    for w in p.waiters.drain(..) {
        let _ = w.tx.send(Err(err.clone()));
    }
    p.broken = Some(err);
}
