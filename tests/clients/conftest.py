"""Fixtures for the real-client suite: one SMQ cluster and one kafka-gateway per session.

- SMQ: reused from the environment when SMQ_MASTER is set (tests/clients/run does that), otherwise
  started here with dev/smq in a temporary folder and stopped at the end.
- Gateway: `--namespace kafka`, auto-create off, on free loopback ports. Tests that kill or restart
  it use the same object (same ports, same SMQ); the `gateway` fixture brings it back up for the
  next test if a test left it dead. The gateway log (stderr) tail is attached to every failure.
"""

import os

import pytest

import kgw

_GATEWAY = {}

# Modules whose scenarios do not depend on how records are stored: group coordination (classic
# and KIP-848), byte budgets and backpressure, cluster membership and leadership. They run with
# the first format of tests/clients/run (`record`) and are deselected, as pytest reports, in the
# runs with another format, which cover the storage path (produce, fetch, restarts, crashes).
FORMAT_INDEPENDENT = (
    "test_groups.py",
    "test_consumer_protocol.py",
    "test_overload.py",
    "test_cluster.py",
)


def pytest_collection_modifyitems(config, items):
    if kgw.storage_format() == "record" or os.environ.get("KGW_ALL_TESTS_EVERY_FORMAT") == "1":
        return
    keep, drop = [], []
    for item in items:
        (drop if item.path.name in FORMAT_INDEPENDENT else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
        kgw.log(
            "storage format %s: %d format-independent tests deselected (they ran with record; "
            "KGW_ALL_TESTS_EVERY_FORMAT=1 runs them here too)" % (kgw.storage_format(), len(drop))
        )


@pytest.fixture(scope="session")
def smq(tmp_path_factory):
    s = kgw.Smq.from_env()
    if s is not None:
        kgw.log("using SMQ from the environment:", s.master)
        yield s
        return
    s = kgw.Smq(str(tmp_path_factory.mktemp("smq")))
    try:
        s.up()
        kgw.log("started SMQ:", s.env)
        yield s
    finally:
        s.down()


class ExternalBroker:
    """KGW_EXTERNAL_BOOTSTRAP=host:port points the suite at an already running Kafka-compatible
    server (e.g. Apache Kafka, to check the suite itself). Tests that kill, restart or read the log
    of the gateway cannot work in this mode and fail."""

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.port = int(bootstrap.rsplit(":", 1)[1])
        self.log_path = None

    def ensure_running(self):
        pass

    def __getattr__(self, name):
        raise AssertionError("KGW_EXTERNAL_BOOTSTRAP mode: no gateway process (%s)" % name)


@pytest.fixture(scope="session")
def gateway_proc(request, tmp_path_factory):
    ext = os.environ.get("KGW_EXTERNAL_BOOTSTRAP")
    if ext:
        yield ExternalBroker(ext)
        return
    smq = request.getfixturevalue("smq")
    log_dir = os.environ.get("KGW_LOG_DIR") or str(tmp_path_factory.mktemp("gateway"))
    os.makedirs(log_dir, exist_ok=True)
    g = kgw.Gateway(smq.master, os.path.join(log_dir, "kafka-gateway.log"))
    kgw.log("gateway log:", g.log_path)
    _GATEWAY["gw"] = g
    try:
        yield g
    finally:
        g.stop()


@pytest.fixture
def gateway(gateway_proc):
    """The session's gateway, running and ready."""
    gateway_proc.ensure_running()
    return gateway_proc


@pytest.fixture
def bootstrap(gateway):
    return gateway.bootstrap


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    g = _GATEWAY.get("gw")
    if rep.failed and g is not None and g.log_path and os.path.exists(g.log_path):
        rep.sections.append(("kafka-gateway log tail (%s)" % g.log_path, g.log_tail(60)))
