//! One client connection: frames are read ahead into a small queue and answered in order.
//!
//! Requests are handled one at a time, as a Kafka broker does, with one exception: consecutive
//! Produce requests are pipelined. Each one starts only after the one before it has assigned its
//! offsets (so produces to a partition keep their order), and then waits for SMQ while the next
//! one starts. Any other request waits until the produces before it are answered.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Encodable, decode_request_header_from_buffer};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use super::frame::{FrameError, read_frame_body, read_frame_size};
use crate::budget::{Budget, Held};
use crate::protocol::request::{self, ResponseGrant};
use crate::protocol::{self, Context, api_versions_response, decodable_min, dispatch};

/// Requests read ahead of the one being handled.
const READ_AHEAD: usize = 8;
/// Produce requests in flight at once on one connection.
const PIPELINE: usize = 8;

/// A response, with the budget reserved for it (if any) that is held until it is written.
type Handled = Result<Option<(Bytes, Option<ResponseGrant>)>, String>;
/// A pipelined request being handled, with the budget it holds until its answer is written.
type Pending<'a> = Pin<Box<dyn Future<Output = (Handled, [Held; 2])> + Send + 'a>>;

pub async fn serve(
    ctx: Arc<Context>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let mut wr = BufWriter::new(wr);
    let global = ctx.budgets.inflight.clone();
    let (tx, mut rx) = mpsc::channel::<(Bytes, [Held; 2], Duration)>(READ_AHEAD);
    let limit = ctx.config.max_request_bytes;
    let idle = ctx.config.idle_timeout();
    let own = Budget::new(ctx.config.max_connection_inflight_bytes);
    let metrics = ctx.metrics.clone();
    let reader_global = global.clone();
    let reader = tokio::spawn(async move {
        let global = reader_global;
        loop {
            let read = async {
                let size = read_frame_size(&mut rd, limit).await?;
                // Waiting here leaves the socket unread: backpressure to the client.
                let started = Instant::now();
                let mut waited = Duration::ZERO;
                let held = match (own.try_reserve(size), global.try_reserve(size)) {
                    (Some(a), Some(b)) => [a, b],
                    (a, b) => {
                        metrics.backpressure_waits.inc();
                        drop(b);
                        let a = match a {
                            Some(a) => a,
                            None => own.reserve(size).await,
                        };
                        let held = [a, global.reserve(size).await];
                        waited = started.elapsed();
                        held
                    }
                };
                Ok::<_, FrameError>((read_frame_body(&mut rd, size).await?, held, waited))
            };
            // The idle timeout covers time spent waiting for budget too: a connection that
            // cannot be served for that long is closed like an idle one.
            let frame = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                r = tokio::time::timeout(idle, read) => r,
            };
            match frame {
                Err(_) => {
                    tracing::debug!(%peer, "closing idle connection");
                    return;
                }
                Ok(Err(FrameError::Closed)) => return,
                // A client that resets its connection sent nothing wrong.
                Ok(Err(FrameError::Io(e))) => {
                    tracing::debug!(%peer, error = %e, "connection lost");
                    return;
                }
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
    // Each request's budget travels with it and is released once its answer is written.
    let mut inflight: FuturesOrdered<Pending<'_>> = FuturesOrdered::new();
    // The newest pipelined request, until it has assigned its offsets.
    let mut sequencing: Option<oneshot::Receiver<()>> = None;
    let mut open = true;
    while open {
        let can_take = inflight.len() < PIPELINE && sequencing.is_none();
        tokio::select! {
            Some((handled, held)) = inflight.next(), if !inflight.is_empty() => {
                open = respond(&ctx, &global, &mut wr, peer, handled, held).await;
            }
            _ = async { if let Some(rx) = sequencing.as_mut() { let _ = rx.await; } }, if sequencing.is_some() => {
                sequencing = None;
            }
            frame = rx.recv(), if can_take => {
                let Some((frame, held, waited)) = frame else { break };
                if is_produce(&frame) {
                    let (tx, rx) = oneshot::channel();
                    let ctx = &ctx;
                    inflight.push_back(Box::pin(async move {
                        let handled = handle_request(ctx, frame, peer, Some(tx), waited).await;
                        (handled, held)
                    }));
                    sequencing = Some(rx);
                    continue;
                }
                while let Some((handled, earlier)) = inflight.next().await {
                    if !respond(&ctx, &global, &mut wr, peer, handled, earlier).await {
                        open = false;
                        break;
                    }
                }
                if open {
                    let handled = handle_request(&ctx, frame, peer, None, waited).await;
                    open = respond(&ctx, &global, &mut wr, peer, handled, held).await;
                }
            }
        }
    }
    while open && let Some((handled, held)) = inflight.next().await {
        open = respond(&ctx, &global, &mut wr, peer, handled, held).await;
    }
    reader.abort();
    let _ = wr.shutdown().await;
}

/// Writes a handled request's response, then releases the request's budget; false when the
/// connection must close.
async fn respond<W: AsyncWriteExt + Unpin>(
    ctx: &Context,
    global: &Arc<Budget>,
    wr: &mut W,
    peer: SocketAddr,
    handled: Handled,
    held: [Held; 2],
) -> bool {
    let open = match handled {
        Ok(Some((response, grant))) => {
            // The response counts until written: a slow consumer holds the global budget and
            // so slows the reading of new requests, instead of growing memory. Fetch responses
            // were reserved before they were built (and sized to fit what was free).
            let _writing = match grant {
                Some(g) => Err(g),
                None => Ok(global.charge(response.len())),
            };
            // A client that does not read its answer for the idle timeout is closed like an
            // idle one, releasing what its answer holds.
            let write = async { wr.write_all(&response).await.is_ok() && wr.flush().await.is_ok() };
            match tokio::time::timeout(ctx.config.idle_timeout(), write).await {
                Ok(written) => written,
                Err(_) => {
                    tracing::warn!(%peer, bytes = response.len(), "closing connection: response not read within the idle timeout");
                    false
                }
            }
        }
        Ok(None) => true,
        Err(reason) => {
            ctx.metrics.bad_frames.inc();
            tracing::warn!(%peer, %reason, "closing connection: bad request");
            false
        }
    };
    drop(held);
    open
}

fn is_produce(frame: &[u8]) -> bool {
    frame.len() >= 2 && i16::from_be_bytes([frame[0], frame[1]]) == ApiKey::Produce as i16
}

/// A request frame after decoding, before any handler has seen it.
#[derive(Debug)]
pub enum ParsedRequest {
    /// An ApiVersions request of a version we do not speak: KIP-511 says to answer with the
    /// error in a v0 body (given here, framed) so the client can retry with a version we share.
    Unsupported(Bytes),
    Request {
        key: ApiKey,
        version: i16,
        correlation_id: i32,
        header: RequestHeader,
        /// Boxed: requests are large next to the other variant.
        request: Box<RequestKind>,
    },
}

/// Decodes one request frame (without its size prefix). Pure, so that it can be fuzzed: every
/// malformed frame must come back as `Err` (the connection is then closed), never a panic.
pub fn parse_request(mut frame: Bytes) -> Result<ParsedRequest, String> {
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
    let supported = protocol::supported(key);
    let in_range = supported.is_some_and(|(min, max)| (min..=max).contains(&version));
    if key == ApiKey::ApiVersions && !in_range {
        let body = api_versions_response(35);
        return encode(key, 0, correlation_id, &ResponseKind::ApiVersions(body))
            .map(ParsedRequest::Unsupported);
    }
    if !in_range || version < decodable_min(key) {
        return Err(format!("unsupported version {version} of {key:?}"));
    }
    let header: RequestHeader = decode_request_header_from_buffer(&mut frame)
        .map_err(|e| format!("malformed {key:?} v{version} header: {e}"))?;
    let request = RequestKind::decode(key, &mut frame, version)
        .map_err(|e| format!("malformed {key:?} v{version} request: {e}"))?;
    Ok(ParsedRequest::Request {
        key,
        version,
        correlation_id,
        header,
        request: Box::new(request),
    })
}

/// The longest back-off asked of a client: longer ones would come close to clients' request
/// timeouts (30 s by default); a longer wait still delayed the answer itself.
const MAX_THROTTLE_MS: u128 = 10_000;

/// Handles one request frame, which waited `waited` for its budget. `Ok(None)`: no response is
/// due (Produce with acks=0). `Err`: the connection must be closed, for the reason given.
async fn handle_request(
    ctx: &Context,
    frame: Bytes,
    peer: SocketAddr,
    sequenced: Option<oneshot::Sender<()>>,
    waited: Duration,
) -> Handled {
    let started = Instant::now();
    let (key, version, correlation_id, header, request) = match parse_request(frame)? {
        ParsedRequest::Unsupported(response) => return Ok(Some((response, None))),
        ParsedRequest::Request {
            key,
            version,
            correlation_id,
            header,
            request,
        } => (key, version, correlation_id, header, *request),
    };
    let no_response = matches!(&request, RequestKind::Produce(p) if p.acks == 0);
    let (result, outcome) =
        request::scoped(peer, sequenced, waited, dispatch(ctx, &header, request)).await;
    let mut response = match result {
        Ok(r) => r,
        Err(e) => {
            ctx.metrics
                .request(key_name(key), e.code(), started.elapsed());
            return Err(format!("{key:?} failed: {e}"));
        }
    };
    let codes = protocol::error_codes(&response);
    ctx.metrics.request(
        key_name(key),
        codes.first().copied().unwrap_or(0),
        started.elapsed(),
    );
    ctx.metrics.response_errors(key_name(key), &codes);
    let throttle_ms = outcome.throttled.as_millis().min(MAX_THROTTLE_MS) as i32;
    let grant = outcome.grant;
    // throttle_time_ms exists from v1 on.
    let settable = version >= 1;
    match &mut response {
        ResponseKind::Produce(r) if settable => r.throttle_time_ms = throttle_ms,
        ResponseKind::Fetch(r) if settable => r.throttle_time_ms = throttle_ms,
        _ => {}
    }
    if matches!(key, ApiKey::Produce | ApiKey::Fetch) {
        ctx.metrics.throttled(key_name(key), throttle_ms);
    }
    if no_response {
        return Ok(None);
    }
    let encoded = encode(key, version, correlation_id, &response)?;
    let grant = grant.map(|mut g| {
        g.resize(encoded.len());
        g
    });
    Ok(Some((encoded, grant)))
}

fn key_name(key: ApiKey) -> &'static str {
    protocol::api_name(key)
}

/// Frames a response: size, header, body.
pub fn encode(
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
