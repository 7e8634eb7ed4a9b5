//! Segments: stretches of entries that continue each other (each starts at the Kafka offset and
//! the SMQ offset where the previous one ended, under the same publish nonce). A gateway that
//! keeps publishing on one stream writes one segment however many produce requests it serves,
//! so the ledger's size follows SMQ's discontinuities (burned or reused offsets, restarts,
//! roll-backs), not the traffic.
//!
//! A segment whose entries all hold one Kafka record per SMQ record needs nothing per entry:
//! every offset is placed by arithmetic. Otherwise it keeps each entry's (records, SMQ records)
//! in a byte list, two or three bytes an entry, because a read must start at an entry's first
//! SMQ record (its batches carry their own offsets) and a superseding entry may only cut the
//! ledger where an entry of batches starts.

/// Bytes an entry's coding takes at most (two varints of 35 and 32 bits).
pub(super) const MAX_CODED: usize = 10;

/// A batch segment's byte list is addressed by `u32` positions (in the index blocks); a segment
/// whose list would outgrow them ends there and the next entry starts a new one.
pub(super) const MAX_BATCH_BYTES: usize = u32::MAX as usize - MAX_CODED;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Segment {
    pub(super) kafka_offset: i64,
    pub(super) smq_offset: i64,
    pub(super) count: i64,
    pub(super) smq_count: i64,
    pub(super) nonce: u64,
    /// None: one Kafka record per SMQ record throughout. Some: the entries, coded by [`put`].
    pub(super) batches: Option<Vec<u8>>,
}

impl Segment {
    pub(super) fn end(&self) -> i64 {
        self.kafka_offset + self.count
    }

    pub(super) fn smq_end(&self) -> i64 {
        self.smq_offset + self.smq_count
    }

    pub(super) fn is_exact(&self) -> bool {
        self.batches.is_none()
    }

    /// Whether an entry at (`smq_offset`, `nonce`), exact or not, would be added to this segment
    /// rather than start one. An entry of batches after exact ones starts a segment of its own,
    /// so that exact segments never need converting and segmentation depends only on the
    /// entries, not on the order of operations that produced them.
    pub(super) fn takes(&self, smq_offset: i64, nonce: u64, exact: bool) -> bool {
        smq_offset == self.smq_end()
            && nonce == self.nonce
            && match &self.batches {
                None => exact,
                Some(b) => b.len() <= MAX_BATCH_BYTES,
            }
    }

    /// Whether this segment is `other` or `other` cut short at an entry boundary. Codings are
    /// canonical and self-delimiting, so a list that is a byte prefix ends on an entry boundary.
    pub(super) fn is_prefix_of(&self, other: &Segment) -> bool {
        self.kafka_offset == other.kafka_offset
            && self.smq_offset == other.smq_offset
            && self.nonce == other.nonce
            && self.count <= other.count
            && match (&self.batches, &other.batches) {
                (None, None) => true,
                (Some(a), Some(b)) => b.starts_with(a),
                _ => false,
            }
    }

    /// The segment's entries from byte `pos`, where the entry at Kafka offset `kafka_offset` and
    /// SMQ offset `smq_offset` starts (empty for an exact segment).
    pub(super) fn walk(&self, pos: usize, kafka_offset: i64, smq_offset: i64) -> Walk<'_> {
        Walk {
            bytes: self.batches.as_deref().unwrap_or_default(),
            pos,
            kafka_offset,
            smq_offset,
        }
    }
}

/// One entry of a batch segment, as decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Coded {
    pub(super) kafka_offset: i64,
    pub(super) count: i64,
    pub(super) smq_offset: i64,
    pub(super) smq_count: i64,
    /// Where its coding starts in the segment's byte list.
    pub(super) pos: usize,
}

impl Coded {
    pub(super) fn end(&self) -> i64 {
        self.kafka_offset + self.count
    }

    pub(super) fn smq_end(&self) -> i64 {
        self.smq_offset + self.smq_count
    }

    pub(super) fn is_exact(&self) -> bool {
        self.count == self.smq_count
    }
}

/// The entries of a batch segment from a known position on. Ends early (rather than panicking)
/// on a byte list that does not decode, which only a bug could produce: lists read from a
/// snapshot are checked whole when decoded.
pub(super) struct Walk<'a> {
    bytes: &'a [u8],
    pos: usize,
    kafka_offset: i64,
    smq_offset: i64,
}

impl Iterator for Walk<'_> {
    type Item = Coded;

    fn next(&mut self) -> Option<Coded> {
        let pos = self.pos;
        let (count, smq_count) = get(self.bytes, &mut self.pos)?;
        let c = Coded {
            kafka_offset: self.kafka_offset,
            count: i64::from(count),
            smq_offset: self.smq_offset,
            smq_count: i64::from(smq_count),
            pos,
        };
        self.kafka_offset = c.end();
        self.smq_offset = c.smq_end();
        Some(c)
    }
}

/// Appends an entry's coding: `count << 2 | tag` as a varint, where the tag says one SMQ record
/// (0, a single batch: the common case, one byte for up to 31 records), one per record (1), or
/// a second varint with the number (2). Canonical, so equal lists are equal bytes and a list is
/// a prefix of another exactly when its entries are.
pub(super) fn put(buf: &mut Vec<u8>, count: u32, smq_count: u32) {
    grow(buf, MAX_CODED, 64);
    let tag = if smq_count == 1 {
        0
    } else if smq_count == count {
        1
    } else {
        2
    };
    put_varint(buf, (u64::from(count) << 2) | tag);
    if tag == 2 {
        put_varint(buf, u64::from(smq_count));
    }
}

/// Reads one entry's coding at `*pos`, moving past it. None when the bytes there are not the
/// canonical coding of a valid entry (1 ≤ SMQ records ≤ records).
pub(super) fn get(buf: &[u8], pos: &mut usize) -> Option<(u32, u32)> {
    let v = get_varint(buf, pos)?;
    let count = u32::try_from(v >> 2).ok().filter(|c| *c >= 1)?;
    let smq_count = match v & 3 {
        0 => 1,
        1 if count > 1 => count,
        2 => u32::try_from(get_varint(buf, pos)?)
            .ok()
            .filter(|m| *m > 1 && *m < count)?,
        _ => return None,
    };
    Some((count, smq_count))
}

/// Makes room for `room` more elements, growing by a quarter (at least `min`) rather than
/// doubling: these vectors only grow, live as long as the partition and are most of the
/// ledger's memory, so the slack doubling leaves (a quarter on average) costs more than the
/// extra copies (each element is still copied a bounded number of times, amortized).
pub(super) fn grow<T>(v: &mut Vec<T>, room: usize, min: usize) {
    if v.capacity() - v.len() < room {
        v.reserve_exact((v.len() / 4).max(min).max(room));
    }
}

pub(super) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// A LEB128 varint; None when truncated, longer than 64 bits, or not in its shortest form.
pub(super) fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = *buf.get(*pos + i)?;
        let bits = u64::from(b & 0x7f);
        if i == 9 && b > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return None;
            }
            *pos += i + 1;
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_coding_is_compact_and_round_trips() {
        let cases = [
            (1, 1, 1),
            (31, 1, 1),
            (32, 1, 2),
            (2, 2, 1),
            (500, 3, 3),
            (u32::MAX, 1, 5),
            (u32::MAX, u32::MAX, 5),
            (u32::MAX, u32::MAX - 1, 10),
        ];
        for (count, smq, len) in cases {
            let mut buf = Vec::new();
            put(&mut buf, count, smq);
            assert_eq!(buf.len(), len, "({count}, {smq})");
            let mut pos = 0;
            assert_eq!(get(&buf, &mut pos), Some((count, smq)));
            assert_eq!(pos, buf.len());
        }
    }

    #[test]
    fn non_canonical_or_invalid_codings_are_refused() {
        let refused: [&[u8]; 7] = [
            &[0x00],       // no records
            &[0x05],       // tag 1 with one record: should be tag 0
            &[0x0a, 0x01], // tag 2 naming one SMQ record
            &[0x0a, 0x02], // tag 2 naming as many SMQ records as records
            &[0x0a, 0x03], // more SMQ records than records
            &[0x07],       // tag 3
            &[0x84, 0x00], // an over-long varint
        ];
        for b in refused {
            assert_eq!(get(b, &mut 0), None, "{b:?}");
        }
        assert_eq!(get(&[0x80], &mut 0), None, "truncated");
        assert_eq!(get_varint(&[0xff; 10], &mut 0), None, "past 64 bits");
        let mut buf = Vec::new();
        put_varint(&mut buf, u64::MAX);
        assert_eq!(get_varint(&buf, &mut 0), Some(u64::MAX));
    }
}
