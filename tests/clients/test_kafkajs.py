"""KafkaJS 2.2.4 against the gateway: producer and admin APIs (KafkaJS has no group-less consumer, and
consumer groups come in a later issue), records read back with confluent-kafka. KafkaJS cannot send
null header values (it fails in sizeOfHeaders), so headers here are non-null."""

import base64
import json

from confluent_kafka import TIMESTAMP_CREATE_TIME

import kgw

BASE_TS = 1_720_000_000_000


def js(bootstrap, command, request):
    r = kgw.run_client(["node", kgw.JS_CLIENT, bootstrap, command], input_text=json.dumps(request),
                       timeout=kgw.SUBPROCESS_TIMEOUT)
    assert r.returncode == 0, "kafkajs %s failed (rc=%d):\n%s" % (command, r.returncode, r.stderr[-4000:])
    return json.loads(r.stdout)


def b64(v):
    return None if v is None else base64.b64encode(v).decode()


def test_kafkajs_produce_and_admin(bootstrap):
    topic = kgw.unique_topic("kjs")
    assert js(bootstrap, "create-topic", {"topic": topic, "partitions": 3}) == {"created": True}
    assert topic in js(bootstrap, "list-topics", {})
    assert sorted(js(bootstrap, "offsets", {"topic": topic}), key=lambda o: o["partition"]) == [
        {"partition": p, "offset": "0", "high": "0", "low": "0"} for p in range(3)]

    expected = {p: [] for p in range(3)}
    for rnd, compression in enumerate(["none", "gzip"]):
        msgs = []
        for p in range(3):
            for i in range(5):
                n = rnd * 5 + i
                m = {"partition": p, "key": b"k-%d-%d" % (p, n), "value": b"v-%d-%d " % (p, n) * (n + 1),
                     "timestamp": BASE_TS + p * 1000 + n * 10,
                     "headers": {"h": b"x%d" % n, "multi": [b"a", b"b"], "empty": b""}}
                if i == 3:
                    m["value"] = None
                if i == 4:
                    m["key"], m["value"], m["headers"] = None, b"", {}
                msgs.append(m)
                expected[p].append(m)
        res = js(bootstrap, "produce", {
            "topic": topic, "compression": compression, "acks": -1,
            "messages": [dict(m, key=b64(m["key"]), value=b64(m["value"]),
                              headers={k: ([b64(x) for x in v] if isinstance(v, list) else b64(v))
                                       for k, v in m["headers"].items()}) for m in msgs]})
        # One batch per partition per send; its base offset continues from the previous send.
        assert sorted((r["partition"], r["errorCode"], r["baseOffset"]) for r in res) == [
            (p, 0, str(rnd * 5)) for p in range(3)], res

    offs = sorted(js(bootstrap, "offsets", {"topic": topic}), key=lambda o: o["partition"])
    assert offs == [{"partition": p, "offset": "10", "high": "10", "low": "0"} for p in range(3)]
    # By timestamp: partition p has timestamps BASE_TS + p*1000 + 10*n, n = 0..9.
    by_ts = sorted(js(bootstrap, "offsets-by-ts", {"topic": topic, "timestamp": BASE_TS + 1000 + 35}),
                   key=lambda o: o["partition"])
    # p0: all timestamps < target -> no offset (KafkaJS reports the high watermark then),
    # p1: first ts >= BASE+1035 is n=4, p2: all >= target -> 0.
    assert by_ts == [{"partition": 0, "offset": "10"}, {"partition": 1, "offset": "4"},
                     {"partition": 2, "offset": "0"}], by_ts

    got = kgw.consume_partitions(bootstrap, topic, {p: 10 for p in range(3)})
    for p in range(3):
        assert len(got[p]) == 10
        for i, (m, e) in enumerate(zip(got[p], expected[p])):
            assert m.offset() == i
            assert m.key() == e["key"], (p, i)
            assert m.value() == e["value"], (p, i)
            assert m.timestamp() == (TIMESTAMP_CREATE_TIME, e["timestamp"]), (p, i)
            want_headers = []
            for k, v in e["headers"].items():
                want_headers += [(k, x) for x in v] if isinstance(v, list) else [(k, v)]
            assert (m.headers() or []) == want_headers, (p, i)
