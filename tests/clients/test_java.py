"""The Java client (org.apache.kafka:kafka-clients 4.x, see java/) against the gateway: idempotent
acks=all producer (the 4.x default), consumer with assign + seekToBeginning (no group)."""

import pytest

import kgw

BASE_TS = 1_730_000_000_000


def java(*args, input_text=None):
    r = kgw.run_client(["java", "-jar", kgw.JAVA_JAR] + list(args), input_text=input_text,
                       timeout=kgw.SUBPROCESS_TIMEOUT)
    assert r.returncode == 0, "java %s failed (rc=%d):\n%s" % (args[0], r.returncode, r.stderr[-4000:])
    return [kgw.parse_java_line(l) for l in r.stdout.splitlines() if l]


def records(n_per_partition):
    out = []
    for p in range(3):
        for i in range(n_per_partition):
            key = b"jk-%d-%d" % (p, i)
            value = b"java value %d/%d " % (p, i) * (i + 1)
            headers = [("h", b"v%d" % i), ("h", b"again"), ("nul", None), ("empty", b"")]
            if i % 5 == 1:
                value = None
            elif i % 5 == 2:
                key, value, headers = None, b"", []
            elif i % 5 == 3:
                headers = [("only", None)]
            out.append({"partition": p, "key": key, "value": value, "headers": headers,
                        "timestamp": BASE_TS + p * 100_000 + i * 7})
    return out


@pytest.mark.parametrize("compression", ["none", "snappy", "lz4", "zstd", "gzip"])
def test_java_round_trip(bootstrap, compression):
    topic = kgw.unique_topic("java-" + compression)
    kgw.create_topic(bootstrap, topic, partitions=3)
    recs = records(20)
    stdin = "\n".join(kgw.java_line(r["partition"], r["timestamp"], r["key"], r["value"], r["headers"])
                      for r in recs) + "\n"
    acked = java("produce", bootstrap, topic, "compression.type=" + compression, "linger.ms=20",
                 input_text=stdin)
    assert len(acked) == len(recs)
    for p in range(3):
        assert [a["offset"] for a in acked if a["partition"] == p] == list(range(20)), "partition %d" % p
    for a, r in zip(acked, recs):
        assert a["partition"] == r["partition"] and a["timestamp"] == r["timestamp"]

    got = java("consume", bootstrap, topic, "0,1,2", str(len(recs)), "60000")
    assert len(got) == len(recs)
    by_part = {p: [g for g in got if g["partition"] == p] for p in range(3)}
    for p in range(3):
        exp = [r for r in recs if r["partition"] == p]
        assert [g["offset"] for g in by_part[p]] == list(range(20))
        for g, r in zip(by_part[p], exp):
            where = "p%d@%d" % (p, g["offset"])
            assert g["timestamp_type"] == "CREATE_TIME", where
            assert g["timestamp"] == r["timestamp"], where
            assert g["key"] == r["key"], where
            assert g["value"] == r["value"], where
            assert g["headers"] == r["headers"], where


def test_java_reads_what_librdkafka_wrote(bootstrap):
    topic = kgw.unique_topic("java-x")
    kgw.create_topic(bootstrap, topic, partitions=1)
    recs = [{"partition": 0, "key": b"x%d" % i, "value": None if i == 2 else b"y%d" % i,
             "timestamp": BASE_TS + i, "headers": [("a", b"1"), ("a", None)]} for i in range(5)]
    kgw.produce_all(kgw.producer(bootstrap, **{"compression.type": "snappy"}), topic, recs)
    got = java("consume", bootstrap, topic, "0", "5", "60000")
    assert [(g["offset"], g["key"], g["value"], g["timestamp"], g["headers"]) for g in got] == [
        (i, r["key"], r["value"], r["timestamp"], r["headers"]) for i, r in enumerate(recs)]
