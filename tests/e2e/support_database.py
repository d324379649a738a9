"""A database for a module-scoped server: the conftest fixtures give one per test, too slow to share a server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.conftest import throwaway_pg_database


@contextmanager
def server_database(backend: str) -> Iterator[str | None]:
    """None for the server's default embedded DuckDB; else an empty PostgreSQL database it migrates at start."""
    if backend == "duckdb":
        yield None
        return
    with throwaway_pg_database("orch_m", migrated=False) as url:
        yield url
