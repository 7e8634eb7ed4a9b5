"""KIP-848 consumer groups (`group.protocol=consumer`): ConsumerGroupHeartbeat with server-side
assignment (uniform and range), ConsumerGroupDescribe, OffsetCommit/OffsetFetch v9 with member
epochs, and the rules for mixing the classic and the consumer protocol in one group id.

Clients: the Java client 4.x (consumer and AdminClient), confluent-kafka (librdkafka >= 2.10 has
the consumer protocol), and raw requests for the protocol-mixing errors.
"""

import socket
import struct
import time
import uuid

import pytest
from confluent_kafka import Consumer

import kgw
from test_groups import (JOIN_TIMEOUT, CkMember, JavaMember, assert_exactly_once, committed_offsets,
                         java_admin, partition_split, poll_members, produce_spread, unique_group,
                         wait_for)

CONSUMER = {"group.protocol": "consumer"}


def consumed_all(members, expected):
    return lambda: len({(p, o) for m in members for p, o, _ in m.records()}) >= len(expected)


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_java_consumer_protocol_members_join_leave_restart(bootstrap, assignor):
    """Two members split a 4-partition topic and consume every record exactly once; a third takes
    partitions over (revoked from their owners before it gets them); after all members closed,
    a new member resumes from the committed offsets."""
    topic, group = kgw.unique_topic("kip848"), unique_group("g-kip848")
    kgw.create_topic(bootstrap, topic, partitions=4)
    props = dict(CONSUMER, **{"group.remote.assignor": assignor})
    members = []
    try:
        a = JavaMember(bootstrap, topic, group, "a", **props)
        members.append(a)
        wait_for(lambda: a.parts() == [0, 1, 2, 3], JOIN_TIMEOUT, "first member owns all 4", members)
        b = JavaMember(bootstrap, topic, group, "b", **props)
        members.append(b)
        wait_for(lambda: partition_split([a.parts(), b.parts()], 4), JOIN_TIMEOUT,
                 "two members own all 4 partitions without overlap", members)
        assert sorted(len(m.parts()) for m in (a, b)) == [2, 2], (a.parts(), b.parts())
        if assignor == "range":
            # Contiguous ranges in member id order.
            assert sorted([a.parts(), b.parts()]) == [[0, 1], [2, 3]], (a.parts(), b.parts())

        first = produce_spread(bootstrap, topic, 4, 50)
        wait_for(consumed_all([a, b], first), kgw.OP_TIMEOUT, "two members consume batch 1", members)
        assert_exactly_once(a.records() + b.records(), first, "two members")
        for m in (a, b):
            assert {p for p, _, _ in m.records()} <= set(m.parts()), (m.name, m.parts())

        c = JavaMember(bootstrap, topic, group, "c", **props)
        members.append(c)
        wait_for(lambda: partition_split([a.parts(), b.parts(), c.parts()], 4), JOIN_TIMEOUT,
                 "three members own all 4 partitions, each some", members)
        assert sorted(len(m.parts()) for m in (a, b, c)) == [1, 1, 2]

        d = java_admin(bootstrap, "describe-group", group)
        desc = [x for x in d if x[0] == "DESCRIBE"]
        assert desc and desc[0][3] == assignor, d
        assert len([x for x in d if x[0] == "MEMBER"]) == 3, d
        listed = {g[1]: g[2] for g in java_admin(bootstrap, "list-groups") if g[0] == "GROUP"}
        assert group in listed, listed

        second = produce_spread(bootstrap, topic, 4, 50, start=50)
        expected = {**first, **second}
        wait_for(consumed_all([a, b, c], expected), kgw.OP_TIMEOUT, "three members consume batch 2",
                 members)
        time.sleep(2)
        for m in (a, b, c):
            m.close()
            assert not m.problems(), (m.name, m.problems())
        assert_exactly_once(a.records() + b.records() + c.records(), expected, "three members")
        assert committed_offsets(bootstrap, group, topic, range(4)) == {p: 100 for p in range(4)}

        # A restarted consumer resumes after what was committed.
        third = produce_spread(bootstrap, topic, 4, 10, start=100)
        r = JavaMember(bootstrap, topic, group, "restarted", **props)
        members.append(r)
        wait_for(consumed_all([r], third), kgw.OP_TIMEOUT, "restarted member consumes batch 3", [r])
        time.sleep(2)
        r.close()
        assert_exactly_once(r.records(), third, "restarted member")
        assert committed_offsets(bootstrap, group, topic, range(4)) == {p: 110 for p in range(4)}
    finally:
        for m in members:
            m.cleanup()


def test_java_consumer_protocol_static_member_restart(bootstrap):
    """A static member (group.instance.id) leaves with epoch -2 on close; restarted under a new
    member id it takes its partitions back, and the other member sees no change."""
    topic, group = kgw.unique_topic("kip848-static"), unique_group("g-kip848-static")
    kgw.create_topic(bootstrap, topic, partitions=4)
    members = []
    try:
        a = JavaMember(bootstrap, topic, group, "a", **CONSUMER, **{"group.instance.id": "kip848-a"})
        b = JavaMember(bootstrap, topic, group, "b", **CONSUMER, **{"group.instance.id": "kip848-b"})
        members += [a, b]
        wait_for(lambda: partition_split([a.parts(), b.parts()], 4), JOIN_TIMEOUT,
                 "two static members own all 4 partitions", members)
        time.sleep(2)
        a_parts, b_parts = a.parts(), b.parts()
        a_events = len(a.events({"ASSIGNED", "REVOKED", "LOST", "ASSIGNMENT"}))
        b.close()
        b2 = JavaMember(bootstrap, topic, group, "b2", **CONSUMER, **{"group.instance.id": "kip848-b"})
        members.append(b2)
        wait_for(lambda: b2.parts(), JOIN_TIMEOUT, "restarted static member gets an assignment", [a, b2])
        assert b2.parts() == b_parts, (b2.parts(), b_parts)
        time.sleep(2)
        assert a.parts() == a_parts
        new_a = a.events({"ASSIGNED", "REVOKED", "LOST", "ASSIGNMENT"})[a_events:]
        assert not new_a, "the other member's assignment changed: %s" % new_a
        expected = produce_spread(bootstrap, topic, 4, 20)
        wait_for(consumed_all([a, b2], expected), kgw.OP_TIMEOUT, "static members consume", [a, b2])
        time.sleep(1)
        a.close()
        b2.close()
        assert_exactly_once(a.records() + b2.records(), expected, "static members")
    finally:
        for m in members:
            m.cleanup()


def test_confluent_consumer_protocol_two_members(bootstrap):
    """librdkafka's KIP-848 consumer: two members split the partitions and consume exactly once."""
    topic, group = kgw.unique_topic("kip848-ck"), unique_group("g-kip848-ck")
    kgw.create_topic(bootstrap, topic, partitions=4)
    conf = {"group.protocol": "consumer", "session.timeout.ms": None, "heartbeat.interval.ms": None}
    a = CkMember("a", bootstrap, group, topic, **conf)
    b = CkMember("b", bootstrap, group, topic, **conf)
    members = [a, b]
    try:
        poll_members(members, lambda: partition_split([a.parts(), b.parts()], 4), JOIN_TIMEOUT,
                     "two librdkafka members own all 4 partitions")
        expected = produce_spread(bootstrap, topic, 4, 30)
        poll_members(members, lambda: len(a.records) + len(b.records) >= len(expected), kgw.OP_TIMEOUT,
                     "two librdkafka members consume %d records" % len(expected))
        assert_exactly_once(a.records + b.records, expected, "librdkafka consumer protocol")
        assert not a.errors and not b.errors, (a.errors, b.errors)
    finally:
        for m in members:
            m.close()


# ---------------------------------------------------------------------------------------------
# raw requests: one protocol per group id

def _compact_str(s):
    if s is None:
        return b"\x00"
    b = s.encode()
    return bytes([len(b) + 1]) + b


def _request(sock, api_key, version, body, flexible):
    client = b"kgw-raw"
    header = struct.pack(">hhih", api_key, version, 7, len(client)) + client
    if flexible:
        header += b"\x00"
    frame = header + body
    sock.sendall(struct.pack(">i", len(frame)) + frame)
    resp = kgw.recv_frame(sock)
    return resp[5:] if flexible else resp[4:]


def heartbeat_join(sock, group, topic):
    """ConsumerGroupHeartbeat v0, member epoch 0: (error_code, member_id, member_epoch)."""
    body = _compact_str(group) + _compact_str("") + struct.pack(">i", 0)
    body += _compact_str(None) + _compact_str(None) + struct.pack(">i", 30000)
    body += bytes([2]) + _compact_str(topic)           # subscribed topic names
    body += _compact_str(None) + bytes([1]) + b"\x00"  # server assignor; topic partitions []; tags
    r = _request(sock, 68, 0, body, flexible=True)
    _, err = struct.unpack_from(">ih", r, 0)
    pos = 6
    n = r[pos]  # error message (compact nullable string)
    pos += 1 + max(n - 1, 0)
    n = r[pos]
    member = r[pos + 1:pos + n].decode() if n else None
    pos += 1 + max(n - 1, 0)
    (epoch,) = struct.unpack_from(">i", r, pos)
    return err, member, epoch


def join_group_v0(sock, group):
    """A classic JoinGroup v0 (consumer protocol type, "range"): the error code."""
    def s(x):
        b = x.encode()
        return struct.pack(">h", len(b)) + b
    body = s(group) + struct.pack(">i", 10000) + s("") + s("consumer") + struct.pack(">i", 1)
    body += s("range") + struct.pack(">i", 0)
    r = _request(sock, 11, 0, body, flexible=False)
    (err,) = struct.unpack_from(">h", r, 0)
    return err


INCONSISTENT_GROUP_PROTOCOL = 23
GROUP_ID_NOT_FOUND = 69


def test_protocols_do_not_mix_in_one_group(gateway, bootstrap):
    topic = kgw.unique_topic("kip848-mix")
    kgw.create_topic(bootstrap, topic, partitions=2)
    consumer_group, classic_group = unique_group("g-cons"), unique_group("g-classic")
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        err, member, epoch = heartbeat_join(sock, consumer_group, topic)
        assert (err, epoch) == (0, 1) and member, (err, member, epoch)
        # A classic JoinGroup to a consumer group with a member.
        assert join_group_v0(sock, consumer_group) == INCONSISTENT_GROUP_PROTOCOL

    m = CkMember("classic", bootstrap, classic_group, topic)
    try:
        poll_members([m], lambda: m.parts() == [0, 1], JOIN_TIMEOUT, "classic member owns both")
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
            err, _, _ = heartbeat_join(sock, classic_group, topic)
            assert err == GROUP_ID_NOT_FOUND, err
    finally:
        m.close()
    # Once the classic group is empty, a consumer-protocol member may take the group id over.
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        err, _, epoch = heartbeat_join(sock, classic_group, topic)
        assert err == 0 and epoch > 0, (err, epoch)


def test_consumer_group_listed_with_type(bootstrap):
    """ListGroups v5 reports the group type; the confluent AdminClient shows it."""
    topic, group = kgw.unique_topic("kip848-list"), unique_group("g-kip848-list")
    kgw.create_topic(bootstrap, topic, partitions=1)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
                  "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + JOIN_TIMEOUT
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(0.1)
        assert c.assignment(), "no assignment"
        adm = kgw.admin(bootstrap)
        listed = adm.list_consumer_groups().result(timeout=30)
        mine = [g for g in listed.valid if g.group_id == group]
        assert mine, ([g.group_id for g in listed.valid], listed.errors)
        gtype = getattr(mine[0], "type", None)
        if gtype is not None:
            assert "CONSUMER" in str(gtype).upper(), gtype
    finally:
        c.close()


def test_consumer_protocol_members_rejoin_after_gateway_restart(gateway):
    """Membership is in memory: after a gateway restart, librdkafka's KIP-848 members get
    UNKNOWN_MEMBER_ID, rejoin by themselves and read every new record, each partition from its
    committed offset (at least once: for a heartbeat interval after the restart, two members may
    own a partition, see docs/storage.md)."""
    bootstrap = gateway.bootstrap
    topic, group = kgw.unique_topic("kip848-restart"), unique_group("g-kip848-restart")
    kgw.create_topic(bootstrap, topic, partitions=4)
    first = produce_spread(bootstrap, topic, 4, 40)
    conf = {"group.protocol": "consumer", "session.timeout.ms": None, "heartbeat.interval.ms": None}
    members = [CkMember(n, bootstrap, group, topic, **conf) for n in ("a", "b")]
    try:
        poll_members(members, lambda: partition_split([m.parts() for m in members], 4), JOIN_TIMEOUT,
                     "two members own the 4 partitions")
        poll_members(members, lambda: sum(len(m.records) for m in members) >= len(first), kgw.OP_TIMEOUT,
                     "the members consume the first %d records" % len(first))
        before = committed_offsets(bootstrap, group, topic, range(4))
        assert before == {p: 40 for p in range(4)}, before

        assert gateway.terminate(timeout=30) == 0
        gateway.start()
        second = produce_spread(bootstrap, topic, 4, 20, start=40, tag=b"after-")
        new = lambda: [(p, o, v) for m in members for p, o, v in m.records if o >= 40]  # noqa: E731
        poll_members(members, lambda: {(p, o) for p, o, _ in new()} >= set(second),
                     kgw.OP_TIMEOUT + 60, "the members rejoin and consume the %d new records" % len(second))
        poll_members(members, lambda: partition_split([m.parts() for m in members], 4), JOIN_TIMEOUT,
                     "two members own the 4 partitions again")
        for p, o, v in new():
            assert v == second[(p, o)], (p, o, v)
        for p in range(4):
            firsts = sorted(o for q, o, _ in new() if q == p)
            assert firsts[0] == before[p], "partition %d resumed at %s, committed %d" % (p, firsts[:3], before[p])
    finally:
        for m in members:
            m.close()
