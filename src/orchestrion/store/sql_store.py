"""The SQL event store shared by every backend; backends supply connections and a few SQL forms."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import orjson

from orchestrion.collect.event import NormalizedEvent
from orchestrion.store import landing
from orchestrion.store.capabilities import Capabilities
from orchestrion.store.ports import AppendOutcome, IngestBatch, QuarantineRow, QueryResult
from orchestrion.store.readonly import check_read_only
from orchestrion.store.sql_text import migration_files, packaged_sql, transpile

log = logging.getLogger(__name__)

_EVENT_COLUMNS = (
    "source",
    "message_id",
    "type",
    "event",
    "user_id",
    "anonymous_id",
    '"timestamp"',
    "original_timestamp",
    "sent_at",
    "received_at",
    "payload",
)
_EVENT_TYPES = ("text",) * 6 + ("timestamptz",) * 4 + ("json",)
_QUARANTINE_COLUMNS = (
    "source",
    "kind",
    "batch_index",
    "message_id",
    "event",
    "reasons",
    "raw",
    "received_at",
)
_QUARANTINE_TYPES = ("text", "text", "int", "text", "text", "json", "json", "timestamptz")


class Cursor(Protocol):
    @property
    def description(self) -> Any: ...

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...

    def fetchmany(self, size: int) -> list[tuple[Any, ...]]: ...


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


class SqlEventStore(ABC):
    """EventStore over a SQL engine. Subclasses: DuckDBStore, PostgresStore."""

    capabilities: Capabilities

    def __init__(self) -> None:
        self._landing_lock = threading.Lock()
        self._landing_columns: dict[tuple[str, str], landing.LandingColumn] = {}
        self._landing_events: dict[str, str] = {}

    # -- backend hooks -------------------------------------------------------------------------
    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Cursor]:
        """A cursor inside one transaction: committed on success, rolled back on error."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Cursor]:
        """A cursor for reads that never write."""

    @abstractmethod
    def _bulk_rows(self, types: Sequence[str]) -> str:
        """A SELECT producing rows from one array parameter per column (text, int, timestamptz, json)."""

    @abstractmethod
    def _lock_for_migration(self, cur: Cursor) -> None: ...

    @abstractmethod
    def describe_schema(self) -> dict[str, list[tuple[str, str]]]: ...

    @abstractmethod
    def close(self) -> None: ...

    def _sql(self, text: str) -> str:
        """Statements are written with %s placeholders; DuckDB takes ?."""
        return text if self.capabilities.name == "postgres" else text.replace("%s", "?")

    # -- schema ----------------------------------------------------------------------------------
    def _run_script(self, cur: Cursor, sql: str) -> None:
        for statement in transpile(sql, self.capabilities.sql_dialect):
            cur.execute(statement)

    def migrate(self, *, via_migrations: bool = False, upto: int | None = None) -> None:
        migrations = migration_files()
        latest = migrations[-1][0]
        with self._transaction() as cur:
            self._lock_for_migration(cur)
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            )
            cur.execute("SELECT version FROM schema_migrations")
            applied = {row[0] for row in cur.fetchall()}
            now = dt.datetime.now(dt.UTC)
            if not applied and not via_migrations and upto is None:
                self._run_script(cur, packaged_sql("schema.sql"))
                for version, name in migrations:
                    cur.execute(self._sql("INSERT INTO schema_migrations VALUES (%s, %s, %s)"), [version, name, now])
            else:
                for version, name in migrations:
                    if version in applied or (upto is not None and version > upto):
                        continue
                    self._run_script(cur, packaged_sql(f"migrations/{name}"))
                    cur.execute(self._sql("INSERT INTO schema_migrations VALUES (%s, %s, %s)"), [version, name, now])
        if upto is None or upto >= latest:
            self._load_landing()
            self.refresh_landing()

    def schema_version(self) -> int:
        with self._read() as cur:
            cur.execute("SELECT max(version) FROM schema_migrations")
            row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def ping(self) -> None:
        with self._read() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()

    # -- append ----------------------------------------------------------------------------------
    def append(self, batches: Sequence[IngestBatch]) -> list[AppendOutcome]:
        dups = [0] * len(batches)
        seen: set[tuple[str, str]] = set()
        candidates: list[tuple[int, NormalizedEvent]] = []
        for index, batch in enumerate(batches):
            for event in batch.events:
                key = (event.source, event.message_id)
                if key in seen:
                    dups[index] += 1
                    continue
                seen.add(key)
                candidates.append((index, event))
        stored: list[tuple[int, NormalizedEvent]] = []
        with self._transaction() as cur:
            if candidates:
                cur.execute(
                    self._sql(
                        "INSERT INTO message_ids (source, message_id, received_at) "
                        f"{self._bulk_rows(('text', 'text', 'timestamptz'))} "
                        "ON CONFLICT DO NOTHING RETURNING source, message_id"
                    ),
                    [
                        [e.source for _, e in candidates],
                        [e.message_id for _, e in candidates],
                        [e.received_at for _, e in candidates],
                    ],
                )
                new_keys = {(row[0], row[1]) for row in cur.fetchall()}
                for index, event in candidates:
                    if (event.source, event.message_id) in new_keys:
                        stored.append((index, event))
                    else:
                        dups[index] += 1
            if stored:
                events = [e for _, e in stored]
                cur.execute(
                    self._sql(f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) {self._bulk_rows(_EVENT_TYPES)}"),
                    [
                        [e.source for e in events],
                        [e.message_id for e in events],
                        [e.type for e in events],
                        [e.event for e in events],
                        [e.user_id for e in events],
                        [e.anonymous_id for e in events],
                        [e.timestamp for e in events],
                        [e.original_timestamp for e in events],
                        [e.sent_at for e in events],
                        [e.received_at for e in events],
                        [orjson.dumps(e.payload).decode() for e in events],
                    ],
                )
            quarantined = [q for batch in batches for q in batch.quarantined]
            if quarantined:
                cur.execute(
                    self._sql(
                        f"INSERT INTO quarantine ({', '.join(_QUARANTINE_COLUMNS)}) "
                        f"{self._bulk_rows(_QUARANTINE_TYPES)}"
                    ),
                    [
                        [q.source for q in quarantined],
                        [q.kind for q in quarantined],
                        [q.batch_index for q in quarantined],
                        [q.message_id for q in quarantined],
                        [q.event for q in quarantined],
                        [_dumps([r.as_dict() for r in q.reasons]) for q in quarantined],
                        [_dumps(q.raw) for q in quarantined],
                        [q.received_at for q in quarantined],
                    ],
                )
        per_batch = [0] * len(batches)
        for index, _ in stored:
            per_batch[index] += 1
        if stored:
            self._discover_landing([e for _, e in stored])
        return [
            AppendOutcome(accepted=per_batch[i], deduplicated=dups[i], quarantined=len(batches[i].quarantined))
            for i in range(len(batches))
        ]

    # -- landing views ---------------------------------------------------------------------------
    def _load_landing(self) -> None:
        with self._read() as cur:
            cur.execute("SELECT table_name, column_name, json_path, data_type FROM landing_columns")
            columns = {(r[0], r[1]): landing.LandingColumn(r[0], r[1], r[2], r[3]) for r in cur.fetchall()}
            cur.execute("SELECT event, table_name FROM landing_events")
            events = {r[0]: r[1] for r in cur.fetchall()}
        with self._landing_lock:
            self._landing_columns = columns
            self._landing_events = events

    def _discover_landing(self, events: Sequence[NormalizedEvent]) -> None:
        """Record columns and event names not seen before and rebuild the views they change.

        Runs after the events committed: a failure here never costs an accepted event (the views are
        rebuilt from landing_columns at the next start).
        """
        new_columns: dict[tuple[str, str], landing.LandingColumn] = {}
        new_events: dict[str, str] = {}
        with self._landing_lock:
            for event in events:
                table, found = landing.discover(event)
                if event.type == "track" and event.event and event.event not in self._landing_events:
                    new_events[event.event] = table
                for column, path, kind in found:
                    key = (table, column)
                    known = new_columns.get(key) or self._landing_columns.get(key)
                    if known is None:
                        new_columns[key] = landing.LandingColumn(table, column, path, kind)
                    elif landing.merge_type(known.data_type, kind) != known.data_type:
                        new_columns[key] = landing.LandingColumn(
                            table, column, known.json_path, landing.merge_type(known.data_type, kind)
                        )
        if not new_columns and not new_events:
            return
        try:
            now = dt.datetime.now(dt.UTC)
            with self._transaction() as cur:
                for event_name, table in new_events.items():
                    cur.execute(
                        self._sql("INSERT INTO landing_events VALUES (%s, %s) ON CONFLICT DO NOTHING"),
                        [event_name, table],
                    )
                for col in new_columns.values():
                    cur.execute(
                        self._sql(
                            "INSERT INTO landing_columns VALUES (%s, %s, %s, %s, %s) "
                            "ON CONFLICT (table_name, column_name) DO UPDATE SET data_type = excluded.data_type"
                        ),
                        [col.table_name, col.column_name, col.json_path, col.data_type, now],
                    )
            self._load_landing()
            tables = {t for t, _ in new_columns} | set(new_events.values())
            self.refresh_landing(tables)
        except Exception:  # the events are safe; the views catch up on the next start
            log.exception("could not update landing views")

    def refresh_landing(self, tables: set[str] | None = None) -> None:
        """(Re)create landing views: all of them, or only `tables`."""
        with self._landing_lock:
            columns = dict(self._landing_columns)
            events = dict(self._landing_events)
        by_table: dict[str, list[landing.LandingColumn]] = {}
        for col in columns.values():
            by_table.setdefault(col.table_name, []).append(col)
        event_tables: dict[str, list[str]] = {}
        for event_name, table in events.items():
            event_tables.setdefault(table, []).append(event_name)
        wanted: list[tuple[str, str, list[str] | None]] = [
            (table, event_type, None) for event_type, table in landing.STANDARD_TABLES.items()
        ]
        wanted += [(table, "track", names) for table, names in event_tables.items()]
        with self._transaction() as cur:
            for table, event_type, names in wanted:
                if tables is not None and table not in tables:
                    continue
                cur.execute(f"DROP VIEW IF EXISTS {table}")
                sql = landing.view_sql(
                    table,
                    event_type,
                    by_table.get(table, []) if names or event_type != "track" else [],
                    names,
                )
                self._run_script(cur, sql)

    # -- reads -----------------------------------------------------------------------------------
    def query(self, sql: str, max_rows: int = 10_000) -> QueryResult:
        check_read_only(sql, self.capabilities.sql_dialect)
        return self._run_query(sql, max_rows)

    def read(self, sql: str, params: Sequence[Any] = ()) -> QueryResult:
        (statement,) = transpile(sql, self.capabilities.sql_dialect)
        with self._read() as cur:
            cur.execute(statement, list(params))
            columns = [d[0] for d in cur.description or []]
            rows = cur.fetchall()
        return QueryResult(columns=columns, rows=[tuple(r) for r in rows])

    @abstractmethod
    def _run_query(self, sql: str, max_rows: int) -> QueryResult: ...

    def pending_quarantine(self, *, source: str | None = None, limit: int = 10_000) -> list[QuarantineRow]:
        sql = (
            "SELECT id, source, kind, batch_index, message_id, event, CAST(reasons AS VARCHAR), "
            "CAST(raw AS VARCHAR), received_at FROM quarantine WHERE replayed_at IS NULL"
        )
        params: list[Any] = []
        if source:
            sql += " AND source = %s"
            params.append(source)
        sql += f" ORDER BY id LIMIT {int(limit)}"
        with self._read() as cur:
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall()
        return [
            QuarantineRow(
                id=r[0],
                source=r[1],
                kind=r[2],
                batch_index=r[3],
                message_id=r[4],
                event=r[5],
                reasons=orjson.loads(r[6]),
                raw=orjson.loads(r[7]),
                received_at=r[8],
            )
            for r in rows
        ]

    def mark_replayed(self, ids: Sequence[int], at: dt.datetime) -> None:
        if not ids:
            return
        with self._transaction() as cur:
            cur.execute(
                self._sql(f"UPDATE quarantine SET replayed_at = %s WHERE id IN ({', '.join(['%s'] * len(ids))})"),
                [at, *ids],
            )

    def recorded_contracts(self) -> dict[tuple[str, str, int], dict[str, Any]]:
        with self._read() as cur:
            cur.execute("SELECT event_type, name, version, CAST(definition AS VARCHAR) FROM contract_versions")
            rows = cur.fetchall()
        return {(r[0], r[1], int(r[2])): orjson.loads(r[3]) for r in rows}

    def record_contracts(self, contracts: Sequence[tuple[str, str, int, str, dict[str, Any]]]) -> None:
        now = dt.datetime.now(dt.UTC)
        with self._transaction() as cur:
            for event_type, name, version, digest, schema in contracts:
                cur.execute(
                    self._sql(
                        "INSERT INTO contract_versions VALUES (%s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (event_type, name, version) DO UPDATE SET schema_hash = excluded.schema_hash, "
                        "definition = excluded.definition, recorded_at = excluded.recorded_at"
                    ),
                    [event_type, name, version, digest, _dumps(schema), now],
                )

    def prune_dedup(self, older_than: dt.datetime) -> int:
        with self._transaction() as cur:
            cur.execute(self._sql("DELETE FROM message_ids WHERE received_at < %s RETURNING 1"), [older_than])
            return len(cur.fetchall())
