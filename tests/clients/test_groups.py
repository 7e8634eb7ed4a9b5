"""Consumer groups against the gateway (issue 4): FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete, with
confluent-kafka (librdkafka), kafka-python, the Java client (consumer and AdminClient) and KafkaJS.

What the tests assert is what a user of those clients observes: partitions spread over the members
without overlap, every record consumed exactly once, rebalances on join / leave / member death,
committed offsets (with metadata) read back, surviving gateway restarts, and resumed from.
Session timeouts are short (6-10 s, heartbeats 1 s) so that member death is detected quickly; the
broker-side group.initial.rebalance.delay.ms is not relied on either way.

Checked against Apache Kafka 4.1 with KGW_EXTERNAL_BOOTSTRAP; there, the tests that restart the
gateway or read its /metrics cannot run (no gateway process).
"""

import base64
import urllib.request
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

import kgw

SESSION_MS = 10000       # members that are expected to stay
KILLED_SESSION_MS = 6000  # the member that is SIGKILLed
HEARTBEAT_MS = 1000
JOIN_TIMEOUT = 60.0      # bound for "all members have their assignment"


def unique_group(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def produce_spread(bootstrap, topic, partitions, per_partition, start=0, tag=b""):
    """per_partition records to each partition, value b'<tag>p<P>-<i>' with i counting from start;
    returns {(partition, offset): value} as acknowledged."""
    recs = [{"partition": p, "key": b"k%d" % i, "value": tag + b"p%d-%d" % (p, i)}
            for p in range(partitions) for i in range(start, start + per_partition)]
    delivered = kgw.produce_all(kgw.producer(bootstrap), topic, recs)
    out = {}
    for m, r in zip(delivered, recs):
        out[(m.partition(), m.offset())] = r["value"]
    return out


def group_conf(bootstrap, group, **conf):
    c = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
         "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
         "session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": HEARTBEAT_MS,
         "socket.timeout.ms": 30000, "fetch.wait.max.ms": 200}
    c.update(conf)
    # None removes a default (e.g. session.timeout.ms, which group.protocol=consumer does not take).
    c = {k: v for k, v in c.items() if v is not None}
    return c


def committed(bootstrap, group, topic, partitions):
    """OffsetFetch through confluent-kafka committed(): {partition: (offset, metadata)}; the
    consumer does not join the group."""
    c = Consumer(group_conf(bootstrap, group))
    try:
        res = c.committed([TopicPartition(topic, p) for p in partitions], timeout=kgw.OP_TIMEOUT)
    finally:
        c.close()
    for tp in res:
        assert tp.error is None, "committed() p%d: %s" % (tp.partition, tp.error)
    return {tp.partition: (tp.offset, tp.metadata) for tp in res}


def committed_offsets(bootstrap, group, topic, partitions):
    return {p: o for p, (o, _) in committed(bootstrap, group, topic, partitions).items()}


# ---------------------------------------------------------------------------------------------
# confluent-kafka group member driven from the test thread

class CkMember:
    """A subscribed confluent-kafka consumer; the test polls it (poll_members) and it processes each
    polled batch, then commits exactly the offsets after it, synchronously."""

    def __init__(self, name, bootstrap, group, topic, **conf):
        self.name = name
        self.topic = topic
        self.c = Consumer(group_conf(bootstrap, group, **conf))
        self.events = []       # ("assign"|"revoke"|"lost", [partitions], monotonic time)
        self.records = []      # (partition, offset, value)
        self.errors = []
        self.commit_errors = []
        self.closed = False
        self.c.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                         on_lost=self._on_lost)

    def _on_assign(self, c, tps):
        self.events.append(("assign", sorted(tp.partition for tp in tps), time.monotonic()))

    def _on_revoke(self, c, tps):
        self.events.append(("revoke", sorted(tp.partition for tp in tps), time.monotonic()))

    def _on_lost(self, c, tps):
        self.events.append(("lost", sorted(tp.partition for tp in tps), time.monotonic()))

    def parts(self):
        if self.closed:
            return []
        return sorted(tp.partition for tp in self.c.assignment())

    def poll(self, timeout=0.05, consume=True):
        if self.closed:
            return
        msgs = self.c.consume(num_messages=200 if consume else 1, timeout=timeout)
        last = {}
        for m in msgs:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    self.errors.append(str(m.error()))
                continue
            self.records.append((m.partition(), m.offset(), m.value()))
            last[m.partition()] = m.offset()
        if last:
            try:
                res = self.c.commit(offsets=[TopicPartition(self.topic, p, o + 1) for p, o in last.items()],
                                    asynchronous=False)
                self.commit_errors += ["p%d: %s" % (tp.partition, tp.error) for tp in res or [] if tp.error]
            except KafkaException as e:
                self.commit_errors.append(str(e))

    def close(self):
        if not self.closed:
            self.closed = True
            self.c.close()

    def state(self):
        return "%s: parts=%s records=%d events=%s errors=%s commit_errors=%s" % (
            self.name, self.parts(), len(self.records), [(k, p) for k, p, _ in self.events[-6:]],
            self.errors[-5:], self.commit_errors[-5:])


def poll_members(members, until, timeout, what, extra=()):
    """Poll every member round robin until until() holds; AssertionError with everyone's state
    otherwise. extra: other members (e.g. subprocesses) whose state is only reported."""
    deadline = time.monotonic() + timeout
    while True:
        for m in members:
            m.poll()
        if until():
            return
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %ss; members:\n  %s" % (
                what, timeout, "\n  ".join(m.state() for m in list(members) + list(extra))))


def partition_split(owners, n, all_nonempty=True):
    """owners: lists of partitions. True if they are disjoint, cover 0..n-1 and (optionally) none is
    empty."""
    flat = [p for o in owners for p in o]
    return (sorted(flat) == list(range(n)) and (not all_nonempty or all(owners)))


def assert_exactly_once(records, expected, what):
    """records: [(partition, offset, value)]; expected: {(partition, offset): value}."""
    counts = collections.Counter((p, o) for p, o, _ in records)
    dups = sorted(k for k, n in counts.items() if n > 1)
    missing = sorted(set(expected) - set(counts))
    unexpected = sorted(set(counts) - set(expected))
    assert not dups and not missing and not unexpected, (
        "%s: %d records consumed for %d expected; duplicates %d %s, missing %d %s, unexpected %d %s"
        % (what, len(records), len(expected), len(dups), dups[:10], len(missing), missing[:10],
           len(unexpected), unexpected[:10]))
    for p, o, v in records:
        assert v == expected[(p, o)], "%s: value at p%d@%d is %r, produced %r" % (what, p, o, v, expected[(p, o)])


# ---------------------------------------------------------------------------------------------
# a confluent-kafka group member in a subprocess (so that it can be SIGKILLed)

_SUBPROCESS_MEMBER = r"""
import sys, time
from confluent_kafka import Consumer
bootstrap, group, topic, session_ms, hb_ms = sys.argv[1:6]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
              "auto.offset.reset": "earliest", "session.timeout.ms": int(session_ms),
              "heartbeat.interval.ms": int(hb_ms), "fetch.wait.max.ms": 200})
c.subscribe([topic])
last = None
deadline = time.monotonic() + 300
while time.monotonic() < deadline:
    m = c.poll(0.1)
    if m is not None and m.error():
        print("ERROR", m.error(), flush=True)
    a = ",".join(str(p) for p in sorted(tp.partition for tp in c.assignment()))
    if a != last:
        print("ASSIGNMENT", a, flush=True)
        last = a
"""


class LineProcess:
    """A subprocess whose stdout lines are collected by a thread; stderr goes to a temporary file."""

    def __init__(self, cmd, name):
        self.name = name
        self.errf = tempfile.NamedTemporaryFile(prefix="kgw-%s-" % name, suffix=".stderr", delete=False)
        kgw.log("start %s: %s" % (name, " ".join(cmd)))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errf,
                                     text=True, bufsize=1)
        self.lock = threading.Lock()
        self.lines = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append((time.monotonic(), line.rstrip("\n")))

    def snapshot(self):
        with self.lock:
            return list(self.lines)

    def stderr_tail(self, n=4000):
        try:
            with open(self.errf.name, "rb") as f:
                return f.read().decode(errors="replace")[-n:]
        except OSError:
            return ""

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def cleanup(self):
        self.kill()
        try:
            os.unlink(self.errf.name)
        except OSError:
            pass


class SubprocessCkMember(LineProcess):
    def __init__(self, bootstrap, group, topic, session_ms):
        super().__init__([sys.executable, "-c", _SUBPROCESS_MEMBER, bootstrap, group, topic, str(session_ms),
                          str(HEARTBEAT_MS)], "ck-member")

    def parts(self):
        if self.proc.poll() is not None:
            return []
        a = [l for _, l in self.snapshot() if l.startswith("ASSIGNMENT")]
        if not a:
            return []
        f = a[-1].split(" ", 1)
        return [int(x) for x in f[1].split(",")] if len(f) > 1 and f[1] else []

    def state(self):
        return "subprocess member (pid %d, rc %s): last lines %s; stderr %s" % (
            self.proc.pid, self.proc.poll(), [l for _, l in self.snapshot()[-5:]], self.stderr_tail(500))


# ---------------------------------------------------------------------------------------------
# 1. confluent-kafka: 3 members over 6 partitions, join / leave / kill

def test_ck_three_members_rebalance_join_leave_kill(bootstrap, capsys):
    topic, group = kgw.unique_topic("grp-ck3"), unique_group("g-ck3")
    kgw.create_topic(bootstrap, topic, partitions=6)
    members = []
    sub = None
    try:
        a = CkMember("a", bootstrap, group, topic)
        b = CkMember("b", bootstrap, group, topic)
        members = [a, b]
        poll_members(members, lambda: partition_split([a.parts(), b.parts()], 6), JOIN_TIMEOUT,
                     "two members own all 6 partitions")

        t0 = time.monotonic()
        c = CkMember("c", bootstrap, group, topic)
        members.append(c)
        poll_members(members, lambda: partition_split([m.parts() for m in members], 6), JOIN_TIMEOUT,
                     "after the third member joined, three members own all 6 partitions without overlap")
        join_rebalance = time.monotonic() - t0
        # And the split stays (no further rebalance) for a few heartbeats.
        before = [m.parts() for m in members]
        n_events = [len(m.events) for m in members]
        end = time.monotonic() + 3 * HEARTBEAT_MS / 1000
        while time.monotonic() < end:
            for m in members:
                m.poll()
        assert [m.parts() for m in members] == before, "assignment changed in a stable group: %s -> %s" % (
            before, [m.parts() for m in members])
        assert [len(m.events) for m in members] == n_events, "rebalance events in a stable group: %s" % (
            [m.state() for m in members])
        assert all(len(m.parts()) == 2 for m in members), [m.parts() for m in members]

        # Every record exactly once across the three, each from a partition its consumer owned.
        expected = produce_spread(bootstrap, topic, 6, 100)
        poll_members(members, lambda: sum(len(m.records) for m in members) >= len(expected), kgw.OP_TIMEOUT,
                     "three members consume %d records" % len(expected))
        end = time.monotonic() + 2
        while time.monotonic() < end:   # duplicates would show up now
            for m in members:
                m.poll()
        assert_exactly_once([r for m in members for r in m.records], expected, "3 members")
        for m, owned in zip(members, before):
            assert {p for p, _, _ in m.records} <= set(owned), "%s consumed outside its partitions %s" % (
                m.name, owned)
            assert not m.errors and not m.commit_errors, m.state()
        assert committed_offsets(bootstrap, group, topic, range(6)) == {p: 100 for p in range(6)}

        # One member closes (LeaveGroup): the two others own everything, well before c's session
        # timeout would have expired.
        t1 = time.monotonic()
        c.close()
        members.remove(c)
        poll_members(members, lambda: partition_split([m.parts() for m in members], 6), JOIN_TIMEOUT,
                     "after one member closed, two members own all 6 partitions")
        leave_rebalance = time.monotonic() - t1
        assert leave_rebalance < SESSION_MS / 1000 - 1, (
            "rebalance after LeaveGroup took %.1fs; it must not wait for the leaving member's session "
            "timeout (%d ms)" % (leave_rebalance, SESSION_MS))

        # A member in another process joins, then is SIGKILLed (no LeaveGroup): after its session
        # timeout the two survivors own all partitions again.
        sub = SubprocessCkMember(bootstrap, group, topic, KILLED_SESSION_MS)
        poll_members(members, lambda: partition_split([a.parts(), b.parts(), sub.parts()], 6), JOIN_TIMEOUT,
                     "three members (one in a subprocess) own all 6 partitions", extra=[sub])
        killed_parts = sub.parts()
        t2 = time.monotonic()
        sub.kill()
        poll_members(members, lambda: partition_split([a.parts(), b.parts()], 6),
                     KILLED_SESSION_MS / 1000 + 30, "after SIGKILL of a member, the survivors own all 6 partitions")
        kill_rebalance = time.monotonic() - t2

        # The survivors resume at the committed offsets: exactly the new records, also on the
        # partitions the killed member had.
        for m in members:
            m.records.clear()
        more = produce_spread(bootstrap, topic, 6, 10, start=100)
        poll_members(members, lambda: sum(len(m.records) for m in members) >= len(more), kgw.OP_TIMEOUT,
                     "survivors consume the %d new records" % len(more))
        end = time.monotonic() + 2
        while time.monotonic() < end:
            for m in members:
                m.poll()
        assert_exactly_once([r for m in members for r in m.records], more, "survivors after kill")
        assert committed_offsets(bootstrap, group, topic, range(6)) == {p: 110 for p in range(6)}

        with capsys.disabled():
            print("\n[groups] confluent-kafka 3 members / 6 partitions: rebalance on join %.2fs, on leave "
                  "%.2fs, on SIGKILL %.2fs (session.timeout.ms=%d; killed member had %s)"
                  % (join_rebalance, leave_rebalance, kill_rebalance, KILLED_SESSION_MS, killed_parts))
        assert join_rebalance < 60
    finally:
        if sub is not None:
            sub.cleanup()
        for m in members:
            m.close()


# ---------------------------------------------------------------------------------------------
# 2. commit, close, a new member resumes: no loss, no duplicate

def test_ck_commit_close_new_member_resumes(bootstrap):
    topic, group = kgw.unique_topic("grp-resume"), unique_group("g-resume")
    kgw.create_topic(bootstrap, topic, partitions=4)
    expected = produce_spread(bootstrap, topic, 4, 250)
    assert len(expected) == 1000

    first = Consumer(group_conf(bootstrap, group))
    done = []
    try:
        first.subscribe([topic])
        deadline = time.monotonic() + kgw.OP_TIMEOUT
        while len(done) < 400:
            assert time.monotonic() < deadline, "first consumer got %d of 400 records" % len(done)
            batch = first.consume(num_messages=37, timeout=0.5)
            last = {}
            for m in batch:
                if m.error():
                    assert m.error().code() == KafkaError._PARTITION_EOF, str(m.error())
                    continue
                if len(done) == 400:
                    break  # fetched but not processed: must be delivered again to the next member
                done.append((m.partition(), m.offset(), m.value()))
                last[m.partition()] = m.offset()
            if last:
                first.commit(offsets=[TopicPartition(topic, p, o + 1) for p, o in last.items()],
                             asynchronous=False)
    finally:
        first.close()
    # Partitions the first member never processed have no committed offset (OFFSET_INVALID).
    want_committed = {p: -1001 for p in range(4)}
    for p, o, _ in done:
        want_committed[p] = max(want_committed[p], o + 1)
    assert committed_offsets(bootstrap, group, topic, range(4)) == want_committed

    second = Consumer(group_conf(bootstrap, group, **{"enable.partition.eof": True}))
    rest = []
    try:
        second.subscribe([topic])
        deadline = time.monotonic() + kgw.OP_TIMEOUT
        eof = set()
        while not (len(rest) >= 600 and eof == set(range(4))):
            assert time.monotonic() < deadline, "second consumer: %d records, eof %s" % (len(rest), eof)
            for m in second.consume(num_messages=100, timeout=0.5):
                if m.error():
                    assert m.error().code() == KafkaError._PARTITION_EOF, str(m.error())
                    eof.add(m.partition())
                    continue
                eof.discard(m.partition())
                rest.append((m.partition(), m.offset(), m.value()))
        # nothing more arrives
        for m in second.consume(num_messages=100, timeout=1.0):
            if not m.error():
                rest.append((m.partition(), m.offset(), m.value()))
    finally:
        second.close()
    assert len(rest) == 600, "new member got %d records, expected the remaining 600" % len(rest)
    for p in range(4):
        offs = [o for q, o, _ in rest if q == p]
        assert offs == list(range(max(0, want_committed[p]), 250)), "p%d: resumed at %s, committed %d" % (
            p, offs[:3], want_committed[p])
    assert_exactly_once(done + rest, expected, "first 400 + next 600")


# ---------------------------------------------------------------------------------------------
# 3. committed offsets survive a gateway restart (SIGTERM, kill -9)

@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_committed_offsets_survive_gateway_restart(gateway, how):
    bootstrap = gateway.bootstrap
    topic, group = kgw.unique_topic("grp-restart-" + how), unique_group("g-restart")
    kgw.create_topic(bootstrap, topic, partitions=3)
    expected = produce_spread(bootstrap, topic, 3, 50)
    want = {0: (10, "meta-p0 %s" % how), 1: (25, ""), 2: (50, "end")}

    # A group member (with a generation) commits.
    m = CkMember("m", bootstrap, group, topic)
    try:
        poll_members([m], lambda: m.parts() == [0, 1, 2], JOIN_TIMEOUT, "the member owns the 3 partitions")
        res = m.c.commit(offsets=[TopicPartition(topic, p, o, metadata=md) for p, (o, md) in want.items()],
                         asynchronous=False)
        assert all(tp.error is None for tp in res), res
    finally:
        m.close()
    assert committed(bootstrap, group, topic, range(3)) == want

    if how == "sigterm":
        rc = gateway.terminate(timeout=30)
        assert rc == 0, "gateway exit code after SIGTERM: %s" % rc
    else:
        gateway.kill9()
    gateway.start()

    assert committed(bootstrap, group, topic, range(3)) == want, "committed offsets after the restart"
    # A member of the group resumes from them.
    c = CkMember("after", bootstrap, group, topic)
    try:
        want_records = {k: v for k, v in expected.items() if k[1] >= want[k[0]][0]}
        poll_members([c], lambda: len(c.records) >= len(want_records), kgw.OP_TIMEOUT,
                     "the member after the restart consumes %d records" % len(want_records))
        end = time.monotonic() + 2
        while time.monotonic() < end:
            c.poll()
        assert_exactly_once(c.records, want_records, "after restart")
    finally:
        c.close()


def test_commits_right_after_a_restart_succeed(gateway):
    """The first commits after a SIGTERM restart land on state partitions SMQ may still be
    stopping for the previous process ("log buffer is stopping"); librdkafka does not retry a
    failed synchronous commit, so the gateway must not hand it that error."""
    bootstrap = gateway.bootstrap
    topic = kgw.unique_topic("grp-commit-restart")
    kgw.create_topic(bootstrap, topic, partitions=1)
    produce_spread(bootstrap, topic, 1, 30)
    groups = [unique_group("g-commit-restart") for _ in range(24)]

    def commit_all(offset):
        for g in groups:
            c = Consumer(group_conf(bootstrap, g))
            try:
                res = c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
                assert all(tp.error is None for tp in res), (g, res)
            finally:
                c.close()

    commit_all(10)  # every state partition these groups use now has a stream from this process
    rc = gateway.terminate(timeout=30)
    assert rc == 0, "gateway exit code after SIGTERM: %s" % rc
    gateway.start()
    commit_all(20)
    for g in groups:
        assert committed_offsets(bootstrap, g, topic, [0]) == {0: 20}, g


# ---------------------------------------------------------------------------------------------
# 4. commits as Kafka takes them: any offset, and during a rebalance before the member rejoins

def http_get(gateway, path):
    with urllib.request.urlopen(gateway.http + path, timeout=10) as r:
        return r.read().decode()


def group_lag_metric(gateway, group):
    return [line for line in http_get(gateway, "/metrics").splitlines()
            if line.startswith("kafka_gateway_consumer_group_lag{") and 'group="%s"' % group in line]


def test_commit_past_high_water_mark_is_accepted(gateway):
    bootstrap = gateway.bootstrap
    topic, group = kgw.unique_topic("grp-hwm"), unique_group("g-hwm")
    kgw.create_topic(bootstrap, topic, partitions=2)
    produce_spread(bootstrap, topic, 1, 20)
    lo, hwm = kgw.watermarks(bootstrap, topic, 0)
    assert (lo, hwm) == (0, 20)

    c = Consumer(group_conf(bootstrap, group))
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        res = c.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
        assert res[0].error is None, res
        assert committed_offsets(bootstrap, group, topic, [0]) == {0: 5}
        lag = group_lag_metric(gateway, group)
        assert len(lag) == 1 and lag[0].endswith(" 15"), lag

        # Kafka takes any offset: ahead of the high water mark (reset tools, offset sync between
        # clusters) and on an empty partition. OffsetFetch returns it; lag stays 0, not negative.
        res = c.commit(offsets=[TopicPartition(topic, 0, hwm + 100), TopicPartition(topic, 1, 7)],
                       asynchronous=False)
        assert [tp.error for tp in res] == [None, None], res
        assert committed_offsets(bootstrap, group, topic, [0, 1]) == {0: hwm + 100, 1: 7}
        lag = sorted(group_lag_metric(gateway, group))
        assert len(lag) == 2 and all(line.endswith(" 0") for line in lag), lag
        stats = json.loads(http_get(gateway, "/stats"))
        mine = [g for g in stats["groups"] if g["group"] == group][0]["offsets"]
        assert sorted((o["partition"], o["committed_offset"], o["high_water_mark"], o["lag"]) for o in mine) == [
            (0, hwm + 100, hwm, 0), (1, 7, 0, 0)], mine
    finally:
        c.close()

    # (A consumer starting there is told OFFSET_OUT_OF_RANGE and resets, as from Kafka.)


def metric_value(gateway, line_start):
    for line in http_get(gateway, "/metrics").splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_error_codes_inside_responses_are_counted_in_metrics(gateway):
    """An error answered inside a response (a refused commit, an unknown topic in Metadata)
    shows in /metrics: per request in requests_total, per partition in response_errors_total."""
    bootstrap = gateway.bootstrap
    topic, group = kgw.unique_topic("grp-err"), unique_group("g-err")
    kgw.create_topic(bootstrap, topic, partitions=1)
    unknown = 'error_code="%d"}' % 3  # UNKNOWN_TOPIC_OR_PARTITION
    names = {
        "commit_requests": 'kafka_gateway_requests_total{api="OffsetCommit",' + unknown,
        "commit_errors": 'kafka_gateway_response_errors_total{api="OffsetCommit",' + unknown,
        "metadata_errors": 'kafka_gateway_response_errors_total{api="Metadata",' + unknown,
    }
    before = {k: metric_value(gateway, v) for k, v in names.items()}
    c = Consumer(group_conf(bootstrap, group))
    try:
        try:
            res = c.commit(offsets=[TopicPartition(topic, 0, 1), TopicPartition(topic, 7, 1),
                                    TopicPartition(topic, 8, 1)], asynchronous=False)
            errors = [tp.error for tp in res if tp.error]
        except KafkaException as e:
            errors = [e.args[0]]
        assert errors, "a commit to partitions the topic does not have was accepted"
    finally:
        c.close()
    md = kgw.admin(bootstrap).list_topics(topic=kgw.unique_topic("grp-missing"), timeout=kgw.OP_TIMEOUT)
    assert all(t.error is not None for t in md.topics.values()), md.topics
    after = {k: metric_value(gateway, v) for k, v in names.items()}
    assert after["commit_requests"] - before["commit_requests"] == 1, (before, after)
    assert after["commit_errors"] - before["commit_errors"] == 2, (before, after)
    assert after["metadata_errors"] - before["metadata_errors"] >= 1, (before, after)


def test_ck_commit_after_a_rebalance_began_sticks(bootstrap):
    """A member commits what it consumed in its revoke callback, which librdkafka runs after the
    coordinator announced a rebalance and before the member rejoins (the group is in
    PreparingRebalance, the member's generation still current). Kafka takes that commit; the
    member that gets the partitions next starts after it, reading nothing twice."""
    topic, group = kgw.unique_topic("grp-rb"), unique_group("g-rb")
    kgw.create_topic(bootstrap, topic, partitions=2)
    expected = produce_spread(bootstrap, topic, 2, 30)
    commits = []
    a = Consumer(group_conf(bootstrap, group, **{"enable.auto.offset.store": True}))
    consumed = []

    def on_revoke(c, tps):
        if not tps:
            return
        try:
            res = c.commit(asynchronous=False)
            commits.append(sorted((tp.partition, tp.offset, str(tp.error) if tp.error else None) for tp in res))
        except KafkaException as e:
            commits.append("refused: %s" % e.args[0])

    a.subscribe([topic], on_revoke=on_revoke)
    b = None
    try:
        deadline = time.monotonic() + JOIN_TIMEOUT
        while len(consumed) < len(expected):
            assert time.monotonic() < deadline, "first member consumed %d of %d" % (len(consumed), len(expected))
            for m in a.consume(num_messages=100, timeout=0.2):
                if not m.error():
                    consumed.append((m.partition(), m.offset(), m.value()))
        assert_exactly_once(consumed, expected, "first member")
        # A second member joins: the first is told to rejoin and commits in its revoke callback.
        b = Consumer(group_conf(bootstrap, group, **{"enable.auto.offset.store": True,
                                                      "enable.partition.eof": True}))
        b.subscribe([topic])
        b_records, b_eof = [], set()
        deadline = time.monotonic() + JOIN_TIMEOUT
        while not (b.assignment() and b_eof >= {tp.partition for tp in b.assignment()}):
            assert time.monotonic() < deadline, "second member: assignment %s, eof %s, commits %s" % (
                b.assignment(), b_eof, commits)
            for m in a.consume(num_messages=100, timeout=0.05) + b.consume(num_messages=100, timeout=0.05):
                if m.error():
                    assert m.error().code() == KafkaError._PARTITION_EOF, str(m.error())
                    b_eof.add(m.partition())
                else:
                    b_records.append((m.partition(), m.offset(), m.value()))
        assert commits and commits[0] == [(0, 30, None), (1, 30, None)], commits
        assert not b_records, "the next owner read %d records again: %s" % (len(b_records), b_records[:5])
        assert committed_offsets(bootstrap, group, topic, [0, 1]) == {0: 30, 1: 30}
    finally:
        a.close()
        if b is not None:
            b.close()


def test_java_commit_before_rejoining_sticks(bootstrap):
    """The Java consumer with auto commit commits its consumed offsets when it learns of a
    rebalance, before it rejoins (ConsumerCoordinator.onJoinPrepare). With the commit taken, the
    member that gets a partition next starts where the first stopped: no record twice."""
    topic, group = kgw.unique_topic("grp-jrb"), unique_group("g-jrb")
    kgw.create_topic(bootstrap, topic, partitions=2)
    expected = produce_spread(bootstrap, topic, 2, 25)
    props = {"enable.auto.commit": "true", "auto.commit.interval.ms": "600000",
             "kgw.commit.each.batch": "false"}
    members = []
    try:
        a = JavaMember(bootstrap, topic, group, "a", **props)
        members.append(a)
        wait_for(lambda: len(a.records()) >= len(expected), JOIN_TIMEOUT, "first Java member consumes all",
                 members)
        b = JavaMember(bootstrap, topic, group, "b", **props)
        members.append(b)
        wait_for(lambda: partition_split([a.parts(), b.parts()], 2), JOIN_TIMEOUT,
                 "two Java members own both partitions", members)
        time.sleep(3)  # time for the new owner to read anything it would read again
        assert committed_offsets(bootstrap, group, topic, [0, 1]) == {0: 25, 1: 25}
        assert not b.records(), "the next owner read %d records again" % len(b.records())
        a.close()
        b.close()
        assert_exactly_once(a.records() + b.records(), expected, "Java members across a rebalance")
    finally:
        for m in members:
            m.cleanup()


# ---------------------------------------------------------------------------------------------
# 5. simple consumer commits (no membership, generation -1)

def test_ck_simple_consumer_commits(bootstrap):
    topic, group = kgw.unique_topic("grp-simple"), unique_group("g-simple")
    kgw.create_topic(bootstrap, topic, partitions=3)
    expected = produce_spread(bootstrap, topic, 3, 20)
    want = {0: (3, "simple-0"), 1: (17, ""), 2: (0, "zero")}

    c = Consumer(group_conf(bootstrap, group))
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(3)])
        res = c.commit(offsets=[TopicPartition(topic, p, o, metadata=md) for p, (o, md) in want.items()],
                       asynchronous=False)
        assert [(tp.partition, tp.offset, tp.error) for tp in sorted(res, key=lambda t: t.partition)] == [
            (p, o, None) for p, (o, _) in sorted(want.items())]
        got = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=kgw.OP_TIMEOUT)
        assert {tp.partition: (tp.offset, tp.metadata) for tp in got} == want
    finally:
        c.close()
    assert committed(bootstrap, group, topic, range(3)) == want

    # Another simple consumer of the group, assigned without offsets, starts at the committed ones.
    c2 = Consumer(group_conf(bootstrap, group, **{"enable.partition.eof": True}))
    recs = []
    try:
        c2.assign([TopicPartition(topic, p) for p in range(3)])
        want_records = {k: v for k, v in expected.items() if k[1] >= want[k[0]][0]}
        deadline = time.monotonic() + kgw.OP_TIMEOUT
        eof = set()
        while not (len(recs) >= len(want_records) and eof == {0, 1, 2}):
            assert time.monotonic() < deadline, "simple consumer got %d records, eof %s" % (len(recs), eof)
            for m in c2.consume(num_messages=100, timeout=0.5):
                if m.error():
                    assert m.error().code() == KafkaError._PARTITION_EOF, str(m.error())
                    eof.add(m.partition())
                else:
                    eof.discard(m.partition())
                    recs.append((m.partition(), m.offset(), m.value()))
    finally:
        c2.close()
    assert_exactly_once(recs, want_records, "simple consumer from committed offsets")


# ---------------------------------------------------------------------------------------------
# 6. kafka-python group consumer

def test_kafka_python_group_consume_commit_resume(bootstrap):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.structs import TopicPartition as KpTopicPartition

    topic, group = kgw.unique_topic("grp-kp"), unique_group("g-kp")
    kgw.create_topic(bootstrap, topic, partitions=3)

    def produce(start, n):
        p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        try:
            futs = [(part, i, p.send(topic, value=b"kp-p%d-%d" % (part, i), partition=part))
                    for part in range(3) for i in range(start, start + n)]
            p.flush(timeout=kgw.OP_TIMEOUT)
            return {(part, f.get(timeout=kgw.OP_TIMEOUT).offset): b"kp-p%d-%d" % (part, i)
                    for part, i, f in futs}
        finally:
            p.close(timeout=10)

    def run(expect):
        c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                          enable_auto_commit=False, session_timeout_ms=SESSION_MS,
                          heartbeat_interval_ms=HEARTBEAT_MS, fetch_max_wait_ms=200,
                          request_timeout_ms=30000)
        recs = []
        try:
            deadline = time.monotonic() + kgw.OP_TIMEOUT
            while len(recs) < len(expect):
                assert time.monotonic() < deadline, "kafka-python group consumer got %d of %d records" % (
                    len(recs), len(expect))
                for tp, msgs in c.poll(timeout_ms=500).items():
                    recs += [(m.partition, m.offset, m.value) for m in msgs]
                if recs:
                    c.commit()
            end = time.monotonic() + 2
            while time.monotonic() < end:
                for tp, msgs in c.poll(timeout_ms=300).items():
                    recs += [(m.partition, m.offset, m.value) for m in msgs]
            c.commit()
            assert sorted(c.assignment()) == [KpTopicPartition(topic, p) for p in range(3)]
            comm = {p: c.committed(KpTopicPartition(topic, p)) for p in range(3)}
        finally:
            c.close()
        return recs, comm

    first = produce(0, 30)
    recs, comm = run(first)
    assert_exactly_once(recs, first, "kafka-python first run")
    assert comm == {p: 30 for p in range(3)}
    assert committed_offsets(bootstrap, group, topic, range(3)) == {p: 30 for p in range(3)}

    second = produce(30, 10)
    recs, comm = run(second)
    assert_exactly_once(recs, second, "kafka-python second run (resumes from the commit)")
    assert comm == {p: 40 for p in range(3)}


# ---------------------------------------------------------------------------------------------
# 7. Java consumer groups: range (eager) and cooperative-sticky, static membership

class JavaMember(LineProcess):
    """`java -jar ... group` (see JavaClient.java): a subscribed member that commits after each batch."""

    def __init__(self, bootstrap, topic, group, name, **props):
        # With group.protocol=consumer (KIP-848) the coordinator sets both; the client refuses them.
        if props.get("group.protocol") != "consumer":
            props.setdefault("session.timeout.ms", str(SESSION_MS))
            props.setdefault("heartbeat.interval.ms", str(HEARTBEAT_MS))
        props.setdefault("client.id", "kgw-java-" + name)
        # The group coordination log (join, sync, assignment) at INFO goes to the stderr file.
        super().__init__(["java", "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients.consumer.internals=info",
                          "-jar", kgw.JAVA_JAR, "group", bootstrap, topic, group, "300000"]
                         + ["%s=%s" % kv for kv in sorted(props.items())], "java-" + name)

    def events(self, kinds=None):
        out = []
        for t, l in self.snapshot():
            f = l.split("\t")
            if kinds is None or f[0] in kinds:
                out.append((t, f[0], f[1:]))
        return out

    @staticmethod
    def _parts(field):
        return [int(x) for x in field.split(",")] if field else []

    def parts(self):
        if self.proc.poll() is not None:
            return []
        a = self.events({"ASSIGNMENT"})
        return self._parts(a[-1][2][0]) if a else []

    def assignments(self):
        return [self._parts(f[0]) for _, _, f in self.events({"ASSIGNMENT"})]

    def records(self):
        out = []
        for _, _, f in self.events({"RECORD"}):
            r = kgw.parse_java_line("\t".join(f))
            out.append((r["partition"], r["offset"], r["value"]))
        return out

    def problems(self):
        return [(k, f) for _, k, f in self.events({"COMMIT_FAILED"})]

    def close(self, timeout=60):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("close\n")
                self.proc.stdin.flush()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("%s did not close within %ss; stderr:\n%s" % (
                    self.name, timeout, self.stderr_tail()))
        self.t.join(timeout=10)
        assert self.proc.returncode == 0, "%s exited %s; stderr:\n%s" % (
            self.name, self.proc.returncode, self.stderr_tail())
        assert self.snapshot() and self.snapshot()[-1][1] == "CLOSED", self.snapshot()[-3:]

    def state(self):
        return "%s (rc %s): parts=%s records=%d last events=%s; stderr tail:\n%s" % (
            self.name, self.proc.poll(), self.parts(), len(self.records()),
            [(k, f) for _, k, f in self.events({"ASSIGNED", "REVOKED", "LOST", "ASSIGNMENT", "COMMIT_FAILED"})][-6:],
            self.stderr_tail(3000))


def wait_for(cond, timeout, what, members):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %ss; members:\n  %s" % (
                what, timeout, "\n  ".join(m.state() for m in members)))
        for m in members:
            if m.proc.poll() is not None:
                raise AssertionError("%s: %s exited early:\n%s" % (what, m.name, m.state()))
        time.sleep(0.1)


ASSIGNORS = {
    "range-eager-default": {},
    "cooperative-sticky": {
        "partition.assignment.strategy": "org.apache.kafka.clients.consumer.CooperativeStickyAssignor"},
}


@pytest.mark.parametrize("assignor", sorted(ASSIGNORS))
def test_java_group_two_members_exactly_once(bootstrap, assignor):
    topic, group = kgw.unique_topic("grp-java"), unique_group("g-java")
    kgw.create_topic(bootstrap, topic, partitions=6)
    members = []
    try:
        a = JavaMember(bootstrap, topic, group, "a", **ASSIGNORS[assignor])
        members.append(a)
        wait_for(lambda: a.parts() == list(range(6)), JOIN_TIMEOUT, "first Java member owns all 6 partitions",
                 members)
        b = JavaMember(bootstrap, topic, group, "b", **ASSIGNORS[assignor])
        members.append(b)
        wait_for(lambda: partition_split([a.parts(), b.parts()], 6), JOIN_TIMEOUT,
                 "two Java members own all 6 partitions without overlap", members)
        split = [a.parts(), b.parts()]
        assert sorted(len(s) for s in split) == [3, 3], split

        if assignor == "cooperative-sticky":
            # Incremental: a kept its partitions while b joined, and gave up exactly b's.
            seen = a.assignments()
            first_full = seen.index(list(range(6)))
            assert all(s for s in seen[first_full:]), "cooperative member lost all partitions: %s" % seen
            revoked = [JavaMember._parts(f[0]) for _, _, f in a.events({"REVOKED"})]
            assert [r for r in revoked if r] == [split[1]], a.events({"REVOKED"})

        expected = produce_spread(bootstrap, topic, 6, 100)
        wait_for(lambda: len(a.records()) + len(b.records()) >= len(expected), kgw.OP_TIMEOUT,
                 "two Java members consume %d records" % len(expected), members)
        time.sleep(2)
        a.close()
        b.close()
        assert_exactly_once(a.records() + b.records(), expected, "Java %s, 2 members" % assignor)
        for m, owned in zip([a, b], split):
            assert {p for p, _, _ in m.records()} <= set(owned), "%s consumed outside %s" % (m.name, owned)
            assert not m.problems(), m.problems()
        assert committed_offsets(bootstrap, group, topic, range(6)) == {p: 100 for p in range(6)}
    finally:
        for m in members:
            m.cleanup()


def test_java_static_membership_restart_without_rebalance(bootstrap):
    topic, group = kgw.unique_topic("grp-static"), unique_group("g-static")
    kgw.create_topic(bootstrap, topic, partitions=4)
    static_session_ms = 20000
    props = {"session.timeout.ms": str(static_session_ms)}
    members = []
    try:
        a = JavaMember(bootstrap, topic, group, "a", **props, **{"group.instance.id": "static-a"})
        b = JavaMember(bootstrap, topic, group, "b", **props, **{"group.instance.id": "static-b"})
        members += [a, b]
        wait_for(lambda: partition_split([a.parts(), b.parts()], 4), JOIN_TIMEOUT,
                 "two static members own all 4 partitions", members)
        time.sleep(3 * HEARTBEAT_MS / 1000)
        a_parts, b_parts = a.parts(), b.parts()
        assert partition_split([a_parts, b_parts], 4), (a_parts, b_parts)
        a_events = len(a.events({"ASSIGNED", "REVOKED", "LOST", "ASSIGNMENT"}))

        # b restarts (a static member's close sends no LeaveGroup) and comes back well within the
        # session timeout: it gets its partitions back, a sees no rebalance at all.
        b.close()
        t0 = time.monotonic()
        b2 = JavaMember(bootstrap, topic, group, "b2", **props, **{"group.instance.id": "static-b"})
        members.append(b2)
        wait_for(lambda: b2.parts(), static_session_ms / 1000 - 2,
                 "restarted static member gets an assignment within the session timeout", [a, b2])
        took = time.monotonic() - t0
        assert b2.parts() == b_parts, "restarted static member got %s, had %s" % (b2.parts(), b_parts)
        time.sleep(3 * HEARTBEAT_MS / 1000)
        assert a.parts() == a_parts
        new_a = a.events({"ASSIGNED", "REVOKED", "LOST", "ASSIGNMENT"})[a_events:]
        assert not new_a, "the other member saw a rebalance when the static member restarted: %s" % new_a
        kgw.log("static member back with %s after %.1fs" % (b2.parts(), took))

        expected = produce_spread(bootstrap, topic, 4, 25)
        wait_for(lambda: len(a.records()) + len(b2.records()) >= len(expected), kgw.OP_TIMEOUT,
                 "static members consume %d records" % len(expected), [a, b2])
        time.sleep(2)
        a.close()
        b2.close()
        assert_exactly_once(a.records() + b2.records(), expected, "static members")
        assert {p for p, _, _ in b2.records()} == set(b_parts)
        assert {p for p, _, _ in a.records()} == set(a_parts)
    finally:
        for m in members:
            m.cleanup()


def test_ck_static_member_fenced_by_same_instance_id(bootstrap):
    """Static membership fencing (classic protocol), as Kafka does it: a second consumer with the
    same group.instance.id takes over the first one's place; the first one's next request is
    answered FENCED_INSTANCE_ID, which librdkafka raises as a fatal error. The newcomer owns the
    partitions, the other member is undisturbed, and every record is consumed exactly once by the
    two live members."""
    topic, group = kgw.unique_topic("grp-fence"), unique_group("g-fence")
    kgw.create_topic(bootstrap, topic, partitions=4)
    a = CkMember("a", bootstrap, group, topic, **{"group.instance.id": "fence-a"})
    b1 = CkMember("b1", bootstrap, group, topic, **{"group.instance.id": "fence-b"})
    members = [a, b1]
    try:
        poll_members(members, lambda: partition_split([a.parts(), b1.parts()], 4), JOIN_TIMEOUT,
                     "two static members own all 4 partitions")
        b2 = CkMember("b2", bootstrap, group, topic, **{"group.instance.id": "fence-b"})
        members.append(b2)
        fatal = []

        def b1_fenced():
            for m in b1.c.consume(num_messages=10, timeout=0.05):
                if m.error() is None:
                    b1.records.append((m.partition(), m.offset(), m.value()))
                elif m.error().code() == KafkaError._FATAL:
                    fatal.append(m.error())
                else:
                    b1.errors.append(str(m.error()))
            return bool(fatal)

        poll_members([a, b2], lambda: b1_fenced() and partition_split([a.parts(), b2.parts()], 4),
                     JOIN_TIMEOUT, "b1 fenced, a and b2 own all 4 partitions", extra=[b1])
        # librdkafka's text for FENCED_INSTANCE_ID (its fatal error names the broker's error).
        assert "Static consumer fenced" in fatal[0].str(), fatal[0]
        b1.close()

        expected = produce_spread(bootstrap, topic, 4, 20)
        poll_members([a, b2], lambda: len(a.records) + len(b2.records) >= len(expected),
                     kgw.OP_TIMEOUT, "a and b2 consume %d records" % len(expected))
        assert not b1.records, b1.records
        assert_exactly_once(a.records + b2.records, expected, "after fencing")
        assert not a.errors and not b2.errors, (a.errors, b2.errors)
    finally:
        for m in members:
            try:
                m.close()
            except KafkaException:
                pass


# ---------------------------------------------------------------------------------------------
# 8. Java AdminClient: list, describe, offsets, delete group, delete offsets

def java_admin(bootstrap, *args):
    r = kgw.run_client(["java", "-jar", kgw.JAVA_JAR, "admin", bootstrap] + list(args))
    assert r.returncode == 0, "java admin %s failed (rc=%d):\n%s" % (args, r.returncode, r.stderr[-4000:])
    return [l.split("\t") for l in r.stdout.splitlines() if l]


def test_java_admin_groups(bootstrap):
    topic, group = kgw.unique_topic("grp-admin"), unique_group("g-admin")
    kgw.create_topic(bootstrap, topic, partitions=3)
    m = JavaMember(bootstrap, topic, group, "admin-member")
    try:
        wait_for(lambda: m.parts() == [0, 1, 2], JOIN_TIMEOUT, "member owns the 3 partitions", [m])
        expected = produce_spread(bootstrap, topic, 3, 10)
        wait_for(lambda: len(m.records()) >= 30 and
                 committed_offsets(bootstrap, group, topic, range(3)) == {0: 10, 1: 10, 2: 10},
                 kgw.OP_TIMEOUT, "member consumes and commits 30 records", [m])

        groups = {g[1]: g[2] for g in java_admin(bootstrap, "list-groups") if g[0] == "GROUP"}
        assert groups.get(group) == "Stable", "listConsumerGroups: %s" % groups.get(group, sorted(groups))

        d = java_admin(bootstrap, "describe-group", group)
        assert d[0][:5] == ["DESCRIBE", group, "Stable", "range", "false"], d
        mem = [x for x in d if x[0] == "MEMBER"]
        assert len(mem) == 1, d
        assert mem[0][2] == "-" and mem[0][3] == "kgw-java-admin-member", mem
        assert mem[0][1], "empty member id"
        assert mem[0][4].lstrip("/") in ("127.0.0.1", "localhost"), mem
        assert sorted(mem[0][5].split(",")) == ["%s:%d" % (topic, p) for p in range(3)], mem

        offs = {(o[1], int(o[2])): int(o[3]) for o in java_admin(bootstrap, "list-offsets", group)
                if o[0] == "OFFSET"}
        assert offs == {(topic, p): 10 for p in range(3)}

        # A group with a member cannot be deleted.
        r = java_admin(bootstrap, "delete-groups", group)
        assert r[0][:2] == ["ERROR", "GroupNotEmptyException"], r
    finally:
        m.close()
        m.cleanup()
    assert_exactly_once(m.records(), expected, "admin member")

    d = java_admin(bootstrap, "describe-group", group)
    assert d[0][:3] == ["DESCRIBE", group, "Empty"] and len(d) == 1, d

    # OffsetDelete of one partition.
    assert java_admin(bootstrap, "delete-offsets", group, topic, "0") == [["DELETED"]]
    offs = {(o[1], int(o[2])): int(o[3]) for o in java_admin(bootstrap, "list-offsets", group) if o[0] == "OFFSET"}
    assert offs == {(topic, 1): 10, (topic, 2): 10}
    assert committed_offsets(bootstrap, group, topic, range(3)) == {0: -1001, 1: 10, 2: 10}

    # DeleteGroups of the now empty group.
    assert java_admin(bootstrap, "delete-groups", group) == [["DELETED"]]
    groups = [g[1] for g in java_admin(bootstrap, "list-groups") if g[0] == "GROUP"]
    assert group not in groups
    assert [o for o in java_admin(bootstrap, "list-offsets", group) if o[0] == "OFFSET"] == []
    assert committed_offsets(bootstrap, group, topic, range(3)) == {p: -1001 for p in range(3)}


# ---------------------------------------------------------------------------------------------
# 9. KafkaJS consumer group

def js(bootstrap, command, request, ok_codes=(0,)):
    r = kgw.run_client(["node", kgw.JS_CLIENT, bootstrap, command], input_text=json.dumps(request),
                       timeout=kgw.SUBPROCESS_TIMEOUT)
    assert r.returncode in ok_codes, "kafkajs %s failed (rc=%d):\nstdout: %s\nstderr: %s" % (
        command, r.returncode, r.stdout[-3000:], r.stderr[-4000:])
    return json.loads(r.stdout)


def test_kafkajs_group_consume_commit_resume(bootstrap):
    topic, group = kgw.unique_topic("grp-kjs"), unique_group("g-kjs")
    assert js(bootstrap, "create-topic", {"topic": topic, "partitions": 3}) == {"created": True}

    def produce(start, n):
        msgs = [{"partition": p, "key": base64.b64encode(b"k%d" % i).decode(),
                 "value": base64.b64encode(b"kjs-p%d-%d" % (p, i)).decode()}
                for p in range(3) for i in range(start, start + n)]
        res = js(bootstrap, "produce", {"topic": topic, "acks": -1, "messages": msgs})
        assert sorted((r["partition"], r["errorCode"], r["baseOffset"]) for r in res) == [
            (p, 0, str(start)) for p in range(3)], res
        return {(p, start + i): b"kjs-p%d-%d" % (p, start + i) for p in range(3) for i in range(n)}

    def run(expect):
        out = js(bootstrap, "group-consume", {
            "topic": topic, "groupId": group, "expected": len(expect), "timeoutMs": 90000, "idleMs": 3000,
            "sessionTimeout": SESSION_MS, "heartbeatInterval": HEARTBEAT_MS}, ok_codes=(0, 3))
        assert not out["timedOut"] and not out["crash"], "KafkaJS consumer: timed out %s, crash %s, got %d of %d" % (
            out["timedOut"], out["crash"], len(out["messages"]), len(expect))
        assert out["join"] and out["join"]["isLeader"] and out["join"]["groupProtocol"] == "RoundRobinAssigner", out["join"]
        assert out["join"]["memberAssignment"] == {topic: [0, 1, 2]}, out["join"]
        recs = [(m["partition"], int(m["offset"]), base64.b64decode(m["value"])) for m in out["messages"]]
        return recs, {c["partition"]: int(c["offset"]) for c in out["committed"]}

    first = produce(0, 20)
    recs, comm = run(first)
    assert_exactly_once(recs, first, "KafkaJS first run")
    assert comm == {p: 20 for p in range(3)}

    second = produce(20, 10)
    recs, comm = run(second)
    assert_exactly_once(recs, second, "KafkaJS second run (nothing old)")
    assert comm == {p: 30 for p in range(3)}
    assert committed_offsets(bootstrap, group, topic, range(3)) == {p: 30 for p in range(3)}


# ---------------------------------------------------------------------------------------------
# 10. the gateway restarts while the group is consuming

def test_active_group_resumes_after_gateway_restart(gateway):
    """Two members consume and commit batch by batch; the gateway is stopped (SIGTERM) and
    started again under them. They rejoin by themselves and, together, read every record; each
    partition's first record after the restart is the one at its committed offset."""
    bootstrap = gateway.bootstrap
    topic, group = kgw.unique_topic("grp-live-restart"), unique_group("g-live-restart")
    kgw.create_topic(bootstrap, topic, partitions=4)
    first = produce_spread(bootstrap, topic, 4, 40)
    members = [CkMember(n, bootstrap, group, topic) for n in ("a", "b")]
    try:
        poll_members(members, lambda: sorted(p for m in members for p in m.parts()) == [0, 1, 2, 3],
                     JOIN_TIMEOUT, "two members own the 4 partitions")
        poll_members(members, lambda: sum(len(m.records) for m in members) >= len(first), kgw.OP_TIMEOUT,
                     "the members consume the first %d records" % len(first))
        before = committed_offsets(bootstrap, group, topic, range(4))
        assert before == {p: 40 for p in range(4)}, before
        seen = sum(len(m.records) for m in members)

        rc = gateway.terminate(timeout=30)
        assert rc == 0, rc
        gateway.start()
        second = produce_spread(bootstrap, topic, 4, 20, start=40, tag=b"after-")
        poll_members(members, lambda: sum(len(m.records) for m in members) >= seen + len(second),
                     kgw.OP_TIMEOUT + 60, "the members rejoin and consume the %d new records" % len(second))
        new = [(p, o, v) for m in members for p, o, v in m.records if o >= 40]
        assert_exactly_once(new, second, "after the gateway restart")
        for p in range(4):
            firsts = sorted(o for q, o, _ in new if q == p)
            assert firsts and firsts[0] == before[p], "partition %d resumed at %s, committed %d" % (
                p, firsts[:3], before[p])
    finally:
        for m in members:
            m.close()
