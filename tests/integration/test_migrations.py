"""Migrating from the first schema version gives exactly the schema of a fresh install, on each backend."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from orchestrion.collect.event import NormalizedEvent
from orchestrion.collect.normalize import RequestMeta, normalize
from orchestrion.store import open_store
from orchestrion.store.ports import EventStore, IngestBatch
from orchestrion.store.sql_text import migration_files
from tests.conftest import PG_ADMIN_URL

LATEST = migration_files()[-1][0]


@pytest.fixture(params=["duckdb", "postgres"])
def empty_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two empty databases on one backend: one for the fresh install, one for the migration path."""
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'fresh.duckdb'}", f"duckdb:///{tmp_path / 'migrated.duckdb'}"
    else:
        first = request.getfixturevalue("empty_pg_url")
        # a second empty database beside the one the fixture made (and drops)
        base, _, name = first.rpartition("/")
        second = f"{name}_m"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {second}")
        try:
            yield first, f"{base}/{second}"
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {second} WITH (FORCE)")


def keys(store: EventStore) -> list[tuple[str, ...]]:
    """Primary-key columns of every table: describe_schema does not show them, the migration must keep them."""
    schema = "main" if store.capabilities.name == "duckdb" else "public"
    result = store.read(
        "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc "
        "JOIN information_schema.key_column_usage kcu ON tc.constraint_name = kcu.constraint_name "
        "AND tc.table_name = kcu.table_name "
        f"WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = '{schema}' "
        "ORDER BY 1, 2"
    )
    return [tuple(str(v) for v in row) for row in result.rows]


def applied(store: EventStore) -> list[tuple[int, str]]:
    return [(int(r[0]), str(r[1])) for r in store.read("SELECT version, name FROM schema_migrations ORDER BY 1").rows]


def test_migrating_from_the_first_version_equals_a_fresh_install(empty_urls: tuple[str, str]) -> None:
    fresh_url, migrated_url = empty_urls
    fresh = open_store(fresh_url, migrate=False)
    migrated = open_store(migrated_url, migrate=False)
    try:
        fresh.migrate()
        migrated.migrate(upto=1)
        assert migrated.schema_version() == 1
        assert applied(migrated) == [migration_files()[0]]
        assert migrated.describe_schema() != fresh.describe_schema()  # the test compares different histories
        migrated.migrate(via_migrations=True)

        assert migrated.schema_version() == fresh.schema_version() == LATEST
        assert applied(migrated) == applied(fresh) == migration_files()
        assert migrated.describe_schema() == fresh.describe_schema()
        assert keys(migrated) == keys(fresh)
        assert ("message_ids", "message_id") in keys(fresh)
        assert {"events", "message_ids", "quarantine", "tracks", "identifies"} <= set(fresh.describe_schema())
    finally:
        fresh.close()
        migrated.close()


def test_migrating_again_changes_nothing_and_keeps_the_events(empty_urls: tuple[str, str]) -> None:
    _, url = empty_urls
    store = open_store(url, migrate=False)
    try:
        store.migrate(upto=1)
        item = {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m1"}
        received = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        event = normalize(item, RequestMeta(source="web", received_at=received, ip=None))
        assert isinstance(event, NormalizedEvent)
        (outcome,) = store.append([IngestBatch(events=[event])])  # the landing tables do not exist yet
        assert outcome.accepted == 1
        store.migrate(via_migrations=True)
        schema = store.describe_schema()
        store.migrate()
        store.migrate(via_migrations=True)
        assert store.describe_schema() == schema
        assert store.schema_version() == LATEST
        assert store.query("SELECT message_id, event FROM tracks").rows == [("m1", "Signed Up")]
        (again,) = store.append([IngestBatch(events=[event])])
        assert (again.accepted, again.deduplicated) == (0, 1)
    finally:
        store.close()
