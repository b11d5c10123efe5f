"""Shared fixtures: one node on embedded defaults for most tests."""
from __future__ import annotations

import shutil
from typing import Iterator

import pytest

from tests.harness import Node, RedisServer


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
