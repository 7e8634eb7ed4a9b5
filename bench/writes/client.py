"""SMQ writes per produce request, and the acknowledgement latency that comes with them.

One confluent-kafka producer (acks=all, no idempotence, linger.ms=0, up to 5 requests in flight)
sends RECORDS records of 100 bytes with random keys to a topic of PARTITIONS partitions, either as
fast as it can (`burst`: requests carry several partitions and are pipelined, so the entries of
several produces can share one ledger record) or at RATE records/s (`paced`: about one record per
request, nothing to share). The gateway's /metrics before and after give produce requests and SMQ
records by kind (`kafka_gateway_smq_writes_total{kind}`). Prints one JSON object.
"""

import json
import os
import random
import sys
import time
import urllib.request
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def metric(text, name, *labels):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(label in line for label in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


def counters(http):
    text = urllib.request.urlopen(f"http://{http}/metrics", timeout=10).read().decode()
    return {
        "requests": metric(text, "kafka_gateway_requests_total", 'api="Produce"'),
        "data": metric(text, "kafka_gateway_smq_writes_total", 'kind="data"'),
        "ledger": metric(text, "kafka_gateway_smq_writes_total", 'kind="ledger"'),
    }


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def main():
    bootstrap, http, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    records = int(os.environ.get("RECORDS", "30000"))
    partitions = int(os.environ.get("PARTITIONS", "6"))
    rate = float(os.environ.get("RATE", "2000"))
    topic = f"writes-{mode}-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(60)

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": False,
        "linger.ms": 0,
        "max.in.flight.requests.per.connection": 5,
        "message.timeout.ms": 120000,
        # Smaller batches make more, pipelined requests (librdkafka's default is 1 MB).
        "batch.size": int(os.environ.get("BATCH_BYTES", "1000000")),
    })
    # Warm-up: metadata, the partitions' locks and publishers.
    for p in range(partitions):
        producer.produce(topic, b"w" * 100, partition=p)
    assert producer.flush(60) == 0, "warm-up not acknowledged"

    latencies, failed = [], []

    def done(sent_at):
        def callback(err, _msg):
            if err is not None:
                failed.append(str(err))
            else:
                latencies.append((time.monotonic() - sent_at) * 1000)
        return callback

    before = counters(http)
    start = time.monotonic()
    for i in range(records):
        if mode == "paced":
            due = start + i / rate
            while (now := time.monotonic()) < due:
                producer.poll(min(due - now, 0.01))
        key = random.randbytes(8)
        while True:
            try:
                producer.produce(topic, b"v" * 100, key=key, on_delivery=done(time.monotonic()))
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    assert producer.flush(120) == 0, "records not acknowledged"
    elapsed = time.monotonic() - start
    after = counters(http)
    delta = {k: after[k] - before[k] for k in after}
    print(json.dumps({
        "mode": mode,
        "records": records,
        "partitions": partitions,
        "failed": len(failed),
        "seconds": round(elapsed, 2),
        "records_per_s": round(records / elapsed),
        "produce_requests": int(delta["requests"]),
        "data_writes": int(delta["data"]),
        "ledger_writes": int(delta["ledger"]),
        "smq_writes_per_request": round((delta["data"] + delta["ledger"]) / max(delta["requests"], 1), 3),
        "ledger_writes_per_request": round(delta["ledger"] / max(delta["requests"], 1), 3),
        "ack_p50_ms": round(percentile(latencies, 50), 2),
        "ack_p99_ms": round(percentile(latencies, 99), 2),
    }))


if __name__ == "__main__":
    main()
