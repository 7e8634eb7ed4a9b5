"""State that does not grow with history: the gateway checkpoints its state topics (offset ledger,
committed offsets, topic configs), a restart reads the newest checkpoint and what follows it, and
SMQ's log files that checkpoints cover are removed. What a client sees must not change: the same
offsets, records, timestamps, committed offsets and configs after SIGTERM and after SIGKILL."""

import os
import re
import time

import kgw

PARTS = 2
ROUNDS = 4
PER_ROUND = 40  # produce requests per round, one record each


def snapshot(bootstrap, topic, group):
    confluent_kafka = kgw.ck()
    ends = {p: kgw.watermarks(bootstrap, topic, p) for p in range(PARTS)}
    got = kgw.consume_partitions(bootstrap, topic, {p: ends[p][1] for p in range(PARTS)})
    records = {p: [(m.offset(), m.timestamp()[1], m.value()) for m in got[p]] for p in range(PARTS)}
    c = kgw.consumer(bootstrap, **{"group.id": group})
    try:
        committed = c.committed([confluent_kafka.TopicPartition(topic, p) for p in range(PARTS)],
                                timeout=kgw.OP_TIMEOUT)
        # The first record at or after each round's timestamps (ListOffsets by time).
        probes = [confluent_kafka.TopicPartition(topic, p, 1_750_000_000_000 + r * 1000 + 5)
                  for p in range(PARTS) for r in range(ROUNDS)]
        by_time = c.offsets_for_times(probes, timeout=kgw.OP_TIMEOUT)
    finally:
        c.close()
    return {
        "ends": ends,
        "records": records,
        "committed": [(t.partition, t.offset) for t in committed],
        "by_time": [(t.partition, t.offset) for t in by_time],
        "config": kgw.topic_config(bootstrap, topic, "max.message.bytes"),
    }


def recovered_replayed(log_text):
    m = re.findall(r"ledger recovered from kafka-system/offset-mappings.*?replayed=(\d+)", log_text)
    assert m, "no 'ledger recovered' line in the log since the restart"
    return int(m[-1])


def test_restarts_after_checkpoints_read_little_and_serve_the_same(smq, tmp_path):
    log_path = os.path.join(str(tmp_path), "state-gateway.log")
    gw = kgw.Gateway(smq.master, log_path,
                     extra_args=["--checkpoint-interval-secs", "1", "--checkpoint-min-records", "1"])
    gw.start()
    try:
        bootstrap = gw.bootstrap
        topic = kgw.unique_topic("state")
        group = "state-" + topic
        kgw.create_topic(bootstrap, topic, partitions=PARTS, config={"max.message.bytes": "1048576"})
        p = kgw.producer(bootstrap, **{"linger.ms": 0})
        confluent_kafka = kgw.ck()
        for r in range(ROUNDS):
            records = [{"partition": i % PARTS, "value": b"r%d-%d" % (r, i),
                        "timestamp": 1_750_000_000_000 + r * 1000 + i} for i in range(PER_ROUND)]
            kgw.produce_all(p, topic, records, flush_each=True)
            c = kgw.consumer(bootstrap, **{"group.id": group})
            try:
                c.commit(offsets=[confluent_kafka.TopicPartition(topic, q, (r + 1) * PER_ROUND // PARTS)
                                  for q in range(PARTS)], asynchronous=False)
            finally:
                c.close()
            # SMQ writes its buffers every 5 s; checkpoints are looked at every second.
            time.sleep(6)
        before = snapshot(bootstrap, topic, group)
        assert before["ends"] == {q: (0, ROUNDS * PER_ROUND // PARTS) for q in range(PARTS)}
        log = gw.log_since(0)
        written = re.findall(r"checkpoint written.*?topic=offset-mappings", log)
        assert written, "no ledger checkpoint written; log tail:\n%s" % gw.log_tail()
        removed = sum(int(n) for n in re.findall(
            r"checkpoint written.*?topic=offset-mappings.*?log_files_removed=(\d+)", log))
        assert removed > 0, "no ledger log file removed after %d checkpoints" % len(written)

        mark = gw.log_size()
        assert gw.terminate(timeout=60) == 0
        gw.start()
        assert snapshot(bootstrap, topic, group) == before
        replayed = recovered_replayed(gw.log_since(mark))
        assert replayed < ROUNDS * PER_ROUND, "replayed %d ledger records after checkpoints" % replayed

        # One more round, then SIGKILL: the newest records come from what follows the checkpoint.
        more = [{"partition": i % PARTS, "value": b"last-%d" % i,
                 "timestamp": 1_750_000_100_000 + i} for i in range(10)]
        kgw.produce_all(kgw.producer(bootstrap, **{"linger.ms": 0}), topic, more, flush_each=True)
        before = snapshot(bootstrap, topic, group)
        mark = gw.log_size()
        gw.kill9()
        gw.start()
        assert snapshot(bootstrap, topic, group) == before
        recovered_replayed(gw.log_since(mark))
    finally:
        gw.stop()


def test_idempotent_producer_is_not_duplicated_across_gateway_kills(gateway):
    """An idempotent producer's retries after a gateway SIGKILL are recognised by the restarted
    gateway (its producer state is persisted with the ledger): every value is stored once."""
    bootstrap = gateway.bootstrap
    topic = kgw.unique_topic("idem-restart")
    kgw.create_topic(bootstrap, topic, partitions=PARTS)
    p = kgw.producer(bootstrap, **{
        "enable.idempotence": True, "acks": "all", "linger.ms": 2, "retries": 1_000_000,
        "retry.backoff.ms": 100, "retry.backoff.max.ms": 500, "message.timeout.ms": 180_000,
        "request.timeout.ms": 10_000, "reconnect.backoff.max.ms": 500,
        "max.in.flight.requests.per.connection": 5})
    errors = []
    acked = []

    def cb(err, msg):
        (errors if err is not None else acked).append((err, msg.value()) if err else msg.value())

    sent = 0
    for kill in range(2):
        deadline = time.monotonic() + 60
        while len(acked) < 300 * (kill + 1):
            assert time.monotonic() < deadline, "only %d acknowledged; errors %s" % (len(acked), errors[:3])
            for _ in range(20):
                try:
                    p.produce(topic, value=b"v-%07d" % sent, partition=sent % PARTS, on_delivery=cb)
                    sent += 1
                except BufferError:
                    break
            p.poll(0.005)
        # Killed with produces in flight: some were stored and persisted but never answered.
        for _ in range(40):
            p.produce(topic, value=b"v-%07d" % sent, partition=sent % PARTS, on_delivery=cb)
            sent += 1
        p.poll(0)
        gateway.kill9()
        time.sleep(0.5)
        gateway.start()
    assert p.flush(180) == 0
    assert not errors, errors[:5]
    ends = {q: kgw.watermarks(bootstrap, topic, q) for q in range(PARTS)}
    got = kgw.consume_partitions(bootstrap, topic, {q: ends[q][1] for q in range(PARTS)})
    values = [m.value() for q in range(PARTS) for m in got[q]]
    dups = len(values) - len(set(values))
    assert dups == 0, "%d values stored twice (of %d sent)" % (dups, sent)
    assert set(values) == {b"v-%07d" % i for i in range(sent)}
    for q in range(PARTS):
        kgw.assert_dense(got[q])
