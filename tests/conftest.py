"""Shared fixtures: a `backend` parametrized over DuckDB and PostgreSQL, and a real server process."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from orchestrion.store import open_store
from orchestrion.store.ports import EventStore
from tests.support.server import ServerProcess, start_server

PG_ADMIN_URL = os.environ.get("ORCHESTRION_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
NATS_ADDRESS = ("127.0.0.1", 4222)
TEMPLATE_DB = "orchestrion_test_template"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _service_up(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, address: tuple[str, int]) -> None:
    """In CI a missing service fails the test (never skips); elsewhere it skips with a hint."""
    if _service_up(address):
        return
    message = f"{name} is not reachable at {address[0]}:{address[1]}"
    if IN_CI:
        pytest.fail(message + " (CI=true: services must run; .ci/run starts them)")
    pytest.skip(message)


def _pg_url(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


_template_ready = False


def _ensure_template() -> None:
    """A migrated template database, created once per session: each test clones it (fast)."""
    global _template_ready
    if _template_ready:
        return
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    store = open_store(_pg_url(TEMPLATE_DB))
    store.close()
    _template_ready = True


@contextmanager
def throwaway_pg_database(prefix: str, *, migrated: bool) -> Iterator[str]:
    """A new PostgreSQL database (a clone of the migrated template, or empty), dropped afterwards."""
    require_service("PostgreSQL", ("127.0.0.1", 5432))
    if migrated:
        _ensure_template()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    template = f" TEMPLATE {TEMPLATE_DB}" if migrated else ""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}{template}")
    try:
        yield _pg_url(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A new PostgreSQL database cloned from the migrated template; dropped afterwards."""
    with throwaway_pg_database("orch_t", migrated=True) as url:
        yield url


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database (no schema): for migration tests."""
    with throwaway_pg_database("orch_e", migrated=False) as url:
        yield url


@pytest.fixture(params=["duckdb", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL on each backend."""
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'test.duckdb'}"
    else:
        yield request.getfixturevalue("fresh_pg_url")


@pytest.fixture
def store(database_url: str) -> Iterator[EventStore]:
    opened = open_store(database_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[object]:
    """Start real `orchestrion serve` processes; all are stopped at the end of the test."""
    started: list[ServerProcess] = []

    def factory(workspace_yaml: str | None = None, database_url: str | None = None, **kwargs: object) -> ServerProcess:
        root = tmp_path / f"ws{len(started)}"
        server = start_server(root, workspace_yaml=workspace_yaml, database_url=database_url, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def nats_up() -> None:
    require_service("NATS", NATS_ADDRESS)
