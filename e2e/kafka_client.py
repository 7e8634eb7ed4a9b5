"""A Kafka client for e2e/run (confluent-kafka, i.e. librdkafka): what a user's application does.

  python kafka_client.py produce BOOTSTRAP TOPIC COUNT   produce COUNT records (acks=all), print
                                                         how many were acknowledged
  python kafka_client.py watermarks BOOTSTRAP TOPIC      print `partitions=N hwm_sum=M`
  python kafka_client.py consume BOOTSTRAP TOPIC COUNT   read from the start until COUNT records
                                                         arrived, print how many distinct keys
  python kafka_client.py produce-paced BOOTSTRAP TOPIC COUNT SECONDS
                                                         the same as produce, the records spread
                                                         over SECONDS (to disrupt a broker meanwhile)
  python kafka_client.py brokers BOOTSTRAP               print `brokers=N` and each broker's
                                                         `id host:port`, from Metadata
"""

import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

TIMEOUT = 120.0


def produce(bootstrap, topic, count, seconds=0.0):
    acked = 0
    errors = []

    def done(err, _msg):
        nonlocal acked
        if err is None:
            acked += 1
        else:
            errors.append(str(err))

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
                  "enable.idempotence": True, "message.timeout.ms": int(TIMEOUT * 1000)})
    start = time.monotonic()
    for i in range(count):
        if seconds > 0:
            # Pace: record i goes out no earlier than i/count of the way through.
            while time.monotonic() - start < seconds * i / count:
                p.poll(0.01)
        while True:
            try:
                p.produce(topic, key=b"key-%d" % i, value=b"value-%d" % i, on_delivery=done)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(TIMEOUT)
    if errors:
        print("delivery errors (first 3):", errors[:3], file=sys.stderr)
    print(f"acked={acked} unflushed={left}")
    return 0 if acked == count else 1


def brokers(bootstrap):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-brokers"})
    md = c.list_topics(timeout=30)
    c.close()
    print(f"brokers={len(md.brokers)}")
    for b in sorted(md.brokers.values(), key=lambda b: b.id):
        print(f"{b.id} {b.host}:{b.port}")
    return 0


def partitions(c, topic):
    md = c.list_topics(topic, timeout=30)
    t = md.topics[topic]
    if t.error is not None:
        raise SystemExit(f"metadata for {topic}: {t.error}")
    return sorted(t.partitions)


def watermarks(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-watermarks",
                  "enable.auto.commit": False})
    ps = partitions(c, topic)
    total = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in ps)
    c.close()
    print(f"partitions={len(ps)} hwm_sum={total}")
    return 0


def consume(bootstrap, topic, count):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-consume-%d" % time.time_ns(),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    keys = set()
    n = 0
    deadline = time.monotonic() + TIMEOUT
    while n < count and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            print("consume error:", m.error(), file=sys.stderr)
            continue
        n += 1
        keys.add(m.key())
    c.close()
    print(f"records={n} distinct_keys={len(keys)}")
    return 0 if n == count and len(keys) == count else 1


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "produce":
        sys.exit(produce(args[0], args[1], int(args[2])))
    if cmd == "produce-paced":
        sys.exit(produce(args[0], args[1], int(args[2]), float(args[3])))
    if cmd == "brokers":
        sys.exit(brokers(args[0]))
    if cmd == "watermarks":
        sys.exit(watermarks(args[0], args[1]))
    if cmd == "consume":
        sys.exit(consume(args[0], args[1], int(args[2])))
    raise SystemExit(__doc__)
