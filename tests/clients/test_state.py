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


def filer_http(smq):
    host, grpc = smq.env["SMQ_FILER"].rsplit(":", 1)
    return "http://%s:%d" % (host, int(grpc) - 10000)


def filer_list(base, path):
    import json
    import urllib.request
    req = urllib.request.Request(base + path.rstrip("/") + "/?limit=10000",
                                 headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            data = json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return []
        raise
    return [(e["FullPath"], bool(e.get("Mode", 0) & 0o20000000000)) for e in (data.get("Entries") or [])]


def filer_delete(base, path):
    import urllib.request
    req = urllib.request.Request(base + path + "?recursive=true", method="DELETE")
    with urllib.request.urlopen(req, timeout=10):
        pass


def test_a_write_ahead_log_the_ledger_does_not_continue_refuses_writes(tmp_path):
    """The gateway's write-ahead log holds acknowledged records past what SMQ's ledger holds (its
    entries were lost): the partition refuses writes with KAFKA_STORAGE_ERROR instead of handing
    the offsets out again, /stats says why, and `kafka-gateway ledger discard-wal` resumes it."""
    confluent_kafka = kgw.ck()
    smq = kgw.Smq(str(tmp_path / "smq")).up()
    gw = None
    try:
        log_path = os.path.join(str(tmp_path), "wal-gateway.log")
        gw = kgw.Gateway(smq.master, log_path, extra_args=[
            "--wal-dir", str(tmp_path / "wal"), "--checkpoint-interval-secs", "0"])
        gw.start()
        topic = kgw.unique_topic("refuse")
        kgw.create_topic(gw.bootstrap, topic, partitions=1)
        kgw.produce_all(kgw.producer(gw.bootstrap), topic, [{"value": b"a%d" % i} for i in range(5)])
        time.sleep(7)  # SMQ writes them, and the log lets them go
        kgw.produce_all(kgw.producer(gw.bootstrap), topic, [{"value": b"b%d" % i} for i in range(5)])
        gw.kill9()  # offsets 5..10 acknowledged and still in the write-ahead log
        time.sleep(7)  # SMQ writes the ledger entries of 0..10 too
        # Then the ledger's entries are lost: the broker stops, its files go, it starts again.
        subprocess_run([os.path.join(kgw.REPO, "dev", "smq"), "stop-broker", smq.dir])
        base = filer_http(smq)
        removed = 0
        for gen, is_dir in filer_list(base, "/topics/kafka-system/offset-mappings"):
            if not is_dir:
                continue
            for part, part_is_dir in filer_list(base, gen):
                if not part_is_dir:
                    continue
                for f, f_is_dir in filer_list(base, part):
                    name = f.rsplit("/", 1)[1]
                    if not f_is_dir and re.fullmatch(r"\d{4}(-\d\d){5}", name):
                        filer_delete(base, f)
                        removed += 1
        assert removed > 0, "no ledger log file found to remove"
        subprocess_run([os.path.join(kgw.REPO, "dev", "smq"), "start-broker", smq.dir])

        gw.start()
        p = kgw.producer(gw.bootstrap, **{"message.timeout.ms": 8000, "retries": 2})
        errors = []
        p.produce(topic, value=b"c0", on_delivery=lambda err, msg: errors.append(err))
        p.flush(30)
        assert errors and errors[0] is not None, "a write was taken: %s" % errors
        assert errors[0].code() in (confluent_kafka.KafkaError.KAFKA_STORAGE_ERROR,
                                    confluent_kafka.KafkaError._MSG_TIMED_OUT), errors[0]
        parts = [p for t in gw.get_json("/stats")["topics"] if t["topic"] == topic for p in t["partitions"]]
        assert parts and parts[0]["writes_refused"] and "5..10" in parts[0]["writes_refused"], parts
        assert kgw.watermarks(gw.bootstrap, topic, 0)[1] == 0, "no offset handed out"
        metrics = urllib_get(gw.http + "/metrics")
        assert "kafka_gateway_partitions_refusing_writes 1" in metrics

        out = subprocess_run([gw.binary, "--http", "127.0.0.1:%d" % gw.http_port, "ledger",
                              "discard-wal", topic, "0"])
        assert '"records_dropped": 5' in out, out
        delivered = kgw.produce_all(kgw.producer(gw.bootstrap), topic, [{"value": b"c1"}])
        assert delivered[0].offset() == 0
        assert "kafka_gateway_partitions_refusing_writes 0" in urllib_get(gw.http + "/metrics")
    finally:
        if gw is not None:
            gw.stop()
        smq.down()


def subprocess_run(cmd):
    import subprocess
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       timeout=120)
    assert r.returncode == 0, "%s failed (%d): %s %s" % (cmd, r.returncode, r.stdout.decode()[-2000:],
                                                        r.stderr.decode()[-2000:])
    return r.stdout.decode()


def urllib_get(url):
    import urllib.request
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def test_retention_and_delete_records_move_the_log_start_and_free_smq_files(smq, tmp_path):
    """Retention as Kafka's: with a short retention.ms and segment.ms, the log start moves past
    the old records, ListOffsets earliest follows, a fetch below it is out of range (the
    consumer's reset policy applies) and SMQ's log files are deleted; DeleteRecords moves it to
    the offset asked for. Both survive a restart."""
    confluent_kafka = kgw.ck()
    from confluent_kafka.admin import AdminClient
    log_path = os.path.join(str(tmp_path), "retention-gateway.log")
    gw = kgw.Gateway(smq.master, log_path, extra_args=["--retention-check-interval-secs", "1"])
    gw.start()
    try:
        bootstrap = gw.bootstrap
        topic = kgw.unique_topic("retain")
        kgw.create_topic(bootstrap, topic, partitions=1,
                         config={"retention.ms": "3000", "segment.ms": "1000"})
        old_ts = int(time.time() * 1000) - 60_000
        kgw.produce_all(kgw.producer(bootstrap), topic,
                        [{"value": b"old-%d" % i, "timestamp": old_ts + i} for i in range(20)])
        time.sleep(7)  # SMQ writes them into a log file
        kgw.produce_all(kgw.producer(bootstrap), topic,
                        [{"value": b"new-%d" % i} for i in range(5)])
        # The old file is in a closed segment once a newer file exists and a second passed.
        deadline = time.monotonic() + 60
        while kgw.watermarks(bootstrap, topic, 0)[0] == 0:
            assert time.monotonic() < deadline, "the log start did not move; log:\n%s" % gw.log_tail()
            time.sleep(1)
        low, high = kgw.watermarks(bootstrap, topic, 0)
        assert (low, high) == (20, 25), (low, high)
        assert "retention deleted log files" in gw.log_since(0)
        # earliest reset starts at the log start; reading below it is out of range.
        got = kgw.consume_partitions(bootstrap, topic, {0: 5}, **{"auto.offset.reset": "earliest"})
        assert [(m.offset(), m.value()) for m in got[0]] == [(20 + i, b"new-%d" % i) for i in range(5)]
        c = kgw.consumer(bootstrap, **{"auto.offset.reset": "error"})
        try:
            c.assign([confluent_kafka.TopicPartition(topic, 0, 3)])
            err = None
            end = time.monotonic() + 30
            while err is None and time.monotonic() < end:
                m = c.poll(0.5)
                if m is not None and m.error() and m.error().code() != confluent_kafka.KafkaError._PARTITION_EOF:
                    err = m.error()
            assert err is not None and err.code() == confluent_kafka.KafkaError._AUTO_OFFSET_RESET, err
        finally:
            c.close()

        # DeleteRecords moves it to the offset asked for.
        admin = AdminClient({"bootstrap.servers": bootstrap})
        futs = admin.delete_records([confluent_kafka.TopicPartition(topic, 0, 23)], request_timeout=30)
        res = list(futs.values())[0].result(timeout=30)
        assert res.low_watermark == 23, res
        assert kgw.watermarks(bootstrap, topic, 0) == (23, 25)
        assert gw.terminate(timeout=60) == 0
        gw.start()
        assert kgw.watermarks(gw.bootstrap, topic, 0) == (23, 25)
        got = kgw.consume_partitions(gw.bootstrap, topic, {0: 2}, **{"auto.offset.reset": "earliest"})
        assert [m.value() for m in got[0]] == [b"new-3", b"new-4"]
    finally:
        gw.stop()
