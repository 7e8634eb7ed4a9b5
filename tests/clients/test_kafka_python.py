"""kafka-python (pure Python client) against the gateway. (kafka-python's send() refuses null header
values and a record whose key and value are both null, so those cases are covered by the other clients.)"""

import os
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

import kgw

BASE_TS = 1_710_000_000_000


def kp_producer(bootstrap, **kw):
    conf = dict(bootstrap_servers=bootstrap, acks="all", linger_ms=5, request_timeout_ms=30000,
                max_block_ms=int(kgw.OP_TIMEOUT * 1000), retries=5)
    conf.update(kw)
    return KafkaProducer(**conf)


def kp_consume(bootstrap, topic, partitions, count, **kw):
    conf = dict(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", request_timeout_ms=30000, fetch_max_wait_ms=200)
    conf.update(kw)
    c = KafkaConsumer(**conf)
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out = []
        deadline = time.monotonic() + kgw.OP_TIMEOUT
        while len(out) < count and time.monotonic() < deadline:
            for _tp, msgs in c.poll(timeout_ms=500).items():
                out.extend(msgs)
        assert len(out) == count, "kafka-python consumed %d of %d records within %ss" % (
            len(out), count, kgw.OP_TIMEOUT)
        return sorted(out, key=lambda m: (m.partition, m.offset))
    finally:
        c.close()


def produce(p, topic, records):
    futs = [p.send(topic, **r) for r in records]
    p.flush(timeout=kgw.OP_TIMEOUT)
    return [f.get(timeout=kgw.OP_TIMEOUT) for f in futs]


def test_round_trip_headers_and_nulls(bootstrap):
    topic = kgw.unique_topic("kp-roundtrip")
    kgw.create_topic(bootstrap, topic, partitions=3)
    records = []
    for part in range(3):
        records += [
            dict(partition=part, key=b"k%d" % part, value=b"v%d" % part, timestamp_ms=BASE_TS + part,
                 headers=[("h", b"1"), ("h", b"2"), ("empty-h", b"")]),
            dict(partition=part, key=b"tombstone", value=None, timestamp_ms=BASE_TS + 10 + part,
                 headers=[]),
            dict(partition=part, key=None, value=b"", timestamp_ms=BASE_TS + 20 + part, headers=[]),
            dict(partition=part, key=b"", value=None, timestamp_ms=BASE_TS + 30 + part,
                 headers=[("x", b"\x00\xff")]),
        ]
    p = kp_producer(bootstrap)
    try:
        md = produce(p, topic, records)
    finally:
        p.close(timeout=10)
    for part in range(3):
        assert [m.offset for m in md if m.partition == part] == [0, 1, 2, 3]

    got = kp_consume(bootstrap, topic, range(3), len(records))
    expected = sorted(records, key=lambda r: r["partition"])
    for i, (m, r) in enumerate(zip(got, expected)):
        assert (m.partition, m.offset) == (r["partition"], i % 4)
        assert m.key == r["key"]
        assert m.value == r["value"]
        assert m.timestamp == r["timestamp_ms"]
        assert m.timestamp_type == 0  # CreateTime
        assert list(m.headers) == r["headers"]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_round_trip(bootstrap, codec):
    topic = kgw.unique_topic("kp-" + codec)
    kgw.create_topic(bootstrap, topic, partitions=1)
    records = [dict(partition=0, key=b"k%d" % i,
                    value=((b"kafka-python %s %d " % (codec.encode(), i)) * (i % 40)) if i % 3 else os.urandom(i),
                    timestamp_ms=BASE_TS + i, headers=[("i", str(i).encode())]) for i in range(150)]
    p = kp_producer(bootstrap, compression_type=codec, linger_ms=50, batch_size=64 * 1024)
    try:
        md = produce(p, topic, records)
    finally:
        p.close(timeout=10)
    assert [m.offset for m in md] == list(range(len(records)))
    got = kp_consume(bootstrap, topic, [0], len(records))
    for i, (m, r) in enumerate(zip(got, records)):
        assert m.offset == i
        assert (m.key, m.value, m.timestamp, list(m.headers)) == (
            r["key"], r["value"], r["timestamp_ms"], r["headers"])


def test_one_mib_record(bootstrap):
    topic = kgw.unique_topic("kp-1mib")
    kgw.create_topic(bootstrap, topic, partitions=1)
    big = os.urandom(1024 * 1024)
    p = kp_producer(bootstrap, max_request_size=4 * 1024 * 1024)
    try:
        md = produce(p, topic, [dict(partition=0, key=b"big", value=big, timestamp_ms=BASE_TS)])
    finally:
        p.close(timeout=10)
    assert md[0].offset == 0
    got = kp_consume(bootstrap, topic, [0], 1, max_partition_fetch_bytes=8 * 1024 * 1024,
                     fetch_max_bytes=8 * 1024 * 1024)
    assert got[0].value == big and got[0].key == b"big" and got[0].offset == 0
