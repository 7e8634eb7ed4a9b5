use std::sync::Mutex;
use std::time::{Duration, Instant};

/// State of one broker's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Calls fail fast until the cooldown has passed.
    Open,
    /// One probe call is allowed through; its outcome closes or re-opens the circuit.
    HalfOpen,
}

/// A circuit breaker for one broker: after `threshold` consecutive connection failures, calls
/// fail fast for `cooldown`, so a dead broker costs callers nothing but an error.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                failures: 0,
                opened_at: None,
                probe_in_flight: false,
            }),
        }
    }

    /// Asks to make a call. `Err(wait)` means the circuit is open for about `wait` more.
    pub fn admit(&self) -> Result<(), Duration> {
        let mut g = self.lock();
        match g.state {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => {
                let elapsed = g.opened_at.map(|t| t.elapsed()).unwrap_or(self.cooldown);
                if elapsed >= self.cooldown {
                    g.state = BreakerState::HalfOpen;
                    g.probe_in_flight = true;
                    Ok(())
                } else {
                    Err(self.cooldown - elapsed)
                }
            }
            BreakerState::HalfOpen => {
                if g.probe_in_flight {
                    Err(self.cooldown)
                } else {
                    g.probe_in_flight = true;
                    Ok(())
                }
            }
        }
    }

    pub fn on_success(&self) {
        let mut g = self.lock();
        g.state = BreakerState::Closed;
        g.failures = 0;
        g.opened_at = None;
        g.probe_in_flight = false;
    }

    pub fn on_failure(&self) {
        let mut g = self.lock();
        g.probe_in_flight = false;
        match g.state {
            BreakerState::HalfOpen => {
                g.state = BreakerState::Open;
                g.opened_at = Some(Instant::now());
            }
            BreakerState::Closed => {
                g.failures += 1;
                if g.failures >= self.threshold {
                    tracing::warn!(failures = g.failures, "opening SMQ broker circuit");
                    g.state = BreakerState::Open;
                    g.opened_at = Some(Instant::now());
                }
            }
            BreakerState::Open => {}
        }
    }

    /// Releases a half-open probe whose outcome says nothing about the broker's health.
    pub fn on_neutral(&self) {
        let mut g = self.lock();
        if g.state == BreakerState::HalfOpen {
            g.probe_in_flight = false;
        }
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked while holding plain counters.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_after_cooldown() {
        let b = CircuitBreaker::new(3, Duration::from_millis(30));
        for _ in 0..2 {
            assert!(b.admit().is_ok());
            b.on_failure();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit().is_ok());
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.admit().is_err(), "open circuit must fail fast");

        std::thread::sleep(Duration::from_millis(40));
        assert!(b.admit().is_ok(), "one probe after the cooldown");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit().is_err(), "only one probe at a time");
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Open);

        std::thread::sleep(Duration::from_millis(40));
        assert!(b.admit().is_ok());
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit().is_ok());
    }

    #[test]
    fn success_resets_the_failure_count() {
        let b = CircuitBreaker::new(2, Duration::from_secs(60));
        b.on_failure();
        b.on_success();
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
