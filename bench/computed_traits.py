"""Real-time computed traits: µs per event for `update` (issue 4's "cost of a real-time trait update per event").

For a few declarations of the fitness example, a profile's state is first filled with 30 days of workouts (about 40
a day), then the next 2,000 events are timed:

- update: `update(state, event, trait)` alone (the pure core);
- pipeline path: `prune` to the processing time, `update`, `value` — what the pipeline runs per event and trait;
- stored: the pipeline path with the state read from and written back to JSON (`from_json` / `to_json`);
- baseline: an event of another name (the cheapest path through `update`), measured in the same run.

CPU time (time.process_time) is used, and the minimum of the repetitions reported next to the median, because the
machine is shared: wall time measures the neighbours. Writes bench/results/computed_traits.json.

    python bench/computed_traits.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrion.collect.event import NormalizedEvent
from orchestrion.model.computed import (
    ComputedTrait,
    TraitState,
    empty_state,
    from_json,
    prune,
    to_json,
    update,
    value,
)

RESULTS = Path(__file__).resolve().parent / "results" / "computed_traits.json"
NOW = dt.datetime(2024, 5, 10, 12, tzinfo=dt.UTC)
TIMED = 2_000
TRAITS = [
    ComputedTrait(name="workouts_completed", aggregate="count", event="Workout Completed"),
    ComputedTrait(
        name="long_ios_workouts_30d",
        aggregate="count",
        event="Workout Completed",
        window="30d",
        filter='event.properties.duration_min > 10 && event.context.os.name == "iOS"',
    ),
    ComputedTrait(name="minutes_7d", aggregate="sum", event="Workout Completed", property="duration_min", window="7d"),
    ComputedTrait(name="longest_workout", aggregate="max", event="Workout Completed", property="duration_min"),
    ComputedTrait(name="last_workout_type", aggregate="last", event="Workout Completed", property="kind"),
    ComputedTrait(
        name="workout_types_30d", aggregate="distinct_count", event="Workout Completed", property="kind", window="30d"
    ),
]


def workout(index: int, at: dt.datetime, name: str = "Workout Completed") -> NormalizedEvent:
    message_id = str(uuid.UUID(int=index + 1))
    payload = {
        "type": "track",
        "event": name,
        "messageId": message_id,
        "userId": "u1",
        "timestamp": at.isoformat(),
        "properties": {"duration_min": 5 + index % 40, "kind": ("run", "yoga", "ride", "swim")[index % 4]},
        "context": {
            "os": {"name": "iOS", "version": "17.4"},
            "app": {"name": "Fit", "version": "3.2.0"},
            "library": {"name": "analytics-ios", "version": "4.1.0"},
            "device": {"model": "iPhone15,2", "type": "ios"},
            "locale": "en-US",
            "timezone": "Europe/Paris",
            "ip": "203.0.113.5",
        },
    }
    return NormalizedEvent(
        source="app", message_id=message_id, type="track", event=name, user_id="u1", anonymous_id=None,
        timestamp=at, original_timestamp=at, sent_at=at, received_at=at, payload=payload,
    )  # fmt: skip


def per_event(run: Callable[[], None], count: int, repeat: int) -> tuple[float, float]:
    """(median, minimum) CPU µs per event over `repeat` runs."""
    samples = []
    for _ in range(repeat):
        started = time.process_time()
        run()
        samples.append((time.process_time() - started) / count * 1e6)
    return statistics.median(samples), min(samples)


def measure(trait: ComputedTrait, repeat: int) -> dict[str, Any]:
    history = [workout(i, NOW - dt.timedelta(days=30) + dt.timedelta(minutes=36 * i)) for i in range(1200)]
    warm: TraitState = empty_state(trait)
    for event in history:
        warm = update(warm, event, trait)
    warm = prune(warm, trait, NOW)
    # the next events: each 36 minutes after the last, some replayed, some up to a week late
    timed = [workout(1200 + i, NOW + dt.timedelta(minutes=36 * i)) for i in range(TIMED)]
    timed[::50] = [
        workout(7 * i, NOW - dt.timedelta(days=7) + dt.timedelta(minutes=i)) for i in range(len(timed[::50]))
    ]
    other = [workout(9000 + i, NOW, name="App Opened") for i in range(TIMED)]
    stored = to_json(warm)

    def updates() -> None:
        state = warm
        for event in timed:
            state = update(state, event, trait)

    def pipeline() -> None:
        state = warm
        for event in timed:
            state = update(prune(state, trait, event.received_at), event, trait)
            value(state, trait, event.received_at)

    def with_storage() -> None:
        for event in timed[:500]:
            state = update(prune(from_json(stored), trait, event.received_at), event, trait)
            value(state, trait, event.received_at)
            to_json(state)

    def baseline() -> None:
        state = warm
        for event in other:
            state = update(state, event, trait)

    update_median, update_min = per_event(updates, TIMED, repeat)
    pipeline_median, pipeline_min = per_event(pipeline, TIMED, repeat)
    stored_median, stored_min = per_event(with_storage, 500, repeat)
    baseline_median, _ = per_event(baseline, TIMED, repeat)
    return {
        "trait": trait.name,
        "aggregate": trait.aggregate,
        "window": trait.window,
        "filter": trait.filter,
        "update_us_median": round(update_median, 2),
        "update_us_min": round(update_min, 2),
        "pipeline_us_median": round(pipeline_median, 2),
        "pipeline_us_min": round(pipeline_min, 2),
        "stored_us_median": round(stored_median, 2),
        "stored_us_min": round(stored_min, 2),
        "baseline_us_median": round(baseline_median, 2),
        "state_bytes": len(stored),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rows = [measure(trait, args.repeat) for trait in TRAITS]
    table = Table(title="computed trait update, CPU µs per event (median / min)")
    for column in ("trait", "update", "prune+update+value", "+ JSON state", "baseline", "state bytes"):
        table.add_column(column, justify="left" if column == "trait" else "right")
    for row in rows:
        table.add_row(
            row["trait"],
            f"{row['update_us_median']:.1f} / {row['update_us_min']:.1f}",
            f"{row['pipeline_us_median']:.1f} / {row['pipeline_us_min']:.1f}",
            f"{row['stored_us_median']:.1f} / {row['stored_us_min']:.1f}",
            f"{row['baseline_us_median']:.2f}",
            str(row["state_bytes"]),
        )
    Console(width=150).print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "computed_traits",
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "events_timed": TIMED,
        "repeat": args.repeat,
        "results": rows,
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
