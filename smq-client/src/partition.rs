use smq_proto::schema_pb::Partition;

use crate::error::{SmqError, SmqResult};

/// SMQ divides every topic into slices of a ring of this many slots
/// (`MaxPartitionCount` = 8·9·5·7 in `weed/mq/pub_balancer`).
pub const RING_SIZE: i32 = 2520;

/// The ring slice `[start, stop)` that SMQ gives partition `index` of a topic with `count`
/// partitions: ⌊2520/count⌋ slots each, the last one running to the end of the ring.
pub fn ring_range(index: i32, count: i32) -> SmqResult<(i32, i32)> {
    if !(1..=RING_SIZE).contains(&count) {
        return Err(SmqError::InvalidPartitionCount(count));
    }
    if !(0..count).contains(&index) {
        return Err(SmqError::PartitionNotFound {
            topic: String::new(),
            partition: index,
        });
    }
    let size = RING_SIZE / count;
    let start = index * size;
    let stop = if index == count - 1 {
        RING_SIZE
    } else {
        start + size
    };
    Ok((start, stop))
}

/// One partition of a topic as the broker assigned it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionAssignment {
    /// The Kafka-style partition index, derived from the ring range.
    pub index: i32,
    /// Exactly as returned by LookupTopicBrokers; data RPCs must send it back unchanged.
    pub partition: Partition,
    /// Empty while the partition has no leader.
    pub leader: String,
    pub follower: String,
}

/// A topic's partitions, ordered by index.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicLayout {
    pub partitions: Vec<PartitionAssignment>,
}

impl TopicLayout {
    /// Orders the broker's assignments by matching each ring range (not its list position) to a
    /// partition index.
    pub fn from_assignments(
        topic: &str,
        assignments: impl IntoIterator<Item = (Partition, String, String)>,
    ) -> SmqResult<Self> {
        let mut found: Vec<(Partition, String, String)> = assignments.into_iter().collect();
        let count = found.len() as i32;
        if count == 0 {
            return Err(SmqError::TopicNotFound(topic.to_string()));
        }
        let mut partitions = Vec::with_capacity(found.len());
        for index in 0..count {
            let (start, stop) = ring_range(index, count)?;
            let pos = found
                .iter()
                .position(|(p, _, _)| p.range_start == start && p.range_stop == stop)
                .ok_or_else(|| {
                    SmqError::Protocol(format!(
                        "topic {topic}: no assignment for ring range [{start},{stop}) of partition {index}/{count}"
                    ))
                })?;
            let (partition, leader, follower) = found.swap_remove(pos);
            partitions.push(PartitionAssignment {
                index,
                partition,
                leader,
                follower,
            });
        }
        Ok(Self { partitions })
    }

    pub fn count(&self) -> i32 {
        self.partitions.len() as i32
    }

    pub fn get(&self, topic: &str, index: i32) -> SmqResult<&PartitionAssignment> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .ok_or_else(|| SmqError::PartitionNotFound {
                topic: topic.to_string(),
                partition: index,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: i32, stop: i32) -> Partition {
        Partition {
            ring_size: RING_SIZE,
            range_start: start,
            range_stop: stop,
            unix_time_ns: 7,
        }
    }

    #[test]
    fn ranges_match_what_smq_allocates() {
        assert_eq!(ring_range(0, 3).unwrap(), (0, 840));
        assert_eq!(ring_range(1, 3).unwrap(), (840, 1680));
        assert_eq!(ring_range(2, 3).unwrap(), (1680, 2520));
        assert_eq!(ring_range(3, 4).unwrap(), (1890, 2520));
        assert_eq!(ring_range(14, 16).unwrap(), (2198, 2355));
        assert_eq!(ring_range(15, 16).unwrap(), (2355, 2520));
        assert_eq!(ring_range(0, 1).unwrap(), (0, 2520));
        assert_eq!(ring_range(2519, 2520).unwrap(), (2519, 2520));
    }

    #[test]
    fn counts_outside_the_ring_are_refused() {
        for n in [0, -1, 2521] {
            assert!(matches!(
                ring_range(0, n),
                Err(SmqError::InvalidPartitionCount(c)) if c == n
            ));
        }
        assert!(ring_range(3, 3).is_err());
    }

    #[test]
    fn layout_is_ordered_by_range_not_list_position() {
        let layout = TopicLayout::from_assignments(
            "t",
            vec![
                (part(1680, 2520), "b3".into(), String::new()),
                (part(0, 840), "b1".into(), String::new()),
                (part(840, 1680), "b2".into(), String::new()),
            ],
        )
        .unwrap();
        let leaders: Vec<_> = layout
            .partitions
            .iter()
            .map(|p| p.leader.as_str())
            .collect();
        assert_eq!(leaders, ["b1", "b2", "b3"]);
        assert_eq!(layout.get("t", 2).unwrap().partition.unix_time_ns, 7);
        assert!(layout.get("t", 3).is_err());
    }

    #[test]
    fn layout_with_foreign_ranges_is_an_error() {
        let r = TopicLayout::from_assignments(
            "t",
            vec![
                (part(0, 32), "b".into(), String::new()),
                (part(32, 64), "b".into(), String::new()),
            ],
        );
        assert!(matches!(r, Err(SmqError::Protocol(_))));
    }
}
