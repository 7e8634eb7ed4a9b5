//! The consumer group protocol end to end at the coordinator: joins, target assignment,
//! revoke-before-assign, leaves, fencing and the offset commit checks.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

const G: &str = "g";

fn topic_id() -> uuid::Uuid {
    uuid::Uuid::from_bytes([9; 16])
}

fn seen(partitions: i32) -> BTreeMap<String, Option<TopicMeta>> {
    BTreeMap::from([(
        "t".to_string(),
        Some(TopicMeta {
            id: topic_id(),
            partitions,
        }),
    )])
}

fn parts(a: &Assignment) -> BTreeSet<i32> {
    a.get(&topic_id()).cloned().unwrap_or_default()
}

fn owned(p: &BTreeSet<i32>) -> Assignment {
    if p.is_empty() {
        return Assignment::new();
    }
    Assignment::from([(topic_id(), p.clone())])
}

fn join(id: &str) -> Beat {
    Beat {
        member_id: id.into(),
        member_epoch: 0,
        instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: 30_000,
        subscribed_topics: Some(vec!["t".into()]),
        assignor: None,
        owned: Some(Assignment::new()),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
    }
}

fn beat(id: &str, epoch: i32, owns: Option<&BTreeSet<i32>>) -> Beat {
    Beat {
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        subscribed_topics: None,
        owned: owns.map(owned),
        ..join(id)
    }
}

fn groups() -> ConsumerGroups {
    ConsumerGroups::new(Duration::from_secs(45), Duration::from_secs(5))
}

#[test]
fn first_member_gets_everything() {
    let c = groups();
    let r = c.heartbeat(G, join("a"), false, &seen(4)).unwrap();
    assert_eq!(r.member_epoch, 1);
    assert_eq!(parts(&r.assignment.unwrap()), BTreeSet::from([0, 1, 2, 3]));
    assert_eq!(c.describe(G).unwrap().state, "Stable");
}

#[test]
fn second_member_waits_for_revocation() {
    let c = groups();
    let a = c.heartbeat(G, join("a"), false, &seen(4)).unwrap();
    let a_parts = parts(a.assignment.as_ref().unwrap());
    // b joins: group epoch 2; b's target partitions are still a's.
    let b = c.heartbeat(G, join("b"), false, &seen(4)).unwrap();
    assert_eq!(b.member_epoch, 2);
    assert!(parts(b.assignment.as_ref().unwrap()).is_empty());
    assert_eq!(c.describe(G).unwrap().state, "Reconciling");
    // a is asked to revoke two partitions and stays at epoch 1.
    let a2 = c.heartbeat(G, beat("a", 1, None), false, &seen(4)).unwrap();
    assert_eq!(a2.member_epoch, 1);
    let kept = parts(a2.assignment.as_ref().unwrap());
    assert_eq!(kept.len(), 2);
    // b still gets nothing while a reports the revoked ones.
    let b2 = c
        .heartbeat(G, beat("b", 2, Some(&BTreeSet::new())), false, &seen(4))
        .unwrap();
    assert_eq!(b2.assignment, None);
    let a3 = c
        .heartbeat(G, beat("a", 1, Some(&a_parts)), false, &seen(4))
        .unwrap();
    assert_eq!(a3.member_epoch, 1);
    // a acknowledges: epoch 2.
    let a4 = c
        .heartbeat(G, beat("a", 1, Some(&kept)), false, &seen(4))
        .unwrap();
    assert_eq!(a4.member_epoch, 2);
    // Now b gets the other two.
    let b3 = c
        .heartbeat(G, beat("b", 2, Some(&BTreeSet::new())), false, &seen(4))
        .unwrap();
    let b_parts = parts(b3.assignment.as_ref().unwrap());
    assert_eq!(b_parts.len(), 2);
    assert!(b_parts.is_disjoint(&kept));
    assert_eq!(c.describe(G).unwrap().state, "Stable");
}

#[test]
fn leave_gives_partitions_back() {
    let c = groups();
    c.heartbeat(G, join("a"), false, &seen(2)).unwrap();
    c.heartbeat(G, join("b"), false, &seen(2)).unwrap();
    let left = c
        .heartbeat(G, beat("a", -1, None), false, &seen(2))
        .unwrap();
    assert_eq!(left.member_epoch, -1);
    let b = c
        .heartbeat(G, beat("b", 2, Some(&BTreeSet::new())), false, &seen(2))
        .unwrap();
    assert_eq!(
        parts(b.assignment.as_ref().unwrap()),
        BTreeSet::from([0, 1])
    );
    assert_eq!(b.member_epoch, 3);
    // Last one out: Empty, still a consumer group.
    c.heartbeat(G, beat("b", -1, None), false, &seen(2))
        .unwrap();
    assert_eq!(c.describe(G).unwrap().state, "Empty");
    assert!(!c.is_active(G));
    assert!(c.forget(G));
}

#[test]
fn wrong_epochs_are_fenced_and_unknown_members_refused() {
    let c = groups();
    c.heartbeat(G, join("a"), false, &seen(1)).unwrap();
    let e = c
        .heartbeat(G, beat("a", 5, None), false, &seen(1))
        .unwrap_err();
    assert_eq!(e.0, E::FencedMemberEpoch.code());
    let e = c
        .heartbeat(G, beat("x", 1, None), false, &seen(1))
        .unwrap_err();
    assert_eq!(e.0, E::UnknownMemberId.code());
    // Unknown group, non-zero epoch (e.g. after a gateway restart): rejoin.
    let e = c
        .heartbeat("other", beat("a", 3, None), false, &seen(1))
        .unwrap_err();
    assert_eq!(e.0, E::UnknownMemberId.code());
    // A fenced member rejoins under its id with epoch 0.
    let r = c.heartbeat(G, join("a"), false, &seen(1)).unwrap();
    assert_eq!(parts(r.assignment.as_ref().unwrap()), BTreeSet::from([0]));
}

#[test]
fn invalid_requests() {
    let c = groups();
    let mut b = join("a");
    b.subscribed_topics = None;
    assert_eq!(
        c.heartbeat(G, b, false, &seen(1)).unwrap_err().0,
        E::InvalidRequest.code()
    );
    assert_eq!(
        c.heartbeat(G, join("a"), true, &seen(1)).unwrap_err().0,
        E::InvalidRequest.code()
    );
    let mut b = join("a");
    b.assignor = Some("sticky".into());
    assert_eq!(
        c.heartbeat(G, b, false, &seen(1)).unwrap_err().0,
        E::UnsupportedAssignor.code()
    );
    assert_eq!(
        c.heartbeat(G, beat("a", -3, None), false, &seen(1))
            .unwrap_err()
            .0,
        E::InvalidRequest.code()
    );
}

#[test]
fn session_expiry_fences() {
    let c = ConsumerGroups::new(Duration::ZERO, Duration::from_secs(5));
    c.heartbeat(G, join("a"), false, &seen(1)).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    c.tick();
    assert_eq!(c.describe(G).unwrap().members.len(), 0);
    let e = c
        .heartbeat(G, beat("a", 1, None), false, &seen(1))
        .unwrap_err();
    assert_eq!(e.0, E::UnknownMemberId.code());
}

#[test]
fn commit_checks_member_epoch() {
    let c = groups();
    assert_eq!(c.check_commit(G, "a", 1, 9), None, "not a consumer group");
    c.heartbeat(G, join("a"), false, &seen(1)).unwrap();
    assert_eq!(c.check_commit(G, "a", 1, 9), Some(0));
    assert_eq!(
        c.check_commit(G, "a", 0, 9),
        Some(E::StaleMemberEpoch.code())
    );
    assert_eq!(
        c.check_commit(G, "x", 1, 9),
        Some(E::UnknownMemberId.code())
    );
    assert_eq!(
        c.check_commit(G, "a", 1, 8),
        Some(E::UnsupportedVersion.code())
    );
    assert_eq!(
        c.check_commit(G, "", -1, 9),
        Some(E::UnknownMemberId.code())
    );
    assert_eq!(
        c.check_fetch(G, Some("a"), 0),
        Some(E::StaleMemberEpoch.code())
    );
    assert_eq!(c.check_fetch(G, None, -1), Some(0));
    c.heartbeat(G, beat("a", -1, None), false, &seen(1))
        .unwrap();
    assert_eq!(
        c.check_commit(G, "", -1, 9),
        Some(0),
        "admin commit to an empty group"
    );
}

#[test]
fn range_assignor_by_request() {
    let c = groups();
    let mut a = join("a");
    a.assignor = Some("range".into());
    c.heartbeat(G, a, false, &seen(4)).unwrap();
    assert_eq!(c.describe(G).unwrap().assignor, "range");
}

#[test]
fn new_partitions_bump_the_group_epoch() {
    let c = groups();
    let r = c.heartbeat(G, join("a"), false, &seen(2)).unwrap();
    assert_eq!(r.member_epoch, 1);
    let r = c.heartbeat(G, beat("a", 1, None), false, &seen(3)).unwrap();
    assert_eq!(r.member_epoch, 2);
    assert_eq!(
        parts(r.assignment.as_ref().unwrap()),
        BTreeSet::from([0, 1, 2])
    );
}

#[test]
fn static_member_comes_back_with_its_partitions() {
    let c = groups();
    let mut a = join("a1");
    a.instance_id = Some("i".into());
    let r = c.heartbeat(G, a.clone(), false, &seen(2)).unwrap();
    let mut b = join("b");
    b.instance_id = None;
    c.heartbeat(G, b, false, &seen(2)).unwrap();
    let mut r2 = beat("a1", r.member_epoch, Some(&BTreeSet::from([0, 1])));
    r2.instance_id = Some("i".into());
    let kept = c.heartbeat(G, r2, false, &seen(2)).unwrap();
    let mut r3 = beat(
        "a1",
        kept.member_epoch,
        Some(&parts(kept.assignment.as_ref().unwrap())),
    );
    r3.instance_id = Some("i".into());
    c.heartbeat(G, r3, false, &seen(2)).unwrap();
    let mut leave = beat("a1", -2, None);
    leave.instance_id = Some("i".into());
    assert_eq!(
        c.heartbeat(G, leave, false, &seen(2)).unwrap().member_epoch,
        -2
    );
    // Another process with the same instance id while a1 is active would be refused; after the
    // temporary leave it takes over.
    let mut back = join("a2");
    back.instance_id = Some("i".into());
    let r = c.heartbeat(G, back, false, &seen(2)).unwrap();
    assert_eq!(
        parts(r.assignment.as_ref().unwrap()),
        parts(kept.assignment.as_ref().unwrap())
    );
    let mut other = join("a3");
    other.instance_id = Some("i".into());
    assert_eq!(
        c.heartbeat(G, other, false, &seen(2)).unwrap_err().0,
        E::UnreleasedInstanceId.code()
    );
}
