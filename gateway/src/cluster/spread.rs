//! Who leads what: a pure function of the live members, so that every gateway reading the same
//! membership computes the same leaders and coordinators without talking to the others.

use crate::record_value::stable_slot;

/// The leader of partition `index` of `topic` among `members` (node ids, sorted, not empty):
/// a topic's partitions go round the members from a place its name picks, so each topic is
/// spread evenly and different topics start on different gateways.
pub fn partition_leader(members: &[i32], topic: &str, index: i32) -> i32 {
    let n = members.len().max(1) as i64;
    let start = i64::from(stable_slot(topic.as_bytes(), i32::MAX));
    members[((start + i64::from(index.max(0))) % n) as usize]
}

/// The coordinator of a consumer group (or any coordinator key) among `members`.
pub fn coordinator(members: &[i32], key: &str) -> i32 {
    let n = members.len().max(1) as i32;
    members[stable_slot(key.as_bytes(), n) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_of_a_topic_spread_evenly_over_members() {
        let members = [0, 1, 2];
        for topic in ["orders", "payments", "a", "t-7"] {
            let mut count = [0usize; 3];
            for p in 0..12 {
                let leader = partition_leader(&members, topic, p);
                assert_eq!(leader, partition_leader(&members, topic, p), "stable");
                count[leader as usize] += 1;
            }
            assert_eq!(count, [4, 4, 4], "{topic}");
        }
    }

    #[test]
    fn topics_start_on_different_members() {
        let members = [0, 1, 2];
        let firsts: std::collections::HashSet<i32> = (0..30)
            .map(|i| partition_leader(&members, &format!("topic-{i}"), 0))
            .collect();
        assert_eq!(firsts.len(), 3, "{firsts:?}");
    }

    #[test]
    fn one_member_leads_and_coordinates_everything() {
        for p in 0..8 {
            assert_eq!(partition_leader(&[5], "x", p), 5);
        }
        assert_eq!(coordinator(&[5], "group"), 5);
    }

    #[test]
    fn coordinators_spread_over_members() {
        let members = [0, 1, 2];
        let mut count = [0usize; 3];
        for g in 0..300 {
            count[coordinator(&members, &format!("group-{g}")) as usize] += 1;
        }
        assert!(count.iter().all(|&c| c > 60), "{count:?}");
    }
}
