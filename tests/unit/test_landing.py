"""Warehouse landing: names, flattened columns and type widening, as a warehouse user would see them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from orchestrion.collect.event import NormalizedEvent
from orchestrion.collect.normalize import RequestMeta, normalize
from orchestrion.store.landing import (
    RESERVED_NAMES,
    STANDARD_TABLES,
    LandingColumn,
    discover,
    event_table_name,
    json_type,
    merge_type,
    snake_case,
    view_sql,
)


def event(**fields: Any) -> NormalizedEvent:
    item = {"userId": "u1", **fields}
    outcome = normalize(item, RequestMeta(source="app", received_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), ip=None))
    assert isinstance(outcome, NormalizedEvent), outcome
    return outcome


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Workout Completed", "workout_completed"),
        ("workoutCompleted", "workout_completed"),
        ("Order-Placed (v2)", "order_placed_v2"),
        ("  spaced  out  ", "spaced_out"),
        ("3ds_viewed", "_3ds_viewed"),
        ("🎉", "unnamed"),
        ("ÜberCool", "ber_cool"),
        ("x" * 80, "x" * 60),
    ],
)
def test_snake_case(name: str, expected: str) -> None:
    assert snake_case(name) == expected


def test_event_views_never_take_a_reserved_name() -> None:
    assert event_table_name("Tracks") == "tracks_event"
    assert event_table_name("identifies") == "identifies_event"
    assert event_table_name("Events") == "events_event"
    assert event_table_name("schema migrations") == "schema_migrations_event"
    assert event_table_name("Signed Up") == "signed_up"
    assert set(STANDARD_TABLES.values()) <= RESERVED_NAMES


def test_json_types() -> None:
    assert [json_type(v) for v in ("a", 1, 1.5, True, [1], {"a": 1}, None)] == [
        "string",
        "number",
        "number",
        "boolean",
        "json",
        "json",
        None,
    ]


def test_track_properties_flatten_into_columns_under_the_event_view() -> None:
    table, columns = discover(
        event(
            type="track",
            event="Workout Completed",
            properties={
                "durationMin": 30,
                "Plan Name": "pro",
                "coach": {"name": "Ann", "rating": {"stars": 5, "detail": {"deep": 1}}},
                "tags": ["a", "b"],
                "done": True,
                "missing": None,
            },
        )
    )
    assert table == "workout_completed"
    assert sorted(columns) == [
        ("coach_name", "properties.coach.name", "string"),
        ("coach_rating_detail", "properties.coach.rating.detail", "json"),  # past 3 levels: kept as JSON
        ("coach_rating_stars", "properties.coach.rating.stars", "number"),
        ("done", "properties.done", "boolean"),
        ("duration_min", "properties.durationMin", "number"),
        ("plan_name", "properties.Plan Name", "string"),
        ("tags", "properties.tags", "json"),
    ]


def test_keys_that_cannot_be_addressed_safely_are_not_flattened() -> None:
    _, columns = discover(event(type="track", event="X", properties={"it's": 1, 'q"uote': 2, "ok": 3, "": 4}))
    assert columns == [("ok", "properties.ok", "number")]


def test_identify_and_group_flatten_traits_and_context_traits_into_their_view() -> None:
    table, columns = discover(event(type="identify", traits={"email": "a@b.c"}, context={"traits": {"age": 30}}))
    assert table == "identifies"
    # RudderStack sends identify traits in context.traits, Segment at the top: both land as `traits.*` columns
    assert sorted(columns) == [("age", "traits.age", "number"), ("email", "traits.email", "string")]
    sql = view_sql("identifies", "identify", [LandingColumn("identifies", "age", "traits.age", "number")])
    assert (
        "coalesce(CAST(json_extract_string(payload, '$.traits.age') AS DOUBLE), "
        "CAST(json_extract_string(payload, '$.context.traits.age') AS DOUBLE)) AS age"
    ) in sql
    table, columns = discover(event(type="group", groupId="g1", traits={"employees": 12}))
    assert (table, columns) == ("groups", [("employees", "traits.employees", "number")])


def test_pages_flatten_properties_and_aliases_have_none() -> None:
    assert discover(event(type="page", name="Pricing", properties={"path": "/p"})) == (
        "pages",
        [("path", "properties.path", "string")],
    )
    assert discover(event(type="alias", previousId="anon-1")) == ("aliases", [])


def test_types_widen_to_string_or_json() -> None:
    assert merge_type("number", "number") == "number"
    assert merge_type("number", "string") == "string"
    assert merge_type("boolean", "number") == "string"
    assert merge_type("string", "json") == "json"
    assert merge_type("json", "number") == "json"


def test_view_sql_selects_standard_context_and_typed_property_columns() -> None:
    sql = view_sql(
        "workout_completed",
        "track",
        [
            LandingColumn("workout_completed", "duration_min", "properties.durationMin", "number"),
            LandingColumn("workout_completed", "plan_name", "properties.Plan Name", "string"),
            LandingColumn("workout_completed", "user_id", "properties.user_id", "string"),  # clashes: renamed
        ],
        ["Workout Completed", "workoutCompleted", "it's"],
    )
    assert sql.startswith("CREATE VIEW workout_completed AS SELECT message_id AS id, message_id, source, user_id")
    assert "CAST(json_extract_string(payload, '$.properties.durationMin') AS DOUBLE) AS duration_min" in sql
    assert """json_extract_string(payload, '$.properties."Plan Name"') AS plan_name""" in sql
    assert "AS property_user_id" in sql
    assert "AS context_page_url" in sql
    assert "AS context_violations" in sql
    assert "WHERE type = 'track' AND event IN ('Workout Completed', 'it''s', 'workoutCompleted')" in sql
