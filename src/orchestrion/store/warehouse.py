"""The warehouse port: where SQL models are built (tables created, swapped and read back).

Today the warehouse is the workspace's own database (embedded DuckDB or PostgreSQL), reached through the store's
connections. Models need what the event store does not offer: DDL outside the writers' lock, an atomic table swap
and a lock so that one model run at a time writes a database. What differs between engines stays in this file.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from orchestrion.errors import TransientError
from orchestrion.store.ports import QueryResult, Store
from orchestrion.store.sql_text import transpile

_RUN_LOCK_KEY = 74_203_117  # pg_try_advisory_lock key: one model run per PostgreSQL database


class ModelRunBusy(TransientError):
    """Another model run holds this database; try again when it is done."""


class WarehouseCursor(Protocol):
    """Statements inside one transaction, in the engine's own dialect and placeholder style."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> QueryResult: ...


class Warehouse(Protocol):
    name: str  # duckdb | postgres
    dialect: str  # sqlglot dialect of the engine

    def relations(self) -> dict[str, list[tuple[str, str]]]:
        """Every table and view of the workspace schema with its (column, type) pairs."""
        ...

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> QueryResult:
        """Run one statement (engine dialect) in its own transaction and return its rows."""
        ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement (engine dialect) in its own transaction."""
        ...

    def transaction(self) -> AbstractContextManager[WarehouseCursor]:
        """A cursor whose statements commit together, or not at all."""
        ...

    def replace_table(self, cur: WarehouseCursor, table: str, replacement: str) -> None:
        """Inside `cur`'s transaction: `replacement` takes the name `table` (the old table, if any, is dropped)."""
        ...

    def run_lock(self) -> AbstractContextManager[None]:
        """Held for a whole model run; ModelRunBusy when another run (thread or process) holds it."""
        ...


def quoted(name: str) -> str:
    """A table or column name as a quoted identifier (model names may be words SQL reserves: `order`, `user`)."""
    return '"' + name.replace('"', '""') + '"'


def product_sql(sql: str, dialect: str) -> str:
    """Bookkeeping SQL is written once in DuckDB's dialect with `?` placeholders; this renders it."""
    (statement,) = transpile(sql, dialect)
    return statement


class _Cursor:
    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._raw.execute(sql, list(params))

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> QueryResult:
        self._raw.execute(sql, list(params))
        columns = [d[0] for d in self._raw.description or []]
        return QueryResult(columns=columns, rows=[tuple(r) for r in self._raw.fetchall()])


class DuckDBWarehouse:
    """Model builds on their own DuckDB connections (cursors of the store's database).

    They do not take the store's writer lock: DuckDB runs concurrent transactions of one process, and model tables
    are written by nobody else, so ingestion keeps going while a model builds. DuckDB binds views when they are
    read, so a table swap leaves views over the model table working.
    """

    name = "duckdb"
    dialect = "duckdb"

    def __init__(self, connection: Any, describe: Callable[[], dict[str, list[tuple[str, str]]]]) -> None:
        self._describe = describe  # the store's describe_schema: one query for both
        self._connection = connection
        self._run_lock = threading.Lock()

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        raw = self._connection.cursor()
        try:
            raw.execute("SET TimeZone = 'UTC'")
            yield raw
        finally:
            raw.close()

    def relations(self) -> dict[str, list[tuple[str, str]]]:
        return self._describe()

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> QueryResult:
        with self._cursor() as raw:
            return _Cursor(raw).fetch(sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._cursor() as raw:
            raw.execute(sql, list(params))

    @contextmanager
    def transaction(self) -> Iterator[WarehouseCursor]:
        with self._cursor() as raw:
            raw.execute("BEGIN TRANSACTION")
            try:
                yield _Cursor(raw)
            except BaseException:
                raw.execute("ROLLBACK")
                raise
            raw.execute("COMMIT")

    def replace_table(self, cur: WarehouseCursor, table: str, replacement: str) -> None:
        cur.execute(f"DROP TABLE IF EXISTS {quoted(table)}")
        cur.execute(f"ALTER TABLE {quoted(replacement)} RENAME TO {quoted(table)}")

    @contextmanager
    def run_lock(self) -> Iterator[None]:
        # One process owns a DuckDB file, so a lock of this process is a lock of the database.
        if not self._run_lock.acquire(blocking=False):
            raise ModelRunBusy("another model run is in progress on this database; try again when it ends")
        try:
            yield
        finally:
            self._run_lock.release()


class PostgresWarehouse:
    """Model builds on connections of the store's pool, in UTC.

    PostgreSQL refuses to drop a table that views depend on; the swap drops them with the old table and creates
    them again over the new one, in the same transaction, so readers of those views never see a gap.
    """

    name = "postgres"
    dialect = "postgres"

    def __init__(self, pool: Any, url: str, describe: Callable[[], dict[str, list[tuple[str, str]]]]) -> None:
        self._describe = describe  # the store's describe_schema: one query for both
        self._pool = pool
        self._url = url

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as raw:
            raw.execute("SET LOCAL TIME ZONE 'UTC'")
            yield raw

    def relations(self) -> dict[str, list[tuple[str, str]]]:
        return self._describe()

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> QueryResult:
        with self._cursor() as raw:
            return _Cursor(raw).fetch(sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._cursor() as raw:
            raw.execute(sql, list(params))

    @contextmanager
    def transaction(self) -> Iterator[WarehouseCursor]:
        with self._cursor() as raw:
            yield _Cursor(raw)

    def replace_table(self, cur: WarehouseCursor, table: str, replacement: str) -> None:
        views = self._dependent_views(cur, table)
        cur.execute(f"DROP TABLE IF EXISTS {quoted(table)} CASCADE")
        cur.execute(f"ALTER TABLE {quoted(replacement)} RENAME TO {quoted(table)}")
        for name, definition in views:
            cur.execute(f"CREATE VIEW {name} AS {definition}")

    @staticmethod
    def _dependent_views(cur: WarehouseCursor, table: str) -> list[tuple[str, str]]:
        """Views over `table`, directly or through other views, in an order they can be created again."""
        rows = cur.fetch(
            """
            WITH RECURSIVE dependents(oid, depth) AS (
                SELECT DISTINCT r.ev_class, 1
                FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
                WHERE d.refobjid = to_regclass(%s) AND r.ev_class <> d.refobjid
                UNION ALL
                SELECT DISTINCT r.ev_class, dependents.depth + 1
                FROM dependents
                JOIN pg_depend d ON d.refobjid = dependents.oid
                JOIN pg_rewrite r ON r.oid = d.objid
                WHERE r.ev_class <> d.refobjid AND dependents.depth < 32
            )
            SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), pg_get_viewdef(c.oid), max(depth)
            FROM dependents JOIN pg_class c ON c.oid = dependents.oid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'v'
            GROUP BY 1, 2
            ORDER BY 3, 1
            """,
            [quoted(table)],
        ).rows
        return [(str(name), str(definition).rstrip().rstrip(";")) for name, definition, _ in rows]

    @contextmanager
    def run_lock(self) -> Iterator[None]:
        import psycopg

        conn = psycopg.connect(self._url, autocommit=True)
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", [_RUN_LOCK_KEY]).fetchone()
            if not (row and row[0]):
                raise ModelRunBusy("another model run is in progress on this database; try again when it ends")
            yield  # the lock is released when this session closes, also if the process dies
        finally:
            conn.close()


_warehouses: weakref.WeakKeyDictionary[Any, Warehouse] = weakref.WeakKeyDictionary()
_warehouses_lock = threading.Lock()


def warehouse_for(store: Store) -> Warehouse:
    """The warehouse of a store's database (one per store, so that its run lock is shared by all callers)."""
    with _warehouses_lock:
        found = _warehouses.get(store)
        if found is not None:
            return found
        warehouse: Warehouse
        if store.capabilities.name == "duckdb":
            from orchestrion.store.duckdb_backend import DuckDBStore

            assert isinstance(store, DuckDBStore)
            warehouse = DuckDBWarehouse(store.raw_connection(), store.describe_schema)
        else:
            from orchestrion.store.postgres_backend import PostgresStore

            assert isinstance(store, PostgresStore)
            warehouse = PostgresWarehouse(store.raw_pool(), store.url, store.describe_schema)
        _warehouses[store] = warehouse
        return warehouse
