"""The fitness example's models (examples/fitness/models/) against a small dataset whose expected values are worked
out by hand below, on DuckDB and PostgreSQL.

As of Monday 2026-03-02 12:00 UTC. Workouts happen at 10:00 UTC on the days named (d0 = today, d3 = three days
ago). Six members:

- ana: yoga d30 (30 min), yoga d2 (45), strength d1 (45), yoga d0 (45). Pricing seen anonymously on the web at
  d40 and d3 (before and after signing up on the web at d35 with that anonymous id), a plan comparison at d3.
- ben: running d13, d11, d6, d4, d3 (20 min each), strength d9 (60). Subscribed at d2. A billing ticket at d3,
  never resolved.
- cara: cycling d10 (30). A bug ticket at d8, resolved at d7 after 20 hours, CSAT 2.
- dan: signed up in the app at d5, viewed pricing at d1, never trained.
- eve: hiit d1 and d0 (30 each). Pricing at d5, d4, d2, checkout abandoned at d2. A billing ticket at d20, resolved
  after 2 hours, CSAT 5.
- fay: strength d40, d35 (30 each). An `other` ticket at d60, resolved after 5 hours, CSAT 4.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.integration.model_support import (
    ModelWorkspace,
    identify,
    model_workspace,
    module_pg_url,
    track,
    use_fitness_project,
)

AS_OF = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


def day(days_ago: int, hour: int = 10) -> dt.datetime:
    return AS_OF.replace(hour=hour) - dt.timedelta(days=days_ago)


def workout(user: str, days_ago: int, kind: str, minutes: int) -> tuple[str, dict[str, Any]]:
    return track("workout_completed", day(days_ago), user=user, workout_type=kind, duration_minutes=minutes)


def support(event: str, user: str, at: dt.datetime, **properties: Any) -> tuple[str, dict[str, Any]]:
    return track(event, at, user=user, source="support", **properties)


DATASET = [
    # ana
    track("pricing_viewed", day(40), anonymous="web-ana", source="web", currency="EUR"),
    identify(day(35), user="ana", anonymous="web-ana", source="web", email="ana@example.com"),
    track("pricing_viewed", day(3), anonymous="web-ana", source="web", currency="EUR"),
    track("plan_comparison_viewed", day(3, 11), anonymous="web-ana", source="web"),
    workout("ana", 30, "yoga", 30),
    workout("ana", 2, "yoga", 45),
    workout("ana", 1, "strength", 45),
    workout("ana", 0, "yoga", 45),
    # ben
    *(workout("ben", d, "running", 20) for d in (13, 11, 6, 4, 3)),
    workout("ben", 9, "strength", 60),
    track("subscription_started", day(2), user="ben", plan_id="premium_monthly", price=12.99),
    support("ticket_created", "ben", day(3), ticket_id="T-1", ticket_reason="billing"),
    # cara
    workout("cara", 10, "cycling", 30),
    support("ticket_created", "cara", day(8), ticket_id="T-2", ticket_reason="bug"),
    support("ticket_resolved", "cara", day(7), ticket_id="T-2", resolution_time=20),
    support("csat_submitted", "cara", day(7, 11), ticket_id="T-2", csat_score=2),
    # dan
    identify(day(5), user="dan", email="dan@example.com"),
    track("pricing_viewed", day(1), user="dan", source="web", currency="USD"),
    # eve
    workout("eve", 1, "hiit", 30),
    workout("eve", 0, "hiit", 30),
    *(track("pricing_viewed", day(d), user="eve", source="web", currency="GBP") for d in (5, 4, 2)),
    track("checkout_abandoned", day(2, 11), user="eve", source="web", plan_id="premium_annual", step="payment"),
    support("ticket_created", "eve", day(20), ticket_id="T-3", ticket_reason="billing"),
    support("ticket_resolved", "eve", day(20, 12), ticket_id="T-3", resolution_time=2),
    support("csat_submitted", "eve", day(20, 13), ticket_id="T-3", csat_score=5),
    # fay
    workout("fay", 40, "strength", 30),
    workout("fay", 35, "strength", 30),
    support("ticket_created", "fay", day(60), ticket_id="T-4", ticket_reason="other"),
    support("ticket_resolved", "fay", day(60, 15), ticket_id="T-4", resolution_time=5),
    support("csat_submitted", "fay", day(60, 16), ticket_id="T-4", csat_score=4),
]


@contextmanager
def built(root: Path, database_url: str) -> Iterator[ModelWorkspace]:
    with model_workspace(root, database_url, start=AS_OF) as env:
        use_fitness_project(env)
        env.send(*DATASET, received_at=AS_OF)
        report = env.run()
        assert report.ok, [(r.model, r.error) for r in report.results]
        yield env


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def fitness(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelWorkspace]:
    """The dataset, built once per backend for the tests that only read it."""
    root = tmp_path_factory.mktemp(f"fitness_{request.param}")
    if request.param == "duckdb":
        with built(root, f"duckdb:///{root / 'fitness.duckdb'}") as env:
            yield env
        return
    with module_pg_url() as url, built(root, url) as env:
        yield env


@pytest.fixture
def fresh_fitness(database_url: str, tmp_path: Path) -> Iterator[ModelWorkspace]:
    """The dataset, built for one test that changes it."""
    with built(tmp_path / "fitness", database_url) as env:
        yield env


def _plain(value: Any) -> Any:
    """Numbers of any engine type (BIGINT, HUGEINT, NUMERIC, DOUBLE) as floats; booleans and text as they are."""
    if isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal):
        return value
    return float(value)


def by_user(env: ModelWorkspace, sql: str) -> dict[str, tuple[Any, ...]]:
    """Rows of `sql` (profile_id first) keyed by the member's user id, numbers as plain floats."""
    users = env.profiles_by_user()
    out = {}
    for profile_id, *values in env.rows(sql):
        out[users[str(profile_id)]] = tuple(_plain(v) for v in values)
    return out


def test_daily_workouts_has_one_row_per_member_and_day(fitness: ModelWorkspace) -> None:
    rows = by_user(fitness, "SELECT profile_id, count(*), sum(workouts), sum(minutes) FROM daily_workouts GROUP BY 1")
    assert rows == {
        "ana": (4.0, 4.0, 165.0),
        "ben": (6.0, 6.0, 160.0),
        "cara": (1.0, 1.0, 30.0),
        "eve": (2.0, 2.0, 60.0),
        "fay": (2.0, 2.0, 60.0),
    }


def test_momentum_score(fitness: ModelWorkspace) -> None:
    rows = by_user(
        fitness,
        "SELECT profile_id, workouts_7d, workouts_28d, active_days_28d, minutes_28d, avg_session_minutes_28d, "
        "current_streak_days, momentum_score FROM momentum_score",
    )
    assert {user: row[:4] + row[5:] for user, row in rows.items()} == {
        # ana: d2, d1, d0 in both windows (d30 is outside 28 days), 135 min / 3, streak d0-d2 = 3:
        #   40*3/12 + 30*3/7 + 30*45/45 = 10 + 12.86 + 30 = 52.86
        "ana": (3.0, 3.0, 3.0, 135.0, 3.0, 52.0),
        # ben: d3, d4, d6 in 7 days; all six in 28; 160 min / 6; last workout d3, so no current streak:
        #   40*6/12 + 0 + 30*26.67/45 = 20 + 17.78 = 37.78
        "ben": (3.0, 6.0, 6.0, 160.0, 0.0, 37.0),
        # cara: d10: 40*1/12 + 0 + 30*30/45 = 3.33 + 20 = 23.33
        "cara": (0.0, 1.0, 1.0, 30.0, 0.0, 23.0),
        # dan never trained
        "dan": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        # eve: d1, d0: 40*2/12 + 30*2/7 + 30*30/45 = 6.67 + 8.57 + 20 = 35.24
        "eve": (2.0, 2.0, 2.0, 60.0, 2.0, 35.0),
        # fay: d35 and d40 are older than 28 days
        "fay": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    }
    averages = {user: row[4] for user, row in rows.items()}
    assert averages["ana"] == 45.0 and averages["eve"] == 30.0 and averages["cara"] == 30.0
    assert averages["ben"] == pytest.approx(160 / 6)
    assert averages["dan"] is None and averages["fay"] is None


def test_activation_state(fitness: ModelWorkspace) -> None:
    rows = by_user(
        fitness,
        "SELECT profile_id, state, workouts_total, workouts_14d, days_since_last_workout, days_since_first_workout "
        "FROM activation_state",
    )
    assert rows == {
        "ana": ("retained", 4.0, 3.0, 0.0, 30.0),  # first workout 30 days ago, trained today
        "ben": ("committed", 6.0, 6.0, 3.0, 13.0),  # six in the last 14 days
        "cara": ("at_risk", 1.0, 1.0, 10.0, 10.0),  # nothing in the last 7 days
        "dan": ("new", 0.0, 0.0, None, None),
        "eve": ("activated", 2.0, 2.0, 0.0, 1.0),
        "fay": ("at_risk", 2.0, 0.0, 35.0, 40.0),
    }


def test_upgrade_intent(fitness: ModelWorkspace) -> None:
    rows = by_user(
        fitness,
        "SELECT profile_id, pricing_views_total, pricing_views_30d, plan_comparisons_30d, checkout_attempts_30d, "
        "subscribed, intent_score, intent_level FROM upgrade_intent",
    )
    assert rows == {
        # ana's anonymous web visits count once she is identified: d40 (outside 30 days) and d3; score 1 + 2*1
        "ana": (2.0, 1.0, 1.0, 0.0, False, 3.0, "medium"),
        # ben's subscription is a checkout attempt: 3*1, and any attempt is high intent
        "ben": (0.0, 0.0, 0.0, 1.0, True, 3.0, "high"),
        "cara": (0.0, 0.0, 0.0, 0.0, False, 0.0, "none"),
        "dan": (1.0, 1.0, 0.0, 0.0, False, 1.0, "low"),
        # eve: 3 pricing views + 3*1 abandoned checkout
        "eve": (3.0, 3.0, 0.0, 1.0, False, 6.0, "high"),
        "fay": (0.0, 0.0, 0.0, 0.0, False, 0.0, "none"),
    }


def test_support_risk(fitness: ModelWorkspace) -> None:
    rows = by_user(
        fitness,
        "SELECT profile_id, tickets_total, tickets_90d, open_tickets, billing_tickets_90d, cancellation_tickets_90d, "
        "avg_resolution_hours, lowest_csat, risk_level FROM support_risk",
    )
    assert rows == {
        "ana": (0.0, 0.0, 0.0, 0.0, 0.0, None, None, "none"),
        "ben": (1.0, 1.0, 1.0, 1.0, 0.0, None, None, "high"),  # open for 3 days, over 48 hours
        "cara": (1.0, 1.0, 0.0, 0.0, 0.0, 20.0, 2.0, "high"),  # CSAT 2
        "dan": (0.0, 0.0, 0.0, 0.0, 0.0, None, None, "none"),
        "eve": (1.0, 1.0, 0.0, 1.0, 0.0, 2.0, 5.0, "medium"),  # a billing ticket in the last 90 days
        "fay": (1.0, 1.0, 0.0, 0.0, 0.0, 5.0, 4.0, "low"),
    }


def test_preferred_workout_type(fitness: ModelWorkspace) -> None:
    rows = by_user(
        fitness,
        "SELECT profile_id, preferred_workout_type, workouts_of_type, workouts_total, share "
        "FROM preferred_workout_type",
    )
    assert {user: row[:3] for user, row in rows.items()} == {
        "ana": ("yoga", 3.0, 4.0),
        "ben": ("running", 5.0, 6.0),
        "cara": ("cycling", 1.0, 1.0),
        "eve": ("hiit", 2.0, 2.0),
        "fay": ("strength", 2.0, 2.0),  # dan never trained: no row
    }
    assert {user: row[3] for user, row in rows.items()} == pytest.approx(
        {"ana": 0.75, "ben": 5 / 6, "cara": 1.0, "eve": 1.0, "fay": 1.0}
    )


def test_audiences_and_their_events(fitness: ModelWorkspace) -> None:
    users = fitness.profiles_by_user()
    candidates = {users[str(p)] for (p,) in fitness.rows("SELECT profile_id FROM upgrade_candidates")}
    # 3+ workouts: ana (4), ben (6); viewed pricing: ana; no open ticket and not subscribed: ana (ben is both)
    assert candidates == {"ana"}
    at_risk = {users[str(p)] for (p,) in fitness.rows("SELECT profile_id FROM at_risk_members")}
    assert at_risk == {"fay"}  # cara is at risk too, but her CSAT of 2 makes her support risk high
    entered = fitness.rows("SELECT audience, profile_id FROM audience_entered ORDER BY audience")
    assert [(audience, users[str(p)]) for audience, p in entered] == [
        ("at_risk_members", "fay"),
        ("upgrade_candidates", "ana"),
    ]


def test_a_merge_after_daily_workouts_was_built_is_followed_by_the_roll_ups(fresh_fitness: ModelWorkspace) -> None:
    fitness = fresh_fitness
    # gus signs up on the web (d20), later trains in the app before logging in there (anonymous device, d6):
    # two profiles. The models are built. Then he logs in on the device: the profiles merge (the older survives).
    fitness.send(identify(day(20), user="gus", anonymous="web-gus", source="web"))
    fitness.send(track("workout_completed", day(6), anonymous="dev-gus", workout_type="yoga", duration_minutes=25))
    assert fitness.run(full_refresh=True).ok  # d6 is older than the incremental lookback: a full build takes it
    gus = fitness.profile_of("gus")
    device = fitness.store.profile_for_identifier("anonymous_id", "dev-gus")
    assert device is not None and device != gus
    assert fitness.rows(f"SELECT workouts_7d FROM momentum_score WHERE profile_id = '{gus}'") == [(0,)]
    assert fitness.rows(f"SELECT workouts_7d FROM momentum_score WHERE profile_id = '{device}'") == [(1,)]

    fitness.clock.advance(dt.timedelta(hours=1))
    fitness.send(identify(AS_OF, user="gus", anonymous="dev-gus"))
    assert fitness.store.profile_for_identifier("anonymous_id", "dev-gus") == gus
    report = fitness.run()
    assert report.ok
    assert {r.model: r.mode for r in report.results}["daily_workouts"] == "incremental"
    # d6 is older than the 2-day lookback: daily_workouts still files that day under the merged-away profile...
    assert fitness.rows(f"SELECT count(*) FROM daily_workouts WHERE profile_id = '{device}'") == [(1,)]
    # ...and the roll-ups follow the merge.
    assert fitness.rows(f"SELECT workouts_7d, current_streak_days FROM momentum_score WHERE profile_id = '{gus}'") == [
        (1, 0)
    ]
    assert fitness.rows(f"SELECT state FROM activation_state WHERE profile_id = '{gus}'") == [("activated",)]
    assert fitness.rows(f"SELECT count(*) FROM momentum_score WHERE profile_id = '{device}'") == [(0,)]
