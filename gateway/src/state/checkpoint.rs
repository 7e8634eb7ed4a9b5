//! Checkpoints of the state topics, so that a start (or a partition takeover) reads the newest
//! checkpoint and the records after it instead of every record ever written, and so that the
//! records a checkpoint covers can be removed from SMQ.
//!
//! A checkpoint of one partition of a state topic is a small file in the filer,
//! `/kafka-gateway/checkpoints/<namespace>/<topic>/<partition>/<position>`, holding the state
//! rebuilt from every record the broker stored up to `position` (a broker timestamp; records of
//! a partition have strictly increasing ones). Writing one takes the partition's checkpoint lock
//! in the filer, rebuilds the state from the newest checkpoint and the records after it, and
//! writes it under the position of the read's end. Then everything but the two newest
//! checkpoints is removed, and after that the partition's log files whose records all lie at or
//! before the older of the two. A reader that started from a checkpoint removed meanwhile may
//! have missed removed log files: it finds its checkpoint gone after its read and starts over.

use std::sync::Arc;
use std::time::Duration;

use smq_client::{DataMessage, LockOutcome};

use super::topic::SystemTopic;
use crate::error::{GatewayError, GatewayResult};

const ROOT: &str = "/kafka-gateway/checkpoints";
const MAGIC: &[u8; 4] = b"KGCK";
const VERSION: u8 = 1;
/// How long the checkpoint lock lasts; writing a checkpoint takes far less.
const LOCK_TTL: Duration = Duration::from_secs(120);
/// Reads that found their checkpoint removed under them start over this many times.
const LOAD_ATTEMPTS: usize = 3;
/// Reads that found a gap ([`Replay::gaps`]) start over after 0.5, 1, 2 and 4 s: in all a bit
/// more than SMQ's default flush interval (5 s), after which what a broker held in memory is
/// also in its log files.
const GAP_RETRIES: u32 = 4;
const GAP_RETRY_DELAY: Duration = Duration::from_millis(500);
/// A checkpoint is not written from a read with gaps (it would make them permanent: later
/// reads start after it) until this many times `min_records` follow the newest one; then the
/// gap is taken as lasting, so that reads stay bounded.
const GAP_TAIL_FACTOR: usize = 4;

/// When checkpoints are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// How often each partition is looked at.
    pub every: Duration,
    /// A checkpoint is written once this many records follow the newest one...
    pub min_records: usize,
    /// ...or once the newest is this old and any record follows it.
    pub max_age: Duration,
}

impl CheckpointPolicy {
    /// Whether a checkpoint is due, with `replayed` state records and `markers` read markers
    /// after the newest one (of age `age`; `None`: there is none). Markers count towards
    /// `min_records` only: every read appends one, so a partition nothing else is written to
    /// still gets a checkpoint now and then, and its start never reads more than about
    /// `min_records` markers, however long the cluster has run.
    pub fn due(&self, replayed: usize, markers: usize, age: Option<Duration>, force: bool) -> bool {
        let state = replayed > 0
            && (force || replayed >= self.min_records || age.is_none_or(|a| a >= self.max_age));
        state || replayed + markers >= self.min_records
    }
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(10),
            min_records: 5_000,
            max_age: Duration::from_secs(60),
        }
    }
}

/// State rebuilt from one partition of a state topic.
pub trait Replay: Default + Send + Sync + 'static {
    /// Applies one record, in the order the broker stored them.
    fn apply(&mut self, message: &DataMessage);
    /// The state as checkpoint bytes; `decode(encode(s))` must replay on exactly as `s`.
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Result<Self, String>;
    /// Records applied since `decode` (or `default`) that do not continue what came before
    /// them, such as a ledger entry past its ledger's end. Records of one partition are read in
    /// the order SMQ stored them, so a gap means the read missed records SMQ holds: it was seen
    /// once under churn, the missing records being readable later. A load with gaps reads again.
    fn gaps(&self) -> usize {
        0
    }
}

/// A partition's state as read.
#[derive(Debug)]
pub struct Loaded<S> {
    pub state: S,
    /// Where the read ended (the next read starts after it).
    pub position: i64,
    /// Records applied after the checkpoint.
    pub replayed: usize,
    /// Read markers after the checkpoint (not state, but read by every load).
    pub markers: usize,
    /// The position of the checkpoint the read started from.
    pub checkpoint: Option<i64>,
}

/// What writing a checkpoint did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub position: i64,
    pub bytes: usize,
    /// Older checkpoints and log files removed, and the log files' bytes.
    pub checkpoints_removed: usize,
    pub log_files_removed: usize,
    pub log_bytes_removed: u64,
}

fn frame(position: i64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 17);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&position.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn unframe(bytes: &[u8]) -> Result<(i64, &[u8]), String> {
    if bytes.len() < 17 || &bytes[..4] != MAGIC {
        return Err("not a checkpoint".to_string());
    }
    if bytes[4] != VERSION {
        return Err(format!("checkpoint version {} unknown", bytes[4]));
    }
    let position = i64::from_be_bytes(bytes[5..13].try_into().map_err(|_| "short")?);
    let crc = u32::from_be_bytes(bytes[13..17].try_into().map_err(|_| "short")?);
    let payload = &bytes[17..];
    if crc32c::crc32c(payload) != crc {
        return Err("checkpoint checksum mismatch".to_string());
    }
    Ok((position, payload))
}

fn name_of(position: i64) -> String {
    format!("{position:020}")
}

impl SystemTopic {
    fn checkpoint_dir(&self, partition: i32) -> String {
        let t = self.topic();
        format!("{ROOT}/{}/{}/{partition}", t.namespace, t.name)
    }

    /// The positions of the partition's checkpoints, oldest first.
    async fn checkpoints(&self, partition: i32) -> GatewayResult<Vec<i64>> {
        let mut out: Vec<i64> = self
            .client()
            .list_dir(&self.checkpoint_dir(partition))
            .await?
            .into_iter()
            .filter(|e| !e.is_directory)
            .filter_map(|e| e.name.parse::<i64>().ok())
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// The newest checkpoint that reads back whole, with its position.
    async fn newest_checkpoint<S: Replay>(
        &self,
        partition: i32,
    ) -> GatewayResult<Option<(S, i64)>> {
        let dir = self.checkpoint_dir(partition);
        for position in self.checkpoints(partition).await?.into_iter().rev() {
            let Some(bytes) = self.client().get_file(&dir, &name_of(position)).await? else {
                continue;
            };
            match unframe(&bytes).and_then(|(p, payload)| Ok((p, S::decode(payload)?))) {
                Ok((p, state)) if p == position => return Ok(Some((state, p))),
                Ok((p, _)) => {
                    tracing::warn!(%dir, position, framed = p, "a checkpoint names another position; trying an older one")
                }
                Err(e) => {
                    tracing::warn!(%dir, position, error = %e, "a checkpoint does not read back; trying an older one")
                }
            }
        }
        Ok(None)
    }

    /// The partition's state: the newest checkpoint, then every record stored after it.
    pub async fn load<S: Replay>(
        &self,
        partition: i32,
        read_timeout: Duration,
    ) -> GatewayResult<Loaded<S>> {
        let mut replaced = 0;
        let mut gap_retries = 0;
        while replaced < LOAD_ATTEMPTS {
            let (mut state, checkpoint) = match self.newest_checkpoint::<S>(partition).await? {
                Some((s, p)) => (s, Some(p)),
                None => (S::default(), None),
            };
            let tail = self.read_after(partition, checkpoint, read_timeout).await?;
            if let Some(p) = checkpoint
                && !self.checkpoints(partition).await?.contains(&p)
            {
                tracing::info!(topic = %self.topic().name, partition, "the checkpoint read from was replaced during the read; reading again");
                replaced += 1;
                continue;
            }
            for m in &tail.messages {
                state.apply(m);
            }
            let gaps = state.gaps();
            if gaps > 0 && gap_retries < GAP_RETRIES {
                let delay = GAP_RETRY_DELAY * (1 << gap_retries);
                gap_retries += 1;
                tracing::warn!(topic = %self.topic().name, partition, gaps, attempt = gap_retries, ?delay, "the read missed records (gaps in what it found); reading again");
                tokio::time::sleep(delay).await;
                continue;
            }
            if gaps > 0 {
                tracing::error!(topic = %self.topic().name, partition, gaps, "every read of the partition found gaps; going on with what was found");
            } else if gap_retries > 0 {
                tracing::info!(topic = %self.topic().name, partition, attempts = gap_retries + 1, "a read again found no gap");
            }
            return Ok(Loaded {
                state,
                position: tail.end_ts,
                replayed: tail.messages.len(),
                markers: tail.markers,
                checkpoint,
            });
        }
        Err(GatewayError::Internal(format!(
            "reading {}/{} partition {partition}: checkpoints kept being replaced during the read",
            self.topic().namespace,
            self.topic().name
        )))
    }

    /// Writes a checkpoint of the partition when `policy` says one is due (when any record
    /// follows the newest, with `force`), then removes what the two newest make unneeded. Call
    /// it holding the partition's checkpoint lock (see [`SystemTopic::keep_checkpointed`]).
    pub async fn checkpoint<S: Replay>(
        &self,
        partition: i32,
        read_timeout: Duration,
        policy: CheckpointPolicy,
        force: bool,
    ) -> GatewayResult<Option<Written>> {
        let loaded = self.load::<S>(partition, read_timeout).await?;
        let age = loaded
            .checkpoint
            .map(|p| Duration::from_nanos(crate::clock::now_ns().saturating_sub(p).max(0) as u64));
        if !policy.due(loaded.replayed, loaded.markers, age, force) {
            return Ok(None);
        }
        // Nonzero only when every read again found gaps too (see `load`).
        let gaps = loaded.state.gaps();
        if gaps > 0 && loaded.replayed < GAP_TAIL_FACTOR * policy.min_records {
            tracing::warn!(topic = %self.topic().name, partition, gaps, replayed = loaded.replayed, "no checkpoint from a read with gaps (the missing records may still be read)");
            return Ok(None);
        }
        let payload = loaded.state.encode();
        let framed = frame(loaded.position, &payload);
        let dir = self.checkpoint_dir(partition);
        self.client()
            .put_file(&dir, &name_of(loaded.position), framed)
            .await?;
        let mut written = Written {
            position: loaded.position,
            bytes: payload.len(),
            ..Written::default()
        };
        let all = self.checkpoints(partition).await?;
        if all.len() > 2 {
            let keep_from = all[all.len() - 2];
            // Checkpoints first: a reader that used one of them then knows to read again
            // before the log files it may have needed are gone.
            for p in all.iter().filter(|p| **p < keep_from) {
                self.client().delete_path(&dir, &name_of(*p)).await?;
                written.checkpoints_removed += 1;
            }
            let (files, bytes) = self
                .client()
                .delete_log_files_before(self.topic(), partition, keep_from.saturating_add(1))
                .await?;
            written.log_files_removed = files;
            written.log_bytes_removed = bytes;
        }
        tracing::info!(topic = %self.topic().name, partition, position = written.position, bytes = written.bytes, replayed = loaded.replayed, checkpoints_removed = written.checkpoints_removed, log_files_removed = written.log_files_removed, log_bytes_removed = written.log_bytes_removed, "checkpoint written");
        Ok(Some(written))
    }

    /// Every `policy.every`, writes the checkpoints that are due, for each partition whose
    /// checkpoint lock this gateway gets (so gateways sharing SMQ take turns). Runs until
    /// dropped.
    pub async fn keep_checkpointed<S: Replay>(
        self: Arc<Self>,
        owner: String,
        policy: CheckpointPolicy,
    ) {
        let mut tick = tokio::time::interval(policy.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            for p in 0..self.partitions() {
                if let Err(e) = self.checkpoint_locked::<S>(p, &owner, policy).await {
                    tracing::warn!(topic = %self.topic().name, partition = p, error = %e, "writing a checkpoint failed; will retry");
                }
            }
        }
    }

    async fn checkpoint_locked<S: Replay>(
        &self,
        partition: i32,
        owner: &str,
        policy: CheckpointPolicy,
    ) -> GatewayResult<()> {
        let t = self.topic();
        let name = format!(
            "kafka-gateway/checkpoint/{}/{}/{partition}",
            t.namespace, t.name
        );
        let lease = match self.client().lock(&name, owner, LOCK_TTL, None).await? {
            LockOutcome::Acquired(l) => l,
            LockOutcome::HeldBy(_) => return Ok(()),
        };
        let r = self
            .checkpoint::<S>(partition, LOCK_TTL / 2, policy, false)
            .await
            .map(drop);
        if let Err(e) = self.client().unlock(&lease).await {
            tracing::debug!(lock = %name, error = %e, "releasing the checkpoint lock failed; it expires");
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_alone_make_a_checkpoint_due_only_in_numbers() {
        let p = CheckpointPolicy {
            min_records: 100,
            max_age: Duration::from_secs(60),
            ..Default::default()
        };
        let old = Some(Duration::from_secs(3600));
        // Nothing at all: never.
        assert!(!p.due(0, 0, None, true));
        // Markers only: not by age or force (that would rewrite idle partitions every minute),
        // but once there are min_records of them.
        assert!(!p.due(0, 99, old, true));
        assert!(p.due(0, 100, old, false));
        // State records: as before, by count, by age, by force, or with no checkpoint yet.
        assert!(p.due(1, 0, None, false));
        assert!(!p.due(1, 0, Some(Duration::from_secs(1)), false));
        assert!(p.due(1, 0, Some(Duration::from_secs(1)), true));
        assert!(p.due(1, 0, old, false));
        assert!(p.due(60, 40, Some(Duration::from_secs(1)), false));
    }

    #[test]
    fn frames_round_trip_and_damage_is_refused() {
        let f = frame(1234, b"state");
        assert_eq!(unframe(&f).unwrap(), (1234, &b"state"[..]));
        let mut bad = f.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(unframe(&bad).is_err());
        assert!(unframe(&f[..10]).is_err());
        assert!(unframe(b"nope, not a checkpoint").is_err());
        assert_eq!(name_of(42), "00000000000000000042");
        assert!(name_of(i64::MAX) > name_of(i64::MAX - 1));
    }
}
