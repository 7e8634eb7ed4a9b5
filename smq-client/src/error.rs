use std::time::Duration;

use thiserror::Error;

/// SMQ's own error codes (`weed/mq/broker/broker_errors.go`), kept as numbers in [`SmqError::Broker`].
pub mod codes {
    pub const UNKNOWN: i32 = 1;
    pub const TOPIC_NOT_FOUND: i32 = 2;
    pub const PARTITION_NOT_FOUND: i32 = 3;
    pub const NOT_LEADER_OR_FOLLOWER: i32 = 6;
    pub const TIMEOUT: i32 = 7;
    pub const BROKER_NOT_AVAILABLE: i32 = 8;
    pub const MESSAGE_TOO_LARGE: i32 = 10;
    pub const NETWORK: i32 = 13;
    pub const OFFSET_LOAD_IN_PROGRESS: i32 = 14;
    pub const TOPIC_EXISTS: i32 = 36;
    pub const INVALID_PARTITIONS: i32 = 37;
    pub const INVALID_CONFIG: i32 = 40;
    pub const INVALID_RECORD: i32 = 42;
    pub const PUBLISHER_NOT_FOUND: i32 = 100;
    pub const CONNECTION_FAILED: i32 = 101;
    pub const FOLLOWER_CONNECTION_FAILED: i32 = 102;

    /// FetchMessage uses its own two codes.
    pub const FETCH_PARTITION_NOT_FOUND: i32 = 1;
    pub const FETCH_READ_ERROR: i32 = 2;
}

pub type SmqResult<T> = Result<T, SmqError>;

#[derive(Debug, Clone, Error)]
pub enum SmqError {
    /// The partition count is outside what SMQ's ring supports; never sent to the broker
    /// (a count of 0 crashes the balancer).
    #[error("invalid partition count {0}: SMQ topics have 1..=2520 partitions")]
    InvalidPartitionCount(i32),

    /// Changing the count of an existing topic makes SMQ start a new, empty generation and hides
    /// every existing record, so it is refused.
    #[error(
        "topic {topic} already has {existing} partitions; changing it to {requested} would hide its data"
    )]
    PartitionCountMismatch {
        topic: String,
        existing: i32,
        requested: i32,
    },

    #[error("topic {0} does not exist")]
    TopicNotFound(String),

    #[error("topic {topic} has no partition {partition}")]
    PartitionNotFound { topic: String, partition: i32 },

    /// A partition currently has no leader (for example while a broker is down).
    #[error("partition {partition} of topic {topic} has no leader broker right now")]
    NoLeader { topic: String, partition: i32 },

    /// An error the broker reported in a response, with SMQ's error code.
    #[error("SMQ broker error {code}: {message}")]
    Broker { code: i32, message: String },

    /// A gRPC call failed.
    #[error("gRPC call to {broker} failed: {code:?}: {message}")]
    Rpc {
        broker: String,
        code: tonic::Code,
        message: String,
    },

    /// The publish stream broke before this record was acknowledged: it may or may not have been
    /// stored. Retrying can store it twice.
    #[error("publish stream to {broker} broke before the ack: {reason}")]
    StreamBroken { broker: String, reason: String },

    /// FetchMessage's own error codes: 1 = partition missing or not the leader (stale
    /// assignment), 2 = read failure.
    #[error("SMQ fetch error {code}: {message}")]
    Fetch { code: i32, message: String },

    #[error("circuit to broker {broker} is open after repeated failures; retry in {retry_in:?}")]
    CircuitOpen { broker: String, retry_in: Duration },

    #[error("no SMQ broker found: {0}")]
    NoBroker(String),

    #[error("{what} timed out after {after:?}")]
    Timeout { what: String, after: Duration },

    #[error("the broker answered something unexpected: {0}")]
    Protocol(String),

    /// A partition's flushed log files could not be listed, read or parsed.
    #[error("SMQ log file: {0}")]
    LogFile(String),

    #[error("invalid address {0}")]
    InvalidAddress(String),
}

impl SmqError {
    /// Whether trying again later can succeed without a change on the caller's side.
    pub fn is_retriable(&self) -> bool {
        match self {
            SmqError::InvalidPartitionCount(_)
            | SmqError::PartitionCountMismatch { .. }
            | SmqError::TopicNotFound(_)
            | SmqError::PartitionNotFound { .. }
            | SmqError::InvalidAddress(_)
            | SmqError::Protocol(_) => false,
            SmqError::NoLeader { .. }
            | SmqError::StreamBroken { .. }
            | SmqError::CircuitOpen { .. }
            | SmqError::NoBroker(_)
            | SmqError::Timeout { .. }
            | SmqError::Fetch { .. }
            | SmqError::LogFile(_) => true,
            SmqError::Broker { code, .. } => matches!(
                *code,
                codes::TOPIC_NOT_FOUND // stale generation after a re-lookup
                    | codes::PARTITION_NOT_FOUND
                    | codes::NOT_LEADER_OR_FOLLOWER
                    | codes::TIMEOUT
                    | codes::BROKER_NOT_AVAILABLE
                    | codes::NETWORK
                    | codes::OFFSET_LOAD_IN_PROGRESS
                    | codes::PUBLISHER_NOT_FOUND
                    | codes::CONNECTION_FAILED
                    | codes::FOLLOWER_CONNECTION_FAILED
            ),
            SmqError::Rpc { code, message, .. } => is_retriable_status(*code, message),
        }
    }

    /// Whether cached partition assignments should be dropped after this error.
    pub fn invalidates_lookup(&self) -> bool {
        match self {
            SmqError::Broker { code, .. } => matches!(
                *code,
                codes::TOPIC_NOT_FOUND | codes::PARTITION_NOT_FOUND | codes::NOT_LEADER_OR_FOLLOWER
            ),
            SmqError::Fetch { code, .. } => *code == codes::FETCH_PARTITION_NOT_FOUND,
            SmqError::NoLeader { .. }
            | SmqError::StreamBroken { .. }
            | SmqError::Rpc { .. }
            | SmqError::CircuitOpen { .. } => true,
            _ => false,
        }
    }

    /// Short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SmqError::InvalidPartitionCount(_) => "invalid_partition_count",
            SmqError::PartitionCountMismatch { .. } => "partition_count_mismatch",
            SmqError::TopicNotFound(_) => "topic_not_found",
            SmqError::PartitionNotFound { .. } => "partition_not_found",
            SmqError::NoLeader { .. } => "no_leader",
            SmqError::Broker { .. } => "broker_error",
            SmqError::Fetch { .. } => "fetch_error",
            SmqError::Rpc { .. } => "rpc_error",
            SmqError::StreamBroken { .. } => "stream_broken",
            SmqError::CircuitOpen { .. } => "circuit_open",
            SmqError::NoBroker(_) => "no_broker",
            SmqError::Timeout { .. } => "timeout",
            SmqError::Protocol(_) => "protocol",
            SmqError::InvalidAddress(_) => "invalid_address",
            SmqError::LogFile(_) => "log_file",
        }
    }

    pub(crate) fn rpc(broker: &str, status: tonic::Status) -> Self {
        SmqError::Rpc {
            broker: broker.to_string(),
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    /// Whether this failure says the broker itself could not be reached (counts for its circuit).
    pub(crate) fn is_connection_failure(&self) -> bool {
        match self {
            // A status with Go's "desc =" text was sent by the broker: it relays the failure of
            // its own call to another broker (a non-balancer proxies control calls to the
            // balancer, and the balancer may be dead), so this broker is alive.
            SmqError::Rpc { message, .. } if message.contains("desc =") => false,
            SmqError::Rpc { code, message, .. } => {
                matches!(
                    code,
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                ) || (*code == tonic::Code::Unknown && message.contains("transport"))
            }
            SmqError::Timeout { .. } => true,
            _ => false,
        }
    }
}

fn is_retriable_status(code: tonic::Code, message: &str) -> bool {
    use tonic::Code::*;
    match code {
        Unavailable | DeadlineExceeded | Aborted | ResourceExhausted | Cancelled => true,
        // The broker reports most internal failures as UNKNOWN with text; these are transient:
        // a restarting balancer ("missing address"), a partition being unloaded ("log buffer is
        // stopping"), or a broken connection.
        Unknown | Internal => {
            let m = message.to_ascii_lowercase();
            if is_not_found_message(&m) {
                return false;
            }
            [
                "missing address",
                "stopping",
                "transport",
                "connection",
                "eof",
                "broken pipe",
                "lock",
            ]
            .iter()
            .any(|s| m.contains(s))
        }
        _ => false,
    }
}

/// The broker reports a missing topic as UNKNOWN with the filer's text, e.g. "failed to read topic
/// configuration: ... filer: no entry is found in filer store".
pub(crate) fn is_not_found_message(lowercase: &str) -> bool {
    [
        "no entry is found",
        "not found",
        "does not exist",
        "not exist",
    ]
    .iter()
    .any(|s| lowercase.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc(code: tonic::Code, message: &str) -> SmqError {
        SmqError::Rpc {
            broker: "b".into(),
            code,
            message: message.into(),
        }
    }

    #[test]
    fn a_broker_relaying_a_dead_balancer_is_not_itself_down() {
        // What a live non-balancer broker answers while the balancer it proxies to is dead.
        let relayed = rpc(
            tonic::Code::Unavailable,
            "connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused\"",
        );
        assert!(!relayed.is_connection_failure());
        assert!(relayed.is_retriable());
        // Our own failure to reach the broker.
        let refused = rpc(
            tonic::Code::Unavailable,
            "tcp connect error: Connection refused",
        );
        assert!(refused.is_connection_failure());
    }
}
