"""Computed traits as SQL: the same declaration the stream runs, as one SELECT for backfill and reconciliation.

The query is written in DuckDB's dialect (the product's source dialect) and transpiles with sqlglot. It reads the
landing tables: `events` joined to `identity_links` (the profile each event resolved to), with merged profile ids
resolved one hop through `profile_merges` (the identity store keeps merges one hop from the canonical id).

CEL and SQL agree on missing fields and type mismatches because a CEL error maps to SQL NULL: CEL's `&&`/`||`
absorb errors exactly as SQL's three-valued AND/OR absorb NULL, and NULL (like an error) does not count. JSON types
are read from the JSON text of the value (`"` string, digit or `-` number, `true`/`false`, `null`), which needs
nothing beyond `json_extract`/`json_extract_string`, both of which sqlglot transpiles (PostgreSQL: json_extract_path).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import sqlglot
from sqlglot import exp

from orchestrion.model.computed_declaration import ComputedTrait
from orchestrion.model.computed_filter import (
    BoolConstant,
    Compare,
    Condition,
    Field,
    FieldIsTrue,
    Has,
    InList,
    Logical,
    Not,
    Scalar,
    StringTest,
    compiled_filter,
)
from orchestrion.model.computed_state import empty_value_of

SOURCE_DIALECT = "duckdb"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DIGITS = "('-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9')"


# --- JSON access -------------------------------------------------------------------------------------------------


def _path(keys: tuple[str, ...]) -> str:
    # keys are identifiers (checked by the declaration and the filter parser): safe inside a JSON path literal
    return "'$." + ".".join(keys) + "'"


def _text(keys: tuple[str, ...]) -> str:
    """The value's JSON text (`"a"`, `12`, `true`, `null`, `{...}`), or NULL when the path is absent."""
    return f"CAST(json_extract(e.payload, {_path(keys)}) AS VARCHAR)"


def _string(keys: tuple[str, ...]) -> str:
    """The value as text without JSON quoting (a string's content, a number's digits)."""
    return f"json_extract_string(e.payload, {_path(keys)})"


def _is_string(text: str) -> str:
    return f"LEFT({text}, 1) = '\"'"


def _is_number(text: str) -> str:
    return f"LEFT({text}, 1) IN {_DIGITS}"


def _is_bool(text: str) -> str:
    return f"{text} IN ('true', 'false')"


def _quote(value: str) -> str:
    return str(exp.Literal.string(value).sql(dialect=SOURCE_DIALECT))


def _number(value: int | float) -> str:
    return f"CAST({value!r} AS DOUBLE)"


# --- the filter ----------------------------------------------------------------------------------------------------


def filter_sql(condition: Condition) -> str:
    """The condition as a SQL boolean that is TRUE exactly when CEL answers true (NULL where CEL errs)."""
    if isinstance(condition, BoolConstant):
        return "TRUE" if condition.value else "FALSE"
    if isinstance(condition, Not):
        return f"(NOT {filter_sql(condition.operand)})"
    if isinstance(condition, Logical):
        joiner = "AND" if condition.op == "&&" else "OR"
        return f"({filter_sql(condition.left)} {joiner} {filter_sql(condition.right)})"
    if isinstance(condition, FieldIsTrue):
        text = _text(condition.field.path)
        return f"(CASE WHEN {text} = 'true' THEN TRUE WHEN {text} = 'false' THEN FALSE END)"
    if isinstance(condition, Compare):
        return _compare(condition.op, condition.field, condition.literal)
    if isinstance(condition, InList):
        return _in_list(condition.field, condition.values)
    if isinstance(condition, Has):
        return _has(condition.field)
    if isinstance(condition, StringTest):
        return _string_test(condition)
    raise TypeError(f"not a filter condition: {condition!r}")


def _compare(op: str, field: Field, literal: Scalar) -> str:
    text, string = _text(field.path), _string(field.path)
    sql_op = "<>" if op == "!=" else ("=" if op == "==" else op)
    if literal is None or isinstance(literal, bool):
        # JSON text of null/true/false is exact; NULL (absent) stays NULL, as CEL errs on a missing field
        token = "null" if literal is None else ("true" if literal else "false")
        return f"({text} {sql_op} '{token}')"
    mismatch = "TRUE" if op == "!=" else "FALSE"  # CEL: values of different types are unequal, never an error
    if isinstance(literal, str):
        return (
            f"(CASE WHEN {text} IS NULL THEN NULL WHEN {_is_string(text)} THEN {string} {sql_op} {_quote(literal)} "
            f"ELSE {mismatch} END)"
        )
    compared = f"CAST({string} AS DOUBLE) {sql_op} {_number(literal)}"
    if op in ("==", "!="):
        return f"(CASE WHEN {text} IS NULL THEN NULL WHEN {_is_number(text)} THEN {compared} ELSE {mismatch} END)"
    return f"(CASE WHEN {_is_number(text)} THEN {compared} END)"  # CEL errs ordering a non-number: NULL


def _in_list(field: Field, values: tuple[Scalar, ...]) -> str:
    text, string = _text(field.path), _string(field.path)
    parts: list[str] = []
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    strings = [v for v in values if isinstance(v, str)]
    tokens = sorted(
        {"null" if v is None else ("true" if v else "false") for v in values if v is None or isinstance(v, bool)}
    )
    if numbers:
        listed = ", ".join(_number(n) for n in numbers)
        parts.append(f"(CASE WHEN {_is_number(text)} THEN CAST({string} AS DOUBLE) IN ({listed}) ELSE FALSE END)")
    if strings:
        listed = ", ".join(_quote(s) for s in strings)
        parts.append(f"(CASE WHEN {_is_string(text)} THEN {string} IN ({listed}) ELSE FALSE END)")
    if tokens:
        parts.append(f"{text} IN ({', '.join(repr(t) for t in tokens)})")
    found = " OR ".join(parts) if parts else "FALSE"
    return f"(CASE WHEN {text} IS NULL THEN NULL ELSE ({found}) END)"


def _has(field: Field) -> str:
    present = f"(json_extract(e.payload, {_path(field.path)}) IS NOT NULL)"
    if len(field.path) == 1:
        return present  # the payload itself is always an object
    parent = _text(field.path[:-1])
    return f"(CASE WHEN LEFT({parent}, 1) = '{{' THEN {present} END)"  # CEL errs when the parent is not a map


def _string_test(test: StringTest) -> str:
    escaped = test.argument.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = {"startsWith": f"{escaped}%", "endsWith": f"%{escaped}", "contains": f"%{escaped}%"}[test.method]
    text, string = _text(test.field.path), _string(test.field.path)
    return f"(CASE WHEN {_is_string(text)} THEN {string} LIKE {_quote(pattern)} ESCAPE '\\' END)"


# --- the query -----------------------------------------------------------------------------------------------------


def window_bounds(trait: ComputedTrait, as_of: dt.datetime) -> tuple[dt.datetime | None, dt.datetime]:
    """[start, end) of the events the value as of `as_of` covers; start is None for all time."""
    window = trait.parsed_window
    high = ((as_of - _EPOCH) // dt.timedelta(microseconds=1)) // window.bucket_us
    end = _EPOCH + dt.timedelta(microseconds=(high + 1) * window.bucket_us)
    if window.count is None:
        return None, end
    return _EPOCH + dt.timedelta(microseconds=(high - window.count + 1) * window.bucket_us), end


def _value_expression(trait: ComputedTrait) -> str:
    if trait.property is None:
        return "1"
    keys = trait.property_path
    text, string = _text(keys), _string(keys)
    if trait.aggregate == "count":
        return f"CASE WHEN {text} <> 'null' THEN 1 END"
    if trait.aggregate in ("sum", "min", "max"):
        return f"CASE WHEN {_is_number(text)} THEN CAST({string} AS DOUBLE) END"
    if trait.aggregate == "distinct_count":
        return (
            f"CASE WHEN {_is_string(text)} THEN 's:' || {string} "
            f"WHEN {_is_number(text)} OR {_is_bool(text)} THEN 'v:' || {text} END"
        )
    return f"CASE WHEN {text} <> 'null' THEN {text} END"  # first/last: the JSON text, decoded by decode_sql_value


def _matched(trait: ComputedTrait, as_of: dt.datetime) -> str:
    start, end = window_bounds(trait, as_of)
    conditions = [f"e.type = {_quote(trait.type)}"]
    if trait.event is not None:
        conditions.append(f"e.event = {_quote(trait.event)}")
    if start is not None:
        conditions.append(f'e."timestamp" >= CAST({_quote(start.isoformat())} AS TIMESTAMPTZ)')
    conditions.append(f'e."timestamp" < CAST({_quote(end.isoformat())} AS TIMESTAMPTZ)')
    if trait.filter is not None:
        conditions.append(filter_sql(compiled_filter(trait.filter).condition))
    return (
        'SELECT COALESCE(m.survivor_profile_id, l.profile_id) AS profile_id, e."timestamp" AS ts, '
        f"e.message_id AS message_id, e.source AS source, {_value_expression(trait)} AS value "
        "FROM events AS e JOIN identity_links AS l ON l.seq = e.seq "
        "LEFT JOIN profile_merges AS m ON m.merged_profile_id = l.profile_id "
        "WHERE " + " AND ".join(conditions)
    )


_AGGREGATE_SQL = {
    "count": "COUNT(*)",
    "sum": "SUM(value)",
    "min": "MIN(value)",
    "max": "MAX(value)",
    "distinct_count": "COUNT(DISTINCT value)",
}


def compile_sql(trait: ComputedTrait, as_of: dt.datetime, dialect: str = SOURCE_DIALECT) -> str:
    """`SELECT profile_id, value` for every profile with at least one counted event, as of `as_of`.

    Profiles without a row have the empty value (0 or NULL). Decode `value` with `decode_sql_value`.
    """
    matched = _matched(trait, as_of)
    if trait.aggregate in ("first", "last"):
        direction = "" if trait.aggregate == "first" else " DESC"
        order = f'ts{direction}, message_id COLLATE "C"{direction}, source COLLATE "C"{direction}'
        sql = (
            f"WITH matched AS ({matched}) SELECT profile_id, value FROM ("
            f"SELECT profile_id, value, ROW_NUMBER() OVER (PARTITION BY profile_id ORDER BY {order}) AS pick "
            "FROM matched WHERE value IS NOT NULL) AS ranked WHERE pick = 1 ORDER BY profile_id"
        )
    else:
        sql = (
            f"WITH matched AS ({matched}) SELECT profile_id, {_AGGREGATE_SQL[trait.aggregate]} AS value "
            "FROM matched WHERE value IS NOT NULL GROUP BY profile_id ORDER BY profile_id"
        )
    statement = sqlglot.parse_one(sql, read=SOURCE_DIALECT)
    return str(statement.sql(dialect=dialect))


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of `compile_history_sql`, readable by `update` (it has what `TraitEvent` asks)."""

    source: str
    message_id: str
    type: str
    event: str | None
    timestamp: dt.datetime
    payload: dict[str, Any]


def compile_history_sql(
    trait: ComputedTrait,
    as_of: dt.datetime,
    profile_ids: Iterable[str] | None = None,
    dialect: str = SOURCE_DIALECT,
) -> str:
    """The stored events a state as of `as_of` is built from (all matching history for all-time traits):
    `SELECT profile_id, source, message_id, type, event, "timestamp", payload`; read rows with `history_rows`.

    The filter and the property are not applied here: `update` applies them, exactly as on the stream.
    """
    start, end = window_bounds(trait, as_of)
    conditions = [f"e.type = {_quote(trait.type)}", f'e."timestamp" < CAST({_quote(end.isoformat())} AS TIMESTAMPTZ)']
    if trait.event is not None:
        conditions.append(f"e.event = {_quote(trait.event)}")
    if start is not None:
        conditions.append(f'e."timestamp" >= CAST({_quote(start.isoformat())} AS TIMESTAMPTZ)')
    if profile_ids is not None:
        listed = ", ".join(_quote(p) for p in sorted(set(profile_ids))) or "NULL"
        conditions.append(f"COALESCE(m.survivor_profile_id, l.profile_id) IN ({listed})")
    sql = (
        "SELECT COALESCE(m.survivor_profile_id, l.profile_id) AS profile_id, e.source, e.message_id, e.type, "
        'e.event, e."timestamp", CAST(e.payload AS VARCHAR) AS payload '
        "FROM events AS e JOIN identity_links AS l ON l.seq = e.seq "
        "LEFT JOIN profile_merges AS m ON m.merged_profile_id = l.profile_id "
        "WHERE " + " AND ".join(conditions) + " ORDER BY e.seq"
    )
    return str(sqlglot.parse_one(sql, read=SOURCE_DIALECT).sql(dialect=dialect))


def history_rows(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[str, StoredEvent]]:
    """(profile id, event) pairs from `compile_history_sql` rows, for `rebuild`."""
    for profile_id, source, message_id, kind, name, timestamp, payload in rows:
        document = orjson.loads(payload) if isinstance(payload, str | bytes) else payload
        yield str(profile_id), StoredEvent(source, message_id, kind, name, timestamp, document)


def decode_sql_value(trait: ComputedTrait, raw: Any) -> Any:
    """A `value` cell of `compile_sql`'s result as the stream would give it."""
    if raw is None:
        return empty_value_of(trait)
    if trait.aggregate in ("first", "last"):
        return orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    if trait.aggregate in ("count", "distinct_count"):
        return int(raw)
    return float(raw)


# --- reconciliation ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Drift:
    """A profile whose streamed value differs from the SQL value."""

    profile_id: str
    trait: str
    streamed: Any
    sql: Any


def values_agree(a: Any, b: Any) -> bool:
    """Equal, with numbers compared as numbers within float rounding (SQL sums doubles in any order)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b) and type(a) is type(b)


def reconcile(trait: ComputedTrait, streamed: Mapping[str, Any], sql_rows: Iterable[tuple[str, Any]]) -> list[Drift]:
    """Compare streamed values (profile → value) with `compile_sql` rows; a profile missing on one side has the
    empty value there. Drifts come sorted by profile."""
    from_sql = {str(profile): decode_sql_value(trait, raw) for profile, raw in sql_rows}
    empty = empty_value_of(trait)
    drifts = []
    for profile in sorted(set(streamed) | set(from_sql)):
        mine = streamed.get(profile, empty)
        theirs = from_sql.get(profile, empty)
        if not values_agree(mine, theirs):
            drifts.append(Drift(profile, trait.name, mine, theirs))
    return drifts
