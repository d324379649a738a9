"""`make demo` end to end: examples/fitness/demo.py against a real `orchestrion serve`, with fewer users.

The demo's traffic generator records what should become of every call it makes (stored, quarantined,
dropped as a retried duplicate, and which violation it carries); the test checks that the figures the demo
read back from the server match, and that its printed report names them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fitness"
USERS = 40
VIOLATION_KINDS = {"Unplanned-Event", "Required-Missing", "Datatype-Mismatch", "Additional-Properties"}


@pytest.fixture
def workout_traffic(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The example's traffic generator (it lives beside the demo script, not in the package)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import workout_traffic

    yield workout_traffic


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def demo_database(request: pytest.FixtureRequest) -> str | None:
    """None: the demo's default (DuckDB in the workspace); else an empty PostgreSQL database."""
    if request.param == "duckdb":
        return None
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


def test_demo_reports_what_landed(tmp_path: Path, workout_traffic: ModuleType, demo_database: str | None) -> None:
    summary_path = tmp_path / "summary.json"
    command = [
        sys.executable,
        str(EXAMPLE / "demo.py"),
        "--users",
        str(USERS),
        "--workspace-dir",
        str(tmp_path / "fitness"),
        "--summary-json",
        str(summary_path),
    ]
    if demo_database:
        command += ["--database-url", demo_database]
    env = {**os.environ, "COLUMNS": "160"}
    env.pop("ORCHESTRION_DATABASE_URL", None)
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    summary = json.loads(summary_path.read_text())
    calls = workout_traffic.generate(USERS, end=dt.datetime.fromisoformat(summary["end"]))
    expected = workout_traffic.expectation(calls)
    assert set(expected.violations) | set(expected.blocked) == VIOLATION_KINDS  # the traffic plants every kind

    # every event sent is accounted for, as the generator planned it
    assert summary["sdk_errors"] == []
    assert summary["sent"] == expected.sent
    assert summary["stored"] == expected.stored
    assert sum(summary["deduplicated"].values()) == expected.duplicates
    assert summary["violations"] == dict(expected.violations)
    assert summary["quarantined"]["blocked"] == dict(expected.blocked)
    assert summary["quarantined"]["invalid"] == dict(expected.invalid)
    assert (summary["relay_status"], summary["relay_quarantined_header"]) == (200, str(sum(expected.invalid.values())))

    # the landing views hold what was stored, shaped by the contract modes
    stored_workouts = sum(1 for c in calls if c.event == "workout_completed" and c.expect == "stored")
    assert summary["views"]["workout_completed"] == stored_workouts
    assert summary["views"]["workout_shared"] == expected.violations["Unplanned-Event"]  # allow: lands anyway
    assert "ticket_escalated" not in summary["views"]  # block: quarantined, so no view
    assert "coupon_code" not in summary["view_columns"]["pricing_viewed"]  # web is in omit mode
    assert "first_name" not in summary["view_columns"]["identifies"]  # identify.yml is in omit mode
    assert "keyword" in summary["view_columns"]["paid_search_click"]

    # historical timestamps are kept (the skew correction moves them by the network delay only)
    first = dt.datetime.fromisoformat(summary["first_event_at"])
    assert first < dt.datetime.fromisoformat(summary["end"]) - dt.timedelta(days=30)
    assert summary["max_time_shift_seconds"] < 30

    # the printed report names what landed and every violation kind
    out = result.stdout
    assert f"stored {expected.stored:,} + quarantined" in out
    assert "workout_completed" in out and "Contract violations by kind" in out and "Quarantine by reason" in out
    for kind in VIOLATION_KINDS:
        assert kind in out
