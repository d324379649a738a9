"""Freshness: how old each model's data is against its SLO, the `model_stale` alert, and the flag journeys read.

A model's data is as old as the `as_of` of its last successful build (the instant its inputs were read). Past
its `freshness` SLO it is stale until a build succeeds again: one staleness episode, one `model_stale` event
(its messageId names the last successful build, so repeated checks store it once).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from orchestrion.model.builds import BuildRecord, latest_builds, latest_successes
from orchestrion.model.project import ModelProject
from orchestrion.model.signals import MODEL_STALE, internal_event
from orchestrion.store.ports import IngestBatch, Store
from orchestrion.store.warehouse import Warehouse


@dataclass(frozen=True)
class Freshness:
    model: str
    data_as_of: dt.datetime | None  # as_of of the last successful build; None: never built
    age: dt.timedelta | None
    slo: dt.timedelta | None
    last_success_build: str | None

    @property
    def stale(self) -> bool:
        if self.slo is None:
            return False
        return self.age is None or self.age > self.slo


def freshness_of(project: ModelProject, successes: Mapping[str, BuildRecord], now: dt.datetime) -> dict[str, Freshness]:
    """Freshness of every model of the project (SLOs from the files, data times from the build history)."""
    found = {}
    for name, model in project.models.items():
        success = successes.get(name)
        found[name] = Freshness(
            model=name,
            data_as_of=success.as_of if success else None,
            age=now - success.as_of if success else None,
            slo=model.config.freshness,
            last_success_build=success.build_id if success else None,
        )
    return found


def is_stale(warehouse: Warehouse, model: str, now: dt.datetime) -> bool:
    """Whether a model's data is past its SLO, from the build history alone (what another process can read).

    A model never built successfully is stale; one built without an SLO never is.
    """
    success = latest_successes(warehouse).get(model)
    if success is None:
        return True
    if success.freshness_seconds is None:
        return False
    return (now - success.as_of).total_seconds() > success.freshness_seconds


def stale_message_id(model: str, last_success_build: str | None) -> str:
    return f"model_stale:{model}:{last_success_build or 'never'}"


def alert_stale(warehouse: Warehouse, store: Store, project: ModelProject, now: dt.datetime) -> list[Freshness]:
    """Write a `model_stale` event for each stale model with an SLO (once per episode); returns the stale ones."""
    successes = latest_successes(warehouse)
    attempted = latest_builds(warehouse)
    stale = [f for f in freshness_of(project, successes, now).values() if f.stale]
    events = []
    for item in stale:
        assert item.slo is not None
        last_attempt = attempted.get(item.model)
        events.append(
            internal_event(
                MODEL_STALE,
                stale_message_id(item.model, item.last_success_build),
                {
                    "model": item.model,
                    "data_as_of": item.data_as_of.isoformat() if item.data_as_of else None,
                    "age_seconds": round(item.age.total_seconds(), 3) if item.age else None,
                    "freshness_seconds": item.slo.total_seconds(),
                    "last_success_build": item.last_success_build,
                    "last_build_status": last_attempt.status if last_attempt else None,
                    "last_build_error": last_attempt.error if last_attempt else None,
                },
                now,
                now,
            )
        )
    if events:
        store.append([IngestBatch(events=events)])
    return stale
