"""Models benchmark: a full refresh of the fitness models (examples/fitness/models/) on DuckDB, against running the
same compiled SQL directly in DuckDB in the same run; then an incremental refresh after 1 % new events.

The data is synthetic and made inside DuckDB (vectorized SQL; cached under bench/data/): `profiles` people, `events`
events over 90 days in arrival order — workouts (55 %), pricing views, plan comparisons, checkouts, subscriptions,
tickets with resolutions and CSAT scores, and other app events the models do not read (27 %) — with the
`identity_links` processing writes for them. Landing views are discovered from one sample event per name.

- direct: `CREATE OR REPLACE TABLE <model> AS <compiled SQL>` on a DuckDB cursor, model after model;
- orchestrated: `ModelRunner.run(full_refresh=True)`: scratch tables, the checks of each kind, row counts, audience
  diffs, the atomic swap and the build history. Both in each round, alternating which goes first;
- incremental: 1 % more events, arriving today, then `ModelRunner.run()` (daily_workouts rebuilds its last days,
  the other models, which roll it up or read small event views, are rebuilt whole).

    python bench/models.py                 # 1,000,000 profiles, 20,000,000 events, 3 rounds
    python bench/models.py --quick         # 20,000 profiles, 400,000 events, 3 rounds

Prints a table of medians and writes every figure to bench/results/models.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrion.clock import VirtualClock
from orchestrion.collect.event import NormalizedEvent
from orchestrion.collect.normalize import RequestMeta, normalize
from orchestrion.model.compile import compile_model
from orchestrion.model.project import ModelProject, load_project
from orchestrion.model.runner import ModelRunner
from orchestrion.store import open_store
from orchestrion.store.duckdb_backend import DuckDBStore
from orchestrion.store.ports import IngestBatch
from orchestrion.store.warehouse import warehouse_for

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"
RESULTS = BENCH_DIR / "results" / "models.json"
MODELS = BENCH_DIR.parent / "examples" / "fitness" / "models"
DATA_VERSION = 1  # bump when the generator changes: cached files are named by it
END = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
HISTORY_DAYS = 90
FIRST_SEQ = 1000  # below: the sample events that create the landing views
MEMORY_LIMIT = os.environ.get("ORCHESTRION_BENCH_MEMORY", "6GB")
console = Console(width=150)

# (bucket start, bucket end) of `seq % 1000` per event name; the rest are other app events.
MIX = {
    "workout_completed": (0, 550),
    "pricing_viewed": (550, 650),
    "plan_comparison_viewed": (650, 690),
    "checkout_abandoned": (690, 700),
    "subscription_started": (700, 705),
    "ticket_created": (705, 715),
    "ticket_resolved": (715, 725),
    "csat_submitted": (725, 732),
}
SAMPLES: dict[str, dict[str, Any]] = {
    "workout_completed": {"workout_type": "yoga", "duration_minutes": 30},
    "pricing_viewed": {"currency": "USD"},
    "plan_comparison_viewed": {"billing_period": "monthly"},
    "checkout_abandoned": {"plan_id": "premium_monthly", "step": "payment"},
    "subscription_started": {"plan_id": "premium_monthly", "price": 12.99},
    "ticket_created": {"ticket_id": "T-0", "ticket_reason": "billing"},
    "ticket_resolved": {"ticket_id": "T-0", "resolution_time": 3.5},
    "csat_submitted": {"ticket_id": "T-0", "csat_score": 4},
    "app_opened": {"screen": "home"},
}


def _mod(expression: str, modulus: int) -> str:
    """A pseudo-random number in [0, modulus) from an integer expression (DuckDB's hash is a UBIGINT)."""
    return f"CAST(hash({expression}) % {modulus} AS BIGINT)"


def _event_rows(first: int, count: int, profiles: int, start: dt.datetime, span_seconds: int) -> str:
    """A SELECT of `count` synthetic event rows from seq `first`, their times spread evenly over the span."""
    bucket = "(i % 1000)"
    name = "CASE " + " ".join(f"WHEN {bucket} < {end} THEN '{event}'" for event, (_, end) in MIX.items())
    name += " ELSE 'app_opened' END"
    # Ticket events of one block of 1000 refer to the same tickets (offset 0-9) and so to the same person.
    ticket_offset = (
        f"CASE WHEN {bucket} BETWEEN 705 AND 714 THEN {bucket} - 705 WHEN {bucket} BETWEEN 715 AND 724 "
        f"THEN {bucket} - 715 WHEN {bucket} BETWEEN 725 AND 731 THEN {bucket} - 725 END"
    )
    person = f"CASE WHEN {ticket_offset} IS NOT NULL THEN hash(i // 1000 * 10 + {ticket_offset}) ELSE hash(i) END"
    person = f"CAST(({person}) % {profiles} AS BIGINT)"
    ticket_id = f"'T-' || (i // 1000) || '-' || {ticket_offset}"
    properties = (
        "CASE ev "
        "WHEN 'workout_completed' THEN json_object('workout_type', "
        f"['strength', 'running', 'cycling', 'yoga', 'hiit', 'walking'][1 + {_mod('i * 7', 6)}], "
        f"'duration_minutes', 10 + {_mod('i * 3', 50)}) "
        "WHEN 'pricing_viewed' THEN json_object('currency', 'USD') "
        "WHEN 'plan_comparison_viewed' THEN json_object('billing_period', 'monthly') "
        "WHEN 'checkout_abandoned' THEN json_object('plan_id', 'premium_annual', 'step', 'payment') "
        "WHEN 'subscription_started' THEN json_object('plan_id', 'premium_monthly', 'price', 12.99) "
        f"WHEN 'ticket_created' THEN json_object('ticket_id', {ticket_id}, 'ticket_reason', "
        f"['billing', 'bug', 'workout_content', 'account_access', 'cancellation', 'other'][1 + {_mod('i * 5', 6)}]) "
        f"WHEN 'ticket_resolved' THEN json_object('ticket_id', {ticket_id}, 'resolution_time', 1 + {_mod('i', 72)}) "
        f"WHEN 'csat_submitted' THEN json_object('ticket_id', {ticket_id}, 'csat_score', 1 + {_mod('i * 11', 5)}) "
        "ELSE json_object('screen', 'home') END"
    )
    seconds = f"CAST(floor((i - {first}) * {span_seconds / max(count, 1)}) AS BIGINT)"
    return f"""
        SELECT i AS seq, src, 'bm-' || i AS message_id, 'track' AS type, ev AS event, 'u' || pid AS user_id,
               NULL AS anonymous_id, ts AS "timestamp", ts AS original_timestamp, ts AS sent_at, ts AS received_at,
               json_object('type', 'track', 'event', ev, 'messageId', 'bm-' || i, 'userId', 'u' || pid,
                           'timestamp', strftime(ts, '%Y-%m-%dT%H:%M:%S.000Z'), 'properties', {properties}) AS payload
        FROM (
            SELECT i, ev, pid, ts,
                   CASE WHEN ev LIKE 'ticket%' OR ev = 'csat_submitted' THEN 'support'
                        WHEN ev IN ('pricing_viewed', 'plan_comparison_viewed', 'checkout_abandoned') THEN 'web'
                        ELSE 'app' END AS src
            FROM (
                SELECT i, {name} AS ev, {person} AS pid,
                       TIMESTAMPTZ '{start.isoformat()}' + to_seconds({seconds}) AS ts
                FROM range({first}, {first + count}) AS r(i)
            )
        )
    """


def _append_events(con: Any, first: int, count: int, profiles: int, start: dt.datetime, span: int) -> None:
    con.execute(f"INSERT INTO events {_event_rows(first, count, profiles, start, span)}")
    con.execute(
        "INSERT INTO identity_links SELECT seq, source, message_id, \"timestamp\", '[]', NULL, "
        f"'p' || lpad(CAST(substr(user_id, 2) AS VARCHAR), 8, '0') FROM events WHERE seq >= {first}"
    )


def build_data(profiles: int, events: int) -> Path:
    """A DuckDB file with the schema, the landing views, `events`, `identity_links` and `profiles`; cached."""
    path = DATA_DIR / f"models_v{DATA_VERSION}_{profiles}_{events}.duckdb"
    if path.exists():
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    started = time.perf_counter()
    store = open_store(f"duckdb:///{partial}")
    samples = []
    for index, (event, properties) in enumerate(SAMPLES.items()):
        item = {"type": "track", "event": event, "userId": "sample", "messageId": f"sample-{index}"}
        outcome = normalize({**item, "properties": properties}, RequestMeta("app", END, None))
        assert isinstance(outcome, NormalizedEvent)
        samples.append(outcome)
    store.append([IngestBatch(events=samples)])  # records the landing columns and creates the views
    assert isinstance(store, DuckDBStore)
    con = store.raw_connection()
    start = END - dt.timedelta(days=HISTORY_DAYS)
    chunk = 2_000_000
    for first in range(FIRST_SEQ, FIRST_SEQ + events, chunk):
        count = min(chunk, FIRST_SEQ + events - first)
        span = int((first - FIRST_SEQ + count) / events * HISTORY_DAYS * 86400) - int(
            (first - FIRST_SEQ) / events * HISTORY_DAYS * 86400
        )
        begin = start + dt.timedelta(seconds=int((first - FIRST_SEQ) / events * HISTORY_DAYS * 86400))
        _append_events(con, first, count, profiles, begin, span)
        console.print(f"  generated {first - FIRST_SEQ + count:,} of {events:,} events", highlight=False)
    con.execute(
        "INSERT INTO profiles SELECT 'p' || lpad(CAST(i AS VARCHAR), 8, '0'), '{}', '{}', NULL, NULL, NULL, NULL, "
        f"NULL, NULL, TIMESTAMPTZ '{END.isoformat()}' FROM range({profiles}) AS r(i)"
    )
    con.execute("CHECKPOINT")
    store.close()
    partial.rename(path)
    console.print(f"  data ready in {time.perf_counter() - started:.0f}s: {path.name}", highlight=False)
    return path


def direct_refresh(store: DuckDBStore, project: ModelProject, as_of: dt.datetime) -> dict[str, float]:
    """The compiled SQL run as plain CREATE OR REPLACE TABLE statements: seconds per model."""
    cursor = store.raw_connection().cursor()
    cursor.execute("SET TimeZone = 'UTC'")
    times = {}
    try:
        for name, model in project.models.items():
            sql = compile_model(model, "duckdb", as_of=as_of)
            started = time.perf_counter()
            cursor.execute(f"CREATE OR REPLACE TABLE {name} AS {sql}")
            times[name] = time.perf_counter() - started
    finally:
        cursor.close()
    return times


def orchestrated_refresh(store: DuckDBStore, project: ModelProject, full: bool) -> tuple[float, dict[str, Any]]:
    runner = ModelRunner(store, warehouse_for(store), project, VirtualClock(END), triggered_by="bench")
    started = time.perf_counter()
    report = runner.run(full_refresh=full)
    elapsed = time.perf_counter() - started
    assert report.ok, [(r.model, r.error) for r in report.results]
    return elapsed, {
        r.model: {"seconds": r.duration_seconds, "mode": r.mode, "rows": r.rows_total} for r in report.results
    }


def run(profiles: int, events: int, rounds: int) -> dict[str, Any]:
    cached = build_data(profiles, events)
    work = DATA_DIR / f"models_run_{os.getpid()}.duckdb"
    shutil.copyfile(cached, work)
    try:
        store = open_store(f"duckdb:///{work}")
        assert isinstance(store, DuckDBStore)
        try:
            return _measure(store, profiles, events, rounds)
        finally:
            store.close()
    finally:
        work.unlink(missing_ok=True)
        work.with_suffix(".duckdb.wal").unlink(missing_ok=True)


def _measure(store: DuckDBStore, profiles: int, events: int, rounds: int) -> dict[str, Any]:
    # a shared machine: bound DuckDB's memory (it spills to disk past it) instead of 80 % of the RAM
    store.raw_connection().execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    project = load_project(MODELS, warehouse_for(store).relations())
    console.print("  warm-up: one orchestrated build (audiences fill, caches warm)", highlight=False)
    orchestrated_refresh(store, project, full=True)
    project = load_project(MODELS, warehouse_for(store).relations(), built_models=project.names)
    direct: list[float] = []
    orchestrated: list[float] = []
    per_model_direct: dict[str, list[float]] = {name: [] for name in project.names}
    per_model_orchestrated: dict[str, list[float]] = {name: [] for name in project.names}
    for index in range(rounds):
        order = ("direct", "orchestrated") if index % 2 == 0 else ("orchestrated", "direct")
        for which in order:
            if which == "direct":
                times = direct_refresh(store, project, END)
                direct.append(sum(times.values()))
                for name, seconds in times.items():
                    per_model_direct[name].append(seconds)
            else:
                elapsed, results = orchestrated_refresh(store, project, full=True)
                orchestrated.append(elapsed)
                for name, result in results.items():
                    per_model_orchestrated[name].append(result["seconds"])
        console.print(
            f"  round {index + 1}: direct {direct[-1]:.2f}s, orchestrated {orchestrated[-1]:.2f}s", highlight=False
        )
    # Incremental: 1 % more events, arriving during the last day.
    new_events = max(1, events // 100)
    con = store.raw_connection()
    first = FIRST_SEQ + events
    _append_events(con, first, new_events, profiles, END - dt.timedelta(days=1), 86400 - 1)
    incremental_seconds, incremental_models = orchestrated_refresh(store, project, full=False)
    full_median = statistics.median(orchestrated)
    return {
        "profiles": profiles,
        "events": events,
        "rounds": rounds,
        "direct_seconds": direct,
        "orchestrated_seconds": orchestrated,
        "direct_median": statistics.median(direct),
        "orchestrated_median": full_median,
        "overhead_ratio": full_median / statistics.median(direct),
        "per_model_direct_median": {n: statistics.median(v) for n, v in per_model_direct.items()},
        "per_model_orchestrated_median": {n: statistics.median(v) for n, v in per_model_orchestrated.items()},
        "incremental_new_events": new_events,
        "incremental_seconds": incremental_seconds,
        "incremental_ratio": incremental_seconds / full_median,
        "incremental_models": incremental_models,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 profiles and 400,000 events")
    parser.add_argument("--profiles", type=int, default=None)
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    profiles = args.profiles or (20_000 if args.quick else 1_000_000)
    events = args.events or (400_000 if args.quick else 20_000_000)
    console.print(f"Models benchmark: {profiles:,} profiles, {events:,} events, DuckDB", highlight=False)
    figures = run(profiles, events, args.rounds)

    table = Table("scenario", "median (s)", "ratio", "goal", title="Fitness models on DuckDB")
    table.add_row("direct: the compiled SQL, CREATE OR REPLACE", f"{figures['direct_median']:.2f}", "1.00", "")
    table.add_row(
        "orchestrated full refresh (ModelRunner)",
        f"{figures['orchestrated_median']:.2f}",
        f"{figures['overhead_ratio']:.2f}",
        "≤ 1.15",
    )
    table.add_row(
        f"incremental after {figures['incremental_new_events']:,} new events (1 %)",
        f"{figures['incremental_seconds']:.2f}",
        f"{figures['incremental_ratio']:.2f} of full",
        "≤ 0.10",
    )
    console.print(table)
    models = Table("model", "direct (s)", "orchestrated (s)", "incremental run (s)", "mode", title="Per model")
    for name, seconds in figures["per_model_direct_median"].items():
        incremental = figures["incremental_models"][name]
        models.add_row(
            name,
            f"{seconds:.2f}",
            f"{figures['per_model_orchestrated_median'][name]:.2f}",
            f"{incremental['seconds']:.2f}",
            incremental["mode"],
        )
    console.print(models)
    figures["machine"] = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()}
    figures["measured_at"] = dt.datetime.now(dt.UTC).isoformat()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    console.print(f"figures written to {RESULTS.relative_to(BENCH_DIR.parent)}", highlight=False)


if __name__ == "__main__":
    main()
