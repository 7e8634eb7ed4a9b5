#!/usr/bin/env python3
"""Unavailability of each partition when one of several SMQ brokers is SIGKILLed and restarted
(issue 21), measured through the gateway with a real Kafka client.

One fresh dev/smq cluster with --brokers N, one gateway, one topic of P partitions, an idempotent
acks=all producer writing to every partition at a steady rate. Then K times: SIGKILL a broker
(victims in turn: 1, 0, 2, 1, 0, 2, ... so the balancer is among them), wait until every
partition acknowledged a record produced after the kill (or DOWN seconds, for two brokers whose
dead broker's partitions get no leader), start it again, wait until every partition acknowledged
a record produced after the restart, settle a few seconds. Per kill and partition:

  after_kill     seconds from the kill (the broker is gone) to the first acknowledgement of a
                 record produced after it (0 for a partition that never stopped)
  after_restart  the same from the start of the restarted broker (it answers and has connected
                 to the balancer)

Writes a JSON file and prints a markdown summary (median and max over kills, per kind of
victim). Not a test: nothing is asserted except that no acknowledged record is lost.

  bench/brokers/kills.py --brokers 3 --kills 10 --out /tmp/kills.json
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "clients"))
sys.path.insert(0, os.path.join(REPO, "tests", "clients", "brokers"))

import kgw  # noqa: E402
from test_smq_brokers import Cluster, Consumer, Producer, check_everything, max_gap  # noqa: E402


def first_ack_after(prod, partition, t0):
    with prod.lock:
        ts = [t for p, _o, v, t in prod.acked if p == partition and prod.sent_at.get(v, 0) > t0]
    return min(ts) - t0 if ts else None


def wait_all(prod, partitions, t0, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(first_ack_after(prod, p, t0) is not None for p in range(partitions)):
            return True
        time.sleep(0.1)
    return False


def summary(kills, partitions):
    lines = ["| victim | kills | after kill: median / max (s) | after restart, partitions still "
             "waiting: median / max (s) | longest stall from the restart on: median / max (s) |",
             "|---|---|---|---|---|"]
    for kind in ("non-balancer", "balancer", "all"):
        ks = [k for k in kills if kind == "all" or (k["balancer"] == (kind == "balancer"))]
        if not ks:
            continue
        a = [v for k in ks for v in k["after_kill"].values() if v is not None]
        r = [v for k in ks for v in k["after_restart"].values() if v is not None]
        missing = sum(1 for k in ks for v in k["after_kill"].values() if v is None)

        def mm(xs):
            return "%.1f / %.1f" % (statistics.median(xs), max(xs)) if xs else "-"
        g = [v for k in ks for v in k.get("restart_max_gap", {}).values()]
        lines.append("| %s | %d | %s%s | %s | %s |" % (kind, len(ks), mm(a),
                                                        " (%d partition-kills waited for the restart)"
                                                        % missing if missing else "", mm(r), mm(g)))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--brokers", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--down", type=float, default=90,
                    help="longest wait for every partition after a kill before restarting the broker")
    ap.add_argument("--format", default="record")
    ap.add_argument("--gateway", default=None, help="kafka-gateway binary (default: KAFKA_GATEWAY_BIN)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="brokers-kills.")
    cluster = Cluster(os.path.join(work, "smq")).up(a.brokers)
    gw = kgw.Gateway(cluster.master, os.path.join(work, "kafka-gateway.log"), binary=a.gateway)
    kgw.log("work dir", work)
    kills = []
    try:
        gw.start()
        topic = kgw.unique_topic("kills")
        kgw.create_topic(gw.bootstrap, topic, partitions=a.partitions,
                         config={"smq.storage.format": a.format})
        prod = Producer(gw.bootstrap, topic, a.partitions)
        cons = Consumer(gw.bootstrap, topic, a.partitions)
        prod.start()
        cons.start()
        assert wait_all(prod, a.partitions, 0, 60), "no acknowledgement on every partition"
        order = [i % a.brokers for i in range(1, a.kills + 1)]
        for n, victim in enumerate(order):
            was_balancer = victim == cluster.balancer()
            gw.mark("kill %d: SIGKILL broker %d%s" % (n, victim, " (balancer)" if was_balancer else ""))
            cluster.kill(victim)
            t_kill = time.monotonic()
            wait_all(prod, a.partitions, t_kill, a.down)
            after_kill = {p: first_ack_after(prod, p, t_kill) for p in range(a.partitions)}
            t_start = time.monotonic()
            cluster.start(victim)
            started = time.monotonic() - t_start
            ok = wait_all(prod, a.partitions, t_start, 180)
            after_restart = {p: first_ack_after(prod, p, t_start) for p in range(a.partitions)}
            # A partition that recovered before the restart counts from the kill only.
            k = {"victim": victim, "balancer": was_balancer, "start_broker_s": round(started, 1),
                 "after_kill": {p: v and round(v, 2) for p, v in after_kill.items()},
                 "after_restart": {p: (None if after_kill[p] is not None and after_kill[p] < t_start - t_kill
                                       else v and round(v, 2)) for p, v in after_restart.items()},
                 "recovered_after_restart": ok}
            time.sleep(5)
            # The longest stall of each partition from the restart on (a partition that had
            # moved to another broker may still stall while the restarted one rejoins).
            k["restart_max_gap"] = {p: round(max_gap(prod.acked, p, t_start, time.monotonic()), 2)
                                    for p in range(a.partitions)}
            kills.append(k)
            kgw.log("kill %d: %s" % (n, json.dumps(k)))
        prod.finish()
        check_everything(gw.bootstrap, topic, a.partitions, prod, cons)
        result = {"brokers": a.brokers, "partitions": a.partitions, "format": a.format,
                  "records_acked": len(prod.acked), "kills": kills}
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
        print("%d brokers, %d partitions, %d kills, %d records acknowledged, none lost or duplicated"
              % (a.brokers, a.partitions, len(kills), len(prod.acked)))
        print(summary(kills, a.partitions))
    finally:
        gw.stop()
        cluster.down()


if __name__ == "__main__":
    main()
