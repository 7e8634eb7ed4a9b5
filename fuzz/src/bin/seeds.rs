//! Writes the seed corpora (`fuzz/seeds/<target>/`): one well-formed input per API and version
//! the gateway registers, record batches in every codec, stored records and ledger entries.
//! Seeds let libFuzzer start from valid requests rather than discover the framing first.
//! Usage: SEEDS_DIR=DIR seeds
//!
//! A libFuzzer binary like the targets, because everything in this crate is built with coverage
//! instrumentation, whose runtime libFuzzer provides: it writes the seeds in its init hook and
//! exits before any fuzzing.
#![no_main]
// The init hook exits, so the (empty) target after it is unreachable by design.
#![allow(unreachable_code)]

use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_gateway::ledger::{LedgerEntry, LedgerRecord, encode_record};
use kafka_gateway::protocol::SUPPORTED;
use kafka_gateway::records::{Header, StoredRecord, TimestampType, encode_stored};
use kafka_gateway_fuzz::sample_batch;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType as KTs,
};

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::create_dir_all(dir).expect("create seed dir");
    std::fs::write(dir.join(name), data).expect("write seed");
}

fn compressed_batch(c: Compression) -> Bytes {
    let records: Vec<Record> = (0..4)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: KTs::Creation,
            offset: i,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("key {i}"))),
            value: Some(Bytes::from("a value that compresses ".repeat(4))),
            headers: IndexMap::new(),
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: c,
        },
    )
    .expect("encode batch");
    out.freeze()
}

fn request_body(key: ApiKey, batch: &Bytes) -> RequestKind {
    let name = || TopicName(StrBytes::from_static_str("orders"));
    match key {
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(name())
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(batch.clone())),
                        ]),
                ]),
        ),
        ApiKey::Fetch => RequestKind::Fetch(FetchRequest::default()),
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default()),
        ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::CreateTopics => {
            RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(name())
                    .with_num_partitions(3)
                    .with_configs(vec![
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(StrBytes::from_static_str("retention.ms"))
                            .with_value(Some(StrBytes::from_static_str("1000"))),
                    ]),
            ]))
        }
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(DescribeConfigsRequest::default()),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(FindCoordinatorRequest::default()),
        ApiKey::JoinGroup => RequestKind::JoinGroup(JoinGroupRequest::default()),
        ApiKey::SyncGroup => RequestKind::SyncGroup(SyncGroupRequest::default()),
        ApiKey::Heartbeat => RequestKind::Heartbeat(HeartbeatRequest::default()),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(LeaveGroupRequest::default()),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(OffsetCommitRequest::default()),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(DescribeGroupsRequest::default()),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(DeleteGroupsRequest::default()),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(OffsetDeleteRequest::default()),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default()),
        ApiKey::IncrementalAlterConfigs => {
            RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default())
        }
        ApiKey::CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(name())
                    .with_count(6),
            ]))
        }
        ApiKey::DeleteRecords => {
            RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(name())
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(2),
                    ]),
            ]))
        }
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_member_id(StrBytes::from_static_str("m"))
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![name()]))
                .with_server_assignor(Some(StrBytes::from_static_str("uniform")))
                .with_topic_partitions(Some(vec![
                    consumer_group_heartbeat_request::TopicPartitions::default()
                        .with_partitions(vec![0, 1]),
                ])),
        ),
        ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(StrBytes::from_static_str("g"))]),
        ),
        other => panic!("no seed for {other:?}: add one when registering a new API"),
    }
}

libfuzzer_sys::fuzz_target!(
    init: {
        let dir = std::env::var("SEEDS_DIR").expect("usage: SEEDS_DIR=DIR seeds");
        write_seeds(Path::new(&dir));
        std::process::exit(0);
    },
    |_data: &[u8]| {}
);

fn write_seeds(root: &Path) {
    let batch = sample_batch(3);

    let dir = root.join("request");
    for &(key, min, max) in SUPPORTED {
        for version in min.max(key.valid_versions().min)..=max {
            let body = request_body(key, &batch);
            let mut frame = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(key as i16)
                .with_request_api_version(version)
                .with_correlation_id(7)
                .with_client_id(Some(StrBytes::from_static_str("fuzz")))
                .encode(&mut frame, key.request_header_version(version))
                .expect("encode header");
            body.encode(&mut frame, version).expect("encode request");
            write(&dir, &format!("{key:?}-v{version}"), &frame);
            // The same, size-prefixed, twice: the stream form.
            let mut stream = BytesMut::new();
            for _ in 0..2 {
                stream.put_i32(frame.len() as i32);
                stream.put_slice(&frame);
            }
            write(&dir, &format!("{key:?}-v{version}-stream"), &stream);
        }
    }

    let dir = root.join("record_batch");
    write(&dir, "plain", &[&[1u8][..], &batch].concat());
    write(&dir, "plain-crc-checked", &[&[0u8][..], &batch].concat());
    write(
        &dir,
        "two",
        &[&[1u8][..], &batch, &sample_batch(1)].concat(),
    );
    for c in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        write(
            &dir,
            &format!("{c:?}"),
            &[&[1u8][..], &compressed_batch(c)].concat(),
        );
    }

    let dir = root.join("stored_record");
    let r = StoredRecord {
        offset: 42,
        partition: 1,
        timestamp: 1_700_000_000_000,
        timestamp_type: TimestampType::LogAppendTime,
        key: Some(Bytes::from_static(b"k")),
        value: None,
        headers: vec![Header {
            key: Bytes::from_static(b"h"),
            value: Some(Bytes::new()),
        }],
    };
    write(&dir, "record", &encode_stored(&r));

    let dir = root.join("ledger_replay");
    let mut records = vec![0u8];
    for (k, n, s) in [(0, 3, 0), (3, 2, 5), (3, 2, 9), (5, 1, 11)] {
        let rec = encode_record(&LedgerRecord {
            topic: "kafka/orders".into(),
            partition: 0,
            generation: 1,
            entry: LedgerEntry {
                kafka_offset: k,
                count: n,
                smq_offset: s,
                smq_count: n,
                max_timestamp: 100 + k,
                nonce: 0,
            },
            producers: Vec::new(),
            // Epochs grow with the offsets; the two entries at 3 share one, the later replaces.
            leader_epoch: k,
        });
        records.push(rec.len() as u8);
        records.extend(rec);
    }
    write(&dir, "records", &records);
    // Compact entries: offset, count, SMQ offset, timestamp (2 bytes), padding.
    write(
        &dir,
        "entries",
        &[
            &[1u8][..],
            &[0, 3, 0, 0, 10, 0, 0, 0],
            &[3, 2, 5, 0, 20, 0, 0, 0],
            &[3, 2, 9, 0, 15, 0, 0, 0],
            &[5, 4, 3, 0, 30, 0, 0, 0],
        ]
        .concat(),
    );
}
