"""acks=all survives SMQ broker crashes (issue 7): SMQ acknowledges a record once it is in the
broker's memory and writes it out seconds later, so the gateway holds what SMQ acknowledged until
SMQ has provably written it and publishes it again when the broker's stream breaks first.

Two producers write continuously while the broker is killed (SIGKILL), stopped (SIGTERM, which
4.48 does not flush either), or killed right after the gateway itself was killed. Afterwards every
acknowledged record is read back exactly once at its acknowledged offset, no offset was handed
out twice, and a consumer group's committed offsets are intact. Restarts the session's SMQ."""

import os
import subprocess
import time

from confluent_kafka import KafkaError, TopicPartition

import kgw
from test_restart import PARTS, ContinuousProducer, check_acked_readable, read_all


def smq_cmd(smq, *args):
    r = subprocess.run([os.path.join(kgw.REPO, "dev", "smq"), args[0], smq.dir, *args[1:]],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=300)
    assert r.returncode == 0, "dev/smq %s failed:\n%s" % (" ".join(args), r.stderr.decode()[-3000:])


def commit(bootstrap, topic, group, offsets):
    c = kgw.consumer(bootstrap, **{"group.id": group})
    res = kgw.commit_sync(c, [TopicPartition(topic, p, o) for p, o in offsets.items()])
    c.close()
    assert all(tp.error is None for tp in res), res


def committed(bootstrap, topic, group):
    c = kgw.consumer(bootstrap, **{"group.id": group})
    got = c.committed([TopicPartition(topic, p) for p in range(PARTS)], timeout=kgw.OP_TIMEOUT)
    c.close()
    return {tp.partition: tp.offset for tp in got}


def run_scenario(smq, gateway, name, crash, restart_gateway=False, check_commits=True):
    """Two producers, `crash()` while they run, then every acknowledged record is checked
    (after a clean gateway restart with `restart_gateway`, so that everything is read from SMQ
    and the offset ledger and commits are recovered from it, not from the gateway's memory)."""
    assert smq.dir, "the SMQ folder is needed to restart its broker"
    bootstrap = gateway.bootstrap
    topic, group = kgw.unique_topic(name), "g-" + kgw.unique_topic(name)
    kgw.create_topic(bootstrap, topic, partitions=PARTS)
    producers = [ContinuousProducer(bootstrap, topic, prefix=b"a-"),
                 ContinuousProducer(bootstrap, topic, prefix=b"b-")]
    for p in producers:
        p.start()
    try:
        for p in producers:
            p.wait_acked(400, timeout=120)
            # The commit below needs offsets up to 7 on every partition: one partition's first
            # produce can be retried (a ledger stream left over from the previous gateway breaks)
            # while the others take the first 400 acks.
            p.wait_each_partition_acked_after(0, 8, timeout=120)
        # Committed just before the crash: still in SMQ's memory when it happens.
        commit(bootstrap, topic, group, {0: 3, 1: 5, 2: 7})
        crash()
        restarted = time.monotonic()
        for p in producers:
            p.wait_each_partition_acked_after(restarted, 100, timeout=240)
    except BaseException:
        for p in producers:
            p.stop_flag.set()
            p.join(30)
            p.p.purge()
            p.p.flush(5)
        raise
    for p in producers:
        p.finish()
        assert not p.errors, "delivery failures: %s" % p.errors[:5]
    acked = [a for p in producers for a in p.acked]
    if restart_gateway:
        assert gateway.terminate() == 0
        gateway.start()
    ends, got = read_all(bootstrap, topic)
    # Every acknowledged record at its offset, dense, no offset acknowledged twice (across both
    # producers).
    check_acked_readable(acked, got, ends)
    # Exactly once: nothing read back that was not produced, and no acknowledged value twice
    # unless the producer itself sent it twice (a retried batch, not idempotent).
    produced = {p.prefix + b"%08d" % i for p in producers for i in range(p.sent)}
    read_vals = [m.value() for part in range(PARTS) for m in got[part]]
    assert set(read_vals) == produced
    if check_commits:
        assert committed(bootstrap, topic, group) == {0: 3, 1: 5, 2: 7}
    return sum(len(p.acked) for p in producers)


def test_broker_sigkill_loses_no_acknowledged_record(smq, gateway):
    def crash():
        time.sleep(0.5)
        smq_cmd(smq, "kill-broker")
        time.sleep(1.0)
        smq_cmd(smq, "start-broker")

    run_scenario(smq, gateway, "brokerkill", crash)


def test_broker_sigterm_loses_no_acknowledged_record(smq, gateway):
    def crash():
        time.sleep(0.5)
        smq_cmd(smq, "stop-broker")
        smq_cmd(smq, "start-broker")

    run_scenario(smq, gateway, "brokerterm", crash)


def test_gateway_then_broker_killed_loses_no_acknowledged_record(smq, gateway):
    def crash():
        gateway.kill9()
        # The gateway's streams closed, so SMQ writes and unloads its partitions; the broker
        # dies right after.
        time.sleep(1.0)
        smq_cmd(smq, "kill-broker")
        smq_cmd(smq, "start-broker")
        gateway.start()

    run_scenario(smq, gateway, "bothkill", crash)


def unflushed_bytes(gateway):
    import urllib.request
    with urllib.request.urlopen(gateway.http + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("kafka_gateway_unflushed_bytes "):
                return float(line.split()[1])
    raise AssertionError("no kafka_gateway_unflushed_bytes in /metrics")


def test_records_smq_cannot_write_stay_held_through_a_broker_crash(smq, gateway):
    """The broker acks records it cannot write (its volume server is gone; it retries the flush
    every 737 ms for as long as that lasts). The gateway must hold them however long that takes:
    "written once the flush interval and a settle time have passed" would have let them go after
    6 s, and the broker's crash would then lose them. That goes for the gateway's own state too
    (offset ledger, committed offsets), hence the restart before reading."""
    def crash():
        smq_cmd(smq, "stop-volume")
        try:
            time.sleep(9.0)  # past the flush interval (5 s) and settle (1 s) of a time rule
            held = unflushed_bytes(gateway)
            assert held > 0, "records acked while SMQ cannot write were released"
            smq_cmd(smq, "kill-broker")
        finally:
            smq_cmd(smq, "start-volume")
        smq_cmd(smq, "start-broker")

    run_scenario(smq, gateway, "nowrite", crash, restart_gateway=True)


def readyz(gateway):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(gateway.http + "/readyz", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_readyz(gateway, status, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = readyz(gateway)
        if last[0] == status:
            return last
        time.sleep(0.5)
    raise AssertionError("/readyz still %r after %ss, wanted %d" % (last, timeout, status))


def test_while_smq_is_down_produces_fail_retriably_and_readyz_says_so(smq, gateway):
    """With the broker down, a produce gets a retriable Kafka error within the client's request
    timeout (no hang), /readyz turns 503 naming the broker, and both recover by themselves when
    the broker is back, with no record lost or duplicated."""
    bootstrap = gateway.bootstrap
    topic = kgw.unique_topic("smqdown")
    kgw.create_topic(bootstrap, topic, partitions=1)
    kgw.produce_all(kgw.producer(bootstrap), topic, [{"value": b"before", "partition": 0}])
    assert readyz(gateway)[0] == 200
    smq_cmd(smq, "kill-broker")
    try:
        p = kgw.producer(bootstrap, **{"retries": 0, "request.timeout.ms": 30_000,
                                       "message.timeout.ms": 60_000})
        errors = []
        started = time.monotonic()
        p.produce(topic, value=b"during", partition=0,
                  on_delivery=lambda err, msg: errors.append(err))
        left = p.flush(60)
        took = time.monotonic() - started
        assert left == 0 and len(errors) == 1, "no answer within 60 s (%d left)" % left
        err = errors[0]
        assert err is not None, "a produce succeeded with the only broker down"
        # Kafka's protocol marks these retriable (a producer with retries keeps trying).
        retriable = {KafkaError.NOT_ENOUGH_REPLICAS, KafkaError.REQUEST_TIMED_OUT,
                     KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION,
                     KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND}
        assert err.code() in retriable, "not a retriable Kafka error: %s" % err
        assert took < 35, "the error took %.1fs, past the request timeout" % took
        status, text = wait_readyz(gateway, 503, 30)
        assert "SMQ broker" in text, text
    finally:
        smq_cmd(smq, "start-broker")
    wait_readyz(gateway, 200, 60)
    delivered = kgw.produce_all(kgw.producer(bootstrap), topic, [{"value": b"after", "partition": 0}])
    assert [m.offset() for m in delivered] == [1]
    got = kgw.consume_partitions(bootstrap, topic, {0: 2})
    assert [m.value() for m in got[0]] == [b"before", b"after"]
