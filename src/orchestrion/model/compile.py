"""From a model's SELECT to the statement one engine runs. Pure.

- The clock is pinned: `now()`, `current_timestamp` and `current_date` become the run's instant, so that every
  model of one run sees the same time, a test can fix it, and engines agree on the same data.
- An incremental build reads only recent input rows: each input relation is wrapped in a filtered subquery under
  the same alias.
- Bare column projections get explicit names (ClickHouse would name `p.profile_id` by its qualifier).
- The result is rendered in the target engine's dialect by sqlglot.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from sqlglot import exp
from sqlglot.errors import ErrorLevel

from orchestrion.model.project import Model

# Functions that read the wall clock, in the dialects models are written in.
_NOW_FUNCTIONS = frozenset(
    {"now", "get_current_timestamp", "transaction_timestamp", "localtimestamp", "current_timestamp", "sysdate"}
)
_TODAY_FUNCTIONS = frozenset({"today", "current_date"})


def _timestamp_literal(at: dt.datetime) -> exp.Expr:
    text = at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
    return exp.cast(exp.Literal.string(text), exp.DataType.build("TIMESTAMPTZ"))


def _date_literal(at: dt.datetime) -> exp.Expr:
    return exp.cast(exp.Literal.string(at.astimezone(dt.UTC).date().isoformat()), exp.DataType.build("DATE"))


def pin_clock(query: exp.Expr, as_of: dt.datetime) -> exp.Expr:
    """A copy of `query` where every reading of the current time is the literal `as_of` (UTC)."""

    def replace(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.CurrentTimestamp | exp.CurrentDatetime):
            return _timestamp_literal(as_of)
        if isinstance(node, exp.CurrentDate):
            return _date_literal(as_of)
        if isinstance(node, exp.Anonymous):
            name = str(node.this).lower()
            if name in _NOW_FUNCTIONS and not node.expressions:
                return _timestamp_literal(as_of)
            if name in _TODAY_FUNCTIONS and not node.expressions:
                return _date_literal(as_of)
        return node

    return query.copy().transform(replace)


def restrict_inputs(query: exp.Expr, relations: Collection[str], column: str, since: dt.datetime) -> exp.Expr:
    """A copy of `query` where each read of one of `relations` sees only rows with `column >= since`."""
    ctes = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}

    def replace(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
            return node
        name = node.name.lower()
        if name not in relations or (not node.db and name in ctes):
            return node
        alias = node.alias or node.name
        inner = (
            exp.select("*")
            .from_(exp.to_table(node.name))
            .where(exp.GTE(this=exp.column(column, quoted=True), expression=_timestamp_literal(since)))
        )
        return inner.subquery(alias=alias)

    return query.copy().transform(replace)


def name_projections(query: exp.Expr) -> exp.Expr:
    """A copy where every projection that is a bare column (`p.profile_id`) carries its name as an alias.

    Standard SQL names such a column `profile_id`; ClickHouse names it `p.profile_id` when the SELECT has a join,
    and a query reading that CTE by `profile_id` fails. The alias changes nothing elsewhere.
    """
    query = query.copy()
    for select in query.find_all(exp.Select):
        select.set(
            "expressions",
            [
                exp.alias_(projection, projection.name)
                if isinstance(projection, exp.Column) and not isinstance(projection.this, exp.Star)
                else projection
                for projection in select.expressions
            ],
        )
    return query


def compile_model(
    model: Model,
    target_dialect: str,
    *,
    as_of: dt.datetime,
    incremental_since: dt.datetime | None = None,
    incremental_relations: Collection[str] = (),
) -> str:
    """The statement `target_dialect` runs for this model (a SELECT; the runner wraps it in CREATE TABLE)."""
    query = name_projections(pin_clock(model.query, as_of))
    if incremental_since is not None:
        assert model.config.incremental is not None
        query = restrict_inputs(query, incremental_relations, model.config.incremental.input_column, incremental_since)
    # RAISE: a construct the target cannot express fails here, naming it, instead of running as something else.
    return query.sql(dialect=target_dialect, unsupported_level=ErrorLevel.RAISE)


def incremental_inputs(model: Model, relations: dict[str, list[tuple[str, str]]]) -> list[str]:
    """The inputs an incremental build filters: those declared, else every input that has the input column."""
    incremental = model.config.incremental
    assert incremental is not None
    if incremental.inputs is not None:
        return [name.lower() for name in incremental.inputs]
    column = incremental.input_column.lower()
    return sorted(name for name in model.inputs if any(col.lower() == column for col, _ in relations.get(name, [])))
