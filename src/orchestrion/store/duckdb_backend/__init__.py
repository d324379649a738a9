"""Embedded DuckDB backend: one writer connection guarded by a lock, cursors for reads."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from orchestrion.errors import QueryRejected, StorageUnavailable
from orchestrion.store.capabilities import DUCKDB
from orchestrion.store.ports import QueryResult
from orchestrion.store.sql_store import Cursor, SqlEventStore

_TYPES = {"text": "VARCHAR", "int": "INTEGER", "timestamptz": "TIMESTAMPTZ", "json": "VARCHAR"}


class DuckDBStore(SqlEventStore):
    capabilities = DUCKDB

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        super().__init__()
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as exc:
            raise StorageUnavailable(
                f"cannot open {path}: {exc}. Another process (a running `orchestrion serve`?) may hold it; "
                "the CLI talks to a running server through its admin API"
            ) from exc
        self._write_lock = threading.Lock()
        self._con.execute("SET TimeZone = 'UTC'")

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        with self._write_lock:
            cur = self._con.cursor()
            try:
                cur.execute("BEGIN TRANSACTION")
                try:
                    yield cur
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
            finally:
                cur.close()

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        cur = self._con.cursor()
        try:
            cur.execute("SET TimeZone = 'UTC'")
            yield cur
        finally:
            cur.close()

    def _bulk_rows(self, types: Sequence[str]) -> str:
        parts = []
        for kind in types:
            item = f"unnest(?::{_TYPES[kind]}[])"
            parts.append(f"{item}::JSON" if kind == "json" else item)
        return "SELECT " + ", ".join(parts)

    def _lock_for_migration(self, cur: Cursor) -> None:
        return None  # one process owns the file

    def _run_query(self, sql: str, max_rows: int) -> QueryResult:
        with self._read() as cur:
            try:
                cur.execute(sql)
                columns = [d[0] for d in cur.description or []]
                rows = cur.fetchmany(max_rows + 1)
            except duckdb.Error as exc:
                raise QueryRejected(str(exc).splitlines()[0]) from exc
        return QueryResult(columns=columns, rows=[tuple(r) for r in rows[:max_rows]], truncated=len(rows) > max_rows)

    def describe_schema(self) -> dict[str, list[tuple[str, str]]]:
        with self._read() as cur:
            cur.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
            )
            rows = cur.fetchall()
        out: dict[str, list[tuple[str, str]]] = {}
        for table, column, kind in rows:
            out.setdefault(table, []).append((column, str(kind)))
        return out

    def checkpoint(self) -> None:
        with self._write_lock:
            self._con.execute("CHECKPOINT")

    def close(self) -> None:
        with self._write_lock:
            self._con.close()

    def raw_connection(self) -> Any:
        """For benchmarks that compare against DuckDB directly."""
        return self._con
