//! What a handler knows of the request it handles beyond its body, and what it hands back to
//! the connection besides the response: the client's address, how long the request waited for a
//! byte budget (the response's `throttle_time_ms`, KIP-219), the budget a Fetch response reserved
//! before it was built, and when a pipelined Produce has assigned its offsets.
//!
//! The connection runs each handler inside [`scoped`] and reads the [`Outcome`] afterwards; the
//! handlers only ever write into the scope, so nothing below the connection calls up into it.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Context;
use crate::budget::Held;

tokio::task_local! {
    static REQUEST: RefCell<RequestState>;
}

struct RequestState {
    peer: SocketAddr,
    /// Fired once a pipelined request has done what must happen in request order.
    sequenced: Option<oneshot::Sender<()>>,
    throttled: Duration,
    response: Option<ResponseGrant>,
}

/// What the connection learns from a handled request besides its response.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Time spent waiting for a byte budget (in flight, responses, unflushed).
    pub throttled: Duration,
    /// Bytes reserved for the response before it was built (Fetch), held until it is written.
    pub grant: Option<ResponseGrant>,
}

/// Runs a handler for a request from `peer` that already waited `waited` for its budget.
/// `sequenced` fires when the handler calls [`mark_sequenced`], or when it returns.
pub async fn scoped<F: Future>(
    peer: SocketAddr,
    sequenced: Option<oneshot::Sender<()>>,
    waited: Duration,
    handler: F,
) -> (F::Output, Outcome) {
    let state = RefCell::new(RequestState {
        peer,
        sequenced,
        throttled: waited,
        response: None,
    });
    REQUEST
        .scope(state, async move {
            let out = handler.await;
            let outcome = REQUEST.with(|r| {
                let mut r = r.borrow_mut();
                Outcome {
                    throttled: r.throttled,
                    grant: r.response.take(),
                }
            });
            (out, outcome)
        })
        .await
}

/// The client address of the request being handled (DescribeGroups reports member hosts).
pub fn peer() -> Option<SocketAddr> {
    REQUEST.try_with(|r| r.borrow().peer).ok()
}

/// Notes that the request being handled waited `waited` for a byte budget; Produce and Fetch
/// responses then ask the client to back off as long.
pub fn note_throttle(waited: Duration) {
    let _ = REQUEST.try_with(|r| r.borrow_mut().throttled += waited);
}

/// Called by a pipelined handler once the next request may start (the Produce handler, after
/// every partition's offsets are assigned). Returning from the handler counts as well.
pub fn mark_sequenced() {
    let _ = REQUEST.try_with(|r| {
        if let Some(tx) = r.borrow_mut().sequenced.take() {
            let _ = tx.send(());
        }
    });
}

/// Bytes reserved for a response before it is built, from the response budget (half of the
/// in-flight budget) and counted in the in-flight budget as well; held until it is written.
#[derive(Debug)]
pub struct ResponseGrant {
    held: [Held; 2],
}

impl ResponseGrant {
    /// Bytes the response may take (0: only its first record batch, KIP-74).
    pub fn bytes(&self) -> usize {
        self.held[0].bytes()
    }

    /// Holds `bytes` instead, past the limit if need be.
    pub fn resize(&mut self, bytes: usize) {
        for h in &mut self.held {
            h.resize(bytes);
        }
    }
}

/// Reserves up to `want` bytes for the response of the request being handled: what is free of
/// the response budget, waiting until `deadline` while nothing is (the wait counts as throttle
/// time); an empty grant after that.
pub async fn reserve_response(
    ctx: &Context,
    want: usize,
    deadline: tokio::time::Instant,
) -> ResponseGrant {
    let responses = &ctx.budgets.responses;
    let held = match responses.try_reserve_up_to(want) {
        Some(h) => h,
        None => {
            let started = Instant::now();
            let got = responses.reserve_up_to(want, deadline).await;
            note_throttle(started.elapsed());
            got.unwrap_or_else(|| responses.charge(0))
        }
    };
    let global = ctx.budgets.inflight.charge(held.bytes());
    ResponseGrant {
        held: [held, global],
    }
}

/// A grant of nothing (the response is charged its size once built).
pub fn empty_grant(ctx: &Context) -> ResponseGrant {
    ResponseGrant {
        held: [
            ctx.budgets.responses.charge(0),
            ctx.budgets.inflight.charge(0),
        ],
    }
}

/// Takes what is free of `want` bytes of the response budget, without waiting.
pub fn try_reserve_response(ctx: &Context, want: usize) -> Option<ResponseGrant> {
    let held = ctx.budgets.responses.try_reserve_up_to(want)?;
    let global = ctx.budgets.inflight.charge(held.bytes());
    Some(ResponseGrant {
        held: [held, global],
    })
}

/// Keeps a response's reservation until the response is written to the client.
pub fn keep_until_written(grant: ResponseGrant) {
    let _ = REQUEST.try_with(|r| r.borrow_mut().response = Some(grant));
}
