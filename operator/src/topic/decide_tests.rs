//! Unit tests of every KafkaTopic decision.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kafka_crds::conditions::{reasons, types};
use kafka_crds::topic::{DeletionPolicy, KafkaTopicStatus, TopicStats};

use super::decide::*;

fn facts() -> TopicFacts {
    TopicFacts {
        generation: Some(1),
        desired_name: "orders".into(),
        recorded_name: None,
        recorded_partitions: None,
        partitions: Some(3),
        config: BTreeMap::new(),
        paused: false,
        unmanaged: false,
        adopt: false,
    }
}

fn claimed() -> TopicFacts {
    TopicFacts {
        recorded_name: Some("orders".into()),
        recorded_partitions: Some(3),
        ..facts()
    }
}

fn gw() -> GatewayFacts {
    GatewayFacts {
        master: "m:9333".into(),
        smq_namespace: "kafka".into(),
        default_partitions: 6,
    }
}

fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn no_config() -> ConfigAnalysis {
    analyze_config(&BTreeMap::new()).unwrap()
}

fn observed(partitions: i32, retention_seconds: Option<i64>) -> Option<Observed> {
    Some(Observed {
        partitions,
        base_partitions: partitions,
        retention_seconds,
    })
}

fn reason_of(plan: &Plan) -> &'static str {
    match plan {
        Plan::Refuse(v) => v.ready_reason(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn at(secs: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
}

#[test]
fn creates_a_missing_topic() {
    let p = plan(&facts(), &no_config(), &gw(), None);
    assert_eq!(
        p,
        Plan::Create {
            partitions: 3,
            retention_seconds: None,
        }
    );
}

#[test]
fn creation_without_partitions_uses_the_gateway_default() {
    let f = TopicFacts {
        partitions: None,
        recorded_name: Some("orders".into()),
        ..facts()
    };
    let c = analyze_config(&cfg(&[("retention.ms", "1500")])).unwrap();
    assert_eq!(
        plan(&f, &c, &gw(), None),
        Plan::Create {
            partitions: 6,
            retention_seconds: Some(2),
        }
    );
}

#[test]
fn a_topic_seen_before_that_went_missing_is_not_recreated() {
    let p = plan(&claimed(), &no_config(), &gw(), None);
    assert_eq!(reason_of(&p), reasons::TOPIC_MISSING);
    assert!(matches!(p, Plan::Refuse(Verdict::Progressing { .. })));
}

#[test]
fn refuses_to_shrink() {
    let f = TopicFacts {
        partitions: Some(2),
        ..claimed()
    };
    let p = plan(&f, &no_config(), &gw(), observed(3, None));
    assert_eq!(reason_of(&p), reasons::PARTITION_DECREASE_NOT_ALLOWED);
    assert!(matches!(p, Plan::Refuse(Verdict::Stalled { .. })));
}

#[test]
fn grows_by_the_partitions_asked_for() {
    let f = TopicFacts {
        partitions: Some(4),
        ..claimed()
    };
    let p = plan(&f, &no_config(), &gw(), observed(3, None));
    assert_eq!(p, Plan::Grow { from: 3, to: 4 });
}

#[test]
fn retention_is_set_on_the_base_topic_with_its_own_count() {
    let f = TopicFacts {
        partitions: Some(5),
        config: cfg(&[("retention.ms", "60000")]),
        ..claimed()
    };
    let config = analyze_config(&f.config).unwrap();
    let grown = Some(Observed {
        partitions: 5,
        base_partitions: 3,
        retention_seconds: None,
    });
    assert_eq!(
        plan(&f, &config, &gw(), grown),
        Plan::UpdateRetention {
            partitions: 3,
            retention_seconds: Some(60)
        }
    );
}

#[test]
fn absent_partitions_adopt_the_existing_count() {
    let f = TopicFacts {
        partitions: None,
        ..claimed()
    };
    assert_eq!(
        plan(&f, &no_config(), &gw(), observed(12, None)),
        Plan::InSync
    );
}

#[test]
fn a_foreign_topic_needs_the_adopt_annotation() {
    let p = plan(&facts(), &no_config(), &gw(), observed(3, None));
    assert_eq!(reason_of(&p), reasons::TOPIC_ALREADY_EXISTS);
    let adopting = TopicFacts {
        adopt: true,
        ..facts()
    };
    assert_eq!(
        plan(&adopting, &no_config(), &gw(), observed(3, None)),
        Plan::InSync
    );
}

#[test]
fn retention_changes_keep_the_partition_count() {
    let c = analyze_config(&cfg(&[("retention.ms", "86400000")])).unwrap();
    assert_eq!(
        plan(&claimed(), &c, &gw(), observed(3, Some(3600))),
        Plan::UpdateRetention {
            partitions: 3,
            retention_seconds: Some(86400)
        }
    );
    assert_eq!(
        plan(&claimed(), &c, &gw(), observed(3, Some(86400))),
        Plan::InSync
    );
    let forever = analyze_config(&cfg(&[("retention.ms", "-1")])).unwrap();
    assert_eq!(
        plan(&claimed(), &forever, &gw(), observed(3, Some(60))),
        Plan::UpdateRetention {
            partitions: 3,
            retention_seconds: Some(0)
        }
    );
    assert_eq!(
        plan(&claimed(), &forever, &gw(), observed(3, None)),
        Plan::InSync
    );
    // Absent retention.ms leaves whatever the topic has.
    assert_eq!(
        plan(&claimed(), &no_config(), &gw(), observed(3, Some(60))),
        Plan::InSync
    );
}

#[test]
fn config_analysis_separates_unsupported_keys_from_invalid_values() {
    let a = analyze_config(&cfg(&[
        ("cleanup.policy", "delete"),
        ("segment.ms", "100"),
        ("compression.type", "zstd"),
    ]))
    .unwrap();
    assert_eq!(a.retention, RetentionWish::Unmanaged);
    assert_eq!(
        a.unsupported,
        vec!["compression.type".to_string(), "segment.ms".to_string()]
    );
    let compact = analyze_config(&cfg(&[("cleanup.policy", "compact")])).unwrap();
    assert_eq!(
        compact.unsupported,
        vec!["cleanup.policy=compact".to_string()]
    );
    assert!(analyze_config(&cfg(&[("retention.ms", "a day")])).is_err());
    assert!(analyze_config(&cfg(&[("retention.ms", "0")])).is_err());
}

#[test]
fn prechecks_in_order() {
    let g = gw();
    let unmanaged = TopicFacts {
        unmanaged: true,
        paused: true,
        ..facts()
    };
    assert_eq!(precheck(&unmanaged, None, None), Err(Verdict::Unmanaged));
    let paused = TopicFacts {
        paused: true,
        ..facts()
    };
    assert_eq!(precheck(&paused, None, None), Err(Verdict::Paused));
    let renamed = TopicFacts {
        desired_name: "orders-v2".into(),
        ..claimed()
    };
    assert_eq!(
        precheck(&renamed, Some(&g), None)
            .unwrap_err()
            .ready_reason(),
        reasons::TOPIC_NAME_CHANGE_NOT_ALLOWED
    );
    let bad = TopicFacts {
        config: cfg(&[("retention.ms", "x")]),
        ..facts()
    };
    assert_eq!(
        precheck(&bad, Some(&g), None).unwrap_err().ready_reason(),
        reasons::INVALID_SPEC
    );
    let too_many = TopicFacts {
        partitions: Some(2521),
        ..facts()
    };
    assert_eq!(
        precheck(&too_many, Some(&g), None)
            .unwrap_err()
            .ready_reason(),
        reasons::INVALID_SPEC
    );
    assert_eq!(
        precheck(&facts(), None, None).unwrap_err().ready_reason(),
        reasons::GATEWAY_NOT_FOUND
    );
    let lost = precheck(&facts(), Some(&g), Some("ns/older")).unwrap_err();
    assert_eq!(lost.ready_reason(), reasons::RESOURCE_CONFLICT);
    assert!(matches!(lost, Verdict::Stalled { .. }));
    assert!(precheck(&facts(), Some(&g), None).is_ok());
}

#[test]
fn unsupported_config_is_a_separate_condition_that_leaves_ready_true() {
    let c = conditions(&Verdict::Ready, &["segment.ms".into()]);
    assert_eq!(c[0].type_, types::READY);
    assert_eq!(c[0].status, "True");
    assert_eq!(c[1].type_, types::UNSUPPORTED_CONFIG);
    assert_eq!(c[1].status, "True");
    assert_eq!(conditions(&Verdict::Ready, &[]).len(), 1);
}

#[test]
fn stalled_and_progressing_set_the_kstatus_conditions() {
    let s = conditions(
        &Verdict::Stalled {
            reason: reasons::PARTITION_DECREASE_NOT_ALLOWED,
            message: "m".into(),
        },
        &[],
    );
    assert_eq!(
        s.iter()
            .map(|c| (c.type_, c.status, c.reason))
            .collect::<Vec<_>>(),
        vec![
            (
                types::READY,
                "False",
                reasons::PARTITION_DECREASE_NOT_ALLOWED
            ),
            (
                types::STALLED,
                "True",
                reasons::PARTITION_DECREASE_NOT_ALLOWED
            )
        ]
    );
    let p = conditions(
        &Verdict::Progressing {
            reason: reasons::CREATING,
            message: "m".into(),
        },
        &[],
    );
    assert_eq!(p[1].type_, types::RECONCILING);
    let paused = conditions(&Verdict::Paused, &[]);
    assert_eq!(paused[0].status, "Unknown");
    assert_eq!(paused[1].type_, types::RECONCILIATION_PAUSED);
}

#[test]
fn a_noop_reconcile_writes_nothing_and_keeps_timestamps() {
    let rec = Recorded {
        topic_name: "orders".into(),
        smq_topic: "kafka/orders".into(),
        partitions: Some(3),
        retention_seconds: None,
    };
    let first = status(None, &Verdict::Ready, &[], Some(&rec), Some(1), &at(100));
    assert!(status_needs_write(None, &first));
    let mut stored = first.clone();
    // The gateway's statistics are not the operator's business and must not cause a write.
    stored.stats = Some(TopicStats {
        high_watermark_sum: 42,
        ..Default::default()
    });
    let again = status(
        Some(&stored),
        &Verdict::Ready,
        &[],
        Some(&rec),
        Some(1),
        &at(900),
    );
    assert_eq!(again, first);
    assert!(!status_needs_write(Some(&stored), &again));
    // A new generation changes observedGeneration and so needs a write.
    let next_gen = status(
        Some(&stored),
        &Verdict::Ready,
        &[],
        Some(&rec),
        Some(2),
        &at(900),
    );
    assert!(status_needs_write(Some(&stored), &next_gen));
    assert_eq!(next_gen.conditions[0].last_transition_time, at(100));
}

#[test]
fn status_keeps_earlier_observations_when_nothing_new_was_learned() {
    let rec = Recorded {
        topic_name: "orders".into(),
        smq_topic: "kafka/orders".into(),
        partitions: Some(3),
        retention_seconds: Some(60),
    };
    let ready = status(None, &Verdict::Ready, &[], Some(&rec), Some(1), &at(1));
    let paused = status(Some(&ready), &Verdict::Paused, &[], None, Some(2), &at(2));
    assert_eq!(paused.partition_count, Some(3));
    assert_eq!(paused.retention_seconds, Some(60));
    assert_eq!(paused.topic_name.as_deref(), Some("orders"));
    // A failed creation records the claim before the topic's count is known.
    let claim = Recorded {
        partitions: None,
        ..rec.clone()
    };
    let claiming = status(
        None,
        &Verdict::Progressing {
            reason: reasons::BACKEND_UNAVAILABLE,
            message: String::new(),
        },
        &[],
        Some(&claim),
        Some(1),
        &at(1),
    );
    assert_eq!(claiming.topic_name.as_deref(), Some("orders"));
    assert_eq!(claiming.partition_count, None);
    let _: &KafkaTopicStatus = &claiming;
}

#[test]
fn events_only_on_transitions() {
    assert!(transition_event(Some(reasons::RECONCILED), &Verdict::Ready).is_none());
    let e = transition_event(None, &Verdict::Ready).unwrap();
    assert!(!e.warning);
    let stalled = Verdict::Stalled {
        reason: reasons::PARTITION_DECREASE_NOT_ALLOWED,
        message: "m".into(),
    };
    let e = transition_event(Some(reasons::RECONCILED), &stalled).unwrap();
    assert!(e.warning);
    assert_eq!(e.reason, reasons::PARTITION_DECREASE_NOT_ALLOWED);
    assert!(transition_event(Some(reasons::PARTITION_DECREASE_NOT_ALLOWED), &stalled).is_none());
}

#[test]
fn a_reconcile_sends_one_event_for_what_it_did() {
    let created = EventSpec {
        warning: false,
        reason: "Created",
        message: "created SMQ topic kafka/orders with 3 partitions".into(),
    };
    // Creating a topic is one Event, not also the None -> Reconciled transition.
    assert_eq!(
        reconcile_event(None, &Verdict::Ready, Some(created.clone()), true),
        Some(created)
    );
    let e = reconcile_event(None, &Verdict::Ready, None, true).unwrap();
    assert_eq!(e.reason, reasons::RECONCILED);
    // No status write, no transition to report.
    assert_eq!(reconcile_event(None, &Verdict::Ready, None, false), None);
    assert_eq!(
        reconcile_event(Some(reasons::RECONCILED), &Verdict::Ready, None, true),
        None
    );
}

/// The bug of issue 5's 1,000-topic run: the reconcile woken by the operator's own finalizer
/// write was handed the cached object from before its status write, and rewrote Ready with a
/// new lastTransitionTime. Status must be written only when it changed.
#[test]
fn status_is_written_only_when_it_changed_even_when_the_cache_lags() {
    let rec = Recorded {
        topic_name: "orders".into(),
        smq_topic: "kafka/orders".into(),
        partitions: Some(3),
        retention_seconds: None,
    };
    // First reconcile: the object has no status; the topic is created and Ready written.
    assert_eq!(cache_view(None, None), CacheView::Current);
    let ready = status(None, &Verdict::Ready, &[], Some(&rec), Some(1), &at(100));
    assert!(status_needs_write(None, &ready));

    // Second reconcile, one second later, handed the cached object from before that write:
    // deciding on it would write again (and, without the claim, call the topic foreign).
    let stale: Option<&KafkaTopicStatus> = None;
    let rewrite = status(stale, &Verdict::Ready, &[], Some(&rec), Some(1), &at(101));
    assert!(status_needs_write(stale, &rewrite));
    assert_ne!(
        rewrite.conditions[0].last_transition_time,
        ready.conditions[0].last_transition_time
    );
    assert_eq!(
        plan(&facts(), &no_config(), &gw(), observed(3, None)),
        Plan::Refuse(Verdict::Stalled {
            reason: reasons::TOPIC_ALREADY_EXISTS,
            message: "SMQ topic kafka/orders exists and was not created by this object; annotate it with kafka.seaweedfs.com/adopt=\"true\" to take it over".into(),
        })
    );
    // So the reconciler compares the cache with what it wrote and reads the object afresh.
    assert_eq!(cache_view(stale, Some(&ready)), CacheView::Stale);
    let older = status(
        None,
        &Verdict::Progressing {
            reason: reasons::BACKEND_UNAVAILABLE,
            message: "m".into(),
        },
        &[],
        None,
        Some(1),
        &at(90),
    );
    assert_eq!(cache_view(Some(&older), Some(&ready)), CacheView::Stale);

    // The fresh object (with the gateway's statistics added meanwhile) needs no write.
    let mut fresh = ready.clone();
    fresh.stats = Some(TopicStats {
        high_watermark_sum: 7,
        ..Default::default()
    });
    assert_eq!(cache_view(Some(&fresh), Some(&ready)), CacheView::Current);
    let again = status(
        Some(&fresh),
        &Verdict::Ready,
        &[],
        Some(&rec),
        Some(1),
        &at(101),
    );
    assert!(!status_needs_write(Some(&fresh), &again));
    assert_eq!(
        reconcile_event(Some(reasons::RECONCILED), &Verdict::Ready, None, false),
        None
    );
}

#[test]
fn requeue_is_fast_only_while_progressing() {
    assert!(requeue_after(&Verdict::Ready) >= std::time::Duration::from_secs(300));
    let p = Verdict::Progressing {
        reason: reasons::BACKEND_UNAVAILABLE,
        message: String::new(),
    };
    assert!(requeue_after(&p) <= std::time::Duration::from_secs(60));
}

#[test]
fn finalizer_added_to_managed_and_removed_from_unmanaged_objects() {
    let f = facts();
    assert_eq!(
        finalizer_step(false, false, &f, false, DeletionPolicy::Retain, None),
        FinalizerStep::Add
    );
    assert_eq!(
        finalizer_step(true, false, &f, false, DeletionPolicy::Retain, None),
        FinalizerStep::None
    );
    let u = TopicFacts {
        unmanaged: true,
        ..facts()
    };
    assert_eq!(
        finalizer_step(true, false, &u, false, DeletionPolicy::Retain, None),
        FinalizerStep::Remove(None)
    );
    assert_eq!(
        finalizer_step(false, false, &u, false, DeletionPolicy::Retain, None),
        FinalizerStep::None
    );
}

#[test]
fn deletion_honours_the_policy_and_says_what_happened_to_the_data() {
    let c = claimed();
    assert_eq!(
        finalizer_step(
            true,
            true,
            &c,
            false,
            DeletionPolicy::Delete,
            Some("kafka/orders"),
        ),
        FinalizerStep::DeleteTopic
    );
    let FinalizerStep::Remove(Some(e)) = finalizer_step(
        true,
        true,
        &c,
        false,
        DeletionPolicy::Retain,
        Some("kafka/orders"),
    ) else {
        panic!("expected removal with an event")
    };
    assert_eq!(e.reason, "TopicRetained");
    // Nothing was created by an object that never claimed a topic.
    assert_eq!(
        finalizer_step(
            true,
            true,
            &facts(),
            false,
            DeletionPolicy::Delete,
            Some("kafka/orders")
        ),
        FinalizerStep::Remove(None)
    );
    let FinalizerStep::Remove(Some(e)) = finalizer_step(
        true,
        true,
        &c,
        true,
        DeletionPolicy::Delete,
        Some("kafka/orders"),
    ) else {
        panic!("expected removal with an event")
    };
    assert_eq!(e.reason, "ForceDeleted");
    assert_eq!(
        finalizer_step(false, true, &c, false, DeletionPolicy::Delete, None),
        FinalizerStep::None
    );
}

#[test]
fn oldest_contender_wins_with_name_as_tie_break() {
    let t1 = k8s_openapi::jiff::Timestamp::from_second(1).unwrap();
    let t2 = k8s_openapi::jiff::Timestamp::from_second(2).unwrap();
    let all = [("b/x", Some(&t1)), ("a/y", Some(&t2)), ("a/x", Some(&t1))];
    assert_eq!(conflict_winner("b/x", all), Some("a/x".to_string()));
    assert_eq!(conflict_winner("a/x", all), None);
    assert_eq!(conflict_winner("solo", [("solo", Some(&t1))]), None);
}

#[test]
fn storage_format_is_read_and_bad_values_name_the_field() {
    let c = analyze_config(&cfg(&[("smq.storage.format", "batch")])).unwrap();
    assert_eq!(c.format, Some(kafka_smq_format::StorageFormat::Batch));
    assert!(c.unsupported.is_empty());
    assert_eq!(no_config().format, None);
    let e = analyze_config(&cfg(&[("smq.storage.format", "parquet")])).unwrap_err();
    assert_eq!(
        e,
        "spec.config: smq.storage.format=parquet is not a storage format (record or batch)"
    );
}
