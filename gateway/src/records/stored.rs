//! How one Kafka record is stored as one SMQ record (storage format `record`): an SMQ
//! `RecordValue` whose fields SMQ's own tools (SQL, shell) can read. A null key, value or header
//! value is stored as an absent field, an empty one as present and empty, so the two stay apart.

use std::collections::HashMap;

use bytes::Bytes;
use prost::Message;
use smq_proto::schema_pb::{
    Field, ListType, ListValue, RecordType, RecordValue, ScalarType, Type, Value, r#type, value,
};

use super::RecordError;
use super::batch::{Header, TimestampType};
use crate::record_value::scalar_field;

pub const FIELD_OFFSET: &str = "_kafka_offset";
pub const FIELD_PARTITION: &str = "_kafka_partition";
pub const FIELD_TIMESTAMP: &str = "_kafka_timestamp";
pub const FIELD_TIMESTAMP_TYPE: &str = "_kafka_timestamp_type";
pub const FIELD_KEY: &str = "key";
pub const FIELD_VALUE: &str = "value";
pub const FIELD_HEADERS: &str = "headers";
const HEADER_KEY: &str = "key";
const HEADER_VALUE: &str = "value";

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

/// The SMQ record type registered for Kafka topics in the `record` format.
pub fn record_type() -> RecordType {
    let header = RecordType {
        fields: vec![
            scalar_field(HEADER_KEY, 0, ScalarType::Bytes),
            scalar_field(HEADER_VALUE, 1, ScalarType::Bytes),
        ],
    };
    RecordType {
        fields: vec![
            scalar_field(FIELD_OFFSET, 0, ScalarType::Int64),
            scalar_field(FIELD_PARTITION, 1, ScalarType::Int32),
            scalar_field(FIELD_TIMESTAMP, 2, ScalarType::Int64),
            scalar_field(FIELD_TIMESTAMP_TYPE, 3, ScalarType::Int32),
            scalar_field(FIELD_KEY, 4, ScalarType::Bytes),
            scalar_field(FIELD_VALUE, 5, ScalarType::Bytes),
            Field {
                name: FIELD_HEADERS.to_string(),
                field_index: 6,
                r#type: Some(Type {
                    kind: Some(r#type::Kind::ListType(Box::new(ListType {
                        element_type: Some(Box::new(Type {
                            kind: Some(r#type::Kind::RecordType(header)),
                        })),
                    }))),
                }),
                is_repeated: false,
                is_required: false,
            },
        ],
    }
}

fn v(kind: value::Kind) -> Value {
    Value { kind: Some(kind) }
}

fn put_bytes(fields: &mut HashMap<String, Value>, name: &str, b: &Option<Bytes>) {
    if let Some(b) = b {
        fields.insert(name.to_string(), v(value::Kind::BytesValue(b.to_vec())));
    }
}

/// Encodes a record into the bytes of an SMQ `DataMessage.value`.
pub fn encode_stored(r: &StoredRecord) -> Vec<u8> {
    let mut fields = HashMap::with_capacity(7);
    fields.insert(
        FIELD_OFFSET.to_string(),
        v(value::Kind::Int64Value(r.offset)),
    );
    fields.insert(
        FIELD_PARTITION.to_string(),
        v(value::Kind::Int32Value(r.partition)),
    );
    fields.insert(
        FIELD_TIMESTAMP.to_string(),
        v(value::Kind::Int64Value(r.timestamp)),
    );
    let tt = match r.timestamp_type {
        TimestampType::CreateTime => 0,
        TimestampType::LogAppendTime => 1,
    };
    fields.insert(
        FIELD_TIMESTAMP_TYPE.to_string(),
        v(value::Kind::Int32Value(tt)),
    );
    put_bytes(&mut fields, FIELD_KEY, &r.key);
    put_bytes(&mut fields, FIELD_VALUE, &r.value);
    if !r.headers.is_empty() {
        let values = r
            .headers
            .iter()
            .map(|h| {
                let mut hf = HashMap::with_capacity(2);
                hf.insert(
                    HEADER_KEY.to_string(),
                    v(value::Kind::BytesValue(h.key.to_vec())),
                );
                put_bytes(&mut hf, HEADER_VALUE, &h.value);
                v(value::Kind::RecordValue(RecordValue { fields: hf }))
            })
            .collect();
        fields.insert(
            FIELD_HEADERS.to_string(),
            v(value::Kind::ListValue(ListValue { values })),
        );
    }
    RecordValue { fields }.encode_to_vec()
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

/// Decodes an SMQ `DataMessage.value` written by [`encode_stored`].
pub fn decode_stored(data: &[u8]) -> Result<StoredRecord, RecordError> {
    let mut fields = RecordValue::decode(data)
        .map_err(|e| RecordError::Invalid(format!("stored record is not a RecordValue: {e}")))?
        .fields;
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
    fn foreign_data_is_an_error_not_a_panic() {
        assert!(decode_stored(b"\xff\xff\xff").is_err());
        assert!(decode_stored(b"").is_err(), "no offset field");
    }
}
