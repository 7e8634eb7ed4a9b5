//! When an acknowledged record is safe from a broker crash.
//!
//! SMQ acks a record once it is in the leader broker's memory; the broker writes its buffer to
//! the filer later (every `logFlushInterval`, when an 8 MiB window fills, or when the partition
//! unloads) and never at shutdown. A record acked on a publish stream is therefore durable only
//! once a flush that holds it has finished *and the broker process that acked it is the one
//! that flushed*. Two kinds of evidence prove this, both tied to one stream (an "epoch": a broker
//! restart breaks the stream, so a live stream means the same broker process):
//!
//! - **Time.** The broker's flush ticker fires every flush interval, so a record acked at `t` has
//!   been handed to the flusher by `t + interval`; after a further `settle` its upload has
//!   finished. A probe answered by the broker at `p ≥ t + interval + settle`, with the stream
//!   still unbroken afterwards, proves the process lived that long.
//! - **Buffer start.** FetchMessage reports the first offset of the broker's in-memory buffer
//!   (`log_start_offset`). The buffer restarts at the next offset whenever it is handed to the
//!   flusher, so a value `b > 0` proves every offset below `b` was handed over; after `settle`
//!   (and a later live probe) they are durable. An empty buffer reports 0, so 0 proves nothing.
//!
//! The assumption is that an upload finishes within `settle` (a local volume server takes
//! milliseconds for the 8 MiB maximum); a volume server down for longer while the broker also
//! crashes can still lose records. That assumption fails when the broker cannot write (a full
//! disk: it retries the same flush every 737 ms for as long as it takes), so a third kind of
//! evidence replaces both when the caller can read the partition's log files:
//!
//! - **Written.** The broker flushes one buffer at a time, in order, retrying until it succeeds,
//!   and the filer lists a chunk only once its bytes are on a volume server. A record found in a
//!   log file therefore proves every record acked before it on the same stream written
//!   ([`crate::PartitionPublisher::confirmed_by_caller`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long SMQ keeps acknowledged records only in memory, as configured on the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushTiming {
    /// The broker's `logFlushInterval`.
    pub interval: Duration,
    /// Time allowed for a flush handed over to reach the filer.
    pub settle: Duration,
}

impl Default for FlushTiming {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            settle: Duration::from_secs(1),
        }
    }
}

/// The durable prefix of one publish stream's offsets.
#[derive(Debug)]
pub(crate) struct Watermark {
    epoch: u64,
    /// Every SMQ offset below this, acked on `epoch`, is durable.
    durable_below: i64,
    /// One past the highest offset acked on `epoch`.
    acked_below: i64,
    /// (time, `acked_below` then): everything acked before the time.
    samples: VecDeque<(Instant, i64)>,
    /// (time it becomes durable if the broker still lives, offsets below): from buffer starts.
    handed_over: VecDeque<(Instant, i64)>,
}

impl Watermark {
    pub(crate) fn new(epoch: u64) -> Self {
        Self {
            epoch,
            durable_below: 0,
            acked_below: 0,
            samples: VecDeque::new(),
            handed_over: VecDeque::new(),
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Offsets below this, acked on [`Watermark::epoch`], are durable.
    pub(crate) fn durable_below(&self) -> i64 {
        self.durable_below
    }

    /// Whether some acked offset is not yet known durable.
    pub(crate) fn has_unconfirmed(&self) -> bool {
        self.acked_below > self.durable_below
    }

    /// Offsets below `below` were found written (see the module's "Written" evidence); capped
    /// at what this stream acked.
    pub(crate) fn on_written(&mut self, below: i64) {
        self.durable_below = self.durable_below.max(below.min(self.acked_below));
    }

    pub(crate) fn on_ack(&mut self, offset: i64) {
        self.acked_below = self.acked_below.max(offset + 1);
    }

    /// Notes that everything acked so far was acked before `now`.
    pub(crate) fn sample(&mut self, now: Instant) {
        if self.samples.back().is_none_or(|s| s.1 < self.acked_below) {
            self.samples.push_back((now, self.acked_below));
        }
    }

    /// A probe sent at `sent` and answered at `answered` with the broker's buffer start,
    /// after which the stream of this epoch was still unbroken.
    pub(crate) fn on_live_probe(
        &mut self,
        timing: FlushTiming,
        sent: Instant,
        answered: Instant,
        buffer_start: i64,
    ) {
        let wait = timing.interval + timing.settle;
        while let Some(&(t, below)) = self.samples.front() {
            if t + wait > sent {
                break;
            }
            self.durable_below = self.durable_below.max(below);
            self.samples.pop_front();
        }
        while let Some(&(ready, below)) = self.handed_over.front() {
            if ready > sent {
                break;
            }
            self.durable_below = self.durable_below.max(below);
            self.handed_over.pop_front();
        }
        // Only offsets this stream acked: a buffer start beyond them says nothing about ours.
        let start = buffer_start.min(self.acked_below);
        if start > self.durable_below && self.handed_over.back().is_none_or(|h| h.1 < start) {
            self.handed_over
                .push_back((answered + timing.settle, start));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: FlushTiming = FlushTiming {
        interval: Duration::from_secs(5),
        settle: Duration::from_secs(1),
    };

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn time_rule_needs_a_live_probe_after_interval_and_settle() {
        let t0 = Instant::now();
        let mut w = Watermark::new(1);
        for o in 0..10 {
            w.on_ack(o);
        }
        w.sample(at(t0, 0));
        assert!(w.has_unconfirmed());
        // Buffer start 0: the buffer holds offset 0 on, or is empty; either way no proof.
        w.on_live_probe(T, at(t0, 5_999), at(t0, 6_000), 0);
        assert_eq!(w.durable_below(), 0);
        w.on_live_probe(T, at(t0, 6_000), at(t0, 6_001), 0);
        assert_eq!(w.durable_below(), 10);
        assert!(!w.has_unconfirmed());
    }

    #[test]
    fn buffer_start_confirms_after_settle_and_never_beyond_acked() {
        let t0 = Instant::now();
        let mut w = Watermark::new(3);
        for o in 0..20 {
            w.on_ack(o);
        }
        w.sample(at(t0, 0));
        w.on_live_probe(T, at(t0, 100), at(t0, 110), 12);
        assert_eq!(w.durable_below(), 0, "handed over, not yet written");
        w.on_live_probe(T, at(t0, 900), at(t0, 910), 12);
        assert_eq!(w.durable_below(), 0);
        w.on_live_probe(T, at(t0, 1_110), at(t0, 1_120), 50);
        assert_eq!(w.durable_below(), 12);
        w.on_live_probe(T, at(t0, 2_200), at(t0, 2_210), 50);
        assert_eq!(w.durable_below(), 20, "capped at what this stream acked");
    }

    #[test]
    fn written_records_confirm_at_once_but_never_beyond_acked() {
        let mut w = Watermark::new(2);
        for o in 0..10 {
            w.on_ack(o);
        }
        w.on_written(4);
        assert_eq!(w.durable_below(), 4);
        assert!(w.has_unconfirmed());
        w.on_written(3);
        assert_eq!(w.durable_below(), 4, "never moves back");
        w.on_written(50);
        assert_eq!(w.durable_below(), 10);
        assert!(!w.has_unconfirmed());
    }
}
