"""confluent-kafka (librdkafka) against the gateway: exact round trip, codecs, large records,
idempotent producer, ListOffsets, unknown topic/partition errors."""

import os
import time

import pytest
from confluent_kafka import (KafkaError, KafkaException, TIMESTAMP_CREATE_TIME, TopicPartition,
                             OFFSET_BEGINNING)

import kgw

BASE_TS = 1_700_000_000_000  # explicit CreateTime timestamps (ms)


def sample_records(partition, n=8):
    """Records covering keys, null key, null value, empty value/key, headers incl. null values and
    repeated keys, explicit timestamps (not monotonic on purpose)."""
    recs = []
    for i in range(n):
        recs.append({"partition": partition, "key": b"key-%d-%d" % (partition, i),
                     "value": b"value-%d-%d-" % (partition, i) + bytes(range(256)) * (i % 3),
                     "timestamp": BASE_TS + partition * 100_000 + i * 1000,
                     "headers": [("trace", b"t-%d" % i), ("dup", b"first"), ("dup", b"second"),
                                 ("nullh", None), ("emptyh", b"")]})
    recs += [
        {"partition": partition, "key": None, "value": b"null-key", "timestamp": BASE_TS + 5},
        {"partition": partition, "key": b"null-value", "value": None, "timestamp": BASE_TS + 4},
        {"partition": partition, "key": b"empty-value", "value": b"", "timestamp": BASE_TS + 3},
        {"partition": partition, "key": b"", "value": b"empty-key", "timestamp": BASE_TS + 2},
        {"partition": partition, "key": None, "value": None, "timestamp": BASE_TS + 1,
         "headers": [("only-null", None)]},
        {"partition": partition, "key": b"\x00\xff binary", "value": b"\x00" * 100,
         "timestamp": BASE_TS + 999_999, "headers": [("bin", b"\x00\x01\xff")]},
    ]
    return recs


def assert_same(msg, rec, offset):
    where = "p%d@%d" % (msg.partition(), msg.offset())
    assert msg.partition() == rec["partition"], where
    assert msg.offset() == offset, where
    assert msg.key() == rec.get("key"), where
    assert msg.value() == rec.get("value"), where
    assert msg.timestamp() == (TIMESTAMP_CREATE_TIME, rec["timestamp"]), where
    # librdkafka returns None for a record without headers.
    assert msg.headers() == (rec.get("headers") or None), where


def test_round_trip_three_partitions(bootstrap):
    topic = kgw.unique_topic("ck-roundtrip")
    kgw.create_topic(bootstrap, topic, partitions=3)
    per_part = {p: sample_records(p) for p in range(3)}
    records = [r for p in range(3) for r in per_part[p]]
    delivered = kgw.produce_all(kgw.producer(bootstrap), topic, records)
    for p in range(3):
        offs = [m.offset() for m, r in zip(delivered, records) if r["partition"] == p]
        assert offs == list(range(len(per_part[p]))), "acknowledged offsets p%d: %s" % (p, offs)
        assert all(m.partition() == r["partition"] for m, r in zip(delivered, records))

    got = kgw.consume_partitions(bootstrap, topic, {p: len(per_part[p]) for p in range(3)})
    for p in range(3):
        assert len(got[p]) == len(per_part[p]), "partition %d: %d records" % (p, len(got[p]))
        for i, (m, r) in enumerate(zip(got[p], per_part[p])):
            assert_same(m, r, i)
        assert kgw.watermarks(bootstrap, topic, p) == (0, len(per_part[p]))
    # The suite runs once per storage format, as the gateway's default for new topics.
    assert kgw.topic_config(bootstrap, topic, "smq.storage.format") == kgw.storage_format()


@pytest.mark.parametrize("fmt", ["record", "batch"])
def test_storage_format_chosen_per_topic(bootstrap, fmt):
    """smq.storage.format in CreateTopics wins over the gateway's default; both formats give the
    exact round trip, also read from inside a batch."""
    topic = kgw.unique_topic("ck-format-" + fmt)
    kgw.create_topic(bootstrap, topic, partitions=1, config={"smq.storage.format": fmt})
    assert kgw.topic_config(bootstrap, topic, "smq.storage.format") == fmt
    records = sample_records(0)
    p = kgw.producer(bootstrap, **{"linger.ms": 100})
    delivered = kgw.produce_all(p, topic, records)
    assert [m.offset() for m in delivered] == list(range(len(records)))
    got = kgw.consume_partitions(bootstrap, topic, {0: len(records)})[0]
    for i, (m, r) in enumerate(zip(got, records)):
        assert_same(m, r, i)
    c = kgw.consumer(bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, 5)])
        m = None
        deadline = time.monotonic() + kgw.OP_TIMEOUT
        while m is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error():
                m = None
        assert m is not None, "nothing read from offset 5"
        assert_same(m, records[5], 5)
    finally:
        c.close()


def test_alter_configs_sets_the_format_before_the_first_write_only(bootstrap):
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                       ResourceType)
    topic = kgw.unique_topic("ck-alter")
    kgw.create_topic(bootstrap, topic, partitions=2, config={"smq.storage.format": "record"})
    a = kgw.admin(bootstrap)

    def alter(**configs):
        res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET)
            for k, v in configs.items()])
        return a.incremental_alter_configs([res], request_timeout=kgw.OP_TIMEOUT)[res].result(
            timeout=kgw.OP_TIMEOUT)

    alter(smq_storage_format="batch", retention_ms="86400000")
    assert kgw.topic_config(bootstrap, topic, "smq.storage.format") == "batch"
    assert kgw.topic_config(bootstrap, topic, "retention.ms") == "86400000"
    records = sample_records(1)
    delivered = kgw.produce_all(kgw.producer(bootstrap), topic, records)
    assert [m.offset() for m in delivered] == list(range(len(records)))
    got = kgw.consume_partitions(bootstrap, topic, {1: len(records)})[1]
    for i, (m, r) in enumerate(zip(got, records)):
        assert_same(m, r, i)
    with pytest.raises(KafkaException) as e:
        alter(smq_storage_format="record")
    assert "already holds records" in str(e.value)
    assert kgw.topic_config(bootstrap, topic, "smq.storage.format") == "batch"
    with pytest.raises(KafkaException) as e:
        alter(no_such_config="1")
    assert "no.such.config" in str(e.value)


def test_unknown_storage_format_is_refused_by_name(bootstrap):
    topic = kgw.unique_topic("ck-format-bad")
    with pytest.raises(KafkaException) as e:
        kgw.create_topic(bootstrap, topic, partitions=1, config={"smq.storage.format": "parquet"})
    assert "smq.storage.format=parquet" in str(e.value)


def test_round_trip_second_batch_continues_offsets(bootstrap):
    """Two produce calls to one partition: offsets continue, reading from the middle works."""
    topic = kgw.unique_topic("ck-continue")
    kgw.create_topic(bootstrap, topic, partitions=1)
    p = kgw.producer(bootstrap)
    first = [{"partition": 0, "value": b"a%d" % i, "timestamp": BASE_TS + i} for i in range(10)]
    second = [{"partition": 0, "value": b"b%d" % i, "timestamp": BASE_TS + 100 + i} for i in range(10)]
    d1 = kgw.produce_all(p, topic, first)
    d2 = kgw.produce_all(p, topic, second)
    assert [m.offset() for m in d1 + d2] == list(range(20))
    c = kgw.consumer(bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, 13)])
        seen = []
        deadline = time.monotonic() + kgw.OP_TIMEOUT
        while len(seen) < 7 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            seen.append((m.offset(), m.value()))
        assert seen == [(13 + i, b"b%d" % (3 + i)) for i in range(7)]
    finally:
        c.close()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_round_trip(bootstrap, codec):
    topic = kgw.unique_topic("ck-" + codec)
    kgw.create_topic(bootstrap, topic, partitions=1)
    records = []
    for i in range(200):
        # compressible and incompressible values, in batches of many records
        v = (b"compressible-%d " % i) * (i % 50) if i % 2 else os.urandom(i * 7)
        records.append({"partition": 0, "key": b"k%d" % i, "value": v, "timestamp": BASE_TS + i,
                        "headers": [("codec", codec.encode())]})
    p = kgw.producer(bootstrap, **{"compression.type": codec, "linger.ms": 50,
                                   "batch.num.messages": 50})
    delivered = kgw.produce_all(p, topic, records)
    assert [m.offset() for m in delivered] == list(range(len(records)))
    got = kgw.consume_partitions(bootstrap, topic, {0: len(records)})[0]
    assert len(got) == len(records)
    for i, (m, r) in enumerate(zip(got, records)):
        assert_same(m, r, i)


def test_one_mib_record(bootstrap):
    topic = kgw.unique_topic("ck-1mib")
    kgw.create_topic(bootstrap, topic, partitions=1)
    big = os.urandom(1024 * 1024)
    records = [{"partition": 0, "key": b"small-before", "value": b"x", "timestamp": BASE_TS},
               {"partition": 0, "key": b"big", "value": big, "timestamp": BASE_TS + 1,
                "headers": [("size", b"1MiB")]},
               {"partition": 0, "key": b"small-after", "value": b"y", "timestamp": BASE_TS + 2}]
    p = kgw.producer(bootstrap, **{"message.max.bytes": 4 * 1024 * 1024, "linger.ms": 0})
    delivered = kgw.produce_all(p, topic, records, flush_each=True)
    assert [m.offset() for m in delivered] == [0, 1, 2]
    got = kgw.consume_partitions(bootstrap, topic, {0: 3}, **{
        "fetch.max.bytes": 8 * 1024 * 1024, "max.partition.fetch.bytes": 8 * 1024 * 1024,
        "receive.message.max.bytes": 16 * 1024 * 1024})[0]
    assert len(got) == 3
    for i, (m, r) in enumerate(zip(got, records)):
        assert_same(m, r, i)
    assert len(got[1].value()) == 1024 * 1024


def test_topic_max_message_bytes_refuses_a_larger_batch(bootstrap):
    """A topic's max.message.bytes below the gateway's limit is what a batch is checked against
    (as in Kafka): a larger one gets MESSAGE_TOO_LARGE and is not stored, a smaller one is."""
    topic = kgw.unique_topic("ck-maxmsg")
    kgw.create_topic(bootstrap, topic, partitions=1, config={"max.message.bytes": "51200"})
    p = kgw.producer(bootstrap, **{"linger.ms": 0, "message.timeout.ms": 30000})
    errs = []
    p.produce(topic, value=os.urandom(100 * 1024), partition=0,
              on_delivery=lambda err, msg: errs.append(err))
    assert p.flush(60) == 0, "the large record neither failed nor succeeded within 60 s"
    assert len(errs) == 1 and errs[0] is not None, "a 100 KiB batch was stored under a 50 KiB limit"
    assert errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errs[0]
    small = {"partition": 0, "value": os.urandom(40 * 1024), "timestamp": BASE_TS}
    assert [m.offset() for m in kgw.produce_all(p, topic, [small])] == [0]
    got = kgw.consume_partitions(bootstrap, topic, {0: 1})[0]
    assert [(m.offset(), m.value()) for m in got] == [(0, small["value"])]
    assert kgw.watermarks(bootstrap, topic, 0) == (0, 1)


def test_idempotent_producer_acks_all(bootstrap):
    topic = kgw.unique_topic("ck-idem")
    kgw.create_topic(bootstrap, topic, partitions=3)
    fatal = []
    p = kgw.producer(bootstrap, **{"enable.idempotence": True, "acks": "all",
                                   "max.in.flight.requests.per.connection": 5, "linger.ms": 2,
                                   "batch.num.messages": 100,
                                   "error_cb": lambda e: fatal.append(str(e)) if e.fatal() else None})
    n = 3000
    records = [{"partition": i % 3, "key": b"k%d" % (i % 3), "value": b"seq-%06d" % i} for i in range(n)]
    delivered = kgw.produce_all(p, topic, records)
    assert not fatal, "fatal idempotent-producer errors: %s" % fatal
    for part in range(3):
        offs = [m.offset() for m, r in zip(delivered, records) if r["partition"] == part]
        assert offs == list(range(n // 3)), "partition %d acknowledged offsets not dense" % part
    got = kgw.consume_partitions(bootstrap, topic, {q: n // 3 for q in range(3)})
    for part in range(3):
        vals = [m.value() for m in got[part]]
        assert vals == [b"seq-%06d" % i for i in range(part, n, 3)], "partition %d: order/dupes" % part
        kgw.assert_dense(got[part])
        assert kgw.watermarks(bootstrap, topic, part) == (0, n // 3)


def test_list_offsets_by_timestamp_and_watermarks(bootstrap):
    topic = kgw.unique_topic("ck-times")
    kgw.create_topic(bootstrap, topic, partitions=2)
    # Partition 0: offsets 0..4 one batch each, offsets 5..9 in one batch; ts = BASE + 1000*(i+1).
    p = kgw.producer(bootstrap, **{"linger.ms": 0})
    single = [{"partition": 0, "value": b"s%d" % i, "timestamp": BASE_TS + 1000 * (i + 1)} for i in range(5)]
    kgw.produce_all(p, topic, single, flush_each=True)
    p2 = kgw.producer(bootstrap, **{"linger.ms": 200, "batch.num.messages": 1000})
    batch = [{"partition": 0, "value": b"b%d" % i, "timestamp": BASE_TS + 1000 * (i + 6)} for i in range(5)]
    delivered = kgw.produce_all(p2, topic, batch)
    assert [m.offset() for m in delivered] == [5, 6, 7, 8, 9]

    c = kgw.consumer(bootstrap)
    try:
        def lookup(ts, part=0):
            res = c.offsets_for_times([TopicPartition(topic, part, ts)], timeout=kgw.OP_TIMEOUT)
            assert res[0].error is None, res[0].error
            return res[0].offset

        assert lookup(BASE_TS) == 0                # before everything: first offset
        assert lookup(BASE_TS + 1000) == 0         # exact match
        assert lookup(BASE_TS + 2500) == 2         # between: first with ts >= target
        assert lookup(BASE_TS + 5000) == 4         # exact, last single batch
        assert lookup(BASE_TS + 5001) == 5         # first record of the multi-record batch
        assert lookup(BASE_TS + 8000) == 7         # inside the multi-record batch
        assert lookup(BASE_TS + 8500) == 8
        assert lookup(BASE_TS + 10_000) == 9       # last record
        assert lookup(BASE_TS + 10_001) == -1      # after everything: no offset (Kafka: -1)
        assert lookup(BASE_TS, part=1) == -1       # empty partition

        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=kgw.OP_TIMEOUT,
                                       cached=False) == (0, 10)
        assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=kgw.OP_TIMEOUT,
                                       cached=False) == (0, 0)
    finally:
        c.close()


def test_list_offsets_admin_api(bootstrap):
    """AdminClient.list_offsets: earliest, latest, and by timestamp."""
    from confluent_kafka.admin import OffsetSpec
    topic = kgw.unique_topic("ck-admin-lo")
    kgw.create_topic(bootstrap, topic, partitions=1)
    records = [{"partition": 0, "value": b"v%d" % i, "timestamp": BASE_TS + 10 * i} for i in range(30)]
    kgw.produce_all(kgw.producer(bootstrap), topic, records)
    a = kgw.admin(bootstrap)
    tp = TopicPartition(topic, 0)
    for spec, want in [(OffsetSpec.earliest(), 0), (OffsetSpec.latest(), 30),
                       (OffsetSpec.for_timestamp(BASE_TS + 95), 10)]:
        res = a.list_offsets({tp: spec}, request_timeout=kgw.OP_TIMEOUT)[tp].result(timeout=kgw.OP_TIMEOUT)
        assert res.offset == want, (spec, res.offset)
    res = a.list_offsets({tp: OffsetSpec.for_timestamp(BASE_TS + 100)},
                         request_timeout=kgw.OP_TIMEOUT)[tp].result(timeout=kgw.OP_TIMEOUT)
    assert (res.offset, res.timestamp) == (10, BASE_TS + 100)


UNKNOWN_TOPIC_CODES = (KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART)
UNKNOWN_PARTITION_CODES = (KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART)


def test_unknown_topic_metadata(bootstrap):
    topic = kgw.unique_topic("ck-missing")
    md = kgw.admin(bootstrap).list_topics(topic=topic, timeout=kgw.OP_TIMEOUT)
    t = md.topics.get(topic)
    assert t is not None and t.error is not None, "metadata for a missing topic: %r" % t
    assert t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, t.error
    # Still not created by that request (auto-create is off).
    md = kgw.admin(bootstrap).list_topics(timeout=kgw.OP_TIMEOUT)
    assert topic not in md.topics or md.topics[topic].error is not None


def _produce_expect_error(bootstrap, topic, partition, codes, **conf):
    p = kgw.producer(bootstrap, **{"message.timeout.ms": 30000,
                                   "topic.metadata.propagation.max.ms": 5000, **conf})
    errs = []
    t0 = time.monotonic()
    try:
        kw = {} if partition is None else {"partition": partition}
        p.produce(topic, value=b"x", on_delivery=lambda err, msg: errs.append(err), **kw)
        left = p.flush(60)
        assert left == 0, "produce to %s[%s] neither failed nor succeeded within 60s" % (topic, partition)
    except KafkaException as e:
        errs.append(e.args[0])
    elapsed = time.monotonic() - t0
    assert len(errs) == 1 and errs[0] is not None, "produce to %s[%s] succeeded" % (topic, partition)
    assert errs[0].code() in codes, "unexpected error %s" % errs[0]
    assert elapsed < 45, "error took %.1fs" % elapsed
    return errs[0]


def test_unknown_topic_produce(bootstrap):
    _produce_expect_error(bootstrap, kgw.unique_topic("ck-missing-p"), None, UNKNOWN_TOPIC_CODES)


def test_unknown_topic_consume(bootstrap):
    """An assigned missing topic yields no records and no hang; asking for its offsets fails fast with
    an unknown topic/partition error (librdkafka reports it as _UNKNOWN_PARTITION after the metadata
    lookup answered UNKNOWN_TOPIC_OR_PARTITION)."""
    topic = kgw.unique_topic("ck-missing-c")
    c = kgw.consumer(bootstrap, **{"topic.metadata.propagation.max.ms": 5000})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            assert m is None or m.error() is not None, "got a record from a missing topic: %r" % m.value()
        for call in (lambda: c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30, cached=False),
                     lambda: c.offsets_for_times([TopicPartition(topic, 0, BASE_TS)], timeout=30)):
            t0 = time.monotonic()
            with pytest.raises(KafkaException) as ei:
                call()
            assert ei.value.args[0].code() in UNKNOWN_PARTITION_CODES + UNKNOWN_TOPIC_CODES, ei.value
            assert time.monotonic() - t0 < 31
    finally:
        c.close()


def test_unknown_partition(bootstrap):
    topic = kgw.unique_topic("ck-badpart")
    kgw.create_topic(bootstrap, topic, partitions=3)
    _produce_expect_error(bootstrap, topic, 7, UNKNOWN_PARTITION_CODES)
    c = kgw.consumer(bootstrap)
    try:
        with pytest.raises(KafkaException) as ei:
            c.get_watermark_offsets(TopicPartition(topic, 7), timeout=kgw.OP_TIMEOUT, cached=False)
        assert ei.value.args[0].code() in UNKNOWN_PARTITION_CODES + (KafkaError._UNKNOWN_TOPIC,), ei.value
    finally:
        c.close()


def test_unknown_topic_and_partition_raw_list_offsets(gateway):
    """What the gateway itself answers (no client-side metadata checks): ListOffsets v1 for a missing
    topic and for a missing partition of an existing topic -> UNKNOWN_TOPIC_OR_PARTITION (3)."""
    import socket
    topic = kgw.unique_topic("raw-lo")
    kgw.create_topic(gateway.bootstrap, topic, partitions=2)
    missing = kgw.unique_topic("raw-missing")
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as s:
        s.settimeout(30)
        cases = [(missing, 0, 3), (topic, 2, 3), (topic, 99, 3), (topic, 1, 0)]
        for i, (t, part, want) in enumerate(cases):
            s.sendall(kgw.list_offsets_v1_request(100 + i, t, part, -1))
            corr, res = kgw.parse_list_offsets_v1(kgw.recv_frame(s))
            assert corr == 100 + i
            assert [(r[0], r[1], r[2]) for r in res] == [(t, part, want)], res
            if want == 0:
                assert res[0][4] == 0  # latest of an empty partition


def _admin_error(future):
    """The KafkaError an admin future fails with (within OP_TIMEOUT: never a hang)."""
    with pytest.raises(KafkaException) as ei:
        future.result(timeout=kgw.OP_TIMEOUT)
    return ei.value.args[0]


def test_create_partitions_grows_the_topic_and_keeps_every_record(gateway):
    """AdminClient.create_partitions grows a topic (twice), validate_only changes nothing, and
    Kafka's own errors come for no growth, fewer partitions and unknown topics. Every record stays
    readable at its offset, the new partitions take records from offset 0, and all of it holds
    across a gateway restart."""
    from confluent_kafka.admin import NewPartitions
    bootstrap = gateway.bootstrap
    topic = kgw.unique_topic("ck-addparts")
    kgw.create_topic(bootstrap, topic, partitions=2)
    records = sample_records(0, n=3) + sample_records(1, n=3)
    kgw.produce_all(kgw.producer(bootstrap), topic, records)
    a = kgw.admin(bootstrap)

    def create_partitions(name, count, **kw):
        return a.create_partitions([NewPartitions(name, count)], request_timeout=kgw.OP_TIMEOUT,
                                   **kw)[name]

    def partitions():
        return sorted(a.list_topics(topic=topic, timeout=kgw.OP_TIMEOUT).topics[topic].partitions)

    assert create_partitions(topic, 4, validate_only=True).result(timeout=kgw.OP_TIMEOUT) is None
    assert partitions() == [0, 1]
    assert create_partitions(topic, 4).result(timeout=kgw.OP_TIMEOUT) is None
    assert partitions() == [0, 1, 2, 3]
    err = _admin_error(create_partitions(topic, 4))
    assert err.code() == KafkaError.INVALID_PARTITIONS and "already has 4 partitions" in err.str(), err
    err = _admin_error(create_partitions(topic, 3, validate_only=True))
    assert err.code() == KafkaError.INVALID_PARTITIONS and "higher than the requested 3" in err.str(), err
    err = _admin_error(create_partitions(kgw.unique_topic("ck-addparts-missing"), 3))
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err
    assert create_partitions(topic, 6).result(timeout=kgw.OP_TIMEOUT) is None
    assert partitions() == list(range(6))

    added = [r for p in (2, 3, 5) for r in sample_records(p, n=2)]
    count = {p: len([r for r in records + added if r["partition"] == p]) for p in range(6)}
    acked = kgw.produce_all(kgw.producer(bootstrap), topic, added)
    assert sorted((m.partition(), m.offset()) for m in acked) == [
        (p, o) for p in (2, 3, 5) for o in range(count[p])]

    def check_all():
        got = kgw.consume_partitions(bootstrap, topic, count)
        for p in range(6):
            mine = [r for r in records + added if r["partition"] == p]
            assert len(got[p]) == len(mine), "partition %d: %d records" % (p, len(got[p]))
            for i, (m, r) in enumerate(zip(got[p], mine)):
                assert_same(m, r, i)

    check_all()
    rc = gateway.terminate(timeout=30)
    assert rc == 0, "gateway exit code after SIGTERM: %s" % rc
    gateway.start()
    a = kgw.admin(bootstrap)
    assert partitions() == list(range(6))
    check_all()
    assert [kgw.watermarks(bootstrap, topic, p)[1] for p in range(6)] == [count[p] for p in range(6)]


def test_create_topics_manual_replica_assignment(bootstrap):
    """CreateTopics with a replica assignment, as Kafka checks it: every partition on this gateway
    (broker 1) creates one partition per assignment; another broker id is refused with
    INVALID_REPLICA_ASSIGNMENT; validate_only creates nothing."""
    from confluent_kafka.admin import NewTopic
    a = kgw.admin(bootstrap)

    def create(name, assignment, **kw):
        # confluent-kafka wants num_partitions to match; librdkafka sends -1 with the assignment.
        fs = a.create_topics([NewTopic(name, num_partitions=len(assignment),
                                       replica_assignment=assignment)],
                             request_timeout=kgw.OP_TIMEOUT, operation_timeout=30, **kw)
        return fs[name]

    checked = kgw.unique_topic("ck-assign-validate")
    assert create(checked, [[1], [1]], validate_only=True).result(timeout=kgw.OP_TIMEOUT) is None
    md = a.list_topics(timeout=kgw.OP_TIMEOUT)
    assert checked not in md.topics or md.topics[checked].error is not None

    topic = kgw.unique_topic("ck-assign")
    assert create(topic, [[1], [1], [1]]).result(timeout=kgw.OP_TIMEOUT) is None
    deadline = time.monotonic() + kgw.OP_TIMEOUT
    while True:
        t = a.list_topics(topic=topic, timeout=kgw.OP_TIMEOUT).topics.get(topic)
        if t is not None and t.error is None:
            break
        assert time.monotonic() < deadline, "topic %s not in metadata: %r" % (topic, t)
        time.sleep(0.2)
    assert sorted(t.partitions) == [0, 1, 2]
    assert all(p.replicas == [1] for p in t.partitions.values())
    delivered = kgw.produce_all(kgw.producer(bootstrap), topic, sample_records(2, n=2))
    assert [(m.partition(), m.offset()) for m in delivered][:2] == [(2, 0), (2, 1)]

    elsewhere = kgw.unique_topic("ck-assign-other")
    err = _admin_error(create(elsewhere, [[1], [2]]))
    assert err.code() == KafkaError.INVALID_REPLICA_ASSIGNMENT, err
    assert "broker 2" in err.str(), err
    md = a.list_topics(timeout=kgw.OP_TIMEOUT)
    assert elsewhere not in md.topics or md.topics[elsewhere].error is not None
