//! The gateway's write-ahead log: acknowledged records SMQ has not yet written, on local disk.
//!
//! SMQ acknowledges a record once it is in the broker's memory (see `held`). The gateway keeps
//! every such record until it has proof that SMQ wrote it. With `--wal-dir` it keeps them in
//! files instead of its heap: memory then does not grow with SMQ's flush delay, and a gateway
//! that dies while it still holds records (the broker lost too, or down) finds them at its next
//! start and publishes them again ([`PartitionWal::open`] returns them).
//!
//! Layout: `<dir>/<namespace>/<topic>/<partition>/<number>.wal`, numbers increasing. A file is
//! a sequence of frames: the magic `KGWL`, the payload's length (u32) and CRC-32C (u32), then
//! the payload, all little-endian. Payloads:
//! - append (kind 1): generation i64, first Kafka offset i64, unit count u32, per unit (Kafka
//!   records i64, max timestamp i64, value length u32), then the values one after another;
//! - abort (kind 2): generation i64, Kafka offset i64: the records from that offset on were
//!   never acknowledged (their append failed after it was logged).
//!
//! A later append starting at offset k likewise replaces what earlier frames held from k on
//! (offsets handed out again after a failed append). A torn frame at the end of a file (a crash
//! while writing) ends that file. Writes are not fsynced: the log survives the gateway process
//! dying, not the machine losing power (as Kafka without `flush.messages`).
//!
//! A file is deleted once it is no longer written to and none of its records is still held.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{GatewayError, GatewayResult};

const MAGIC: &[u8; 4] = b"KGWL";
const HEADER: usize = 12;
const KIND_APPEND: u8 = 1;
const KIND_ABORT: u8 = 2;
/// A file takes appends until it reaches this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// A frame claiming more than this is garbage (a torn or foreign file).
const MAX_FRAME: usize = 1 << 30;

fn wal_error(what: &str, path: &Path, e: io::Error) -> GatewayError {
    GatewayError::Wal(format!("{what} {}: {e}", path.display()))
}

/// The write-ahead log's directory, locked against a second gateway process using it.
#[derive(Debug)]
pub struct WalDir {
    root: PathBuf,
    _lock: File,
}

impl WalDir {
    pub fn open(root: &Path) -> GatewayResult<Self> {
        std::fs::create_dir_all(root).map_err(|e| wal_error("creating", root, e))?;
        let path = root.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| wal_error("opening", &path, e))?;
        lock.try_lock().map_err(|e| {
            GatewayError::Wal(format!(
                "{} is in use by another process ({e}); each gateway needs a --wal-dir of its own",
                root.display()
            ))
        })?;
        Ok(Self {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    /// Where the renew tokens of this gateway's partition locks are kept (a dot name: never an
    /// SMQ namespace's directory).
    pub fn lock_tokens(&self) -> GatewayResult<super::lock_tokens::LockTokens> {
        super::lock_tokens::LockTokens::open(&self.root.join(".lock-tokens"))
    }

    fn partition_dir(&self, namespace: &str, topic: &str, index: i32) -> PathBuf {
        self.root
            .join(namespace)
            .join(topic)
            .join(index.to_string())
    }

    /// Opens one partition's log; see [`PartitionWal::open`].
    pub fn partition(
        &self,
        namespace: &str,
        topic: &str,
        index: i32,
        generation: i64,
    ) -> GatewayResult<(PartitionWal, Vec<RecoveredAppend>)> {
        PartitionWal::open(self.partition_dir(namespace, topic, index), generation)
    }

    /// Topics of `namespace` with log files left by an earlier process: they may hold records
    /// to publish again, so the gateway opens them at startup.
    pub fn topics_with_files(&self, namespace: &str) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(topics) = std::fs::read_dir(self.root.join(namespace)) else {
            return out;
        };
        for t in topics.flatten() {
            let has_files = std::fs::read_dir(t.path())
                .into_iter()
                .flatten()
                .flatten()
                .any(|p| !segment_numbers(&p.path()).is_empty());
            if has_files && let Some(name) = t.file_name().to_str() {
                out.push(name.to_string());
            }
        }
        out.sort();
        out
    }

    /// Removes a topic's logs (the topic is gone from SMQ).
    pub fn remove_topic(&self, namespace: &str, topic: &str) {
        let dir = self.root.join(namespace).join(topic);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "removing a deleted topic's write-ahead log failed");
        }
    }
}

/// The numbers of the `<number>.wal` files in `dir`, ascending.
fn segment_numbers(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.strip_suffix(".wal")?.parse().ok()
        })
        .collect();
    v.sort_unstable();
    v
}

/// One log file.
#[derive(Debug)]
pub struct Segment {
    path: PathBuf,
    file: File,
    /// Bytes written (the next frame's position).
    len: AtomicU64,
    /// Held records stored here.
    live: AtomicUsize,
    /// No longer written to: deleted as soon as nothing stored here is held.
    sealed: AtomicBool,
    removed: AtomicBool,
}

impl Segment {
    fn new(path: PathBuf, file: File, len: u64, sealed: bool) -> Arc<Self> {
        Arc::new(Self {
            path,
            file,
            len: AtomicU64::new(len),
            live: AtomicUsize::new(0),
            sealed: AtomicBool::new(sealed),
            removed: AtomicBool::new(false),
        })
    }

    fn hold(&self) {
        self.live.fetch_add(1, Ordering::SeqCst);
    }

    fn release(&self) {
        if self.live.fetch_sub(1, Ordering::SeqCst) == 1 && self.sealed.load(Ordering::SeqCst) {
            self.remove();
        }
    }

    fn seal(&self) {
        self.sealed.store(true, Ordering::SeqCst);
        if self.live.load(Ordering::SeqCst) == 0 {
            self.remove();
        }
    }

    fn remove(&self) {
        if !self.removed.swap(true, Ordering::SeqCst)
            && let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(file = %self.path.display(), error = %e, "removing a write-ahead log file failed");
        }
    }

    fn read(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, pos)?;
        Ok(buf)
    }
}

/// The bytes of one SMQ record held until SMQ has written it: in memory, or in the log.
#[derive(Debug, Clone)]
pub enum HeldValue {
    Mem(Vec<u8>),
    Disk {
        seg: Arc<Segment>,
        pos: u64,
        len: u32,
    },
}

impl HeldValue {
    pub fn len(&self) -> usize {
        match self {
            HeldValue::Mem(v) => v.len(),
            HeldValue::Disk { len, .. } => *len as usize,
        }
    }

    /// The bytes, read back from the log if they are there.
    pub fn bytes(&self) -> GatewayResult<Vec<u8>> {
        match self {
            HeldValue::Mem(v) => Ok(v.clone()),
            HeldValue::Disk { seg, pos, len } => seg
                .read(*pos, *len as usize)
                .map_err(|e| wal_error("reading", &seg.path, e)),
        }
    }

    /// Counts this record as held in its file (which is kept while any is).
    pub fn hold(&self) {
        if let HeldValue::Disk { seg, .. } = self {
            seg.hold();
        }
    }

    /// The record is no longer held (SMQ wrote it, or it was never acknowledged).
    pub fn release(&self) {
        if let HeldValue::Disk { seg, .. } = self {
            seg.release();
        }
    }
}

/// An append found in the log at startup: records acknowledged and perhaps never written by SMQ.
#[derive(Debug)]
pub struct RecoveredAppend {
    pub kafka_offset: i64,
    /// (Kafka records, max timestamp) per SMQ record.
    pub units: Vec<(i64, i64)>,
    pub values: Vec<HeldValue>,
}

impl RecoveredAppend {
    fn end(&self) -> i64 {
        self.kafka_offset + self.units.iter().map(|u| u.0).sum::<i64>()
    }

    /// Keeps only the SMQ records whose first offset is below `offset`.
    fn cut(&mut self, offset: i64) {
        let mut k = self.kafka_offset;
        let keep = self
            .units
            .iter()
            .take_while(|u| {
                let below = k < offset;
                k += u.0;
                below
            })
            .count();
        self.units.truncate(keep);
        self.values.truncate(keep);
    }
}

/// One partition's log.
#[derive(Debug)]
pub struct PartitionWal {
    dir: PathBuf,
    state: Mutex<WalState>,
}

#[derive(Debug)]
struct WalState {
    current: Option<Arc<Segment>>,
    next_number: u64,
    /// The files read at open, until [`PartitionWal::sweep`].
    recovered: Vec<Arc<Segment>>,
}

impl PartitionWal {
    /// Opens the log in `dir` and reads what an earlier process left there: the appends of
    /// partition generation `generation` (others are of a deleted topic), with later appends and
    /// aborts applied. The files read are sealed; call [`PartitionWal::sweep`] once the caller
    /// holds what it keeps, to delete the files nothing is held from.
    pub fn open(dir: PathBuf, generation: i64) -> GatewayResult<(Self, Vec<RecoveredAppend>)> {
        std::fs::create_dir_all(&dir).map_err(|e| wal_error("creating", &dir, e))?;
        let numbers = segment_numbers(&dir);
        let mut appends: Vec<RecoveredAppend> = Vec::new();
        let mut recovered = Vec::new();
        for n in &numbers {
            let path = dir.join(format!("{n:020}.wal"));
            let file = File::open(&path).map_err(|e| wal_error("opening", &path, e))?;
            let size = file
                .metadata()
                .map_err(|e| wal_error("reading", &path, e))?
                .len();
            let seg = Segment::new(path, file, size, true);
            read_segment(&seg, generation, &mut appends)?;
            recovered.push(seg);
        }
        appends.retain(|a| !a.units.is_empty());
        let wal = Self {
            dir,
            state: Mutex::new(WalState {
                current: None,
                next_number: numbers.last().map_or(1, |n| n + 1),
                recovered,
            }),
        };
        Ok((wal, appends))
    }

    /// Deletes the files read at open from which nothing is held (call once the caller holds
    /// what it keeps of the recovered appends).
    pub fn sweep(&self) {
        for seg in std::mem::take(&mut self.lock().recovered) {
            seg.seal();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WalState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs an append: `values[i]` is the SMQ record holding `units[i]`. Returns where each
    /// value is, to read it back.
    pub fn append(
        &self,
        generation: i64,
        kafka_offset: i64,
        units: &[(i64, i64)],
        values: &[Vec<u8>],
    ) -> GatewayResult<Vec<HeldValue>> {
        let mut payload =
            new_frame(21 + units.len() * 20 + values.iter().map(Vec::len).sum::<usize>());
        payload.push(KIND_APPEND);
        payload.extend(generation.to_le_bytes());
        payload.extend(kafka_offset.to_le_bytes());
        payload.extend((units.len() as u32).to_le_bytes());
        for (&(n, ts), v) in units.iter().zip(values) {
            payload.extend(n.to_le_bytes());
            payload.extend(ts.to_le_bytes());
            payload.extend((v.len() as u32).to_le_bytes());
        }
        let values_at = payload.len();
        for v in values {
            payload.extend_from_slice(v);
        }
        let (seg, pos) = self.write_frame(payload)?;
        let mut at = pos + values_at as u64;
        Ok(values
            .iter()
            .map(|v| {
                let h = HeldValue::Disk {
                    seg: seg.clone(),
                    pos: at,
                    len: v.len() as u32,
                };
                at += v.len() as u64;
                h
            })
            .collect())
    }

    /// Logs that the records from `kafka_offset` on were never acknowledged.
    pub fn abort(&self, generation: i64, kafka_offset: i64) -> GatewayResult<()> {
        let mut payload = new_frame(17);
        payload.push(KIND_ABORT);
        payload.extend(generation.to_le_bytes());
        payload.extend(kafka_offset.to_le_bytes());
        self.write_frame(payload).map(|_| ())
    }

    /// Stops writing the current file, so it is deleted once nothing in it is held (call when
    /// the partition holds nothing: the file then goes at once).
    pub fn seal(&self) {
        if let Some(seg) = self.lock().current.take() {
            seg.seal();
        }
    }

    /// Writes a frame made by [`new_frame`] (its header is filled in here).
    fn write_frame(&self, mut frame: Vec<u8>) -> GatewayResult<(Arc<Segment>, u64)> {
        let payload = &frame[HEADER..];
        let len = (payload.len() as u32).to_le_bytes();
        let crc = crc32c::crc32c(payload).to_le_bytes();
        frame[..4].copy_from_slice(MAGIC);
        frame[4..8].copy_from_slice(&len);
        frame[8..HEADER].copy_from_slice(&crc);
        let mut st = self.lock();
        if st
            .current
            .as_ref()
            .is_some_and(|s| s.len.load(Ordering::SeqCst) >= SEGMENT_BYTES)
            && let Some(full) = st.current.take()
        {
            full.seal();
        }
        let seg = match &st.current {
            Some(s) => s.clone(),
            None => {
                let path = self.dir.join(format!("{:020}.wal", st.next_number));
                let file = OpenOptions::new()
                    .create_new(true)
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| wal_error("creating", &path, e))?;
                st.next_number += 1;
                let s = Segment::new(path, file, 0, false);
                st.current = Some(s.clone());
                s
            }
        };
        let pos = seg.len.load(Ordering::SeqCst);
        if let Err(e) = seg.file.write_all_at(&frame, pos) {
            // A partly written frame would end the file on recovery and hide later frames:
            // write no more to this file.
            if let Some(s) = st.current.take() {
                s.seal();
            }
            return Err(wal_error("writing", &seg.path, e));
        }
        seg.len.store(pos + frame.len() as u64, Ordering::SeqCst);
        Ok((seg, pos))
    }
}

/// A frame's buffer: room for the header, then the caller's payload, so that appends of a
/// megabyte of records are not copied a second time to put a header in front.
fn new_frame(payload_capacity: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER + payload_capacity);
    frame.resize(HEADER, 0);
    frame
}

/// Reads the frames of one file into `appends`, applying supersedes and aborts.
fn read_segment(
    seg: &Arc<Segment>,
    generation: i64,
    appends: &mut Vec<RecoveredAppend>,
) -> GatewayResult<()> {
    let size = seg.len.load(Ordering::SeqCst);
    let mut pos = 0u64;
    let torn = |pos: u64, why: &str| {
        tracing::warn!(file = %seg.path.display(), pos, why, "write-ahead log ends in a torn frame; reading stops there");
    };
    while pos < size {
        if size - pos < HEADER as u64 {
            torn(pos, "short header");
            break;
        }
        let header = seg
            .read(pos, HEADER)
            .map_err(|e| wal_error("reading", &seg.path, e))?;
        let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if &header[..4] != MAGIC || len > MAX_FRAME || (size - pos - HEADER as u64) < len as u64 {
            torn(pos, "bad magic or length");
            break;
        }
        let payload = seg
            .read(pos + HEADER as u64, len)
            .map_err(|e| wal_error("reading", &seg.path, e))?;
        if crc32c::crc32c(&payload) != crc {
            torn(pos, "checksum mismatch");
            break;
        }
        match parse_frame(&payload, seg, pos + HEADER as u64) {
            Some(Frame::Append(g, a)) if g == generation => {
                supersede(appends, a.kafka_offset);
                appends.push(a);
            }
            Some(Frame::Abort(g, offset)) if g == generation => supersede(appends, offset),
            Some(_) => {}
            None => {
                torn(pos, "undecodable payload");
                break;
            }
        }
        pos += (HEADER + len) as u64;
    }
    Ok(())
}

/// Drops what `appends` holds from Kafka offset `from` on.
fn supersede(appends: &mut Vec<RecoveredAppend>, from: i64) {
    appends.retain(|a| a.kafka_offset < from);
    if let Some(last) = appends.last_mut()
        && last.end() > from
    {
        last.cut(from);
    }
}

enum Frame {
    Append(i64, RecoveredAppend),
    Abort(i64, i64),
}

fn parse_frame(p: &[u8], seg: &Arc<Segment>, payload_pos: u64) -> Option<Frame> {
    let i64_at = |at: usize| Some(i64::from_le_bytes(p.get(at..at + 8)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(p.get(at..at + 4)?.try_into().ok()?));
    match *p.first()? {
        KIND_ABORT => Some(Frame::Abort(i64_at(1)?, i64_at(9)?)),
        KIND_APPEND => {
            let generation = i64_at(1)?;
            let kafka_offset = i64_at(9)?;
            let n = u32_at(17)? as usize;
            let mut at = 21;
            let mut units = Vec::with_capacity(n.min(p.len() / 20));
            let mut lens = Vec::with_capacity(n.min(p.len() / 20));
            for _ in 0..n {
                let records = i64_at(at)?;
                if records <= 0 {
                    return None;
                }
                units.push((records, i64_at(at + 8)?));
                lens.push(u32_at(at + 16)?);
                at += 20;
            }
            let mut values = Vec::with_capacity(n);
            for len in lens {
                let end = at.checked_add(len as usize)?;
                if end > p.len() {
                    return None;
                }
                values.push(HeldValue::Disk {
                    seg: seg.clone(),
                    pos: payload_pos + at as u64,
                    len,
                });
                at = end;
            }
            (at == p.len()).then_some(Frame::Append(
                generation,
                RecoveredAppend {
                    kafka_offset,
                    units,
                    values,
                },
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "kgw-wal-{name}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn records(a: &RecoveredAppend) -> Vec<(i64, Vec<u8>)> {
        let mut k = a.kafka_offset;
        a.units
            .iter()
            .zip(&a.values)
            .map(|(u, v)| {
                let first = k;
                k += u.0;
                (first, v.bytes().unwrap())
            })
            .collect()
    }

    #[test]
    fn appends_come_back_after_a_restart_with_supersedes_and_aborts_applied() {
        let d = dir("replay");
        {
            let (wal, got) = PartitionWal::open(d.clone(), 7).unwrap();
            assert!(got.is_empty());
            let v = wal
                .append(7, 0, &[(1, 10), (1, 11)], &[b"a".to_vec(), b"bb".to_vec()])
                .unwrap();
            assert_eq!(v[1].bytes().unwrap(), b"bb");
            // Offsets 2..4 logged, then their append failed; 2.. handed out again.
            wal.append(7, 2, &[(2, 12)], &[b"lost".to_vec()]).unwrap();
            wal.abort(7, 2).unwrap();
            wal.append(7, 2, &[(3, 13)], &[b"batch".to_vec()]).unwrap();
            wal.append(7, 5, &[(1, 14)], &[b"x".to_vec()]).unwrap();
            // Offset 5 again (an append after a roll-back), and another topic generation.
            wal.append(7, 5, &[(1, 15)], &[b"y".to_vec()]).unwrap();
            wal.append(8, 0, &[(1, 15)], &[b"old".to_vec()]).unwrap();
        }
        let (_wal, got) = PartitionWal::open(d.clone(), 7).unwrap();
        let all: Vec<_> = got.iter().flat_map(records).collect();
        assert_eq!(
            all,
            [
                (0, b"a".to_vec()),
                (1, b"bb".to_vec()),
                (2, b"batch".to_vec()),
                (5, b"y".to_vec())
            ]
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_torn_frame_ends_the_file_and_keeps_what_came_before() {
        let d = dir("torn");
        let path = {
            let (wal, _) = PartitionWal::open(d.clone(), 1).unwrap();
            wal.append(1, 0, &[(1, 0)], &[vec![1u8; 100]]).unwrap();
            wal.append(1, 1, &[(1, 0)], &[vec![2u8; 100]]).unwrap();
            d.join(format!("{:020}.wal", 1))
        };
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 30).unwrap();
        let (_wal, got) = PartitionWal::open(d.clone(), 1).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(records(&got[0]), [(0, vec![1u8; 100])]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_goes_once_it_is_sealed_and_nothing_in_it_is_held() {
        let d = dir("delete");
        let (wal, _) = PartitionWal::open(d.clone(), 1).unwrap();
        let v = wal.append(1, 0, &[(1, 0)], &[vec![0u8; 10]]).unwrap();
        v[0].hold();
        let path = d.join(format!("{:020}.wal", 1));
        wal.seal();
        assert!(path.exists(), "still held");
        v[0].release();
        assert!(!path.exists());
        // The next append starts a new file.
        wal.append(1, 1, &[(1, 0)], &[vec![0u8; 10]]).unwrap();
        assert!(d.join(format!("{:020}.wal", 2)).exists());
        wal.seal();
        assert!(!d.join(format!("{:020}.wal", 2)).exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_second_process_cannot_use_the_same_directory() {
        let d = dir("lock");
        let first = WalDir::open(&d).unwrap();
        let err = WalDir::open(&d).unwrap_err().to_string();
        assert!(err.contains("in use"), "{err}");
        drop(first);
        WalDir::open(&d).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }
}
