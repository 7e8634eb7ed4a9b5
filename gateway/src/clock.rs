//! Wall-clock time as Kafka and SMQ count it (Unix epoch). A clock before 1970 reads as 0
//! rather than failing: every use is a timestamp or an age, never an ordering of our own.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (Kafka's timestamps).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Nanoseconds since the Unix epoch (SMQ's broker timestamps).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// 2025-01-01T00:00:00Z, where [`epoch_seconds`] count from.
const EPOCH_BASE_S: i64 = 1_735_689_600;

/// Seconds since 2025-01-01 (fits Kafka's i32 leader epochs until 2093). A leader epoch is at
/// least this when its holding begins, so epochs grow across restarts even where the previous
/// holder's epoch left no trace; ordering never rests on it (the ledger's epochs do that).
pub fn epoch_seconds() -> i64 {
    (now_ms() / 1000 - EPOCH_BASE_S).max(0)
}
