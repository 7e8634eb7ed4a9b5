//! Kafka's record batch format (magic v2): parsing what producers send, and building what fetches
//! return. Our own codec rather than `kafka_protocol::records`, because Kafka allows repeated
//! header keys, which that crate's header map would merge.

mod batch;
mod compression;
mod stored;
mod varint;

pub use batch::{
    Batch, BatchHeader, Compression, Header, Record, TimestampType, encode_batch, parse_batch,
    rebase_batch, split_batches,
};
pub use stored::{
    StorageFormat, StoredBatch, StoredRecord, StoredUnit, decode_stored, decode_stored_unit,
    encode_stored, encode_stored_batch,
};

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum RecordError {
    #[error("record data truncated while reading {0}")]
    Truncated(&'static str),
    #[error("invalid record data: {0}")]
    Invalid(String),
    #[error("record batch CRC mismatch: header says {expected:#010x}, data gives {actual:#010x}")]
    Crc { expected: u32, actual: u32 },
    #[error("unsupported record batch magic {0}: only v2 batches are accepted")]
    UnsupportedMagic(i8),
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(i16),
    #[error("record batch of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
}
