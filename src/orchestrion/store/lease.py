"""A processing lease: in scale-out, exactly one process runs the conductor (identity resolution keeps its
graph in memory and must see every event in order). Other processes stand by and take over when the holder dies.

PostgreSQL: a session-level advisory lock on a dedicated connection (released by the server when that connection
drops, i.e. when the holder dies). Embedded DuckDB: one process owns the file, so the lease is always held.
"""

from __future__ import annotations

import logging
from typing import Protocol

import psycopg

from orchestrion.store.ports import EventStore

log = logging.getLogger(__name__)
_LEASE_KEY = 74_203_116


class Lease(Protocol):
    def held(self) -> bool:
        """True while this process holds the lease (tries to take it when free)."""
        ...

    def release(self) -> None: ...


class AlwaysHeld:
    def held(self) -> bool:
        return True

    def release(self) -> None:
        return None


class PostgresAdvisoryLease:
    def __init__(self, url: str, key: int = _LEASE_KEY) -> None:
        self.url = url
        self.key = key
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def held(self) -> bool:
        try:
            if self._conn is not None and not self._conn.closed:
                self._conn.execute("SELECT 1")  # the lock lives as long as this session
                return True
            conn = psycopg.connect(self.url, autocommit=True)
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
            if row and row[0]:
                self._conn = conn
                log.info("took the processing lease")
                return True
            conn.close()
            return False
        except psycopg.Error:
            log.warning("processing lease check failed; standing by", exc_info=True)
            self.release()
            return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def processing_lease(store: EventStore) -> Lease:
    url = getattr(store, "url", None)
    if store.capabilities.multi_process_writers and isinstance(url, str):
        return PostgresAdvisoryLease(url)
    return AlwaysHeld()
