"""Audiences: each refresh diffs membership and writes audience_entered / audience_exited events, once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestrion.model.audiences import emit_pending_changes
from orchestrion.model.signals import audience_message_id
from orchestrion.store.warehouse import warehouse_for
from tests.integration.model_support import START, ModelWorkspace, model_workspace, track

HOUR = dt.timedelta(hours=1)
# Members who completed at least two workouts and have not asked for a break.
REGULARS = """\
-- kind: audience
SELECT p.profile_id
FROM workout_completed w JOIN event_profiles p ON p.source = w.source AND p.message_id = w.message_id
WHERE p.profile_id NOT IN (
    SELECT q.profile_id
    FROM break_requested b JOIN event_profiles q ON q.source = b.source AND q.message_id = b.message_id
)
GROUP BY p.profile_id
HAVING count(*) >= 2
"""


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> Iterator[ModelWorkspace]:
    with model_workspace(tmp_path / "ws", database_url) as opened:
        opened.send(track("break_requested", START - 10 * HOUR, user="nobody"))  # the view exists from the start
        opened.write_model("regulars", REGULARS)
        yield opened


def audience_events(env: ModelWorkspace) -> list[dict[str, Any]]:
    rows = env.rows(
        'SELECT message_id, event, user_id, anonymous_id, "timestamp", CAST(payload AS VARCHAR) FROM events '
        "WHERE source = 'orchestrion' ORDER BY seq"
    )
    users = env.profiles_by_user()
    out = []
    for message_id, event, user_id, anonymous_id, at, payload in rows:
        properties = orjson.loads(payload)["properties"]
        out.append(
            {
                "message_id": message_id,
                "event": event,
                "who": users[properties["profile_id"]],
                "audience": properties["audience"],
                "build_id": properties["build_id"],
                "at": at,
                "ids": (user_id, anonymous_id),
            }
        )
    return out


def test_entering_and_leaving_an_audience_become_events(env: ModelWorkspace) -> None:
    env.send(
        track("workout_completed", START - 3 * HOUR, user="ana"),
        track("workout_completed", START - 2 * HOUR, user="ana"),
        track("workout_completed", START - 2 * HOUR, user="ben"),
    )
    first = env.run()
    assert (first.results[0].entered, first.results[0].exited, first.events_emitted) == (1, 0, 1)
    (entered,) = audience_events(env)
    build = first.results[0].build_id
    assert build is not None
    assert entered == {
        "message_id": audience_message_id("regulars", env.profile_of("ana"), build, "entered"),
        "event": "audience_entered",
        "who": "ana",
        "audience": "regulars",
        "build_id": build,
        "at": START,
        "ids": (None, None),  # identity resolution leaves Orchestrion's own events alone
    }
    # Later, ben completes a second workout and ana asks for a break.
    env.clock.advance(HOUR)
    env.send(track("workout_completed", START, user="ben"), track("break_requested", START, user="ana"))
    second = env.run()
    assert (second.results[0].entered, second.results[0].exited) == (1, 1)
    later = audience_events(env)[1:]
    assert sorted((e["event"], e["who"], e["at"]) for e in later) == [
        ("audience_entered", "ben", START + HOUR),
        ("audience_exited", "ana", START + HOUR),
    ]
    members = {str(p) for (p,) in env.rows("SELECT profile_id FROM audience_memberships WHERE audience = 'regulars'")}
    assert members == {env.profile_of("ben")}


def test_refreshing_again_without_changes_emits_nothing_new(env: ModelWorkspace) -> None:
    env.send(track("workout_completed", START - 3 * HOUR, user="ana"), track("workout_completed", START, user="ana"))
    assert env.run().events_emitted == 1
    for _ in range(3):
        env.clock.advance(HOUR)
        report = env.run()
        assert (report.results[0].entered, report.results[0].exited, report.events_emitted) == (0, 0, 0)
    assert len(audience_events(env)) == 1
    assert env.rows("SELECT count(*) FROM audience_changes") == [(1,)]


def test_changes_recorded_before_a_crash_are_emitted_once_by_the_next_run(env: ModelWorkspace) -> None:
    env.send(track("workout_completed", START - 3 * HOUR, user="ana"), track("workout_completed", START, user="ana"))
    assert env.run().events_emitted == 1
    # A crash after the events were written but before they were marked emitted: the outbox still lists them.
    warehouse = warehouse_for(env.store)
    warehouse.execute("UPDATE audience_changes SET emitted_at = NULL")
    assert emit_pending_changes(warehouse, env.store, env.clock.now()) == 1  # offered again...
    assert len(audience_events(env)) == 1  # ...and stored once: the messageId is deterministic
    assert env.run().events_emitted == 0


def test_audience_events_land_in_their_own_landing_views(env: ModelWorkspace) -> None:
    env.send(track("workout_completed", START - 3 * HOUR, user="ana"), track("workout_completed", START, user="ana"))
    env.run()
    assert env.rows("SELECT audience, profile_id, source FROM audience_entered") == [
        ("regulars", env.profile_of("ana"), "orchestrion")
    ]
