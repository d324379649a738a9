"""Embedded DuckDB backend: one writer connection guarded by a lock, cursors for reads."""

from __future__ import annotations

import contextlib
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

_TYPES = {
    "text": "VARCHAR",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "bool": "BOOLEAN",
    "timestamptz": "TIMESTAMPTZ",
    "json": "VARCHAR",
}
# json columns travel as strings holding the JSON text and are cast afterwards, which keeps the text verbatim
# (a JSON-typed field of from_json would be re-serialized: 1.5e+300 becomes 1.5e300).
_JSON_FIELD_TYPES = {**_TYPES, "json": "VARCHAR"}


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
        # The event log only grows: vacuuming at each automatic checkpoint merges its row groups again and
        # again, so checkpoints grew with the table (seconds each past a few hundred thousand events, stalling
        # ingestion). Without it a checkpoint costs what was written since the last one.
        with contextlib.suppress(duckdb.CatalogException):  # the setting exists from DuckDB 1.2 on
            self._con.execute("SET max_vacuum_tasks = 0")

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

    def _json_rows(self, types: Sequence[str]) -> str:
        fields = ", ".join(f'"c{i}": "{_JSON_FIELD_TYPES[kind]}"' for i, kind in enumerate(types))
        columns = ", ".join(f"r.c{i}::JSON" if kind == "json" else f"r.c{i}" for i, kind in enumerate(types))
        # decode(BLOB): a bytes parameter is copied as is, a str one is re-encoded and validated char by char.
        return f"SELECT {columns} FROM (SELECT unnest(from_json(decode(?::BLOB), '[{{{fields}}}]')) AS r)"

    def _json_param(self, document: bytes) -> Any:
        return document

    # DuckDB checks ON CONFLICT against the whole table (cost grows with it); a plain INSERT uses the index.
    _dedup_optimistically = True

    def _is_duplicate_key(self, exc: Exception) -> bool:
        return isinstance(exc, duckdb.ConstraintException)

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
