"""What differs between storage backends, declared as data rather than scattered isinstance checks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Capabilities:
    name: str
    sql_dialect: str  # sqlglot dialect name
    multi_process_writers: bool  # PostgreSQL: many processes; DuckDB: one writer process
    writer_threads: int  # group-commit writer threads the gateway runs
    skip_locked: bool  # FOR UPDATE SKIP LOCKED claims


DUCKDB = Capabilities(
    name="duckdb", sql_dialect="duckdb", multi_process_writers=False, writer_threads=1, skip_locked=False
)
POSTGRES = Capabilities(
    name="postgres", sql_dialect="postgres", multi_process_writers=True, writer_threads=4, skip_locked=True
)
