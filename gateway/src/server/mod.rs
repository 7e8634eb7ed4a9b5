//! The TCP side: accept loop with a connection limit, per-connection tasks, graceful shutdown.

mod connection;
mod deletions;

pub use connection::{ParsedRequest, encode as encode_response, parse_request};
pub use deletions::serve_deletion_requests;
pub use frame::{FrameError, read_frame};
mod frame;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::protocol::Context;

/// Accepts connections until `shutdown` turns true, then waits (up to `drain`) for the open
/// connections to finish the requests they are handling.
pub async fn run(
    ctx: Arc<Context>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let limit = Arc::new(Semaphore::new(ctx.config.max_connections.max(1)));
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let ctx = ctx.clone();
        let rx = shutdown.clone();
        connections.spawn(async move {
            ctx.metrics.connections.inc();
            connection::serve(ctx.clone(), stream, peer, rx).await;
            ctx.metrics.connections.dec();
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    tracing::info!(
        open = connections.len(),
        "stopped accepting; draining connections"
    );
    let _ = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}
