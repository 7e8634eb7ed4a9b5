//! Helpers for SMQ's schema types (`RecordType`, `RecordValue`), in which the gateway stores
//! Kafka records and its own state so that SMQ's tools can read both.

use std::collections::HashMap;

use smq_proto::schema_pb::{Value, value};

pub use kafka_smq_format::scalar_field;

pub fn string(s: impl Into<String>) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(s.into())),
    }
}

pub fn int64(v: i64) -> Value {
    Value {
        kind: Some(value::Kind::Int64Value(v)),
    }
}

pub fn int32(v: i32) -> Value {
    Value {
        kind: Some(value::Kind::Int32Value(v)),
    }
}

pub fn get_string(fields: &HashMap<String, Value>, name: &str) -> Option<String> {
    match fields.get(name)?.kind.as_ref()? {
        value::Kind::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// An integer field, whether stored as INT64 or INT32.
pub fn get_int(fields: &HashMap<String, Value>, name: &str) -> Option<i64> {
    match fields.get(name)?.kind.as_ref()? {
        value::Kind::Int64Value(v) => Some(*v),
        value::Kind::Int32Value(v) => Some(i64::from(*v)),
        _ => None,
    }
}

/// A stable hash (FNV-1a) of `key` into `0..buckets`: unlike std's hasher, it never changes
/// across processes or versions, so records keep landing on the same system-topic partition.
pub fn stable_slot(key: &[u8], buckets: i32) -> i32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % buckets.max(1) as u64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_slots_spread_and_stay_put() {
        assert_eq!(
            stable_slot(b"kafka/orders/2", 16),
            stable_slot(b"kafka/orders/2", 16)
        );
        let spread: std::collections::HashSet<_> = (0..64)
            .map(|p| stable_slot(format!("kafka/orders/{p}").as_bytes(), 16))
            .collect();
        assert!(spread.len() > 8, "{spread:?}");
    }

    #[test]
    fn ints_read_back_from_either_width() {
        let f = HashMap::from([("a".to_string(), int32(7)), ("b".to_string(), int64(-2))]);
        assert_eq!(get_int(&f, "a"), Some(7));
        assert_eq!(get_int(&f, "b"), Some(-2));
        assert_eq!(get_string(&f, "a"), None);
    }
}
