"""Building models in dependency order.

Each model is built into a scratch table (`<name>__new`), checked against the rules of its kind, and swapped in
under its name in one transaction: readers see the old table or the new one, never half a build. The audience
diff and the build's row in `model_builds` commit in that same transaction. An incremental build computes only
the recent buckets (`<name>__delta`) and replaces them in one transaction. A failed model keeps its old table;
the models that read it are skipped in that run.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrion.clock import Clock
from orchestrion.model.audiences import emit_pending_changes, record_membership_changes
from orchestrion.model.builds import BuildRecord, abandon_running, latest_successes, record_finish, record_start
from orchestrion.model.checks import check_result, result_columns
from orchestrion.model.compile import compile_model, incremental_inputs
from orchestrion.model.config import ModelKind
from orchestrion.model.errors import ModelBuildFailed
from orchestrion.model.freshness import alert_stale
from orchestrion.model.project import Model, ModelProject
from orchestrion.store.ports import Store
from orchestrion.store.warehouse import Warehouse, WarehouseCursor, product_sql, quoted

log = logging.getLogger(__name__)

FULL = "full"
INCREMENTAL = "incremental"


@dataclass(frozen=True)
class BuildResult:
    model: str
    kind: str
    mode: str
    status: str  # success | failed | skipped
    build_id: str | None
    version: str
    duration_seconds: float
    rows_total: int | None = None
    rows_written: int | None = None
    watermark: dt.datetime | None = None
    entered: int = 0
    exited: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RunProgress:
    """What a progress display hears: `model_started` and `model_finished` for each model, in order."""

    phase: str
    model: str
    index: int
    total: int
    result: BuildResult | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "model": self.model,
            "index": self.index,
            "total": self.total,
            "result": self.result.as_dict() if self.result else None,
        }


@dataclass
class RunReport:
    run_id: str
    as_of: dt.datetime
    results: list[BuildResult] = field(default_factory=list)
    events_emitted: int = 0
    stale: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status == "success" for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "as_of": self.as_of,
            "ok": self.ok,
            "results": [r.as_dict() for r in self.results],
            "events_emitted": self.events_emitted,
            "stale": self.stale,
        }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _as_instant(value: Any) -> dt.datetime | None:
    """A bucket value read back from the warehouse (a date or a timestamp) as a UTC instant."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    raise ModelBuildFailed(f"the incremental time column holds {value!r}, not a date or timestamp")


class ModelRunner:
    """Runs the models of one project against one warehouse, writing audience and alert events to `store`."""

    def __init__(
        self,
        store: Store,
        warehouse: Warehouse,
        project: ModelProject,
        clock: Clock,
        *,
        triggered_by: str = "cli",
    ) -> None:
        self.store = store
        self.warehouse = warehouse
        self.project = project
        self.clock = clock
        self.triggered_by = triggered_by

    def run(
        self,
        select: Sequence[str] | None = None,
        *,
        full_refresh: bool = False,
        on_progress: Callable[[RunProgress], None] | None = None,
    ) -> RunReport:
        names = self.project.select(select)
        with self.warehouse.run_lock():
            now = self.clock.now()
            abandon_running(self.warehouse, now)
            report = RunReport(run_id="r_" + secrets.token_hex(6), as_of=now.replace(microsecond=0))
            relations = self.warehouse.relations()
            successes = latest_successes(self.warehouse)
            failed: set[str] = set()
            for index, name in enumerate(names):
                model = self.project.models[name]
                if on_progress is not None:
                    on_progress(RunProgress("model_started", name, index, len(names)))
                broken = sorted(self.project.upstream(name) & failed)
                if broken or model.waiting_for:
                    result = BuildResult(
                        model=name,
                        kind=model.kind.value,
                        mode=FULL,
                        status="skipped",
                        build_id=None,
                        version=model.version,
                        duration_seconds=0.0,
                        error=self._why_skipped(model, broken),
                    )
                else:
                    result = self._build(model, report, relations, successes.get(name), full_refresh)
                if result.status != "success":
                    failed.add(name)
                report.results.append(result)
                if on_progress is not None:
                    on_progress(RunProgress("model_finished", name, index, len(names), result))
            try:
                report.events_emitted = emit_pending_changes(self.warehouse, self.store, self.clock.now())
            except Exception:  # the builds are committed; their changes stay pending for the next run
                log.exception("models: audience events not written yet; the next run writes them")
            stale = alert_stale(self.warehouse, self.store, self.project, self.clock.now())
            report.stale = [f.model for f in stale]
            return report

    @staticmethod
    def _why_skipped(model: Model, broken: list[str]) -> str:
        if model.waiting_for:
            views = ", ".join(f"`{name}`" for name in sorted(model.waiting_for))
            return f"{model.where}: waiting for the first event of {views} (its landing view appears with it)"
        return f"not built: {', '.join(broken)} was not built in this run"

    # -- one model -------------------------------------------------------------------------------
    def _mode(self, model: Model, relations: dict[str, Any], previous: BuildRecord | None, full: bool) -> str:
        if full or model.config.incremental is None or previous is None:
            return FULL
        if previous.version != model.version or model.name not in relations or previous.watermark is None:
            return FULL  # the SQL or settings changed, or the table is gone: rebuild it whole
        return INCREMENTAL

    def _build(
        self,
        model: Model,
        report: RunReport,
        relations: dict[str, Any],
        previous: BuildRecord | None,
        full_refresh: bool,
    ) -> BuildResult:
        mode = self._mode(model, relations, previous, full_refresh)
        build_id = "b_" + secrets.token_hex(6)
        started = self.clock.now()
        freshness = model.config.freshness.total_seconds() if model.config.freshness else None
        record_start(
            self.warehouse,
            BuildRecord(
                build_id, report.run_id, model.name, model.kind.value, model.version, mode, "running",
                report.as_of, started, None, None, None, None, None, freshness, None, self.triggered_by,
            ),
        )  # fmt: skip
        clock_started = time.perf_counter()
        try:
            if mode == FULL:
                result = self._full(model, build_id, report.as_of, clock_started)
            else:
                assert previous is not None and previous.watermark is not None
                result = self._incremental(model, build_id, report.as_of, previous.watermark, relations, clock_started)
        except Exception as exc:
            message = _first_line(exc)
            if not message.startswith(model.where):
                message = f"{model.where}: {message}"
            log.warning("model %s failed: %s", model.name, message)
            self._drop_scratch(model)
            elapsed = time.perf_counter() - clock_started
            record_finish(
                self.warehouse,
                self.warehouse.dialect,
                build_id,
                status="failed",
                finished_at=self.clock.now(),
                duration_seconds=elapsed,
                error=message,
            )
            return BuildResult(
                model=model.name,
                kind=model.kind.value,
                mode=mode,
                status="failed",
                build_id=build_id,
                version=model.version,
                duration_seconds=elapsed,
                error=message,
            )
        return result

    def _drop_scratch(self, model: Model) -> None:
        for suffix in ("__new", "__delta"):
            try:
                self.warehouse.execute(f"DROP TABLE IF EXISTS {quoted(model.name + suffix)}")
            except Exception:
                log.exception("could not drop %s%s", model.name, suffix)

    def _count(self, cur: WarehouseCursor, table: str) -> int:
        return int(cur.fetch(f"SELECT count(*) FROM {quoted(table)}").rows[0][0])

    def _watermark(self, cur: WarehouseCursor, model: Model, table: str) -> dt.datetime | None:
        if model.config.incremental is None:
            return None
        column = model.config.incremental.time_column
        return _as_instant(cur.fetch(f"SELECT max({quoted(column)}) FROM {quoted(table)}").rows[0][0])

    def _full(self, model: Model, build_id: str, as_of: dt.datetime, clock_started: float) -> BuildResult:
        warehouse = self.warehouse
        scratch = f"{model.name}__new"
        sql = compile_model(model, warehouse.dialect, as_of=as_of)
        warehouse.execute(f"DROP TABLE IF EXISTS {quoted(scratch)}")
        warehouse.execute(f"CREATE TABLE {quoted(scratch)} AS {sql}")
        entered = exited = 0
        with warehouse.transaction() as cur:
            rows = check_result(cur, model, scratch)
            watermark = self._watermark(cur, model, scratch)
            if model.kind is ModelKind.AUDIENCE:
                diff = record_membership_changes(cur, warehouse.dialect, model.name, scratch, build_id, as_of)
                entered, exited = diff.entered, diff.exited
            warehouse.replace_table(cur, model.name, scratch)
            elapsed = time.perf_counter() - clock_started
            record_finish(
                cur,
                warehouse.dialect,
                build_id,
                status="success",
                finished_at=self.clock.now(),
                duration_seconds=elapsed,
                rows_total=rows,
                rows_written=rows,
                watermark=watermark,
            )
        return BuildResult(
            model=model.name,
            kind=model.kind.value,
            mode=FULL,
            status="success",
            build_id=build_id,
            version=model.version,
            duration_seconds=elapsed,
            rows_total=rows,
            rows_written=rows,
            watermark=watermark,
            entered=entered,
            exited=exited,
        )

    def _incremental(
        self,
        model: Model,
        build_id: str,
        as_of: dt.datetime,
        watermark: dt.datetime,
        relations: dict[str, Any],
        clock_started: float,
    ) -> BuildResult:
        warehouse = self.warehouse
        dialect = warehouse.dialect
        incremental = model.config.incremental
        assert incremental is not None
        since = incremental.rebuild_from(watermark, as_of)
        scratch = f"{model.name}__delta"
        sql = compile_model(
            model,
            warehouse.dialect,
            as_of=as_of,
            incremental_since=since,
            incremental_relations=incremental_inputs(model, relations),
        )
        warehouse.execute(f"DROP TABLE IF EXISTS {quoted(scratch)}")
        warehouse.execute(f"CREATE TABLE {quoted(scratch)} AS {sql}")
        column = quoted(incremental.time_column)
        target = quoted(model.name)
        with warehouse.transaction() as cur:
            written = check_result(cur, model, scratch)
            before = product_sql(f"SELECT count(*) FROM {quoted(scratch)} WHERE {column} < ?", dialect)
            early = cur.fetch(before, [since]).rows[0][0]
            if early:
                raise ModelBuildFailed(
                    f"{model.where}: {early} row(s) of the incremental build fall before {since.isoformat()}, the "
                    f"first rebuilt {incremental.grain}; `{incremental.time_column}` must be the "
                    f"{incremental.grain} of `{incremental.input_column}`"
                )
            columns = ", ".join(quoted(c) for c in result_columns(cur, scratch))
            cur.execute(product_sql(f"DELETE FROM {target} WHERE {column} >= ?", dialect), [since])
            cur.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {quoted(scratch)}")
            check_result(cur, model, model.name, where=f"{column} >= CAST('{since.isoformat()}' AS TIMESTAMPTZ)")
            rows = self._count(cur, model.name)
            new_watermark = self._watermark(cur, model, model.name)
            cur.execute(f"DROP TABLE {quoted(scratch)}")
            elapsed = time.perf_counter() - clock_started
            record_finish(
                cur,
                warehouse.dialect,
                build_id,
                status="success",
                finished_at=self.clock.now(),
                duration_seconds=elapsed,
                rows_total=rows,
                rows_written=written,
                watermark=new_watermark or watermark,
            )
        return BuildResult(
            model=model.name,
            kind=model.kind.value,
            mode=INCREMENTAL,
            status="success",
            build_id=build_id,
            version=model.version,
            duration_seconds=elapsed,
            rows_total=rows,
            rows_written=written,
            watermark=new_watermark or watermark,
        )
