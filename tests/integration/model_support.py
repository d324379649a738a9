"""A workspace with models on a real store: events go in through normalization and identity processing, models
run through the real runner on a virtual clock."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrion.clock import VirtualClock
from orchestrion.collect.event import NormalizedEvent
from orchestrion.collect.normalize import RequestMeta, normalize
from orchestrion.model.refresh import models_status, run_models
from orchestrion.model.runner import RunReport
from orchestrion.pipeline import Processing, build_processing
from orchestrion.store import open_store
from orchestrion.store.ports import IngestBatch, Store
from orchestrion.workspace import Workspace, load_workspace

WORKSPACE_YAML = """\
name: models
sources:
  - name: app
    write_key: wk_app_test_0001
  - name: web
    write_key: wk_web_test_0001
  - name: support
    write_key: wk_support_test_0001
models:
  scheduler: false
"""
START = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)  # a Monday
_ids = itertools.count(1)


def track(
    event: str,
    at: dt.datetime,
    *,
    user: str | None = None,
    anonymous: str | None = None,
    source: str = "app",
    **properties: Any,
) -> tuple[str, dict[str, Any]]:
    """A track call as a client sends it, with the source it is sent to."""
    item: dict[str, Any] = {
        "type": "track",
        "event": event,
        "messageId": f"msg-{next(_ids):06d}",
        "timestamp": at.isoformat(),
        "properties": properties,
    }
    if user:
        item["userId"] = user
    if anonymous:
        item["anonymousId"] = anonymous
    return source, item


def identify(
    at: dt.datetime, *, user: str, anonymous: str | None = None, source: str = "app", **traits: Any
) -> tuple[str, dict[str, Any]]:
    item: dict[str, Any] = {
        "type": "identify",
        "userId": user,
        "messageId": f"msg-{next(_ids):06d}",
        "timestamp": at.isoformat(),
        "traits": traits,
    }
    if anonymous:
        item["anonymousId"] = anonymous
    return source, item


@dataclass
class ModelWorkspace:
    workspace: Workspace
    store: Store
    clock: VirtualClock
    processing: Processing | None = None

    @property
    def models_dir(self) -> Path:
        return self.workspace.models_dir

    def write_model(self, name: str, sql: str, sidecar: str | None = None) -> None:
        self.models_dir.mkdir(exist_ok=True)
        (self.models_dir / f"{name}.sql").write_text(sql)
        if sidecar is not None:
            (self.models_dir / f"{name}.yml").write_text(sidecar)

    def send(self, *calls: tuple[str, dict[str, Any]], received_at: dt.datetime | None = None) -> None:
        """Store the calls (received now on the virtual clock unless said otherwise) and run identity on them."""
        events = []
        received = received_at or self.clock.now()
        for source, item in calls:
            # sent as history, with the device clock right: the event keeps its timestamp
            meta = RequestMeta(source=source, received_at=received, ip=None, batch_sent_at=received.isoformat())
            outcome = normalize(item, meta)
            assert isinstance(outcome, NormalizedEvent), outcome
            events.append(outcome)
        self.store.append([IngestBatch(events=events)])
        if self.processing is None:
            self.processing = build_processing(self.store, self.workspace)
        self.processing.conductor.drain()

    def run(self, select: Sequence[str] | None = None, *, full_refresh: bool = False) -> RunReport:
        return run_models(self.store, self.workspace, self.clock, select=select, full_refresh=full_refresh)

    def status(self) -> dict[str, dict[str, Any]]:
        return {row["model"]: row for row in models_status(self.store, self.workspace, self.clock)}

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.store.read(sql).rows

    def profile_of(self, user_id: str) -> str:
        profile = self.store.profile_for_identifier("user_id", user_id)
        assert profile is not None, f"no profile for user {user_id}"
        return profile

    def profiles_by_user(self) -> dict[str, str]:
        """profile_id -> user_id for every profile with a user id (to read model rows by user)."""
        rows = self.rows("SELECT profile_id, identifier_value FROM identity_graph WHERE identifier_type = 'user_id'")
        return {str(p): str(u) for p, u in rows}


@contextmanager
def model_workspace(root: Path, database_url: str, *, start: dt.datetime = START) -> Iterator[ModelWorkspace]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "orchestrion.yml").write_text(WORKSPACE_YAML)
    (root / "models").mkdir(exist_ok=True)
    workspace = load_workspace(root, {"ORCHESTRION_DATABASE_URL": database_url, "ORCHESTRION_ADMIN_TOKEN": "adm_x"})
    store = open_store(workspace.database_url)
    opened = ModelWorkspace(workspace, store, VirtualClock(start))
    try:
        yield opened
    finally:
        if opened.processing is not None:
            opened.processing.conductor.lease.release()  # PostgreSQL: the processing lease's session
        store.close()


FITNESS = Path(__file__).resolve().parents[2] / "examples" / "fitness"


def fitness_calls(users: int, end: dt.datetime) -> list[tuple[str, dict[str, Any]]]:
    """The fitness example's simulated traffic (seeded, deterministic) as (source, wire event) pairs, keeping the
    calls the server stores."""
    import importlib.util
    import sys

    if "workout_traffic" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "workout_traffic", FITNESS / "workout_traffic" / "__init__.py", submodule_search_locations=[]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["workout_traffic"] = module
        spec.loader.exec_module(module)
    generate = sys.modules["workout_traffic"].generate
    return [(call.source, call.wire_event()) for call in generate(users, end=end) if call.expect == "stored"]


def use_fitness_project(env: ModelWorkspace) -> None:
    """Copy the fitness example's contracts and models into the workspace."""
    import shutil

    shutil.copytree(FITNESS / "models", env.models_dir, dirs_exist_ok=True)
    shutil.copytree(FITNESS / "contracts", env.workspace.contracts_dir, dirs_exist_ok=True)


@contextmanager
def module_pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for a module-scoped fixture (conftest's `fresh_pg_url` is per test)."""
    from tests.conftest import throwaway_pg_database

    with throwaway_pg_database("orch_m", migrated=True) as url:
        yield url
