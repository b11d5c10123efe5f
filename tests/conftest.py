"""Shared fixtures: one node on embedded defaults for most tests."""
from __future__ import annotations

import shutil
from typing import Iterator

import pytest

# The shared helper modules' asserts show the compared values too, like the tests' own.
pytest.register_assert_rewrite("tests.cli_helpers", "tests.dashboard_helpers", "tests.harness")

from tests.harness import MongoEcoServer, Node, RedisServer

# Fixtures shared by several modules (store, cli, user, nodes, stopped; dash_node, browser).
pytest_plugins = ("tests.fixtures", "tests.dashboard_helpers")


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    """``python run.py`` with nothing but a fresh data dir: SQLite + embedded redis."""
    n = Node().start()
    yield n
    code = n.stop()
    assert code == 0, n.log()
    shutil.rmtree(n.data_dir, ignore_errors=True)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def mongoeco() -> Iterator[MongoEcoServer]:
    """mongoeco over the wire (a MongoDB-compatible server, not MongoDB).

    Like every other tool the suite needs, a missing mongoeco fails the test
    (never a skip): ``.ci/run`` creates its venv and names it.
    """
    python = MongoEcoServer.find_python()
    if python is None:
        pytest.fail("mongoeco not found: run .ci/run (it creates .venv-mongoeco), or set "
                    "NOTISYNC_MONGOECO_PYTHON to a Python 3.13 with mongoeco[wire]==4.11.0")
    server = MongoEcoServer(python).start()
    yield server
    server.stop()
