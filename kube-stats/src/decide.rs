//! Pure decisions of the statistics reporter: which KafkaTopics this gateway reports for, what
//! their statistics block says, whether it must be written now, and the global write pacing.
//! Nothing here does I/O, so every rule is unit-tested without an API server.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kafka_crds::KafkaTopic;
use kafka_crds::topic::{MAX_PARTITIONS_IN_STATUS, PartitionStats, TopicStats};

/// How much the reporter writes (the KafkaGateway's `statsReporting.mode`; `Disabled` is the
/// reporter not started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Totals only (`status.stats`).
    Summary,
    /// Totals and per-partition offsets (`status.partitions`, up to
    /// [`MAX_PARTITIONS_IN_STATUS`] partitions).
    Full,
}

/// A KafkaTopic this gateway reports for.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// `metadata.name` of the KafkaTopic.
    pub object: String,
    /// The Kafka topic it stands for.
    pub topic: String,
    /// The statistics it currently shows (what the last reporter wrote).
    pub shown: Option<Report>,
    /// When those were taken (`status.stats.observedAt`).
    pub shown_at: Option<Timestamp>,
}

/// The Kafka topic a KafkaTopic stands for: the name the operator recorded in `status.topicName`
/// (the topic it created or adopted), else the name the spec asks for (`spec.topicName`, else
/// `metadata.name`), which the operator will record once it has created the topic.
pub fn topic_of(obj: &KafkaTopic) -> String {
    obj.status
        .as_ref()
        .and_then(|s| s.topic_name.clone())
        .unwrap_or_else(|| obj.desired_topic_name())
}

/// The KafkaTopics (of one namespace) that reference `gateway`, each with its Kafka topic. When
/// several stand for the same topic, only one gets the statistics: the one the operator recorded
/// the topic for, else the oldest (then by name), the same object the operator lets manage it;
/// the others show `ResourceConflict` and no figures.
pub fn targets<'a>(
    objects: impl IntoIterator<Item = &'a KafkaTopic>,
    gateway: &str,
) -> Vec<Target> {
    let mut by_topic: BTreeMap<String, Vec<&KafkaTopic>> = BTreeMap::new();
    for o in objects {
        if o.spec.gateway_ref.name != gateway || o.metadata.name.is_none() {
            continue;
        }
        by_topic.entry(topic_of(o)).or_default().push(o);
    }
    by_topic
        .into_iter()
        .filter_map(|(topic, mut contenders)| {
            contenders.sort_by(|a, b| {
                let claimed = |o: &KafkaTopic| {
                    o.status
                        .as_ref()
                        .and_then(|s| s.topic_name.as_deref())
                        .is_some_and(|n| n == topic)
                };
                // Claimed first, then oldest, then by name; a missing timestamp sorts last.
                claimed(b)
                    .cmp(&claimed(a))
                    .then_with(|| {
                        let ts =
                            |o: &KafkaTopic| o.metadata.creation_timestamp.as_ref().map(|t| t.0);
                        match (ts(a), ts(b)) {
                            (Some(x), Some(y)) => x.cmp(&y),
                            (Some(_), None) => std::cmp::Ordering::Less,
                            (None, Some(_)) => std::cmp::Ordering::Greater,
                            (None, None) => std::cmp::Ordering::Equal,
                        }
                    })
                    .then_with(|| a.metadata.name.cmp(&b.metadata.name))
            });
            let winner = contenders.first()?;
            let status = winner.status.as_ref();
            let stats = status.and_then(|s| s.stats.as_ref());
            Some(Target {
                object: winner.metadata.name.clone()?,
                topic,
                shown: stats.map(|st| Report {
                    high_watermark_sum: st.high_watermark_sum,
                    retained_records: st.retained_records,
                    partitions_reported: st.partitions_reported,
                    partitions: sorted(status.map(|s| s.partitions.clone()).unwrap_or_default()),
                }),
                shown_at: stats.and_then(|st| st.observed_at.as_ref()).map(|t| t.0),
            })
        })
        .collect()
}

fn sorted(mut v: Vec<PartitionStats>) -> Vec<PartitionStats> {
    v.sort_by_key(|p| p.partition);
    v
}

/// One partition's offsets as this gateway sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    pub partition: i32,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// The values of a statistics block, without when and by whom they were taken: two reports are
/// equal exactly when a write would change nothing a user reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub high_watermark_sum: i64,
    pub retained_records: i64,
    pub partitions_reported: i32,
    /// Sorted by partition; empty in `Summary` mode and above [`MAX_PARTITIONS_IN_STATUS`].
    pub partitions: Vec<PartitionStats>,
}

pub fn report(figures: &[Figures], mode: Mode) -> Report {
    let list = mode == Mode::Full && figures.len() <= MAX_PARTITIONS_IN_STATUS;
    Report {
        high_watermark_sum: figures.iter().map(|f| f.high_watermark).sum(),
        retained_records: figures
            .iter()
            .map(|f| (f.high_watermark - f.log_start_offset).max(0))
            .sum(),
        partitions_reported: figures.len() as i32,
        partitions: if list {
            sorted(
                figures
                    .iter()
                    .map(|f| PartitionStats {
                        partition: f.partition,
                        high_watermark: f.high_watermark,
                        log_start_offset: f.log_start_offset,
                    })
                    .collect(),
            )
        } else {
            Vec::new()
        },
    }
}

/// The status fields the reporter applies, and nothing else: under server-side apply the
/// reporter's field manager then owns exactly `status.stats` and the `status.partitions` entries,
/// and the operator's conditions, topicName and counts stay the operator's.
pub fn status_body(r: &Report, observed_at: Timestamp, reporter: &str) -> serde_json::Value {
    let status = kafka_crds::KafkaTopicStatus {
        stats: Some(TopicStats {
            high_watermark_sum: r.high_watermark_sum,
            retained_records: r.retained_records,
            partitions_reported: r.partitions_reported,
            observed_at: Some(Time(observed_at)),
            reporter: Some(reporter.to_string()),
        }),
        partitions: r.partitions.clone(),
        ..Default::default()
    };
    serde_json::json!({ "status": status })
}

/// What to do about one KafkaTopic in this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It already shows these values.
    Unchanged,
    /// It shows a higher high water mark than this gateway sees. High water marks never go down,
    /// so this gateway's view is older than the one shown (it is not the gateway that writes
    /// the partition, and its ledger dates from its start): writing would move them backwards.
    Behind,
    /// Changed, but written less than an interval ago; due in this long.
    Wait(Duration),
    Write,
}

/// Writes only changed values, and at most once per `interval` per topic. The last write is the
/// later of this process's own (`written_at`) and the shown `observedAt`, so a new leader does
/// not rewrite a topic its predecessor just wrote.
pub fn decide(
    new: &Report,
    target: &Target,
    written_at: Option<Timestamp>,
    now: Timestamp,
    interval: Duration,
) -> Decision {
    if let Some(shown) = &target.shown {
        if shown == new {
            return Decision::Unchanged;
        }
        if behind(new, shown) {
            return Decision::Behind;
        }
    }
    let last = match (written_at, target.shown_at) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let Some(last) = last else {
        return Decision::Write;
    };
    let interval = SignedDuration::try_from(interval).unwrap_or(SignedDuration::MAX);
    let elapsed = now.duration_since(last);
    if elapsed >= interval {
        Decision::Write
    } else {
        // A clock that went backwards gives a negative elapsed time: wait at most one interval.
        let left = (interval - elapsed).min(interval);
        Decision::Wait(Duration::try_from(left).unwrap_or_default())
    }
}

/// Whether `new` has a lower high water mark than `shown`, in total or (when both list them) for
/// any partition. Comparing the sum alone would miss one partition behind and another ahead.
fn behind(new: &Report, shown: &Report) -> bool {
    if new.high_watermark_sum < shown.high_watermark_sum {
        return true;
    }
    shown.partitions.iter().any(|s| {
        new.partitions
            .iter()
            .find(|n| n.partition == s.partition)
            .is_some_and(|n| n.high_watermark < s.high_watermark)
    })
}

/// Token bucket for the global writes-per-second cap. The burst is one second's worth, so no
/// one-second window ever sees more than twice the cap, and a steady backlog drains at the cap.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(per_second: u32, now: Instant) -> Self {
        let per_second = f64::from(per_second.max(1));
        RateLimiter {
            per_second,
            tokens: per_second,
            last: now,
        }
    }

    /// Takes a token if one is there; otherwise says how long until one is.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kafka_crds::topic::{GatewayRef, KafkaTopicSpec};
    use kafka_crds::{KafkaTopicStatus, topic::TopicStats};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn topic(name: &str, gateway: &str, created: i64) -> KafkaTopic {
        KafkaTopic {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("apps".into()),
                creation_timestamp: Some(Time(at(created))),
                ..Default::default()
            },
            spec: KafkaTopicSpec {
                gateway_ref: GatewayRef {
                    name: gateway.into(),
                },
                ..Default::default()
            },
            status: None,
        }
    }

    fn figures(hwms: &[(i64, i64)]) -> Vec<Figures> {
        hwms.iter()
            .enumerate()
            .map(|(i, &(hwm, start))| Figures {
                partition: i as i32,
                high_watermark: hwm,
                log_start_offset: start,
            })
            .collect()
    }

    #[test]
    fn the_topic_is_the_recorded_name_then_spec_topic_name_then_metadata_name() {
        let mut t = topic("orders", "gw", 1);
        assert_eq!(topic_of(&t), "orders");
        t.spec.topic_name = Some("Orders_V1".into());
        assert_eq!(topic_of(&t), "Orders_V1");
        t.status = Some(KafkaTopicStatus {
            topic_name: Some("orders-recorded".into()),
            ..Default::default()
        });
        assert_eq!(topic_of(&t), "orders-recorded");
    }

    #[test]
    fn only_topics_of_this_gateway_are_reported_and_a_shared_name_goes_to_one_object() {
        let mine = topic("a", "gw", 10);
        let other_gateway = topic("b", "other", 10);
        // Two objects for topic "shared": the younger one recorded it (it created the topic), so
        // it gets the figures even though the other one is older.
        let mut older = topic("older", "gw", 1);
        older.spec.topic_name = Some("shared".into());
        let mut owner = topic("owner", "gw", 5);
        owner.spec.topic_name = Some("shared".into());
        owner.status = Some(KafkaTopicStatus {
            topic_name: Some("shared".into()),
            ..Default::default()
        });
        let objects = [mine, other_gateway, older.clone(), owner];
        let t = targets(&objects, "gw");
        let pairs: Vec<_> = t
            .iter()
            .map(|t| (t.object.as_str(), t.topic.as_str()))
            .collect();
        assert_eq!(pairs, [("a", "a"), ("owner", "shared")]);

        // Without a recorded name the oldest wins, as in the operator.
        let mut younger = topic("younger", "gw", 9);
        younger.spec.topic_name = Some("shared".into());
        let t = targets([&younger, &older], "gw");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].object, "older");
    }

    #[test]
    fn a_target_carries_what_the_object_shows() {
        let mut t = topic("a", "gw", 1);
        t.status = Some(KafkaTopicStatus {
            stats: Some(TopicStats {
                high_watermark_sum: 7,
                retained_records: 5,
                partitions_reported: 2,
                observed_at: Some(Time(at(100))),
                reporter: Some("gw-0".into()),
            }),
            partitions: vec![
                PartitionStats {
                    partition: 1,
                    high_watermark: 4,
                    log_start_offset: 0,
                },
                PartitionStats {
                    partition: 0,
                    high_watermark: 3,
                    log_start_offset: 2,
                },
            ],
            ..Default::default()
        });
        let target = &targets([&t], "gw")[0];
        assert_eq!(target.shown_at, Some(at(100)));
        // The same figures in the gateway's own order make an equal report: nothing to write.
        let r = report(&figures(&[(3, 2), (4, 0)]), Mode::Full);
        assert_eq!(target.shown.as_ref(), Some(&r));
        assert_eq!(
            decide(&r, target, None, at(101), Duration::from_secs(60)),
            Decision::Unchanged
        );
    }

    #[test]
    fn report_sums_and_lists_partitions_only_in_full_mode_and_up_to_the_cap() {
        let f = figures(&[(10, 4), (5, 5), (0, 0)]);
        let full = report(&f, Mode::Full);
        assert_eq!(full.high_watermark_sum, 15);
        assert_eq!(full.retained_records, 6);
        assert_eq!(full.partitions_reported, 3);
        assert_eq!(full.partitions.len(), 3);
        assert_eq!(full.partitions[0].log_start_offset, 4);

        let summary = report(&f, Mode::Summary);
        assert_eq!(summary.high_watermark_sum, 15);
        assert!(summary.partitions.is_empty());

        let many = figures(&vec![(1, 0); MAX_PARTITIONS_IN_STATUS + 1]);
        let r = report(&many, Mode::Full);
        assert!(r.partitions.is_empty());
        assert_eq!(r.high_watermark_sum, MAX_PARTITIONS_IN_STATUS as i64 + 1);
    }

    #[test]
    fn the_body_holds_only_the_reporters_fields() {
        let r = report(&figures(&[(3, 1)]), Mode::Full);
        let body = status_body(&r, at(0), "gw-1");
        let status = body["status"].as_object().unwrap();
        let keys: Vec<_> = status.keys().map(String::as_str).collect();
        assert_eq!(keys, ["partitions", "stats"]);
        assert_eq!(body["status"]["stats"]["highWatermarkSum"], 3);
        assert_eq!(body["status"]["stats"]["retainedRecords"], 2);
        assert_eq!(body["status"]["stats"]["reporter"], "gw-1");
        assert_eq!(
            body["status"]["stats"]["observedAt"],
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(body["status"]["partitions"][0]["logStartOffset"], 1);

        // Summary mode leaves the list out, so applying it drops the entries this manager owned.
        let r = report(&figures(&[(3, 1)]), Mode::Summary);
        let body = status_body(&r, at(0), "gw-1");
        assert!(body["status"].get("partitions").is_none());
    }

    #[test]
    fn writes_only_changes_and_no_more_often_than_the_interval() {
        let interval = Duration::from_secs(60);
        let mut target = targets([&topic("a", "gw", 1)], "gw").remove(0);
        let r1 = report(&figures(&[(1, 0)]), Mode::Summary);
        // Never written: write at once.
        assert_eq!(
            decide(&r1, &target, None, at(1000), interval),
            Decision::Write
        );

        target.shown = Some(r1.clone());
        target.shown_at = Some(at(1000));
        assert_eq!(
            decide(&r1, &target, None, at(5000), interval),
            Decision::Unchanged
        );

        let r2 = report(&figures(&[(2, 0)]), Mode::Summary);
        assert_eq!(
            decide(&r2, &target, None, at(1010), interval),
            Decision::Wait(Duration::from_secs(50))
        );
        assert_eq!(
            decide(&r2, &target, None, at(1060), interval),
            Decision::Write
        );
        // Our own later write counts even before the watch shows it.
        assert_eq!(
            decide(&r2, &target, Some(at(1060)), at(1070), interval),
            Decision::Wait(Duration::from_secs(50))
        );
        // A clock far behind the shown time never waits longer than one interval.
        assert_eq!(
            decide(&r2, &target, None, at(0), interval),
            Decision::Wait(interval)
        );
    }

    #[test]
    fn a_gateway_with_an_older_view_never_moves_high_water_marks_back() {
        let interval = Duration::from_secs(60);
        let mut target = targets([&topic("a", "gw", 1)], "gw").remove(0);
        target.shown = Some(report(&figures(&[(10, 0), (5, 0)]), Mode::Full));
        target.shown_at = Some(at(0));
        // Lower in total.
        let older = report(&figures(&[(8, 0), (5, 0)]), Mode::Full);
        assert_eq!(
            decide(&older, &target, None, at(1000), interval),
            Decision::Behind
        );
        // Same total, but partition 0 went back: still an older view.
        let mixed = report(&figures(&[(9, 0), (6, 0)]), Mode::Full);
        assert_eq!(
            decide(&mixed, &target, None, at(1000), interval),
            Decision::Behind
        );
        // Summary against a shown list: the sum decides.
        let summary = report(&figures(&[(9, 0), (6, 0)]), Mode::Summary);
        assert_eq!(
            decide(&summary, &target, None, at(1000), interval),
            Decision::Write
        );
        // A log start moving up while the high water marks stay is news, not an older view.
        let trimmed = report(&figures(&[(10, 4), (5, 0)]), Mode::Full);
        assert_eq!(
            decide(&trimmed, &target, None, at(1000), interval),
            Decision::Write
        );
    }

    #[test]
    fn the_limiter_allows_a_one_second_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(4, t0);
        for _ in 0..4 {
            assert!(l.try_take(t0).is_ok());
        }
        let wait = l.try_take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(250));
        assert!(l.try_take(t0 + Duration::from_millis(250)).is_ok());
        assert!(l.try_take(t0 + Duration::from_millis(260)).is_err());
        // Idle time refills up to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        let taken = (0..10).filter(|_| l.try_take(later).is_ok()).count();
        assert_eq!(taken, 4);
    }
}
