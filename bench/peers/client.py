#!/usr/bin/env python3
"""The peer benchmark's client: one confluent-kafka (librdkafka) run against one Kafka endpoint.

Phases, with the same settings for every target (see bench/peers/run):
  produce  N records x SIZE bytes to a 3-partition topic (acks=all, no idempotence, linger.ms=5,
           batch.size ~1 MB, no compression); wall time until the last delivery report
  consume  read all N back with assign() from offset 0 of every partition (no consumer group),
           checking count, length, partition and the per-record id in key and value
  e2e      RATE msg/s for SECONDS to a fresh topic while a separate process tails it; latency =
           receive time - send time (send time carried in the value)
For each phase it records the CPU seconds (utime+stime from /proc/PID/stat) of every --pid, and at
the end their peak RSS (VmHWM). Writes one JSON object to --out.
"""

import argparse
import json
import multiprocessing as mp
import os
import struct
import sys
import time
import urllib.request

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print("[client]", *a, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def peak_rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class Cpu:
    """CPU seconds of the watched processes over one phase."""

    def __init__(self, pids):
        self.pids = pids
        self.start = {n: cpu_seconds(p) for n, p in pids.items()}
        self.own = os.times()

    def used(self):
        t = os.times()
        # this client process (for e2e, without the tailing consumer's process)
        out = {"client": round(t.user + t.system - self.own.user - self.own.system, 2)}
        for n, p in self.pids.items():
            now = cpu_seconds(p)
            out[n] = None if now is None or self.start[n] is None else round(now - self.start[n], 2)
        return out


def scrape(url):
    if not url:
        return None
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()
    except OSError as e:
        return "error: %s" % e


def base_conf(args):
    return {"bootstrap.servers": args.bootstrap, "client.id": "peer-bench"}


def producer_conf(args):
    c = base_conf(args)
    c.update({
        "acks": "all",
        "enable.idempotence": False,
        "linger.ms": 5,
        "batch.size": 1000000,  # ~1 MB; Kafka's default max.message.bytes is 1048588
        "compression.type": "none",
        "queue.buffering.max.messages": 500000,
        "queue.buffering.max.kbytes": 1048576,
        "message.timeout.ms": 120000,
    })
    return c


def consumer_conf(args):
    c = base_conf(args)
    # confluent-kafka wants a group.id; the benchmark only assign()s and never commits.
    c.update({
        "group.id": "peer-bench-%d" % os.getpid(),
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    })
    return c


def ensure_topic(args, name):
    """CreateTopics (3 partitions); tolerate 'already exists'; then check the partition count."""
    admin = AdminClient(base_conf(args))
    created = "created"
    try:
        fs = admin.create_topics([NewTopic(name, args.partitions, 1)], request_timeout=30)
        fs[name].result(timeout=60)
    except KafkaException as e:
        err = e.args[0]
        if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            created = "already existed"
        else:
            created = "CreateTopics failed: %s" % err
            log(created)
    deadline = time.monotonic() + 60
    parts = None
    while time.monotonic() < deadline:
        md = admin.list_topics(topic=name, timeout=10)
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) > 0:
            parts = len(t.partitions)
            # every partition needs a leader, or the first produce is retried and reordered
            if parts == args.partitions and all(
                    pm.leader >= 0 and pm.error is None for pm in t.partitions.values()):
                break
        time.sleep(0.5)
    if parts != args.partitions:
        raise SystemExit("topic %s: expected %d partitions in metadata, got %s (%s)"
                         % (name, args.partitions, parts, created))
    log("topic %s: %s, %d partitions in metadata" % (name, created, parts))
    return created


def produce(args, pids):
    topic = args.topic
    p = Producer(producer_conf(args))
    # Connect and fetch metadata before the clock starts.
    p.list_topics(topic=topic, timeout=30)
    state = {"ok": 0, "err": 0, "first_err": None}

    def on_delivery(err, msg):
        if err is None:
            state["ok"] += 1
        else:
            state["err"] += 1
            if state["first_err"] is None:
                state["first_err"] = str(err)

    filler = b"x" * (args.size - 32)
    metrics0 = scrape(args.metrics_url)
    cpu = Cpu(pids)
    t0 = time.perf_counter()
    for i in range(args.records):
        value = b"%016d" % i + (b"%016x" % (i * 2654435761 & 0xFFFFFFFFFFFFFFFF)) + filler
        while True:
            try:
                p.produce(topic, value=value, key=b"id-%d" % i, partition=i % args.partitions,
                          on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0)
    remaining = p.flush(300)
    wall = time.perf_counter() - t0
    used = cpu.used()
    metrics1 = scrape(args.metrics_url)
    if remaining or state["err"] or state["ok"] != args.records:
        raise SystemExit("produce: %d delivered, %d failed (first: %s), %d still queued"
                         % (state["ok"], state["err"], state["first_err"], remaining))
    r = {
        "records": args.records, "bytes": args.records * args.size, "seconds": round(wall, 3),
        "records_per_s": round(args.records / wall), "mb_per_s": round(args.records * args.size / wall / 1e6, 1),
        "cpu": used,
    }
    if metrics0 is not None:
        r["metrics_before"] = metrics0
        r["metrics_after"] = metrics1
    log("produce: %d records in %.2f s = %d rec/s, %.1f MB/s; cpu %s"
        % (args.records, wall, r["records_per_s"], r["mb_per_s"], used))
    return r


def consume(args, pids):
    topic = args.topic
    c = Consumer(consumer_conf(args))
    per_part = [len(range(p, args.records, args.partitions)) for p in range(args.partitions)]
    seen = bytearray(args.records)
    filler = b"x" * (args.size - 32)
    count = bad = reordered = 0
    first_bad = None
    c.list_topics(topic=topic, timeout=30)
    metrics0 = scrape(args.metrics_url)
    cpu = Cpu(pids)
    t0 = time.perf_counter()
    c.assign([TopicPartition(topic, p, 0) for p in range(args.partitions)])
    last_progress = time.monotonic()
    errors = {}
    while count < args.records:
        msgs = c.consume(num_messages=min(1000, args.records - count), timeout=1.0)
        if not msgs:
            if time.monotonic() - last_progress > args.stall_seconds:
                break
            continue
        for m in msgs:
            if m.error():
                errors[str(m.error())] = errors.get(str(m.error()), 0) + 1
                continue
            v = m.value()
            k = m.key()
            try:
                i = int(k[3:])
                ok = (len(v) == args.size and k[:3] == b"id-" and int(v[:16]) == i
                      and v[16:32] == b"%016x" % (i * 2654435761 & 0xFFFFFFFFFFFFFFFF)
                      and v[32:] == filler and m.partition() == i % args.partitions and not seen[i])
                # Without idempotence a retried batch may land after a later one: count, don't fail.
                if ok and m.offset() != i // args.partitions:
                    reordered += 1
            except (ValueError, TypeError, IndexError):
                ok, i = False, None
            if ok:
                seen[i] = 1
                count += 1
            else:
                bad += 1
                if first_bad is None:
                    first_bad = "partition %d offset %d key %r len %d" % (
                        m.partition(), m.offset(), k[:40] if k else k, len(v) if v else -1)
        last_progress = time.monotonic()
    wall = time.perf_counter() - t0
    used = cpu.used()
    metrics1 = scrape(args.metrics_url)
    c.close()
    if count != args.records or bad:
        raise SystemExit("consume: %d of %d valid records, %d bad (first: %s), errors %s"
                         % (count, args.records, bad, first_bad, errors))
    r = {
        "records": count, "bytes": count * args.size, "seconds": round(wall, 3),
        "records_per_s": round(count / wall), "mb_per_s": round(count * args.size / wall / 1e6, 1),
        "cpu": used, "verified": "all %d records: length, key id, value id and body, partition, no duplicate" % count,
        "not_at_produce_order_offset": reordered,
        "per_partition": per_part,
    }
    if errors:
        r["consumer_errors"] = errors
    if metrics0 is not None:
        r["metrics_before"] = metrics0
        r["metrics_after"] = metrics1
    log("consume: %d records in %.2f s = %d rec/s, %.1f MB/s; cpu %s"
        % (count, wall, r["records_per_s"], r["mb_per_s"], used))
    return r


def e2e_tail(args, topic, expected, ready, done, q):
    """Runs in its own process: tail all partitions, record (receive - send) per message."""
    c = Consumer(consumer_conf(args))
    c.list_topics(topic=topic, timeout=30)
    c.assign([TopicPartition(topic, p, 0) for p in range(args.partitions)])
    # One empty poll round so the fetchers are running before the producer starts.
    c.consume(num_messages=100, timeout=1.0)
    ready.set()
    lat = []
    deadline = None
    while len(lat) < expected:
        # poll(), not consume(num_messages=...): the batch call waits for a full batch or its timeout
        m = c.poll(0.05)
        now = time.time_ns()
        if m is not None and not m.error():
            sent = struct.unpack_from(">q", m.value(), 0)[0]
            lat.append(((now - sent) / 1e6, sent, m.partition()))
        if done.is_set():
            if deadline is None:
                deadline = time.monotonic() + 60
            elif time.monotonic() > deadline:
                break
    c.close()
    q.put(lat)


def e2e(args, pids):
    topic = args.topic + "_e2e"
    ensure_topic(args, topic)
    n = int(args.e2e_rate * args.e2e_seconds)
    ctx = mp.get_context("spawn")
    ready, done, q = ctx.Event(), ctx.Event(), ctx.Queue()
    tail = ctx.Process(target=e2e_tail, args=(args, topic, n, ready, done, q))
    tail.start()
    if not ready.wait(60):
        raise SystemExit("e2e: the tailing consumer never got ready")
    p = Producer(producer_conf(args))
    p.list_topics(topic=topic, timeout=30)
    state = {"err": 0, "first_err": None, "last": 0.0}
    acked = []  # (ack latency ms, send time ns, partition): the produce path alone

    def on_delivery(err, msg):
        state["last"] = time.perf_counter()
        if err is not None:
            state["err"] += 1
            state["first_err"] = state["first_err"] or str(err)
        else:
            sent = struct.unpack_from(">q", msg.value(), 0)[0]
            acked.append(((time.time_ns() - sent) / 1e6, sent, msg.partition()))

    filler = b"y" * (args.size - 8)
    metrics0 = scrape(args.metrics_url)
    cpu = Cpu(pids)
    interval = 1.0 / args.e2e_rate
    t0 = time.perf_counter()
    behind_max = 0.0
    for i in range(n):
        due = t0 + i * interval
        now = time.perf_counter()
        if now < due:
            time.sleep(due - now)  # a real sleep: a busy wait would take a core from the servers
        behind_max = max(behind_max, time.perf_counter() - due)
        p.produce(topic, value=struct.pack(">q", time.time_ns()) + filler, key=b"e-%d" % i,
                  partition=i % args.partitions, on_delivery=on_delivery)
        p.poll(0)
    send_wall = time.perf_counter() - t0
    left = p.flush(300)
    delivered_wall = state["last"] - t0
    done.set()
    lat = q.get(timeout=120)
    tail.join(30)
    used = cpu.used()
    metrics1 = scrape(args.metrics_url)
    if args.e2e_timeline:
        # one line per record: send time (ns), partition, ack latency ms, receive latency ms
        acks = {(s, p): a for a, s, p in acked}
        with open(args.e2e_timeline, "w") as f:
            for e, s, p in sorted(lat, key=lambda x: x[1]):
                f.write("%d %d %.2f %.2f\n" % (s, p, acks.get((s, p), -1.0), e))
    ack = sorted(a for a, _, _ in acked) or [float("nan")]
    lat = sorted(e for e, _, _ in lat)
    if not lat:
        raise SystemExit("e2e: no message received")

    def pct(x, v=lat):
        return round(v[min(len(v) - 1, int(len(v) * x))], 2)

    r = {
        "sent": n, "received": len(lat), "send_seconds": round(send_wall, 2),
        "achieved_rate": round(n / send_wall), "producer_max_behind_ms": round(behind_max * 1e3, 2),
        "all_delivered_after_s": round(delivered_wall, 2), "undelivered": left,
        "delivery_errors": state["err"], "first_delivery_error": state["first_err"],
        "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": round(lat[-1], 2), "cpu": used,
        "ack_p50_ms": pct(0.50, ack), "ack_p99_ms": pct(0.99, ack), "ack_max_ms": pct(1.0, ack),
    }
    if metrics0 is not None:
        r["metrics_before"] = metrics0
        r["metrics_after"] = metrics1
    log("e2e: %d/%d received at %d msg/s; p50 %.2f ms, p99 %.2f ms, max %.2f ms; "
        "acks p50 %.2f ms, p99 %.2f ms, max %.2f ms; cpu %s"
        % (len(lat), n, r["achieved_rate"], r["p50_ms"], r["p99_ms"], r["max_ms"],
           r["ack_p50_ms"], r["ack_p99_ms"], r["ack_max_ms"], used))
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", default="_bench")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--records", type=int, default=200000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--e2e-rate", type=float, default=2000)
    ap.add_argument("--e2e-seconds", type=float, default=20)
    ap.add_argument("--stall-seconds", type=float, default=60,
                    help="consume gives up after this long without a record")
    ap.add_argument("--pid", action="append", default=[], metavar="NAME=PID",
                    help="process to watch (CPU per phase, peak RSS); repeatable")
    ap.add_argument("--metrics-url", help="scrape this Prometheus endpoint before/after each phase")
    ap.add_argument("--e2e-timeline", metavar="FILE",
                    help="write one line per e2e record: send ns, partition, ack ms, receive ms")
    ap.add_argument("--phases", default="produce,consume,e2e", help="comma-separated subset to run")
    ap.add_argument("--label", default="")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    pids = {}
    for s in args.pid:
        n, p = s.split("=", 1)
        pids[n] = int(p)
    import confluent_kafka
    result = {"label": args.label, "bootstrap": args.bootstrap, "topic": args.topic,
              "confluent_kafka": confluent_kafka.__version__, "librdkafka": confluent_kafka.libversion()[0],
              "records": args.records, "size": args.size, "partitions": args.partitions,
              "pids": pids}
    try:
        phases = args.phases.split(",")
        if "produce" in phases or "consume" in phases:
            result["topic_create"] = ensure_topic(args, args.topic)
        # VmHWM after each phase: the peak so far, so the phase that set the peak shows.
        if "produce" in phases:
            result["produce"] = produce(args, pids)
            result["produce"]["peak_rss_mb_so_far"] = {n: peak_rss_mb(p) for n, p in pids.items()}
        if "consume" in phases:
            result["consume"] = consume(args, pids)
            result["consume"]["peak_rss_mb_so_far"] = {n: peak_rss_mb(p) for n, p in pids.items()}
        if "e2e" in phases:
            result["e2e"] = e2e(args, pids)
    except SystemExit as e:
        result["error"] = str(e)
        log("FAILED:", e)
    except Exception as e:  # noqa: BLE001 - recorded in the result, the run goes on
        result["error"] = "%s: %s" % (type(e).__name__, e)
        log("FAILED:", result["error"])
    result["peak_rss_mb"] = {n: peak_rss_mb(p) for n, p in pids.items()}
    result["cpu_total"] = {n: cpu_seconds(p) for n, p in pids.items()}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
