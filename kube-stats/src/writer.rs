//! The statistics writer: while this gateway holds the Lease, it reads its own partitions'
//! offsets for every KafkaTopic of its KafkaGateway and applies the changed ones to
//! `status.stats` / `status.partitions`, paced by [`decide`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kafka_crds::KafkaTopic;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store as Reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

use crate::Host;
use crate::decide::{self, Decision, Figures, Mode, RateLimiter};

/// The field manager of everything the reporter writes. Distinct from the operator's
/// (`kafka-operator`), so server-side apply keeps the two sets of fields apart.
pub const FIELD_MANAGER: &str = "kafka-gateway-stats";

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub gateway: String,
    pub identity: String,
    pub mode: Mode,
    pub interval: Duration,
    pub max_writes_per_second: u32,
}

/// How often the writer looks at the figures. Well below the interval, so a change is written
/// soon after the interval allows; at least a second, since looking costs a pass over every topic.
fn tick(interval: Duration) -> Duration {
    (interval / 5).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

pub struct Writer<H> {
    cfg: WriterConfig,
    api: Api<KafkaTopic>,
    topics: Reflector<KafkaTopic>,
    host: Arc<H>,
    limiter: RateLimiter,
    /// When this process last wrote each object (by name), for the interval.
    written: HashMap<String, Timestamp>,
    /// Topics the gateway did not have, by name, with when that was seen: asked again after an
    /// interval rather than on every tick.
    missing: HashMap<String, Instant>,
}

impl<H: Host> Writer<H> {
    /// Starts watching the namespace's KafkaTopics (the watch runs until the process ends).
    pub fn new(cfg: WriterConfig, api: Api<KafkaTopic>, host: Arc<H>) -> Self {
        let (reader, writer) = reflector::store();
        let stream = reflector::reflector(writer, watcher(api.clone(), watcher::Config::default()))
            .default_backoff()
            .touched_objects();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "watching KafkaTopics failed; retrying");
                }
            }
        });
        let limiter = RateLimiter::new(cfg.max_writes_per_second, Instant::now());
        Writer {
            cfg,
            api,
            topics: reader,
            host,
            limiter,
            written: HashMap::new(),
            missing: HashMap::new(),
        }
    }

    /// Writes while leading, until `shutdown`.
    pub async fn run(
        mut self,
        mut leader: watch::Receiver<bool>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        tokio::select! {
            r = self.topics.wait_until_ready() => if r.is_err() { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let tick = tick(self.cfg.interval);
        loop {
            tokio::select! {
                r = leader.wait_for(|l| *l) => if r.is_err() { return },
                _ = shutdown.wait_for(|s| *s) => return,
            }
            // A new term: what this process wrote in an earlier one may have been overwritten
            // since; the objects' observedAt carries the interval across leaders.
            self.written.clear();
            self.host.set_leading(true);
            while *leader.borrow() && !*shutdown.borrow() {
                self.pass(&leader).await;
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = leader.wait_for(|l| !*l) => {}
                    _ = shutdown.wait_for(|s| *s) => {}
                }
            }
            self.host.set_leading(false);
        }
    }

    /// One look at every KafkaTopic of the gateway, writing those that are due.
    async fn pass(&mut self, leader: &watch::Receiver<bool>) {
        let objects = self.topics.state();
        let targets = decide::targets(objects.iter().map(|o| o.as_ref()), &self.cfg.gateway);
        let live: std::collections::HashSet<&str> =
            targets.iter().map(|t| t.object.as_str()).collect();
        self.written.retain(|k, _| live.contains(k.as_str()));
        let mut due = Vec::new();
        for target in &targets {
            let Some(figures) = self.figures(&target.topic).await else {
                continue;
            };
            let report = decide::report(&figures, self.cfg.mode);
            let decision = decide::decide(
                &report,
                target,
                self.written.get(&target.object).copied(),
                Timestamp::now(),
                self.cfg.interval,
            );
            if decision == Decision::Behind {
                tracing::debug!(kafka_topic = %target.object, "the shown high water marks are ahead of this gateway's; not written");
            }
            if decision == Decision::Write {
                let last = self
                    .written
                    .get(&target.object)
                    .copied()
                    .or(target.shown_at);
                due.push((last, target.object.clone(), report));
            }
        }
        // Longest-waiting first, so a backlog under the write cap is served fairly.
        due.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        for (_, object, report) in due {
            while let Err(wait) = self.limiter.try_take(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            if !*leader.borrow() {
                return;
            }
            let now = Timestamp::now();
            match self.apply(&object, &report, now).await {
                Ok(()) => {
                    self.host.status_written(true);
                    self.written.insert(object, now);
                }
                Err(e) => {
                    self.host.status_written(false);
                    tracing::warn!(kafka_topic = %object, error = %e, "writing KafkaTopic statistics failed");
                }
            }
        }
    }

    /// This gateway's offsets of every partition of `topic`, or None when there is no such topic
    /// (yet) or the gateway cannot tell right now.
    async fn figures(&mut self, topic: &str) -> Option<Vec<Figures>> {
        if let Some(seen) = self.missing.get(topic) {
            if seen.elapsed() < self.cfg.interval {
                return None;
            }
            self.missing.remove(topic);
        }
        match self.host.partitions(topic).await {
            Ok(Some(figures)) => Some(figures),
            Ok(None) => {
                self.missing.insert(topic.to_string(), Instant::now());
                None
            }
            Err(e) => {
                tracing::debug!(%topic, error = %e, "no statistics for this topic this round");
                None
            }
        }
    }

    async fn apply(
        &self,
        object: &str,
        report: &decide::Report,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let mut body = decide::status_body(report, now, &self.cfg.identity);
        body["apiVersion"] = KafkaTopic::api_version(&()).into();
        body["kind"] = KafkaTopic::kind(&()).into();
        body["metadata"] = serde_json::json!({ "name": object });
        // Forced: the fields are this manager's alone by design; a hand edit of them loses.
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match self
            .api
            .patch_status(object, &params, &Patch::Apply(&body))
            .await
        {
            Ok(obj) => {
                tracing::debug!(kafka_topic = %obj.name_any(), hwm = report.high_watermark_sum, "KafkaTopic statistics written");
                Ok(())
            }
            // Deleted since the watch saw it: nothing to report on.
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_often_enough_for_the_interval_but_not_more_than_once_a_second() {
        assert_eq!(tick(Duration::from_secs(60)), Duration::from_secs(5));
        assert_eq!(tick(Duration::from_secs(10)), Duration::from_secs(2));
        assert_eq!(tick(Duration::from_secs(1)), Duration::from_secs(1));
    }
}
