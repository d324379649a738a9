"""The event store on DuckDB and PostgreSQL: dedup, quarantine, landing views, the read-only gate, pruning."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from orchestrion.collect.event import NormalizedEvent, Problem, QuarantinedEvent
from orchestrion.collect.normalize import RequestMeta, normalize
from orchestrion.errors import QueryRejected
from orchestrion.store import open_store
from orchestrion.store.ports import EventStore, IngestBatch
from orchestrion.store.sql_text import migration_files

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def event(message_id: str, *, source: str = "web", received: dt.datetime = NOW, **fields: Any) -> NormalizedEvent:
    item = {"type": "track", "event": "Workout Completed", "userId": "u1", "messageId": message_id, **fields}
    outcome = normalize(item, RequestMeta(source=source, received_at=received, ip="203.0.113.9"))
    assert isinstance(outcome, NormalizedEvent), outcome
    return outcome


def batch(*events: NormalizedEvent, quarantined: list[QuarantinedEvent] | None = None) -> IngestBatch:
    return IngestBatch(events=list(events), quarantined=quarantined or [])


def rows(store: EventStore, sql: str) -> list[tuple[Any, ...]]:
    return store.query(sql).rows


def as_json(value: Any) -> Any:
    """JSON columns come back as text from DuckDB and as objects from PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value


# -- append and dedup ---------------------------------------------------------------------------------
def test_append_stores_events_with_their_columns(store: EventStore) -> None:
    (outcome,) = store.append([batch(event("m1"), event("m2", anonymousId="a1", userId=None))])
    assert (outcome.accepted, outcome.deduplicated, outcome.quarantined) == (2, 0, 0)
    stored = rows(store, "select message_id, source, type, event, user_id, anonymous_id from events order by 1")
    assert stored == [
        ("m1", "web", "track", "Workout Completed", "u1", None),
        ("m2", "web", "track", "Workout Completed", None, "a1"),
    ]
    ((received,),) = rows(store, "select received_at from events where message_id = 'm1'")
    assert received == NOW


def test_dedup_within_a_batch_across_batches_and_across_calls(store: EventStore) -> None:
    first, second = store.append([batch(event("m1"), event("m1"), event("m2")), batch(event("m2"), event("m3"))])
    assert (first.accepted, first.deduplicated) == (2, 1)
    assert (second.accepted, second.deduplicated) == (1, 1)
    (retry,) = store.append([batch(event("m1"), event("m2"), event("m3"), event("m4"))])
    assert (retry.accepted, retry.deduplicated) == (1, 3)
    assert rows(store, "select count(*), count(distinct message_id) from events") == [(4, 4)]


def test_the_first_copy_of_a_duplicate_is_the_one_kept(store: EventStore) -> None:
    store.append([batch(event("m1", properties={"v": 1})), batch(event("m1", properties={"v": 2}))])
    ((payload,),) = rows(store, "select payload from events")
    assert as_json(payload)["properties"] == {"v": 1}


def test_the_same_message_id_in_two_sources_is_two_events(store: EventStore) -> None:
    (outcome,) = store.append([batch(event("m1", source="web"), event("m1", source="app"))])
    assert outcome.accepted == 2
    assert rows(store, "select source from events order by source") == [("app",), ("web",)]


def test_prune_dedup_forgets_old_keys_only(store: EventStore) -> None:
    old = NOW - dt.timedelta(days=10)
    store.append([batch(event("old", received=old), event("new"))])
    assert store.prune_dedup(NOW - dt.timedelta(days=7)) == 1
    (outcome,) = store.append([batch(event("old"), event("new"))])
    # the old key was forgotten: a retry that late is stored again; the recent one is still a duplicate
    assert (outcome.accepted, outcome.deduplicated) == (1, 1)
    assert store.prune_dedup(NOW - dt.timedelta(days=7)) == 0


# -- quarantine ---------------------------------------------------------------------------------------
def quarantined(index: int, message_id: str | None, kind: str = "invalid") -> QuarantinedEvent:
    return QuarantinedEvent(
        source="web",
        kind=kind,
        batch_index=index,
        message_id=message_id,
        event="Workout Completed" if message_id else None,
        reasons=[Problem("Required-Missing", "/userId", "event has neither userId nor anonymousId")],
        raw={"type": "track", "event": "Workout Completed", "messageId": message_id, "n": [1, "ü"]},
        received_at=NOW,
    )


def test_quarantine_keeps_reasons_index_message_id_and_raw(store: EventStore) -> None:
    (outcome,) = store.append([batch(event("ok"), quarantined=[quarantined(1, "bad-1"), quarantined(2, None)])])
    assert (outcome.accepted, outcome.quarantined) == (1, 2)
    pending = store.pending_quarantine()
    assert [(r.source, r.kind, r.batch_index, r.message_id) for r in pending] == [
        ("web", "invalid", 1, "bad-1"),
        ("web", "invalid", 2, None),
    ]
    assert pending[0].reasons == [
        {"code": "Required-Missing", "field": "/userId", "message": "event has neither userId nor anonymousId"}
    ]
    assert pending[0].raw["n"] == [1, "ü"]
    assert pending[0].received_at == NOW
    assert store.pending_quarantine(source="app") == []
    store.mark_replayed([pending[0].id], NOW)
    assert [r.message_id for r in store.pending_quarantine()] == [None]
    assert rows(store, "select count(*) from quarantine where replayed_at is not null") == [(1,)]


def test_quarantine_written_with_no_good_events(store: EventStore) -> None:
    (outcome,) = store.append([batch(quarantined=[quarantined(0, "b", kind="blocked")])])
    assert (outcome.accepted, outcome.quarantined) == (0, 1)
    assert rows(store, "select kind, event from quarantine") == [("blocked", "Workout Completed")]


# -- landing views ------------------------------------------------------------------------------------
def test_tracks_view_has_the_standard_columns(store: EventStore) -> None:
    store.append(
        [
            batch(
                event(
                    "m1",
                    channel="web",
                    context={"library": {"name": "analytics.js"}, "page": {"path": "/pricing"}},
                    originalTimestamp=(NOW - dt.timedelta(seconds=5)).isoformat(),
                )
            )
        ]
    )
    result = store.query(
        "select id, message_id, user_id, event, event_text, channel, context_ip, context_library_name, "
        "context_page_path, timestamp, received_at from tracks"
    )
    assert result.rows == [
        (
            "m1",
            "m1",
            "u1",
            "Workout Completed",
            "Workout Completed",
            "web",
            "203.0.113.9",
            "analytics.js",
            "/pricing",
            NOW - dt.timedelta(seconds=5),
            NOW,
        )
    ]


def test_identifies_view_has_trait_columns(store: EventStore) -> None:
    identify = normalize(
        {"type": "identify", "userId": "u1", "messageId": "i1", "traits": {"email": "a@b.c", "age": 33}},
        RequestMeta(source="web", received_at=NOW, ip=None),
    )
    rudder_identify = normalize(
        {"type": "identify", "userId": "u2", "messageId": "i2", "context": {"traits": {"email": "d@e.f"}}},
        RequestMeta(source="web", received_at=NOW, ip=None),
    )
    assert isinstance(identify, NormalizedEvent) and isinstance(rudder_identify, NormalizedEvent)
    store.append([batch(identify, rudder_identify)])
    assert rows(store, "select user_id, email, age + 1 from identifies order by user_id") == [
        ("u1", "a@b.c", 34.0),
        ("u2", "d@e.f", None),
    ]


def test_per_event_views_have_typed_property_columns(store: EventStore) -> None:
    store.append(
        [
            batch(
                event("m1", properties={"durationMin": 30, "indoor": True, "coach": {"name": "Ann"}}),
                event("m2", properties={"durationMin": 45.5, "indoor": False}),
                event("m3", event="Signed Up", properties={"plan": "pro"}),
            )
        ]
    )
    assert rows(store, "select sum(duration_min), count(*) from workout_completed where not indoor") == [(45.5, 1)]
    assert rows(store, "select message_id, coach_name from workout_completed order by 1") == [
        ("m1", "Ann"),
        ("m2", None),
    ]
    assert rows(store, "select plan, event from signed_up") == [("pro", "Signed Up")]
    schema = store.describe_schema()
    assert {"tracks", "identifies", "pages", "screens", "groups", "aliases", "workout_completed"} <= set(schema)
    types = dict(schema["workout_completed"])
    assert types["duration_min"].lower() in ("double", "double precision")
    assert types["indoor"].lower() == "boolean"


def test_a_property_whose_type_changes_widens_to_text_and_the_view_still_works(store: EventStore) -> None:
    store.append([batch(event("m1", properties={"size": 10}))])
    assert rows(store, "select size * 2 from workout_completed") == [(20.0,)]
    store.append([batch(event("m2", properties={"size": "large"}))])
    assert rows(store, "select message_id, size from workout_completed order by 1") == [("m1", "10"), ("m2", "large")]
    assert dict(store.describe_schema()["workout_completed"])["size"].lower() in ("varchar", "text")


def test_event_names_that_snake_case_alike_share_one_view(store: EventStore) -> None:
    store.append([batch(event("m1", event="Order Placed"), event("m2", event="order_placed"))])
    assert rows(store, "select event from order_placed order by 1") == [("Order Placed",), ("order_placed",)]


def test_landing_views_survive_reopening(store: EventStore, database_url: str) -> None:
    store.append([batch(event("m1", properties={"durationMin": 30}))])
    store.close()
    reopened = open_store(database_url)
    try:
        reopened.append([batch(event("m2", event="Other"))])
        assert rows(reopened, "select duration_min from workout_completed") == [(30.0,)]
        assert rows(reopened, "select count(*) from tracks") == [(2,)]
    finally:
        reopened.close()


# -- the read-only gate ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sql",
    [
        "insert into events select * from events",
        "delete from message_ids",
        "drop view tracks",
        "update quarantine set kind = 'x'",
        "select 1; delete from events",
        "select setval('events_seq', 1)",
        "create table stolen as select * from events",
    ],
)
def test_query_refuses_writes(store: EventStore, sql: str) -> None:
    store.append([batch(event("m1"))])
    with pytest.raises(QueryRejected):
        store.query(sql)
    assert rows(store, "select count(*) from events") == [(1,)]
    assert rows(store, "select count(*) from message_ids") == [(1,)]
    assert "tracks" in store.describe_schema()


def test_query_errors_are_rejections_and_rows_are_capped(store: EventStore) -> None:
    with pytest.raises(QueryRejected):
        store.query("select no_such_column from events")
    store.append([batch(*(event(f"m{i}") for i in range(5)))])
    result = store.query("select message_id from events order by 1", max_rows=3)
    assert result.truncated
    assert result.rows == [("m0",), ("m1",), ("m2",)]
    assert result.columns == ["message_id"]


def test_row_locks_are_refused_by_the_engine(store: EventStore) -> None:
    # the gate lets SELECT ... FOR UPDATE through; PostgreSQL's read-only transaction refuses it
    store.append([batch(event("m1"))])
    with pytest.raises(QueryRejected):
        store.query("select * from message_ids for update")


# -- contracts in force and schema ------------------------------------------------------------------------
def test_recorded_contracts_round_trip_and_replace(store: EventStore) -> None:
    assert store.recorded_contracts() == {}
    schema_v1 = {"type": "object", "required": ["plan"], "properties": {"plan": {"type": "string"}}}
    store.record_contracts([("track", "Signed Up", 1, "h1", schema_v1), ("identify", "identify", 1, "h2", {})])
    assert store.recorded_contracts() == {("track", "Signed Up", 1): schema_v1, ("identify", "identify", 1): {}}
    schema_v1b = {**schema_v1, "description": "now documented"}
    store.record_contracts([("track", "Signed Up", 1, "h3", schema_v1b)])
    assert store.recorded_contracts()[("track", "Signed Up", 1)] == schema_v1b
    assert rows(store, "select schema_hash from contract_versions where name = 'Signed Up'") == [("h3",)]


def test_schema_version_is_the_latest_migration(store: EventStore) -> None:
    assert store.schema_version() == migration_files()[-1][0]
    store.ping()
