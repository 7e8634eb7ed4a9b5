#!/usr/bin/env python3
"""Render the peer benchmark's results folder (bench/peers/run) as markdown on stdout."""

import json
import os
import re
import sys

NAMES = {"go": "SeaweedFS Go gateway (`weed mq.kafka.gateway`)", "ours": "our gateway (`kafka-gateway`, release)",
         "ours-batch": "our gateway, `smq.storage.format=batch`",
         "ours-memheld": "our gateway (`record`), held records in memory (no `--wal-dir`)",
         "ours-batch-memheld": "our gateway (`batch`), held records in memory (no `--wal-dir`)",
         "ours-volatile": "our gateway, `record`, acks not held for SMQ (`--smq-flush-interval 0`)",
         "ours-batch-volatile": "our gateway, `batch`, acks not held for SMQ (`--smq-flush-interval 0`)",
         "kafka": "Apache Kafka (KRaft, 1 node)", "ceiling": "raw SMQ ceiling (`smq-ceiling`)"}


# Every target that runs a Kafka client, in table order; our gateway once per storage format.
ALL = ("go", "ours", "ours-memheld", "ours-volatile", "ours-batch", "ours-batch-memheld",
       "ours-batch-volatile", "kafka")
OURS = ("ours", "ours-batch")


def load(out, label):
    p = os.path.join(out, label + ".json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def ceiling(out):
    """The 1 KiB, 3 partitions, pipelined publish and fetch rows of smq-ceiling's table."""
    p = os.path.join(out, "ceiling.md")
    if not os.path.exists(p):
        return None
    rows = {}
    for line in open(p):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[1] in ("1 KiB", "1 KiB RecordValue") and cells[2] == "3" \
                and cells[3] == "pipelined":
            key = cells[0] + ("_rv" if cells[1].endswith("RecordValue") else "")
            rows[key] = {"records": int(cells[4]), "records_per_s": float(cells[5]),
                              "mb_per_s": float(cells[6]), "broker_us_per_record": float(cells[7])}
    return rows or None


def fmt(x, nd=0):
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    if nd == 0:
        return "{:,.0f}".format(x)
    return "{:,.{}f}".format(x, nd)


def get(d, *path):
    for k in path:
        if d is None:
            return None
        d = d.get(k) if isinstance(d, dict) else None
    return d


def phase_cpu(r, who):
    tot, any_ = 0.0, False
    for ph in ("produce", "consume", "e2e"):
        v = get(r, ph, "cpu", who)
        if v is not None:
            tot += v
            any_ = True
    return round(tot, 1) if any_ else None


def prom(text):
    """Prometheus text -> {series: value}."""
    out = {}
    for line in (text or "").splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(\S+?(?:\{.*\})?)\s+(\S+)$", line)
        if m:
            try:
                out[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
    return out


def prom_delta(before, after):
    b, a = prom(before), prom(after)
    return {k: v - b.get(k, 0.0) for k, v in a.items() if v - b.get(k, 0.0) != 0 and not k.split("{")[0].endswith("_bucket")}


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return "%.2f×" % (a / b)


def main():
    out = sys.argv[1]
    info = {}
    if os.path.exists(os.path.join(out, "info")):
        for line in open(os.path.join(out, "info")):
            k, _, v = line.rstrip("\n").partition("=")
            info[k] = v
    res = {t: load(out, t) for t in ALL}
    ceil = ceiling(out)
    load_before = open(os.path.join(out, "load_before")).read().strip() if os.path.exists(
        os.path.join(out, "load_before")) else "?"

    any_r = next((r for r in res.values() if r and r.get("librdkafka")), {})
    print("Client: confluent-kafka %s (librdkafka %s); %s records × %s B, %s partitions; acks=all, "
          "idempotence off, linger.ms=5, batch.size=1000000, no compression; e2e at 2,000 msg/s for %s s."
          % (any_r.get("confluent_kafka", "?"), any_r.get("librdkafka", "?"), info.get("records", "?"),
             any_r.get("size", 1024), any_r.get("partitions", 3), info.get("e2e_seconds", "?")))
    print("Machine: %s CPUs, %s, kernel %s; 1-minute load average before the run: %s."
          % (info.get("cpus", "?"), info.get("mem", "?"), info.get("kernel", "?"), load_before))
    print("Versions: gateway %s; %s; Apache Kafka %s on %s; %s."
          % (info.get("gateway_commit", "?"), info.get("weed", "?"), info.get("kafka_version", "?"),
             info.get("java", "?"), info.get("date", "?")))
    print()
    print("| target | produce rec/s | produce MB/s | consume rec/s | consume MB/s | e2e p50 ms | e2e p99 ms "
          "| server peak RSS MB | server CPU s | broker CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t in ALL:
        r = res[t]
        if r is None:
            print("| %s | not run |%s" % (NAMES[t], " – |" * 8))
            continue
        cells = [get(r, "produce", "records_per_s"), get(r, "produce", "mb_per_s"),
                 get(r, "consume", "records_per_s"), get(r, "consume", "mb_per_s"),
                 get(r, "e2e", "p50_ms"), get(r, "e2e", "p99_ms"),
                 get(r, "peak_rss_mb", "server"), phase_cpu(r, "server"), phase_cpu(r, "broker")]
        nd = [0, 1, 0, 1, 1, 1, 0, 1, 1]
        row = [fmt(c, n) for c, n in zip(cells, nd)]
        if t == "kafka":
            row[-1] = "(none)"
        name = NAMES[t]
        if r.get("error"):
            name += " — FAILED: " + r["error"].replace("|", "/")[:300]
        print("| %s | %s |" % (name, " | ".join(row)))
    if ceil:
        pub, fet = ceil.get("publish"), ceil.get("fetch")
        bcpu = None
        if pub and fet:
            bcpu = (pub["broker_us_per_record"] + fet["broker_us_per_record"]) * int(info.get("records", 200000)) / 1e6
        print("| %s, 1 KiB, 3 partitions, pipelined (%s records) | %s | %s | %s | %s | – | – | – | – | %s (scaled to %s records) |"
              % (NAMES["ceiling"], fmt(get(pub, "records")), fmt(get(pub, "records_per_s")),
                 fmt(get(pub, "mb_per_s"), 1), fmt(get(fet, "records_per_s")), fmt(get(fet, "mb_per_s"), 1),
                 fmt(bcpu, 1), info.get("records", "?")))
    else:
        print("| %s | not run |%s" % (NAMES["ceiling"], " – |" * 8))
    print()
    print("Server CPU s and broker CPU s are summed over the three phases (produce, consume, e2e); "
          "the broker is SMQ's `weed mq.broker` (the gateways' backend; Kafka has none).")

    # Ratios
    for ours in OURS:
        o = res[ours]
        if o is None:
            continue
        print()
        print("Ratios of %s to each peer" % NAMES[ours] + " (throughput: higher is better for us; latency, RSS, CPU: lower is better):")
        print()
        print("| our gateway vs | produce rec/s | consume rec/s | e2e p50 | e2e p99 | server peak RSS | server+broker CPU s |")
        print("|---|---|---|---|---|---|---|")

        def both_cpu(r):
            a, b = phase_cpu(r, "server"), phase_cpu(r, "broker")
            if a is None:
                return None
            return a + (b or 0)

        for t in ("go", "kafka"):
            r = res[t]
            print("| %s | %s | %s | %s | %s | %s | %s |" % (
                NAMES[t], ratio(get(o, "produce", "records_per_s"), get(r, "produce", "records_per_s")),
                ratio(get(o, "consume", "records_per_s"), get(r, "consume", "records_per_s")),
                ratio(get(o, "e2e", "p50_ms"), get(r, "e2e", "p50_ms")),
                ratio(get(o, "e2e", "p99_ms"), get(r, "e2e", "p99_ms")),
                ratio(get(o, "peak_rss_mb", "server"), get(r, "peak_rss_mb", "server")),
                ratio(both_cpu(o), both_cpu(r))))
        if ceil:
            print("| %s | %s | %s | – | – | – | – |" % (
                NAMES["ceiling"], ratio(get(o, "produce", "records_per_s"), get(ceil, "publish", "records_per_s")),
                ratio(get(o, "consume", "records_per_s"), get(ceil, "fetch", "records_per_s"))))

    # Per phase
    print()
    print("CPU per phase (seconds of utime+stime, and µs per record; e2e phase: %s records):" % fmt(
        get(o, "e2e", "sent") or get(res["go"], "e2e", "sent")))
    print()
    print("| target | phase | wall s | server CPU s | server µs/rec | broker CPU s | broker µs/rec | client CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for t in ALL:
        r = res[t]
        if not r:
            continue
        for ph in ("produce", "consume", "e2e"):
            if ph not in r:
                continue
            n = get(r, ph, "records") or get(r, ph, "sent")
            wall = get(r, ph, "seconds") or get(r, ph, "send_seconds")
            s, b = get(r, ph, "cpu", "server"), get(r, ph, "cpu", "broker")
            print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                t, ph, fmt(wall, 2), fmt(s, 2), fmt(s * 1e6 / n if s is not None and n else None, 1),
                fmt(b, 2), fmt(b * 1e6 / n if b is not None and n else None, 1),
                fmt(get(r, ph, "cpu", "client"), 2)))
    if ceil:
        for ph in ("publish", "fetch", "publish_rv", "fetch_rv"):
            row = ceil.get(ph)
            if row:
                print("| ceiling | %s | %s | – | – | %s | %s | – |" % (
                    ph.replace("_rv", " (RecordValue)"), fmt(row["records"] / row["records_per_s"], 2),
                    fmt(row["broker_us_per_record"] * row["records"] / 1e6, 2), fmt(row["broker_us_per_record"], 1)))

    # e2e details
    print()
    print("End-to-end details:")
    print()
    print("| target | sent | received | send rate msg/s | last delivery report after s | p50 ms | p99 ms | max ms | delivery errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in ALL:
        e = get(res[t], "e2e")
        if e:
            print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                t, fmt(e["sent"]), fmt(e["received"]), fmt(e["achieved_rate"]),
                fmt(e.get("all_delivered_after_s"), 2), fmt(e["p50_ms"], 2),
                fmt(e["p99_ms"], 2), fmt(e["max_ms"], 2), e["delivery_errors"]))

    # Our gateway's metrics over the produce and consume phases
    if o:
        for ph in ("produce", "consume", "e2e"):
            d = prom_delta(get(o, ph, "metrics_before"), get(o, ph, "metrics_after"))
            if d:
                print()
                print("Our gateway's /metrics, change over the %s phase (non-bucket series):" % ph)
                print()
                print("```")
                for k in sorted(d):
                    print("%s %s" % (k, fmt(d[k], 3) if d[k] != int(d[k]) else fmt(d[k])))
                print("```")
        stats = os.path.join(out, "ours.stats.json")
        if os.path.exists(stats):
            print()
            print("Our gateway's /stats after the run: `%s`" % open(stats).read().strip()[:3000])

    # Targets: issue 3 for the record format, issue 8 for the batch format.
    for ours in OURS:
        o = res[ours]
        if o is None:
            continue
        print()
        print("%s targets (%s):" % ("Issue 3" if ours == "ours" else "Issue 8", NAMES[ours]))
        print()
        checks = []

        def vs(label, phase, peer_value, factor, peer_name):
            mine = get(o, phase, "records_per_s")
            if mine and peer_value:
                checks.append(("%s ≥ %s× %s" % (label, factor, peer_name),
                               "%s vs %s rec/s = %.2f×" % (fmt(mine), fmt(peer_value), mine / peer_value),
                               mine >= factor * peer_value))
            else:
                checks.append(("%s ≥ %s× %s" % (label, factor, peer_name), "not measured", None))

        go_p, go_c = get(res["go"], "produce", "records_per_s"), get(res["go"], "consume", "records_per_s")
        k_p, k_c = get(res["kafka"], "produce", "records_per_s"), get(res["kafka"], "consume", "records_per_s")
        if ours == "ours":
            vs("produce", "produce", get(ceil, "publish", "records_per_s"), 0.8, "raw SMQ per-record ceiling")
            if get(ceil, "publish_rv"):
                vs("produce", "produce", get(ceil, "publish_rv", "records_per_s"), 0.8,
                   "raw SMQ ceiling for `record`'s RecordValue records")
            vs("consume", "consume", go_c, 3, "Go gateway")
        else:
            vs("produce", "produce", go_p, 5, "Go gateway")
            vs("consume", "consume", go_c, 5, "Go gateway")
            vs("produce", "produce", k_p, 0.5, "Apache Kafka")
            vs("consume", "consume", k_c, 0.5, "Apache Kafka")
        p99 = get(o, "e2e", "p99_ms")
        if p99 is not None:
            checks.append(("e2e p99 ≤ 20 ms", "%.1f ms" % p99, p99 <= 20))
        rss = get(o, "peak_rss_mb", "server")
        if rss is not None:
            checks.append(("gateway peak RSS ≤ 64 MB", "%.0f MB" % rss, rss <= 64))
        print("| target | measured | met |")
        print("|---|---|---|")
        for name, meas, ok in checks:
            print("| %s | %s | %s |" % (name, meas, "?" if ok is None else ("yes" if ok else "**no**")))

if __name__ == "__main__":
    main()
