"""A database for a module-scoped server: the conftest fixtures give one per test, too slow to share a server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from tests.conftest import PG_ADMIN_URL, require_service


@contextmanager
def server_database(backend: str) -> Iterator[str | None]:
    """None for the server's default embedded DuckDB; else an empty PostgreSQL database it migrates at start."""
    if backend == "duckdb":
        yield None
        return
    require_service("PostgreSQL", ("127.0.0.1", 5432))
    name = f"orch_m_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
