"""Profiles through a running server: send Segment-shaped events from a source, wait until processing has caught
up, then read profiles, timelines and tables the way an operator would.

Event times are given explicitly (`timestamp` without `sentAt`), so the stored event time is exactly the one sent
and tests can reason about event-time order independently of arrival order.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from orchestrion.collect.event import NormalizedEvent
from orchestrion.collect.normalize import RequestMeta, normalize
from orchestrion.store.ports import EventStore, IngestBatch
from tests.e2e.support_database import server_database
from tests.support.server import DEFAULT_WORKSPACE, ServerProcess, start_server

WEB_KEY = "wk_web_test_0001"
APP_KEY = "wk_app_test_0001"
BASE_TIME = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
# The default test workspace plus consent settings: Segment consent categories and an EU opt-in rule for email.
PROFILE_WORKSPACE = (
    DEFAULT_WORKSPACE
    + """\
consent:
  category_mapping:
    Advertising: [{channel: "*", purpose: marketing}]
    SmsMarketing: [{channel: sms, purpose: marketing}]
  defaults:
    regions:
      - {name: eu_email, countries: [EU], channel: email, purpose: marketing, granted: false}
"""
)


def at(minute: float) -> dt.datetime:
    """An event time `minute` minutes after a fixed instant in the past."""
    return BASE_TIME + dt.timedelta(minutes=minute)


def iso(instant: dt.datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def tag() -> str:
    """A short random label: each test names its ids and messageIds with its own, so tests never share a profile."""
    return uuid.uuid4().hex[:10]


def event(kind: str, message_id: str, minute: float, **fields: Any) -> dict[str, Any]:
    """One Segment call with an explicit event time."""
    return {"type": kind, "messageId": message_id, "timestamp": iso(at(minute)), **fields}


def track(message_id: str, minute: float, name: str, **fields: Any) -> dict[str, Any]:
    return event("track", message_id, minute, event=name, **fields)


def identify(message_id: str, minute: float, **fields: Any) -> dict[str, Any]:
    return event("identify", message_id, minute, **fields)


def alias(message_id: str, minute: float, previous_id: str, user_id: str, **fields: Any) -> dict[str, Any]:
    return event("alias", message_id, minute, previousId=previous_id, userId=user_id, **fields)


def ref(reference: str) -> str:
    """A profile reference as a URL path segment."""
    return quote(reference, safe=":@")


class ProfileApi:
    """The admin and ingestion faces of one server, as a test uses them."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.admin = server.admin()
        self.public = httpx.Client(base_url=server.url, timeout=30)

    def close(self) -> None:
        self.admin.close()
        self.public.close()

    def send(self, write_key: str, *events: dict[str, Any]) -> httpx.Response:
        response = self.public.post("/v1/batch", json={"batch": list(events)}, auth=(write_key, ""))
        assert response.status_code == 200, response.text
        return response

    def settle(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until processing has taken every stored event (lag 0); the pipeline status then."""
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, Any] = self.admin.get("/api/pipeline").json()
            assert status["last_error"] is None, status
            if status["lag"] == 0 and status["position"] >= status["head"]:
                return status
            assert time.monotonic() < deadline, f"processing did not catch up within {timeout}s: {status}"
            time.sleep(0.05)

    def deliver(self, write_key: str, *events: dict[str, Any]) -> None:
        """Send, then wait until the events went through processing."""
        self.send(write_key, *events)
        self.settle()

    def profile(self, reference: str) -> dict[str, Any]:
        response = self.admin.get(f"/api/profiles/{ref(reference)}")
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document

    def profile_id(self, reference: str) -> str:
        return str(self.profile(reference)["profile_id"])

    def timeline(self, reference: str, **params: Any) -> dict[str, Any]:
        response = self.admin.get(f"/api/profiles/{ref(reference)}/timeline", params=params)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        return page

    def timeline_ids(self, reference: str) -> list[str]:
        """The messageIds of the profile's whole timeline, newest first."""
        return [item["message_id"] for item in self.timeline(reference, limit=1000)["items"]]

    def query(self, sql: str) -> list[list[Any]]:
        """Rows of a read-only statement through `/api/query` (all of them: a truncated answer fails the test)."""
        response = self.admin.post("/api/query", json={"sql": sql, "max_rows": 100_000})
        assert response.status_code == 200, response.text
        body = response.json()
        assert not body["truncated"], sql
        rows: list[list[Any]] = body["rows"]
        return rows


@contextmanager
def profile_server(backend: str, root: Path, workspace_yaml: str | None = None) -> Iterator[ProfileApi]:
    """A server on `backend` with a fresh database of its own, for as many tests as share it."""
    with server_database(backend) as database_url:
        server = start_server(root, workspace_yaml=workspace_yaml, database_url=database_url)
        api = ProfileApi(server)
        try:
            yield api
        finally:
            api.close()
            server.stop()


def quoted(values: list[str]) -> str:
    """A SQL list of string literals (test values are plain: no quotes inside)."""
    assert all("'" not in v for v in values)
    return ", ".join(f"'{v}'" for v in values)


def store_events(store: EventStore, source: str, *items: dict[str, Any]) -> None:
    """Append events to the log as the gateway would (normalized, one transaction), with no server running."""
    meta = RequestMeta(source=source, received_at=dt.datetime.now(dt.UTC), ip="127.0.0.1")
    events = []
    for item in items:
        normalized = normalize(item, meta)
        assert isinstance(normalized, NormalizedEvent), normalized
        events.append(normalized)
    store.append([IngestBatch(events=events)])


def table_texts(query: Callable[[str], list[list[Any]]]) -> dict[str, list[str]]:
    """Every row of every table and view of every schema but the catalog's, each as its JSON text (lower case)."""
    names = query(
        "select table_schema, table_name from information_schema.tables "
        "where table_schema not in ('information_schema', 'pg_catalog') order by 1, 2"
    )
    assert len(names) > 10, names  # the event log, identity, consent and landing tables at least
    return {
        f"{schema}.{name}": [
            json.dumps(row, default=str, ensure_ascii=False).lower()
            for row in query(f'select * from "{schema}"."{name}"')
        ]
        for schema, name in names
    }


def traces(texts: dict[str, list[str]], values: list[str]) -> list[tuple[str, str, str]]:
    """(table, value, row) for every row that still contains one of `values` (case-insensitive)."""
    return [
        (table, value, row[:300])
        for table, rows in texts.items()
        for row in rows
        for value in values
        if value.lower() in row
    ]
