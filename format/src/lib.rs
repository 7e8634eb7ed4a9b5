//! How the gateway lays Kafka data out in SMQ, shared by the gateway (which writes and reads it)
//! and the operator (which creates topics for it).
//!
//! A Kafka topic has one storage format, fixed before its first write:
//! - `record`: one SMQ record per Kafka record, with the Kafka offset, partition, timestamp, key,
//!   value and headers as columns, so SMQ's own tools (SQL, shell) can read each record;
//! - `batch`: one SMQ record per Kafka record batch, holding the batch bytes as the producer sent
//!   them (re-based to their Kafka offset). Kafka clients only, but SMQ's cost is per record, so
//!   this is many times faster.
//!
//! The format is visible in the SMQ topic itself: its registered record type has the
//! [`FIELD_BATCH`] column exactly when the topic stores batches.

use std::fmt;
use std::str::FromStr;

use smq_proto::schema_pb::{Field, ListType, RecordType, ScalarType, Type, r#type};

/// The Kafka offset of the record (`record`) or of the batch's first record (`batch`).
pub const FIELD_OFFSET: &str = "_kafka_offset";
pub const FIELD_PARTITION: &str = "_kafka_partition";
/// The record's timestamp (`record`) or the batch's max timestamp (`batch`), in ms.
pub const FIELD_TIMESTAMP: &str = "_kafka_timestamp";
pub const FIELD_TIMESTAMP_TYPE: &str = "_kafka_timestamp_type";
pub const FIELD_KEY: &str = "key";
pub const FIELD_VALUE: &str = "value";
pub const FIELD_HEADERS: &str = "headers";
pub const HEADER_KEY: &str = "key";
pub const HEADER_VALUE: &str = "value";
/// `batch` only: how many records the batch holds.
pub const FIELD_RECORD_COUNT: &str = "_kafka_record_count";
/// `batch` only: the Kafka record batch (v2) bytes.
pub const FIELD_BATCH: &str = "_kafka_batch";

/// The topic config that selects the format.
pub const CONFIG_KEY: &str = "smq.storage.format";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorageFormat {
    #[default]
    Record,
    Batch,
}

/// A `smq.storage.format` value that is neither `record` nor `batch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{CONFIG_KEY}={} is not a storage format (record or batch)",
            self.0
        )
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for StorageFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "record" => Ok(Self::Record),
            "batch" => Ok(Self::Batch),
            other => Err(UnknownFormat(other.to_string())),
        }
    }
}

impl fmt::Display for StorageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StorageFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Record => "record",
            Self::Batch => "batch",
        }
    }

    /// The record type to register for a topic in this format.
    pub fn record_type(self) -> RecordType {
        match self {
            Self::Record => record_format_type(),
            Self::Batch => batch_format_type(),
        }
    }

    /// The format of a topic registered with `t`; `None` when the type is not one of ours.
    pub fn of_record_type(t: &RecordType) -> Option<Self> {
        let has = |name: &str| t.fields.iter().any(|f| f.name == name);
        if !has(FIELD_OFFSET) {
            return None;
        }
        Some(if has(FIELD_BATCH) {
            Self::Batch
        } else {
            Self::Record
        })
    }
}

/// A named scalar column of a record type.
pub fn scalar_field(name: &str, index: i32, t: ScalarType) -> Field {
    Field {
        name: name.to_string(),
        field_index: index,
        r#type: Some(Type {
            kind: Some(r#type::Kind::ScalarType(t as i32)),
        }),
        is_repeated: false,
        is_required: false,
    }
}

fn record_format_type() -> RecordType {
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

fn batch_format_type() -> RecordType {
    RecordType {
        fields: vec![
            scalar_field(FIELD_OFFSET, 0, ScalarType::Int64),
            scalar_field(FIELD_PARTITION, 1, ScalarType::Int32),
            scalar_field(FIELD_TIMESTAMP, 2, ScalarType::Int64),
            scalar_field(FIELD_RECORD_COUNT, 3, ScalarType::Int32),
            scalar_field(FIELD_BATCH, 4, ScalarType::Bytes),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_read_back_from_the_record_type() {
        for f in [StorageFormat::Record, StorageFormat::Batch] {
            assert_eq!(StorageFormat::of_record_type(&f.record_type()), Some(f));
            assert_eq!(f.as_str().parse::<StorageFormat>(), Ok(f));
        }
        assert_eq!(StorageFormat::of_record_type(&RecordType::default()), None);
    }

    #[test]
    fn unknown_values_name_the_config() {
        let e = "batches".parse::<StorageFormat>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "smq.storage.format=batches is not a storage format (record or batch)"
        );
    }
}
