#!/usr/bin/env python3
"""Failover of a gateway cluster (issue 17), measured with a real Kafka client: how long the
partitions of a SIGKILLed gateway go without acknowledgements before the others serve them.

One fresh dev/smq cluster, N gateways with --node-id 0..N-1 on one namespace, one topic of P
partitions, an idempotent acks=all producer bootstrapped from every gateway writing to every
partition at a steady rate, and a consumer reading along. Then K times: SIGKILL a gateway
(victims in turn), wait until every partition acknowledged a record produced after the kill,
start it again, wait until it is a member again and every partition acknowledged a record
produced after that, settle. Per kill:

  failover   seconds from the kill to the first acknowledgement of a record produced after it,
             for the partitions the victim led (max over them); the others never stop
  rejoin     the longest stall of the victim's partitions (time without an acknowledgement) from
             its restart until 5 s after it is a member again (its partitions move back to it)

Writes a JSON file and prints a markdown summary. Not a test: nothing is asserted except that no
acknowledged record is lost or duplicated and offsets stay dense.

  bench/cluster/kills.py --gateways 3 --kills 10 --out /tmp/cluster-kills.json
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
from test_smq_brokers import Consumer, Producer, check_everything, max_gap  # noqa: E402


def first_ack_after(prod, partition, t0):
    with prod.lock:
        ts = [t for p, _o, v, t in prod.acked if p == partition and prod.sent_at.get(v, 0) > t0]
    return min(ts) - t0 if ts else None


def wait_all(prod, partitions, t0, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(first_ack_after(prod, p, t0) is not None for p in partitions):
            return True
        time.sleep(0.1)
    return False


def leaders(bootstrap, topic, partitions):
    md = kgw.admin(bootstrap).list_topics(topic=topic, timeout=10)
    return {p: md.topics[topic].partitions[p].leader for p in range(partitions)}


def wait_members(gateways, n, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = [len(kgw.admin(g.bootstrap).list_topics(timeout=10).brokers) for g in gateways if g.alive()]
        if all(s == n for s in seen):
            return
        time.sleep(0.2)
    raise AssertionError("gateways did not list %d members within %ss" % (n, timeout))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateways", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--format", default="record")
    ap.add_argument("--gateway", default=None, help="kafka-gateway binary (default: KAFKA_GATEWAY_BIN)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="cluster-kills.")
    smq = kgw.Smq(os.path.join(work, "smq")).up()
    gws = [kgw.Gateway(smq.master, os.path.join(work, "gateway-%d.log" % i), namespace="kcl",
                       extra_args=["--node-id", str(i)], binary=a.gateway) for i in range(a.gateways)]
    kgw.log("work dir", work)
    kills = []
    try:
        for g in gws:
            g.start()
        wait_members(gws, a.gateways)
        bootstrap = ",".join(g.bootstrap for g in gws)
        topic = kgw.unique_topic("kills")
        kgw.create_topic(gws[0].bootstrap, topic, partitions=a.partitions,
                         config={"smq.storage.format": a.format})
        prod = Producer(bootstrap, topic, a.partitions)
        cons = Consumer(bootstrap, topic, a.partitions)
        prod.start()
        cons.start()
        everything = range(a.partitions)
        assert wait_all(prod, everything, 0, 60), "no acknowledgement on every partition"
        for n in range(a.kills):
            victim = n % a.gateways
            led = [p for p, l in leaders(gws[(victim + 1) % a.gateways].bootstrap, topic, a.partitions).items()
                   if l == victim]
            gws[victim].kill9()
            t_kill = time.monotonic()
            ok = wait_all(prod, everything, t_kill, 90)
            failover = {p: first_ack_after(prod, p, t_kill) for p in led}
            t_start = time.monotonic()
            gws[victim].start()
            wait_members(gws, a.gateways)
            back = wait_all(prod, everything, time.monotonic(), 90)
            time.sleep(5)
            rejoin = {p: max_gap(prod.acked, p, t_start, time.monotonic()) for p in led}
            k = {"victim": victim, "led": led, "served_again": ok, "back": back,
                 "failover": {p: v and round(v, 2) for p, v in failover.items()},
                 "rejoin": {p: v and round(v, 2) for p, v in rejoin.items()}}
            kills.append(k)
            kgw.log("kill %d: %s" % (n, json.dumps(k)))
        prod.finish()
        check_everything(bootstrap, topic, a.partitions, prod, cons)
        result = {"gateways": a.gateways, "partitions": a.partitions, "format": a.format,
                  "records_acked": len(prod.acked), "kills": kills}
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
        f_all = [max(v for v in k["failover"].values() if v is not None) for k in kills
                 if any(v is not None for v in k["failover"].values())]
        r_all = [max(v for v in k["rejoin"].values() if v is not None) for k in kills
                 if any(v is not None for v in k["rejoin"].values())]
        print("%d gateways, %d partitions (%s), %d kills, %d records acknowledged, none lost or "
              "duplicated, offsets dense" % (a.gateways, a.partitions, a.format, len(kills), len(prod.acked)))
        print("| | kills | median (s) | max (s) |\n|---|---|---|---|")
        for name, xs in (("SIGKILL → victim's partitions acknowledged again", f_all),
                         ("restart → longest stall while its partitions move back", r_all)):
            if xs:
                print("| %s | %d | %.1f | %.1f |" % (name, len(xs), statistics.median(xs), max(xs)))
    finally:
        for g in gws:
            g.stop()
        smq.down()


if __name__ == "__main__":
    main()
