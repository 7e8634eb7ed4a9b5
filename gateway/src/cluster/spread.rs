//! Who leads what: a pure function of the member files, so that every gateway reading the same
//! files computes the same leaders and coordinators without talking to the others.
//!
//! Every known node id (live or not: a member's file stays an hour after it was last heard from)
//! has a preferred share: a topic's partitions go round the known ids from a place its name
//! picks, so with every member live each topic is spread evenly and topics start on different
//! gateways. A partition whose preferred member is not live goes to the live member that scores
//! highest for it (rendezvous hashing). So a member that dies moves only its own partitions, each
//! to one of the others, and when it comes back exactly those move back: a takeover reads the
//! partition's state again, and nothing else is disturbed.

use crate::record_value::stable_slot;

fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The live member scoring highest for `key` (None without live members).
fn rendezvous(live: &[i32], key: &[&[u8]]) -> Option<i32> {
    live.iter().copied().max_by_key(|m| {
        let id = m.to_be_bytes();
        let mut parts = key.to_vec();
        parts.push(&id);
        (fnv64(&parts), *m)
    })
}

/// The leader of partition `index` of `topic`: its preferred member among `known` (sorted node
/// ids) when that one is in `live`, else the live member rendezvous hashing picks.
pub fn partition_leader(known: &[i32], live: &[i32], topic: &str, index: i32) -> Option<i32> {
    if !known.is_empty() {
        let start = i64::from(stable_slot(topic.as_bytes(), i32::MAX));
        let preferred = known[((start + i64::from(index.max(0))) % known.len() as i64) as usize];
        if live.contains(&preferred) {
            return Some(preferred);
        }
    }
    let p = index.to_be_bytes();
    rendezvous(live, &[topic.as_bytes(), &p])
}

/// The coordinator of a consumer group (or any coordinator key), chosen the same way.
pub fn coordinator(known: &[i32], live: &[i32], key: &str) -> Option<i32> {
    if !known.is_empty() {
        let preferred = known[stable_slot(key.as_bytes(), known.len() as i32) as usize];
        if live.contains(&preferred) {
            return Some(preferred);
        }
    }
    rendezvous(live, &[b"group", key.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [i32; 3] = [0, 1, 2];

    fn leaders(live: &[i32], topic: &str, n: i32) -> Vec<i32> {
        (0..n)
            .map(|p| partition_leader(&ALL, live, topic, p).unwrap())
            .collect()
    }

    #[test]
    fn partitions_of_a_topic_spread_evenly_over_live_members() {
        for topic in ["orders", "payments", "a", "t-7"] {
            let mut count = [0usize; 3];
            for l in leaders(&ALL, topic, 12) {
                count[l as usize] += 1;
            }
            assert_eq!(count, [4, 4, 4], "{topic}");
            assert_eq!(leaders(&ALL, topic, 12), leaders(&ALL, topic, 12), "stable");
        }
    }

    #[test]
    fn topics_start_on_different_members() {
        let firsts: std::collections::HashSet<i32> = (0..30)
            .map(|i| partition_leader(&ALL, &ALL, &format!("topic-{i}"), 0).unwrap())
            .collect();
        assert_eq!(firsts.len(), 3, "{firsts:?}");
    }

    #[test]
    fn a_dead_member_moves_only_its_own_partitions_and_gets_them_back() {
        for topic in ["orders", "payments", "t-7"] {
            let before = leaders(&ALL, topic, 30);
            let during = leaders(&[0, 2], topic, 30);
            for (p, (b, d)) in before.iter().zip(&during).enumerate() {
                if *b == 1 {
                    assert_ne!(*d, 1, "{topic}/{p} stays on the dead member");
                } else {
                    assert_eq!(b, d, "{topic}/{p} moved although its leader lives");
                }
            }
            // Its partitions go to both others, not all to one.
            let moved: std::collections::HashSet<i32> = before
                .iter()
                .zip(&during)
                .filter(|(b, _)| **b == 1)
                .map(|(_, d)| *d)
                .collect();
            assert_eq!(moved.len(), 2, "{topic}: {moved:?}");
            assert_eq!(leaders(&ALL, topic, 30), before);
        }
    }

    #[test]
    fn nobody_leads_without_live_members_and_one_member_leads_everything() {
        assert_eq!(partition_leader(&ALL, &[], "x", 0), None);
        assert_eq!(coordinator(&ALL, &[], "g"), None);
        for p in 0..8 {
            assert_eq!(partition_leader(&[5], &[5], "x", p), Some(5));
            assert_eq!(partition_leader(&ALL, &[2], "x", p), Some(2));
        }
        assert_eq!(coordinator(&[5], &[5], "group"), Some(5));
    }

    #[test]
    fn coordinators_spread_over_members_and_move_only_from_the_dead() {
        let mut count = [0usize; 3];
        for g in 0..300 {
            let key = format!("group-{g}");
            let c = coordinator(&ALL, &ALL, &key).unwrap();
            count[c as usize] += 1;
            let without = coordinator(&ALL, &[0, 1], &key).unwrap();
            if c != 2 {
                assert_eq!(without, c, "{key}");
            }
        }
        assert!(count.iter().all(|&c| c > 60), "{count:?}");
    }
}
