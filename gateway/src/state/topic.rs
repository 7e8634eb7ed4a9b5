//! Topics the gateway keeps its own state in (`kafka-system/...`): append a record, and read a
//! partition back, completely or from a broker timestamp on.
//!
//! Reading back uses SubscribeMessage (FetchMessage is positional and, in SMQ 4.48, cannot see
//! first-window data after a partition reload). Subscriptions never end, so the reader first
//! appends a marker record with a unique key and reads until it sees that marker: then it has
//! seen everything written before, and the marker's timestamp is where the next read starts.

use std::time::Duration;

use smq_client::{
    DataMessage, PartitionPublisher, RecordType, SmqClient, SmqError, Topic, TopicSpec,
};

use crate::error::{GatewayError, GatewayResult};

pub const SYSTEM_NAMESPACE: &str = "kafka-system";
const MARKER_PREFIX: &[u8] = b"__marker__:";
/// Sends after a broken stream, waiting 100, 200, 400, 800 ms: 1.5 s in all, well inside a
/// client's request timeout.
const STREAM_RETRIES: u32 = 4;
const STREAM_RETRY_DELAY: Duration = Duration::from_millis(100);

/// What a read of a state partition found.
#[derive(Debug, Default)]
pub struct Tail {
    pub messages: Vec<DataMessage>,
    /// The broker timestamp of the read's marker: every record stored before the read has a
    /// smaller one, every record stored after it a larger one.
    pub end_ts: i64,
    /// Other reads' markers passed on the way (each read appends one, also where nothing
    /// else is written: they too must be checkpointed away).
    pub markers: usize,
}

pub struct SystemTopic {
    client: SmqClient,
    topic: Topic,
    publishers: Vec<PartitionPublisher>,
}

impl std::fmt::Debug for SystemTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemTopic")
            .field("topic", &self.topic)
            .finish()
    }
}

impl SystemTopic {
    /// Opens `kafka-system/<name>`, creating it with `partitions` partitions if needed.
    pub async fn open(
        client: SmqClient,
        name: &str,
        partitions: i32,
        record_type: RecordType,
    ) -> GatewayResult<Self> {
        let topic = smq_client::topic(SYSTEM_NAMESPACE, name);
        client
            .ensure_topic(&TopicSpec {
                topic: topic.clone(),
                partitions,
                record_type: Some(record_type),
                retention_seconds: None,
            })
            .await?;
        let publishers = (0..partitions)
            // The gateway's own state describes itself and tolerates repeats: kept until SMQ has
            // written it and sent again after a broken stream.
            .map(|p| PartitionPublisher::replaying(client.clone(), topic.clone(), p))
            .collect();
        Ok(Self {
            client,
            topic,
            publishers,
        })
    }

    pub fn partitions(&self) -> i32 {
        self.publishers.len() as i32
    }

    /// Appends one record; returns once SMQ acknowledged it, with the record's sequence number
    /// on its partition's publisher (see [`SystemTopic::durable_before`]).
    pub async fn append(
        &self,
        partition: i32,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> GatewayResult<Option<u64>> {
        let mut attempt = 0;
        loop {
            let sent = self.publishers[partition as usize]
                .send(DataMessage {
                    key: key.clone(),
                    value: value.clone(),
                    ts_ns: 0,
                    ctrl: None,
                })
                .await;
            let result = match sent {
                Ok(pending) => {
                    let seq = pending.seq();
                    pending.wait().await.map(|_| seq)
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(seq) => return Ok(seq),
                // A stream that broke before the ack is common right after a gateway restart:
                // SMQ is still stopping the previous process's partition ("log buffer is
                // stopping"). These records tolerate repeats, so sending again is safe, and it
                // spares the client an error (librdkafka does not retry a failed commit).
                Err(e @ SmqError::StreamBroken { .. }) if attempt < STREAM_RETRIES => {
                    attempt += 1;
                    tracing::debug!(topic = %self.topic.name, partition, attempt, error = %e,
                        "sending a state record again after a broken stream");
                    tokio::time::sleep(STREAM_RETRY_DELAY * (1 << (attempt - 1))).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Records appended to `partition` with a sequence number below the returned one are
    /// written by SMQ (see `PartitionPublisher::durable_before`).
    pub fn durable_before(&self, partition: i32) -> u64 {
        self.publishers[partition as usize].durable_before()
    }

    /// Every record of `partition` written before this call, in order (markers left out).
    pub async fn read_all(
        &self,
        partition: i32,
        read_timeout: Duration,
    ) -> GatewayResult<Vec<DataMessage>> {
        Ok(self
            .read_after(partition, None, read_timeout)
            .await?
            .messages)
    }

    /// The records of `partition` stored after broker timestamp `after` (all of them when
    /// None) and before this call, in order (markers left out).
    pub async fn read_after(
        &self,
        partition: i32,
        after: Option<i64>,
        read_timeout: Duration,
    ) -> GatewayResult<Tail> {
        let mut marker = MARKER_PREFIX.to_vec();
        marker.extend(format!("{}-{}", std::process::id(), rand::random::<u64>()).into_bytes());
        self.append(partition, marker.clone(), Vec::new()).await?;
        let mut sub = match after {
            None => {
                self.client
                    .subscribe_exact(&self.topic, partition, 0, "kafka-gateway-system-reader")
                    .await?
            }
            Some(ts) => {
                self.client
                    .subscribe_after(&self.topic, partition, ts, "kafka-gateway-system-reader")
                    .await?
            }
        };
        let mut out = Vec::new();
        let mut markers = 0;
        // One deadline for the whole read: a trickle of records must not keep it alive forever.
        let deadline = tokio::time::Instant::now() + read_timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, sub.next())
                .await
                .map_err(|_| {
                    GatewayError::Internal(format!(
                        "reading {}/{} partition {partition}: marker not reached within {read_timeout:?}",
                        self.topic.namespace, self.topic.name
                    ))
                })??
                .ok_or_else(|| {
                    GatewayError::Internal(format!(
                        "reading {}/{} partition {partition}: stream ended before the marker",
                        self.topic.namespace, self.topic.name
                    ))
                })?;
            if msg.key == marker {
                return Ok(Tail {
                    messages: out,
                    end_ts: msg.ts_ns,
                    markers,
                });
            }
            if msg.key.starts_with(MARKER_PREFIX) {
                markers += 1;
            } else {
                out.push(msg);
            }
        }
    }

    /// Bytes of acknowledged records SMQ has not yet been seen to write, over all partitions.
    pub fn retained_bytes(&self) -> usize {
        self.publishers.iter().map(|p| p.retained_bytes()).sum()
    }

    pub fn client(&self) -> &SmqClient {
        &self.client
    }

    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    pub async fn close(&self) {
        futures::future::join_all(self.publishers.iter().map(|p| p.close())).await;
    }
}
