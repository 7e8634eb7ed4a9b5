//! Group commit of ledger entries: one writer per mapping partition takes every entry queued
//! while its previous SMQ record was on its way and writes them as one record, so concurrent
//! produces (pipelined requests to a partition, partitions that share a mapping partition) pay
//! SMQ's per-record cost once. Each caller still returns only once the record holding its
//! entries is acknowledged.

use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use super::store::{LedgerRecord, encode_many};
use crate::error::{GatewayError, GatewayResult};
use crate::state::SystemTopic;

/// Entries written in one SMQ record at most: a bound on the record's size (about 200 bytes
/// each) and on what one failed write fails.
const MAX_ENTRIES_PER_RECORD: usize = 512;

struct Job {
    records: Vec<LedgerRecord>,
    done: oneshot::Sender<GatewayResult<Option<u64>>>,
}

#[derive(Default)]
struct Lane {
    queue: Mutex<Vec<Job>>,
    wake: Notify,
}

/// The writers of a mapping topic's partitions.
pub struct Writers {
    lanes: Vec<Arc<Lane>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Writers {
    pub fn start(log: Arc<SystemTopic>) -> Self {
        let lanes: Vec<Arc<Lane>> = (0..log.partitions())
            .map(|_| Arc::new(Lane::default()))
            .collect();
        let tasks = lanes
            .iter()
            .enumerate()
            .map(|(slot, lane)| tokio::spawn(write_lane(log.clone(), slot as i32, lane.clone())))
            .collect();
        Self { lanes, tasks }
    }

    /// Writes `records` (all of mapping partition `slot`, in order) in the lane's next SMQ
    /// record, possibly with others'; returns the record's sequence number on the partition's
    /// publisher once SMQ acknowledged it.
    pub async fn write(&self, slot: i32, records: Vec<LedgerRecord>) -> GatewayResult<Option<u64>> {
        let lane = &self.lanes[slot as usize];
        let (done, rx) = oneshot::channel();
        lane.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Job { records, done });
        lane.wake.notify_one();
        rx.await.unwrap_or_else(|_| {
            Err(GatewayError::Internal(
                "the ledger writer stopped before writing the entry".to_string(),
            ))
        })
    }

    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn write_lane(log: Arc<SystemTopic>, slot: i32, lane: Arc<Lane>) {
    loop {
        lane.wake.notified().await;
        loop {
            let jobs: Vec<Job> = {
                let mut q = lane.queue.lock().unwrap_or_else(|e| e.into_inner());
                let mut n = 0;
                let take = q
                    .iter()
                    .take_while(|j| {
                        n += j.records.len();
                        n <= MAX_ENTRIES_PER_RECORD || n == j.records.len()
                    })
                    .count();
                q.drain(..take).collect()
            };
            if jobs.is_empty() {
                break;
            }
            let records: Vec<&LedgerRecord> = jobs.iter().flat_map(|j| &j.records).collect();
            let first = records[0];
            // Unique keys: SMQ holds back a subscriber's next record with a key still
            // unacknowledged.
            let key = format!(
                "{}/{}@{}+{}",
                first.topic,
                first.partition,
                first.entry.kafka_offset,
                records.len()
            )
            .into_bytes();
            crate::metrics::smq_writes("ledger", 1);
            let result = log.append(slot, key, encode_many(&records)).await;
            for j in jobs {
                let _ = j.done.send(result.clone());
            }
        }
    }
}
