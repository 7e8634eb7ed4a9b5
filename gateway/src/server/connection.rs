//! One client connection: frames are read ahead into a small queue while requests are handled
//! one at a time, in order, as a Kafka broker does (so produces to a partition keep their order).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Encodable, decode_request_header_from_buffer};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::frame::{FrameError, read_frame};
use crate::protocol::{self, Context, api_versions_response, decodable_min, dispatch};

tokio::task_local! {
    /// The client address of the request being handled (DescribeGroups reports member hosts).
    pub static PEER: SocketAddr;
}

/// Requests read ahead of the one being handled.
const READ_AHEAD: usize = 8;

pub async fn serve(
    ctx: Arc<Context>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let mut wr = BufWriter::new(wr);
    let (tx, mut rx) = mpsc::channel::<Bytes>(READ_AHEAD);
    let limit = ctx.config.max_request_bytes;
    let idle = ctx.config.idle_timeout();
    let metrics = ctx.metrics.clone();
    let reader = tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                r = tokio::time::timeout(idle, read_frame(&mut rd, limit)) => r,
            };
            match frame {
                Err(_) => {
                    tracing::debug!(%peer, "closing idle connection");
                    return;
                }
                Ok(Err(FrameError::Closed)) => return,
                Ok(Err(e)) => {
                    metrics.bad_frames.inc();
                    tracing::warn!(%peer, error = %e, "closing connection: bad frame");
                    return;
                }
                Ok(Ok(f)) => {
                    if tx.send(f).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    while let Some(frame) = rx.recv().await {
        match PEER.scope(peer, handle_frame(&ctx, frame)).await {
            Ok(Some(response)) => {
                if wr.write_all(&response).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
            }
            Ok(None) => {}
            Err(reason) => {
                ctx.metrics.bad_frames.inc();
                tracing::warn!(%peer, %reason, "closing connection: bad request");
                break;
            }
        }
    }
    reader.abort();
    let _ = wr.shutdown().await;
}

/// Handles one request frame. `Ok(None)`: no response is due (Produce with acks=0).
/// `Err`: the connection must be closed, for the reason given.
async fn handle_frame(ctx: &Context, mut frame: Bytes) -> Result<Option<Bytes>, String> {
    if frame.len() < 8 {
        return Err(format!(
            "request of {} bytes is too short for a header",
            frame.len()
        ));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| format!("unknown API key {raw_key}"))?;
    let started = Instant::now();
    let supported = protocol::supported(key);
    let in_range = supported.is_some_and(|(min, max)| (min..=max).contains(&version));
    if key == ApiKey::ApiVersions && !in_range {
        // KIP-511: answer with the error in a v0 body so the client can retry with a version
        // it shares with us.
        let body = api_versions_response(35);
        return encode(key, 0, correlation_id, &ResponseKind::ApiVersions(body)).map(Some);
    }
    if !in_range || version < decodable_min(key) {
        return Err(format!("unsupported version {version} of {key:?}"));
    }
    let header: RequestHeader = decode_request_header_from_buffer(&mut frame)
        .map_err(|e| format!("malformed {key:?} v{version} header: {e}"))?;
    let request = RequestKind::decode(key, &mut frame, version)
        .map_err(|e| format!("malformed {key:?} v{version} request: {e}"))?;
    let no_response = matches!(&request, RequestKind::Produce(p) if p.acks == 0);
    let result = dispatch(ctx, &header, request).await;
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            ctx.metrics
                .request(key_name(key), e.code(), started.elapsed());
            return Err(format!("{key:?} failed: {e}"));
        }
    };
    ctx.metrics.request(key_name(key), 0, started.elapsed());
    if no_response {
        return Ok(None);
    }
    encode(key, version, correlation_id, &response).map(Some)
}

fn key_name(key: ApiKey) -> &'static str {
    protocol::api_name(key)
}

fn encode(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, String> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, key.response_header_version(version))
        .map_err(|e| format!("encoding {key:?} response header: {e}"))?;
    body.encode(&mut buf, version)
        .map_err(|e| format!("encoding {key:?} v{version} response: {e}"))?;
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}
