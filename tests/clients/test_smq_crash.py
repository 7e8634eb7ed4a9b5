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

from confluent_kafka import TopicPartition

import kgw
from test_restart import PARTS, ContinuousProducer, check_acked_readable, read_all


def smq_cmd(smq, *args):
    r = subprocess.run([os.path.join(kgw.REPO, "dev", "smq"), args[0], smq.dir, *args[1:]],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=300)
    assert r.returncode == 0, "dev/smq %s failed:\n%s" % (" ".join(args), r.stderr.decode()[-3000:])


def commit(bootstrap, topic, group, offsets):
    c = kgw.consumer(bootstrap, **{"group.id": group})
    res = c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                   asynchronous=False)
    c.close()
    assert all(tp.error is None for tp in res), res


def committed(bootstrap, topic, group):
    c = kgw.consumer(bootstrap, **{"group.id": group})
    got = c.committed([TopicPartition(topic, p) for p in range(PARTS)], timeout=kgw.OP_TIMEOUT)
    c.close()
    return {tp.partition: tp.offset for tp in got}


def run_scenario(smq, gateway, name, crash):
    """Two producers, `crash()` while they run, then every acknowledged record is checked."""
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
    ends, got = read_all(bootstrap, topic)
    # Every acknowledged record at its offset, dense, no offset acknowledged twice (across both
    # producers).
    check_acked_readable(acked, got, ends)
    # Exactly once: nothing read back that was not produced, and no acknowledged value twice
    # unless the producer itself sent it twice (a retried batch, not idempotent).
    produced = {p.prefix + b"%08d" % i for p in producers for i in range(p.sent)}
    read_vals = [m.value() for part in range(PARTS) for m in got[part]]
    assert set(read_vals) == produced
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
