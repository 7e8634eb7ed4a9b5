//! How Kafka data is stored as SMQ `RecordValue`s (columns in `kafka_smq_format`).
//!
//! Format `record`: one Kafka record per SMQ record, fields SMQ's own tools (SQL, shell) can read.
//! A null key, value or header value is stored as an absent field, an empty one as present and
//! empty, so the two stay apart. Format `batch`: one Kafka record batch per SMQ record.

use std::collections::HashMap;

use bytes::Bytes;
pub use kafka_smq_format::StorageFormat;
use kafka_smq_format::{
    FIELD_BATCH, FIELD_HEADERS, FIELD_KEY, FIELD_OFFSET, FIELD_PARTITION, FIELD_RECORD_COUNT,
    FIELD_TIMESTAMP, FIELD_TIMESTAMP_TYPE, FIELD_VALUE, HEADER_KEY, HEADER_VALUE,
};
use prost::Message;
use smq_proto::schema_pb::{RecordValue, Value, value};

use super::RecordError;
use super::batch::{Header, TimestampType};

/// A Kafka record as the gateway stores and serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: i64,
    pub partition: i32,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub timestamp_type: TimestampType,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// A Kafka record batch as stored in the `batch` format: the v2 batch bytes, already re-based to
/// their Kafka offset, so a fetch returns them as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub base_offset: i64,
    pub partition: i32,
    pub record_count: i32,
    pub max_timestamp: i64,
    pub raw: Bytes,
}

/// One SMQ record of a Kafka topic, in either format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredUnit {
    Record(StoredRecord),
    Batch(StoredBatch),
}

impl StoredUnit {
    pub fn first_offset(&self) -> i64 {
        match self {
            Self::Record(r) => r.offset,
            Self::Batch(b) => b.base_offset,
        }
    }

    /// How many Kafka offsets it holds.
    pub fn count(&self) -> i64 {
        match self {
            Self::Record(_) => 1,
            Self::Batch(b) => i64::from(b.record_count),
        }
    }

    pub fn end_offset(&self) -> i64 {
        self.first_offset() + self.count()
    }
}

/// Writes protobuf straight from the record: `RecordValue { map<string, Value> fields = 1 }`,
/// each map entry `{ key = 1, value = 2 }`, each `Value` a oneof (`int32_value = 2`,
/// `int64_value = 3`, `bytes_value = 6`, `list_value = 14`, `record_value = 15`; mq_schema.proto).
/// The same bytes prost would write for the equivalent `RecordValue` (tested), without building
/// a map of owned strings and copies of key and value for every record of every produce.
mod wire {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

    pub const INT32: u32 = 2;
    pub const INT64: u32 = 3;
    pub const BYTES: u32 = 6;
    pub const LIST: u32 = 14;
    pub const RECORD: u32 = 15;

    /// A `Value`'s content.
    pub enum Val<'a> {
        Int(u32, i64),
        Bytes(&'a [u8]),
        /// A nested message (list or record) already encoded, under the given Value field.
        Message(u32, &'a [u8]),
    }

    fn key_len(tag: u32) -> usize {
        encoded_len_varint(u64::from(tag << 3))
    }

    fn delimited_len(tag: u32, len: usize) -> usize {
        key_len(tag) + encoded_len_varint(len as u64) + len
    }

    impl Val<'_> {
        /// Length of the `Value` message.
        fn len(&self) -> usize {
            match self {
                Val::Int(tag, v) => key_len(*tag) + encoded_len_varint(*v as u64),
                Val::Bytes(b) => delimited_len(BYTES, b.len()),
                Val::Message(tag, m) => delimited_len(*tag, m.len()),
            }
        }

        fn write(&self, out: &mut Vec<u8>) {
            match self {
                Val::Int(tag, v) => {
                    encode_key(*tag, WireType::Varint, out);
                    encode_varint(*v as u64, out);
                }
                Val::Bytes(b) => {
                    encode_key(BYTES, WireType::LengthDelimited, out);
                    encode_varint(b.len() as u64, out);
                    out.extend_from_slice(b);
                }
                Val::Message(tag, m) => {
                    encode_key(*tag, WireType::LengthDelimited, out);
                    encode_varint(m.len() as u64, out);
                    out.extend_from_slice(m);
                }
            }
        }
    }

    fn entry_len(name: &str, v: &Val<'_>) -> usize {
        delimited_len(1, name.len()) + delimited_len(2, v.len())
    }

    /// Bytes of a `RecordValue` holding these fields.
    pub fn record_len(fields: &[(&str, Val<'_>)]) -> usize {
        fields
            .iter()
            .map(|(n, v)| delimited_len(1, entry_len(n, v)))
            .sum()
    }

    /// Writes a `RecordValue` holding these fields.
    pub fn write_record(fields: &[(&str, Val<'_>)], out: &mut Vec<u8>) {
        for (name, v) in fields {
            encode_key(1, WireType::LengthDelimited, out);
            encode_varint(entry_len(name, v) as u64, out);
            encode_key(1, WireType::LengthDelimited, out);
            encode_varint(name.len() as u64, out);
            out.extend_from_slice(name.as_bytes());
            encode_key(2, WireType::LengthDelimited, out);
            encode_varint(v.len() as u64, out);
            v.write(out);
        }
    }

    /// Writes a `ListValue` of values given as encoded `RecordValue`s.
    pub fn write_list_of_records(records: &[Vec<u8>], out: &mut Vec<u8>) {
        for r in records {
            let v = Val::Message(RECORD, r);
            encode_key(1, WireType::LengthDelimited, out);
            encode_varint(v.len() as u64, out);
            v.write(out);
        }
    }
}

/// Encodes a record into the bytes of an SMQ `DataMessage.value`.
pub fn encode_stored(r: &StoredRecord) -> Vec<u8> {
    use wire::Val;
    let tt = match r.timestamp_type {
        TimestampType::CreateTime => 0,
        TimestampType::LogAppendTime => 1,
    };
    // Headers: a list of records {key, value}; built first, their length goes in front.
    let mut headers = Vec::new();
    if !r.headers.is_empty() {
        let encoded: Vec<Vec<u8>> = r
            .headers
            .iter()
            .map(|h| {
                let mut fields = vec![(HEADER_KEY, Val::Bytes(&h.key))];
                if let Some(v) = &h.value {
                    fields.push((HEADER_VALUE, Val::Bytes(v)));
                }
                let mut out = Vec::with_capacity(wire::record_len(&fields));
                wire::write_record(&fields, &mut out);
                out
            })
            .collect();
        wire::write_list_of_records(&encoded, &mut headers);
    }
    let mut fields = Vec::with_capacity(7);
    fields.push((FIELD_OFFSET, Val::Int(wire::INT64, r.offset)));
    fields.push((
        FIELD_PARTITION,
        Val::Int(wire::INT32, i64::from(r.partition)),
    ));
    fields.push((FIELD_TIMESTAMP, Val::Int(wire::INT64, r.timestamp)));
    fields.push((FIELD_TIMESTAMP_TYPE, Val::Int(wire::INT32, tt)));
    if let Some(k) = &r.key {
        fields.push((FIELD_KEY, Val::Bytes(k)));
    }
    if let Some(v) = &r.value {
        fields.push((FIELD_VALUE, Val::Bytes(v)));
    }
    if !r.headers.is_empty() {
        fields.push((FIELD_HEADERS, Val::Message(wire::LIST, &headers)));
    }
    let mut out = Vec::with_capacity(wire::record_len(&fields));
    wire::write_record(&fields, &mut out);
    out
}

fn take_bytes(
    fields: &mut HashMap<String, Value>,
    name: &str,
) -> Result<Option<Bytes>, RecordError> {
    match fields.remove(name).and_then(|v| v.kind) {
        None => Ok(None),
        Some(value::Kind::BytesValue(b)) => Ok(Some(Bytes::from(b))),
        Some(other) => Err(RecordError::Invalid(format!(
            "field {name} is not bytes: {other:?}"
        ))),
    }
}

fn take_i64(fields: &mut HashMap<String, Value>, name: &str) -> Result<i64, RecordError> {
    match fields.remove(name).and_then(|v| v.kind) {
        Some(value::Kind::Int64Value(x)) => Ok(x),
        Some(value::Kind::Int32Value(x)) => Ok(x.into()),
        other => Err(RecordError::Invalid(format!(
            "field {name} missing or not an integer: {other:?}"
        ))),
    }
}

/// Encodes a batch into the bytes of an SMQ `DataMessage.value` (the batch's bytes copied once).
pub fn encode_stored_batch(b: &StoredBatch) -> Vec<u8> {
    use wire::Val;
    let fields = [
        (FIELD_OFFSET, Val::Int(wire::INT64, b.base_offset)),
        (
            FIELD_PARTITION,
            Val::Int(wire::INT32, i64::from(b.partition)),
        ),
        (FIELD_TIMESTAMP, Val::Int(wire::INT64, b.max_timestamp)),
        (
            FIELD_RECORD_COUNT,
            Val::Int(wire::INT32, i64::from(b.record_count)),
        ),
        (FIELD_BATCH, Val::Bytes(&b.raw)),
    ];
    let mut out = Vec::with_capacity(wire::record_len(&fields));
    wire::write_record(&fields, &mut out);
    out
}

fn decode_fields(data: &[u8]) -> Result<HashMap<String, Value>, RecordError> {
    Ok(RecordValue::decode(data)
        .map_err(|e| RecordError::Invalid(format!("stored record is not a RecordValue: {e}")))?
        .fields)
}

/// Decodes an SMQ `DataMessage.value` of either format.
pub fn decode_stored_unit(data: &[u8]) -> Result<StoredUnit, RecordError> {
    let mut fields = decode_fields(data)?;
    if fields.contains_key(FIELD_BATCH) {
        let base_offset = take_i64(&mut fields, FIELD_OFFSET)?;
        let partition = take_i64(&mut fields, FIELD_PARTITION)? as i32;
        let max_timestamp = take_i64(&mut fields, FIELD_TIMESTAMP)?;
        let record_count = i32::try_from(take_i64(&mut fields, FIELD_RECORD_COUNT)?)
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| RecordError::Invalid("stored batch record count".to_string()))?;
        let raw = take_bytes(&mut fields, FIELD_BATCH)?.unwrap_or_default();
        return Ok(StoredUnit::Batch(StoredBatch {
            base_offset,
            partition,
            record_count,
            max_timestamp,
            raw,
        }));
    }
    decode_record_fields(fields).map(StoredUnit::Record)
}

/// Decodes an SMQ `DataMessage.value` written by [`encode_stored`].
pub fn decode_stored(data: &[u8]) -> Result<StoredRecord, RecordError> {
    decode_record_fields(decode_fields(data)?)
}

fn decode_record_fields(mut fields: HashMap<String, Value>) -> Result<StoredRecord, RecordError> {
    let offset = take_i64(&mut fields, FIELD_OFFSET)?;
    let partition = take_i64(&mut fields, FIELD_PARTITION)? as i32;
    let timestamp = take_i64(&mut fields, FIELD_TIMESTAMP)?;
    let timestamp_type = match take_i64(&mut fields, FIELD_TIMESTAMP_TYPE).unwrap_or(0) {
        1 => TimestampType::LogAppendTime,
        _ => TimestampType::CreateTime,
    };
    let key = take_bytes(&mut fields, FIELD_KEY)?;
    let value = take_bytes(&mut fields, FIELD_VALUE)?;
    let headers = match fields.remove(FIELD_HEADERS).and_then(|v| v.kind) {
        None => Vec::new(),
        Some(value::Kind::ListValue(list)) => list
            .values
            .into_iter()
            .map(|h| match h.kind {
                Some(value::Kind::RecordValue(rv)) => {
                    let mut hf = rv.fields;
                    let key = take_bytes(&mut hf, HEADER_KEY)?
                        .ok_or_else(|| RecordError::Invalid("header without key".into()))?;
                    Ok(Header {
                        key,
                        value: take_bytes(&mut hf, HEADER_VALUE)?,
                    })
                }
                other => Err(RecordError::Invalid(format!(
                    "header is not a record: {other:?}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(RecordError::Invalid(format!(
                "headers field is not a list: {other:?}"
            )));
        }
    };
    Ok(StoredRecord {
        offset,
        partition,
        timestamp,
        timestamp_type,
        key,
        value,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use smq_proto::schema_pb::ListValue;

    fn v(kind: value::Kind) -> Value {
        Value { kind: Some(kind) }
    }

    #[test]
    fn null_and_empty_stay_apart_and_headers_keep_order() {
        let r = StoredRecord {
            offset: 7,
            partition: 2,
            timestamp: 1_700_000_000_123,
            timestamp_type: TimestampType::CreateTime,
            key: None,
            value: Some(Bytes::new()),
            headers: vec![
                Header {
                    key: Bytes::from_static(b"a"),
                    value: None,
                },
                Header {
                    key: Bytes::from_static(b"a"),
                    value: Some(Bytes::new()),
                },
                Header {
                    key: Bytes::from_static(b"b"),
                    value: Some(Bytes::from_static(b"x")),
                },
            ],
        };
        assert_eq!(decode_stored(&encode_stored(&r)).unwrap(), r);
        let r2 = StoredRecord {
            key: Some(Bytes::new()),
            value: None,
            headers: vec![],
            ..r
        };
        assert_eq!(decode_stored(&encode_stored(&r2)).unwrap(), r2);
    }

    #[test]
    fn batches_and_records_are_told_apart() {
        let b = StoredBatch {
            base_offset: 40,
            partition: 1,
            record_count: 3,
            max_timestamp: 1_700_000_000_000,
            raw: Bytes::from_static(b"batch bytes"),
        };
        let encoded = encode_stored_batch(&b);
        let int64 = |x| v(value::Kind::Int64Value(x));
        let int32 = |x| v(value::Kind::Int32Value(x));
        let reference = RecordValue {
            fields: HashMap::from([
                (FIELD_OFFSET.to_string(), int64(40)),
                (FIELD_PARTITION.to_string(), int32(1)),
                (FIELD_TIMESTAMP.to_string(), int64(1_700_000_000_000)),
                (FIELD_RECORD_COUNT.to_string(), int32(3)),
                (
                    FIELD_BATCH.to_string(),
                    v(value::Kind::BytesValue(b"batch bytes".to_vec())),
                ),
            ]),
        };
        assert_eq!(RecordValue::decode(&encoded[..]).unwrap(), reference);
        assert_eq!(encoded.len(), reference.encoded_len());
        let unit = decode_stored_unit(&encoded).unwrap();
        assert_eq!(unit.end_offset(), 43);
        assert_eq!(unit, StoredUnit::Batch(b));
        let r = StoredRecord {
            offset: 9,
            partition: 0,
            timestamp: 1,
            timestamp_type: TimestampType::LogAppendTime,
            key: None,
            value: None,
            headers: vec![],
        };
        assert_eq!(
            decode_stored_unit(&encode_stored(&r)).unwrap(),
            StoredUnit::Record(r)
        );
    }

    /// The `RecordValue` the direct encoder must write, built with prost's types.
    fn reference(r: &StoredRecord) -> RecordValue {
        let bytes = |b: &Bytes| v(value::Kind::BytesValue(b.to_vec()));
        let mut fields = HashMap::from([
            (
                FIELD_OFFSET.to_string(),
                v(value::Kind::Int64Value(r.offset)),
            ),
            (
                FIELD_PARTITION.to_string(),
                v(value::Kind::Int32Value(r.partition)),
            ),
            (
                FIELD_TIMESTAMP.to_string(),
                v(value::Kind::Int64Value(r.timestamp)),
            ),
            (
                FIELD_TIMESTAMP_TYPE.to_string(),
                v(value::Kind::Int32Value(match r.timestamp_type {
                    TimestampType::CreateTime => 0,
                    TimestampType::LogAppendTime => 1,
                })),
            ),
        ]);
        if let Some(k) = &r.key {
            fields.insert(FIELD_KEY.to_string(), bytes(k));
        }
        if let Some(val) = &r.value {
            fields.insert(FIELD_VALUE.to_string(), bytes(val));
        }
        if !r.headers.is_empty() {
            let values = r
                .headers
                .iter()
                .map(|h| {
                    let mut hf = HashMap::from([(HEADER_KEY.to_string(), bytes(&h.key))]);
                    if let Some(val) = &h.value {
                        hf.insert(HEADER_VALUE.to_string(), bytes(val));
                    }
                    v(value::Kind::RecordValue(RecordValue { fields: hf }))
                })
                .collect();
            fields.insert(
                FIELD_HEADERS.to_string(),
                v(value::Kind::ListValue(ListValue { values })),
            );
        }
        RecordValue { fields }
    }

    #[test]
    fn records_are_written_as_the_record_values_smq_tools_read() {
        let big = Bytes::from(vec![7u8; 70_000]);
        let cases = [
            StoredRecord {
                offset: 0,
                partition: 0,
                timestamp: 0,
                timestamp_type: TimestampType::CreateTime,
                key: None,
                value: None,
                headers: vec![],
            },
            StoredRecord {
                offset: i64::MAX,
                partition: -1,
                timestamp: -1,
                timestamp_type: TimestampType::LogAppendTime,
                key: Some(Bytes::new()),
                value: Some(big),
                headers: vec![
                    Header {
                        key: Bytes::from_static(b"trace"),
                        value: Some(Bytes::from(vec![1u8; 300])),
                    },
                    Header {
                        key: Bytes::new(),
                        value: None,
                    },
                ],
            },
        ];
        for r in cases {
            let bytes = encode_stored(&r);
            assert_eq!(RecordValue::decode(&bytes[..]).unwrap(), reference(&r));
            assert_eq!(bytes.len(), reference(&r).encoded_len(), "exact capacity");
            assert_eq!(decode_stored(&bytes).unwrap(), r);
        }
    }

    #[test]
    fn foreign_data_is_an_error_not_a_panic() {
        assert!(decode_stored(b"\xff\xff\xff").is_err());
        assert!(decode_stored(b"").is_err(), "no offset field");
    }
}
