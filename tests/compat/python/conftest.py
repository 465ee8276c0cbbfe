"""pytest fixtures: a fresh `runnel serve` per test module (`runnel`) or per test (`fresh_runnel`).

Each fixture starts runnel on a new temporary data dir with `--kafka-listener 127.0.0.1:0`, waits
for its `runnel ready: kafka=127.0.0.1:PORT` line (60 s), and at teardown stops it with SIGTERM and
asserts exit code 0 (graceful shutdown). runnel's stderr is kept in target/compat/logs/.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import Runnel  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for name in ("runnel", "fresh_runnel"):
            r = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if isinstance(r, Runnel):
                rep.sections.append(
                    (f"runnel stderr (tail; full log {r.log_path})", r.stderr_tail(40))
                )


@pytest.fixture(scope="module")
def runnel(request, tmp_path_factory):
    name = request.module.__name__.rsplit(".", 1)[-1]
    r = Runnel(name, tmp_path_factory.mktemp(name))
    r.start()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def fresh_runnel(request, tmp_path):
    name = request.node.nodeid.split("::", 1)[-1].replace("/", "_")
    module = request.module.__name__.rsplit(".", 1)[-1]
    r = Runnel(f"{module}.{name}", tmp_path / "data")
    r.start()
    try:
        yield r
    finally:
        if r.running():
            r.close()
