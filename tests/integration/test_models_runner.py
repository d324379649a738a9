"""The model runner on DuckDB and PostgreSQL: dependency order, atomic swaps, checks by kind, incremental builds,
the build history."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrion.model.builds import BuildRecord, record_start
from orchestrion.store.warehouse import ModelRunBusy, warehouse_for
from tests.integration.model_support import START, ModelWorkspace, model_workspace, track

DAY = dt.timedelta(days=1)
WORKOUTS = """\
-- kind: traits
-- freshness: 1h
SELECT p.profile_id, count(*) AS workouts, sum(w.duration_minutes) AS minutes, now() AS built_at
FROM workout_completed w JOIN event_profiles p ON p.source = w.source AND p.message_id = w.message_id
GROUP BY p.profile_id
"""
REGULARS = "-- kind: audience\nSELECT profile_id FROM workouts WHERE workouts >= 2\n"
DAILY = """\
-- kind: table
-- unique_key: [profile_id, day]
-- incremental: {time_column: day, lookback: 1d}
SELECT p.profile_id, CAST(date_trunc('day', w."timestamp") AS DATE) AS day, count(*) AS workouts
FROM workout_completed w JOIN event_profiles p ON p.source = w.source AND p.message_id = w.message_id
GROUP BY 1, 2
"""


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> Iterator[ModelWorkspace]:
    with model_workspace(tmp_path / "ws", database_url) as opened:
        yield opened


def workouts(env: ModelWorkspace) -> dict[str, tuple[int, float]]:
    users = env.profiles_by_user()
    rows = env.rows("SELECT profile_id, workouts, minutes FROM workouts")
    return {users[str(p)]: (int(n), float(m)) for p, n, m in rows}


def seed(env: ModelWorkspace) -> None:
    env.send(
        track("workout_completed", START - 2 * DAY, user="ana", duration_minutes=30),
        track("workout_completed", START - DAY, user="ana", duration_minutes=45),
        track("workout_completed", START - DAY, user="ben", duration_minutes=20),
    )


def test_models_build_in_dependency_order_and_each_build_is_recorded(env: ModelWorkspace) -> None:
    seed(env)
    env.write_model("workouts", WORKOUTS)
    env.write_model("regulars", REGULARS)
    report = env.run()
    assert report.ok
    assert [r.model for r in report.results] == ["workouts", "regulars"]
    assert workouts(env) == {"ana": (2, 75.0), "ben": (1, 20.0)}
    assert [str(r[0]) for r in env.rows("SELECT profile_id FROM regulars")] == [env.profile_of("ana")]
    builds = env.rows(
        "SELECT model, kind, status, mode, rows_total, as_of, duration_seconds, version, freshness_seconds, "
        "triggered_by, finished_at >= started_at FROM model_builds ORDER BY started_at, model"
    )
    by_model = {row[0]: row for row in builds}
    assert by_model["workouts"][1:6] == ("traits", "success", "full", 2, START)
    assert by_model["regulars"][1:6] == ("audience", "success", "full", 1, START)
    assert by_model["workouts"][6] > 0
    assert by_model["workouts"][7] == report.results[0].version
    assert by_model["workouts"][8] == 3600.0
    assert by_model["workouts"][9:] == ("cli", True)


def test_readers_never_see_half_a_build(env: ModelWorkspace) -> None:
    seed(env)
    env.write_model("workouts", WORKOUTS)
    assert env.run().ok
    seen: list[tuple[int, int]] = []
    problems: list[BaseException] = []
    stop = threading.Event()

    def read_continuously() -> None:
        while not stop.is_set():
            try:
                rows = env.store.query("SELECT count(*), count(DISTINCT built_at) FROM workouts").rows
                seen.append((int(rows[0][0]), int(rows[0][1])))
            except BaseException as exc:
                problems.append(exc)
                return

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        for _ in range(8):
            env.clock.advance(dt.timedelta(minutes=1))  # each build stamps its rows with its own instant
            assert env.run().ok
    finally:
        stop.set()
        reader.join()
    assert not problems, problems
    assert len(seen) > 8
    assert set(seen) == {(2, 1)}  # always both rows, always from one build
    assert env.rows("SELECT max(built_at) FROM workouts") == [(env.clock.now(),)]


def test_a_failed_model_keeps_its_table_and_the_models_reading_it_are_skipped(env: ModelWorkspace) -> None:
    seed(env)
    env.write_model("workouts", WORKOUTS)
    env.write_model("regulars", REGULARS)
    assert env.run().ok
    env.write_model("workouts", WORKOUTS.replace("sum(w.duration_minutes)", "sum(w.no_such_column)"))
    env.send(track("workout_completed", START, user="ben", duration_minutes=10))
    report = env.run()
    assert not report.ok
    failed, skipped = report.results
    assert failed.status == "failed"
    assert failed.error is not None and failed.error.startswith("models/workouts.sql: ")
    assert "no_such_column" in failed.error
    assert skipped.status == "skipped"
    assert skipped.error == "not built: workouts was not built in this run"
    assert workouts(env) == {"ana": (2, 75.0), "ben": (1, 20.0)}  # the last good build, untouched
    assert env.rows("SELECT status, error FROM model_builds WHERE model = 'workouts' ORDER BY started_at") == [
        ("success", None),
        ("failed", failed.error),
    ]
    relations = warehouse_for(env.store).relations()
    assert "workouts__new" not in relations


@pytest.mark.parametrize(
    ("model", "sql", "expected"),
    [
        (
            "workouts",
            "-- kind: traits\nSELECT profile_id, 1 AS x FROM event_profiles",
            "models/workouts.sql: a traits model has one row per profile_id, but some repeat: ",
        ),
        (
            "workouts",
            "-- kind: traits\nSELECT message_id AS id FROM event_profiles",
            "models/workouts.sql: a traits model's result needs the column(s) profile_id (it has: id)",
        ),
        (
            "stage",
            "-- kind: state\n-- values: [active, idle]\n"
            "SELECT profile_id, CASE WHEN count(*) > 1 THEN 'active' ELSE 'sleeping' END AS state "
            "FROM event_profiles GROUP BY 1",
            "models/stage.sql: `state` holds 'sleeping', which is not among the declared values (active, idle)",
        ),
        (
            "members",
            "-- kind: audience\nSELECT CAST(NULL AS VARCHAR) AS profile_id",
            "models/members.sql: 1 row(s) have a NULL profile_id",
        ),
    ],
)
def test_the_rules_of_each_kind_are_checked_before_the_swap(
    env: ModelWorkspace, model: str, sql: str, expected: str
) -> None:
    seed(env)
    env.write_model(model, sql)
    (result,) = env.run().results
    assert result.status == "failed"
    assert result.error is not None and result.error.startswith(expected), result.error
    assert model not in warehouse_for(env.store).relations()  # nothing half-built is left to read


def daily(env: ModelWorkspace) -> dict[tuple[str, dt.date], int]:
    users = env.profiles_by_user()
    return {(users[str(p)], d): int(n) for p, d, n in env.rows("SELECT profile_id, day, workouts FROM daily")}


def test_an_incremental_model_rebuilds_only_the_buckets_from_its_watermark_minus_the_lookback(
    env: ModelWorkspace,
) -> None:
    today, yesterday = START.date(), (START - DAY).date()
    five_days_ago = (START - 5 * DAY).date()
    env.send(
        track("workout_completed", START - 5 * DAY, user="ana", duration_minutes=30),
        track("workout_completed", START - DAY, user="ana", duration_minutes=30),
        track("workout_completed", START, user="ben", duration_minutes=30),
    )
    env.write_model("daily", DAILY)
    first = env.run()
    assert (first.results[0].mode, first.results[0].rows_total) == ("full", 3)
    assert first.results[0].watermark == dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    # Later: one more workout yesterday (inside the 1-day lookback) and a late one 5 days back (outside it).
    env.clock.advance(dt.timedelta(hours=3))
    env.send(
        track("workout_completed", START - DAY + dt.timedelta(hours=1), user="ana", duration_minutes=10),
        track("workout_completed", START - 5 * DAY + dt.timedelta(hours=1), user="ana", duration_minutes=10),
    )
    second = env.run()
    (result,) = second.results
    assert result.mode == "incremental"
    assert result.rows_written == 2  # the buckets from watermark (today) - 1 day: yesterday and today
    assert result.rows_total == 3
    assert daily(env) == {("ana", five_days_ago): 1, ("ana", yesterday): 2, ("ben", today): 1}
    full = env.run(full_refresh=True)
    assert full.results[0].mode == "full"
    assert daily(env) == {("ana", five_days_ago): 2, ("ana", yesterday): 2, ("ben", today): 1}
    modes = [r[0] for r in env.rows("SELECT mode FROM model_builds ORDER BY started_at")]
    assert modes == ["full", "incremental", "full"]


def test_changing_an_incremental_model_rebuilds_it_whole(env: ModelWorkspace) -> None:
    seed(env)
    env.write_model("daily", DAILY)
    assert env.run().results[0].mode == "full"
    assert env.run().results[0].mode == "incremental"
    env.write_model("daily", DAILY.replace("count(*) AS workouts", "count(*) AS workouts, 1 AS version_two"))
    result = env.run().results[0]
    assert (result.mode, result.status) == ("full", "success")
    assert "version_two" in [c for c, _ in warehouse_for(env.store).relations()["daily"]]


def test_views_over_a_model_table_keep_working_after_a_rebuild(env: ModelWorkspace) -> None:
    seed(env)
    env.write_model("workouts", WORKOUTS)
    assert env.run().ok
    warehouse = warehouse_for(env.store)
    warehouse.execute("CREATE VIEW busy_people AS SELECT profile_id FROM workouts WHERE workouts > 1")
    warehouse.execute("CREATE VIEW busy_count AS SELECT count(*) AS n FROM busy_people")
    env.send(track("workout_completed", START, user="ben", duration_minutes=10))
    assert env.run().ok  # PostgreSQL refuses to drop a table views depend on: the swap recreates them
    assert env.rows("SELECT n FROM busy_count") == [(2,)]


def test_one_model_run_at_a_time_per_database(env: ModelWorkspace) -> None:
    seed(env)
    env.write_model("workouts", WORKOUTS)
    with warehouse_for(env.store).run_lock(), pytest.raises(ModelRunBusy, match="another model run is in progress"):
        env.run()
    assert env.run().ok


def test_a_build_cut_short_by_a_dead_process_is_marked_failed_by_the_next_run(env: ModelWorkspace) -> None:
    seed(env)
    env.write_model("workouts", WORKOUTS)
    warehouse = warehouse_for(env.store)
    record_start(
        warehouse,
        BuildRecord(
            "b_dead", "r_dead", "workouts", "traits", "v0", "full", "running", START, START,
            None, None, None, None, None, None, None, "schedule",
        ),
    )  # fmt: skip
    assert env.run().ok
    assert env.rows("SELECT status, error FROM model_builds WHERE build_id = 'b_dead'") == [
        ("failed", "interrupted: the process stopped during the build")
    ]


def test_a_model_reading_a_planned_event_that_never_came_waits_for_it(env: ModelWorkspace) -> None:
    seed(env)
    contracts = env.workspace.contracts_dir
    contracts.mkdir(exist_ok=True)
    (contracts / "support.yml").write_text("events:\n  - name: Ticket Created\n    version: 1\n")
    env.write_model("workouts", WORKOUTS)
    env.write_model(
        "tickets",
        "-- kind: traits\nSELECT p.profile_id, count(*) AS n FROM ticket_created t "
        "JOIN event_profiles p ON p.message_id = t.message_id GROUP BY 1",
    )
    env.write_model("worried", "-- kind: audience\nSELECT profile_id FROM tickets")
    report = env.run()
    results = {r.model: r for r in report.results}
    assert results["workouts"].status == "success"
    assert (results["tickets"].status, results["tickets"].error) == (
        "skipped",
        "models/tickets.sql: waiting for the first event of `ticket_created` (its landing view appears with it)",
    )
    assert results["worried"].error == "not built: tickets was not built in this run"
    env.send(track("Ticket Created", START, user="ana"))
    assert env.run().ok
    assert env.rows("SELECT n FROM tickets") == [(1,)]


def test_an_event_dated_in_the_future_does_not_hold_back_todays_buckets(env: ModelWorkspace) -> None:
    env.send(track("workout_completed", START - DAY, user="ana", duration_minutes=30))
    env.write_model("daily", DAILY)
    assert env.run().ok
    # A phone with its clock a month ahead: its bucket becomes the newest in the table.
    env.send(track("workout_completed", START + 30 * DAY, user="ben", duration_minutes=30))
    assert env.run().results[0].watermark == dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    env.clock.advance(dt.timedelta(hours=1))
    env.send(track("workout_completed", START, user="ana", duration_minutes=10))
    result = env.run().results[0]
    assert result.mode == "incremental"
    assert daily(env)[("ana", START.date())] == 1  # rebuilt from today - 1 day, not from April - 1 day
