"""Topic deletion as Kafka does it, against real SMQ: DeleteTopics makes the topic disappear at
once, drops its committed offsets, lets the name be created again as a new, empty topic with a new
topic id, and removes its SMQ files through the filer (docs/storage.md, "Deleting topics")."""

import json
import os
import time
import urllib.error
import urllib.request
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import NewTopic

import kgw


def stats(gateway):
    with urllib.request.urlopen(gateway.http + "/stats", timeout=10) as r:
        return json.loads(r.read().decode())


def filer_children(path):
    """Names in a filer directory through its HTTP port (gRPC port - 10000), or None when the
    directory does not exist."""
    host, grpc = os.environ["SMQ_FILER"].rsplit(":", 1)
    url = "http://%s:%d%s/?limit=1000" % (host, int(grpc) - 10000, path)
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = json.loads(r.read().decode() or "{}")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
    return sorted(e["FullPath"].rsplit("/", 1)[1] for e in body.get("Entries") or [])


def topic_id(admin, topic):
    d = admin.describe_topics(TopicCollection([topic]), request_timeout=kgw.OP_TIMEOUT)[topic]
    return str(d.result(timeout=kgw.OP_TIMEOUT).topic_id)


def delete(admin, topic):
    admin.delete_topics([topic], operation_timeout=30, request_timeout=kgw.OP_TIMEOUT)[topic].result(
        timeout=kgw.OP_TIMEOUT)


def committed(bootstrap, group, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        res = c.committed([TopicPartition(topic, p) for p in partitions], timeout=kgw.OP_TIMEOUT)
    finally:
        c.close()
    return {tp.partition: tp.offset for tp in res}


def test_deleted_topic_is_gone_at_once_and_its_name_is_new_again(gateway):
    bootstrap = gateway.bootstrap
    a = kgw.admin(bootstrap)
    topic, group = kgw.unique_topic("del"), "g-del-" + uuid.uuid4().hex[:8]
    kgw.create_topic(bootstrap, topic, partitions=2)
    recs = [{"partition": p, "key": b"k", "value": b"old-%d-%d" % (p, i)} for p in range(2) for i in range(10)]
    kgw.produce_all(kgw.producer(bootstrap), topic, recs)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 7)], asynchronous=False)
    finally:
        c.close()
    assert committed(bootstrap, group, topic, [0, 1]) == {0: 5, 1: 7}
    old_id = topic_id(a, topic)
    assert old_id != str(uuid.UUID(int=0)), old_id
    smq_topics = filer_children("/topics/kafka")
    assert topic in smq_topics

    delete(a, topic)
    # Gone at once: Metadata for it says UNKNOWN_TOPIC_OR_PARTITION, listing does not show it,
    # and its committed offsets are dropped.
    md = a.list_topics(topic=topic, timeout=kgw.OP_TIMEOUT)
    assert md.topics[topic].error is not None, md.topics[topic]
    assert md.topics[topic].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert topic not in a.list_topics(timeout=kgw.OP_TIMEOUT).topics
    assert committed(bootstrap, group, topic, [0, 1]) == {0: -1001, 1: -1001}
    with_error = a.delete_topics([topic], request_timeout=kgw.OP_TIMEOUT)[topic]
    try:
        with_error.result(timeout=kgw.OP_TIMEOUT)
        raise AssertionError("deleting a deleted topic succeeded")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, e

    # The name again: a new, empty topic with a new id, whose offsets start at 0.
    kgw.create_topic(bootstrap, topic, partitions=1)
    assert kgw.watermarks(bootstrap, topic, 0) == (0, 0)
    new_id = topic_id(a, topic)
    assert new_id != old_id
    fresh = [{"partition": 0, "key": b"k", "value": b"new-%d" % i} for i in range(3)]
    acked = kgw.produce_all(kgw.producer(bootstrap), topic, fresh)
    assert [m.offset() for m in acked] == [0, 1, 2]
    got = kgw.consume_partitions(bootstrap, topic, {0: 3})[0]
    assert [(m.offset(), m.value()) for m in got] == [(i, b"new-%d" % i) for i in range(3)]
    assert committed(bootstrap, group, topic, [0]) == {0: -1001}

    # The old incarnation's SMQ files are removed through the filer, and /stats shows the
    # deletion until that is done.
    seen = [d for d in stats(gateway)["deleting_topics"] if d["topic"] == topic]
    deadline = time.monotonic() + 90
    while [d for d in stats(gateway)["deleting_topics"] if d["topic"] == topic]:
        assert time.monotonic() < deadline, stats(gateway)["deleting_topics"]
        time.sleep(1)
    kgw.log("deletion in /stats: %s" % seen)
    assert seen and seen[0]["smq_topic"] == "kafka/" + topic
    assert filer_children("/topics/kafka/" + topic) in (None, []), filer_children("/topics/kafka/" + topic)
    # The new incarnation lives on.
    assert kgw.watermarks(bootstrap, topic, 0) == (0, 3)


def test_delete_topics_of_unknown_and_several_topics(bootstrap):
    a = kgw.admin(bootstrap)
    t1, t2 = kgw.unique_topic("del-a"), kgw.unique_topic("del-b")
    keep = kgw.unique_topic("del-keep")
    for t in (t1, t2, keep):
        kgw.create_topic(bootstrap, t, partitions=1)
    # A grown topic is deleted with the partitions it was given.
    from confluent_kafka.admin import NewPartitions
    a.create_partitions([NewPartitions(t2, 3)], request_timeout=kgw.OP_TIMEOUT)[t2].result(
        timeout=kgw.OP_TIMEOUT)
    kgw.produce_all(kgw.producer(bootstrap), t2, [{"partition": 2, "key": None, "value": b"v"}])
    kgw.produce_all(kgw.producer(bootstrap), keep, [{"partition": 0, "key": None, "value": b"v"}])
    missing = kgw.unique_topic("del-missing")
    fs = a.delete_topics([t1, t2, missing], operation_timeout=30, request_timeout=kgw.OP_TIMEOUT)
    fs[t1].result(timeout=kgw.OP_TIMEOUT)
    fs[t2].result(timeout=kgw.OP_TIMEOUT)
    try:
        fs[missing].result(timeout=kgw.OP_TIMEOUT)
        raise AssertionError("deleting a topic that never existed succeeded")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, e
    listed = a.list_topics(timeout=kgw.OP_TIMEOUT).topics
    assert t1 not in listed and t2 not in listed and keep in listed
    # Nothing of another topic is touched.
    assert kgw.watermarks(bootstrap, keep, 0) == (0, 1)
    # Created again at once, each with its own partition count.
    a.create_topics([NewTopic(t1, 3, 1)], request_timeout=kgw.OP_TIMEOUT)[t1].result(timeout=kgw.OP_TIMEOUT)
    md = a.list_topics(topic=t1, timeout=kgw.OP_TIMEOUT)
    assert md.topics[t1].error is None and len(md.topics[t1].partitions) == 3
    kgw.create_topic(bootstrap, t2, partitions=1)
    assert kgw.watermarks(bootstrap, t2, 0) == (0, 0)
    md = a.list_topics(topic=t2, timeout=kgw.OP_TIMEOUT)
    assert sorted(md.topics[t2].partitions) == [0], "a created-again topic has only its own partitions"


def java_admin(bootstrap, *args):
    r = kgw.run_client(["java", "-jar", kgw.JAVA_JAR, "admin", bootstrap] + list(args))
    assert r.returncode == 0, "java admin %s failed (rc=%d):\n%s" % (args, r.returncode, r.stderr[-4000:])
    return [l.split("\t") for l in r.stdout.splitlines() if l]


def test_java_admin_grows_deletes_and_creates_a_topic_again(bootstrap):
    """The Java AdminClient: createPartitions, describeTopics (topic id), deleteTopics, then the
    name created again is a new topic with a new id; records written before the growth stay."""
    topic = kgw.unique_topic("jdel")
    kgw.create_topic(bootstrap, topic, partitions=1)
    kgw.produce_all(kgw.producer(bootstrap), topic, [{"partition": 0, "key": b"k", "value": b"v%d" % i}
                                                    for i in range(4)])
    [[kind, name, first_id, n]] = java_admin(bootstrap, "describe-topic", topic)
    assert (kind, name, n) == ("TOPIC", topic, "1")
    assert java_admin(bootstrap, "create-partitions", topic, "3") == [["CREATED"]]
    assert java_admin(bootstrap, "describe-topic", topic) == [["TOPIC", topic, first_id, "3"]]
    assert kgw.watermarks(bootstrap, topic, 0) == (0, 4)
    acked = kgw.produce_all(kgw.producer(bootstrap), topic, [{"partition": 2, "key": None, "value": b"x"}])
    assert [(m.partition(), m.offset()) for m in acked] == [(2, 0)]

    assert java_admin(bootstrap, "delete-topic", topic) == [["DELETED"]]
    [err] = java_admin(bootstrap, "describe-topic", topic)
    assert err[0] == "ERROR" and "UnknownTopicOrPartition" in err[1], err
    [err] = java_admin(bootstrap, "delete-topic", topic)
    assert err[0] == "ERROR" and "UnknownTopicOrPartition" in err[1], err

    kgw.create_topic(bootstrap, topic, partitions=2)
    [[_, _, new_id, n]] = java_admin(bootstrap, "describe-topic", topic)
    assert n == "2" and new_id != first_id, (first_id, new_id)
    assert [kgw.watermarks(bootstrap, topic, p) for p in (0, 1)] == [(0, 0), (0, 0)]
