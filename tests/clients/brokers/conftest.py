"""Fixtures for the multi-broker tests: each test gets its own SMQ cluster (dev/smq up --brokers N)
and its own gateway on it, stopped afterwards. Not the suite's single-broker SMQ:
tests/clients/run runs this folder once, after the per-format runs of the rest of the suite."""

import os

import pytest

import kgw
from test_smq_brokers import Cluster

_GW = {}


@pytest.fixture
def smq_brokers(request, tmp_path_factory):
    """start(n) -> (cluster, gateway): a fresh cluster with n brokers and a gateway on it."""
    started = []

    def start(n):
        c = Cluster(str(tmp_path_factory.mktemp("smq-brokers%d-" % n)))
        started.append(c)
        c.up(n)
        kgw.log("SMQ with %d brokers:" % n, c.env)
        log_dir = os.environ.get("KGW_LOG_DIR") or str(tmp_path_factory.mktemp("gateway-brokers"))
        os.makedirs(log_dir, exist_ok=True)
        g = kgw.Gateway(c.master, os.path.join(log_dir, "kafka-gateway-%s.log" % request.node.name))
        kgw.log("gateway log:", g.log_path)
        _GW["gw"] = g
        started.append(g)
        g.start()
        return c, g

    try:
        yield start
    finally:
        for x in reversed(started):
            if isinstance(x, Cluster):
                x.down()
            else:
                x.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    g = _GW.get("gw")
    if rep.failed and g is not None and os.path.exists(g.log_path):
        rep.sections.append(("multi-broker gateway log tail (%s)" % g.log_path, g.log_tail(80)))
