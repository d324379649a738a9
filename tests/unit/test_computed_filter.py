"""CEL filters of computed traits: evaluation on the stream fails closed, the SQL subset is enforced, and the SQL a
filter compiles to selects exactly the events CEL lets through (hypothesis, on DuckDB)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
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
    ComputedTraitError,
    FilterEvaluationError,
    UnsupportedFilter,
    compiled_filter,
    filter_sql,
    parse_filter,
    update_with_outcome,
    value,
)
from orchestrion.store.sql_text import transpile

NOON = dt.datetime(2024, 5, 10, 12, 0, tzinfo=dt.UTC)


def workout(message_id: str, properties: dict[str, Any], context: dict[str, Any] | None = None) -> NormalizedEvent:
    payload = {"type": "track", "event": "Workout Completed", "properties": properties, "context": context or {}}
    return NormalizedEvent(
        source="app",
        message_id=message_id,
        type="track",
        event="Workout Completed",
        user_id="u1",
        anonymous_id=None,
        timestamp=NOON,
        original_timestamp=NOON,
        sent_at=NOON,
        received_at=NOON,
        payload=payload,
    )


def long_workouts(filter_text: str) -> ComputedTrait:
    return ComputedTrait(name="long_workouts", aggregate="count", event="Workout Completed", filter=filter_text)


def test_filter_sees_properties_and_context() -> None:
    declared = long_workouts('event.properties.duration_min > 10 && event.context.os.name == "iOS"')
    events = [
        workout("a", {"duration_min": 25}, {"os": {"name": "iOS"}}),
        workout("b", {"duration_min": 25}, {"os": {"name": "Android"}}),
        workout("c", {"duration_min": 5}, {"os": {"name": "iOS"}}),
        workout("d", {"duration_min": 10.5}, {"os": {"name": "iOS"}}),
    ]
    state = None
    kinds = []
    for event in events:
        state, outcome = update_with_outcome(state, event, declared)
        kinds.append(outcome.kind)
    assert kinds == ["applied", "filtered_out", "filtered_out", "applied"]
    assert value(state, declared, NOON) == 2


@pytest.mark.parametrize(
    ("properties", "reason"),
    [
        ({}, "KeyError"),  # the field is missing
        ({"duration_min": "25"}, "TypeError"),  # CEL does not coerce a string to a number
        ({"duration_min": None}, "TypeError"),
    ],
)
def test_filter_error_fails_closed_and_is_reported(properties: dict[str, Any], reason: str) -> None:
    declared = long_workouts("event.properties.duration_min > 10")
    state, outcome = update_with_outcome(None, workout("a", properties), declared)
    assert outcome.kind == "filter_error" and reason in outcome.detail
    assert value(state, declared, NOON) == 0


def test_has_guards_a_missing_field() -> None:
    declared = long_workouts("has(event.properties.duration_min) && event.properties.duration_min > 10")
    _, outcome = update_with_outcome(None, workout("a", {}), declared)
    assert outcome.kind == "filtered_out"


def test_a_non_boolean_answer_does_not_count() -> None:
    with pytest.raises(FilterEvaluationError, match="not a bool"):
        compiled_filter("event.properties.trial").matches({"properties": {"trial": "yes"}})
    assert compiled_filter("event.properties.trial").matches({"properties": {"trial": True}})


def test_string_methods_and_lists() -> None:
    check = compiled_filter('event.context.page.path.startsWith("/pricing") || event.properties.plan in ["pro", 2]')
    assert check.matches({"context": {"page": {"path": "/pricing/annual"}}, "properties": {}})
    assert check.matches({"context": {"page": {"path": "/home"}}, "properties": {"plan": 2.0}})
    assert not check.matches({"context": {"page": {"path": "/home"}}, "properties": {"plan": "basic"}})


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("event.properties.a + 1 > 2", "arithmetic"),
        ("size(event.properties.tags) > 1", "function size()"),
        ("user.plan == 'pro'", "unknown name 'user'"),
        ("event.properties.a == event.properties.b", "with a literal"),
        ('event.properties.plan < "pro"', "numbers only"),
        ("event.properties.a > 1 ? true : false", "conditional"),
        ("1 < event.properties.a < 3", "chained"),
        ('event.properties.tags.exists(t, t == "x")', ".exists()"),
        ("event.properties.items[0] == 1", "indexing"),
        ('"x" in event.properties.tags', "'in'"),
        ("event.properties.n == 9007199254740993", "2^53"),
        ("event.properties.n == 1u", "unsigned"),
        ('event.properties.name.matches("^a")', ".matches()"),
    ],
)
def test_outside_the_sql_subset_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(UnsupportedFilter, match=re.escape(reason)):
        parse_filter(text)
    with pytest.raises(ComputedTraitError) as refused:
        long_workouts(text)
    assert "computed trait 'long_workouts': filter:" in str(refused.value) and reason in str(refused.value)


def test_invalid_cel_is_refused_at_declaration() -> None:
    with pytest.raises(ComputedTraitError, match=r"'long_workouts': filter: not valid CEL"):
        long_workouts("event.properties.(")


# --- CEL and its SQL agree ---------------------------------------------------------------------------------------

FIELDS = [
    ("properties", "n"),
    ("properties", "kind"),
    ("properties", "nested", "v"),
    ("properties", "flag"),
    ("context", "os", "name"),
    ("properties",),
]
text_values = st.one_of(
    st.sampled_from(["", "a", "ab", "A", "iOS", "a%", "a_b", "%", "\\", "é", "a\nb", "'", '"']),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=4),
)
number_values = st.one_of(
    st.integers(-5, 5),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.5, -0.0, 2.0, 1e20]),
)
scalars = st.one_of(number_values, text_values, st.booleans(), st.none())
literals = st.one_of(
    st.integers(-5, 5), st.floats(-10, 10).map(lambda f: round(f, 1)), text_values, st.booleans(), st.none()
)


def _json_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=2), st.dictionaries(st.sampled_from(["v", "name", "n"]), inner, max_size=2)
        ),
        max_leaves=4,
    )


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    """Payloads where each field may be missing, null, of any type, or below a parent of the wrong type."""
    payload: dict[str, Any] = {"type": "track"}
    for top in ("properties", "context"):
        shape = draw(st.sampled_from(["object", "object", "object", "missing", "scalar"]))
        if shape == "missing":
            continue
        if shape == "scalar":
            payload[top] = draw(scalars)
            continue
        inner: dict[str, Any] = {}
        keys = ["n", "kind", "flag", "nested"] if top == "properties" else ["os"]
        for key in keys:
            if draw(st.booleans()):
                if key in ("nested", "os"):
                    inner[key] = draw(
                        st.one_of(st.fixed_dictionaries({}, optional={"v": scalars, "name": scalars}), scalars)
                    )
                else:
                    inner[key] = draw(_json_values())
        payload[top] = inner
    return payload


def _cel_literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _field(path: tuple[str, ...]) -> str:
    return "event." + ".".join(path)


def _atoms() -> st.SearchStrategy[str]:
    field = st.sampled_from(FIELDS)
    return st.one_of(
        st.builds(
            lambda f, op, v: f"{_field(f)} {op} {_cel_literal(v)}", field, st.sampled_from(["==", "!="]), literals
        ),
        st.builds(
            lambda f, op, v, flip: (
                f"{_cel_literal(v)} {op} {_field(f)}" if flip else f"{_field(f)} {op} {_cel_literal(v)}"
            ),
            field,
            st.sampled_from(["<", "<=", ">", ">="]),
            st.one_of(st.integers(-5, 5), st.floats(-10, 10).map(lambda f: round(f, 1))),
            st.booleans(),
        ),
        st.builds(
            lambda f, vs: f"{_field(f)} in [{', '.join(_cel_literal(v) for v in vs)}]",
            field,
            st.lists(literals, max_size=3),
        ),
        st.builds(lambda f: f"has({_field(f)})", field),
        st.builds(
            lambda f, m, v: f"{_field(f)}.{m}({_cel_literal(v)})",
            field,
            st.sampled_from(["startsWith", "endsWith", "contains"]),
            text_values,
        ),
        st.builds(_field, field),
        st.sampled_from(["true", "false"]),
    )


filters = st.recursive(
    _atoms(),
    lambda inner: st.one_of(
        st.builds(lambda a: f"!({a})", inner),
        st.builds(lambda a, b: f"({a}) && ({b})", inner, inner),
        st.builds(lambda a, b: f"({a}) || ({b})", inner, inner),
    ),
    max_leaves=4,
)


def _cel_counts(text: str, payload: dict[str, Any]) -> bool:
    try:
        return compiled_filter(text).matches(payload)
    except FilterEvaluationError:
        return False


@pytest.fixture(scope="module")
def payload_table() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute("CREATE TABLE events (seq BIGINT, payload JSON)")
    yield connection
    connection.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=filters, rows=st.lists(payloads(), min_size=1, max_size=8))
def test_sql_selects_exactly_what_cel_lets_through(
    payload_table: duckdb.DuckDBPyConnection, text: str, rows: list[dict[str, Any]]
) -> None:
    condition = parse_filter(text)
    payload_table.execute("DELETE FROM events")
    payload_table.executemany(
        "INSERT INTO events VALUES (?, ?)", [[i, orjson.dumps(p).decode()] for i, p in enumerate(rows)]
    )
    # through sqlglot, as the product runs it
    (query,) = sqlglot.transpile(f"SELECT seq FROM events AS e WHERE {filter_sql(condition)}", read="duckdb")
    selected = {r[0] for r in payload_table.execute(query).fetchall()}
    expected = {i for i, payload in enumerate(rows) if _cel_counts(text, payload)}
    assert selected == expected, f"filter {text!r}"


@pytest.mark.postgres
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(text=filters, rows=st.lists(payloads(), min_size=1, max_size=8))
def test_sql_selects_exactly_what_cel_lets_through_on_postgres(
    fresh_pg_url: str, text: str, rows: list[dict[str, Any]]
) -> None:
    # the fresh database is shared by this test's examples: the table is emptied first
    with psycopg.connect(fresh_pg_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS filter_payloads (seq BIGINT, payload JSON)")
        connection.execute("DELETE FROM filter_payloads")
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO filter_payloads VALUES (%s, %s)",
                [(i, orjson.dumps(p).decode()) for i, p in enumerate(rows)],
            )
        source = f"SELECT seq FROM filter_payloads AS e WHERE {filter_sql(parse_filter(text))}"
        (query,) = transpile(source, "postgres")
        selected = {r[0] for r in connection.execute(query).fetchall()}
    expected = {i for i, payload in enumerate(rows) if _cel_counts(text, payload)}
    assert selected == expected, f"filter {text!r}"
