//! Reconciliation of one member towards its target assignment (KIP-848): a partition another
//! member still owns is not given out until that member reports it no longer owns it, and a
//! member moves to the target epoch only after it acknowledged its revocations.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::assignor::Assignment;

/// Kafka's `MemberState` of the consumer protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// At its target epoch with its whole target assignment.
    Stable,
    /// Must stop owning `pending_revocation` before it moves on.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still own.
    UnreleasedPartitions,
}

impl MemberState {
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Stable => "STABLE",
            MemberState::UnrevokedPartitions => "UNREVOKED_PARTITIONS",
            MemberState::UnreleasedPartitions => "UNRELEASED_PARTITIONS",
        }
    }
}

/// The reconciliation-relevant part of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    /// What the member may own now (the heartbeat response's assignment).
    pub assigned: Assignment,
    /// What it was asked to give up and has not yet.
    pub pending_revocation: Assignment,
}

impl Progress {
    /// A member that just joined: epoch 0, nothing assigned.
    pub fn joining() -> Self {
        Self {
            epoch: 0,
            previous_epoch: -1,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
        }
    }
}

/// Whether the member still reports owning any of `revoked`; without a report (`owned` None, the
/// heartbeat did not repeat an unchanged list) it is assumed to.
fn owns_any(owned: Option<&Assignment>, revoked: &Assignment) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    revoked.iter().any(|(t, parts)| {
        owned
            .get(t)
            .is_some_and(|o| parts.iter().any(|p| o.contains(p)))
    })
}

/// The member's next state. `owner_epoch(t, p)` tells whether a partition is still owned (or
/// being revoked) by some member, this one included.
pub fn reconcile(
    member: &Progress,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    owner_epoch: impl Fn(Uuid, i32) -> Option<i32>,
) -> Progress {
    match member.state {
        MemberState::Stable if member.epoch == target_epoch => member.clone(),
        MemberState::Stable | MemberState::UnreleasedPartitions => next(
            member,
            member.epoch,
            target_epoch,
            target,
            owned,
            &member.pending_revocation,
            owner_epoch,
        ),
        MemberState::UnrevokedPartitions => {
            if owns_any(owned, &member.pending_revocation) {
                return member.clone();
            }
            let revoked = Progress {
                pending_revocation: Assignment::new(),
                ..member.clone()
            };
            next(
                &revoked,
                member.epoch + 1,
                target_epoch,
                target,
                owned,
                &member.pending_revocation,
                owner_epoch,
            )
        }
    }
}

/// Kafka's `computeNextAssignment`: keep what is in both, revoke what the target dropped, add
/// what the target added and nobody owns any more (partitions this member itself was revoking
/// count as released: only one member owns a partition at a time).
fn next(
    member: &Progress,
    epoch: i32,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    revoking: &Assignment,
    owner_epoch: impl Fn(Uuid, i32) -> Option<i32>,
) -> Progress {
    let empty = BTreeSet::new();
    let topics: BTreeSet<Uuid> = target
        .keys()
        .chain(member.assigned.keys())
        .copied()
        .collect();
    let mut assigned = Assignment::new();
    let mut revoke = Assignment::new();
    let mut unreleased = false;
    for t in topics {
        let want = target.get(&t).unwrap_or(&empty);
        let have = member.assigned.get(&t).unwrap_or(&empty);
        let mut keep: BTreeSet<i32> = have.intersection(want).copied().collect();
        let gone: BTreeSet<i32> = have.difference(want).copied().collect();
        for p in want.difference(have) {
            let own = revoking.get(&t).is_some_and(|r| r.contains(p));
            if own || owner_epoch(t, *p).is_none() {
                keep.insert(*p);
            } else {
                unreleased = true;
            }
        }
        if !keep.is_empty() {
            assigned.insert(t, keep);
        }
        if !gone.is_empty() {
            revoke.insert(t, gone);
        }
    }
    if !revoke.is_empty() && owns_any(owned, &revoke) {
        Progress {
            epoch,
            previous_epoch: member.epoch,
            state: MemberState::UnrevokedPartitions,
            // While it revokes, it keeps only what stays; new partitions come after.
            assigned: member
                .assigned
                .iter()
                .filter_map(|(t, parts)| {
                    let want = target.get(t)?;
                    let keep: BTreeSet<i32> = parts.intersection(want).copied().collect();
                    (!keep.is_empty()).then_some((*t, keep))
                })
                .collect(),
            pending_revocation: revoke,
        }
    } else if unreleased {
        Progress {
            epoch: target_epoch,
            previous_epoch: member.epoch,
            state: MemberState::UnreleasedPartitions,
            assigned,
            pending_revocation: Assignment::new(),
        }
    } else {
        Progress {
            epoch: target_epoch,
            previous_epoch: member.epoch,
            state: MemberState::Stable,
            assigned,
            pending_revocation: Assignment::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Uuid {
        Uuid::from_bytes([7; 16])
    }

    fn a(parts: &[i32]) -> Assignment {
        if parts.is_empty() {
            return Assignment::new();
        }
        Assignment::from([(t(), parts.iter().copied().collect())])
    }

    fn stable(epoch: i32, parts: &[i32]) -> Progress {
        Progress {
            epoch,
            previous_epoch: epoch - 1,
            state: MemberState::Stable,
            assigned: a(parts),
            pending_revocation: Assignment::new(),
        }
    }

    fn nobody(_: Uuid, _: i32) -> Option<i32> {
        None
    }

    #[test]
    fn new_member_gets_free_partitions_at_target_epoch() {
        let m = reconcile(&Progress::joining(), 1, &a(&[0, 1]), Some(&a(&[])), nobody);
        assert_eq!(
            m,
            Progress {
                previous_epoch: 0,
                ..stable(1, &[0, 1])
            }
        );
    }

    #[test]
    fn partitions_still_owned_elsewhere_wait() {
        let owned_by_other = |_: Uuid, p: i32| (p == 1).then_some(3);
        let m = reconcile(
            &Progress::joining(),
            4,
            &a(&[0, 1]),
            Some(&a(&[])),
            owned_by_other,
        );
        assert_eq!(m.state, MemberState::UnreleasedPartitions);
        assert_eq!(m.epoch, 4);
        assert_eq!(m.assigned, a(&[0]));
        // Once released, the next heartbeat gets it.
        let m = reconcile(&m, 4, &a(&[0, 1]), None, nobody);
        assert_eq!(m.state, MemberState::Stable);
        assert_eq!(m.assigned, a(&[0, 1]));
    }

    #[test]
    fn revoke_before_assign() {
        // Owns 0,1,2,3; the target keeps 0,1 and adds nothing.
        let m = stable(1, &[0, 1, 2, 3]);
        let owned = a(&[0, 1, 2, 3]);
        let m = reconcile(&m, 2, &a(&[0, 1]), Some(&owned), nobody);
        assert_eq!(m.state, MemberState::UnrevokedPartitions);
        assert_eq!(m.epoch, 1, "stays in its epoch until it revoked");
        assert_eq!(m.assigned, a(&[0, 1]));
        assert_eq!(m.pending_revocation, a(&[2, 3]));
        // A heartbeat that does not list its partitions, or still lists a revoked one: no change.
        assert_eq!(reconcile(&m, 2, &a(&[0, 1]), None, nobody), m);
        assert_eq!(
            reconcile(&m, 2, &a(&[0, 1]), Some(&a(&[0, 1, 3])), nobody),
            m
        );
        // Acknowledged: epoch 2, stable.
        let m = reconcile(&m, 2, &a(&[0, 1]), Some(&a(&[0, 1])), nobody);
        assert_eq!(m.state, MemberState::Stable);
        assert_eq!(m.epoch, 2);
        assert_eq!(m.assigned, a(&[0, 1]));
        assert!(m.pending_revocation.is_empty());
    }

    #[test]
    fn revocation_already_done_goes_straight_to_target() {
        // The member reports it no longer owns 3 (e.g. its previous response was lost).
        let m = stable(1, &[2, 3]);
        let m = reconcile(&m, 2, &a(&[2]), Some(&a(&[2])), nobody);
        assert_eq!(m.state, MemberState::Stable);
        assert_eq!(m.epoch, 2);
        assert_eq!(m.assigned, a(&[2]));
    }

    #[test]
    fn stable_at_target_epoch_is_unchanged() {
        let m = stable(3, &[0]);
        assert_eq!(reconcile(&m, 3, &a(&[0, 1]), None, nobody), m);
    }
}
