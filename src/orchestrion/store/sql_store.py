"""The SQL event store shared by every backend; backends supply connections and a few SQL forms."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, cast

import orjson

from orchestrion.collect.event import NormalizedEvent
from orchestrion.store import landing
from orchestrion.store.capabilities import Capabilities
from orchestrion.store.event_log_sql import EventLogSqlMixin
from orchestrion.store.ports import AppendOutcome, IngestBatch, QuarantineRow, QueryResult
from orchestrion.store.profiles_sql import ProfileSqlMixin
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
_DEDUP_TYPES = ("text", "text", "timestamptz")


class Cursor(Protocol):
    @property
    def description(self) -> Any: ...

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...

    def fetchmany(self, size: int) -> list[tuple[Any, ...]]: ...


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


_NO_SHAPE: Hashable = object()  # a value that is not plain JSON: never cached
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None), list, dict})
_MAX_SETTLED_SHAPES = 50_000


def _shape(value: Any) -> Hashable:
    """The keys and Python types of a (nested) JSON object, which is all `landing.discover` reads of it."""
    kind = type(value)
    if kind is not dict:
        return cast(Hashable, kind) if kind in _PLAIN_TYPES else _NO_SHAPE
    kinds: tuple[Hashable, ...] = tuple(map(type, value.values()))
    if not _PLAIN_TYPES.issuperset(kinds):
        return _NO_SHAPE
    if dict in kinds:
        kinds = tuple(
            _shape(child) if child_kind is dict else child_kind
            for child_kind, child in zip(kinds, value.values(), strict=True)
        )
        if _NO_SHAPE in kinds:
            return _NO_SHAPE
    return (tuple(value), kinds)


def landing_shape(event: NormalizedEvent) -> Hashable:
    """What decides the landing columns `landing.discover` finds in an event: its type and name and the shape
    of the objects it flattens for that type. Much cheaper than the discovery itself; keep the two in step."""
    payload = event.payload
    kind = event.type
    if kind == "identify" or kind == "group":
        context = payload.get("context")
        traits = _shape(payload.get("traits"))
        context_traits = _shape(context.get("traits") if type(context) is dict else None)
        if traits is _NO_SHAPE or context_traits is _NO_SHAPE:
            return _NO_SHAPE
        return (kind, event.event, traits, context_traits)
    properties = _shape(payload.get("properties"))
    if properties is _NO_SHAPE:
        return _NO_SHAPE
    return (kind, event.event, properties)


class SqlEventStore(EventLogSqlMixin, ProfileSqlMixin, ABC):
    """EventStore over a SQL engine. Subclasses: DuckDBStore, PostgresStore."""

    capabilities: Capabilities

    def __init__(self) -> None:
        self._landing_lock = threading.Lock()
        self._landing_columns: dict[tuple[str, str], landing.LandingColumn] = {}
        self._landing_events: dict[str, str] = {}
        # Landing shapes (see `landing_shape`) whose columns and event name are all recorded already.
        self._settled_shapes: set[Hashable] = set()

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
    def _json_rows(self, types: Sequence[str]) -> str:
        """A SELECT producing typed columns from ONE parameter: a JSON array of objects keyed c0, c1, ...

        Values arrive as JSON strings, numbers, nulls and RFC 3339 times; a `json` column arrives as a string
        holding the JSON text, stored verbatim.
        """

    @abstractmethod
    def _json_param(self, document: bytes) -> Any:
        """The form in which this driver takes the JSON document `_json_rows` reads."""

    # Insert dedup keys with a plain INSERT first and fall back to ON CONFLICT only when one exists: for
    # engines whose ON CONFLICT costs grow with the table (DuckDB: ~115 ms per statement at 2M keys).
    _dedup_optimistically = False

    def _is_duplicate_key(self, exc: Exception) -> bool:
        """Whether `exc` is the primary-key violation of a plain INSERT into message_ids."""
        return False

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
    # Rows travel as one JSON document per statement: the drivers convert a Python list per column value by
    # value (psycopg ~100 us/row, DuckDB ~15 us/row, holding the GIL), a single bytes/str parameter is copied
    # once and parsed by the database in C.
    def _insert_rows(
        self, cur: Cursor, head: str, types: Sequence[str], rows: list[dict[str, Any]], tail: str = ""
    ) -> None:
        cur.execute(
            f"{head} {self._json_rows(types)} {tail}",
            [self._json_param(orjson.dumps(rows, option=orjson.OPT_NAIVE_UTC))],
        )

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
        if candidates and self._dedup_optimistically:
            try:
                return self._write(batches, list(dups), candidates, optimistic=True)
            except Exception as exc:
                if not self._is_duplicate_key(exc):
                    raise
                # Some key was stored before (a retried batch): rolled back, redo with ON CONFLICT.
        return self._write(batches, dups, candidates, optimistic=False)

    def _write(
        self,
        batches: Sequence[IngestBatch],
        dups: list[int],
        candidates: list[tuple[int, NormalizedEvent]],
        *,
        optimistic: bool,
    ) -> list[AppendOutcome]:
        """One transaction: dedup keys, then the new events and the quarantined ones.

        `optimistic`: insert the keys with a plain INSERT, which fails (rolling everything back) when one
        exists; otherwise ON CONFLICT DO NOTHING tells which are new.
        """
        stored: list[tuple[int, NormalizedEvent]] = []
        with self._transaction() as cur:
            if candidates:
                self._insert_rows(
                    cur,
                    "INSERT INTO message_ids (source, message_id, received_at)",
                    _DEDUP_TYPES,
                    [{"c0": e.source, "c1": e.message_id, "c2": e.received_at} for _, e in candidates],
                    "" if optimistic else "ON CONFLICT DO NOTHING RETURNING source, message_id",
                )
                if optimistic:
                    stored = candidates
                else:
                    new_keys = set(map(tuple, cur.fetchall()))
                    for index, event in candidates:
                        if (event.source, event.message_id) in new_keys:
                            stored.append((index, event))
                        else:
                            dups[index] += 1
            if stored:
                self._insert_rows(
                    cur,
                    f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)})",
                    _EVENT_TYPES,
                    [
                        {
                            "c0": e.source,
                            "c1": e.message_id,
                            "c2": e.type,
                            "c3": e.event,
                            "c4": e.user_id,
                            "c5": e.anonymous_id,
                            "c6": e.timestamp,
                            "c7": e.original_timestamp,
                            "c8": e.sent_at,
                            "c9": e.received_at,
                            "c10": orjson.dumps(e.payload).decode(),
                        }
                        for _, e in stored
                    ],
                )
            quarantined = [q for batch in batches for q in batch.quarantined]
            if quarantined:
                self._insert_rows(
                    cur,
                    f"INSERT INTO quarantine ({', '.join(_QUARANTINE_COLUMNS)})",
                    _QUARANTINE_TYPES,
                    [
                        {
                            "c0": q.source,
                            "c1": q.kind,
                            "c2": q.batch_index,
                            "c3": q.message_id,
                            "c4": q.event,
                            "c5": _dumps([r.as_dict() for r in q.reasons]),
                            "c6": _dumps(q.raw),
                            "c7": q.received_at,
                        }
                        for q in quarantined
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
            self._settled_shapes.clear()

    def _discover_landing(self, events: Sequence[NormalizedEvent]) -> None:
        """Record columns and event names not seen before and rebuild the views they change.

        Runs after the events committed: a failure here never costs an accepted event (the views are
        rebuilt from landing_columns at the next start). An event whose landing shape was already found
        fully recorded is skipped: recorded columns only widen, so it cannot add anything.
        """
        settled = self._settled_shapes
        pending = [(event, shape) for event in events if (shape := landing_shape(event)) not in settled]
        if not pending:
            return
        new_columns: dict[tuple[str, str], landing.LandingColumn] = {}
        new_events: dict[str, str] = {}
        with self._landing_lock:
            for event, shape in pending:
                table, found = landing.discover(event)
                recorded = True
                if event.type == "track" and event.event and event.event not in self._landing_events:
                    new_events[event.event] = table
                    recorded = False
                for column, path, kind in found:
                    key = (table, column)
                    stored_column = self._landing_columns.get(key)
                    if stored_column is None or landing.merge_type(stored_column.data_type, kind) != (
                        stored_column.data_type
                    ):
                        recorded = False
                    known = new_columns.get(key) or stored_column
                    if known is None:
                        new_columns[key] = landing.LandingColumn(table, column, path, kind)
                    elif landing.merge_type(known.data_type, kind) != known.data_type:
                        new_columns[key] = landing.LandingColumn(
                            table, column, known.json_path, landing.merge_type(known.data_type, kind)
                        )
                if recorded and shape is not _NO_SHAPE:
                    if len(settled) >= _MAX_SETTLED_SHAPES:
                        settled.clear()
                    settled.add(shape)
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
