//! Reading another gateway's figures over its HTTP port: the offsets of the partitions it leads
//! (`GET /led-partitions/<topic>`), for the KafkaTopic statistics, which one elected gateway
//! reports for every partition. Plain HTTP/1.1 with `Connection: close`: one small request per
//! topic and peer per statistics interval.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Member;
use crate::error::{GatewayError, GatewayResult};

/// One partition's offsets as its leader knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedOffsets {
    pub partition: i32,
    pub high_water_mark: i64,
    pub log_start_offset: i64,
}

const TIMEOUT: Duration = Duration::from_secs(5);
/// A topic's figures are a few dozen bytes per partition.
const MAX_BODY: u64 = 4 * 1024 * 1024;

/// The offsets of `topic`'s partitions that `peer` leads.
pub async fn led_offsets(peer: &Member, topic: &str) -> GatewayResult<Vec<LedOffsets>> {
    if peer.http_port == 0 {
        return Err(GatewayError::Internal(format!(
            "gateway {} did not announce its HTTP port",
            peer.node_id
        )));
    }
    let addr = format!("{}:{}", peer.host, peer.http_port);
    let fail = |what: String| GatewayError::Internal(format!("GET {addr}/led-partitions: {what}"));
    let body = tokio::time::timeout(TIMEOUT, async {
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        let path = format!("/led-partitions/{}", encode_segment(topic));
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut out = Vec::new();
        s.take(MAX_BODY).read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    })
    .await
    .map_err(|_| fail(format!("no answer within {TIMEOUT:?}")))?
    .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&body);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail("no HTTP header".to_string()))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(fail(status.to_string()));
    }
    serde_json::from_str(body).map_err(|e| fail(e.to_string()))
}

/// Topic names are `[a-zA-Z0-9._-]`; anything else is escaped anyway.
fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_pass_through_and_others_are_escaped() {
        assert_eq!(encode_segment("orders.v1_a-b"), "orders.v1_a-b");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
