"""Product SQL is written once, in DuckDB's dialect, and transpiled per backend with sqlglot."""

from __future__ import annotations

from functools import cache
from importlib import resources

import sqlglot

SOURCE_DIALECT = "duckdb"


@cache
def transpile(sql: str, dialect: str) -> list[str]:
    """Every statement of `sql` rendered for `dialect`."""
    if dialect == SOURCE_DIALECT:
        return [s.sql(dialect=dialect) for s in sqlglot.parse(sql, read=SOURCE_DIALECT) if s is not None]
    return sqlglot.transpile(sql, read=SOURCE_DIALECT, write=dialect)


def packaged_sql(name: str) -> str:
    """The text of a .sql file shipped under orchestrion/store/sql/."""
    return resources.files("orchestrion.store").joinpath("sql", name).read_text()


def migration_files() -> list[tuple[int, str]]:
    """(version, file name) of every migration, in order."""
    folder = resources.files("orchestrion.store").joinpath("sql", "migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name))
    return sorted(found)
