//! Pure decisions of the KafkaTopic reconciler: given what the object asks for, what the
//! cluster's other objects say and what SMQ reports, what to do and what status to show.
//! Nothing here does I/O, so every branch is unit-tested.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_crds::conditions::{reasons, types};
use kafka_crds::topic::{DeletionPolicy, KafkaTopicStatus, MAX_PARTITIONS};

use crate::conditions::Cond;

/// What the reconciler knows about the KafkaTopic itself.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicFacts {
    pub generation: Option<i64>,
    pub desired_name: String,
    /// `status.topicName`: recorded before this object created its SMQ topic (or when it adopted
    /// one), so it marks the SMQ topic as this object's own.
    pub recorded_name: Option<String>,
    /// `status.partitionCount`: the count last seen in SMQ.
    pub recorded_partitions: Option<i32>,
    pub partitions: Option<i32>,
    pub config: BTreeMap<String, String>,
    pub paused: bool,
    pub unmanaged: bool,
    pub adopt: bool,
}

impl TopicFacts {
    /// Whether the SMQ topic of this name is this object's own.
    pub fn claimed(&self) -> bool {
        self.recorded_name.as_deref() == Some(self.desired_name.as_str())
    }
}

/// What the referenced KafkaGateway says about where topics live.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GatewayFacts {
    pub master: String,
    pub smq_namespace: String,
    pub default_partitions: i32,
}

/// How the reconcile ended, from the user's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ready,
    /// Not there yet; retrying on its own will get there.
    Progressing {
        reason: &'static str,
        message: String,
    },
    /// Cannot get there without a change by the user.
    Stalled {
        reason: &'static str,
        message: String,
    },
    Paused,
    Unmanaged,
}

impl Verdict {
    fn stalled(reason: &'static str, message: impl Into<String>) -> Self {
        Verdict::Stalled {
            reason,
            message: message.into(),
        }
    }

    fn progressing(reason: &'static str, message: impl Into<String>) -> Self {
        Verdict::Progressing {
            reason,
            message: message.into(),
        }
    }

    pub fn ready_reason(&self) -> &'static str {
        match self {
            Verdict::Ready => reasons::RECONCILED,
            Verdict::Progressing { reason, .. } | Verdict::Stalled { reason, .. } => reason,
            Verdict::Paused => reasons::PAUSED,
            Verdict::Unmanaged => reasons::UNMANAGED,
        }
    }
}

/// Retention the spec asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionWish {
    /// `retention.ms` absent: whatever the topic has is left alone.
    Unmanaged,
    /// `retention.ms: -1`.
    Forever,
    Seconds(i64),
}

impl RetentionWish {
    /// The value for `TopicSpec::retention_seconds` (0 disables retention in SMQ).
    pub fn as_smq(self) -> Option<i64> {
        match self {
            RetentionWish::Unmanaged => None,
            RetentionWish::Forever => Some(0),
            RetentionWish::Seconds(s) => Some(s),
        }
    }

    /// Whether a topic with `observed` retention (None: none) already matches.
    fn matches(self, observed: Option<i64>) -> bool {
        match self {
            RetentionWish::Unmanaged => true,
            RetentionWish::Forever => observed.is_none(),
            RetentionWish::Seconds(s) => observed == Some(s),
        }
    }
}

/// `spec.config` split into what SMQ can honour and what it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigAnalysis {
    pub retention: RetentionWish,
    /// `smq.storage.format`, registered as the SMQ topic's record type when the topic is
    /// created (the gateway reads the format from there); None leaves it to the gateway's default.
    pub format: Option<kafka_smq_format::StorageFormat>,
    /// Keys (or `key=value` for unsupported values) SMQ cannot honour, sorted.
    pub unsupported: Vec<String>,
}

/// Reads `spec.config`. An unparseable value of a supported key is an error (the user meant
/// something the operator would get wrong); unknown keys are only reported.
pub fn analyze_config(config: &BTreeMap<String, String>) -> Result<ConfigAnalysis, String> {
    let mut retention = RetentionWish::Unmanaged;
    let mut format = None;
    let mut unsupported = Vec::new();
    for (key, value) in config {
        match key.as_str() {
            kafka_smq_format::CONFIG_KEY => {
                format = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|e: kafka_smq_format::UnknownFormat| {
                            format!("spec.config: {e}")
                        })?,
                );
            }
            "retention.ms" => {
                let ms: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("retention.ms {value:?} is not an integer"))?;
                retention = match ms {
                    -1 => RetentionWish::Forever,
                    // SMQ keeps retention in whole seconds; round up so nothing expires early.
                    ms if ms > 0 => RetentionWish::Seconds((ms + 999) / 1000),
                    _ => return Err(format!("retention.ms must be -1 or positive, not {ms}")),
                };
            }
            // SMQ only ever deletes old data (no compaction), which is Kafka's "delete".
            "cleanup.policy" if value.trim() == "delete" => {}
            "cleanup.policy" => unsupported.push(format!("{key}={value}")),
            _ => unsupported.push(key.clone()),
        }
    }
    Ok(ConfigAnalysis {
        retention,
        format,
        unsupported,
    })
}

/// Checks that need no SMQ call. `Err` ends the reconcile with that verdict.
pub fn precheck(
    facts: &TopicFacts,
    gateway: Option<&GatewayFacts>,
    conflict_winner: Option<&str>,
) -> Result<ConfigAnalysis, Verdict> {
    if facts.unmanaged {
        return Err(Verdict::Unmanaged);
    }
    if facts.paused {
        return Err(Verdict::Paused);
    }
    if let Some(recorded) = &facts.recorded_name
        && recorded != &facts.desired_name
    {
        return Err(Verdict::stalled(
            reasons::TOPIC_NAME_CHANGE_NOT_ALLOWED,
            format!(
                "this object manages topic {recorded:?}; SMQ cannot rename it to {:?}. Create a new KafkaTopic instead",
                facts.desired_name
            ),
        ));
    }
    if let Some(p) = facts.partitions
        && !(1..=MAX_PARTITIONS).contains(&p)
    {
        return Err(Verdict::stalled(
            reasons::INVALID_SPEC,
            format!("partitions must be 1..={MAX_PARTITIONS}, not {p}"),
        ));
    }
    let analysis =
        analyze_config(&facts.config).map_err(|m| Verdict::stalled(reasons::INVALID_SPEC, m))?;
    if gateway.is_none() {
        return Err(Verdict::progressing(
            reasons::GATEWAY_NOT_FOUND,
            "the KafkaGateway named in spec.gatewayRef does not exist (yet)",
        ));
    }
    if let Some(winner) = conflict_winner {
        return Err(Verdict::stalled(
            reasons::RESOURCE_CONFLICT,
            format!(
                "topic {:?} is managed by KafkaTopic {winner}, which is older",
                facts.desired_name
            ),
        ));
    }
    Ok(analysis)
}

/// What SMQ reports about the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// Every partition of the topic: its base SMQ topic's and those CreatePartitions added.
    pub partitions: i32,
    /// The base SMQ topic's own count (ConfigureTopic with another would repartition it).
    pub base_partitions: i32,
    pub retention_seconds: Option<i64>,
}

/// The SMQ call to make, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Create the topic (SMQ reported it missing). `status.topicName` is written once, together
    /// with Ready, after the call: no separate claim write. Should the process die between the
    /// two, the next reconcile finds an unclaimed topic and reports `TopicAlreadyExists`, which
    /// fails safe (the adopt annotation recovers it); a failed status write within one process is
    /// covered by the reconciler's memory of what it created.
    Create {
        partitions: i32,
        retention_seconds: Option<i64>,
    },
    /// Same partition count (so ConfigureTopic only updates topic.conf), new retention.
    UpdateRetention {
        partitions: i32,
        retention_seconds: Option<i64>,
    },
    /// Add partitions `from..to`: as the gateways' CreatePartitions does, in an SMQ topic of
    /// their own (SMQ cannot grow a topic without hiding its records).
    Grow {
        from: i32,
        to: i32,
    },
    InSync,
    Refuse(Verdict),
}

pub fn plan(
    facts: &TopicFacts,
    config: &ConfigAnalysis,
    gateway: &GatewayFacts,
    observed: Option<Observed>,
) -> Plan {
    let claimed = facts.claimed();
    let Some(observed) = observed else {
        if claimed && let Some(seen) = facts.recorded_partitions {
            // Creating it again could reuse the name of a topic whose data still sits in the
            // filer (SMQ offsets then go wrong, smq-protocol.md §3), or race a filer hiccup that
            // made an existing topic look missing; either way a person should look.
            return Plan::Refuse(Verdict::progressing(
                reasons::TOPIC_MISSING,
                format!(
                    "SMQ no longer reports this topic, which had {seen} partitions; it is not recreated automatically"
                ),
            ));
        }
        return Plan::Create {
            partitions: facts.partitions.unwrap_or(gateway.default_partitions),
            retention_seconds: config.retention.as_smq(),
        };
    };
    if !claimed && !facts.adopt {
        return Plan::Refuse(Verdict::stalled(
            reasons::TOPIC_ALREADY_EXISTS,
            format!(
                "SMQ topic {}/{} exists and was not created by this object; annotate it with {}=\"true\" to take it over",
                gateway.smq_namespace,
                facts.desired_name,
                kafka_crds::annotations::ADOPT
            ),
        ));
    }
    match facts.partitions {
        Some(p) if p < observed.partitions => {
            return Plan::Refuse(Verdict::stalled(
                reasons::PARTITION_DECREASE_NOT_ALLOWED,
                format!(
                    "the topic has {} partitions; decreasing to {p} is not possible",
                    observed.partitions
                ),
            ));
        }
        Some(p) if p > observed.partitions => {
            return Plan::Grow {
                from: observed.partitions,
                to: p,
            };
        }
        _ => {}
    }
    if !config.retention.matches(observed.retention_seconds) {
        return Plan::UpdateRetention {
            partitions: observed.base_partitions,
            retention_seconds: config.retention.as_smq(),
        };
    }
    Plan::InSync
}

/// The conditions for a verdict, plus the `UnsupportedConfig` warning (which never flips Ready).
/// kstatus' `Reconciling` and `Stalled` appear only while True, as kstatus recommends.
pub fn conditions(verdict: &Verdict, unsupported: &[String]) -> Vec<Cond> {
    let mut out = match verdict {
        Verdict::Ready => vec![Cond::yes(
            types::READY,
            reasons::RECONCILED,
            "the SMQ topic matches the spec",
        )],
        Verdict::Progressing { reason, message } => vec![
            Cond::no(types::READY, reason, message.clone()),
            Cond::yes(types::RECONCILING, reason, message.clone()),
        ],
        Verdict::Stalled { reason, message } => vec![
            Cond::no(types::READY, reason, message.clone()),
            Cond::yes(types::STALLED, reason, message.clone()),
        ],
        Verdict::Paused => vec![
            Cond::new(
                types::READY,
                "Unknown",
                reasons::PAUSED,
                "reconciliation is paused by annotation",
            ),
            Cond::yes(
                types::RECONCILIATION_PAUSED,
                reasons::PAUSED,
                format!("{}=\"true\"", kafka_crds::annotations::PAUSED),
            ),
        ],
        Verdict::Unmanaged => vec![
            Cond::new(
                types::READY,
                "Unknown",
                reasons::UNMANAGED,
                "the operator does not manage this topic",
            ),
            Cond::yes(
                types::UNMANAGED,
                reasons::UNMANAGED,
                format!("{}=\"false\"", kafka_crds::annotations::MANAGED),
            ),
        ],
    };
    if !unsupported.is_empty() && !matches!(verdict, Verdict::Unmanaged) {
        out.push(Cond::yes(
            types::UNSUPPORTED_CONFIG,
            reasons::UNSUPPORTED_CONFIG,
            format!("ignored, SMQ cannot honour: {}", unsupported.join(", ")),
        ));
    }
    out
}

/// What SMQ was seen to hold, for the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub topic_name: String,
    pub smq_topic: String,
    pub partitions: Option<i32>,
    pub retention_seconds: Option<i64>,
}

/// The operator's part of the status (never `stats`/`partitions`, which the gateway owns).
/// `recorded` is None when this reconcile learned nothing new; the previous values are kept.
pub fn status(
    previous: Option<&KafkaTopicStatus>,
    verdict: &Verdict,
    unsupported: &[String],
    recorded: Option<&Recorded>,
    generation: Option<i64>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> KafkaTopicStatus {
    let prev_conditions = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let mut s = KafkaTopicStatus {
        observed_generation: generation,
        conditions: crate::conditions::materialize(
            prev_conditions,
            &conditions(verdict, unsupported),
            generation,
            now,
        ),
        topic_name: previous.and_then(|p| p.topic_name.clone()),
        smq_topic: previous.and_then(|p| p.smq_topic.clone()),
        partition_count: previous.and_then(|p| p.partition_count),
        retention_seconds: previous.and_then(|p| p.retention_seconds),
        stats: None,
        partitions: Vec::new(),
    };
    if let Some(r) = recorded {
        s.topic_name = Some(r.topic_name.clone());
        s.smq_topic = Some(r.smq_topic.clone());
        if r.partitions.is_some() {
            s.partition_count = r.partitions;
            s.retention_seconds = r.retention_seconds;
        }
    }
    s
}

/// The operator's part of a stored status: without the gateway's `stats` and `partitions`.
pub fn operator_part(stored: &KafkaTopicStatus) -> KafkaTopicStatus {
    KafkaTopicStatus {
        stats: None,
        partitions: Vec::new(),
        ..stored.clone()
    }
}

/// Whether the operator's part of the status differs from what is stored.
pub fn status_needs_write(stored: Option<&KafkaTopicStatus>, new: &KafkaTopicStatus) -> bool {
    let Some(stored) = stored else { return true };
    &operator_part(stored) != new
}

/// Whether the watch cache's copy of an object can be trusted for the operator's own status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheView {
    Current,
    /// The cache does not yet show the status this process last wrote (the watch event of that
    /// write has not arrived): read the object from the API server instead. Deciding on the old
    /// status would rewrite Ready with a new `lastTransitionTime`, or take the object's own new
    /// topic for a foreign one.
    Stale,
}

/// `cached`: the status in the watch cache; `last_written`: the operator's part of the status
/// this process last wrote for the object, if any since the object's last reconcile.
pub fn cache_view(
    cached: Option<&KafkaTopicStatus>,
    last_written: Option<&KafkaTopicStatus>,
) -> CacheView {
    match last_written {
        Some(w) if cached.map(operator_part).as_ref() != Some(w) => CacheView::Stale,
        _ => CacheView::Current,
    }
}

/// An Event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The one Event of a reconcile, if any. `action` is what the reconcile did to SMQ (Created,
/// Adopted, ConfigUpdated): it is always reported, and stands for the transition it causes, so a
/// created topic gets one Event, not also a `Reconciled` one. Otherwise an Event is sent only
/// when the status was written and the Ready reason changed.
pub fn reconcile_event(
    previous_reason: Option<&str>,
    verdict: &Verdict,
    action: Option<EventSpec>,
    status_written: bool,
) -> Option<EventSpec> {
    if action.is_some() {
        return action;
    }
    if !status_written {
        return None;
    }
    transition_event(previous_reason, verdict)
}

/// Events are sent on transitions only: when the Ready reason changes.
pub fn transition_event(previous_reason: Option<&str>, verdict: &Verdict) -> Option<EventSpec> {
    let reason = verdict.ready_reason();
    if previous_reason == Some(reason) {
        return None;
    }
    Some(match verdict {
        Verdict::Ready => EventSpec {
            warning: false,
            reason,
            message: "topic reconciled".into(),
        },
        Verdict::Progressing { message, .. } | Verdict::Stalled { message, .. } => EventSpec {
            warning: true,
            reason,
            message: message.clone(),
        },
        Verdict::Paused => EventSpec {
            warning: false,
            reason,
            message: "reconciliation paused".into(),
        },
        Verdict::Unmanaged => EventSpec {
            warning: false,
            reason,
            message: "the operator let go of this topic".into(),
        },
    })
}

/// Base delay before the next reconcile (jitter is added by the caller). Stalled objects are
/// woken by the user's change (a new generation), so they are only re-checked slowly.
pub fn requeue_after(verdict: &Verdict) -> Duration {
    match verdict {
        Verdict::Ready | Verdict::Paused | Verdict::Unmanaged => Duration::from_secs(600),
        Verdict::Progressing { .. } => Duration::from_secs(30),
        Verdict::Stalled { reason, .. } if *reason == reasons::RESOURCE_CONFLICT => {
            Duration::from_secs(60)
        }
        Verdict::Stalled { .. } => Duration::from_secs(600),
    }
}

/// What to do with the finalizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalizerStep {
    None,
    Add,
    /// Remove it, first recording this Event (if any).
    Remove(Option<EventSpec>),
    /// `deletionPolicy: Delete` on a topic this object owns: delete it (see `deletion.rs`),
    /// then remove the finalizer.
    DeleteTopic,
}

pub fn finalizer_step(
    has_finalizer: bool,
    deleting: bool,
    facts: &TopicFacts,
    force_delete: bool,
    policy: DeletionPolicy,
    smq_topic: Option<&str>,
) -> FinalizerStep {
    if !deleting {
        return match (has_finalizer, facts.unmanaged) {
            (false, false) => FinalizerStep::Add,
            (true, true) => FinalizerStep::Remove(None),
            _ => FinalizerStep::None,
        };
    }
    if !has_finalizer {
        return FinalizerStep::None;
    }
    if force_delete {
        return FinalizerStep::Remove(Some(EventSpec {
            warning: true,
            reason: "ForceDeleted",
            message:
                "finalizer removed by the force-delete annotation; the SMQ topic was not touched"
                    .into(),
        }));
    }
    // Only a topic this object created or adopted is reported on: for any other there is nothing
    // of its own to keep or delete.
    let (Some(smq_topic), false) = (smq_topic.filter(|_| facts.claimed()), facts.unmanaged) else {
        return FinalizerStep::Remove(None);
    };
    match policy {
        DeletionPolicy::Retain => FinalizerStep::Remove(Some(EventSpec {
            warning: false,
            reason: "TopicRetained",
            message: format!("deletionPolicy Retain: SMQ topic {smq_topic} and its data are kept"),
        })),
        DeletionPolicy::Delete => FinalizerStep::DeleteTopic,
    }
}

/// Collision resolution: among the objects that want the same SMQ topic, the oldest wins (ties by
/// `namespace/name`). Returns the winner's `namespace/name` if it is not `me`.
pub fn conflict_winner<'a>(
    me: &str,
    contenders: impl IntoIterator<Item = (&'a str, Option<&'a k8s_openapi::jiff::Timestamp>)>,
) -> Option<String> {
    let winner = contenders
        .into_iter()
        // Objects without a creationTimestamp (never the case from the API server) sort last.
        .min_by(|a, b| match (a.1, b.1) {
            (Some(x), Some(y)) => x.cmp(y).then(a.0.cmp(b.0)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.0.cmp(b.0),
        })?;
    (winner.0 != me).then(|| winner.0.to_string())
}
