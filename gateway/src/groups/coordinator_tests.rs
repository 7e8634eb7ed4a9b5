//! The commit rules of Kafka's classic group (`ClassicGroup.validateOffsetCommit`), state by
//! state.

use super::*;

const NONE: i16 = 0;

fn member(instance_id: Option<&str>) -> Member {
    Member {
        instance_id: instance_id.map(str::to_string),
        client_id: "c".into(),
        client_host: "h".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocols: vec![("range".into(), Bytes::new())],
        assignment: Bytes::new(),
        last_seen: Instant::now(),
        joined: false,
    }
}

/// A Stable group of generation 1 with members `a` (dynamic) and `s` (static, `inst-s`).
fn stable() -> Group {
    let mut g = Group::new();
    g.members.insert("a".into(), member(None));
    g.members.insert("s".into(), member(Some("inst-s")));
    g.prepare_rebalance(Duration::ZERO);
    for m in g.members.values_mut() {
        m.joined = true;
    }
    g.maybe_complete_join(Instant::now() + Duration::from_millis(1));
    assert_eq!((g.state, g.generation), (State::CompletingRebalance, 1));
    g.state = State::Stable;
    g
}

fn code_of(e: E) -> i16 {
    e.code()
}

#[test]
fn stable_group_takes_commits_of_its_generation_only() {
    let mut g = stable();
    assert_eq!(g.validate_commit(1, "a", None), NONE);
    assert_eq!(g.validate_commit(1, "s", Some("inst-s")), NONE);
    assert_eq!(
        g.validate_commit(0, "a", None),
        code_of(E::IllegalGeneration)
    );
    assert_eq!(g.validate_commit(1, "x", None), code_of(E::UnknownMemberId));
    // A simple consumer may not commit for a group with members.
    assert_eq!(g.validate_commit(-1, "", None), code_of(E::UnknownMemberId));
}

#[test]
fn preparing_rebalance_takes_the_current_generation_completing_refuses() {
    let mut g = stable();
    // A third member's join starts a rebalance: a and s still hold generation 1 and commit what
    // they consumed before rejoining; Kafka takes that.
    g.members.insert("b".into(), member(None));
    g.prepare_rebalance(Duration::ZERO);
    assert_eq!(g.state, State::PreparingRebalance);
    assert_eq!(g.validate_commit(1, "a", None), NONE);
    assert_eq!(g.validate_commit(1, "s", Some("inst-s")), NONE);
    assert_eq!(
        g.validate_commit(2, "a", None),
        code_of(E::IllegalGeneration)
    );
    // Everyone rejoined: generation 2 is handed out, assignments are not yet. A commit now is
    // REBALANCE_IN_PROGRESS (with the new generation) or ILLEGAL_GENERATION (with the old).
    for m in g.members.values_mut() {
        m.joined = true;
    }
    g.maybe_complete_join(Instant::now());
    assert_eq!((g.state, g.generation), (State::CompletingRebalance, 2));
    assert_eq!(
        g.validate_commit(2, "a", None),
        code_of(E::RebalanceInProgress)
    );
    assert_eq!(
        g.validate_commit(1, "a", None),
        code_of(E::IllegalGeneration)
    );
    g.state = State::Stable;
    assert_eq!(g.validate_commit(2, "b", None), NONE);
}

#[test]
fn static_members_are_checked_by_instance_id() {
    let mut g = stable();
    // The instance id now belongs to another member id: the old one is fenced.
    assert_eq!(
        g.validate_commit(1, "old-s", Some("inst-s")),
        code_of(E::FencedInstanceId)
    );
    assert_eq!(
        g.validate_commit(1, "a", Some("unknown-instance")),
        code_of(E::UnknownMemberId)
    );
}

#[test]
fn empty_group_takes_simple_commits_only() {
    let mut g = Group::new();
    assert_eq!(g.validate_commit(-1, "", None), NONE);
    // A member id or generation from a group that has since emptied is unknown.
    g.generation = 3;
    assert_eq!(
        g.validate_commit(3, "gone", None),
        code_of(E::UnknownMemberId)
    );
}

#[test]
fn an_accepted_member_commit_is_a_heartbeat() {
    let mut g = stable();
    let long_ago = Instant::now() - Duration::from_secs(5);
    g.members.get_mut("a").expect("member").last_seen = long_ago;
    assert_eq!(g.validate_commit(1, "a", None), NONE);
    assert!(g.members["a"].last_seen > long_ago);
}
