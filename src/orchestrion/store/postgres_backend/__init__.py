"""PostgreSQL backend for the scale-out mode: a connection pool, many writer processes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from orchestrion.errors import QueryRejected, StorageUnavailable
from orchestrion.store.capabilities import POSTGRES
from orchestrion.store.ports import QueryResult
from orchestrion.store.sql_store import Cursor, SqlEventStore

_TYPES = {
    "text": "text",
    "int": "int",
    "bigint": "bigint",
    "bool": "boolean",
    "timestamptz": "timestamptz",
    "json": "json",
}
_MIGRATION_LOCK = 74_203_115  # pg_advisory_xact_lock key: one migrating process at a time


class PostgresStore(SqlEventStore):
    capabilities = POSTGRES

    def __init__(self, url: str, *, max_connections: int = 10) -> None:
        super().__init__()
        self.url = url
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            open=False,
            kwargs={"autocommit": False},
        )
        try:
            self._pool.open(wait=True, timeout=10)
        except Exception as exc:
            self._pool.close()
            raise StorageUnavailable(
                f"cannot connect to PostgreSQL at {_redact(url)}: {exc}. Is it running? "
                "(pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)"
            ) from exc

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield cur
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(f"PostgreSQL: {exc}") from exc

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            yield cur

    def _bulk_rows(self, types: Sequence[str]) -> str:
        return "SELECT * FROM unnest(" + ", ".join(f"%s::{_TYPES[k]}[]" for k in types) + ")"

    def _json_rows(self, types: Sequence[str]) -> str:
        fields = ", ".join(f"c{i} {'text' if kind == 'json' else _TYPES[kind]}" for i, kind in enumerate(types))
        columns = ", ".join(f"c{i}::json" if kind == "json" else f"c{i}" for i, kind in enumerate(types))
        return f"SELECT {columns} FROM json_to_recordset(%s::json) AS r({fields})"

    def _json_param(self, document: bytes) -> Any:
        return document.decode()

    def _lock_for_migration(self, cur: Cursor) -> None:
        cur.execute(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")

    def _run_query(self, sql: str, max_rows: int) -> QueryResult:
        try:
            with self._read() as cur:
                cur.execute("SET LOCAL statement_timeout = '60s'")
                cur.execute(sql)
                columns = [d[0] for d in cur.description or []]
                rows = cur.fetchmany(max_rows + 1)
        except psycopg.Error as exc:
            raise QueryRejected(str(exc).splitlines()[0]) from exc
        return QueryResult(columns=columns, rows=[tuple(r) for r in rows[:max_rows]], truncated=len(rows) > max_rows)

    def describe_schema(self) -> dict[str, list[tuple[str, str]]]:
        with self._read() as cur:
            cur.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
            )
            rows = cur.fetchall()
        out: dict[str, list[tuple[str, str]]] = {}
        for table, column, kind in rows:
            out.setdefault(table, []).append((column, str(kind)))
        return out

    def close(self) -> None:
        self._pool.close()

    def raw_pool(self) -> Any:
        return self._pool


def _redact(url: str) -> str:
    if "@" in url and "//" in url:
        scheme, rest = url.split("//", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}//{creds.split(':')[0]}:***@{host}"
    return url
