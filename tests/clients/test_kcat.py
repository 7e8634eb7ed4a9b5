"""kcat (Debian's build, its own librdkafka) against the gateway."""

import json
import shutil

import kgw

KCAT = shutil.which("kcat") or "kcat"


def test_list_metadata(bootstrap):
    topic = kgw.unique_topic("kcat-md")
    kgw.create_topic(bootstrap, topic, partitions=3)
    r = kgw.run_client([KCAT, "-b", bootstrap, "-L", "-J", "-m", "30"], timeout=60)
    assert r.returncode == 0, r.stderr
    md = json.loads(r.stdout)
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics, sorted(topics)
    assert sorted(p["partition"] for p in topics[topic]["partitions"]) == [0, 1, 2]
    assert "error" not in topics[topic] or not topics[topic]["error"]
    # The gateway is the only broker and leads every partition, at the advertised address.
    assert [(b["name"]) for b in md["brokers"]] == [bootstrap]
    broker_id = md["brokers"][0]["id"]
    assert all(p["leader"] == broker_id for p in topics[topic]["partitions"])
    # Plain-text listing too (what a person types).
    r = kgw.run_client([KCAT, "-b", bootstrap, "-L", "-t", topic, "-m", "30"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert 'topic "%s" with 3 partitions' % topic in r.stdout, r.stdout


def test_produce_snappy_and_consume(bootstrap):
    topic = kgw.unique_topic("kcat-snappy")
    kgw.create_topic(bootstrap, topic, partitions=2)
    lines = ["key%d:value-%d %s" % (i, i, "s" * (i * 10)) for i in range(50)] + [":no-key"]
    r = kgw.run_client([KCAT, "-P", "-b", bootstrap, "-t", topic, "-p", "1", "-z", "snappy", "-K:",
                        "-H", "origin=kcat", "-X", "acks=all", "-X", "linger.ms=20", "-m", "30"],
                       input_text="\n".join(lines) + "\n", timeout=60)
    assert r.returncode == 0, r.stderr
    r = kgw.run_client([KCAT, "-C", "-b", bootstrap, "-t", topic, "-p", "1", "-o", "beginning", "-e",
                        "-J", "-m", "30"], timeout=90)
    assert r.returncode == 0, r.stderr
    got = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert len(got) == len(lines), (len(got), r.stderr[-2000:])
    for i, (m, line) in enumerate(zip(got, lines)):
        k, v = line.split(":", 1)
        assert m["partition"] == 1 and m["offset"] == i
        # kcat may send an empty key from "-K:" as empty or as null; either is kcat's choice.
        assert m["key"] == k or (k == "" and m["key"] is None), m
        assert m["payload"] == v
        assert m["headers"] == ["origin", "kcat"]
        assert m["tstype"] == "create"
    # Partition 0 is empty: kcat reaches its end immediately.
    r = kgw.run_client([KCAT, "-C", "-b", bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-e",
                        "-J", "-m", "30"], timeout=90)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""
