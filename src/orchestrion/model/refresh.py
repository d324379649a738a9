"""Model operations as the faces call them (CLI, admin API, the scheduler): load, run, report status."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from orchestrion.clock import Clock
from orchestrion.collect.contracts import load_contracts
from orchestrion.model.builds import built_model_names, latest_builds, latest_successes
from orchestrion.model.freshness import freshness_of
from orchestrion.model.project import ModelProject, load_project
from orchestrion.model.runner import ModelRunner, RunProgress, RunReport
from orchestrion.model.signals import AUDIENCE_ENTERED, AUDIENCE_EXITED, MODEL_STALE
from orchestrion.store.landing import event_table_name
from orchestrion.store.ports import Store
from orchestrion.store.warehouse import Warehouse, warehouse_for
from orchestrion.workspace import Workspace


def expected_views(workspace: Workspace) -> set[str]:
    """Landing views that appear with their first event: those of the tracking plans and Orchestrion's own."""
    names = {event_table_name(c.name) for c in load_contracts(workspace.contracts_dir).contracts if c.type == "track"}
    return names | {event_table_name(name) for name in (AUDIENCE_ENTERED, AUDIENCE_EXITED, MODEL_STALE)}


def load_models(workspace: Workspace, warehouse: Warehouse) -> ModelProject:
    """The workspace's models, checked against the relations the warehouse has now."""
    return load_project(
        workspace.models_dir,
        warehouse.relations(),
        dialect=workspace.config.models.dialect,
        built_models=built_model_names(warehouse),
        expected=expected_views(workspace),
    )


def run_models(
    store: Store,
    workspace: Workspace,
    clock: Clock,
    *,
    select: Sequence[str] | None = None,
    full_refresh: bool = False,
    triggered_by: str = "cli",
    on_progress: Callable[[RunProgress], None] | None = None,
) -> RunReport:
    warehouse = warehouse_for(store)
    project = load_models(workspace, warehouse)
    runner = ModelRunner(store, warehouse, project, clock, triggered_by=triggered_by)
    return runner.run(select, full_refresh=full_refresh, on_progress=on_progress)


def _seconds(value: dt.timedelta | None) -> float | None:
    return value.total_seconds() if value is not None else None


def models_status(store: Store, workspace: Workspace, clock: Clock) -> list[dict[str, Any]]:
    """One row per model: its settings, its last build and how fresh its data is."""
    warehouse = warehouse_for(store)
    project = load_models(workspace, warehouse)
    now = clock.now()
    latest = latest_builds(warehouse)
    successes = latest_successes(warehouse)
    freshness = freshness_of(project, successes, now)
    rows = []
    for name, model in project.models.items():
        last = latest.get(name)
        success = successes.get(name)
        fresh = freshness[name]
        refresh = model.config.refresh
        rows.append(
            {
                "model": name,
                "kind": model.kind.value,
                "file": model.where,
                "version": model.version,
                "changed_since_build": success is not None and success.version != model.version,
                "schedule": model.config.schedule,
                "next_refresh": refresh.next_after(last.started_at) if refresh and last else None,
                "freshness_slo_seconds": _seconds(fresh.slo),
                "data_as_of": fresh.data_as_of,
                "age_seconds": _seconds(fresh.age),
                "stale": fresh.stale,
                "last_build": last.as_dict() if last else None,
                "last_success": success.as_dict() if success else None,
                "reads": sorted(model.inputs),
                "waiting_for": sorted(model.waiting_for),
            }
        )
    return rows
