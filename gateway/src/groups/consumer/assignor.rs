//! The server-side assignors of KIP-848 consumer groups: `uniform` (the default) and `range`.
//! Both are pure functions of the members' subscriptions, the subscribed topics' partition counts
//! and (for `uniform`) the previous target assignment, so that they can be tested on their own.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The assignors a client may name in `ServerAssignor`.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];
pub const DEFAULT_ASSIGNOR: &str = "uniform";

/// What an assignor sees of one member.
#[derive(Debug, Clone, Default)]
pub struct MemberSpec {
    /// Subscribed topics that exist, by id.
    pub topics: BTreeSet<Uuid>,
    /// The member's current target assignment (for stickiness).
    pub previous: Assignment,
}

/// Runs the named assignor; `topics` holds the partition count of every subscribed topic.
pub fn assign(
    assignor: &str,
    members: &BTreeMap<String, MemberSpec>,
    topics: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    match assignor {
        "range" => range(members, topics),
        _ => uniform(members, topics),
    }
}

/// Count of partitions in an assignment.
pub fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

/// Every partition of the subscribed topics goes to exactly one member subscribed to its topic;
/// the counts of members differ by at most one where subscriptions allow it, and partitions stay
/// with their previous owner whenever that keeps the balance.
pub fn uniform(
    members: &BTreeMap<String, MemberSpec>,
    topics: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    // Subscribed partitions, and per topic who may own them.
    let mut free: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for (t, n) in topics {
        if members.values().any(|m| m.topics.contains(t)) {
            free.extend((0..*n).map(|p| (*t, p)));
        }
    }
    let total = free.len();
    // An upper bound each member may keep from before: its fair share, rounded up.
    let subscribers = members.values().filter(|m| !m.topics.is_empty()).count();
    let cap = if subscribers == 0 {
        0
    } else {
        total.div_ceil(subscribers)
    };
    let mut counts: BTreeMap<String, usize> = members.keys().map(|m| (m.clone(), 0)).collect();
    for (id, m) in members {
        for (t, parts) in &m.previous {
            if !m.topics.contains(t) {
                continue;
            }
            for p in parts {
                if counts[id] >= cap {
                    break;
                }
                if free.remove(&(*t, *p)) {
                    out.get_mut(id)
                        .expect("member")
                        .entry(*t)
                        .or_default()
                        .insert(*p);
                    *counts.get_mut(id).expect("member") += 1;
                }
            }
        }
    }
    // The rest, each to the least loaded member that subscribes to its topic.
    for (t, p) in free {
        let best = members
            .iter()
            .filter(|(_, m)| m.topics.contains(&t))
            .min_by_key(|(id, _)| (counts[*id], (*id).clone()))
            .map(|(id, _)| id.clone());
        if let Some(id) = best {
            out.get_mut(&id)
                .expect("member")
                .entry(t)
                .or_default()
                .insert(p);
            *counts.get_mut(&id).expect("member") += 1;
        }
    }
    // Balance: move partitions from the most to the least loaded member while a move lowers the
    // spread (each move lowers the sum of squared counts, so this ends).
    loop {
        let mut moved = false;
        let mut order: Vec<String> = counts.keys().cloned().collect();
        order.sort_by_key(|id| (std::cmp::Reverse(counts[id]), id.clone()));
        'search: for hi in &order {
            for lo in order.iter().rev() {
                if counts[hi] <= counts[lo] + 1 {
                    break;
                }
                let lo_topics = &members[lo].topics;
                let candidate = out[hi]
                    .iter()
                    .filter(|(t, _)| lo_topics.contains(*t))
                    .find_map(|(t, parts)| parts.iter().next_back().map(|p| (*t, *p)));
                if let Some((t, p)) = candidate {
                    let from = out.get_mut(hi).expect("member");
                    let set = from.get_mut(&t).expect("topic");
                    set.remove(&p);
                    if set.is_empty() {
                        from.remove(&t);
                    }
                    out.get_mut(lo)
                        .expect("member")
                        .entry(t)
                        .or_default()
                        .insert(p);
                    *counts.get_mut(hi).expect("member") -= 1;
                    *counts.get_mut(lo).expect("member") += 1;
                    moved = true;
                    break 'search;
                }
            }
        }
        if !moved {
            break;
        }
    }
    out
}

/// Per topic, the members subscribed to it in member id order get contiguous ranges of its
/// partitions; the first `partitions % members` get one more. Members with the same subscription
/// get the same partition numbers of every topic (co-partitioning).
pub fn range(
    members: &BTreeMap<String, MemberSpec>,
    topics: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (t, n) in topics {
        let subs: Vec<&String> = members
            .iter()
            .filter(|(_, m)| m.topics.contains(t))
            .map(|(id, _)| id)
            .collect();
        if subs.is_empty() {
            continue;
        }
        let n = (*n).max(0) as usize;
        let (base, extra) = (n / subs.len(), n % subs.len());
        let mut next = 0usize;
        for (i, id) in subs.into_iter().enumerate() {
            let len = base + usize::from(i < extra);
            if len > 0 {
                out.get_mut(id)
                    .expect("member")
                    .insert(*t, (next..next + len).map(|p| p as i32).collect());
            }
            next += len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn spec(topics: &[Uuid]) -> MemberSpec {
        MemberSpec {
            topics: topics.iter().copied().collect(),
            previous: Assignment::new(),
        }
    }

    /// Every partition of `topics` exactly once, and only to subscribers.
    fn check_complete(
        members: &BTreeMap<String, MemberSpec>,
        topics: &BTreeMap<Uuid, i32>,
        out: &BTreeMap<String, Assignment>,
    ) {
        let mut seen = BTreeSet::new();
        for (id, a) in out {
            for (t, parts) in a {
                assert!(members[id].topics.contains(t), "{id} got unsubscribed {t}");
                for p in parts {
                    assert!(seen.insert((*t, *p)), "{t}/{p} assigned twice");
                }
            }
        }
        let want: BTreeSet<_> = topics
            .iter()
            .filter(|(t, _)| members.values().any(|m| m.topics.contains(t)))
            .flat_map(|(t, n)| (0..*n).map(move |p| (*t, p)))
            .collect();
        assert_eq!(seen, want);
    }

    fn counts(out: &BTreeMap<String, Assignment>) -> Vec<usize> {
        out.values().map(count).collect()
    }

    #[test]
    fn uniform_balances_one_topic() {
        let t = topic(1);
        let topics = BTreeMap::from([(t, 4)]);
        let members: BTreeMap<_, _> = [("a", spec(&[t])), ("b", spec(&[t]))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let out = uniform(&members, &topics);
        check_complete(&members, &topics, &out);
        assert_eq!(counts(&out), vec![2, 2]);
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins() {
        let t = topic(1);
        let topics = BTreeMap::from([(t, 6)]);
        let mut members: BTreeMap<String, MemberSpec> = [("a", spec(&[t])), ("b", spec(&[t]))]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let first = uniform(&members, &topics);
        for (id, a) in &first {
            members.get_mut(id).unwrap().previous = a.clone();
        }
        members.insert("c".into(), spec(&[t]));
        let second = uniform(&members, &topics);
        check_complete(&members, &topics, &second);
        assert_eq!(counts(&second), vec![2, 2, 2]);
        // a and b only lost partitions, never gained new ones.
        for id in ["a", "b"] {
            let before = &first[id][&t];
            assert!(second[id][&t].is_subset(before), "{id} moved");
        }
    }

    #[test]
    fn uniform_spreads_mixed_subscriptions() {
        let (t1, t2) = (topic(1), topic(2));
        let topics = BTreeMap::from([(t1, 3), (t2, 3)]);
        let members: BTreeMap<String, MemberSpec> = [
            ("a", spec(&[t1])),
            ("b", spec(&[t1, t2])),
            ("c", spec(&[t2])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let out = uniform(&members, &topics);
        check_complete(&members, &topics, &out);
        assert_eq!(counts(&out), vec![2, 2, 2]);
    }

    #[test]
    fn uniform_with_more_members_than_partitions() {
        let t = topic(1);
        let topics = BTreeMap::from([(t, 2)]);
        let members: BTreeMap<String, MemberSpec> = ["a", "b", "c"]
            .into_iter()
            .map(|k| (k.to_string(), spec(&[t])))
            .collect();
        let out = uniform(&members, &topics);
        check_complete(&members, &topics, &out);
        let mut c = counts(&out);
        c.sort();
        assert_eq!(c, vec![0, 1, 1]);
    }

    #[test]
    fn uniform_drops_unsubscribed_previous_partitions() {
        let (t1, t2) = (topic(1), topic(2));
        let topics = BTreeMap::from([(t1, 2), (t2, 2)]);
        let mut a = spec(&[t1]);
        a.previous = Assignment::from([(t2, BTreeSet::from([0, 1]))]);
        let members: BTreeMap<String, MemberSpec> =
            [("a".to_string(), a), ("b".to_string(), spec(&[t2]))].into();
        let out = uniform(&members, &topics);
        check_complete(&members, &topics, &out);
        assert_eq!(out["a"], Assignment::from([(t1, BTreeSet::from([0, 1]))]));
    }

    #[test]
    fn range_gives_contiguous_copartitioned_ranges() {
        let (t1, t2) = (topic(1), topic(2));
        let topics = BTreeMap::from([(t1, 5), (t2, 5)]);
        let members: BTreeMap<String, MemberSpec> = ["a", "b"]
            .into_iter()
            .map(|k| (k.to_string(), spec(&[t1, t2])))
            .collect();
        let out = range(&members, &topics);
        check_complete(&members, &topics, &out);
        for t in [t1, t2] {
            assert_eq!(out["a"][&t], BTreeSet::from([0, 1, 2]));
            assert_eq!(out["b"][&t], BTreeSet::from([3, 4]));
        }
    }

    #[test]
    fn range_only_to_subscribers() {
        let (t1, t2) = (topic(1), topic(2));
        let topics = BTreeMap::from([(t1, 2), (t2, 4)]);
        let members: BTreeMap<String, MemberSpec> = [
            ("a".to_string(), spec(&[t1])),
            ("b".to_string(), spec(&[t1, t2])),
        ]
        .into();
        let out = range(&members, &topics);
        check_complete(&members, &topics, &out);
        assert_eq!(out["a"], Assignment::from([(t1, BTreeSet::from([0]))]));
        assert_eq!(out["b"][&t2], BTreeSet::from([0, 1, 2, 3]));
    }
}
