use std::future::Future;
use std::time::Duration;

use crate::error::SmqResult;

/// Exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    /// Attempts in total, the first one included.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(2),
            multiplier: 2.0,
            max_attempts: 6,
        }
    }
}

impl RetryPolicy {
    pub fn backoff(&self) -> Backoff {
        Backoff {
            policy: self.clone(),
            attempt: 0,
        }
    }

    /// Runs `op` until it succeeds, fails with a non-retriable error, or attempts run out.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> SmqResult<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = SmqResult<T>>,
    {
        let mut backoff = self.backoff();
        loop {
            let attempt = backoff.attempt;
            match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retriable() => match backoff.next_delay() {
                    Some(d) => {
                        tracing::debug!(what, attempt, error = %e, delay = ?d, "retrying SMQ call");
                        tokio::time::sleep(d).await;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }
}

/// Delays for successive attempts: a random duration in [0, min(max, initial·multiplier^n)].
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
}

impl Backoff {
    /// The delay before the next attempt, or None when attempts are used up.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.attempt += 1;
        if self.attempt >= self.policy.max_attempts {
            return None;
        }
        Some(self.jittered(self.attempt - 1))
    }

    /// Like `next_delay`, but never gives up (for reconnect loops).
    pub fn next_delay_unbounded(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        self.jittered(self.attempt - 1)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn jittered(&self, n: u32) -> Duration {
        let cap = self.policy.initial.as_secs_f64() * self.policy.multiplier.powi(n.min(30) as i32);
        let cap = cap.min(self.policy.max.as_secs_f64());
        // Full jitter, but never below a tenth of the cap so retries don't spin.
        let r: f64 = rand::random();
        Duration::from_secs_f64(cap * (0.1 + 0.9 * r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SmqError;

    #[test]
    fn delays_grow_stay_capped_and_end() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            multiplier: 2.0,
            max_attempts: 5,
        };
        let mut b = policy.backoff();
        let caps = [100, 200, 400, 400];
        for cap in caps {
            let d = b.next_delay().expect("attempts left");
            assert!(d <= Duration::from_millis(cap), "{d:?} > {cap}ms");
            assert!(
                d >= Duration::from_millis(cap / 10),
                "{d:?} below a tenth of {cap}ms"
            );
        }
        assert_eq!(b.next_delay(), None);
    }

    #[tokio::test]
    async fn retries_only_retriable_errors() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
            multiplier: 2.0,
            max_attempts: 4,
        };
        let mut calls = 0;
        let r: SmqResult<()> = policy
            .retry("t", |_| {
                calls += 1;
                async { Err(SmqError::NoBroker("down".into())) }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls, 4);

        let mut calls = 0;
        let r: SmqResult<()> = policy
            .retry("t", |_| {
                calls += 1;
                async { Err(SmqError::InvalidPartitionCount(0)) }
            })
            .await;
        assert!(matches!(r, Err(SmqError::InvalidPartitionCount(0))));
        assert_eq!(calls, 1);

        let r = policy
            .retry("t", |attempt| async move {
                if attempt < 2 {
                    Err(SmqError::NoBroker("down".into()))
                } else {
                    Ok(attempt)
                }
            })
            .await;
        assert_eq!(r.unwrap(), 2);
    }
}
