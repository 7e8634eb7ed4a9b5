"""Raw Kafka protocol over sockets (no client library): malformed input closes only the offending
connection, with a log line about it, while other connections keep being served."""

import os
import socket
import struct
import time

import pytest

import kgw

CLOSE_TIMEOUT = 15


def connect(gateway):
    s = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    s.settimeout(30)
    return s


def api_versions_ok(s, corr):
    s.sendall(kgw.api_versions_v0_request(corr))
    got_corr, err, apis = kgw.parse_api_versions_v0(kgw.recv_frame(s))
    assert got_corr == corr
    assert err == 0
    return apis


def wait_closed_by_server(s, timeout=CLOSE_TIMEOUT):
    """True when the server closes (EOF or reset) within timeout; data it sends first is ignored."""
    s.settimeout(0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
        if chunk == b"":
            return True
    return False


def test_api_versions_v0(gateway):
    with connect(gateway) as s:
        apis = api_versions_ok(s, 7)
    # What every client in this suite needs must be advertised.
    for key, name in [(0, "Produce"), (1, "Fetch"), (2, "ListOffsets"), (3, "Metadata"),
                      (18, "ApiVersions"), (19, "CreateTopics"), (22, "InitProducerId")]:
        assert key in apis, "%s (%d) not advertised: %s" % (name, key, sorted(apis))
        lo, hi = apis[key]
        assert 0 <= lo <= hi, (name, lo, hi)
    assert apis[18][0] == 0, "ApiVersions v0 must be supported"
    assert apis[0][0] == 0, "Produce is advertised from v0 (issue 3)"


def test_pipelined_requests_answered_in_order(gateway):
    with connect(gateway) as s:
        s.sendall(b"".join(kgw.api_versions_v0_request(c) for c in (101, 102, 103, 104)))
        corrs = [kgw.parse_api_versions_v0(kgw.recv_frame(s))[0] for _ in range(4)]
    assert corrs == [101, 102, 103, 104]


BAD_INPUTS = {
    # A frame of the right size whose header is garbage (api key -1, version -1, no client id).
    "garbage": (struct.pack(">i", 8) + b"\xff" * 8, False),
    # Random bytes: the first four are a random (almost surely huge or negative) size.
    "random_bytes": (b"\xa7\x3f" + os.urandom(62), False),
    # An HTTP request sent to the Kafka port ("GET " as a size is ~1.2 GB).
    "http": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False),
    # Size prefix of 2 GiB - 1 followed by a few bytes: must not wait for (or allocate) 2 GiB.
    "absurd_size": (struct.pack(">i", 0x7FFFFFFF) + b"\x00\x12\x00\x00", False),
    # Negative size.
    "negative_size": (struct.pack(">i", -5) + b"\x00" * 8, False),
    # A complete frame whose request header is cut short (api key, version, half a correlation id).
    "truncated_header": (struct.pack(">i", 6) + struct.pack(">hh", 18, 0) + b"\x00\x00", False),
    # A frame cut off by the client's EOF: size 100, 20 bytes, then the client shuts down writing.
    "truncated_frame_eof": (struct.pack(">i", 100) + kgw.api_versions_v0_request(9)[4:] + b"\x00" * 3, True),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_closes_only_that_connection(gateway, case):
    payload, shut_wr = BAD_INPUTS[case]
    before = connect(gateway)
    try:
        api_versions_ok(before, 1)
        log_mark = gateway.log_size()
        bad = connect(gateway)
        bad_port = bad.getsockname()[1]
        try:
            bad.sendall(payload)
            if shut_wr:
                bad.shutdown(socket.SHUT_WR)
            assert wait_closed_by_server(bad), "server kept the connection open %ds after %s" % (
                CLOSE_TIMEOUT, case)
        finally:
            bad.close()

        # The connection opened before still works, and so does a new one.
        api_versions_ok(before, 2)
        with connect(gateway) as after:
            api_versions_ok(after, 3)
        # The gateway is still healthy.
        assert gateway.alive()

        # The log mentions the bad connection (by its peer address) within a few seconds.
        peer = "127.0.0.1:%d" % bad_port
        deadline = time.monotonic() + 10
        while True:
            new_log = gateway.log_since(log_mark)
            lines = [l for l in new_log.splitlines() if peer in l]
            if lines:
                break
            assert time.monotonic() < deadline, "no gateway log line mentions %s after %s; new log:\n%s" % (
                peer, case, new_log[-3000:])
            time.sleep(0.2)
    finally:
        before.close()


def test_many_bad_connections_then_real_client(gateway):
    """A burst of bad connections does not disturb a real client."""
    for i in range(50):
        with connect(gateway) as s:
            s.sendall(struct.pack(">i", 0x7FFFFFFF) if i % 2 else b"\x00\x00\x00\x04\xff\xff\xff\xff")
            assert wait_closed_by_server(s)
    topic = kgw.unique_topic("raw-after")
    kgw.create_topic(gateway.bootstrap, topic, partitions=1)
    d = kgw.produce_all(kgw.producer(gateway.bootstrap), topic, [{"value": b"ok", "partition": 0}])
    assert d[0].offset() == 0
