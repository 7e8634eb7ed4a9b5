"""The images as a user runs them (images/test starts this with the client venv's python).

Gateway: the image's metadata (non-root numeric user, labels, no shell, size), then the image in a
podman container (runc, host network so it reaches the loopback SMQ, read-only root, no
capabilities, a volume for its write-ahead log) against a real SMQ (dev/smq): confluent-kafka
produces and reads back; SIGTERM during a produce stream must drain as gateway/src/main.rs does (stop
accepting, finish requests, wait for SMQ to write what was acknowledged, exit 0) and a new
container must serve every acknowledged record at dense offsets.

Operator: the image against the testbed's API server (e2e/testbed): it reconciles a KafkaGateway
that sets no image into a StatefulSet with the default gateway image, and exits 0 on SIGTERM.

Each check prints PASS/FAIL; the last line is "N passed, N failed". Exit 1 on any failure.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
PODMAN = ["podman", "--runtime", "/usr/sbin/runc"]
SHUTDOWN_TIMEOUT = 20
FLUSH_INTERVAL = 5  # SMQ's -logFlushInterval (dev/smq's default) = the gateway's --smq-flush-interval
MAX_IMAGE_BYTES = 40 * 1000 * 1000
RESULTS = {"passed": 0, "failed": 0}
CLEANUP = []


def say(msg):
    print(f"[images/test] {msg}", flush=True)


def check(ok, what, detail=""):
    RESULTS["passed" if ok else "failed"] += 1
    print(f"{'PASS' if ok else 'FAIL'} {what}{'' if ok else ': ' + str(detail)}", flush=True)
    return ok


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def must(cmd, **kw):
    r = run(cmd, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def wait_until(what, fn, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def ulimits():
    # This VM's root lacks CAP_SYS_RESOURCE: runc may lower rlimits but not set podman's defaults
    # (nofile 1048576), so the container gets what this process has (at most).
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return ["--ulimit", f"nofile={hard}:{hard}", "--ulimit", "nproc=8192:8192"]


def images_env():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    path = os.path.join(os.environ.get("IMAGES_DIR") or os.path.join(target, "images"), "images.env")
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing: run images/build first")
    return dict(line.strip().split("=", 1) for line in open(path) if "=" in line)


def inspect_image(ref):
    out = run(PODMAN + ["image", "inspect", ref])
    if out.returncode != 0:
        raise RuntimeError(f"image {ref} is not in podman's store (run images/build): {out.stderr.strip()}")
    return json.loads(out.stdout)[0]


def check_image(ref, name, env):
    info = inspect_image(ref)
    cfg = info["Config"]
    check(cfg.get("User") == "65532:65532", f"{name}: numeric non-root user", cfg.get("User"))
    labels = cfg.get("Labels") or {}
    head = must(["git", "-C", ROOT, "rev-parse", "HEAD"]).strip()
    check(labels.get("org.opencontainers.image.version") == env["IMAGE_VERSION"]
          and labels.get("org.opencontainers.image.revision") == head
          and labels.get("org.opencontainers.image.source"),
          f"{name}: OCI labels version, revision (HEAD), source", labels)
    check(cfg.get("Entrypoint") == [f"/usr/local/bin/{name}"], f"{name}: entrypoint", cfg.get("Entrypoint"))
    tags = info.get("RepoTags") or []
    want = {f"{env['IMAGE_REPOSITORY_PREFIX']}/{name}:{env['IMAGE_VERSION']}",
            f"{env['IMAGE_REPOSITORY_PREFIX']}/{name}:{env['IMAGE_REVISION_TAG']}"}
    check(want <= set(tags), f"{name}: tagged with the version and the revision", tags)
    check(info["Size"] <= MAX_IMAGE_BYTES, f"{name}: {info['Size'] / 1e6:.1f} MB <= 40 MB", info["Size"])
    for shell in ("/bin/sh", "/bin/bash", "/usr/bin/apt-get"):
        r = run(PODMAN + ["run", "--rm"] + ulimits() + ["--entrypoint", shell, ref, "-c", "true"])
        check(r.returncode != 0, f"{name}: no {shell} in the image", r.stdout + r.stderr)


def start_smq(work):
    out = must([os.path.join(ROOT, "dev", "smq"), "up", os.path.join(work, "smq")], timeout=300)
    env = dict(line.split("=", 1) for line in out.split() if "=" in line)
    CLEANUP.append(lambda: run([os.path.join(ROOT, "dev", "smq"), "down", os.path.join(work, "smq")], timeout=120))
    return env["SMQ_MASTER"]


def gateway_container(ref, name, smq_master, kafka_port, http_port, wal):
    cmd = PODMAN + ["run", "-d", "--name", name, "--network", "host", "--read-only",
                    "--cap-drop", "ALL", "--security-opt", "no-new-privileges"] + ulimits() + [
        "-v", f"{wal}:/var/lib/kafka-gateway:rw",
        "-e", f"KAFKA_GATEWAY_LISTEN=127.0.0.1:{kafka_port}",
        "-e", f"KAFKA_GATEWAY_HTTP=127.0.0.1:{http_port}",
        "-e", f"KAFKA_GATEWAY_SMQ_MASTER={smq_master}",
        "-e", "KAFKA_GATEWAY_WAL_DIR=/var/lib/kafka-gateway/wal",
        "-e", f"KAFKA_GATEWAY_SHUTDOWN_TIMEOUT_SECS={SHUTDOWN_TIMEOUT}",
        "-e", f"KAFKA_GATEWAY_SMQ_FLUSH_INTERVAL={FLUSH_INTERVAL}",
        ref]
    cid = must(cmd).strip()
    CLEANUP.append(lambda: run(PODMAN + ["rm", "-f", "-t", "2", cid]))
    return cid


def logs(cid):
    r = run(PODMAN + ["logs", cid])
    return r.stdout + r.stderr


def container_uid(cid):
    pid = must(PODMAN + ["inspect", "-f", "{{.State.Pid}}", cid]).strip()
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("Uid:"):
            return line.split()[1]
    return None


def wait_ready(cid, http_port):
    def ready():
        state = must(PODMAN + ["inspect", "-f", "{{.State.Status}}", cid]).strip()
        if state != "running":
            raise RuntimeError(f"gateway container is {state}:\n{logs(cid)[-3000:]}")
        return http_status(f"http://127.0.0.1:{http_port}/readyz") == 200
    wait_until("the gateway's /readyz", ready, 120)


def consume_all(bootstrap, topic, partitions, expect):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"images-test-{time.time()}", "log_level": 0,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = {}
    deadline = time.time() + 90
    while len(got) < expect and time.time() < deadline:
        for m in c.consume(500, 1.0):
            if m.error():
                continue
            got[m.key().decode()] = (m.partition(), m.offset())
    c.close()
    return got


def gateway_tests(env, work):
    ref = env["KAFKA_GATEWAY_IMAGE"]
    smq_master = start_smq(work)
    kafka_port, http_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{kafka_port}"
    wal = os.path.join(work, "wal")
    os.makedirs(wal)
    os.chown(wal, 65532, 65532)  # the image's user owns its volume, as fsGroup would arrange
    name = f"kgw-images-test-{os.getpid()}"
    cid = gateway_container(ref, name, smq_master, kafka_port, http_port, wal)
    wait_ready(cid, http_port)
    check(container_uid(cid) == "65532", "gateway: the process runs as uid 65532", container_uid(cid))
    check("wal" in os.listdir(wal), "gateway: writes its write-ahead log into the volume", os.listdir(wal))

    topic, partitions = "images-drain", 3
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    del admin  # it would keep reconnecting to the stopped gateway

    acked, failed = [], []
    lock = threading.Lock()
    stop = threading.Event()

    def delivered(err, msg):
        with lock:
            (failed if err else acked).append(msg.key().decode() if not err else str(err))

    def produce():
        # librdkafka's own log would print every refused reconnect after the SIGTERM.
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "log_level": 0,
                      "message.timeout.ms": 10000, "retries": 0, "enable.idempotence": False})
        i = 0
        while not stop.is_set():
            try:
                p.produce(topic, key=f"k{i}", value=os.urandom(100), on_delivery=delivered)
                i += 1
            except BufferError:
                p.poll(0.1)
            p.poll(0)
            if i % 200 == 0:
                time.sleep(0.01)
        p.flush(20)

    t = threading.Thread(target=produce)
    t.start()
    wait_until("2000 acknowledged records", lambda: len(acked) >= 2000, 60)
    before = len(acked)
    t0 = time.time()
    must(PODMAN + ["kill", "--signal", "TERM", cid])
    # Produce on for a second into the drain, so requests are in flight when it starts.
    time.sleep(1)
    stop.set()
    code = must(PODMAN + ["wait", cid], timeout=SHUTDOWN_TIMEOUT + FLUSH_INTERVAL + 30).strip()
    took = time.time() - t0
    t.join(60)
    out = logs(cid)
    check(code == "0", "gateway: SIGTERM ends the container with exit code 0", f"{code}\n{out[-3000:]}")
    check(took <= SHUTDOWN_TIMEOUT + FLUSH_INTERVAL + 10,
          f"gateway: stopped {took:.1f} s after SIGTERM (drain {SHUTDOWN_TIMEOUT} s + SMQ flush {FLUSH_INTERVAL} s)", took)
    for line in ("shutdown requested", "stopped accepting; draining connections", "stopped"):
        check(line in out, f"gateway log: '{line}'", out[-3000:])
    check("SMQ has not yet confirmed written" not in out,
          "gateway: every acknowledged record was written by SMQ before exit", out[-3000:])
    with socket.socket() as s:
        refused = s.connect_ex(("127.0.0.1", kafka_port)) != 0
    check(refused, "gateway: the Kafka port refuses connections after the drain")
    total = len(acked)
    check(before >= 2000 and total >= before, f"producer: {total} records acknowledged ({before} before SIGTERM, {len(failed)} failed after)")

    # A new container on the same volume serves every acknowledged record, at dense offsets.
    run(PODMAN + ["rm", cid])
    cid2 = gateway_container(ref, name + "-2", smq_master, kafka_port, http_port, wal)
    wait_ready(cid2, http_port)
    got = consume_all(bootstrap, topic, partitions, total)
    missing = [k for k in acked if k not in got]
    check(not missing, f"restarted gateway: all {total} acknowledged records are there", f"{len(missing)} missing, e.g. {missing[:5]}")
    per_part = {}
    for part, off in got.values():
        per_part.setdefault(part, []).append(off)
    dense = all(sorted(offs) == list(range(len(offs))) for offs in per_part.values())
    check(dense, "restarted gateway: offsets are dense from 0 in every partition",
          {p: (min(o), max(o), len(o)) for p, o in per_part.items()})
    must(PODMAN + ["kill", "--signal", "TERM", cid2])
    code = must(PODMAN + ["wait", cid2], timeout=SHUTDOWN_TIMEOUT + FLUSH_INTERVAL + 30).strip()
    check(code == "0", "restarted gateway: idle SIGTERM exits 0", logs(cid2)[-2000:])


def kubectl(kubeconfig, *args, stdin=None):
    return run(["kubectl", "--kubeconfig", kubeconfig] + list(args), input=stdin)


def operator_tests(env, work):
    ref = env["KAFKA_OPERATOR_IMAGE"]
    tools = must([os.path.join(ROOT, "charts", "tools", "install-helm")], timeout=600).strip().splitlines()[-1]
    os.environ["PATH"] = tools + os.pathsep + os.environ["PATH"]
    tb = os.path.join(work, "testbed")
    must([os.path.join(ROOT, "e2e", "testbed", "up"), tb], timeout=3600)
    CLEANUP.append(lambda: run([os.path.join(ROOT, "e2e", "testbed", "down"), tb], timeout=120))
    kc = os.path.join(tb, "kubeconfig")
    # The container's user reads its own copy.
    kc_copy = os.path.join(work, "operator-kubeconfig")
    with open(kc) as src, open(kc_copy, "w") as dst:
        dst.write(src.read())
    os.chmod(kc_copy, 0o644)
    r = kubectl(kc, "apply", "--server-side", "-f", os.path.join(ROOT, "charts", "kafka-smq-operator", "crds", "crds.yaml"))
    if r.returncode != 0:
        raise RuntimeError(f"applying the CRDs failed: {r.stderr}")
    kubectl(kc, "wait", "--for=condition=Established", "crd/kafkagateways.kafka.seaweedfs.com", "--timeout=60s")
    kubectl(kc, "create", "namespace", "img")
    http_port = free_port()
    cid = must(PODMAN + ["run", "-d", "--name", f"kop-images-test-{os.getpid()}", "--network", "host",
                         "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"] + ulimits() + [
        "-v", f"{kc_copy}:/etc/kafka-operator/kubeconfig:ro",
        "-e", "KUBECONFIG=/etc/kafka-operator/kubeconfig",
        ref, "run", "--no-leader-election", f"--http=127.0.0.1:{http_port}"]).strip()
    CLEANUP.append(lambda: run(PODMAN + ["rm", "-f", "-t", "2", cid]))
    try:
        wait_until("the operator's /readyz", lambda: http_status(f"http://127.0.0.1:{http_port}/readyz") == 200, 90)
    except RuntimeError:
        raise RuntimeError(f"operator not ready:\n{logs(cid)[-3000:]}")
    check(container_uid(cid) == "65532", "operator: the process runs as uid 65532")
    gw = {"apiVersion": "kafka.seaweedfs.com/v1alpha1", "kind": "KafkaGateway",
          "metadata": {"name": "kafka", "namespace": "img"},
          "spec": {"smq": {"master": "127.0.0.1:1"}}}
    r = kubectl(kc, "apply", "-f", "-", stdin=json.dumps(gw))
    check(r.returncode == 0, "a KafkaGateway without spec.image is accepted by the API server", r.stderr)

    def sts_image():
        r = kubectl(kc, "-n", "img", "get", "statefulset", "kafka", "-o",
                    "jsonpath={.spec.template.spec.containers[0].image}")
        return r.stdout if r.returncode == 0 and r.stdout else None
    try:
        image = wait_until("the operator's StatefulSet", sts_image, 60)
    except RuntimeError as e:
        image = str(e) + "\n" + logs(cid)[-3000:]
    check(image == env["KAFKA_GATEWAY_IMAGE"], f"operator image: reconciles the KafkaGateway into a StatefulSet with the default gateway image {env['KAFKA_GATEWAY_IMAGE']}", image)
    r = kubectl(kc, "-n", "img", "get", "kafkagateway", "kafka", "-o", "jsonpath={.status.observedGeneration}")
    check(r.stdout.strip() == "1", "operator image: writes the KafkaGateway's status", r.stdout + r.stderr)
    must(PODMAN + ["kill", "--signal", "TERM", cid])
    code = must(PODMAN + ["wait", cid], timeout=60).strip()
    check(code == "0", "operator: SIGTERM ends the container with exit code 0", logs(cid)[-2000:])


def main():
    env = images_env()
    work = tempfile.mkdtemp(prefix="images-test.")
    os.chmod(work, 0o755)
    ok = False
    try:
        check_image(env["KAFKA_GATEWAY_IMAGE"], "kafka-gateway", env)
        check_image(env["KAFKA_OPERATOR_IMAGE"], "kafka-operator", env)
        gateway_tests(env, work)
        operator_tests(env, work)
        ok = RESULTS["failed"] == 0
    except Exception as e:  # an error that stops the run is a failure, never a skip
        check(False, "the test ran to the end", e)
    finally:
        for fn in reversed(CLEANUP):
            try:
                fn()
            except Exception as e:
                say(f"cleanup: {e}")
        if ok:
            subprocess.run(["rm", "-rf", work])
        else:
            say(f"kept {work} (SMQ logs in smq/logs, testbed logs in testbed/logs)")
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
