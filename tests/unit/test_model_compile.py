"""Compiling a model: the clock is pinned to the run, incremental builds filter their inputs, dialects differ."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import sqlglot

from orchestrion.model.compile import compile_model, incremental_inputs
from orchestrion.model.project import Model, load_project

AS_OF = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
RELATIONS = {
    "workout_completed": [("message_id", "VARCHAR"), ("timestamp", "TIMESTAMP WITH TIME ZONE")],
    "event_profiles": [("message_id", "VARCHAR"), ("profile_id", "VARCHAR"), ("timestamp", "TIMESTAMP")],
    "profiles": [("profile_id", "VARCHAR")],
}


def model(tmp_path: Path, sql: str, name: str = "m") -> Model:
    folder = tmp_path / "models"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.sql").write_text(sql)
    return load_project(folder, RELATIONS).models[name]


def test_every_reading_of_the_clock_becomes_the_runs_instant(tmp_path: Path) -> None:
    sql = (
        "-- kind: table\n"
        "SELECT now() AS a, current_timestamp AS b, get_current_timestamp() AS c, current_date AS d, today() AS e"
    )
    compiled = compile_model(model(tmp_path, sql), "duckdb", as_of=AS_OF)
    assert "now()" not in compiled.lower() and "current_" not in compiled.lower()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    row = con.execute(compiled).fetchone()
    assert row is not None
    a, b, c, d, e = row
    assert a == b == c == AS_OF
    assert d == e == dt.date(2026, 3, 1)


def test_a_pinned_model_gives_the_same_answer_whenever_it_runs(tmp_path: Path) -> None:
    m = model(tmp_path, "-- kind: table\nSELECT date_diff('day', DATE '2026-02-01', current_date) AS days")
    first = compile_model(m, "postgres", as_of=AS_OF)
    assert first == compile_model(m, "postgres", as_of=AS_OF)
    assert "2026-03-01" in first
    assert compile_model(m, "postgres", as_of=AS_OF + dt.timedelta(days=1)) != first


def test_an_incremental_build_filters_each_input_that_has_the_column_under_its_alias(tmp_path: Path) -> None:
    sql = (
        "-- kind: table\n"
        "-- incremental: {time_column: day}\n"
        'SELECT p.profile_id, CAST(w."timestamp" AS DATE) AS day, count(*) AS n\n'
        "FROM workout_completed w JOIN event_profiles AS p ON p.message_id = w.message_id\n"
        "JOIN profiles ON profiles.profile_id = p.profile_id GROUP BY 1, 2"
    )
    m = model(tmp_path, sql)
    assert incremental_inputs(m, RELATIONS) == ["event_profiles", "workout_completed"]
    since = dt.datetime(2026, 2, 27, tzinfo=dt.UTC)
    compiled = compile_model(
        m, "duckdb", as_of=AS_OF, incremental_since=since, incremental_relations=incremental_inputs(m, RELATIONS)
    )
    parsed = sqlglot.parse_one(compiled, read="duckdb")
    subqueries = {s.alias: s.this.sql() for s in parsed.find_all(sqlglot.exp.Subquery)}
    assert set(subqueries) == {"w", "p"}
    for inner in subqueries.values():
        assert "WHERE \"timestamp\" >= CAST('2026-02-27 00:00:00.000000+00:00' AS TIMESTAMPTZ)" in inner
    assert "JOIN profiles ON" in compiled  # not filtered: it has no `timestamp` column


def test_declared_inputs_override_the_default(tmp_path: Path) -> None:
    sql = (
        "-- kind: table\n-- incremental: {time_column: day, inputs: [workout_completed]}\n"
        'SELECT CAST(w."timestamp" AS DATE) AS day FROM workout_completed w JOIN event_profiles p USING (message_id)'
    )
    assert incremental_inputs(model(tmp_path, sql), RELATIONS) == ["workout_completed"]


def test_the_same_model_renders_in_each_engines_dialect(tmp_path: Path) -> None:
    m = model(tmp_path, "-- kind: traits\nSELECT profile_id, try_cast('3' AS DOUBLE) AS x, now() AS t FROM profiles")
    duck = compile_model(m, "duckdb", as_of=AS_OF)
    postgres = compile_model(m, "postgres", as_of=AS_OF)
    clickhouse = compile_model(m, "clickhouse", as_of=AS_OF)
    assert "TRY_CAST" in duck
    assert "TRY_CAST" not in postgres and "DOUBLE PRECISION" in postgres
    assert "Float64" in clickhouse
