"""Overload: many producers pipelining large produce requests without waiting for answers. The
gateway stops reading their sockets once its in-flight byte budget is spent, so its memory stays
bounded, every request is still answered, and other clients keep being served meanwhile.

The gateway here runs with small budgets (--max-inflight-bytes 16 MiB, 2 MiB per connection, and
16 MiB of acknowledged records held until SMQ has written them) so that the load is far beyond
them. OVERLOAD_* variables scale the load and the budget
(docs/benchmarks.md has the figures of larger runs); OVERLOAD_BUDGET_MB=default runs the gateway
with its default budgets (256 MiB, 32 MiB per connection), where the bound is not asserted.
"""

import os
import socket
import struct
import threading
import time
import urllib.request

import kgw

CONNECTIONS = int(os.environ.get("OVERLOAD_CONNECTIONS", "40"))
REQUESTS_PER_CONNECTION = int(os.environ.get("OVERLOAD_REQUESTS", "8"))
RECORD_BYTES = 32 * 1024
RECORDS_PER_BATCH = 16  # 512 KiB of values per request
BUDGET_MB = os.environ.get("OVERLOAD_BUDGET_MB", "16")
LIMITS_ON = BUDGET_MB != "default"
GLOBAL_LIMIT = int(BUDGET_MB) * 1024 * 1024 if LIMITS_ON else 256 * 1024 * 1024
CONNECTION_LIMIT = GLOBAL_LIMIT // 8
# Bytes in flight are held more than once on the way to SMQ (the frame, the stored encoding of
# each record, the gRPC publish message, allocator slack); 6x the budget leaves room for that
# and is still far below what the same load takes with a budget the load does not reach
# (docs/benchmarks.md).
# Acknowledged records are also held until SMQ has written them (--max-unflushed-bytes), once
# each: bounded here to the same size as the in-flight budget.
UNFLUSHED_LIMIT = GLOBAL_LIMIT
ALLOWED_GROWTH_MB = (6 * GLOBAL_LIMIT + 1.5 * UNFLUSHED_LIMIT) / 2 ** 20
DEADLINE = 240


# --- Kafka wire format, just enough for Produce v3 --------------------------------------------

def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(v):
    v = (v << 1) ^ (v >> 63)
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def record_batch(values, timestamp_ms):
    records = bytearray()
    for i, v in enumerate(values):
        body = b"\x00" + varint(0) + varint(i) + varint(-1) + varint(len(v)) + v + varint(0)
        records += varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, len(values) - 1, timestamp_ms, timestamp_ms,
                            -1, -1, -1, len(values)) + bytes(records)
    crc = crc32c(after_crc)
    rest = struct.pack(">ibI", -1, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(rest)) + rest


def produce_v3(correlation_id, topic, partition, batch, acks=1):
    t = topic.encode()
    body = struct.pack(">hhih", 0, 3, correlation_id, 8) + b"overload"
    body += struct.pack(">hhi", -1, acks, 30000)          # transactional id, acks, timeout
    body += struct.pack(">ih", 1, len(t)) + t
    body += struct.pack(">iii", 1, partition, len(batch)) + batch
    return struct.pack(">i", len(body)) + body


def parse_produce_v3(frame):
    """Returns (correlation_id, error_code, base_offset, throttle_time_ms) of a one-partition
    response."""
    corr, _nt, ln = struct.unpack_from(">iih", frame, 0)
    pos = 10 + ln
    _np, _idx, err, base = struct.unpack_from(">iihq", frame, pos)
    (throttle,) = struct.unpack_from(">i", frame, len(frame) - 4)
    return corr, err, base, throttle


def fetch_v4(correlation_id, topic, partition, offset, max_bytes, max_wait_ms=500):
    t = topic.encode()
    body = struct.pack(">hhih", 1, 4, correlation_id, 8) + b"overload"
    # replica id, max wait, min bytes, max bytes, isolation level
    body += struct.pack(">iiiib", -1, max_wait_ms, 1, max_bytes, 0)
    body += struct.pack(">ih", 1, len(t)) + t
    body += struct.pack(">iiqi", 1, partition, offset, max_bytes)
    return struct.pack(">i", len(body)) + body


def parse_fetch_v4(frame):
    """Returns (correlation_id, throttle_time_ms, error_code, high_watermark, [(base offset,
    last offset) of each record batch]) of a one-partition response."""
    corr, throttle, _nt, ln = struct.unpack_from(">iiih", frame, 0)
    pos = 14 + ln
    _np, _idx, err, hwm, _lso, aborted = struct.unpack_from(">iihqqi", frame, pos)
    pos += 30 + 16 * max(aborted, 0)
    (size,) = struct.unpack_from(">i", frame, pos)
    pos += 4
    end = pos + max(size, 0)
    batches = []
    while pos + 61 <= end:
        base, length = struct.unpack_from(">qi", frame, pos)
        if pos + 12 + length > end:
            break  # a partial batch at the end
        (last_delta,) = struct.unpack_from(">i", frame, pos + 23)
        batches.append((base, base + last_delta))
        pos += 12 + length
    return corr, throttle, err, hwm, batches


# --- measuring ---------------------------------------------------------------------------------

def rss_kb(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (field, pid))


def sample_peak_rss(pid, baseline_kb):
    """Samples the process's RSS every 20 ms into peak[0] until stop is set; join the thread."""
    peak = [baseline_kb]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    return peak, stop, sampler


def metric(gw, name, labels=""):
    """The first sample of a metric whose labels contain `labels` (e.g. 'api="Fetch"')."""
    text = urllib.request.urlopen(gw.http + "/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or (line.startswith(name + "{") and labels in line):
            return float(line.split()[-1])
    return 0.0


def pipelining_producer(port, topic, partition, batch, results, index):
    """Sends all requests back to back, then reads the answers: the worst case for buffering."""
    answers = []
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.settimeout(DEADLINE)
            frames = [produce_v3(index * 1000 + i, topic, partition, batch)
                      for i in range(REQUESTS_PER_CONNECTION)]
            sender = threading.Thread(target=lambda: [s.sendall(f) for f in frames], daemon=True)
            sender.start()
            for _ in frames:
                answers.append(parse_produce_v3(kgw.recv_frame(s)))
            sender.join(timeout=DEADLINE)
        results[index] = answers
    except Exception as e:  # reported by the test with the connection's index
        results[index] = e


def test_many_pipelining_producers_stay_within_the_memory_bound(smq, tmp_path):
    args = []
    if LIMITS_ON:
        args = ["--max-inflight-bytes", str(GLOBAL_LIMIT),
                "--max-connection-inflight-bytes", str(CONNECTION_LIMIT),
                "--max-unflushed-bytes", str(UNFLUSHED_LIMIT)]
    gw = kgw.Gateway(smq.master, os.path.join(str(tmp_path), "overload-gateway.log"), extra_args=args)
    gw.start()
    try:
        topic = kgw.unique_topic("overload")
        partitions = 4
        kgw.create_topic(gw.bootstrap, topic, partitions=partitions)
        batch = record_batch([bytes([i % 251]) * RECORD_BYTES for i in range(RECORDS_PER_BATCH)],
                             int(time.time() * 1000))
        # Warm up: every partition's SMQ stream open, then the baseline.
        warm = [None]
        for p in range(partitions):
            pipelining_producer(gw.port, topic, p, batch, warm, 0)
            assert not isinstance(warm[0], Exception), warm[0]
        baseline_kb = rss_kb(gw.proc.pid)

        peak, stop, sampler = sample_peak_rss(gw.proc.pid, baseline_kb)
        results = [None] * CONNECTIONS
        threads = [threading.Thread(target=pipelining_producer, daemon=True,
                                    args=(gw.port, topic, i % partitions, batch, results, i))
                   for i in range(CONNECTIONS)]
        started = time.monotonic()
        for t in threads:
            t.start()

        # Meanwhile an ordinary client is served: a produce with acks=all and its read-back.
        time.sleep(1.0)
        probe_started = time.monotonic()
        probe_topic = kgw.unique_topic("overload-probe")
        kgw.create_topic(gw.bootstrap, probe_topic, partitions=1)
        kgw.produce_all(kgw.producer(gw.bootstrap), probe_topic,
                        [{"value": b"probe-%d" % i, "partition": 0} for i in range(10)])
        msgs = kgw.consume_partitions(gw.bootstrap, probe_topic, {0: 10})
        assert [m.value() for m in msgs[0]] == [b"probe-%d" % i for i in range(10)]
        probe_seconds = time.monotonic() - probe_started
        flood_running = any(t.is_alive() for t in threads)

        for t in threads:
            t.join(timeout=max(1, DEADLINE - (time.monotonic() - started)))
        elapsed = time.monotonic() - started
        stop.set()
        sampler.join(timeout=5)
        assert not any(t.is_alive() for t in threads), "producers still waiting after %ds" % DEADLINE

        sent_mb = CONNECTIONS * REQUESTS_PER_CONNECTION * len(batch) / 2 ** 20
        growth_mb = (peak[0] - baseline_kb) / 1024
        waits = metric(gw, "kafka_gateway_backpressure_waits_total")
        refused = sum(1 for r in results if isinstance(r, list) for (_, err, _, _) in r if err != 0)
        throttled = [t for r in results if isinstance(r, list) for (_, _, _, t) in r if t > 0]
        summary = ("budget %d MiB (%d per connection)%s: %d connections x %d requests of %.0f KiB "
                   "= %.0f MiB in %.1fs "
                   "(%.1f MiB/s); gateway RSS baseline %.0f MiB, peak %.0f MiB (+%.0f MiB), "
                   "VmHWM %.0f MiB; backpressure waits %d; produce errors %d; %d responses throttled (max %d ms); "
                   "probe client served in %.1fs%s"
                   % (GLOBAL_LIMIT >> 20, CONNECTION_LIMIT >> 20, "" if LIMITS_ON else " (defaults)",
                      CONNECTIONS, REQUESTS_PER_CONNECTION,
                      len(batch) / 1024, sent_mb, elapsed, sent_mb / elapsed, baseline_kb / 1024,
                      peak[0] / 1024, growth_mb, rss_kb(gw.proc.pid, "VmHWM") / 1024, waits, refused,
                      len(throttled), max(throttled, default=0), probe_seconds, " (while the flood ran)" if flood_running else ""))
        kgw.log(summary)
        with open(os.path.join(str(tmp_path), "summary.txt"), "w") as f:
            f.write(summary + "\n")
        print(summary)
        failures = [(i, r) for i, r in enumerate(results) if isinstance(r, Exception) or r is None]
        assert not failures, "connections failed: %r" % failures[:5]
        offsets = {}
        for i, answers in enumerate(results):
            assert len(answers) == REQUESTS_PER_CONNECTION
            for corr, err, base, _throttle in answers:
                assert err == 0, "connection %d: produce error %d" % (i, err)
                assert corr // 1000 == i
                offsets.setdefault(i % partitions, []).append(base)
        # Every acknowledged batch got its own offsets: dense, none reused.
        warm_batches = REQUESTS_PER_CONNECTION
        for p, bases in offsets.items():
            got = sorted(bases)
            want = [(warm_batches + k) * RECORDS_PER_BATCH for k in range(len(got))]
            assert got == want, "partition %d base offsets %r" % (p, got[:10])

        if LIMITS_ON:
            assert waits > 0, "the load never reached the budget: " + summary
            # Requests that waited for the budget tell their client to back off (KIP-219).
            assert throttled, "no produce response carried a throttle time: " + summary
            assert metric(gw, "kafka_gateway_throttle_time_ms_sum", 'api="Produce"') > 0
            assert growth_mb < ALLOWED_GROWTH_MB, "memory grew past the bound: " + summary
    finally:
        gw.stop()


def test_without_durable_acks_nothing_is_held(smq, tmp_path):
    """--smq-flush-interval 0 turns holding off: produces never wait for the held-bytes bound,
    however small it is (here 64 KiB, far below what is produced)."""
    gw = kgw.Gateway(smq.master, os.path.join(str(tmp_path), "volatile-gateway.log"),
                     extra_args=["--smq-flush-interval", "0", "--max-unflushed-bytes", "65536"])
    gw.start()
    try:
        topic = kgw.unique_topic("volatile")
        kgw.create_topic(gw.bootstrap, topic, partitions=1)
        records = [{"value": bytes([i % 251]) * 4096, "partition": 0} for i in range(500)]
        delivered = kgw.produce_all(kgw.producer(gw.bootstrap, **{"message.timeout.ms": 30000}),
                                    topic, records)
        assert [m.offset() for m in delivered] == list(range(500))
        metrics = urllib.request.urlopen(gw.http + "/metrics", timeout=10).read().decode()
        assert "kafka_gateway_unflushed_bytes 0" in metrics
    finally:
        gw.stop()


# --- slow consumers ----------------------------------------------------------------------------

SLOW_CONNECTIONS = int(os.environ.get("OVERLOAD_SLOW_CONNECTIONS", "40"))
SLOW_FETCHES = 16                     # pipelined Fetch requests per slow connection: more
# than the kernel absorbs per connection (4 MiB send buffer at most, one fetch takes <= 1 MiB), so
# responses stay queued in the gateway whatever the socket buffers grew to
SLOW_RECORD_BYTES = 64 * 1024
SLOW_RECORDS = 96                     # 6 MiB in the topic, one record per batch
SLOW_LIMIT = 16 * 1024 * 1024         # --max-inflight-bytes
SLOW_CONNECTION_LIMIT = 4 * 1024 * 1024
# What the gateway may grow by while the slow connections hold responses: the in-flight budget
# (half of it for responses, the rest for requests) plus as much again for what building a
# response takes on the way (records read, their encoding, the frame) and allocator slack. The
# same load without the response budget holds one whole topic (6 MiB) per connection: 240 MiB.
SLOW_ALLOWED_GROWTH_MB = 2 * SLOW_LIMIT / 2 ** 20


def slow_reader(port, topic, index):
    """A connection that asks for everything and never reads: tiny receive buffer, pipelined
    Fetch requests with max_bytes 64 MiB."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(b"".join(fetch_v4(index * 100 + i, topic, 0, 0, 64 * 1024 * 1024)
                       for i in range(SLOW_FETCHES)))
    return s


def wait_whole_topic_in_one_fetch(port, topic, records, timeout=30):
    """Until one fetch from offset 0 returns offsets 0 to records-1 (in one batch or many)."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(30)
        while True:
            s.sendall(fetch_v4(1, topic, 0, 0, 64 * 1024 * 1024, max_wait_ms=0))
            _, _, err, _, got = parse_fetch_v4(kgw.recv_frame(s))
            if err == 0 and got and got[0][0] == 0 and got[-1][1] >= records - 1:
                return
            assert time.monotonic() < deadline, "one fetch never returned the %d records: %s %r" % (
                records, err, got[-3:])
            time.sleep(0.2)


def round_trip(bootstrap, topic, tag, count=10):
    """An ordinary producer and consumer: records produced (acks=all) are read back."""
    kgw.produce_all(kgw.producer(bootstrap), topic,
                    [{"value": b"%s-%d" % (tag, i), "partition": 0} for i in range(count)])
    got = kgw.consume_partitions(bootstrap, topic, {0: 0})[0]
    values = [m.value() for m in got]
    want = [b"%s-%d" % (tag, i) for i in range(count)]
    assert values[-count:] == want, values[-count:]


def test_slow_consumers_stay_within_the_memory_bound(smq, tmp_path):
    """Many connections ask for a whole topic and never read their sockets. Fetch responses are
    reserved from the in-flight budget before they are built, so memory stays bounded; an
    ordinary producer and consumer are served meanwhile, and once the slow connections close
    their budget is released and consumers read at full speed again."""
    args = ["--max-inflight-bytes", str(SLOW_LIMIT),
            "--max-connection-inflight-bytes", str(SLOW_CONNECTION_LIMIT)]
    gw = kgw.Gateway(smq.master, os.path.join(str(tmp_path), "slow-gateway.log"), extra_args=args)
    gw.start()
    slow = []
    try:
        topic = kgw.unique_topic("slow")
        probe = kgw.unique_topic("slow-probe")
        kgw.create_topic(gw.bootstrap, topic, partitions=1)
        kgw.create_topic(gw.bootstrap, probe, partitions=1)
        values = [bytes([i % 251]) * SLOW_RECORD_BYTES for i in range(SLOW_RECORDS)]
        kgw.produce_all(kgw.producer(gw.bootstrap), topic,
                        [{"value": v, "partition": 0} for v in values], flush_each=True)
        # Warm up: the whole topic read once, the probe topic used once; then the baseline.
        got = kgw.consume_partitions(gw.bootstrap, topic, {0: SLOW_RECORDS})[0]
        assert [m.value() for m in got] == values
        round_trip(gw.bootstrap, probe, b"warm")
        time.sleep(1)
        baseline_kb = rss_kb(gw.proc.pid)

        peak, stop, sampler = sample_peak_rss(gw.proc.pid, baseline_kb)
        started = time.monotonic()
        slow = [slow_reader(gw.port, topic, i) for i in range(SLOW_CONNECTIONS)]
        # The slow connections take the response budget (half of the in-flight budget) up to
        # less than one response (at most 1 MiB per fetch): how full it gets depends on how the
        # responses' sizes pack (8,201,603 of 8,388,608 bytes once, and no response fitted in the
        # rest)...
        full = SLOW_LIMIT // 2 - min(SLOW_CONNECTION_LIMIT, SLOW_LIMIT // 16)
        deadline = time.monotonic() + 60
        while metric(gw, "kafka_gateway_inflight_bytes") < full:
            if time.monotonic() > deadline:
                text = urllib.request.urlopen(gw.http + "/metrics", timeout=10).read().decode()
                raise AssertionError("slow connections never filled the budget:\n" + "\n".join(
                    l for l in text.splitlines() if not l.startswith("#") and "_bucket" not in l))
            time.sleep(0.1)
        time.sleep(2)  # ...and the later ones each get their first batch after waiting
        held_mb = metric(gw, "kafka_gateway_inflight_bytes") / 2 ** 20

        # Meanwhile ordinary clients are served.
        probe_started = time.monotonic()
        round_trip(gw.bootstrap, probe, b"during")
        probe_seconds = time.monotonic() - probe_started
        fetch_throttle = metric(gw, "kafka_gateway_throttle_time_ms_sum", 'api="Fetch"')
        time.sleep(1)
        stop.set()
        sampler.join(timeout=5)
        growth_mb = (peak[0] - baseline_kb) / 1024

        for s in slow:
            s.close()
        slow = []
        deadline = time.monotonic() + 30
        while metric(gw, "kafka_gateway_inflight_bytes") > 0:
            assert time.monotonic() < deadline, "budget not released after the slow clients left"
            time.sleep(0.1)
        after_kb = rss_kb(gw.proc.pid)
        read_started = time.monotonic()
        got = kgw.consume_partitions(gw.bootstrap, topic, {0: SLOW_RECORDS})[0]
        assert [m.value() for m in got] == values
        read_seconds = time.monotonic() - read_started
        round_trip(gw.bootstrap, probe, b"after")

        summary = ("slow consumers: %d connections x %d fetches of a %d MiB topic, budget %d MiB "
                   "(responses %d MiB, at most %d MiB per fetch); in flight while they held %.1f MiB; "
                   "gateway RSS baseline %.0f MiB, peak %.0f MiB (+%.1f MiB, bound +%.0f MiB), "
                   "after they closed %.0f MiB; probe round trip during the flood %.1fs "
                   "(Fetch throttle sum %d ms); whole topic read afterwards in %.1fs; flood %.0fs"
                   % (SLOW_CONNECTIONS, SLOW_FETCHES, SLOW_RECORDS * SLOW_RECORD_BYTES >> 20,
                      SLOW_LIMIT >> 20, SLOW_LIMIT >> 21, min(SLOW_CONNECTION_LIMIT, SLOW_LIMIT // 16) >> 20,
                      held_mb,
                      baseline_kb / 1024, peak[0] / 1024, growth_mb, SLOW_ALLOWED_GROWTH_MB,
                      after_kb / 1024, probe_seconds, fetch_throttle, read_seconds,
                      time.monotonic() - started))
        kgw.log(summary)
        print(summary)
        with open(os.path.join(str(tmp_path), "summary.txt"), "w") as f:
            f.write(summary + "\n")
        assert growth_mb < SLOW_ALLOWED_GROWTH_MB, "memory grew past the bound: " + summary
        assert fetch_throttle > 0, "fetches waiting for the budget were not throttled: " + summary
    finally:
        for s in slow:
            s.close()
        gw.stop()


# --- throttle times ----------------------------------------------------------------------------

def test_produce_past_the_unflushed_budget_is_throttled(smq, tmp_path):
    """A produce that waited for --max-unflushed-bytes (SMQ had not yet written what it acked)
    is answered with throttle_time_ms > 0, the time it waited; one that did not wait with 0."""
    gw = kgw.Gateway(smq.master, os.path.join(str(tmp_path), "throttle-gateway.log"),
                     extra_args=["--max-unflushed-bytes", "65536"])
    gw.start()
    try:
        topic = kgw.unique_topic("throttle")
        kgw.create_topic(gw.bootstrap, topic, partitions=1)
        batch = record_batch([bytes([i]) * 32768 for i in range(4)], int(time.time() * 1000))
        answers = []
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
            s.settimeout(60)
            for i in range(3):
                sent = time.monotonic()
                s.sendall(produce_v3(i, topic, 0, batch))
                corr, err, base, throttle = parse_produce_v3(kgw.recv_frame(s))
                answers.append((corr, err, base, throttle, time.monotonic() - sent))
            s.sendall(fetch_v4(9, topic, 0, 0, 1024 * 1024, max_wait_ms=0))
            _, fetch_throttle, fetch_err, hwm, batches = parse_fetch_v4(kgw.recv_frame(s))
        kgw.log("throttle answers (corr, error, base, throttle ms, seconds):", answers)
        assert [(c, e, b) for c, e, b, _, _ in answers] == [(0, 0, 0), (1, 0, 4), (2, 0, 8)]
        assert answers[0][3] == 0, "the first produce found room: %r" % answers
        for _, _, _, throttle, seconds in answers[1:]:
            # The held bytes were past the bound: it waited for SMQ's flush (5 s interval).
            assert 0 < throttle <= seconds * 1000 + 50, answers
        assert (fetch_err, fetch_throttle, hwm) == (0, 0, 12)
        assert batches and batches[0][0] == 0
        assert metric(gw, "kafka_gateway_throttle_time_ms_sum", 'api="Produce"') >= sum(
            a[3] for a in answers)
    finally:
        gw.stop()


def test_normal_load_is_not_throttled(gateway):
    """Under ordinary load nothing waits for a budget: throttle_time_ms is 0 in every Produce and
    Fetch response, raw and as librdkafka reports it in its statistics."""
    import json
    topic = kgw.unique_topic("unthrottled")
    kgw.create_topic(gateway.bootstrap, topic, partitions=1)
    stats = []
    conf = {"statistics.interval.ms": 100, "stats_cb": stats.append}
    records = [{"value": b"v-%d" % i, "partition": 0} for i in range(200)]
    kgw.produce_all(kgw.producer(gateway.bootstrap, **conf), topic, records)
    got = kgw.consume_partitions(gateway.bootstrap, topic, {0: 200}, **conf)
    assert [m.value() for m in got[0]] == [r["value"] for r in records]
    time.sleep(0.3)
    windows = [b["throttle"] for s in stats for b in json.loads(s)["brokers"].values()
               if b.get("nodeid", -1) >= 0]
    assert windows, "librdkafka sent no statistics"
    assert all(w["max"] == 0 for w in windows), windows
    batch = record_batch([b"raw"] * 3, int(time.time() * 1000))
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.settimeout(30)
        for i in range(5):
            s.sendall(produce_v3(i, topic, 0, batch))
            corr, err, _, throttle = parse_produce_v3(kgw.recv_frame(s))
            assert (corr, err, throttle) == (i, 0, 0)
            s.sendall(fetch_v4(100 + i, topic, 0, 200, 1024 * 1024, max_wait_ms=0))
            corr, throttle, err, _, batches = parse_fetch_v4(kgw.recv_frame(s))
            assert (corr, err, throttle) == (100 + i, 0, 0) and batches


def test_a_client_that_does_not_read_its_response_is_disconnected(smq, tmp_path):
    """A response left unread for --idle-timeout-secs closes the connection and releases the
    budget it held; the gateway serves on."""
    gw = kgw.Gateway(smq.master, os.path.join(str(tmp_path), "unread-gateway.log"),
                     extra_args=["--idle-timeout-secs", "3"])
    gw.start()
    try:
        topic = kgw.unique_topic("unread")
        kgw.create_topic(gw.bootstrap, topic, partitions=1)
        kgw.produce_all(kgw.producer(gw.bootstrap), topic,
                        [{"value": bytes([i]) * SLOW_RECORD_BYTES, "partition": 0}
                         for i in range(64)], flush_each=True)
        # A fetch may answer with part of what is there (what SMQ hands over at once); the slow
        # reader must get responses too large for the socket buffers, so wait until one fetch
        # returns all 4 MiB.
        wait_whole_topic_in_one_fetch(gw.port, topic, 64)
        mark = gw.log_size()
        s = slow_reader(gw.port, topic, 0)
        try:
            deadline = time.monotonic() + 10
            while metric(gw, "kafka_gateway_response_bytes") == 0:
                assert time.monotonic() < deadline, "the unread response never held budget"
                time.sleep(0.05)
            held_at = time.monotonic()
            while metric(gw, "kafka_gateway_response_bytes") > 0:
                assert time.monotonic() < held_at + 15, "the unread response still held budget"
                time.sleep(0.1)
            released_after = time.monotonic() - held_at
            assert "response not read within the idle timeout" in gw.log_since(mark)
        finally:
            s.close()
        kgw.log("unread response released after %.1fs" % released_after)
        assert 2 <= released_after <= 10, released_after
        round_trip(gw.bootstrap, topic, b"after", count=3)
    finally:
        gw.stop()
