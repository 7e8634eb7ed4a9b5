//! The Kafka error codes a response carries: its own and those of its topics, partitions,
//! groups and members. Most APIs answer errors inside an otherwise successful response (a
//! refused commit, an unknown topic), so counting only request failures would show none of them.

use kafka_protocol::messages::ResponseKind;

/// Every non-zero error code in `response`, the response's own first, then its parts in order.
pub fn error_codes(response: &ResponseKind) -> Vec<i16> {
    let mut codes = Vec::new();
    let mut add = |c: i16| {
        if c != 0 {
            codes.push(c);
        }
    };
    match response {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| add(p.error_code)),
        ResponseKind::Fetch(r) => {
            add(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| add(p.error_code));
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| add(p.error_code)),
        ResponseKind::Metadata(r) => {
            add(r.error_code);
            for t in &r.topics {
                add(t.error_code);
                t.partitions.iter().for_each(|p| add(p.error_code));
            }
        }
        ResponseKind::ApiVersions(r) => add(r.error_code),
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| add(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| add(t.error_code)),
        ResponseKind::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| add(p.error_code)),
        ResponseKind::CreatePartitions(r) => r.results.iter().for_each(|t| add(t.error_code)),
        ResponseKind::InitProducerId(r) => add(r.error_code),
        ResponseKind::DescribeConfigs(r) => r.results.iter().for_each(|t| add(t.error_code)),
        ResponseKind::AlterConfigs(r) => r.responses.iter().for_each(|t| add(t.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => {
            r.responses.iter().for_each(|t| add(t.error_code))
        }
        ResponseKind::DescribeCluster(r) => add(r.error_code),
        ResponseKind::FindCoordinator(r) => {
            add(r.error_code);
            r.coordinators.iter().for_each(|c| add(c.error_code));
        }
        ResponseKind::JoinGroup(r) => add(r.error_code),
        ResponseKind::SyncGroup(r) => add(r.error_code),
        ResponseKind::Heartbeat(r) => add(r.error_code),
        ResponseKind::LeaveGroup(r) => {
            add(r.error_code);
            r.members.iter().for_each(|m| add(m.error_code));
        }
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| add(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            add(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| add(p.error_code));
            for g in &r.groups {
                add(g.error_code);
                g.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| add(p.error_code));
            }
        }
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| add(g.error_code)),
        ResponseKind::ListGroups(r) => add(r.error_code),
        ResponseKind::DeleteGroups(r) => r.results.iter().for_each(|g| add(g.error_code)),
        ResponseKind::OffsetDelete(r) => {
            add(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| add(p.error_code));
        }
        ResponseKind::ConsumerGroupHeartbeat(r) => add(r.error_code),
        ResponseKind::ConsumerGroupDescribe(r) => r.groups.iter().for_each(|g| add(g.error_code)),
        _ => {}
    }
    codes
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::offset_commit_response::{
        OffsetCommitResponsePartition, OffsetCommitResponseTopic,
    };
    use kafka_protocol::messages::{OffsetCommitResponse, ResponseKind};

    use super::*;
    use crate::protocol::SUPPORTED;

    #[test]
    fn partition_errors_are_found_and_zero_is_not_an_error() {
        let p = |code| OffsetCommitResponsePartition::default().with_error_code(code);
        let r = OffsetCommitResponse::default().with_topics(vec![
            OffsetCommitResponseTopic::default().with_partitions(vec![p(0), p(27)]),
            OffsetCommitResponseTopic::default().with_partitions(vec![p(3)]),
        ]);
        assert_eq!(error_codes(&ResponseKind::OffsetCommit(r)), vec![27, 3]);
    }

    /// A new API in the handlers table needs its arm above; this fails until it has one.
    #[test]
    fn every_implemented_api_is_covered() {
        let covered = [
            "Produce",
            "Fetch",
            "ListOffsets",
            "Metadata",
            "ApiVersions",
            "CreateTopics",
            "DeleteTopics",
            "DeleteRecords",
            "CreatePartitions",
            "InitProducerId",
            "DescribeConfigs",
            "AlterConfigs",
            "IncrementalAlterConfigs",
            "DescribeCluster",
            "FindCoordinator",
            "JoinGroup",
            "SyncGroup",
            "Heartbeat",
            "LeaveGroup",
            "OffsetCommit",
            "OffsetFetch",
            "DescribeGroups",
            "ListGroups",
            "DeleteGroups",
            "OffsetDelete",
            "ConsumerGroupHeartbeat",
            "ConsumerGroupDescribe",
        ];
        for (key, _, _) in SUPPORTED {
            let name = crate::protocol::api_name(*key);
            assert!(covered.contains(&name), "{name} has no arm in error_codes");
        }
    }
}
