//! Reading a partition's flushed records straight from its log files in the filer, the way SMQ's
//! own SQL engine does, instead of through the broker's FetchMessage (whose cost is broker CPU
//! per record).
//!
//! Layout (SeaweedFS 4.48, checked against a running cluster): a partition's directory is
//! `/topics/<ns>/<name>/v<YYYY-MM-DD-hh-mm-ss of the generation>/<%04d start>-<%04d stop>/`. Each
//! broker flush appends one chunk to the file named after the flushed buffer's start time (UTC,
//! `YYYY-MM-DD-hh-mm-ss`). A chunk is a sequence of records, each a 4-byte big-endian length and
//! a `filer_pb.LogEntry` whose `data` is the published `DataMessage.value`, `key` its key and
//! `offset` the SMQ offset. Two flushes within one second go to the same file (two chunks), and
//! chunks of compressible data are stored gzipped (`is_compressed`). Log files carry extended
//! attributes `buffer_start`, and `offset_min`/`offset_max` once a flush into it started above
//! offset 0; none of them is exact: offset_min and offset_max were seen one above the file's
//! real first and last offsets, a file whose first flush started at 0 gets its offset_min from
//! a later flush (0..19999 in one file with offset_min 7170), and buffer_start was seen both
//! above and below the last offset. So they only narrow which files to look at, and a file's
//! first offset is read from the file itself. Other entries (`checkpoint.offset`, `consumers/`, parquet files after compaction)
//! are skipped.
//!
//! Nothing here is trusted blindly: offsets in the files can repeat after a broker crash (SMQ
//! hands them out again), so the caller checks every record it is given and reads through the
//! broker whatever is missing or disagrees. This module only finds and parses records.
//!
//! Memory: per partition the list of log files (name, size, offset range) and, per file, a few
//! positions where earlier reads stopped, so that a sequential reader continues where it left
//! off instead of reading the file again from its start.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message;
use smq_proto::filer_pb::seaweed_filer_client::SeaweedFilerClient;
use smq_proto::filer_pb::{Entry, ListEntriesRequest, LogEntry, LookupVolumeRequest};
use smq_proto::schema_pb::Topic;
use tokio::sync::Mutex;

use crate::client::SmqClient;
use crate::error::{SmqError, SmqResult};
use crate::lock::filer_grpc_address;

/// A record is never larger than this (SMQ gives records over 8 MiB their own window, up to
/// about 1 GiB); a larger length prefix means the bytes are not a log file.
const MAX_RECORD: usize = 1 << 30;
/// Entries asked for per ListEntries call.
const LIST_PAGE: u32 = 1000;
/// Least time between two listings of one partition's directory caused by reads past what is
/// known (a consumer near the tail asks for unflushed offsets all the time).
const RELIST_INTERVAL: Duration = Duration::from_millis(500);
/// How far a file's `offset_min`/`offset_max` attributes are trusted to be off.
const HINT_SLACK: i64 = 16;
/// Read positions remembered per file.
const MARKS_PER_FILE: usize = 8;
/// Bytes read past the budget at least in one range request, so one request usually ends on a
/// record boundary past what is needed.
const READ_SLACK: u64 = 64 << 10;
/// Bytes read at most in one range request.
const MAX_READ: u64 = 16 << 20;
/// Chunks `newest_written` looks at, newest first.
const WRITTEN_CHUNKS_BACK: usize = 4;
/// Chunks up to this size are read whole by `newest_written`.
const SMALL_CHUNK: u64 = 1 << 20;

/// One record of a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushedRecord {
    /// The SMQ offset the broker stored with it.
    pub offset: i64,
    pub ts_ns: i64,
    pub key: Vec<u8>,
    /// The published `DataMessage.value`.
    pub data: Vec<u8>,
}

/// Records parsed from the start of a buffer that begins at a record boundary.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Each record with its (start, end) positions in the buffer.
    pub records: Vec<(usize, usize, FlushedRecord)>,
    /// Bytes of complete records.
    pub consumed: usize,
    /// The length of the incomplete record that follows, when its prefix was read.
    pub next_len: Option<usize>,
}

/// Parses the complete records at the start of `buf`, stopping early once `stop` says so for a
/// record (that record is included). An incomplete record at the end is not an error: the caller
/// knows whether more bytes follow. A length prefix that cannot be a record, or bytes that are
/// not a `LogEntry`, are.
pub fn parse_records(
    buf: &[u8],
    mut stop: impl FnMut(&FlushedRecord) -> bool,
) -> SmqResult<Parsed> {
    let mut out = Parsed::default();
    let mut pos = 0usize;
    while buf.len() - pos >= 4 {
        let len = u32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        if len == 0 || len > MAX_RECORD {
            return Err(SmqError::LogFile(format!(
                "record length {len} at byte {pos} is not a log record"
            )));
        }
        let Some(body) = buf.get(pos + 4..pos + 4 + len) else {
            out.next_len = Some(len);
            break;
        };
        let e = LogEntry::decode(body).map_err(|e| {
            SmqError::LogFile(format!("record at byte {pos} is not a LogEntry: {e}"))
        })?;
        let r = FlushedRecord {
            offset: e.offset,
            ts_ns: e.ts_ns,
            key: e.key,
            data: e.data,
        };
        let done = stop(&r);
        out.records.push((pos, pos + 4 + len, r));
        pos += 4 + len;
        out.consumed = pos;
        if done {
            break;
        }
    }
    Ok(out)
}

/// Every record that could end `buf`, shortest first: a 4-byte length reaching exactly the end,
/// followed by a valid `LogEntry` (see [`PartitionLogFiles::newest_written`]).
fn candidates_ending(buf: &[u8]) -> Vec<FlushedRecord> {
    let end = buf.len();
    (0..end.saturating_sub(4))
        .rev()
        .filter_map(|p| {
            let len = u32::from_be_bytes([buf[p], buf[p + 1], buf[p + 2], buf[p + 3]]) as usize;
            if len == 0 || p + 4 + len != end {
                return None;
            }
            let e = LogEntry::decode(&buf[p + 4..]).ok()?;
            Some(FlushedRecord {
                offset: e.offset,
                ts_ns: e.ts_ns,
                key: e.key,
                data: e.data,
            })
        })
        .collect()
}

/// `unix_time_ns` as SMQ names generation directories: `v` + UTC `YYYY-MM-DD-hh-mm-ss`.
pub fn generation_dir(unix_time_ns: i64) -> String {
    let secs = unix_time_ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "v{y:04}-{m:02}-{d:02}-{:02}-{:02}-{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Whether a directory entry's name is a log file's (`YYYY-MM-DD-hh-mm-ss`).
fn is_log_file_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 | 10 | 13 | 16 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

fn attr(e: &Entry, name: &str) -> Option<i64> {
    let v = e.extended.get(name)?;
    let b: [u8; 8] = v.as_slice().try_into().ok()?;
    Some(i64::from_be_bytes(b))
}

/// A piece of a log file, stored as one needle on a volume server.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chunk {
    /// Where it starts in the file.
    start: u64,
    size: u64,
    file_id: String,
    volume: String,
}

/// What is known of one log file.
#[derive(Debug, Clone)]
struct LogFile {
    name: String,
    size: u64,
    /// In file order, covering `[0, size)` without gaps.
    chunks: Vec<Chunk>,
    /// Smallest offset: `offset_min` (a hint: seen one above the truth), or the first
    /// record's once read (`min_exact`).
    min: Option<i64>,
    min_exact: bool,
    /// Largest offset: `offset_max` (a hint: seen one above the truth), or the last record's
    /// once read to the end (`max_exact`).
    max: Option<i64>,
    max_exact: bool,
    /// (last offset read, position right after its record), sorted by position.
    marks: Vec<(i64, u64)>,
    /// Offsets were seen going backwards inside the file: positions say nothing about offsets.
    unordered: bool,
}

impl LogFile {
    fn from_entry(e: &Entry) -> Option<Self> {
        if e.is_directory || !is_log_file_name(&e.name) || !e.content.is_empty() {
            return None;
        }
        // Only chunks that tile the file are read here (SMQ writes nothing else); encrypted
        // chunks and manifests are left to the broker. Compressed chunks (the volume server
        // gzips compressible uploads) are fine: asked without `Accept-Encoding: gzip`, the
        // volume server decompresses them and serves ranges of the original bytes.
        let mut chunks = Vec::with_capacity(e.chunks.len());
        for c in &e.chunks {
            let volume = c.file_id.split_once(',').map(|(v, _)| v.to_string())?;
            if c.is_chunk_manifest || !c.cipher_key.is_empty() || c.offset < 0 {
                return None;
            }
            chunks.push(Chunk {
                start: c.offset as u64,
                size: c.size,
                file_id: c.file_id.clone(),
                volume,
            });
        }
        chunks.sort_by_key(|c| c.start);
        let mut size = 0u64;
        for c in &chunks {
            if c.start != size {
                return None;
            }
            size = size.checked_add(c.size)?;
        }
        // `buffer_start` says nothing reliable about the file's offsets (seen above and below
        // its largest one), so it is not used.
        let min = attr(e, "offset_min");
        let max = attr(e, "offset_max");
        Some(Self {
            name: e.name.clone(),
            size,
            chunks,
            min,
            min_exact: false,
            max,
            max_exact: false,
            marks: Vec::new(),
            unordered: false,
        })
    }

    /// Where to start reading for offsets ≥ `from`: after the last record known below it.
    fn start_for(&self, from: i64) -> u64 {
        if self.unordered {
            return 0;
        }
        self.marks
            .iter()
            .filter(|(last, pos)| *last < from && *pos <= self.size)
            .map(|(_, pos)| *pos)
            .max()
            .unwrap_or(0)
    }

    fn mark(&mut self, last: i64, pos: u64) {
        if self.marks.iter().any(|m| m.1 == pos) {
            return;
        }
        if self.marks.len() >= MARKS_PER_FILE {
            self.marks.remove(0);
        }
        self.marks.push((last, pos));
    }
}

#[derive(Debug, Default)]
struct State {
    /// The partition's directory, once the topic's layout is known.
    dir: Option<String>,
    /// The filer's gRPC address.
    filer: Option<String>,
    /// Log files in name (time) order.
    files: Vec<LogFile>,
    listed_at: Option<Instant>,
    /// Chunks examined by `newest_written`: (file id, bytes read from its end, the records).
    written: Vec<(String, u64, Arc<Vec<FlushedRecord>>)>,
}

impl State {
    /// One past the largest offset known to be in a file.
    fn known_end(&self) -> i64 {
        self.files
            .iter()
            .filter_map(|f| f.max)
            .max()
            .map_or(0, |m| m + 1)
    }
}

/// The flushed log files of one SMQ partition.
pub struct PartitionLogFiles {
    client: SmqClient,
    topic: Topic,
    index: i32,
    state: Mutex<State>,
    /// Set by a reader that did not find what it wanted: list again (after a broker crash SMQ
    /// stores offsets again, in new files, so offsets below the known end can be new).
    want_newer: std::sync::atomic::AtomicBool,
    /// Volume id → a volume server's HTTP address.
    volumes: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl std::fmt::Debug for PartitionLogFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLogFiles")
            .field("topic", &self.topic.name)
            .field("partition", &self.index)
            .finish()
    }
}

type Http = HttpClient<HttpConnector, Empty<Bytes>>;

fn http() -> &'static Http {
    static CLIENT: OnceLock<Http> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut c = HttpConnector::new();
        c.set_nodelay(true);
        HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(c)
    })
}

/// An error with its sources, which is where hyper says what went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Percent-encodes a path for a URL, keeping `/` and unreserved characters.
fn encode_path(path: &str) -> String {
    let mut s = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

impl PartitionLogFiles {
    pub fn new(client: SmqClient, topic: Topic, index: i32) -> Arc<Self> {
        Arc::new(Self {
            client,
            topic,
            index,
            state: Mutex::new(State::default()),
            want_newer: std::sync::atomic::AtomicBool::new(false),
            volumes: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Asks the next read to list the files again first (at most every 500 ms), for a reader
    /// that missed records the files may hold by now.
    pub fn want_newer(&self) {
        self.want_newer
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records with SMQ offsets in `[from, from + count)` found in the flushed log files, in file
    /// order (an offset can occur more than once after a broker crash), reading until about
    /// `max_bytes` of record data were found. Empty when nothing there is flushed yet.
    pub async fn read(
        &self,
        from: i64,
        count: i64,
        max_bytes: usize,
    ) -> SmqResult<Vec<FlushedRecord>> {
        let to = from.saturating_add(count.max(1));
        let mut st = self.state.lock().await;
        let result = self.read_locked(&mut st, from, to, max_bytes).await;
        if result.is_err() {
            self.forget(&mut st);
        }
        result
    }

    /// After a failed read: files may have been deleted, volumes moved or the filer gone, so
    /// everything learned is dropped and the next call starts over.
    fn forget(&self, st: &mut State) {
        *st = State::default();
        self.volumes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    async fn read_locked(
        &self,
        st: &mut State,
        from: i64,
        to: i64,
        max_bytes: usize,
    ) -> SmqResult<Vec<FlushedRecord>> {
        self.locate(st).await?;
        let stale = st.listed_at.is_none_or(|t| {
            t.elapsed() >= RELIST_INTERVAL
                && (st.known_end() < to
                    || self
                        .want_newer
                        .swap(false, std::sync::atomic::Ordering::Relaxed))
        });
        if stale {
            self.list(st).await?;
        }
        let (dir, grpc) = match (&st.dir, &st.filer) {
            (Some(d), Some(g)) => (d.clone(), g.clone()),
            _ => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for i in 0..st.files.len() {
            if bytes >= max_bytes {
                break;
            }
            let prev_max = i.checked_sub(1).and_then(|p| st.files[p].max);
            let f = &st.files[i];
            if f.size == 0 {
                continue;
            }
            let hint = |v: i64, exact: bool, slack: i64| if exact { v } else { v + slack };
            let above = !f.unordered
                && f.max
                    .is_some_and(|m| hint(m, f.max_exact, HINT_SLACK) < from);
            if above {
                continue;
            }
            // offset_min is the smallest offset of the first flush into the file that had one
            // above 0: a file whose first flush started at offset 0 has a later flush's. So it
            // is believed (give or take the slack) only when it continues the previous file.
            let believable = !f.min_exact
                && f.min
                    .is_some_and(|m| i > 0 && prev_max.is_some_and(|p| m <= p + 1 + HINT_SLACK));
            let maybe_below = !f.unordered
                && (f.min_exact || believable)
                && f.min
                    .is_some_and(|m| hint(m, f.min_exact, -HINT_SLACK) >= to);
            if maybe_below {
                continue;
            }
            if !f.min_exact && !f.unordered {
                // Look at the first record once.
                let first = self.first_offset(&grpc, &dir, f).await?;
                let f = &mut st.files[i];
                f.min = Some(first.unwrap_or(i64::MAX));
                f.min_exact = true;
                if f.min.is_some_and(|m| m >= to) {
                    continue;
                }
            }
            let got = self
                .read_records(&grpc, &dir, &mut st.files[i], from, to, max_bytes - bytes)
                .await?;
            bytes += got.iter().map(|r| r.data.len()).sum::<usize>();
            out.extend(got);
        }
        Ok(out)
    }

    /// Finds the partition's directory and the filer, once.
    async fn locate(&self, st: &mut State) -> SmqResult<()> {
        if st.dir.is_none() {
            // The layout is what matters here, not whether a leader is up.
            let layout = self.client.lookup(&self.topic).await?;
            let p = layout
                .partitions
                .get(self.index as usize)
                .ok_or_else(|| SmqError::PartitionNotFound {
                    topic: self.topic.name.clone(),
                    partition: self.index,
                })?
                .partition;
            st.dir = Some(format!(
                "/topics/{}/{}/{}/{:04}-{:04}",
                self.topic.namespace,
                self.topic.name,
                generation_dir(p.unix_time_ns),
                p.range_start,
                p.range_stop
            ));
        }
        if st.filer.is_none() {
            let nodes = self.client.filer_nodes().await?;
            let n = &nodes[0];
            st.filer = Some(filer_grpc_address(n));
        }
        Ok(())
    }

    /// The newest record `accept` takes among the partition's newest written chunks: chunks of
    /// up to 1 MiB are read whole (a chunk is one flush, so it starts and ends on a record), a
    /// larger one only in its last `tail` bytes, where a record is a 4-byte length that reaches
    /// exactly the chunk's end followed by a valid `LogEntry`. Walks back at most 4 chunks, and
    /// past no large one, so a caller whose records another writer followed still finds them.
    /// Lists the directory first; chunks already read are not read again. None when nothing
    /// accepted is found.
    ///
    /// This is evidence of what the broker has written: it flushes one buffer at a time, in
    /// order, and the filer lists a chunk only once its bytes are on a volume server.
    pub async fn newest_written(
        &self,
        tail: u64,
        accept: impl Fn(&FlushedRecord) -> bool,
    ) -> SmqResult<Option<FlushedRecord>> {
        let mut st = self.state.lock().await;
        let result = async {
            self.locate(&mut st).await?;
            self.list(&mut st).await?;
            let Some(grpc) = st.filer.clone() else {
                return Ok(None);
            };
            let chunks: Vec<(usize, Chunk)> = st
                .files
                .iter()
                .enumerate()
                .rev()
                .flat_map(|(i, f)| f.chunks.iter().rev().map(move |c| (i, c.clone())))
                .take(WRITTEN_CHUNKS_BACK)
                .collect();
            let mut best: Option<FlushedRecord> = None;
            for (i, c) in chunks {
                let whole = c.size <= SMALL_CHUNK;
                let len = if whole { c.size } else { tail.min(c.size) };
                let cached = st
                    .written
                    .iter()
                    .find(|(id, read, _)| *id == c.file_id && *read >= len)
                    .map(|(_, _, recs)| recs.clone());
                let recs = match cached {
                    Some(r) => r,
                    None => {
                        let f = &st.files[i];
                        let buf = self.range(&grpc, f, c.start + c.size - len, len).await?;
                        let recs = match whole.then(|| parse_records(&buf, |_| false)) {
                            Some(Ok(p)) if p.consumed == buf.len() => {
                                p.records.into_iter().map(|(_, _, r)| r).collect()
                            }
                            _ => candidates_ending(&buf),
                        };
                        let recs = Arc::new(recs);
                        if st.written.len() >= WRITTEN_CHUNKS_BACK {
                            st.written.remove(0);
                        }
                        st.written.push((c.file_id.clone(), len, recs.clone()));
                        recs
                    }
                };
                for r in recs.iter().filter(|r| accept(r)) {
                    if best.as_ref().is_none_or(|b| r.offset > b.offset) {
                        best = Some(r.clone());
                    }
                }
                if best.is_some() || !whole {
                    break;
                }
            }
            Ok(best)
        }
        .await;
        if result.is_err() {
            self.forget(&mut st);
        }
        result
    }

    /// Lists the partition's directory again from the newest known file on.
    async fn list(&self, st: &mut State) -> SmqResult<()> {
        let (Some(dir), Some(grpc)) = (&st.dir, &st.filer) else {
            return Ok(());
        };
        let mut client = SeaweedFilerClient::new(self.client.channel(grpc)?)
            .max_decoding_message_size(self.client.config().max_decoding_message_size);
        let timeout = self.client.config().request_timeout;
        let mut start = st.files.last().map(|f| f.name.clone()).unwrap_or_default();
        let mut inclusive = true;
        loop {
            let req = ListEntriesRequest {
                directory: dir.clone(),
                prefix: String::new(),
                start_from_file_name: start.clone(),
                inclusive_start_from: inclusive,
                limit: LIST_PAGE,
            };
            let entries = tokio::time::timeout(timeout, async {
                let mut stream = client.list_entries(req).await?.into_inner();
                let mut entries = Vec::new();
                while let Some(r) = stream.message().await? {
                    if let Some(e) = r.entry {
                        entries.push(e);
                    }
                }
                Ok::<_, tonic::Status>(entries)
            })
            .await
            .map_err(|_| SmqError::Timeout {
                what: format!("ListEntries {dir} on filer {grpc}"),
                after: timeout,
            })?
            .map_err(|s| SmqError::rpc(grpc, s))?;
            let n = entries.len();
            for e in &entries {
                start.clone_from(&e.name);
                let Some(f) = LogFile::from_entry(e) else {
                    continue;
                };
                match st.files.iter_mut().find(|k| k.name == f.name) {
                    // The newest file grows with later flushes: keep what was learned.
                    Some(k) => {
                        let grew = f.size > k.size;
                        if f.size >= k.size {
                            k.size = f.size;
                            k.chunks = f.chunks;
                        }
                        if !k.min_exact {
                            k.min = f.min.or(k.min);
                        }
                        if grew || !k.max_exact {
                            k.max = match (k.max, f.max) {
                                (Some(a), Some(b)) => Some(a.max(b)),
                                (a, b) => a.or(b),
                            };
                            k.max_exact = false;
                        }
                    }
                    None => st.files.push(f),
                }
            }
            inclusive = false;
            if n < LIST_PAGE as usize {
                break;
            }
        }
        st.files.sort_by(|a, b| a.name.cmp(&b.name));
        st.listed_at = Some(Instant::now());
        Ok(())
    }

    /// Reads the records of one file with offsets in `[from, to)`, up to about `budget` bytes of
    /// data, starting where an earlier read left off when that is known.
    async fn read_records(
        &self,
        grpc: &str,
        dir: &str,
        f: &mut LogFile,
        from: i64,
        to: i64,
        budget: usize,
    ) -> SmqResult<Vec<FlushedRecord>> {
        let path = format!("{dir}/{}", f.name);
        let mut pos = f.start_for(from);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut need = 0u64;
        let mut last_seen: Option<i64> = None;
        while pos < f.size {
            let want = (budget.saturating_sub(bytes) as u64 + READ_SLACK)
                .max(need)
                .min(MAX_READ.max(need));
            let len = want.min(f.size - pos);
            let buf = self.range(grpc, f, pos, len).await?;
            let ordered = !f.unordered;
            let mut full = false;
            let parsed = parse_records(&buf, |r| {
                if r.offset >= from && r.offset < to {
                    bytes += r.data.len();
                }
                full = bytes >= budget;
                // Offsets increase within a file, so nothing wanted follows a larger one.
                full || (ordered && r.offset >= to)
            })?;
            // Where a later read for the offsets after the wanted ones continues.
            let mut resume: Option<(i64, u64)> = None;
            for (_, end, r) in parsed.records {
                if let Some(prev) = last_seen
                    && r.offset <= prev
                {
                    f.unordered = true;
                }
                last_seen = Some(r.offset);
                if r.offset < to {
                    resume = Some((r.offset, pos + end as u64));
                }
                if r.offset >= from && r.offset < to {
                    out.push(r);
                }
            }
            let consumed = parsed.consumed as u64;
            pos += consumed;
            if let Some((last, at)) = resume {
                f.mark(last, at);
            }
            if pos >= f.size
                && !f.unordered
                && let Some(last) = last_seen
            {
                f.max = Some(last);
                f.max_exact = true;
            }
            if full || (!f.unordered && last_seen.is_some_and(|l| l >= to)) {
                break;
            }
            match parsed.next_len {
                Some(n) => {
                    let n = 4 + n as u64;
                    if pos + n > f.size {
                        return Err(SmqError::LogFile(format!(
                            "{path}: record at byte {pos} of {n} bytes runs past the file's end at {}",
                            f.size
                        )));
                    }
                    need = n;
                }
                None if consumed == 0 && pos < f.size => {
                    // Fewer than 4 bytes left before the end of the file.
                    return Err(SmqError::LogFile(format!(
                        "{path}: {} stray bytes at its end (byte {pos})",
                        f.size - pos
                    )));
                }
                None => need = 0,
            }
        }
        Ok(out)
    }

    /// The offset of a file's first record (None for an empty file).
    async fn first_offset(&self, grpc: &str, dir: &str, f: &LogFile) -> SmqResult<Option<i64>> {
        let path = format!("{dir}/{}", f.name);
        let mut len = f.size.min(READ_SLACK);
        while len >= 4 {
            let buf = self.range(grpc, f, 0, len).await?;
            let p = parse_records(&buf, |_| true)?;
            if let Some((_, _, r)) = p.records.first() {
                return Ok(Some(r.offset));
            }
            match p.next_len {
                Some(n) if (4 + n as u64) <= f.size && 4 + n as u64 > len => len = 4 + n as u64,
                _ => {
                    return Err(SmqError::LogFile(format!(
                        "{path}: no complete first record in its {} bytes",
                        f.size
                    )));
                }
            }
        }
        Ok(None)
    }

    /// Bytes `[pos, pos + len)` of a file, read from the volume servers holding its chunks.
    async fn range(&self, grpc: &str, f: &LogFile, pos: u64, len: u64) -> SmqResult<Bytes> {
        let end = pos + len;
        let mut parts: Vec<Bytes> = Vec::new();
        for c in &f.chunks {
            let (from, to) = (pos.max(c.start), end.min(c.start + c.size));
            if from >= to {
                continue;
            }
            let volume = self.volume_url(grpc, &c.volume).await?;
            let got = self
                .get_range(&volume, &c.file_id, c.size, from - c.start, to - from)
                .await;
            if got.is_err() {
                // The volume may have moved: look it up again next time.
                self.volumes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&c.volume);
            }
            parts.push(got?);
        }
        let total: usize = parts.iter().map(Bytes::len).sum();
        if total as u64 != len {
            return Err(SmqError::LogFile(format!(
                "{}: bytes {pos}+{len} are not all in its chunks ({total} found)",
                f.name
            )));
        }
        Ok(match parts.len() {
            1 => parts.swap_remove(0),
            _ => {
                let mut all = Vec::with_capacity(total);
                for p in parts {
                    all.extend_from_slice(&p);
                }
                Bytes::from(all)
            }
        })
    }

    /// The HTTP address of a server of `volume`, from the filer (cached).
    async fn volume_url(&self, grpc: &str, volume: &str) -> SmqResult<String> {
        if let Some(u) = self
            .volumes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(volume)
        {
            return Ok(u.clone());
        }
        let mut client = SeaweedFilerClient::new(self.client.channel(grpc)?);
        let timeout = self.client.config().request_timeout;
        let resp = tokio::time::timeout(
            timeout,
            client.lookup_volume(LookupVolumeRequest {
                volume_ids: vec![volume.to_string()],
            }),
        )
        .await
        .map_err(|_| SmqError::Timeout {
            what: format!("LookupVolume {volume} on filer {grpc}"),
            after: timeout,
        })?
        .map_err(|s| SmqError::rpc(grpc, s))?
        .into_inner();
        let url = resp
            .locations_map
            .get(volume)
            .and_then(|l| l.locations.first())
            .map(|l| l.url.clone())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| SmqError::LogFile(format!("no server holds volume {volume}")))?;
        self.volumes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(volume.to_string(), url.clone());
        Ok(url)
    }

    /// Bytes `[pos, pos + len)` of a needle of `size` bytes, by an HTTP range request to its
    /// volume server.
    async fn get_range(
        &self,
        server: &str,
        file_id: &str,
        size: u64,
        pos: u64,
        len: u64,
    ) -> SmqResult<Bytes> {
        let url = format!("http://{server}/{}", encode_path(file_id));
        let req = hyper::Request::get(&url)
            .header(
                hyper::header::RANGE,
                format!("bytes={pos}-{}", pos + len - 1),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| SmqError::LogFile(format!("GET {url}: {e}")))?;
        let timeout = self.client.config().request_timeout;
        let fut = async {
            let resp = http()
                .request(req)
                .await
                .map_err(|e| SmqError::LogFile(format!("GET {url}: {}", chain(&e))))?;
            let status = resp.status();
            if let Some(enc) = resp.headers().get(hyper::header::CONTENT_ENCODING)
                && enc.as_bytes() != b"identity"
            {
                return Err(SmqError::LogFile(format!(
                    "GET {url}: served with Content-Encoding {enc:?}"
                )));
            }
            // `bytes a-b/total`: the total must be the chunk's size, or these are other bytes.
            let total = resp
                .headers()
                .get(hyper::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit_once('/'))
                .and_then(|(_, t)| t.parse::<u64>().ok());
            if status.as_u16() == 206 && total != Some(size) {
                return Err(SmqError::LogFile(format!(
                    "GET {url}: the volume server has {total:?} bytes, the filer says {size}"
                )));
            }
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| SmqError::LogFile(format!("GET {url}: {}", chain(&e))))?
                .to_bytes();
            Ok::<_, SmqError>((status, body))
        };
        let (status, body) =
            tokio::time::timeout(timeout, fut)
                .await
                .map_err(|_| SmqError::Timeout {
                    what: format!("GET {url}"),
                    after: timeout,
                })??;
        let body = match status.as_u16() {
            206 => body,
            // The whole needle: take the part asked for.
            200 => body.slice((pos as usize).min(body.len())..),
            s => {
                return Err(SmqError::LogFile(format!(
                    "GET {url} bytes {pos}+{len}: HTTP {s}"
                )));
            }
        };
        if (body.len() as u64) < len {
            return Err(SmqError::LogFile(format!(
                "GET {url} bytes {pos}+{len}: only {} bytes",
                body.len()
            )));
        }
        Ok(body.slice(..len as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, data: &[u8]) -> Vec<u8> {
        let e = LogEntry {
            ts_ns: 1000 + offset,
            partition_key_hash: -5,
            data: data.to_vec(),
            key: offset.to_string().into_bytes(),
            offset,
        };
        let body = e.encode_to_vec();
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend(body);
        out
    }

    fn offsets(p: &Parsed) -> Vec<i64> {
        p.records.iter().map(|(_, _, r)| r.offset).collect()
    }

    #[test]
    fn the_record_ending_a_tail_is_found_from_any_cut() {
        let mut buf = record(41, &[7u8; 300]);
        buf.extend(record(42, b"last one"));
        for cut in 0..buf.len() - record(42, b"last one").len() {
            let got = candidates_ending(&buf[cut..]);
            assert_eq!(got.first().map(|r| r.offset), Some(42), "cut at {cut}");
            assert_eq!(got[0].data, b"last one");
        }
        // Cut inside the last record: nothing ends the buffer.
        let n = buf.len();
        assert!(candidates_ending(&buf[n - 5..]).is_empty());
        assert!(candidates_ending(&[]).is_empty());
    }

    #[test]
    fn a_value_that_looks_like_a_record_is_a_candidate_not_an_answer() {
        // A value whose own bytes end in a well-formed log record: both are candidates, the
        // caller's check (offset and bytes it published) tells them apart.
        let fake = record(99, b"forged");
        let mut real = record(5, b"x");
        real.extend(record(6, &fake));
        let got = candidates_ending(&real);
        let offsets: Vec<i64> = got.iter().map(|r| r.offset).collect();
        assert!(offsets.contains(&6), "{offsets:?}");
    }

    #[test]
    fn parses_records_and_their_fields() {
        let mut buf = record(0, b"a");
        buf.extend(record(1, b"bb"));
        let p = parse_records(&buf, |_| false).unwrap();
        assert_eq!(offsets(&p), vec![0, 1]);
        assert_eq!(p.consumed, buf.len());
        assert_eq!(p.next_len, None);
        let (at, end, r) = &p.records[1];
        assert_eq!(*at, record(0, b"a").len());
        assert_eq!(*end, buf.len());
        assert_eq!(r.data, b"bb");
        assert_eq!(r.key, b"1");
        assert_eq!(r.ts_ns, 1001);
    }

    #[test]
    fn a_truncated_file_yields_its_complete_records_and_the_missing_length() {
        let mut buf = record(7, b"first");
        let second = record(8, b"second record");
        buf.extend(&second[..second.len() - 3]);
        let p = parse_records(&buf, |_| false).unwrap();
        assert_eq!(offsets(&p), vec![7]);
        assert_eq!(p.consumed, record(7, b"first").len());
        assert_eq!(p.next_len, Some(second.len() - 4));
        // Only part of a length prefix.
        let p = parse_records(&second[..2], |_| false).unwrap();
        assert!(p.records.is_empty());
        assert_eq!((p.consumed, p.next_len), (0, None));
    }

    #[test]
    fn a_length_prefix_that_cannot_be_a_record_is_an_error() {
        let mut buf = record(1, b"x");
        buf.extend((u32::MAX).to_be_bytes());
        buf.extend([0u8; 16]);
        let e = parse_records(&buf, |_| false).unwrap_err();
        assert!(e.to_string().contains("is not a log record"), "{e}");
        assert!(parse_records(&[0, 0, 0, 0], |_| false).is_err());
    }

    #[test]
    fn bytes_that_are_not_a_log_entry_are_an_error() {
        let mut buf = 5u32.to_be_bytes().to_vec();
        buf.extend([0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(parse_records(&buf, |_| false).is_err());
    }

    #[test]
    fn repeated_offsets_are_all_returned_in_file_order() {
        // After a broker crash SMQ hands out offsets again: 1 and 2 appear twice.
        let mut buf = Vec::new();
        for (o, d) in [(0, "a"), (1, "b"), (2, "c"), (1, "B"), (2, "C"), (3, "D")] {
            buf.extend(record(o, d.as_bytes()));
        }
        let p = parse_records(&buf, |_| false).unwrap();
        assert_eq!(offsets(&p), vec![0, 1, 2, 1, 2, 3]);
        let data: Vec<&[u8]> = p
            .records
            .iter()
            .map(|(_, _, r)| r.data.as_slice())
            .collect();
        assert_eq!(data, vec![&b"a"[..], b"b", b"c", b"B", b"C", b"D"]);
    }

    #[test]
    fn parsing_stops_after_the_record_asked_for() {
        let mut buf = Vec::new();
        for o in 0..5 {
            buf.extend(record(o, b"v"));
        }
        let p = parse_records(&buf, |r| r.offset == 2).unwrap();
        assert_eq!(offsets(&p), vec![0, 1, 2]);
        let three: usize = (0..3).map(|o| record(o, b"v").len()).sum();
        assert_eq!(p.consumed, three);
    }

    #[test]
    fn generation_directories_are_utc_seconds() {
        // 2026-11-28T14:47:00Z, as SMQ named the directory of a topic created then.
        assert_eq!(
            generation_dir(1_795_877_220_514_612_071),
            "v2026-11-28-14-47-00"
        );
        assert_eq!(generation_dir(0), "v1970-01-01-00-00-00");
        assert_eq!(
            generation_dir(951_782_400 * 1_000_000_000),
            "v2000-02-29-00-00-00"
        );
    }

    #[test]
    fn log_file_names_are_recognised() {
        assert!(is_log_file_name("2026-11-28-14-47-00"));
        assert!(!is_log_file_name("checkpoint.offset"));
        assert!(!is_log_file_name("consumers"));
        assert!(!is_log_file_name("2026-11-28-14-47-00.parquet"));
    }

    #[test]
    fn marks_continue_after_the_last_record_below() {
        let mut f = LogFile {
            name: "2026-11-28-14-47-00".into(),
            size: 1000,
            chunks: Vec::new(),
            min: Some(0),
            min_exact: true,
            max: Some(99),
            max_exact: true,
            marks: Vec::new(),
            unordered: false,
        };
        assert_eq!(f.start_for(10), 0);
        f.mark(9, 100);
        f.mark(19, 200);
        assert_eq!(f.start_for(10), 100);
        assert_eq!(f.start_for(20), 200);
        assert_eq!(f.start_for(5), 0);
        f.unordered = true;
        assert_eq!(f.start_for(20), 0);
    }
}
