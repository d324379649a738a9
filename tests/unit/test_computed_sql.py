"""Computed traits compiled to SQL: the streamed value equals the SQL value after any history (hypothesis, DuckDB
in memory and PostgreSQL), the SQL transpiles, and reconciliation reports drift."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import orjson
import psycopg
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrion.collect.event import NormalizedEvent
from orchestrion.model.computed import (
    ComputedTrait,
    Drift,
    TraitState,
    compile_history_sql,
    compile_sql,
    empty_state,
    history_rows,
    merge,
    prune,
    rebuild,
    reconcile,
    update,
    value,
    window_bounds,
)
from orchestrion.store.sql_text import packaged_sql, transpile

BASE = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
PROFILES = ("p0", "p1", "p2", "p3")
SHARED_INSTANTS = [BASE + dt.timedelta(days=44, hours=h) for h in (0, 12, 23)]


# --- histories -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Happened:
    """One stored event: who it resolved to first, and its content."""

    profile: int
    event: NormalizedEvent


@dataclass(frozen=True)
class History:
    trait: ComputedTrait
    events: list[Happened]
    deliveries: list[tuple[dt.datetime, int]]  # (arrival instant, index into events), in arrival order
    merge: tuple[int, int, int] | None  # (merged profile, survivor profile, before delivery number)
    as_of: dt.datetime


FILTERS = [
    None,
    None,
    "event.properties.n > 2",
    'event.properties.kind == "run" || !has(event.properties.n)',
    'event.context.os.name in ["iOS", "Android"] && event.properties.flag',
    'event.properties.kind.startsWith("r")',
]
numbers = st.one_of(st.integers(-20, 40), st.integers(-400, 400).map(lambda c: c / 4))
scalars = st.one_of(numbers, st.sampled_from(["run", "yoga", "ride", "Run", "é"]), st.booleans(), st.none())


@st.composite
def traits(draw: st.DrawFn) -> ComputedTrait:
    aggregate = draw(st.sampled_from(["count", "sum", "min", "max", "first", "last", "distinct_count"]))
    if aggregate == "count":
        prop = draw(st.sampled_from([None, None, "n"]))
    elif aggregate in ("sum", "min", "max"):
        prop = draw(st.sampled_from(["n", "nested.v"]))
    else:
        prop = draw(st.sampled_from(["n", "kind", "nested.v"]))
    return ComputedTrait(
        name="trait_under_test",
        aggregate=aggregate,
        event=draw(st.sampled_from(["Workout Completed", "Workout Completed", None])),
        property=prop,
        window=draw(st.sampled_from(["all", "all", "1d", "3d", "14d", "6h", "48h"])),
        filter=draw(st.sampled_from(FILTERS)),
    )


@st.composite
def events(draw: st.DrawFn, index: int) -> Happened:
    # most events in the last few days (so windows hold some), others up to 45 days back (all-time folding);
    # a third share one of three instants, so first/last meet ties broken by message_id
    spread = BASE + dt.timedelta(
        days=draw(st.one_of(st.integers(42, 45), st.integers(0, 45))),
        hours=draw(st.integers(0, 23)),
        seconds=draw(st.sampled_from([0, 1, 1799])),
    )
    at = draw(st.one_of(st.just(spread), st.just(spread), st.sampled_from(SHARED_INSTANTS)))
    properties: dict[str, Any] = {}
    for key in ("n", "kind", "flag"):
        if draw(st.booleans()):
            properties[key] = draw(scalars)
    if draw(st.booleans()):
        properties["nested"] = draw(st.one_of(st.fixed_dictionaries({"v": scalars}), scalars))
    context: dict[str, Any] = {}
    if draw(st.booleans()):
        context["os"] = {"name": draw(st.sampled_from(["iOS", "Android", "web"]))}
    kind = draw(st.sampled_from(["track"] * 6 + ["page"]))
    name = draw(st.sampled_from(["Workout Completed", "Workout Completed", "Plan Viewed"])) if kind == "track" else None
    # few sources and short, mixed-case ids: ties on time and message_id ordering are exercised
    source = draw(st.sampled_from(["app", "web"]))
    message_id = draw(st.text(st.sampled_from("aBé-1"), min_size=1, max_size=2)) + f"#{index}"
    payload: dict[str, Any] = {"type": kind, "messageId": message_id, "properties": properties, "context": context}
    if name is not None:
        payload["event"] = name
    event = NormalizedEvent(
        source=source,
        message_id=message_id,
        type=kind,
        event=name,
        user_id="u",
        anonymous_id=None,
        timestamp=at,
        original_timestamp=at,
        sent_at=at,
        received_at=at,
        payload=payload,
    )
    return Happened(draw(st.integers(0, len(PROFILES) - 1)), event)


@st.composite
def histories(draw: st.DrawFn) -> History:
    trait = draw(traits())
    count = draw(st.integers(1, 18))
    happened = [draw(events(i)) for i in range(count)]
    present = max(h.event.timestamp for h in happened) + dt.timedelta(hours=1)
    # every event arrives at least once, some again (a replay): on time, late (up to 20 days, but before the
    # present), or ahead of its own timestamp (a device clock running fast)
    arrivals = list(range(count)) + draw(st.lists(st.integers(0, count - 1), max_size=4))
    deliveries = []
    for index in arrivals:
        at = happened[index].event.timestamp
        mode = draw(st.sampled_from(["on time", "late", "ahead"]))
        if mode == "on time":
            arrival = at + dt.timedelta(minutes=draw(st.integers(0, 180)))
        elif mode == "late":
            arrival = at + min(present - at, dt.timedelta(days=20)) * draw(st.floats(0, 1))
        else:
            arrival = at - dt.timedelta(minutes=draw(st.integers(1, 24 * 60)))
        deliveries.append((arrival, index))
    deliveries.sort()
    merge_plan = None
    if draw(st.booleans()):
        merge_plan = (
            draw(st.sampled_from([2, 3])),
            draw(st.sampled_from([0, 1])),
            draw(st.integers(0, len(deliveries))),
        )
    as_of = max(present, deliveries[-1][0]) + dt.timedelta(hours=draw(st.integers(0, 30)))
    return History(trait, happened, deliveries, merge_plan, as_of)


# --- running a history on the stream and in SQL ----------------------------------------------------------------


def stream(history: History) -> dict[str, Any]:
    """What the pipeline does: resolve, prune to the arrival instant, update; merge states when profiles merge."""
    trait = history.trait
    states: dict[int, TraitState] = {}
    merged_into: dict[int, int] = {}
    for position, (arrival, index) in enumerate([*history.deliveries, (history.as_of, -1)]):
        if history.merge is not None and history.merge[2] == position:
            gone, survivor = history.merge[0], history.merge[1]
            merged_into[gone] = survivor
            if gone in states:
                taken = states.pop(gone)
                states[survivor] = merge(states[survivor], taken, trait) if survivor in states else taken
        if index < 0:
            break
        happened = history.events[index]
        profile = merged_into.get(happened.profile, happened.profile)
        state = prune(states.get(profile) or empty_state(trait), trait, arrival)
        states[profile] = update(state, happened.event, trait)
    return {PROFILES[p]: value(state, trait, history.as_of) for p, state in states.items()}


def links(history: History) -> list[tuple[int, str]]:
    """(event index, profile id) as identity_links holds them: the profile the event resolved to when first seen."""
    first_seen: dict[int, str] = {}
    merged = False
    for position, (_, index) in enumerate(history.deliveries):
        if history.merge is not None and history.merge[2] == position:
            merged = True
        if index in first_seen:
            continue
        profile = history.events[index].profile
        if merged and history.merge is not None and profile == history.merge[0]:
            profile = history.merge[1]
        first_seen[index] = PROFILES[profile]
    return sorted(first_seen.items())


Execute = Callable[[str, list[Any]], None]  # one statement with psycopg-style %s parameters


def load(history: History, execute: Execute) -> None:
    """Replace the three tables' rows with the history's events, links and merge (one statement per table)."""
    execute("DELETE FROM events", [])
    execute("DELETE FROM identity_links", [])
    execute("DELETE FROM profile_merges", [])
    stored = [h.event for h in history.events]
    _insert(execute, "events (seq, source, message_id, type, event, user_id, anonymous_id, timestamp, "
            "original_timestamp, sent_at, received_at, payload)",
            [[i, e.source, e.message_id, e.type, e.event, e.user_id, None, e.timestamp, e.timestamp, e.timestamp,
              e.timestamp, orjson.dumps(e.payload).decode()] for i, e in enumerate(stored)])  # fmt: skip
    _insert(
        execute,
        "identity_links",
        [[i, stored[i].source, stored[i].message_id, stored[i].timestamp, "{}", None, p] for i, p in links(history)],
    )
    if history.merge is not None:
        merge_row = [PROFILES[history.merge[0]], PROFILES[history.merge[1]], "test", None, BASE, BASE]
        _insert(execute, "profile_merges", [merge_row])


def _insert(execute: Execute, table: str, rows: list[list[Any]]) -> None:
    placeholders = ", ".join("(" + ", ".join(["%s"] * len(row)) + ")" for row in rows)
    execute(f"INSERT INTO {table} VALUES {placeholders}", [value for row in rows for value in row])


def duck_loader(duck: duckdb.DuckDBPyConnection) -> Execute:
    def execute(sql: str, params: list[Any]) -> None:
        duck.execute(sql.replace("%s", "?"), params)

    return execute


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute(packaged_sql("schema.sql"))  # the real tables, columns and types
    yield connection
    connection.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories())
def test_streamed_value_equals_sql_value_after_any_history(duck: duckdb.DuckDBPyConnection, history: History) -> None:
    load(history, duck_loader(duck))
    trait, as_of = history.trait, history.as_of
    sql_rows = [(row[0], row[1]) for row in duck.execute(compile_sql(trait, as_of)).fetchall()]
    assert reconcile(trait, stream(history), sql_rows) == [], f"{trait!r} as of {as_of}"
    # a backfill from the stored history (what repairs a drifting profile) lands on the same values
    rebuilt = rebuild(trait, history_rows(duck.execute(compile_history_sql(trait, as_of)).fetchall()), as_of)
    assert reconcile(trait, {p: value(s, trait, as_of) for p, s in rebuilt.items()}, sql_rows) == []


@pytest.mark.postgres
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(history=histories())
def test_streamed_value_equals_postgres_value_after_any_history(fresh_pg_url: str, history: History) -> None:
    # the fresh database is shared by the examples of this test: load() empties the three tables first
    with psycopg.connect(fresh_pg_url, autocommit=True) as connection:
        load(history, lambda sql, params: connection.execute(sql, params) and None)
        (sql,) = transpile(compile_sql(history.trait, history.as_of), "postgres")
        rows = connection.execute(sql).fetchall()
    found = reconcile(history.trait, stream(history), [(row[0], row[1]) for row in rows])
    assert found == [], f"{history.trait!r} as of {history.as_of}"


def tied_history(aggregate: str) -> History:
    """Five events of one profile at one instant: first/last fall to message_id (code point order), then source."""
    trait = ComputedTrait(name="plan", aggregate=aggregate, event="Plan Viewed", property="plan")
    at = BASE + dt.timedelta(days=3)
    ids = [("web", "a"), ("app", "b"), ("app", "B"), ("web", "é"), ("app", "a")]
    happened = [
        Happened(0, NormalizedEvent(
            source=source, message_id=message_id, type="track", event="Plan Viewed", user_id="u", anonymous_id=None,
            timestamp=at, original_timestamp=at, sent_at=at, received_at=at,
            payload={"type": "track", "event": "Plan Viewed", "properties": {"plan": f"{source}/{message_id}"}},
        ))
        for source, message_id in ids
    ]  # fmt: skip
    return History(trait, happened, [(at, i) for i in range(len(ids))], None, at)


@pytest.mark.parametrize(("aggregate", "expected"), [("first", "app/B"), ("last", "web/é")])
def test_ties_in_time_break_alike_on_the_stream_and_in_sql(
    duck: duckdb.DuckDBPyConnection, aggregate: str, expected: str
) -> None:
    history = tied_history(aggregate)
    load(history, duck_loader(duck))
    rows = duck.execute(compile_sql(history.trait, history.as_of)).fetchall()
    assert stream(history) == {"p0": expected}
    assert reconcile(history.trait, stream(history), rows) == []


@pytest.mark.postgres
def test_ties_in_time_break_alike_on_postgres(fresh_pg_url: str) -> None:
    with psycopg.connect(fresh_pg_url, autocommit=True) as connection:
        for aggregate in ("first", "last"):
            history = tied_history(aggregate)
            load(history, lambda sql, params: connection.execute(sql, params) and None)
            (sql,) = transpile(compile_sql(history.trait, history.as_of), "postgres")
            rows = connection.execute(sql).fetchall()
            assert reconcile(history.trait, stream(history), [(r[0], r[1]) for r in rows]) == []
            assert rows == [("p0", '"app/B"' if aggregate == "first" else '"web/é"')]


# --- compiled SQL --------------------------------------------------------------------------------------------------

EVERY_SHAPE = [
    ComputedTrait(name="workouts_completed", aggregate="count", event="Workout Completed"),
    ComputedTrait(
        name="open_tickets", aggregate="count", event="Ticket Opened", window="30d",
        filter="event.properties.priority >= 2",
    ),
    ComputedTrait(name="minutes_7d", aggregate="sum", event="Workout Completed", property="duration_min", window="7d"),
    ComputedTrait(name="shortest", aggregate="min", event="Workout Completed", property="duration_min", window="24h"),
    ComputedTrait(name="longest", aggregate="max", event="Workout Completed", property="duration_min"),
    ComputedTrait(name="first_plan", aggregate="first", event="Plan Viewed", property="plan.name"),
    ComputedTrait(
        name="last_plan", aggregate="last", event="Plan Viewed", property="plan.name",
        filter='event.context.os.name == "iOS"',
    ),
    ComputedTrait(
        name="workout_kinds", aggregate="distinct_count", event="Workout Completed", property="kind",
        filter='has(event.properties.kind) && event.properties.kind.contains("o_%") && !event.properties.test',
    ),
    ComputedTrait(name="page_views", aggregate="count", type="page", window="1d"),
]  # fmt: skip


@pytest.mark.parametrize("trait", EVERY_SHAPE, ids=lambda t: t.name)
@pytest.mark.parametrize("dialect", ["postgres", "snowflake", "bigquery", "clickhouse"])
def test_compiled_sql_transpiles_and_parses_in_other_dialects(trait: ComputedTrait, dialect: str) -> None:
    source = compile_sql(trait, dt.datetime(2024, 5, 10, 12, tzinfo=dt.UTC))
    (translated,) = transpile(source, dialect)
    parsed = sqlglot.parse_one(translated, read=dialect)
    assert {t.name for t in parsed.find_all(sqlglot.exp.Table)} >= {"events", "identity_links", "profile_merges"}
    if dialect == "postgres" and (trait.property or trait.filter):
        assert "JSON_EXTRACT_PATH" in translated and "->>" not in translated


def test_window_bounds_are_whole_utc_buckets() -> None:
    as_of = dt.datetime(2024, 5, 10, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))  # 10:30 UTC
    seven_days = ComputedTrait(name="t", aggregate="count", window="7d")
    two_hours = ComputedTrait(name="t", aggregate="count", window="2h")
    all_time = ComputedTrait(name="t", aggregate="count")
    assert window_bounds(seven_days, as_of) == (
        dt.datetime(2024, 5, 4, tzinfo=dt.UTC),
        dt.datetime(2024, 5, 11, tzinfo=dt.UTC),
    )
    assert window_bounds(two_hours, as_of) == (
        dt.datetime(2024, 5, 10, 9, tzinfo=dt.UTC),
        dt.datetime(2024, 5, 10, 11, tzinfo=dt.UTC),
    )
    assert window_bounds(all_time, as_of) == (None, dt.datetime(2024, 5, 11, tzinfo=dt.UTC))


def test_event_names_are_quoted_not_spliced(duck: duckdb.DuckDBPyConnection) -> None:
    tricky = 'Bob\'s \\ "Plan"; DROP TABLE events; --'
    trait = ComputedTrait(name="t", aggregate="count", event=tricky, filter='event.properties.k == "it\'s"')
    at = dt.datetime(2024, 5, 10, 12, tzinfo=dt.UTC)
    event = NormalizedEvent(
        source="app", message_id="m1", type="track", event=tricky, user_id="u", anonymous_id=None, timestamp=at,
        original_timestamp=at, sent_at=at, received_at=at,
        payload={"type": "track", "event": tricky, "properties": {"k": "it's"}, "context": {}},
    )  # fmt: skip
    history = History(trait, [Happened(0, event)], [(at, 0)], None, at)
    load(history, duck_loader(duck))
    rows = duck.execute(compile_sql(trait, at)).fetchall()
    assert rows == [("p0", 1)]
    assert reconcile(trait, stream(history), rows) == []


def test_repair_rebuilds_only_the_drifting_profiles_from_history(duck: duckdb.DuckDBPyConnection) -> None:
    trait = ComputedTrait(name="minutes", aggregate="sum", event="Workout Completed", property="m", window="7d")
    at = BASE + dt.timedelta(days=10, hours=8)
    happened = [
        Happened(profile, NormalizedEvent(
            source="app", message_id=f"m{i}", type="track", event="Workout Completed", user_id="u", anonymous_id=None,
            timestamp=at - dt.timedelta(days=days), original_timestamp=at, sent_at=at, received_at=at,
            payload={"type": "track", "event": "Workout Completed", "properties": {"m": minutes}},
        ))
        for i, (profile, days, minutes) in enumerate([(0, 0, 30), (0, 9, 99), (1, 1, 20), (3, 2, 15), (2, 3, 7)])
    ]  # fmt: skip
    # p3 was merged into p1 after its event: SQL and the rebuild see it under p1
    history = History(trait, happened, [(at, i) for i in range(len(happened))], (3, 1, len(happened)), at)
    load(history, duck_loader(duck))
    sql_rows = duck.execute(compile_sql(trait, at)).fetchall()
    assert sql_rows == [("p0", 30.0), ("p1", 35.0), ("p2", 7.0)]
    drifting = {"p0": 12, "p1": 35, "p2": 7}  # p0's streamed value went wrong
    assert [d.profile_id for d in reconcile(trait, drifting, sql_rows)] == ["p0"]
    history_sql = compile_history_sql(trait, at, profile_ids=["p0", "p1"])
    repaired = rebuild(trait, history_rows(duck.execute(history_sql).fetchall()), at)
    assert {p: value(s, trait, at) for p, s in repaired.items()} == {"p0": 30, "p1": 35}
    assert reconcile(trait, {**drifting, "p0": value(repaired["p0"], trait, at)}, sql_rows) == []


def test_reconcile_reports_each_drift_with_both_values() -> None:
    trait = ComputedTrait(name="minutes", aggregate="sum", property="m")
    streamed = {"p1": 30, "p2": 12.5, "p3": 7}
    sql_rows = [("p1", 30.0), ("p2", 12.500000000001), ("p4", 5.0)]  # p3 missing in SQL, p4 missing on the stream
    assert reconcile(trait, streamed, sql_rows) == [
        Drift("p3", "minutes", 7, 0),
        Drift("p4", "minutes", 0, 5.0),
    ]
    last = ComputedTrait(name="plan", aggregate="last", property="plan")
    assert reconcile(last, {"p1": "pro", "p2": "basic"}, [("p1", '"pro"'), ("p2", '"team"')]) == [
        Drift("p2", "plan", "basic", "team")
    ]
    assert reconcile(last, {"p1": 1}, [("p1", "true")]) == [Drift("p1", "plan", 1, True)]
