"""Product SQL is written once (DuckDB dialect) and must parse there and transpile cleanly to every target.

sqlglot falls back to an opaque `Command` for syntax it does not understand; such a statement would be passed
through untranslated, so a `Command` anywhere counts as a failure here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

import orchestrion
from orchestrion.store import landing
from orchestrion.store.sql_text import SOURCE_DIALECT, migration_files, packaged_sql

BACKEND_DIALECTS = ["postgres"]
WAREHOUSE_DIALECTS = ["postgres", "snowflake", "bigquery"]
SOURCE_ROOT = Path(orchestrion.__file__).parent


def parse_all(sql: str, dialect: str) -> list[exp.Expression]:
    statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    assert statements, f"no statement in {sql[:80]!r}"
    for statement in statements:
        assert not isinstance(statement, exp.Command), f"{dialect} could not parse: {statement.sql()[:120]}"
        assert not list(statement.find_all(exp.Command)), f"{dialect}: opaque command inside {statement.sql()[:120]}"
    return statements


def transpile_and_reparse(sql: str, dialect: str) -> list[exp.Expression]:
    rendered = sqlglot.transpile(sql, read=SOURCE_DIALECT, write=dialect, unsupported_level=sqlglot.ErrorLevel.RAISE)
    return [statement for text in rendered for statement in parse_all(text, dialect)]


# -- the .sql files ---------------------------------------------------------------------------------------
SQL_FILES = ["schema.sql", *(f"migrations/{name}" for _, name in migration_files())]


@pytest.mark.parametrize("name", SQL_FILES)
def test_sql_files_parse_in_duckdb_and_transpile_to_postgres(name: str) -> None:
    text = packaged_sql(name)
    source = parse_all(text, SOURCE_DIALECT)
    for dialect in BACKEND_DIALECTS:
        target = transpile_and_reparse(text, dialect)
        assert len(target) == len(source)
        # the same objects are created, with the same columns
        assert [created_shape(s) for s in target] == [created_shape(s) for s in source]


def created_shape(statement: exp.Expression) -> tuple[str, str, list[str]]:
    assert isinstance(statement, exp.Create), statement.sql()[:80]
    target = statement.this
    columns = [c.name for c in target.find_all(exp.ColumnDef)] if isinstance(target, exp.Schema) else []
    table = target.this if isinstance(target, exp.Schema) else target
    return str(statement.args.get("kind")), table.name, columns


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [version for version, _ in migration_files()]
    assert versions == list(range(1, len(versions) + 1))


# -- landing views ----------------------------------------------------------------------------------------
ALL_KINDS = [
    landing.LandingColumn("t", "duration_min", "properties.durationMin", "number"),
    landing.LandingColumn("t", "plan_name", "properties.Plan Name", "string"),
    landing.LandingColumn("t", "indoor", "properties.indoor", "boolean"),
    landing.LandingColumn("t", "tags", "properties.tags", "json"),
    landing.LandingColumn("t", "coach_name", "properties.coach.name", "string"),
    landing.LandingColumn("t", "user_id", "properties.user_id", "string"),
    landing.LandingColumn("t", "email", "traits.email", "string"),
    landing.LandingColumn("t", "age", "context.traits.age", "number"),
]
VIEWS = [
    (table, event_type, ALL_KINDS if event_type != "alias" else [], None)
    for event_type, table in landing.STANDARD_TABLES.items()
] + [("workout_completed", "track", ALL_KINDS, ["Workout Completed", "workoutCompleted", "it's"])]


def selected_names(statement: exp.Expression) -> list[str]:
    assert isinstance(statement, exp.Create)
    query = statement.expression
    assert isinstance(query, exp.Select)
    return [s.alias_or_name for s in query.selects]


@pytest.mark.parametrize(("table", "event_type", "columns", "events"), VIEWS, ids=[v[0] for v in VIEWS])
@pytest.mark.parametrize("dialect", WAREHOUSE_DIALECTS)
def test_landing_views_transpile_to_every_warehouse(
    table: str, event_type: str, columns: list[landing.LandingColumn], events: list[str] | None, dialect: str
) -> None:
    sql = landing.view_sql(table, event_type, columns, events)
    (source,) = parse_all(sql, SOURCE_DIALECT)
    (target,) = transpile_and_reparse(sql, dialect)
    names = selected_names(source)
    assert selected_names(target) == names
    assert len(names) == len(set(names)), "a view must not expose a column twice"
    assert "duration_min" in names or event_type == "alias"


# -- SQL inside Python modules ------------------------------------------------------------------------------
def read_statements(module: Path) -> list[str]:
    """The literal SQL passed to `store.read(...)` in a module."""
    found = []
    for node in ast.walk(ast.parse(module.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "read"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(node.args[0].value)
    return found


EMBEDDED = [
    (f"{path}#{index}", sql)
    for path in ("collect/quarantine.py", "operations.py")
    for index, sql in enumerate(read_statements(SOURCE_ROOT / path))
]


def test_the_modules_still_hold_the_statements_checked_here() -> None:
    assert sum(name.startswith("collect/quarantine.py") for name, _ in EMBEDDED) >= 2
    assert sum(name.startswith("operations.py") for name, _ in EMBEDDED) >= 2


@pytest.mark.parametrize(("where", "sql"), EMBEDDED, ids=[name for name, _ in EMBEDDED])
@pytest.mark.parametrize("dialect", BACKEND_DIALECTS)
def test_embedded_statements_parse_and_transpile(where: str, sql: str, dialect: str) -> None:
    (source,) = parse_all(sql, SOURCE_DIALECT)
    (target,) = transpile_and_reparse(sql, dialect)
    assert isinstance(source, exp.Select) and isinstance(target, exp.Select)
    assert len(list(target.find_all(exp.Placeholder))) == len(list(source.find_all(exp.Placeholder)))
    assert [s.alias_or_name for s in target.selects] == [s.alias_or_name for s in source.selects]
