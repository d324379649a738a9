"""The fitness example's models give the same results on DuckDB, PostgreSQL and ClickHouse (embedded chdb) over
the same data; every model transpiles to Snowflake and BigQuery and parses there.

DuckDB and PostgreSQL each take the same simulated traffic through normalization and identity resolution (profile
ids are deterministic) and run the models with the real runner. ClickHouse gets the DuckDB warehouse's input
relations copied into tables and runs the models as compiled for it, in dependency order.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from orchestrion.model.compile import compile_model
from orchestrion.model.project import ModelProject
from orchestrion.model.refresh import load_models
from orchestrion.store.warehouse import warehouse_for
from tests.integration.model_support import (
    FITNESS,
    ModelWorkspace,
    fitness_calls,
    model_workspace,
    use_fitness_project,
)

END = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
USERS = 60
# DuckDB types of the input relations, as ClickHouse column types.
CLICKHOUSE_TYPES = {
    "VARCHAR": "String",
    "JSON": "String",
    "DOUBLE": "Float64",
    "BOOLEAN": "Bool",
    "INTEGER": "Int64",
    "BIGINT": "Int64",
    "DATE": "Date32",
    "TIMESTAMP WITH TIME ZONE": "DateTime64(6, 'UTC')",
}


def normalized(value: Any) -> Any:
    """One form per value whatever the engine's type: numbers as floats (to 9 digits), times as UTC text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float | decimal.Decimal):
        number = float(value)
        return 0.0 if number == 0 else round(number, 9 - math.floor(math.log10(abs(number))))
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def table(columns: list[str], rows: list[tuple[Any, ...]] | list[list[Any]]) -> tuple[list[str], list[tuple[Any, ...]]]:
    return columns, sorted((tuple(normalized(v) for v in row) for row in rows), key=repr)


def engine_results(env: ModelWorkspace, project: ModelProject) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    out = {}
    for name in project.names:
        result = env.store.read(f"SELECT * FROM {name}")
        out[name] = table(result.columns, result.rows)
    return out


class ClickHouse:
    """An embedded ClickHouse (chdb) session holding copies of the input relations."""

    def __init__(self) -> None:
        from chdb import session

        self.session = session.Session()
        # Standard SQL semantics for outer joins (NULL, not the type's default), and UTC like the other engines.
        self.session.query("SET join_use_nulls = 1")
        self.session.query("SET session_timezone = 'UTC'")

    def close(self) -> None:
        self.session.close()

    def copy(self, name: str, columns: list[tuple[str, str]], rows: list[tuple[Any, ...]]) -> None:
        ddl = ", ".join(f'"{column}" Nullable({CLICKHOUSE_TYPES[kind]})' for column, kind in columns)
        self.session.query(f'CREATE TABLE "{name}" ({ddl}) ENGINE = Memory')
        lines = []
        for row in rows:
            document = {}
            for (column, _), value in zip(columns, row, strict=True):
                if isinstance(value, dt.datetime):
                    value = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
                elif isinstance(value, dt.date):
                    value = value.isoformat()
                document[column] = value
            lines.append(json.dumps(document))
        if lines:
            self.session.query(f'INSERT INTO "{name}" FORMAT JSONEachRow\n' + "\n".join(lines))

    def build(self, name: str, sql: str) -> None:
        self.session.query(f'CREATE TABLE "{name}" ENGINE = Memory AS {sql}')

    def read(self, name: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        raw = self.session.query(
            f'SELECT * FROM "{name}" SETTINGS output_format_json_quote_64bit_integers = 0', "JSONCompact"
        )
        document = json.loads(raw.bytes())
        columns = [column["name"] for column in document["meta"]]
        return table(columns, [tuple(row) for row in document["data"]])


@pytest.fixture(scope="module")
def calls() -> list[tuple[str, dict[str, Any]]]:
    return fitness_calls(USERS, END)


@pytest.fixture
def duckdb_env(tmp_path: Path, calls: list[tuple[str, dict[str, Any]]]) -> Iterator[ModelWorkspace]:
    with model_workspace(tmp_path / "duckdb", f"duckdb:///{tmp_path / 'fitness.duckdb'}", start=END) as env:
        use_fitness_project(env)
        env.send(*calls, received_at=END)
        yield env


@pytest.mark.postgres
def test_the_fitness_models_give_identical_results_on_duckdb_postgresql_and_clickhouse(
    tmp_path: Path, fresh_pg_url: str, duckdb_env: ModelWorkspace, calls: list[tuple[str, dict[str, Any]]]
) -> None:
    duck_report = duckdb_env.run()
    assert duck_report.ok, [r.error for r in duck_report.results]
    project = load_models(duckdb_env.workspace, warehouse_for(duckdb_env.store))
    expected = engine_results(duckdb_env, project)

    with model_workspace(tmp_path / "postgres", fresh_pg_url, start=END) as pg_env:
        use_fitness_project(pg_env)
        pg_env.send(*calls, received_at=END)
        pg_report = pg_env.run()
        assert pg_report.ok, [r.error for r in pg_report.results]
        on_postgres = engine_results(pg_env, project)

    clickhouse = ClickHouse()
    try:
        relations = warehouse_for(duckdb_env.store).relations()
        inputs = sorted({name for model in project.models.values() for name in model.inputs} - set(project.models))
        for name in inputs:
            clickhouse.copy(name, relations[name], duckdb_env.store.read(f"SELECT * FROM {name}").rows)
        for name, model in project.models.items():
            clickhouse.build(name, compile_model(model, "clickhouse", as_of=duck_report.as_of))
        on_clickhouse = {name: clickhouse.read(name) for name in project.names}
    finally:
        clickhouse.close()

    assert sorted(expected) == sorted(FITNESS_MODELS)
    for name, (columns, rows) in expected.items():
        assert rows, f"{name}: no rows; the comparison would prove nothing"
        assert on_postgres[name] == (columns, rows), f"{name}: PostgreSQL differs from DuckDB"
        assert on_clickhouse[name] == (columns, rows), f"{name}: ClickHouse differs from DuckDB"
    # The data reaches every branch the models distinguish, so agreeing is not agreeing on nothing.
    states = {row[1] for row in expected["activation_state"][1]}
    assert states == {"new", "activated", "committed", "at_risk", "retained"}
    assert {row[-1] for row in expected["support_risk"][1]} == {"none", "low", "medium", "high"}
    assert {row[-1] for row in expected["upgrade_intent"][1]} >= {"none", "low", "medium", "high"}


FITNESS_MODELS = sorted(path.stem for path in (FITNESS / "models").glob("*.sql"))
TARGETS = ("duckdb", "postgres", "clickhouse", "snowflake", "bigquery")


@pytest.mark.parametrize("dialect", TARGETS)
def test_every_fitness_model_transpiles_and_parses_in_each_target_dialect(tmp_path: Path, dialect: str) -> None:
    from orchestrion.model.project import load_project

    relations = {
        "workout_completed": [("timestamp", "TIMESTAMP WITH TIME ZONE")],
        "event_profiles": [("timestamp", "TIMESTAMP WITH TIME ZONE")],
    }
    names = [
        "profiles",
        "profile_merges",
        "pricing_viewed",
        "plan_comparison_viewed",
        "checkout_abandoned",
        "subscription_started",
        "ticket_created",
        "ticket_resolved",
        "csat_submitted",
        *relations,
    ]
    project = load_project(FITNESS / "models", names)
    assert project.names and sorted(project.names) == FITNESS_MODELS
    for model in project.models.values():
        compiled = [compile_model(model, dialect, as_of=END)]
        if model.config.incremental is not None:
            compiled.append(
                compile_model(
                    model,
                    dialect,
                    as_of=END,
                    incremental_since=END - dt.timedelta(days=2),
                    incremental_relations=["workout_completed", "event_profiles"],
                )
            )
        for sql in compiled:
            (parsed,) = sqlglot.parse(sql, read=dialect, error_level=ErrorLevel.RAISE)
            assert parsed is not None and isinstance(parsed, sqlglot.exp.Query), f"{model.name}: {sql}"
            read = {t.name for t in parsed.find_all(sqlglot.exp.Table)}
            assert model.inputs <= read | {cte.alias for cte in parsed.find_all(sqlglot.exp.CTE)}
