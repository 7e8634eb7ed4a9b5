"""Harness for the real-client test suite: SMQ cluster, kafka-gateway process, client helpers.

Used by conftest.py (fixtures) and the test modules. Everything that waits has a deadline.
"""

import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
JAVA_JAR = os.path.join(HERE, "java", "target", "kafka-gateway-java-client.jar")
JS_CLIENT = os.path.join(HERE, "js", "client.js")

# Per client operation (produce + flush, consume of a test's records, admin call).
OP_TIMEOUT = float(os.environ.get("KGW_OP_TIMEOUT", "60"))
# Gateway start until /readyz answers 200 (includes the ledger rebuild after a restart).
READY_TIMEOUT = float(os.environ.get("KGW_READY_TIMEOUT", "90"))
# Subprocess clients (Java, KafkaJS, kcat): whole invocation.
SUBPROCESS_TIMEOUT = float(os.environ.get("KGW_SUBPROCESS_TIMEOUT", "120"))


def log(*a):
    print("[kgw]", *a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_topic(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def tail(path, lines=80):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", errors="replace")
    except OSError as e:
        return "<cannot read %s: %s>" % (path, e)
    return "\n".join(data.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# SMQ (dev/smq)

class Smq:
    """A dev/smq cluster, either started here (owned) or given by SMQ_MASTER in the environment."""

    def __init__(self, directory=None):
        self.dir = directory
        self.owned = False
        self.env = {}

    @classmethod
    def from_env(cls):
        if not os.environ.get("SMQ_MASTER"):
            return None
        s = cls(os.environ.get("SMQ_DIR"))
        s.env = {k: os.environ[k] for k in ("SMQ_MASTER", "SMQ_BROKER", "SMQ_FILER", "SMQ_DIR")
                 if k in os.environ}
        return s

    @property
    def master(self):
        return self.env["SMQ_MASTER"]

    def up(self, timeout=240):
        os.makedirs(self.dir, exist_ok=True)
        self.owned = True
        r = subprocess.run([os.path.join(REPO, "dev", "smq"), "up", self.dir], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("dev/smq up %s failed (rc=%d):\n%s" % (
                self.dir, r.returncode, r.stderr.decode(errors="replace")[-4000:]))
        for line in r.stdout.decode().splitlines():
            if "=" in line:
                k, v = line.strip().split("=", 1)
                self.env[k] = v
        if "SMQ_MASTER" not in self.env:
            raise RuntimeError("dev/smq up printed no SMQ_MASTER: %r" % r.stdout)
        return self

    def down(self, timeout=120):
        if not self.owned:
            return
        subprocess.run([os.path.join(REPO, "dev", "smq"), "down", self.dir], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# the gateway process

def gateway_binary():
    b = os.environ.get("KAFKA_GATEWAY_BIN")
    if b:
        return b
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    if not os.path.isabs(target):
        target = os.path.join(REPO, target)
    return os.path.join(target, "debug", "kafka-gateway")


def wal_args(wal_dir):
    """KGW_WAL=1 runs the gateways with a write-ahead log (--wal-dir); --no-wal otherwise: a gateway
    restarted while its log still holds records publishes them all again, and the suite's many
    restarts then load SMQ enough to open the gateway's circuit to it (see the closing note of
    2026-11-28); the log itself is covered by its unit tests, e2e and the benchmark."""
    return ["--wal-dir", wal_dir] if os.environ.get("KGW_WAL") == "1" else ["--no-wal"]


class GatewayError(AssertionError):
    pass


class Gateway:
    """One kafka-gateway process; restartable on the same ports against the same SMQ."""

    def __init__(self, smq_master, log_path, namespace="kafka", extra_args=(), binary=None):
        self.binary = binary or gateway_binary()
        self.smq_master = smq_master
        self.namespace = namespace
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.http_port = free_port()
        self.log_path = log_path
        # The write-ahead log lives next to the log and outlives restarts of this gateway.
        self.wal_dir = os.path.splitext(log_path)[0] + ".wal"
        self.proc = None
        self.starts = 0
        self.failed_starts = 0
        self.last_start_error = None

    @property
    def bootstrap(self):
        return "127.0.0.1:%d" % self.port

    @property
    def http(self):
        return "http://127.0.0.1:%d" % self.http_port

    def args(self):
        return [self.binary,
                "--listen", self.bootstrap,
                "--advertised-listener", self.bootstrap,
                "--smq-master", self.smq_master,
                "--namespace", self.namespace,
                "--http", "127.0.0.1:%d" % self.http_port] \
            + ([] if "--wal-dir" in self.extra_args else wal_args(self.wal_dir)) \
            + storage_format_args() + self.extra_args

    def mark(self, text):
        """Write a harness marker line into the gateway log (helps reading failures)."""
        with open(self.log_path, "ab") as f:
            f.write(("==== [harness %s] %s\n" % (time.strftime("%H:%M:%S"), text)).encode())

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, offset):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", errors="replace")

    def log_tail(self, lines=80):
        return tail(self.log_path, lines)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=READY_TIMEOUT):
        if not os.path.exists(self.binary):
            raise GatewayError("gateway binary %s does not exist (cargo build -p kafka-gateway, or set "
                               "KAFKA_GATEWAY_BIN)" % self.binary)
        assert not self.alive(), "gateway already running"
        self.starts += 1
        self.mark("start #%d: %s" % (self.starts, " ".join(self.args())))
        logf = open(self.log_path, "ab")
        # The command line alone configures the gateway: drop KAFKA_GATEWAY_* settings from the
        # environment (clap reads them) so that a developer's shell cannot change the tests.
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_GATEWAY_")}
        env.setdefault("RUST_LOG", "info")
        env.setdefault("NO_COLOR", "1")
        env.setdefault("RUST_BACKTRACE", "1")
        try:
            self.proc = subprocess.Popen(self.args(), stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        finally:
            logf.close()
        # For tests/clients/run's cleanup trap, in case pytest itself dies.
        with open(self.log_path[:-len(".log")] + ".pid", "w") as f:
            f.write("%d\n" % self.proc.pid)
        try:
            self.wait_ready(timeout)
        except GatewayError:
            if self.alive():
                self.mark("harness: not ready in time, SIGKILL pid %d" % self.proc.pid)
                self.proc.kill()
                self.proc.wait(timeout=30)
            raise
        return self

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GatewayError("gateway exited with %s before it was ready; log tail:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            try:
                with urllib.request.urlopen(self.http + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        # The Kafka port must accept too.
                        with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                            pass
                        return
                    last = "HTTP %d" % r.status
            except urllib.error.HTTPError as e:
                last = "HTTP %d" % e.code
            except OSError as e:
                last = repr(e)
            time.sleep(0.2)
        raise GatewayError("gateway not ready within %.0fs (last /readyz: %s); log tail:\n%s"
                           % (timeout, last, self.log_tail()))

    def kill9(self):
        assert self.alive(), "gateway not running"
        self.mark("SIGKILL pid %d" % self.proc.pid)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout=30):
        """SIGTERM and wait; returns the exit code. SIGKILL (and raise) if it does not exit in time."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.mark("SIGTERM pid %d" % self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
            raise GatewayError("gateway did not exit within %ss of SIGTERM (killed); log tail:\n%s"
                               % (timeout, self.log_tail()))

    def stop(self):
        """Best-effort stop for teardown."""
        if self.alive():
            try:
                self.terminate(timeout=20)
            except GatewayError as e:
                log(str(e).splitlines()[0])

    def ensure_running(self):
        if not self.alive():
            if self.failed_starts >= 2:
                # Do not spend READY_TIMEOUT on every remaining test.
                raise GatewayError("gateway failed to start %d times already; last error:\n%s"
                                   % (self.failed_starts, self.last_start_error))
            if self.proc is not None:
                self.mark("harness: gateway found dead (rc=%s); starting again" % self.proc.returncode)
            try:
                self.start()
            except GatewayError as e:
                self.failed_starts += 1
                self.last_start_error = str(e)
                raise
            self.failed_starts = 0
        else:
            self.wait_ready()

    def get_json(self, path):
        with urllib.request.urlopen(self.http + path, timeout=10) as r:
            return json.loads(r.read())


# ---------------------------------------------------------------------------------------------
# confluent-kafka helpers

def storage_format():
    """The storage format this run of the suite tests (KGW_STORAGE_FORMAT, default record): every
    scenario runs against each format, as the gateway's default for new topics."""
    return os.environ.get("KGW_STORAGE_FORMAT", "record")


def storage_format_args():
    return ["--default-storage-format", storage_format()]


def ck():
    import confluent_kafka
    return confluent_kafka


def commit_sync(consumer, offsets, timeout=60):
    """A synchronous commit retried on the coordinator's retriable errors until `timeout`, as the
    Java client's commitSync does (librdkafka gives up after a few tries): the gateway stores
    committed offsets in SMQ, whose partitions can be without a leader for tens of seconds after
    a broker restart, and answers COORDINATOR_NOT_AVAILABLE meanwhile."""
    from confluent_kafka import KafkaError, KafkaException
    retriable = {KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
                 KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.REQUEST_TIMED_OUT,
                 KafkaError._TIMED_OUT, KafkaError._TRANSPORT}
    started = time.monotonic()
    while True:
        try:
            res = consumer.commit(offsets=offsets, asynchronous=False)
            if time.monotonic() - started > 5:
                log("commit succeeded after %.1f s of retriable errors" % (time.monotonic() - started))
            return res
        except KafkaException as e:
            err = e.args[0]
            if err.code() not in retriable or time.monotonic() - started > timeout:
                raise
            log("commit: %s; retrying" % err.str())
            time.sleep(1)


def admin(bootstrap, **conf):
    c = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 30000}
    c.update(conf)
    from confluent_kafka.admin import AdminClient
    return AdminClient(c)


def create_topic(bootstrap, name, partitions=1, config=None):
    from confluent_kafka.admin import NewTopic
    a = admin(bootstrap)
    # Retriable errors (the gateway's circuit to SMQ open for a moment) are retried, as a
    # producer would; a retry may find the topic its first attempt created.
    deadline = time.monotonic() + OP_TIMEOUT
    attempt = 0
    while True:
        fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                       config=config or {})], operation_timeout=30, request_timeout=OP_TIMEOUT)
        try:
            fs[name].result(timeout=OP_TIMEOUT)
            break
        except ck().KafkaException as e:
            err = e.args[0]
            if attempt > 0 and err.code() == ck().KafkaError.TOPIC_ALREADY_EXISTS:
                break
            if not err.retriable() or time.monotonic() > deadline:
                raise
            attempt += 1
            time.sleep(1.0)
    # The topic must then be visible in metadata with all its partitions.
    deadline = time.monotonic() + OP_TIMEOUT
    while True:
        md = a.list_topics(topic=name, timeout=OP_TIMEOUT)
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return
        if time.monotonic() > deadline:
            raise AssertionError("topic %s not in metadata with %d partitions after CreateTopics: %r"
                                 % (name, partitions, t and (t.error, sorted(t.partitions))))
        time.sleep(0.2)


def topic_config(bootstrap, topic, key):
    """One config value of a topic, as DescribeConfigs reports it."""
    from confluent_kafka.admin import ConfigResource, ResourceType
    res = ConfigResource(ResourceType.TOPIC, topic)
    a = admin(bootstrap)  # kept alive until the result arrives
    configs = a.describe_configs([res], request_timeout=OP_TIMEOUT)[res].result(timeout=OP_TIMEOUT)
    return configs[key].value


def producer(bootstrap, **conf):
    c = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
         "message.timeout.ms": int(OP_TIMEOUT * 1000), "socket.timeout.ms": 30000}
    c.update(conf)
    return ck().Producer(c)


def produce_all(p, topic, records, flush_each=False):
    """records: dicts with value/key/partition/timestamp/headers. Returns delivered messages
    (metadata) in input order; raises on any delivery error or if not all delivered in time."""
    results = [None] * len(records)
    errors = []

    def cb(i):
        def _cb(err, msg):
            if err is not None:
                errors.append((i, err))
            results[i] = msg
        return _cb

    for i, r in enumerate(records):
        kw = {k: r[k] for k in ("key", "partition", "timestamp", "headers") if k in r}
        while True:
            try:
                p.produce(topic, value=r.get("value"), on_delivery=cb(i), **kw)
                break
            except BufferError:
                p.poll(0.1)
        if flush_each:
            left = p.flush(OP_TIMEOUT)
            assert left == 0, "%d messages not delivered within %ss" % (left, OP_TIMEOUT)
    left = p.flush(OP_TIMEOUT)
    assert left == 0, "%d of %d messages not delivered within %ss" % (left, len(records), OP_TIMEOUT)
    assert not errors, "delivery errors: %s" % [(i, str(e)) for i, e in errors[:10]]
    assert all(m is not None for m in results)
    return results


def consumer(bootstrap, **conf):
    # confluent-kafka-python insists on a group.id; the tests only assign() and never commit.
    c = {"bootstrap.servers": bootstrap, "group.id": "kgw-test-" + uuid.uuid4().hex[:8],
         "enable.auto.commit": False, "enable.auto.offset.store": False,
         "auto.offset.reset": "error", "enable.partition.eof": True,
         "socket.timeout.ms": 30000, "fetch.wait.max.ms": 200}
    c.update(conf)
    return ck().Consumer(c)


def consume_partitions(bootstrap, topic, expected, timeout=OP_TIMEOUT, **conf):
    """Assign topic partitions from the beginning and read until each partition p has reached
    end-of-partition with at least expected[p] records. Returns {partition: [Message...]}.
    Fails (with the client errors seen) when that does not happen within timeout."""
    confluent_kafka = ck()
    c = consumer(bootstrap, **conf)
    got = {p: [] for p in expected}
    eof = set()
    errs = []
    try:
        c.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                  for p in expected])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p in eof and len(got[p]) >= n for p, n in expected.items()):
                break
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == confluent_kafka.KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                else:
                    errs.append(str(m.error()))
                    if m.error().fatal():
                        raise AssertionError("fatal consumer error: %s" % m.error())
                continue
            got[m.partition()].append(m)
            eof.discard(m.partition())
        else:
            raise AssertionError(
                "consumer did not read %s within %ss: got %s, eof %s, errors %s"
                % (expected, timeout, {p: len(v) for p, v in got.items()}, sorted(eof), errs[:10]))
    finally:
        c.close()
    return got


def watermarks(bootstrap, topic, partition):
    confluent_kafka = ck()
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(confluent_kafka.TopicPartition(topic, partition),
                                       timeout=OP_TIMEOUT, cached=False)
    finally:
        c.close()


def assert_dense(msgs, start=0):
    offs = [m.offset() for m in msgs]
    assert offs == list(range(start, start + len(offs))), "offsets not dense from %d: %s" % (
        start, offs[:50])


# ---------------------------------------------------------------------------------------------
# line format shared with the Java CLI (see java/src/main/java/gatewaytest/JavaClient.java)

def enc_bytes(b):
    return "-" if b is None else "b" + base64.b64encode(b).decode()


def dec_bytes(s):
    if s == "-":
        return None
    assert s.startswith("b"), s
    return base64.b64decode(s[1:])


def java_line(partition, timestamp, key, value, headers):
    hs = ",".join("%s:%s" % (base64.b64encode(k.encode()).decode(), enc_bytes(v)) for k, v in headers)
    return "\t".join([str(partition) if partition is not None else "-", "-",
                      str(timestamp) if timestamp is not None else "-", "-",
                      enc_bytes(key), enc_bytes(value), hs])


def parse_java_line(line):
    f = line.split("\t")
    assert len(f) == 7, line
    headers = []
    if f[6]:
        for h in f[6].split(","):
            k, v = h.split(":", 1)
            headers.append((base64.b64decode(k).decode(), dec_bytes(v)))
    return {"partition": int(f[0]), "offset": int(f[1]), "timestamp": int(f[2]), "timestamp_type": f[3],
            "key": dec_bytes(f[4]), "value": dec_bytes(f[5]), "headers": headers}


def run_client(cmd, input_text=None, timeout=SUBPROCESS_TIMEOUT, cwd=None):
    """Run a client subprocess with a deadline; return CompletedProcess (text)."""
    log("run:", " ".join(cmd))
    try:
        return subprocess.run(cmd, input=input_text, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("client %s did not finish within %ss; stderr tail:\n%s"
                             % (cmd[:3], timeout, (e.stderr or b"")[-3000:] if isinstance(e.stderr, bytes)
                                else (e.stderr or "")[-3000:]))


# ---------------------------------------------------------------------------------------------
# raw Kafka protocol

def api_versions_v0_request(correlation_id, client_id=b"kgw-raw"):
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_frame(sock):
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    assert 0 <= size < 64 * 1024 * 1024, "absurd response size %d" % size
    return recv_exact(sock, size)


def parse_api_versions_v0(frame):
    """Returns (correlation_id, error_code, {api_key: (min, max)})."""
    corr, err, n = struct.unpack_from(">ihi", frame, 0)
    pos = 10
    apis = {}
    assert 0 <= n < 1000, "bad api count %d" % n
    for _ in range(n):
        k, lo, hi = struct.unpack_from(">hhh", frame, pos)
        pos += 6
        apis[k] = (lo, hi)
    assert pos == len(frame), "ApiVersions v0 response has %d trailing bytes" % (len(frame) - pos)
    return corr, err, apis


def list_offsets_v1_request(correlation_id, topic, partition, timestamp, client_id=b"kgw-raw"):
    t = topic.encode()
    body = struct.pack(">hhih", 2, 1, correlation_id, len(client_id)) + client_id
    body += struct.pack(">ii", -1, 1)                   # replica_id, topics count
    body += struct.pack(">h", len(t)) + t + struct.pack(">i", 1)  # topic name, partitions count
    body += struct.pack(">iq", partition, timestamp)
    return struct.pack(">i", len(body)) + body


def parse_list_offsets_v1(frame):
    """Returns (correlation_id, [(topic, partition, error_code, timestamp, offset)])."""
    corr, nt = struct.unpack_from(">ii", frame, 0)
    pos = 8
    out = []
    for _ in range(nt):
        (ln,) = struct.unpack_from(">h", frame, pos)
        pos += 2
        name = frame[pos:pos + ln].decode()
        pos += ln
        (np_,) = struct.unpack_from(">i", frame, pos)
        pos += 4
        for _ in range(np_):
            p, err, ts, off = struct.unpack_from(">ihqq", frame, pos)
            pos += 22
            out.append((name, p, err, ts, off))
    assert pos == len(frame), "ListOffsets v1 response has %d trailing bytes" % (len(frame) - pos)
    return corr, out


class Reader:
    """Reads the fields of a non-flexible Kafka response."""

    def __init__(self, data):
        self.data, self.pos = data, 0

    def _take(self, fmt):
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def i8(self):
        return self._take(">b")

    def i16(self):
        return self._take(">h")

    def i32(self):
        return self._take(">i")

    def i64(self):
        return self._take(">q")

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def array(self, item):
        n = self.i32()
        return [] if n < 0 else [item() for _ in range(n)]


def enc_string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def raw_request(bootstrap, api_key, version, body, client_id=b"kgw-raw", corr=1):
    """Sends one request with a v1 header (non-flexible versions) and returns a Reader of its
    response after the correlation id."""
    host, port = bootstrap.rsplit(":", 1)
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        frame = recv_frame(s)
    assert struct.unpack_from(">i", frame, 0)[0] == corr
    return Reader(frame[4:])


def metadata_leaders(bootstrap, topic):
    """{partition: (leader id, leader epoch, error code)} from a Metadata v7 request."""
    r = raw_request(bootstrap, 3, 7, struct.pack(">i", 1) + enc_string(topic) + b"\x00")
    r.i32()  # throttle
    r.array(lambda: (r.i32(), r.string(), r.i32(), r.string()))  # brokers
    r.string()  # cluster id
    r.i32()  # controller
    out = {}

    def partition():
        err, index, leader, epoch = r.i16(), r.i32(), r.i32(), r.i32()
        for _ in range(3):  # replicas, ISR, offline replicas
            r.array(r.i32)
        out[index] = (leader, epoch, err)

    def topic_entry():
        err, name, _internal = r.i16(), r.string(), r.i8()
        assert err == 0 and name == topic, "metadata of %s: error %d" % (name, err)
        r.array(partition)

    r.array(topic_entry)
    return out


def fetch_error(bootstrap, topic, partition, leader_epoch, offset=0):
    """The error code a Fetch v10 of one partition with this current_leader_epoch gets, and
    the high water mark it reports."""
    body = struct.pack(">iiiibii", -1, 0, 1, 1 << 20, 0, 0, -1)
    body += struct.pack(">i", 1) + enc_string(topic)
    body += struct.pack(">i", 1) + struct.pack(">iiqqi", partition, leader_epoch, offset, -1, 1 << 20)
    body += struct.pack(">i", 0)  # forgotten topics
    r = raw_request(bootstrap, 1, 10, body)
    r.i32()  # throttle
    top = r.i16()
    assert top == 0, "fetch error %d" % top
    r.i32()  # session
    assert r.i32() == 1 and r.string() == topic
    assert r.i32() == 1
    index, err, hwm = r.i32(), r.i16(), r.i64()
    assert index == partition
    return err, hwm
