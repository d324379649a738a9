"""Scheduled refresh inside `orchestrion serve`: every tick, build the models whose schedule is due.

The model files are read again at each tick (an edited model is picked up without a restart; a broken one is
logged once and waited on). Staleness is checked on every tick, so a model whose builds keep failing still raises
its `model_stale` alert. With several servers on one PostgreSQL database, the run lock lets one of them build;
the others find nothing due afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import time

from orchestrion.clock import Clock
from orchestrion.model.builds import latest_builds
from orchestrion.model.errors import ModelProjectError
from orchestrion.model.freshness import alert_stale
from orchestrion.model.refresh import load_models
from orchestrion.model.runner import ModelRunner, RunReport
from orchestrion.pipeline import CHECKPOINT
from orchestrion.store.ports import Store
from orchestrion.store.warehouse import ModelRunBusy, warehouse_for
from orchestrion.workspace import Workspace

log = logging.getLogger(__name__)
FIRST_TICK_SECONDS = 1.0


def wait_for_processing(store: Store, timeout: float = 30.0) -> bool:
    """Wait until identity processing has reached the log's head as it is now (models join on its tables).

    Returns False when it did not within `timeout` (the models then see what was processed so far).
    """
    rows = store.read("SELECT coalesce(max(seq), 0) FROM events").rows
    head = int(rows[0][0]) if rows else 0
    deadline = time.monotonic() + timeout
    while store.processing_position(CHECKPOINT) < head:
        if not store.read_events_after(store.processing_position(CHECKPOINT), 1):
            return True  # the rest of the head was a gap (a rolled-back write): nothing left to process
        if time.monotonic() > deadline:
            log.warning("models: processing is behind the event log; building on what it has reached")
            return False
        time.sleep(0.05)
    return True


class ModelScheduler:
    def __init__(self, store: Store, workspace: Workspace, clock: Clock) -> None:
        self.store = store
        self.workspace = workspace
        self.clock = clock
        self._last_problem: str | None = None
        self._stopping = asyncio.Event()  # binds to the running loop on first use

    def tick(self) -> RunReport | None:
        """One look at the schedules: build what is due (None when nothing was)."""
        if not any(self.workspace.models_dir.glob("*.sql")):
            return None  # no models: nothing to build or watch
        warehouse = warehouse_for(self.store)
        try:
            project = load_models(self.workspace, warehouse)
        except ModelProjectError as exc:
            if str(exc) != self._last_problem:
                log.error("models: not refreshing until the files are fixed: %s", exc)
                self._last_problem = str(exc)
            return None
        self._last_problem = None
        now = self.clock.now()
        latest = latest_builds(warehouse)
        due = []
        for name, model in project.models.items():
            schedule = model.config.refresh
            last = latest.get(name)
            if schedule is not None and schedule.is_due(last.started_at if last else None, now):
                due.append(name)
        if not due:
            alert_stale(warehouse, self.store, project, now)
            return None
        wait_for_processing(self.store)
        runner = ModelRunner(self.store, warehouse, project, self.clock, triggered_by="schedule")
        try:
            report = runner.run(due)
        except ModelRunBusy:
            return None  # another run (the CLI, or another server) is building; look again next tick
        for result in report.results:
            if result.status != "success":
                log.warning("models: scheduled build of %s %s: %s", result.model, result.status, result.error)
        return report

    async def run_forever(self) -> None:
        """Tick until `stop`; a build in progress then finishes before this returns (no half-swapped state)."""
        tick_seconds = self.workspace.config.models.tick.total_seconds()
        delay = min(FIRST_TICK_SECONDS, tick_seconds)
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
                return
            except TimeoutError:
                pass
            try:
                await asyncio.to_thread(self.tick)
            except Exception:
                log.exception("models: scheduled refresh failed; will retry")
            delay = tick_seconds

    async def stop(self, task: asyncio.Task[None], timeout: float = 120.0) -> None:
        """Stop ticking and wait for the tick in progress (bounded); called from the server's shutdown."""
        self._stopping.set()
        try:
            await asyncio.wait_for(task, timeout)
        except TimeoutError:
            log.warning("models: a scheduled build was still running at shutdown")
