"""Freshness SLOs: a stale model raises one `model_stale` event per episode and a flag journeys can read; the
scheduler builds what is due."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from orchestrion.model.freshness import is_stale
from orchestrion.model.runner import RunReport
from orchestrion.model.scheduler import ModelScheduler
from orchestrion.store.warehouse import warehouse_for
from tests.integration.model_support import START, ModelWorkspace, model_workspace, track

MINUTE = dt.timedelta(minutes=1)
WORKOUTS = """\
SELECT p.profile_id, count(*) AS workouts
FROM workout_completed w JOIN event_profiles p ON p.source = w.source AND p.message_id = w.message_id
GROUP BY 1
"""


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> Iterator[ModelWorkspace]:
    with model_workspace(tmp_path / "ws", database_url) as opened:
        opened.send(track("workout_completed", START - 60 * MINUTE, user="ana"))
        yield opened


def stale_events(env: ModelWorkspace) -> list[tuple[str, dict[str, object]]]:
    rows = env.rows("SELECT message_id, CAST(payload AS VARCHAR) FROM events WHERE event = 'model_stale' ORDER BY seq")
    return [(str(m), orjson.loads(p)["properties"]) for m, p in rows]


def test_a_model_past_its_slo_raises_one_alert_per_staleness_episode(env: ModelWorkspace) -> None:
    env.write_model("workouts", "-- kind: traits\n-- freshness: 1h\n" + WORKOUTS)
    env.write_model("other", "-- kind: traits\nSELECT profile_id FROM profiles")
    warehouse = warehouse_for(env.store)
    first = env.run()
    build = first.results[1].build_id
    assert not is_stale(warehouse, "workouts", env.clock.now())
    env.clock.advance(59 * MINUTE)
    assert env.run(["other"]).stale == []
    assert stale_events(env) == []
    env.clock.advance(2 * MINUTE)  # 61 minutes after the data was read
    assert env.run(["other"]).stale == ["workouts"]
    assert is_stale(warehouse, "workouts", env.clock.now())
    env.clock.advance(30 * MINUTE)
    env.run(["other"])  # still stale: the same episode, no second alert
    ((message_id, properties),) = stale_events(env)
    assert message_id == f"model_stale:workouts:{build}"
    assert properties["model"] == "workouts"
    assert properties["freshness_seconds"] == 3600.0
    assert properties["age_seconds"] == 61 * 60.0
    assert properties["last_build_status"] == "success"
    # A successful build ends the episode; going stale again is a new one.
    assert env.run(["workouts"]).stale == []
    assert not is_stale(warehouse, "workouts", env.clock.now())
    env.clock.advance(90 * MINUTE)
    env.run(["other"])
    assert len(stale_events(env)) == 2


def test_failing_builds_do_not_keep_a_model_fresh(env: ModelWorkspace) -> None:
    env.write_model("workouts", "-- kind: traits\n-- freshness: 30m\n" + WORKOUTS)
    assert env.run().ok
    env.write_model("workouts", "-- kind: traits\n-- freshness: 30m\n" + WORKOUTS.replace("count(*)", "count(nope)"))
    env.clock.advance(31 * MINUTE)
    report = env.run()
    assert report.results[0].status == "failed"
    assert report.stale == ["workouts"]
    ((_, properties),) = stale_events(env)
    assert properties["last_build_status"] == "failed"
    assert "nope" in str(properties["last_build_error"])


def test_a_model_never_built_is_stale_and_one_without_an_slo_never_is(env: ModelWorkspace) -> None:
    env.write_model("workouts", "-- kind: traits\n-- freshness: 1h\n" + WORKOUTS)
    env.write_model("loose", "-- kind: traits\nSELECT profile_id FROM profiles")
    warehouse = warehouse_for(env.store)
    assert is_stale(warehouse, "workouts", env.clock.now())
    env.run(["loose"])
    assert [m for m, _ in stale_events(env)] == ["model_stale:workouts:never"]
    env.clock.advance(dt.timedelta(days=30))
    assert not is_stale(warehouse, "loose", env.clock.now())


def test_the_scheduler_builds_what_is_due_and_watches_freshness(env: ModelWorkspace) -> None:
    env.write_model("workouts", "-- kind: traits\n-- schedule: 30m\n-- freshness: 2h\n" + WORKOUTS)
    env.write_model("by_hand", "-- kind: traits\n-- freshness: 1h\nSELECT profile_id FROM profiles")
    scheduler = ModelScheduler(env.store, env.workspace, env.clock)

    def tick() -> RunReport | None:
        assert env.processing is not None
        env.processing.conductor.drain()  # the server's conductor processes the alerts a tick writes
        return scheduler.tick()

    first = tick()
    assert first is not None
    assert [r.model for r in first.results] == ["workouts"]  # never built, scheduled; by_hand has no schedule
    assert tick() is None  # nothing due yet
    env.clock.advance(29 * MINUTE)
    assert tick() is None
    env.clock.advance(MINUTE)
    again = tick()
    assert again is not None and [r.model for r in again.results] == ["workouts"]
    triggers = {r[0] for r in env.rows("SELECT triggered_by FROM model_builds")}
    assert triggers == {"schedule"}
    # by_hand was never built and has an SLO: the ticks raised its alert (once) even with nothing else to do.
    assert [m for m, _ in stale_events(env)] == ["model_stale:by_hand:never"]


def test_the_scheduler_waits_on_broken_files_without_building_anything(env: ModelWorkspace) -> None:
    env.write_model("workouts", "-- kind: traits\n-- schedule: 30m\nSELECT profile_id FROM nowhere")
    assert ModelScheduler(env.store, env.workspace, env.clock).tick() is None
    assert env.rows("SELECT count(*) FROM model_builds") == [(0,)]
