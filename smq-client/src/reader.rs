use smq_proto::messaging_pb::subscribe_message_request::{AckMessage, InitMessage, Message};
use smq_proto::messaging_pb::subscribe_message_response::Message as Reply;
use smq_proto::messaging_pb::{
    DataMessage, FetchMessageRequest, GetPartitionRangeInfoRequest, SubscribeMessageRequest,
};
use smq_proto::schema_pb::{OffsetType, PartitionOffset, Topic};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::client::{SmqClient, topic_name};
use crate::error::{SmqError, SmqResult, codes};

/// One FetchMessage answer.
///
/// The broker returns no offsets: it assumes message *i* sits at `start + i`, which is wrong as
/// soon as SMQ's stored offsets have a gap or a repeat. Callers that need exact offsets must carry
/// them inside the records (or read with [`SmqClient::subscribe_exact`]).
#[derive(Debug, Clone, Default)]
pub struct FetchResult {
    pub messages: Vec<DataMessage>,
    pub high_water_mark: i64,
    /// Start of the broker's in-memory buffer, *not* the log start.
    pub buffer_start_offset: i64,
    pub next_offset: i64,
    pub end_of_partition: bool,
}

/// GetPartitionRangeInfo, reduced to what it reports reliably.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeInfo {
    pub high_water_mark: i64,
    pub latest_offset: i64,
}

impl SmqClient {
    /// FetchMessage on the partition's leader: up to `max_messages` records from `start_offset`.
    /// The broker ignores wait times, so this returns at once, possibly empty.
    pub async fn fetch(
        &self,
        topic: &Topic,
        partition: i32,
        start_offset: i64,
        max_bytes: i32,
        max_messages: i32,
    ) -> SmqResult<FetchResult> {
        let r = match self.leader_of(topic, partition).await {
            Err(e) => Err(e),
            Ok(a) => match self
                .fetch_from(topic, &a, start_offset, max_bytes, max_messages)
                .await
            {
                // The leader may not have loaded the partition (see `assign_partition`): load
                // it and ask once more.
                Err(SmqError::Fetch { code, .. }) if code == codes::FETCH_PARTITION_NOT_FOUND => {
                    match self.assign_partition(topic, &a).await {
                        Ok(()) => {
                            self.fetch_from(topic, &a, start_offset, max_bytes, max_messages)
                                .await
                        }
                        Err(e) => Err(e),
                    }
                }
                r => r,
            },
        };
        match &r {
            Ok(_) => self.mark_available(topic, partition),
            Err(e) if e.is_retriable() => self.mark_unavailable(topic, partition, e),
            Err(_) => {}
        }
        r
    }

    async fn fetch_from(
        &self,
        topic: &Topic,
        a: &crate::PartitionAssignment,
        start_offset: i64,
        max_bytes: i32,
        max_messages: i32,
    ) -> SmqResult<FetchResult> {
        let req = FetchMessageRequest {
            topic: Some(topic.clone()),
            partition: Some(a.partition),
            start_offset,
            max_bytes,
            max_messages,
            max_wait_ms: 0,
            min_bytes: 0,
            consumer_group: String::new(),
            consumer_id: self.config().client_name.clone(),
        };
        let r = self
            .unary(&a.leader, "FetchMessage", |mut c| async move {
                c.fetch_message(req).await
            })
            .await;
        let r = match r {
            Ok(r) if r.error_code == 0 && r.error.is_empty() => r,
            Ok(r) => {
                let e = SmqError::Fetch {
                    code: r.error_code,
                    message: r.error,
                };
                if e.invalidates_lookup() {
                    self.invalidate(topic);
                }
                return Err(e);
            }
            Err(e) => {
                if e.invalidates_lookup() {
                    self.invalidate(topic);
                }
                return Err(e);
            }
        };
        Ok(FetchResult {
            messages: r.messages,
            high_water_mark: r.high_water_mark,
            buffer_start_offset: r.log_start_offset,
            next_offset: r.next_offset,
            end_of_partition: r.end_of_partition,
        })
    }

    /// GetPartitionRangeInfo on the partition's leader. Only its high water mark means anything;
    /// it answers 0 without error for a wrong broker or generation, so it must go to the leader.
    pub async fn range_info(&self, topic: &Topic, partition: i32) -> SmqResult<RangeInfo> {
        let a = self.leader_of(topic, partition).await?;
        let req = GetPartitionRangeInfoRequest {
            topic: Some(topic.clone()),
            partition: Some(a.partition),
        };
        let r = self
            .unary(&a.leader, "GetPartitionRangeInfo", |mut c| async move {
                c.get_partition_range_info(req).await
            })
            .await
            .inspect_err(|e| {
                if e.invalidates_lookup() {
                    self.invalidate(topic);
                }
            })?;
        if !r.error.is_empty() {
            return Err(SmqError::Broker {
                code: codes::UNKNOWN,
                message: r.error,
            });
        }
        let range = r.offset_range.unwrap_or_default();
        Ok(RangeInfo {
            high_water_mark: range.high_water_mark,
            latest_offset: range.latest_offset,
        })
    }

    /// SubscribeMessage with EXACT_OFFSET: streams the partition's records from the first one whose
    /// *stored* offset is ≥ `offset`, in order, including records published later. Unlike
    /// FetchMessage this stays exact when stored offsets have gaps.
    pub async fn subscribe_exact(
        &self,
        topic: &Topic,
        partition: i32,
        offset: i64,
        consumer_group: &str,
    ) -> SmqResult<Subscription> {
        self.subscribe(
            topic,
            partition,
            OffsetType::ExactOffset,
            offset,
            0,
            consumer_group,
        )
        .await
    }

    /// SubscribeMessage with EXACT_TS_NS: streams the partition's records from the first one
    /// stored at or after `ts_ns` (the broker's timestamps, which increase strictly within a
    /// partition), in order, including records published later. Each record carries its
    /// timestamp in `ts_ns`.
    pub async fn subscribe_from_time(
        &self,
        topic: &Topic,
        partition: i32,
        ts_ns: i64,
        consumer_group: &str,
    ) -> SmqResult<Subscription> {
        self.subscribe(
            topic,
            partition,
            OffsetType::ExactTsNs,
            0,
            ts_ns,
            consumer_group,
        )
        .await
    }

    /// Every record of the partition stored after broker timestamp `after_ns` (none stored at
    /// or before it), in order, including records published later.
    ///
    /// A plain [`SmqClient::subscribe_from_time`] cannot do this: SMQ 4.48 reads from disk only
    /// the log files whose name is at or after the requested time, and a name is the second its
    /// broker buffer began, truncated. A file's records run until the next buffer began, up to a
    /// second after the next file's name; a read from a time in that second skipped the records
    /// stored between it and the next buffer's start. So this starts at a file that certainly
    /// began at or before `after_ns` (its name plus one second is at or before it) and drops
    /// what comes before.
    pub async fn subscribe_after(
        &self,
        topic: &Topic,
        partition: i32,
        after_ns: i64,
        consumer_group: &str,
    ) -> SmqResult<Subscription> {
        let dir = self.partition_dir(topic, partition).await?;
        let starts: Vec<i64> = self
            .list_dir(&dir)
            .await?
            .iter()
            .filter(|e| !e.is_directory)
            .filter_map(|e| crate::log_file_start_ns(&e.name))
            .collect();
        let from = read_start(&starts, after_ns);
        let mut sub = self
            .subscribe_from_time(topic, partition, from, consumer_group)
            .await?;
        sub.after_ns = Some(after_ns);
        Ok(sub)
    }

    async fn subscribe(
        &self,
        topic: &Topic,
        partition: i32,
        offset_type: OffsetType,
        offset: i64,
        ts_ns: i64,
        consumer_group: &str,
    ) -> SmqResult<Subscription> {
        let a = self
            .leader_of(topic, partition)
            .await
            .inspect_err(|e| self.mark_unavailable(topic, partition, e))?;
        self.assign_partition(topic, &a)
            .await
            .inspect_err(|e| self.mark_unavailable(topic, partition, e))?;
        let broker = a.leader.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(SubscribeMessageRequest {
            message: Some(Message::Init(InitMessage {
                consumer_group: consumer_group.to_string(),
                consumer_id: format!("{}-{}", self.config().client_name, rand::random::<u32>()),
                client_id: self.config().client_name.clone(),
                topic: Some(topic.clone()),
                partition_offset: Some(PartitionOffset {
                    partition: Some(a.partition),
                    start_ts_ns: ts_ns,
                    start_offset: offset,
                }),
                offset_type: offset_type as i32,
                filter: String::new(),
                follower_broker: String::new(),
                sliding_window_size: 1024,
            })),
        });
        let mut client = self.messaging(&broker)?;
        let (out_tx, out_rx) = mpsc::channel(1024);
        let name = topic_name(topic);
        // The call itself only completes when the broker sends its first message, which may be
        // long after this returns, so the whole stream lives in a task.
        let task = tokio::spawn(async move {
            let resp = client
                .subscribe_message(UnboundedReceiverStream::new(rx))
                .await;
            let mut stream = match resp {
                Ok(r) => r.into_inner(),
                Err(s) => {
                    let _ = out_tx.send(Err(SmqError::rpc(&broker, s))).await;
                    return;
                }
            };
            loop {
                let item = match stream.message().await {
                    Ok(Some(r)) => match r.message {
                        Some(Reply::Data(d)) => {
                            // Acks release the broker's in-flight slot for this key.
                            let _ = tx.send(SubscribeMessageRequest {
                                message: Some(Message::Ack(AckMessage {
                                    ts_ns: d.ts_ns,
                                    key: d.key.clone(),
                                })),
                            });
                            Ok(Some(d))
                        }
                        Some(Reply::Ctrl(c)) if !c.error.is_empty() => Err(SmqError::Broker {
                            code: codes::UNKNOWN,
                            message: format!("subscription to {name}: {}", c.error),
                        }),
                        Some(Reply::Ctrl(c)) if c.is_end_of_stream || c.is_end_of_topic => Ok(None),
                        _ => continue,
                    },
                    Ok(None) => Ok(None),
                    Err(s) => Err(SmqError::rpc(&broker, s)),
                };
                let last = !matches!(item, Ok(Some(_)));
                if out_tx.send(item).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(Subscription {
            rx: out_rx,
            task,
            done: false,
            after_ns: None,
        })
    }
}

/// A live SubscribeMessage stream. Dropping it ends the subscription.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<SmqResult<Option<DataMessage>>>,
    task: tokio::task::JoinHandle<()>,
    done: bool,
    /// Records stored at or before this broker timestamp are dropped.
    after_ns: Option<i64>,
}

/// Where a read of the records stored after `after_ns` must start, given the start times the
/// partition's log file names give (see [`SmqClient::subscribe_after`]): the newest file that
/// began at or before `after_ns` whatever its name's fraction of a second, else the oldest file
/// (no file began earlier), else just after `after_ns` (nothing on disk is that old).
fn read_start(file_starts: &[i64], after_ns: i64) -> i64 {
    const SECOND: i64 = 1_000_000_000;
    let certain = file_starts
        .iter()
        .copied()
        .filter(|t| t.saturating_add(SECOND) <= after_ns)
        .max();
    let oldest = file_starts.iter().copied().min().filter(|t| *t <= after_ns);
    certain
        .or(oldest)
        .unwrap_or_else(|| after_ns.saturating_add(1))
}

impl Subscription {
    /// The next record; `Ok(None)` once the broker ended the stream.
    pub async fn next(&mut self) -> SmqResult<Option<DataMessage>> {
        if self.done {
            return Ok(None);
        }
        loop {
            match self.rx.recv().await {
                Some(Ok(Some(d))) if self.after_ns.is_some_and(|a| d.ts_ns <= a) => continue,
                Some(Ok(Some(d))) => return Ok(Some(d)),
                Some(Ok(None)) | None => {
                    self.done = true;
                    return Ok(None);
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::read_start;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_read_starts_at_a_file_that_certainly_began_before_the_time() {
        let files = [100 * S, 105 * S, 110 * S];
        // In a file's first second, its buffer may not have begun yet: the one before.
        assert_eq!(read_start(&files, 105 * S + S / 2), 100 * S);
        assert_eq!(read_start(&files, 105 * S), 100 * S);
        // A second or more later it has.
        assert_eq!(read_start(&files, 106 * S), 105 * S);
        assert_eq!(read_start(&files, 200 * S), 110 * S);
        // Within the oldest file's first second: that file (nothing began earlier).
        assert_eq!(read_start(&files, 100 * S + 3), 100 * S);
        // Before every file, or with none: from just after the time.
        assert_eq!(read_start(&files, 99 * S), 99 * S + 1);
        assert_eq!(read_start(&[], 7), 8);
    }
}
