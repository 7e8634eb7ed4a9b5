"""Gateway crash (kill -9) during acks=all produce, and a clean restart (SIGTERM): nothing that was
acknowledged is lost or moved, offsets stay dense and continue after the restart."""

import threading
import time

from confluent_kafka import TIMESTAMP_CREATE_TIME

import kgw

PARTS = 3


class ContinuousProducer(threading.Thread):
    """Produces 'seq-N' values round-robin over the partitions with acks=all until stopped, recording
    every acknowledged (partition, offset, value) and every delivery error."""

    def __init__(self, bootstrap, topic, prefix=b"seq-"):
        super().__init__(daemon=True)
        self.topic = topic
        self.prefix = prefix
        # Not idempotent: a retried batch may legitimately be written twice (at new offsets), which
        # the checks allow; what must hold is that every acknowledged offset is exact.
        self.p = kgw.producer(bootstrap, **{
            "acks": "all", "enable.idempotence": False, "linger.ms": 5, "retries": 1_000_000,
            "retry.backoff.ms": 200, "retry.backoff.max.ms": 1000, "message.timeout.ms": 240_000,
            "request.timeout.ms": 15_000, "reconnect.backoff.max.ms": 1000,
            "max.in.flight.requests.per.connection": 5, "queue.buffering.max.messages": 20_000})
        self.lock = threading.Lock()
        self.acked = []          # (partition, offset, value, ack time)
        self.errors = []
        self.sent = 0
        self.stop_flag = threading.Event()
        self.exc = None

    def _cb(self, err, msg):
        with self.lock:
            if err is not None:
                self.errors.append((msg.value(), str(err)))
            else:
                self.acked.append((msg.partition(), msg.offset(), msg.value(), time.monotonic()))

    def run(self):
        try:
            while not self.stop_flag.is_set():
                v = self.prefix + b"%08d" % self.sent
                try:
                    self.p.produce(self.topic, value=v, key=v, partition=self.sent % PARTS,
                                   on_delivery=self._cb)
                    self.sent += 1
                except BufferError:
                    pass
                self.p.poll(0.002)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.exc = e

    def acked_count(self):
        with self.lock:
            return len(self.acked)

    def wait_acked(self, n, timeout):
        deadline = time.monotonic() + timeout
        while self.acked_count() < n:
            assert time.monotonic() < deadline, "only %d of %d records acknowledged within %ss; errors: %s" % (
                self.acked_count(), n, timeout, self.errors[:5])
            time.sleep(0.05)

    def wait_each_partition_acked_after(self, t0, n, timeout):
        """Wait until every partition has n acknowledgements recorded after t0."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                counts = {p: sum(1 for part, _o, _v, t in self.acked if part == p and t > t0)
                          for p in range(PARTS)}
                errs = list(self.errors[:5])
            if all(c >= n for c in counts.values()):
                return
            assert time.monotonic() < deadline, (
                "after the restart, acknowledgements per partition within %ss: %s (wanted %d each); "
                "delivery errors so far: %s" % (timeout, counts, n, errs))
            time.sleep(0.1)

    def finish(self, timeout=240):
        self.stop_flag.set()
        self.join(30)
        left = self.p.flush(timeout)
        assert self.exc is None, self.exc
        assert left == 0, "%d records neither acknowledged nor failed after %ss" % (left, timeout)


def read_all(bootstrap, topic):
    ends = {p: kgw.watermarks(bootstrap, topic, p) for p in range(PARTS)}
    for p, (lo, hi) in ends.items():
        assert lo == 0, "partition %d log start %d" % (p, lo)
    got = kgw.consume_partitions(bootstrap, topic, {p: ends[p][1] for p in range(PARTS)}, timeout=120)
    return ends, got


def check_acked_readable(acked, got, ends):
    problems = []
    for p in range(PARTS):
        msgs = got[p]
        kgw.assert_dense(msgs)
        assert len(msgs) == ends[p][1], "partition %d: read %d records, high watermark %d" % (
            p, len(msgs), ends[p][1])
        by_off = {m.offset(): m.value() for m in msgs}
        for part, off, val, _t in acked:
            if part != p:
                continue
            if off not in by_off:
                problems.append("acked p%d@%d (%r) beyond the end (%d)" % (p, off, val, ends[p][1]))
            elif by_off[off] != val:
                problems.append("acked p%d@%d was %r, reads %r" % (p, off, val, by_off[off]))
        # No two acknowledgements for the same offset.
        offs = [off for part, off, _v, _t in acked if part == p]
        dup = len(offs) - len(set(offs))
        if dup:
            problems.append("partition %d: %d offsets acknowledged twice" % (p, dup))
    assert not problems, "%d problems, first: %s" % (len(problems), problems[:10])


def test_kill9_during_acks_all_produce(gateway):
    bootstrap = gateway.bootstrap
    topic = kgw.unique_topic("crash")
    kgw.create_topic(bootstrap, topic, partitions=PARTS)
    prod = ContinuousProducer(bootstrap, topic)
    prod.start()
    try:
        prod.wait_acked(600, timeout=120)
        gateway.kill9()
        kill_time = time.monotonic()
        with prod.lock:
            before = list(prod.acked)
        time.sleep(1.0)  # the producer keeps queueing and retrying against a dead port
        gateway.start()  # same ports, same SMQ
        ready_time = time.monotonic()
        prod.wait_each_partition_acked_after(ready_time, 400, timeout=180)
    except BaseException:
        prod.stop_flag.set()
        prod.join(30)
        prod.p.purge()
        prod.p.flush(5)
        raise
    prod.finish()
    assert not prod.errors, "delivery failures (%d; per partition %s): %s" % (
        len(prod.errors), {p: sum(1 for v, _e in prod.errors if int(v[4:]) % PARTS == p) for p in range(PARTS)},
        prod.errors[:5])
    acked = prod.acked
    assert len(acked) == prod.sent

    ends, got = read_all(bootstrap, topic)
    check_acked_readable(acked, got, ends)

    # Offsets acknowledged once the restarted gateway was ready (so surely by it) continue after every
    # offset acknowledged before the kill.
    for p in range(PARTS):
        old = [off for part, off, _v, t in before if part == p and t <= kill_time]
        new = [off for part, off, _v, t in acked if part == p and t > ready_time]
        assert old and new, "partition %d: %d acks before the kill, %d after" % (p, len(old), len(new))
        assert min(new) > max(old), "partition %d: offset %d acknowledged after the restart, but %d " \
                                    "before it" % (p, min(new), max(old))
    # Every record read back is one that was produced (retries may add duplicates of unacked
    # attempts, never unknown data), and every value produced was acknowledged at least once.
    produced = {b"seq-%08d" % i for i in range(prod.sent)}
    read_vals = [m.value() for p in range(PARTS) for m in got[p]]
    assert set(read_vals) <= produced
    assert set(read_vals) == produced
    for p in range(PARTS):
        for m in got[p]:
            assert m.key() == m.value()
            assert m.timestamp()[0] == TIMESTAMP_CREATE_TIME


def test_clean_restart_keeps_everything(gateway):
    bootstrap = gateway.bootstrap
    topic = kgw.unique_topic("restart")
    kgw.create_topic(bootstrap, topic, partitions=PARTS)
    first = [{"partition": i % PARTS, "key": b"k%d" % i, "value": b"first-%d" % i,
              "timestamp": 1_740_000_000_000 + i, "headers": [("n", b"%d" % i)]} for i in range(300)]
    kgw.produce_all(kgw.producer(bootstrap), topic, first)

    rc = gateway.terminate(timeout=30)
    assert rc == 0, "gateway exit code after SIGTERM: %s" % rc
    gateway.start()

    for p in range(PARTS):
        assert kgw.watermarks(bootstrap, topic, p) == (0, 100)
    got = kgw.consume_partitions(bootstrap, topic, {p: 100 for p in range(PARTS)})
    for p in range(PARTS):
        exp = [r for r in first if r["partition"] == p]
        kgw.assert_dense(got[p])
        assert [(m.key(), m.value(), m.timestamp()[1], m.headers()) for m in got[p]] == [
            (r["key"], r["value"], r["timestamp"], r["headers"]) for r in exp]

    second = [{"partition": i % PARTS, "value": b"second-%d" % i} for i in range(30)]
    delivered = kgw.produce_all(kgw.producer(bootstrap), topic, second)
    for p in range(PARTS):
        assert [m.offset() for m in delivered if m.partition() == p] == list(range(100, 110))
    got = kgw.consume_partitions(bootstrap, topic, {p: 110 for p in range(PARTS)})
    for p in range(PARTS):
        kgw.assert_dense(got[p])
        assert [m.value() for m in got[p][100:]] == [b"second-%d" % i for i in range(p, 30, PARTS)]


def metric(gw, series):
    """The value of one series of the gateway's /metrics (0 when absent)."""
    import urllib.request
    with urllib.request.urlopen(gw.http + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[1])
    return 0.0



def test_kill9_restart_on_the_same_data_dir_takes_the_partitions_back_at_once(smq, tmp_path):
    """A gateway killed with SIGKILL cannot release its partition locks. Started again on the same
    data directory it renews them with the tokens it kept there and takes its partitions back at
    once (/metrics counts how each lock was taken), instead of answering NOT_LEADER_OR_FOLLOWER
    until the old locks expire."""
    import os
    log_path = os.path.join(str(tmp_path), "datadir-gateway.log")
    data_dir = str(tmp_path / "data")
    gw = kgw.Gateway(smq.master, log_path, extra_args=["--wal-dir", data_dir])
    gw.start()
    try:
        bootstrap = gw.bootstrap
        topic = kgw.unique_topic("takeback")
        kgw.create_topic(bootstrap, topic, partitions=PARTS)
        first = [{"partition": p, "value": b"before-%d" % p} for p in range(PARTS)]
        kgw.produce_all(kgw.producer(bootstrap), topic, first)
        gw.kill9()
        gw.start()
        after = kgw.producer(bootstrap)
        second = [{"partition": p, "value": b"after-%d" % p} for p in range(PARTS)]
        delivered = kgw.produce_all(after, topic, second)
        assert [(m.partition(), m.offset()) for m in delivered] == [(p, 1) for p in range(PARTS)]
        taken = 'kafka_gateway_partition_locks_taken_total{how="%s"}'
        assert (metric(gw, taken % "resumed"), metric(gw, taken % "new")) == (PARTS, 0)
        got = kgw.consume_partitions(bootstrap, topic, {p: 2 for p in range(PARTS)})
        for p in range(PARTS):
            assert [m.value() for m in got[p]] == [b"before-%d" % p, b"after-%d" % p]
    finally:
        gw.terminate()
