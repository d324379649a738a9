"""Reading the event log back, in order, for the processing pipeline (the conductor in pipeline.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

import orjson

from orchestrion.collect.event import NormalizedEvent
from orchestrion.store.ports import StoredEvent


class _SqlAccess(Protocol):
    def _read(self) -> AbstractContextManager[Any]: ...

    def _sql(self, text: str) -> str: ...


class EventLogSqlMixin:
    """Mixed into the SQL stores: `read_events_after` and the processing checkpoints."""

    def read_events_after(self: _SqlAccess, position: int, limit: int = 1000) -> list[StoredEvent]:
        with self._read() as cur:
            cur.execute(
                self._sql(
                    'SELECT seq, source, message_id, type, event, user_id, anonymous_id, "timestamp", '
                    "original_timestamp, sent_at, received_at, CAST(payload AS VARCHAR) FROM events "
                    f"WHERE seq > %s ORDER BY seq LIMIT {int(limit)}"
                ),
                [position],
            )
            rows = cur.fetchall()
        return list(_stored(rows))

    def events_by_keys(self: _SqlAccess, keys: list[tuple[str, str]]) -> list[StoredEvent]:
        return events_by_keys(self, keys)

    def processing_position(self: _SqlAccess, name: str) -> int:
        with self._read() as cur:
            cur.execute(self._sql("SELECT position FROM process_checkpoints WHERE name = %s"), [name])
            row = cur.fetchone()
        return int(row[0]) if row else 0


def _stored(rows: list[tuple[Any, ...]]) -> Iterator[StoredEvent]:
    for row in rows:
        yield StoredEvent(
            seq=int(row[0]),
            event=NormalizedEvent(
                source=row[1],
                message_id=row[2],
                type=row[3],
                event=row[4],
                user_id=row[5],
                anonymous_id=row[6],
                timestamp=row[7],
                original_timestamp=row[8],
                sent_at=row[9],
                received_at=row[10],
                payload=orjson.loads(row[11]),
            ),
        )


def events_by_keys(store: _SqlAccess, keys: list[tuple[str, str]]) -> list[StoredEvent]:
    """The stored events with these (source, messageId) keys, in log order."""
    if not keys:
        return []
    with store._read() as cur:
        cur.execute(
            store._sql(
                'SELECT seq, source, message_id, type, event, user_id, anonymous_id, "timestamp", '
                "original_timestamp, sent_at, received_at, CAST(payload AS VARCHAR) FROM events "
                "WHERE (source || chr(31) || message_id) IN (SELECT unnest(%s::VARCHAR[])) ORDER BY seq"
            ),
            [[f"{source}\x1f{message_id}" for source, message_id in keys]],
        )
        rows = cur.fetchall()
    return list(_stored(rows))
