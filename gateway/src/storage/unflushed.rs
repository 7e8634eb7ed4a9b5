//! The bound on acknowledged bytes that SMQ has not yet written, across every partition: past
//! it new appends wait, so a broker that stops writing slows producers instead of growing memory
//! (or the write-ahead log) without end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::{GatewayError, GatewayResult};

/// Bytes held across every partition, and a cap past which new appends wait.
#[derive(Debug)]
pub struct UnflushedBudget {
    used: AtomicUsize,
    cap: usize,
    freed: Notify,
}

impl UnflushedBudget {
    /// `cap` 0: no limit.
    pub fn new(cap: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            cap,
            freed: Notify::new(),
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub(super) fn add(&self, b: usize) {
        let now = self.used.fetch_add(b, Ordering::Relaxed) + b;
        crate::metrics::set_unflushed_bytes(now);
    }

    pub(super) fn sub(&self, b: usize) {
        let now = self.used.fetch_sub(b, Ordering::Relaxed) - b;
        crate::metrics::set_unflushed_bytes(now);
        self.freed.notify_waiters();
    }

    /// Waits until the held bytes are under the cap, and says how long that took (the
    /// request's throttle time: the client is asked to back off as long); a retriable error
    /// after `timeout` (SMQ has not written what it acked for that long).
    pub async fn wait_for_room(&self, timeout: Duration) -> GatewayResult<Duration> {
        if self.cap == 0 || self.used() < self.cap {
            return Ok(Duration::ZERO);
        }
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.used() < self.cap {
                break Ok(started.elapsed());
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                break Err(GatewayError::UnflushedBacklog(self.used()));
            }
        }
    }
}
