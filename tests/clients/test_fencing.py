"""Two gateways on one SMQ namespace never write the same partition: the one holding a
partition's lock serves produces; the other answers NOT_LEADER_OR_FOLLOWER and writes nothing."""

import os
import urllib.request

import kgw


def test_second_gateway_cannot_write_an_owned_partition(smq, gateway, tmp_path):
    topic = kgw.unique_topic("fence")
    kgw.create_topic(gateway.bootstrap, topic, partitions=1)
    first = kgw.producer(gateway.bootstrap)
    kgw.produce_all(first, topic, [{"value": b"a-%d" % i, "partition": 0} for i in range(5)])

    other = kgw.Gateway(smq.master, os.path.join(str(tmp_path), "second-gateway.log"))
    other.start()
    try:
        # librdkafka retries NOT_LEADER_OR_FOLLOWER until the message times out.
        p = kgw.producer(other.bootstrap, retries=0, **{"message.timeout.ms": 8000})
        errors = []
        p.produce(topic, value=b"intruder", partition=0, on_delivery=lambda err, msg: errors.append(err))
        p.flush(30)
        assert len(errors) == 1 and errors[0] is not None, "the second gateway accepted a write: %r" % errors
        KE = kgw.ck().KafkaError
        assert errors[0].code() in (KE.NOT_LEADER_FOR_PARTITION, KE._MSG_TIMED_OUT), errors[0]
        metrics = urllib.request.urlopen(other.http + "/metrics", timeout=10).read().decode()
        refused = [l for l in metrics.splitlines()
                   if l.startswith("kafka_gateway_produce_errors_total") and 'reason="not_leader"' in l]
        assert refused and float(refused[0].split()[-1]) >= 1, \
            "the second gateway did not answer NOT_LEADER_OR_FOLLOWER:\n" + metrics
    finally:
        other.stop()

    # The owner keeps writing, and the partition holds exactly its records, densely numbered.
    kgw.produce_all(first, topic, [{"value": b"a-%d" % i, "partition": 0} for i in range(5, 8)])
    msgs = kgw.consume_partitions(gateway.bootstrap, topic, {0: 8})
    kgw.assert_dense(msgs[0])
    assert [m.value() for m in msgs[0]] == [b"a-%d" % i for i in range(8)]
