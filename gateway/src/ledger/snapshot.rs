//! A partition ledger as bytes, for checkpoints: everything the ledger holds, so a ledger decoded
//! and then given more entries is the ledger that got them without the round trip.
//!
//! Layout (version 1): `KGLS`, the version byte, then varints (zigzag for signed values, deltas
//! where values follow each other), then a CRC-32C of all before it:
//!
//! - limits: block entries, block offsets, journal length;
//! - log start; the previous entry's timestamp (tag 0 none, 1 known + value, 2 unknown);
//! - segments: count, then each: SMQ offset (delta from the previous segment's SMQ end), kind
//!   (0 exact + record count, 1 batches + list length + list), nonce (8 bytes, little-endian),
//!   blocks (count, then each: entries, for an exact segment its start (delta from the previous
//!   block's), max timestamp (delta from the previous block's), regressions, flags);
//! - journal: count, then each: start (delta from the previous, the first from the log start),
//!   max timestamp (delta), bound (0 or 1).
//!
//! Kafka offsets are dense from the log start and a batch segment's blocks start where their
//! entries say, so neither is stored. Decoding checks everything: it is read back from storage.

use super::index::{Block, FLAGS, Recent, recompute_prefix};
use super::segment::{self, Segment, get_varint, put_varint};
use super::{LedgerLimits, PartitionLedger, Previous};

const MAGIC: &[u8; 4] = b"KGLS";
const VERSION: u8 = 1;
/// Bytes a segment takes at least (delta, kind, one varint, nonce, block count, one block).
const MIN_SEGMENT: usize = 1 + 1 + 1 + 8 + 1 + 4;

impl PartitionLedger {
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.memory_bytes() / 2);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        put_varint(&mut out, u64::from(self.limits.block_entries));
        put_varint(&mut out, self.limits.block_offsets as u64);
        put_varint(&mut out, u64::from(self.limits.journal));
        put_i64(&mut out, self.start);
        match self.previous {
            Previous::Nothing => out.push(0),
            Previous::Ts(ts) => {
                out.push(1);
                put_i64(&mut out, ts);
            }
            Previous::Unknown => out.push(2),
        }
        put_varint(&mut out, self.segments.len() as u64);
        let mut smq_end = 0i64;
        let mut ts = 0i64;
        for s in &self.segments {
            put_i64(&mut out, s.smq_offset.wrapping_sub(smq_end));
            match &s.batches {
                None => {
                    out.push(0);
                    put_varint(&mut out, s.count as u64);
                }
                Some(list) => {
                    out.push(1);
                    put_varint(&mut out, list.len() as u64);
                    out.extend_from_slice(list);
                }
            }
            out.extend_from_slice(&s.nonce.to_le_bytes());
            let blocks = self.blocks_of(s);
            put_varint(&mut out, blocks.len() as u64);
            let mut k = s.kafka_offset;
            for b in blocks {
                put_varint(&mut out, u64::from(b.entries));
                if s.is_exact() {
                    put_varint(&mut out, (b.kafka_offset - k) as u64);
                    k = b.kafka_offset;
                }
                put_i64(&mut out, b.max_ts.wrapping_sub(ts));
                ts = b.max_ts;
                out.push(b.regressions);
                out.push(b.flags);
            }
            smq_end = s.smq_end();
        }
        put_varint(&mut out, self.journal.entries.len() as u64);
        let mut k = self.start;
        let mut ts = 0i64;
        for r in &self.journal.entries {
            put_varint(&mut out, (r.kafka_offset - k) as u64);
            put_i64(&mut out, r.max_ts.wrapping_sub(ts));
            out.push(u8::from(r.bound));
            (k, ts) = (r.kafka_offset, r.max_ts);
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes what [`PartitionLedger::encode_snapshot`] wrote; any other input is an error.
    pub fn decode_snapshot(data: &[u8]) -> Result<PartitionLedger, String> {
        let body_len = data
            .len()
            .checked_sub(4)
            .filter(|n| *n > MAGIC.len())
            .ok_or("ledger snapshot too short")?;
        let (body, crc) = data.split_at(body_len);
        let crc = u32::from_le_bytes(crc.try_into().map_err(|_| "ledger snapshot checksum")?);
        if crc32c::crc32c(body) != crc {
            return Err("ledger snapshot checksum mismatch".into());
        }
        if !body.starts_with(MAGIC) {
            return Err("not a ledger snapshot".into());
        }
        let mut r = Reader {
            buf: body,
            pos: MAGIC.len(),
        };
        let version = r.byte()?;
        if version != VERSION {
            return Err(format!(
                "ledger snapshot version {version} is not supported"
            ));
        }
        let limits = LedgerLimits {
            block_entries: r.count(1, 255)? as u8,
            block_offsets: r.count(1, i64::MAX as u64)? as i64,
            journal: r.count(0, u64::from(u16::MAX))? as u16,
        };
        let start = r.i64()?;
        if start < 0 {
            return Err(format!("log start {start} is negative"));
        }
        let previous = match r.byte()? {
            0 => Previous::Nothing,
            1 => Previous::Ts(r.i64()?),
            2 => Previous::Unknown,
            t => return Err(format!("previous timestamp tag {t}")),
        };
        let mut l = PartitionLedger::with_limits(limits);
        l.start = start;
        l.previous = previous;
        let n = r.count(0, u64::MAX)?;
        l.segments.reserve(
            usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(r.left() / MIN_SEGMENT),
        );
        let mut ts = 0i64;
        for _ in 0..n {
            let s = r.segment(&l)?;
            let exact_first = s.is_exact() || s.walk(0, 0, 0).next().is_some_and(|c| c.is_exact());
            if l.segments
                .last()
                .is_some_and(|p| p.takes(s.smq_offset, s.nonce, exact_first))
            {
                return Err(format!(
                    "segment at {} continues the one before it",
                    s.kafka_offset
                ));
            }
            r.blocks(&s, &mut l, &mut ts)?;
            l.segments.push(s);
        }
        recompute_prefix(&mut l.blocks);
        l.smq_regressions = l.count_smq_regressions();
        let n = r.count(0, u64::from(limits.journal))?;
        let (next, mut k, mut ts) = (l.next_offset(), start, 0i64);
        for i in 0..n {
            let delta = r.count(u64::from(i > 0), (next - k) as u64)? as i64;
            k += delta;
            ts = ts.wrapping_add(r.i64()?);
            let bound = match r.byte()? {
                0 => false,
                1 => true,
                b => return Err(format!("journal bound {b}")),
            };
            if k >= next {
                return Err(format!("journal entry at {k} past the ledger end {next}"));
            }
            l.journal.entries.push_back(Recent {
                kafka_offset: k,
                max_ts: ts,
                bound,
            });
        }
        if r.left() != 0 {
            return Err(format!("{} bytes after the ledger snapshot", r.left()));
        }
        Ok(l)
    }
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.buf.get(self.pos).ok_or("ledger snapshot ends early")?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        get_varint(self.buf, &mut self.pos)
            .ok_or_else(|| format!("bad varint at byte {} of the ledger snapshot", self.pos))
    }

    /// A varint in `[lo, hi]`.
    fn count(&mut self, lo: u64, hi: u64) -> Result<u64, String> {
        let v = self.varint()?;
        if v < lo || v > hi {
            return Err(format!("{v} is outside {lo}..={hi} in the ledger snapshot"));
        }
        Ok(v)
    }

    fn i64(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or("ledger snapshot ends early")?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    /// A segment starting where `l` ends, without its blocks.
    fn segment(&mut self, l: &PartitionLedger) -> Result<Segment, String> {
        let k = l.next_offset();
        let smq_end = l.segments.last().map_or(0, Segment::smq_end);
        let smq = smq_end.wrapping_add(self.i64()?);
        let (count, smq_count, batches) = match self.byte()? {
            0 => {
                let c = self.count(1, i64::MAX as u64)? as i64;
                (c, c, None)
            }
            1 => {
                let n = self.count(1, segment::MAX_BATCH_BYTES as u64)? as usize;
                let list = self.bytes(n)?.to_vec();
                let (mut c, mut m, mut pos) = (0i64, 0i64, 0usize);
                while pos < list.len() {
                    let (n, s) = segment::get(&list, &mut pos)
                        .ok_or_else(|| format!("bad entry in the segment at {k}"))?;
                    c = c.checked_add(n.into()).ok_or("segment too long")?;
                    m = m.checked_add(s.into()).ok_or("segment too long")?;
                }
                (c, m, Some(list))
            }
            t => return Err(format!("segment kind {t}")),
        };
        if k.checked_add(count).is_none() || smq.checked_add(smq_count).is_none() {
            return Err(format!("segment at {k} ends past the largest offset"));
        }
        let nonce = u64::from_le_bytes(
            self.bytes(8)?
                .try_into()
                .map_err(|_| "ledger snapshot nonce")?,
        );
        Ok(Segment {
            kafka_offset: k,
            smq_offset: smq,
            count,
            smq_count,
            nonce,
            batches,
        })
    }

    /// The blocks of segment `s`, into `l`; `ts` is the previous block's maximum.
    fn blocks(&mut self, s: &Segment, l: &mut PartitionLedger, ts: &mut i64) -> Result<(), String> {
        let n = self.count(1, u64::MAX)?;
        let max_entries = u64::from(l.limits.block_entries);
        let mut walk = s.walk(0, s.kafka_offset, s.smq_offset).peekable();
        let mut k = s.kafka_offset;
        for i in 0..n {
            let entries = self.count(1, max_entries)? as u8;
            let (kafka_offset, smq_offset, pos) = match walk.peek() {
                _ if s.is_exact() => {
                    // The first block starts the segment; the others start inside it.
                    let (lo, hi) = if i == 0 { (0, 0) } else { (1, s.end() - k - 1) };
                    k += self.count(lo, hi as u64)? as i64;
                    (k, s.smq_offset + (k - s.kafka_offset), 0)
                }
                Some(c) => (c.kafka_offset, c.smq_offset, c.pos as u32),
                None => {
                    return Err(format!(
                        "more blocks than entries in the segment at {}",
                        s.kafka_offset
                    ));
                }
            };
            if !s.is_exact()
                && walk.by_ref().take(usize::from(entries)).count() != usize::from(entries)
            {
                return Err(format!(
                    "block at {kafka_offset} has fewer entries than it claims"
                ));
            }
            *ts = ts.wrapping_add(self.i64()?);
            let regressions = self.byte()?;
            let flags = self.byte()?;
            if regressions >= entries || flags & !FLAGS != 0 {
                return Err(format!("block at {kafka_offset}: bad counts or flags"));
            }
            l.entries += u64::from(entries);
            l.blocks.push(Block {
                kafka_offset,
                smq_offset,
                max_ts: *ts,
                prefix_max: *ts,
                pos,
                entries,
                regressions,
                flags,
            });
        }
        if walk.next().is_some() {
            return Err(format!(
                "entries after the last block of the segment at {}",
                s.kafka_offset
            ));
        }
        // An exact block cannot hold more entries than offsets.
        let blocks = l.blocks_of(s);
        for (i, b) in blocks.iter().enumerate() {
            let end = blocks.get(i + 1).map_or(s.end(), |n| n.kafka_offset);
            if i64::from(b.entries) > end - b.kafka_offset {
                return Err(format!(
                    "block at {} has more entries than offsets",
                    b.kafka_offset
                ));
            }
        }
        Ok(())
    }
}
