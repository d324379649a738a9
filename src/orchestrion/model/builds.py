"""The build history (`model_builds`): one row per model build, written when it starts and when it ends."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from orchestrion.store.warehouse import Warehouse, WarehouseCursor, product_sql

_COLUMNS = (
    "build_id, run_id, model, kind, version, mode, status, as_of, started_at, finished_at, duration_seconds, "
    "rows_total, rows_written, watermark, freshness_seconds, error, triggered_by"
)


@dataclass(frozen=True)
class BuildRecord:
    """One row of model_builds."""

    build_id: str
    run_id: str
    model: str
    kind: str
    version: str
    mode: str  # full | incremental
    status: str  # running | success | failed | skipped
    as_of: dt.datetime
    started_at: dt.datetime
    finished_at: dt.datetime | None
    duration_seconds: float | None
    rows_total: int | None
    rows_written: int | None
    watermark: dt.datetime | None
    freshness_seconds: float | None
    error: str | None
    triggered_by: str

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in _COLUMNS.split(", ")}


def _record(row: tuple[object, ...]) -> BuildRecord:
    return BuildRecord(*row)  # type: ignore[arg-type]


def record_start(warehouse: Warehouse, record: BuildRecord) -> None:
    warehouse.execute(
        product_sql(f"INSERT INTO model_builds ({_COLUMNS}) VALUES ({', '.join(['?'] * 17)})", warehouse.dialect),
        [getattr(record, name) for name in _COLUMNS.split(", ")],
    )


def record_finish(
    target: Warehouse | WarehouseCursor,
    dialect: str,
    build_id: str,
    *,
    status: str,
    finished_at: dt.datetime,
    duration_seconds: float,
    rows_total: int | None = None,
    rows_written: int | None = None,
    watermark: dt.datetime | None = None,
    error: str | None = None,
) -> None:
    """Close a build's row, inside the swap's transaction (a cursor) or on its own (the warehouse)."""
    target.execute(
        product_sql(
            "UPDATE model_builds SET status = ?, finished_at = ?, duration_seconds = ?, rows_total = ?, "
            "rows_written = ?, watermark = ?, error = ? WHERE build_id = ?",
            dialect,
        ),
        [status, finished_at, duration_seconds, rows_total, rows_written, watermark, error, build_id],
    )


def latest_builds(warehouse: Warehouse) -> dict[str, BuildRecord]:
    """The newest build of each model, whatever its status."""
    result = warehouse.fetch(
        product_sql(
            f"SELECT {_COLUMNS} FROM (SELECT *, row_number() OVER (PARTITION BY model ORDER BY started_at DESC, "
            "build_id DESC) AS newest FROM model_builds) AS b WHERE newest = 1",
            warehouse.dialect,
        )
    )
    return {str(row[2]): _record(row) for row in result.rows}


def latest_successes(warehouse: Warehouse) -> dict[str, BuildRecord]:
    """The newest successful build of each model: what its table holds now."""
    result = warehouse.fetch(
        product_sql(
            f"SELECT {_COLUMNS} FROM (SELECT *, row_number() OVER (PARTITION BY model ORDER BY finished_at DESC, "
            "build_id DESC) AS newest FROM model_builds WHERE status = 'success') AS b WHERE newest = 1",
            warehouse.dialect,
        )
    )
    return {str(row[2]): _record(row) for row in result.rows}


def built_model_names(warehouse: Warehouse) -> set[str]:
    result = warehouse.fetch("SELECT DISTINCT model FROM model_builds")
    return {str(row[0]) for row in result.rows}


def abandon_running(warehouse: Warehouse, at: dt.datetime) -> None:
    """Builds still `running` when a run starts were cut short (the process died): mark them failed."""
    warehouse.execute(
        product_sql(
            "UPDATE model_builds SET status = 'failed', finished_at = ?, "
            "error = 'interrupted: the process stopped during the build' WHERE status = 'running'",
            warehouse.dialect,
        ),
        [at],
    )
