"""Three gateways on one SMQ namespace form one Kafka cluster (issue 17): every gateway's Metadata
lists all three and agrees on each partition's leader, a client that knows one gateway reaches every
partition, and when a gateway is SIGKILLed under an idempotent producer the others take its
partitions over with nothing lost, nothing duplicated and offsets dense. A consumer group keeps
its committed offsets when its coordinator dies, and a killed gateway rejoins and leads again.

The cluster uses a namespace of its own on the session's SMQ, so the session gateway (namespace
`kafka`) is not part of it."""

import os
import signal
import threading
import time
import uuid

import pytest
from confluent_kafka import KafkaError, TopicPartition

import kgw
from test_restart import metric

PARTS = 6
NODES = 3


class Cluster:
    def __init__(self, smq, log_dir):
        self.namespace = "kcluster" + uuid.uuid4().hex[:6]
        self.gateways = [
            kgw.Gateway(smq.master, os.path.join(log_dir, "cluster-%d.log" % i),
                        namespace=self.namespace, extra_args=["--node-id", str(i)])
            for i in range(NODES)]

    def start(self):
        for g in self.gateways:
            g.start()
        self.wait_members(NODES)

    def live(self):
        return [g for g in self.gateways if g.alive()]

    def bootstrap(self):
        return ",".join(g.bootstrap for g in self.live())

    def wait_members(self, n, timeout=30):
        """Until every live gateway's Metadata lists exactly n brokers."""
        deadline = time.monotonic() + timeout
        while True:
            seen = {g.bootstrap: sorted(kgw.admin(g.bootstrap).list_topics(timeout=10).brokers)
                    for g in self.live()}
            if all(len(b) == n for b in seen.values()):
                return seen
            assert time.monotonic() < deadline, "brokers listed by each gateway: %s" % seen
            time.sleep(0.5)

    def leaders(self, via, topic):
        md = kgw.admin(via.bootstrap).list_topics(topic=topic, timeout=10)
        return {p: md.topics[topic].partitions[p].leader for p in range(PARTS)}

    def by_node(self, node_id):
        return self.gateways[node_id]

    def stop(self):
        for g in self.gateways:
            g.stop()


@pytest.fixture(scope="module")
def cluster(smq, tmp_path_factory):
    log_dir = os.environ.get("KGW_LOG_DIR") or str(tmp_path_factory.mktemp("cluster"))
    os.makedirs(log_dir, exist_ok=True)
    c = Cluster(smq, log_dir)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def test_metadata_agrees_on_every_gateway_and_spreads_leaders(cluster):
    topic = kgw.unique_topic("cl-md")
    kgw.create_topic(cluster.gateways[0].bootstrap, topic, partitions=PARTS)
    brokers = cluster.wait_members(NODES)
    for listed in brokers.values():
        assert listed == list(range(NODES)), brokers
    views = [cluster.leaders(g, topic) for g in cluster.gateways]
    assert all(v == views[0] for v in views), "gateways disagree on leaders: %s" % views
    per_node = {n: sum(1 for l in views[0].values() if l == n) for n in range(NODES)}
    assert per_node == {n: PARTS // NODES for n in range(NODES)}, per_node


def test_a_client_that_knows_one_gateway_reaches_every_partition(cluster):
    topic = kgw.unique_topic("cl-one")
    first, last = cluster.gateways[0].bootstrap, cluster.gateways[-1].bootstrap
    kgw.create_topic(first, topic, partitions=PARTS)
    p = kgw.producer(first)
    records = [{"value": b"v-%d" % i, "partition": i % PARTS} for i in range(12 * PARTS)]
    delivered = kgw.produce_all(p, topic, records)
    assert sorted({m.partition() for m in delivered}) == list(range(PARTS))
    got = kgw.consume_partitions(last, topic, {q: 12 for q in range(PARTS)})
    for q in range(PARTS):
        kgw.assert_dense(got[q])
        assert [m.value() for m in got[q]] == [b"v-%d" % i for i in range(q, 12 * PARTS, PARTS)]
    # Each gateway reports the offsets of the partitions it leads (what the KafkaTopic statistics
    # are made of): together every partition once, at its high water mark.
    led = {}
    for g in cluster.gateways:
        for f in g.get_json("/led-partitions/" + topic):
            assert f["partition"] not in led, "partition %d reported twice" % f["partition"]
            led[f["partition"]] = (f["high_water_mark"], f["log_start_offset"])
    assert led == {q: (12, 0) for q in range(PARTS)}, led


FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH = 74, 75


def agreed_epochs(cluster, topic, above=None, timeout=20):
    """{partition: (leader, epoch)} once every live gateway's Metadata gives the same, with
    every epoch above `above`'s (or at least 1): the leader publishes its epoch with its next
    heartbeat, so the others follow within about two seconds."""
    deadline = time.monotonic() + timeout
    while True:
        views = {g.bootstrap: kgw.metadata_leaders(g.bootstrap, topic) for g in cluster.live()}
        first = next(iter(views.values()))
        view = {q: (leader, epoch) for q, (leader, epoch, _err) in first.items()}
        grown = all(epoch > (above or {}).get(q, (None, 0))[1] for q, (_l, epoch) in view.items())
        if grown and all(v == first for v in views.values()):
            return view
        assert time.monotonic() < deadline, "Metadata (leader, epoch, error) per gateway: %s" % views
        time.sleep(0.3)


def test_leader_epochs_agree_grow_when_leadership_moves_and_fence_older_clients(cluster):
    topic = kgw.unique_topic("cl-epoch")
    kgw.create_topic(cluster.gateways[0].bootstrap, topic, partitions=PARTS)
    one_each = [{"value": b"e", "partition": q} for q in range(PARTS)]
    kgw.produce_all(kgw.producer(cluster.bootstrap()), topic, one_each)
    before = agreed_epochs(cluster, topic)
    leader, epoch = before[0]
    g = cluster.by_node(leader)
    assert kgw.fetch_error(g.bootstrap, topic, 0, epoch) == (0, 1)
    assert kgw.fetch_error(g.bootstrap, topic, 0, epoch + 1)[0] == UNKNOWN_LEADER_EPOCH
    moved = [q for q in range(PARTS) if before[q][0] == leader]
    # SIGTERM: the gateway hands its partitions over; their new leaders take them at the next
    # produce, each with a higher epoch.
    g.terminate()
    try:
        cluster.wait_members(NODES - 1)
        kgw.produce_all(kgw.producer(cluster.bootstrap()), topic, one_each)
        after = agreed_epochs(cluster, topic, above={q: before[q] for q in moved})
        for q in range(PARTS):
            assert after[q][1] >= before[q][1], (q, before, after)
            assert after[q][0] != leader, (q, after)
        new_leader, new_epoch = after[0]
        via = cluster.by_node(new_leader).bootstrap
        # Older than every epoch Metadata listed for the new leader: that client's Metadata
        # predates the previous leadership. The previous leader's epoch itself is what
        # Metadata listed with the new leader until it took the partition: accepted.
        assert kgw.fetch_error(via, topic, 0, epoch - 1)[0] == FENCED_LEADER_EPOCH
        assert kgw.fetch_error(via, topic, 0, epoch) == (0, 2)
        assert kgw.fetch_error(via, topic, 0, new_epoch) == (0, 2)
        assert kgw.fetch_error(via, topic, 0, new_epoch + 1)[0] == UNKNOWN_LEADER_EPOCH
    finally:
        g.start()
        cluster.wait_members(NODES)
    # Back: it leads its partitions again, at an epoch above its successors'.
    kgw.produce_all(kgw.producer(cluster.bootstrap()), topic, one_each)
    back = agreed_epochs(cluster, topic)
    assert {q for q in range(PARTS) if back[q][0] == leader} == set(moved), back
    for q in moved:
        assert back[q][1] > after[q][1], (q, after, back)


class Producer(threading.Thread):
    """An idempotent producer writing 'seq-N' round-robin over the partitions until stopped,
    recording every acknowledgement (partition, offset, value, time) and every error."""

    def __init__(self, bootstrap, topic):
        super().__init__(daemon=True)
        self.topic = topic
        self.p = kgw.producer(bootstrap, **{
            "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 240_000,
            "request.timeout.ms": 15_000, "retry.backoff.ms": 100, "retry.backoff.max.ms": 500,
            "reconnect.backoff.max.ms": 500, "topic.metadata.refresh.interval.ms": 1000})
        self.lock = threading.Lock()
        self.acked, self.errors = [], []
        self.sent = 0
        self.stop_flag = threading.Event()

    def _cb(self, err, msg):
        with self.lock:
            if err is not None:
                self.errors.append((msg.value(), str(err)))
            else:
                self.acked.append((msg.partition(), msg.offset(), msg.value(), time.monotonic()))

    def run(self):
        while not self.stop_flag.is_set():
            v = b"seq-%08d" % self.sent
            try:
                self.p.produce(self.topic, value=v, partition=self.sent % PARTS, on_delivery=self._cb)
                self.sent += 1
            except BufferError:
                pass
            self.p.poll(0.002)
            if self.sent % 50 == 0:
                time.sleep(0.01)

    def acked_after(self, t0, partitions):
        with self.lock:
            return {q: sum(1 for part, _o, _v, t in self.acked if part == q and t > t0) for q in partitions}

    def wait_acked_after(self, t0, partitions, n, timeout):
        deadline = time.monotonic() + timeout
        while True:
            counts = self.acked_after(t0, partitions)
            if all(c >= n for c in counts.values()):
                return time.monotonic()
            assert time.monotonic() < deadline, "acks per partition after t0 within %ss: %s; errors: %s" % (
                timeout, counts, self.errors[:5])
            time.sleep(0.05)

    def finish(self):
        self.stop_flag.set()
        self.join(30)
        left = self.p.flush(240)
        assert left == 0, "%d records neither acknowledged nor failed" % left
        assert not self.errors, "delivery errors: %s" % self.errors[:5]


def watermarks_following_the_leader(bootstrap, topic, q, timeout=60):
    """librdkafka's watermark query is one request: right after a membership change the
    gateway it asks may have just handed the partition on (NOT_LEADER_OR_FOLLOWER), which a
    client answers by refreshing Metadata and asking again, as this does."""
    confluent_kafka = kgw.ck()
    retriable = (confluent_kafka.KafkaError.NOT_LEADER_FOR_PARTITION,
                 confluent_kafka.KafkaError.LEADER_NOT_AVAILABLE)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return kgw.watermarks(bootstrap, topic, q)
        except confluent_kafka.KafkaException as e:
            if e.args[0].code() not in retriable or time.monotonic() > deadline:
                raise
            kgw.log("watermarks of p%d: %s; asking again" % (q, e.args[0].str()))
            time.sleep(1)


def check_everything_once(bootstrap, topic, acked):
    ends = {q: watermarks_following_the_leader(bootstrap, topic, q) for q in range(PARTS)}
    got = kgw.consume_partitions(bootstrap, topic, {q: ends[q][1] for q in range(PARTS)}, timeout=120)
    values = []
    # librdkafka reports some records delivered without an offset: a later batch of the
    # producer was stored, so these were too (its "implicit ack"). They must be stored once.
    no_offset = [(part, val) for part, off, val, _t in acked if off is None]
    if no_offset:
        kgw.log("%d records acknowledged without an offset: %s" % (len(no_offset), no_offset[:10]))
    for q in range(PARTS):
        kgw.assert_dense(got[q])
        by_off = {m.offset(): m.value() for m in got[q]}
        stored = {m.value(): m.offset() for m in got[q]}
        for part, off, val, _t in acked:
            if part == q and off is None:
                assert val in stored, "acked p%d %r (without an offset) is not stored" % (q, val)
            elif part == q:
                assert by_off.get(off) == val, "acked p%d@%d %r reads %r" % (q, off, val, by_off.get(off))
        values += [m.value() for m in got[q]]
    dup = len(values) - len(set(values))
    assert dup == 0, "%d records stored twice" % dup
    assert len(values) == len(acked), "%d records stored, %d acknowledged" % (len(values), len(acked))


def test_sigkill_of_a_gateway_under_an_idempotent_producer(cluster):
    topic = kgw.unique_topic("cl-kill")
    kgw.create_topic(cluster.gateways[0].bootstrap, topic, partitions=PARTS)
    leaders = cluster.leaders(cluster.gateways[0], topic)
    victim = cluster.by_node(leaders[0])
    moved = [q for q in range(PARTS) if leaders[q] == leaders[0]]
    refused_before = {i: out_of_order_answers(g) for i, g in enumerate(cluster.gateways) if g is not victim}
    prod = Producer(cluster.bootstrap(), topic)
    prod.start()
    try:
        prod.wait_acked_after(0, range(PARTS), 100, timeout=60)
        victim.kill9()
        killed = time.monotonic()
        served = prod.wait_acked_after(killed, moved, 50, timeout=60)
        failover = served - killed
        kgw.log("partitions %s of the killed gateway acknowledged again after %.1f s" % (moved, failover))
        cluster.wait_members(NODES - 1)
        # The killed gateway rejoins and leads partitions again.
        victim.start()
        rejoined = time.monotonic()
        cluster.wait_members(NODES)
        prod.wait_acked_after(rejoined, range(PARTS), 50, timeout=60)
    finally:
        prod.finish()
    after = cluster.leaders(cluster.gateways[1], topic)
    assert after == leaders, "leaders after the rejoin %s, before %s" % (after, leaders)
    check_everything_once(cluster.gateways[1].bootstrap, topic, prod.acked)
    assert failover < 30, "failover took %.1f s" % failover
    # A batch pipelined behind one refused during the takeover arrives with a sequence gap. An
    # OUT_OF_ORDER_SEQUENCE_NUMBER answer makes librdkafka bump its epoch and store again the
    # records the killed gateway stored without acknowledging them (the victim restarted, so
    # its count starts at 0).
    refused = {i: out_of_order_answers(g) - refused_before.get(i, 0) for i, g in enumerate(cluster.gateways)}
    assert not any(refused.values()), "OUT_OF_ORDER_SEQUENCE_NUMBER answers per node: %s" % refused


def out_of_order_answers(gateway):
    """How many produces the gateway answered OUT_OF_ORDER_SEQUENCE_NUMBER (its /metrics)."""
    return metric(gateway, 'kafka_gateway_produce_errors_total{reason="out_of_order_sequence"}')


def test_a_group_keeps_its_offsets_when_its_coordinator_dies(cluster):
    topic = kgw.unique_topic("cl-grp")
    group = "g-" + topic
    boot = cluster.gateways[0].bootstrap
    kgw.create_topic(boot, topic, partitions=PARTS)
    kgw.produce_all(kgw.producer(boot), topic,
                    [{"value": b"r-%d" % i, "partition": i % PARTS} for i in range(10 * PARTS)])
    c = kgw.consumer(cluster.bootstrap(), **{"group.id": group})
    res = c.commit(offsets=[TopicPartition(topic, q, 7) for q in range(PARTS)], asynchronous=False)
    assert all(tp.error is None for tp in res), res
    c.close()
    a = kgw.admin(boot)
    desc = a.describe_consumer_groups([group], request_timeout=30)[group].result(timeout=30)
    coordinator = cluster.by_node(desc.coordinator.id)
    coordinator.kill9()
    try:
        cluster.wait_members(NODES - 1)
        c = kgw.consumer(cluster.bootstrap(), **{"group.id": group})
        got = c.committed([TopicPartition(topic, q) for q in range(PARTS)], timeout=60)
        c.close()
        assert {tp.partition: tp.offset for tp in got} == {q: 7 for q in range(PARTS)}, got
        # And the group goes on from there with a new coordinator.
        c = kgw.consumer(cluster.bootstrap(), **{"group.id": group, "auto.offset.reset": "earliest",
                                                 "enable.partition.eof": False})
        c.subscribe([topic])
        seen = []
        deadline = time.monotonic() + 60
        while len(seen) < 3 * PARTS and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                seen.append((m.partition(), m.offset()))
            elif m is not None and m.error().code() != KafkaError._PARTITION_EOF:
                kgw.log("consumer error:", m.error())
        c.close()
        assert sorted(seen) == sorted((q, o) for q in range(PARTS) for o in (7, 8, 9)), seen
    finally:
        coordinator.start()
        cluster.wait_members(NODES)


def test_a_leader_stopped_past_its_lease_then_continued_gives_no_offset_twice(cluster):
    """SIGSTOP of a leader while it writes, for longer than its partition locks last: the others
    take its partitions over; then SIGCONT, with its appends still on their way. It must not
    answer them as written, its late ledger entries must not replace its successors', and it
    rejoins."""
    cluster.wait_members(NODES)
    topic = kgw.unique_topic("cl-stop")
    kgw.create_topic(cluster.gateways[0].bootstrap, topic, partitions=PARTS)
    leaders = cluster.leaders(cluster.gateways[0], topic)
    victim = cluster.by_node(leaders[0])
    moved = [q for q in range(PARTS) if leaders[q] == leaders[0]]
    prod = Producer(cluster.bootstrap(), topic)
    prod.start()
    try:
        prod.wait_acked_after(0, range(PARTS), 200, timeout=60)
        mark = victim.log_size()
        victim.mark("harness: SIGSTOP")
        os.kill(victim.proc.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            prod.wait_acked_after(stopped, moved, 50, timeout=60)
            kgw.log("partitions %s acknowledged by a successor %.1f s after SIGSTOP"
                    % (moved, time.monotonic() - stopped))
            # Well past the lock's 10 s, so the victim wakes up to leases that are gone.
            time.sleep(max(0.0, 14 - (time.monotonic() - stopped)))
        finally:
            os.kill(victim.proc.pid, signal.SIGCONT)
            victim.mark("harness: SIGCONT")
        continued = time.monotonic()
        cluster.wait_members(NODES)
        prod.wait_acked_after(continued, range(PARTS), 50, timeout=90)
    finally:
        prod.finish()
    woke = victim.log_since(mark)
    assert any(s in woke for s in ("lost the partition lock", "may have run out", "ledger reloaded")), \
        "the stopped leader did not notice it lost its partitions:\n" + woke[-3000:]
    check_everything_once(cluster.gateways[2].bootstrap, topic, prod.acked)
    # And after every gateway restarts, replay gives the same partitions.
    for g in cluster.gateways:
        g.terminate()
    for g in cluster.gateways:
        g.start()
    cluster.wait_members(NODES)
    check_everything_once(cluster.gateways[0].bootstrap, topic, prod.acked)
