//! Byte budgets for requests in flight: what bounds the gateway's memory under load.
//!
//! A connection reserves a frame's size, from its own budget and then from the global one,
//! after reading the 4-byte size and before reading (and allocating) the body; the reservation
//! is released once the response is written. While a budget is spent, the connection's reader
//! waits and stops reading its socket, so TCP pushes back on the client instead of the gateway
//! buffering. Responses being written are charged to the global budget without waiting (a
//! response waiting for bytes held by queued requests could deadlock), which makes readers wait
//! while slow consumers are still draining theirs.

use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

/// The gateway's byte budgets, shared by all connections.
#[derive(Debug)]
pub struct Budgets {
    /// Requests being handled and responses being written (`--max-inflight-bytes`).
    pub inflight: Arc<Budget>,
    /// Of those, what Fetch responses may reserve before they are built: half, so that clients
    /// that do not read their responses cannot take the budget that requests need.
    pub responses: Arc<Budget>,
}

impl Budgets {
    /// The gauges follow the bytes in use.
    pub fn new(max_inflight_bytes: usize, inflight: Gauge, responses: Gauge) -> Self {
        Self {
            inflight: Budget::with_gauge(max_inflight_bytes, Some(inflight)),
            responses: Budget::with_gauge(max_inflight_bytes / 2, Some(responses)),
        }
    }
}

#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: Mutex<usize>,
    freed: Notify,
    gauge: Option<Gauge>,
}

/// Bytes held from a [`Budget`] until dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Self> {
        Self::with_gauge(limit, None)
    }

    pub fn with_gauge(limit: usize, gauge: Option<Gauge>) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            used: Mutex::new(0),
            freed: Notify::new(),
            gauge,
        })
    }

    fn used(&self) -> Used<'_> {
        // The counter stays consistent even if a holder panicked: recover it.
        Used {
            guard: self.used.lock().unwrap_or_else(|p| p.into_inner()),
            gauge: self.gauge.as_ref(),
        }
    }

    pub fn in_use(&self) -> usize {
        *self.used()
    }

    /// Takes `bytes` without waiting, when they fit now. A request larger than the whole budget
    /// fits when nothing else is held (so one maximal frame still goes through, alone).
    pub fn try_reserve(self: &Arc<Self>, bytes: usize) -> Option<Held> {
        let mut used = self.used();
        if *used == 0 || used.saturating_add(bytes) <= self.limit {
            *used += bytes;
            return Some(Held {
                budget: self.clone(),
                bytes,
            });
        }
        None
    }

    /// Waits until `bytes` fit (see [`Budget::try_reserve`]), then takes them.
    pub async fn reserve(self: &Arc<Self>, bytes: usize) -> Held {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Register for the wake-up before checking, so a release in between is not missed.
            freed.as_mut().enable();
            if let Some(h) = self.try_reserve(bytes) {
                return h;
            }
            freed.await;
        }
    }

    /// Takes what is free of `bytes` (up to all of them), without waiting; None when nothing
    /// is free.
    pub fn try_reserve_up_to(self: &Arc<Self>, bytes: usize) -> Option<Held> {
        let mut used = self.used();
        let free = self.limit.saturating_sub(*used);
        if free == 0 || bytes == 0 {
            return None;
        }
        let take = bytes.min(free);
        *used += take;
        Some(Held {
            budget: self.clone(),
            bytes: take,
        })
    }

    /// Takes what is free of `bytes`, waiting until `deadline` while nothing is; None when
    /// nothing became free by then.
    pub async fn reserve_up_to(
        self: &Arc<Self>,
        bytes: usize,
        deadline: tokio::time::Instant,
    ) -> Option<Held> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(h) = self.try_reserve_up_to(bytes) {
                return Some(h);
            }
            if bytes == 0 || tokio::time::timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }

    /// Takes `bytes` even past the limit.
    pub fn charge(self: &Arc<Self>, bytes: usize) -> Held {
        *self.used() += bytes;
        Held {
            budget: self.clone(),
            bytes,
        }
    }
}

/// The counter, locked; the gauge is set when it is unlocked.
struct Used<'a> {
    guard: MutexGuard<'a, usize>,
    gauge: Option<&'a Gauge>,
}

impl std::ops::Deref for Used<'_> {
    type Target = usize;
    fn deref(&self) -> &usize {
        &self.guard
    }
}

impl std::ops::DerefMut for Used<'_> {
    fn deref_mut(&mut self) -> &mut usize {
        &mut self.guard
    }
}

impl Drop for Used<'_> {
    fn drop(&mut self) {
        if let Some(g) = self.gauge {
            g.set(*self.guard as i64);
        }
    }
}

impl Held {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `bytes` instead (past the limit if need be): a reservation made before its
    /// response was built, set to the response's real size.
    pub fn resize(&mut self, bytes: usize) {
        {
            let mut used = self.budget.used();
            *used = used.saturating_sub(self.bytes) + bytes;
        }
        let shrunk = bytes < self.bytes;
        self.bytes = bytes;
        if shrunk {
            self.budget.freed.notify_waiters();
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        {
            let mut used = self.budget.used();
            *used = used.saturating_sub(self.bytes);
        }
        self.budget.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn reservations_wait_for_releases() {
        let b = Budget::new(100);
        let a = b.reserve(60).await;
        assert!(b.try_reserve(50).is_none(), "60 + 50 is over 100");
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.reserve(50).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "waits while the budget is spent");
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("a release wakes the waiter")
            .unwrap();
        assert_eq!(b.in_use(), 50);
        drop(c);
        assert_eq!(b.in_use(), 0);
    }

    #[tokio::test]
    async fn an_oversized_request_goes_alone_and_charges_pass_the_limit() {
        let b = Budget::new(100);
        let big = b.try_reserve(500).expect("alone, anything fits");
        assert!(b.try_reserve(1).is_none());
        drop(big);
        let r = b.charge(150);
        assert_eq!(b.in_use(), 150);
        assert!(
            b.try_reserve(1).is_none(),
            "charges count against reservations"
        );
        drop(r);
        assert!(b.try_reserve(100).is_some());
    }

    #[tokio::test]
    async fn partial_reservations_take_what_is_free_and_resize() {
        let b = Budget::new(100);
        let mut a = b.try_reserve_up_to(70).expect("70 free");
        assert_eq!(a.bytes(), 70);
        let c = b.try_reserve_up_to(50).expect("30 still free");
        assert_eq!(c.bytes(), 30);
        assert!(b.try_reserve_up_to(1).is_none(), "nothing free");
        let soon = tokio::time::Instant::now() + Duration::from_millis(20);
        assert!(
            b.reserve_up_to(10, soon).await.is_none(),
            "gives up at the deadline"
        );
        let waiter = tokio::spawn({
            let b = b.clone();
            async move {
                let later = tokio::time::Instant::now() + Duration::from_secs(5);
                b.reserve_up_to(50, later).await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        a.resize(40);
        assert_eq!(b.in_use(), 70 + 30 - 70 + 40);
        let w = waiter.await.unwrap().expect("a shrink wakes the waiter");
        assert_eq!(w.bytes(), 30);
        a.resize(150);
        assert_eq!(b.in_use(), 150 + 30 + 30, "resized past the limit");
        drop((a, c, w));
        assert_eq!(b.in_use(), 0);
    }
}
