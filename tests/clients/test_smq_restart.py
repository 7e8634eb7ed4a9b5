"""Everything the gateway stored survives a restart of SMQ itself (after SMQ's flush interval:
a broker stopped sooner is covered by test_smq_crash.py): records at their
offsets, the offset ledger, and committed consumer offsets. Runs last: it restarts the session's
SMQ."""

import os
import subprocess
import time

from confluent_kafka import TopicPartition

import kgw


def smq_cmd(*args):
    r = subprocess.run([os.path.join(kgw.REPO, "dev", "smq"), *args], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert r.returncode == 0, "dev/smq %s failed:\n%s" % (" ".join(args), r.stderr.decode()[-3000:])


def test_records_ledger_and_commits_survive_an_smq_restart(smq, gateway):
    assert smq.dir, "the SMQ folder is needed to restart it"
    topic, group = kgw.unique_topic("smq-restart"), "g-smq-restart-" + kgw.unique_topic("x")
    kgw.create_topic(gateway.bootstrap, topic, partitions=2)
    p = kgw.producer(gateway.bootstrap)
    kgw.produce_all(p, topic, [{"value": b"v%d" % i, "partition": i % 2} for i in range(40)])
    c = kgw.consumer(gateway.bootstrap, **{"group.id": group})
    # Retried: an earlier test restarted the SMQ broker, and SMQ can take ~30 s to give the
    # committed-offsets partitions a leader again.
    res = kgw.commit_sync(c, [TopicPartition(topic, 0, 7), TopicPartition(topic, 1, 20)])
    assert all(tp.error is None for tp in res), res
    c.close()

    time.sleep(7)  # past SMQ's 5 s flush interval
    rc = gateway.terminate(timeout=30)
    assert rc == 0, rc
    smq_cmd("down", smq.dir)
    smq_cmd("up", smq.dir)
    gateway.start()

    c = kgw.consumer(gateway.bootstrap, **{"group.id": group})
    got = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=kgw.OP_TIMEOUT)
    c.close()
    assert [(tp.partition, tp.offset) for tp in got] == [(0, 7), (1, 20)], got

    msgs = kgw.consume_partitions(gateway.bootstrap, topic, {0: 20, 1: 20})
    for part in (0, 1):
        kgw.assert_dense(msgs[part])
        assert [m.value() for m in msgs[part]] == [b"v%d" % i for i in range(part, 40, 2)]

    # New records continue the offsets, with no gap and no reuse.
    delivered = kgw.produce_all(p, topic, [{"value": b"after", "partition": 0}] * 3)
    assert [m.offset() for m in delivered] == [20, 21, 22]
