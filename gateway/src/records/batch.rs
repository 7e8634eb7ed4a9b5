use super::RecordError;
use super::compression::decompress;
use super::varint::{get_varint, get_varlong, put_varlong, varlong_len};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes before the records in a v2 batch.
const HEADER_LEN: usize = 61;
/// baseOffset (8) + batchLength (4): the part not counted in batchLength.
const LOG_OVERHEAD: usize = 12;
/// Offset of the CRC field, and of the attributes field where the CRC starts covering.
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const MAX_TIMESTAMP_OFFSET: usize = 35;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn from_attributes(attributes: i16) -> Result<Self, RecordError> {
        Ok(match attributes & 0x07 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(RecordError::UnsupportedCompression(other)),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// The fixed-size header of a v2 record batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    pub fn compression(&self) -> Result<Compression, RecordError> {
        Compression::from_attributes(self.attributes)
    }
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & 0x08 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// One record with its absolute timestamp and its position in the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset_delta: i32,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// A validated batch: its header, its records (decompressed), and its bytes as received.
#[derive(Debug, Clone)]
pub struct Batch {
    pub header: BatchHeader,
    pub records: Vec<Record>,
    pub raw: Bytes,
}

/// Splits a record set into its batches by their length fields, without decoding them.
pub fn split_batches(mut data: Bytes) -> Result<Vec<Bytes>, RecordError> {
    let mut out = Vec::new();
    while data.has_remaining() {
        if data.len() < LOG_OVERHEAD {
            return Err(RecordError::Truncated("batch length"));
        }
        let len = i32::from_be_bytes(data[8..12].try_into().expect("4 bytes"));
        if len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(RecordError::Invalid(format!(
                "batch length {len} is too small"
            )));
        }
        let total = LOG_OVERHEAD + len as usize;
        if data.len() < total {
            return Err(RecordError::Truncated("record batch"));
        }
        out.push(data.split_to(total));
    }
    Ok(out)
}

fn read_header(raw: &[u8]) -> Result<BatchHeader, RecordError> {
    if raw.len() < HEADER_LEN {
        return Err(RecordError::Truncated("batch header"));
    }
    let mut b = raw;
    let base_offset = b.get_i64();
    let batch_length = b.get_i32();
    let partition_leader_epoch = b.get_i32();
    let magic = b.get_i8();
    if magic != 2 {
        return Err(RecordError::UnsupportedMagic(magic));
    }
    Ok(BatchHeader {
        base_offset,
        batch_length,
        partition_leader_epoch,
        magic,
        crc: b.get_u32(),
        attributes: b.get_i16(),
        last_offset_delta: b.get_i32(),
        base_timestamp: b.get_i64(),
        max_timestamp: b.get_i64(),
        producer_id: b.get_i64(),
        producer_epoch: b.get_i16(),
        base_sequence: b.get_i32(),
        record_count: b.get_i32(),
    })
}

/// Validates one batch (magic, CRC, sizes, record count) and decodes its records.
/// `max_uncompressed` bounds what a compressed batch may expand to.
pub fn parse_batch(raw: Bytes, max_uncompressed: usize) -> Result<Batch, RecordError> {
    let header = read_header(&raw)?;
    if header.batch_length as usize + LOG_OVERHEAD != raw.len() {
        return Err(RecordError::Invalid(format!(
            "batch length {} does not match the {} bytes received",
            header.batch_length,
            raw.len()
        )));
    }
    let actual = crc32c::crc32c(&raw[ATTRIBUTES_OFFSET..]);
    if actual != header.crc {
        return Err(RecordError::Crc {
            expected: header.crc,
            actual,
        });
    }
    let _ = CRC_OFFSET;
    if header.record_count < 0 {
        return Err(RecordError::Invalid(format!(
            "negative record count {}",
            header.record_count
        )));
    }
    let body = raw.slice(HEADER_LEN..);
    let records_data = decompress(header.compression()?, body, max_uncompressed)?;
    if records_data.len() > max_uncompressed {
        return Err(RecordError::TooLarge {
            size: records_data.len(),
            limit: max_uncompressed,
        });
    }
    let mut cursor: &[u8] = &records_data;
    // A record takes at least 7 bytes, which bounds the allocation for a lying count.
    let mut records = Vec::with_capacity((header.record_count as usize).min(cursor.len() / 7 + 1));
    for _ in 0..header.record_count {
        records.push(read_record(
            &mut cursor,
            &records_data,
            header.base_timestamp,
        )?);
    }
    if !cursor.is_empty() {
        return Err(RecordError::Invalid(format!(
            "{} bytes left after {} records",
            cursor.len(),
            header.record_count
        )));
    }
    // Offsets inside a batch are its base plus consecutive deltas: the `batch` storage format
    // serves the batch as sent, so a gap here would hand out offsets the ledger never assigned.
    if let Some((i, r)) = records
        .iter()
        .enumerate()
        .find(|(i, r)| r.offset_delta as usize != *i)
    {
        return Err(RecordError::Invalid(format!(
            "record {i} of the batch has offset delta {} (deltas must be consecutive from 0)",
            r.offset_delta
        )));
    }
    if let Some(last) = records.last()
        && last.offset_delta != header.last_offset_delta
    {
        return Err(RecordError::Invalid(format!(
            "last offset delta {} but the last record has {}",
            header.last_offset_delta, last.offset_delta
        )));
    }
    Ok(Batch {
        header,
        records,
        raw,
    })
}

/// A copy of a validated batch placed at `base_offset`, as the `batch` storage format stores it.
/// Base offset and leader epoch lie outside the CRC; for LogAppendTime topics the timestamp type
/// and max timestamp change too, as a Kafka broker sets them, and the CRC is computed again.
pub fn rebase_batch(raw: &[u8], base_offset: i64, log_append_time: Option<i64>) -> Bytes {
    let mut out = BytesMut::from(raw);
    out[0..8].copy_from_slice(&base_offset.to_be_bytes());
    out[12..16].copy_from_slice(&0i32.to_be_bytes());
    if let Some(now) = log_append_time {
        let attributes = i16::from_be_bytes([out[ATTRIBUTES_OFFSET], out[ATTRIBUTES_OFFSET + 1]]);
        out[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2]
            .copy_from_slice(&(attributes | 0x08).to_be_bytes());
        out[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now.to_be_bytes());
        let crc = crc32c::crc32c(&out[ATTRIBUTES_OFFSET..]);
        out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }
    out.freeze()
}

fn read_record(cur: &mut &[u8], whole: &Bytes, base_timestamp: i64) -> Result<Record, RecordError> {
    let len = get_varint(cur)?;
    if len < 0 || len as usize > cur.len() {
        return Err(RecordError::Truncated("record"));
    }
    let (mut r, rest) = cur.split_at(len as usize);
    *cur = rest;
    if r.is_empty() {
        return Err(RecordError::Truncated("record attributes"));
    }
    let _attributes = r.get_i8();
    let ts_delta = get_varlong(&mut r)?;
    let offset_delta = get_varint(&mut r)?;
    let key = read_bytes(&mut r, whole)?;
    let value = read_bytes(&mut r, whole)?;
    let count = get_varint(&mut r)?;
    if count < 0 {
        return Err(RecordError::Invalid(format!(
            "negative header count {count}"
        )));
    }
    let mut headers = Vec::with_capacity((count as usize).min(r.len() / 2 + 1));
    for _ in 0..count {
        let key = read_bytes(&mut r, whole)?
            .ok_or_else(|| RecordError::Invalid("null header key".into()))?;
        let value = read_bytes(&mut r, whole)?;
        headers.push(Header { key, value });
    }
    if !r.is_empty() {
        return Err(RecordError::Invalid(format!(
            "{} bytes left in a record",
            r.len()
        )));
    }
    Ok(Record {
        offset_delta,
        timestamp: base_timestamp.wrapping_add(ts_delta),
        key,
        value,
        headers,
    })
}

/// A varint-length byte string; length -1 is null. Returns a zero-copy slice of `whole`.
fn read_bytes(cur: &mut &[u8], whole: &Bytes) -> Result<Option<Bytes>, RecordError> {
    let len = get_varint(cur)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if len > cur.len() {
        return Err(RecordError::Truncated("record field"));
    }
    let start = cur.as_ptr() as usize - whole.as_ptr() as usize;
    *cur = &cur[len..];
    Ok(Some(whole.slice(start..start + len)))
}

/// Appends one uncompressed v2 batch holding `records` (whose offset deltas and absolute
/// timestamps are given) at `base_offset`.
pub fn encode_batch(
    out: &mut BytesMut,
    base_offset: i64,
    timestamp_type: TimestampType,
    records: &[Record],
) {
    let start = out.len();
    let base_timestamp = records.first().map(|r| r.timestamp).unwrap_or(-1);
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
    let last_offset_delta = records.last().map(|r| r.offset_delta).unwrap_or(0);
    let attributes: i16 = match timestamp_type {
        TimestampType::CreateTime => 0,
        TimestampType::LogAppendTime => 0x08,
    };
    out.put_i64(base_offset);
    out.put_i32(0); // batch length, patched below
    out.put_i32(-1); // partition leader epoch
    out.put_i8(2);
    out.put_u32(0); // crc, patched below
    out.put_i16(attributes);
    out.put_i32(last_offset_delta);
    out.put_i64(base_timestamp);
    out.put_i64(max_timestamp);
    out.put_i64(-1); // producer id
    out.put_i16(-1); // producer epoch
    out.put_i32(-1); // base sequence
    out.put_i32(records.len() as i32);
    for r in records {
        write_record(out, r, base_timestamp);
    }
    let batch_length = (out.len() - start - LOG_OVERHEAD) as i32;
    out[start + 8..start + 12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + ATTRIBUTES_OFFSET..]);
    out[start + CRC_OFFSET..start + CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

fn bytes_len(b: &Option<Bytes>) -> usize {
    match b {
        None => varlong_len(-1),
        Some(b) => varlong_len(b.len() as i64) + b.len(),
    }
}

fn put_bytes(out: &mut BytesMut, b: &Option<Bytes>) {
    match b {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.put_slice(b);
        }
    }
}

fn write_record(out: &mut BytesMut, r: &Record, base_timestamp: i64) {
    let ts_delta = r.timestamp.wrapping_sub(base_timestamp);
    let mut len = 1 + varlong_len(ts_delta) + varlong_len(r.offset_delta.into());
    len += bytes_len(&r.key) + bytes_len(&r.value) + varlong_len(r.headers.len() as i64);
    for h in &r.headers {
        len += varlong_len(h.key.len() as i64) + h.key.len() + bytes_len(&h.value);
    }
    put_varlong(out, len as i64);
    out.put_i8(0);
    put_varlong(out, ts_delta);
    put_varlong(out, r.offset_delta.into());
    put_bytes(out, &r.key);
    put_bytes(out, &r.value);
    put_varlong(out, r.headers.len() as i64);
    for h in &r.headers {
        put_varlong(out, h.key.len() as i64);
        out.put_slice(&h.key);
        put_bytes(out, &h.value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record {
                offset_delta: 0,
                timestamp: 1_700_000_000_000,
                key: Some(Bytes::from_static(b"k")),
                value: None,
                headers: vec![
                    Header {
                        key: Bytes::from_static(b"h"),
                        value: None,
                    },
                    Header {
                        key: Bytes::from_static(b"h"),
                        value: Some(Bytes::from_static(b"")),
                    },
                ],
            },
            Record {
                offset_delta: 1,
                timestamp: 1_699_999_999_000,
                key: None,
                value: Some(Bytes::from_static(b"")),
                headers: vec![],
            },
        ]
    }

    #[test]
    fn encode_then_parse_is_exact() {
        let mut out = BytesMut::new();
        encode_batch(&mut out, 42, TimestampType::CreateTime, &sample());
        let raw = out.freeze();
        let batches = split_batches(raw.clone()).unwrap();
        assert_eq!(batches.len(), 1);
        let b = parse_batch(batches[0].clone(), 1 << 20).unwrap();
        assert_eq!(b.header.base_offset, 42);
        assert_eq!(b.header.record_count, 2);
        assert_eq!(b.header.max_timestamp, 1_700_000_000_000);
        assert_eq!(b.records, sample());
    }

    #[test]
    fn rebasing_keeps_the_batch_valid() {
        let mut out = BytesMut::new();
        encode_batch(&mut out, 0, TimestampType::CreateTime, &sample());
        let raw = out.freeze();
        let moved = parse_batch(rebase_batch(&raw, 1000, None), 1 << 20).unwrap();
        assert_eq!(moved.header.base_offset, 1000);
        assert_eq!(
            moved.header.crc,
            parse_batch(raw.clone(), 1 << 20).unwrap().header.crc
        );
        assert_eq!(moved.records, sample());
        let stamped = parse_batch(rebase_batch(&raw, 7, Some(1_800_000_000_000)), 1 << 20).unwrap();
        assert_eq!(
            stamped.header.timestamp_type(),
            TimestampType::LogAppendTime
        );
        assert_eq!(stamped.header.max_timestamp, 1_800_000_000_000);
        assert_eq!(stamped.header.base_offset, 7);
    }

    #[test]
    fn non_consecutive_offset_deltas_are_refused() {
        let mut records = sample();
        records[1].offset_delta = 5;
        let mut out = BytesMut::new();
        encode_batch(&mut out, 0, TimestampType::CreateTime, &records);
        let e = parse_batch(out.freeze(), 1 << 20).unwrap_err();
        assert!(e.to_string().contains("consecutive"), "{e}");
    }

    #[test]
    fn corruption_is_detected() {
        let mut out = BytesMut::new();
        encode_batch(&mut out, 0, TimestampType::CreateTime, &sample());
        let mut bad = out.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        assert!(matches!(
            parse_batch(Bytes::from(bad), 1 << 20),
            Err(RecordError::Crc { .. })
        ));
        let truncated = out.freeze().slice(..30);
        assert!(split_batches(truncated).is_err());
    }

    trait IntoOurs {
        fn into_ours(self) -> Compression;
    }
    impl IntoOurs for kafka_protocol::records::Compression {
        fn into_ours(self) -> Compression {
            use kafka_protocol::records::Compression as C;
            match self {
                C::None => Compression::None,
                C::Gzip => Compression::Gzip,
                C::Snappy => Compression::Snappy,
                C::Lz4 => Compression::Lz4,
                C::Zstd => Compression::Zstd,
            }
        }
    }

    #[test]
    fn compressed_batches_from_the_kafka_protocol_crate_decode() {
        use kafka_protocol::records::{
            Compression as C, Record as KRecord, RecordBatchEncoder, RecordEncodeOptions,
            TimestampType as T,
        };
        let records: Vec<KRecord> = (0..5)
            .map(|i| KRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: T::Creation,
                offset: i,
                sequence: -1,
                timestamp: 1000 + i,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'x'; 100])),
                headers: Default::default(),
            })
            .collect();
        for c in [C::None, C::Gzip, C::Snappy, C::Lz4, C::Zstd] {
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &records,
                &RecordEncodeOptions {
                    version: 2,
                    compression: c,
                },
            )
            .unwrap();
            let mut got = Vec::new();
            for raw in split_batches(buf.freeze()).unwrap() {
                let b = parse_batch(raw, 1 << 20).unwrap();
                assert_eq!(b.header.compression().unwrap(), c.into_ours(), "{c:?}");
                got.extend(
                    b.records
                        .into_iter()
                        .map(|r| (b.header.base_offset + i64::from(r.offset_delta), r)),
                );
            }
            assert_eq!(got.len(), 5, "{c:?}");
            assert_eq!(got[4].0, 4);
            assert_eq!(got[4].1.key.as_deref(), Some(&b"k4"[..]));
            assert_eq!(got[4].1.timestamp, 1004);
            assert_eq!(got[3].1.value.as_ref().unwrap().len(), 100);
        }
    }
}
