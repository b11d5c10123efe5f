"""Fixtures that several test modules share, found by pytest as a plugin (tests/conftest.py).

Shared this way, a module uses a fixture by naming it as a parameter,
without importing it (an import of a name the module never calls is what
linters report as unused).
"""
from __future__ import annotations

import os
import shutil
import uuid
from typing import Any, AsyncIterator, Iterator

import pytest
from mongomock_motor import AsyncMongoMockClient

from store.documents import DocumentStore
from store.mongo import MongoStore, make_client
from store.sqlite import SQLiteStore
from tests.cli_helpers import Cli
from tests.harness import Node, User, new_user

MONGO_URL = os.environ.get("NOTISYNC_TEST_MONGO_URL")
BACKENDS = [
    "sqlite",
    "mongomock",
    "mongoeco",
    pytest.param(
        "mongodb",
        marks=pytest.mark.skipif(not MONGO_URL, reason="NOTISYNC_TEST_MONGO_URL not set"),
    ),
]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[DocumentStore]:
    """Each DocumentStore in turn: the contract suites (tests/test_store_contract*.py) run on all."""
    if request.param == "sqlite":
        s: DocumentStore = SQLiteStore(str(tmp_path / "db" / "notisync.sqlite3"))
    elif request.param == "mongomock":
        # A plain mock client hands back naive datetimes: the store must fix them.
        s = MongoStore(AsyncMongoMockClient(), "notisync_test")
    else:
        url = request.getfixturevalue("mongoeco").url if request.param == "mongoeco" else MONGO_URL
        client = make_client(url or "")
        s = MongoStore(client, f"notisync_test_{uuid.uuid4().hex[:12]}")
    await s.open()
    yield s
    if request.param in ("mongodb", "mongoeco"):
        await client.drop_database(s.db_name)  # a fresh database per test
    await s.close()


@pytest.fixture
async def cli(node: Node, tmp_path: Any) -> AsyncIterator[Cli]:
    """The real ``notisync`` command against the shared node, with its own config dir."""
    # A dir that does not exist yet: the CLI must create it, mode 0700.
    c = Cli(node.base, str(tmp_path / "config"))
    yield c
    await c.kill_all()


@pytest.fixture
async def user(node: Node, cli: Cli) -> User:
    """A user (made over REST) whose CLI is logged in."""
    u = await new_user(node)
    (await cli.run("login", "--email", u.email, "--password", u.password)).ok()
    return u


def _stop_all(started: list[Node], require_clean_exit: bool) -> None:
    for n in started:
        code = n.stop()
        if require_clean_exit:
            assert code == 0, n.log()
    for n in started:
        shutil.rmtree(n.data_dir, ignore_errors=True)


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    """Nodes a fault test started (some it killed itself): stopped and removed afterwards."""
    started: list[Node] = []
    yield started
    _stop_all(started, require_clean_exit=False)


@pytest.fixture
def stopped() -> Iterator[list[Node]]:
    """Nodes a test started; stopped (exit 0) and cleaned up afterwards."""
    started: list[Node] = []
    yield started
    _stop_all(started, require_clean_exit=True)
