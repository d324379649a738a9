"""`orchestrion models run` and `models status`: without a server (the CLI opens the database, on both backends)
and with one running (through the admin API, since DuckDB lets one process hold the file); scheduled refresh
inside `orchestrion serve`."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import httpx
from click.testing import Result
from typer.testing import CliRunner

from orchestrion.cli import app
from orchestrion.collect.event import NormalizedEvent
from orchestrion.collect.normalize import RequestMeta, normalize
from orchestrion.store import open_store
from orchestrion.store.ports import IngestBatch
from tests.support.server import ServerProcess

WORKSPACE = """\
name: models-cli
sources:
  - name: web
    write_key: wk_web_test_0001
  - name: app
    write_key: wk_app_test_0001
"""
WORKOUTS = """\
-- kind: traits
-- freshness: 1h
SELECT p.profile_id, count(*) AS workouts
FROM workout_completed w JOIN event_profiles p ON p.source = w.source AND p.message_id = w.message_id
GROUP BY 1
"""
REGULARS = "-- kind: audience\n-- schedule: 1h\nSELECT profile_id FROM workouts WHERE workouts >= 2\n"
NEVER_BUILT = "-- kind: traits\n-- freshness: 10m\nSELECT profile_id FROM profiles\n"


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def workout(message_id: str, user: str) -> dict[str, Any]:
    return {"type": "track", "event": "workout_completed", "userId": user, "messageId": message_id}


def write_workspace(root: Path, database_url: str | None = None) -> None:
    (root / "models").mkdir(parents=True)
    text = WORKSPACE + (f"storage:\n  database_url: {database_url}\n" if database_url else "")
    (root / "orchestrion.yml").write_text(text)
    (root / "models" / "workouts.sql").write_text(WORKOUTS)
    (root / "models" / "regulars.sql").write_text(REGULARS)


def store_workouts(database_url: str, users: str) -> None:
    """Workouts stored as the gateway would; identity processing has not run (the CLI runs it before building)."""
    store = open_store(database_url)
    now = dt.datetime.now(dt.UTC)
    events = [normalize(workout(f"m{i}", user), RequestMeta("app", now, None)) for i, user in enumerate(users)]
    store.append([IngestBatch(events=[e for e in events if isinstance(e, NormalizedEvent)])])
    store.close()


def test_without_a_server_the_cli_opens_the_database_itself(tmp_path: Path, database_url: str) -> None:
    root = tmp_path / "ws"
    write_workspace(root, database_url)
    store_workouts(database_url, "aab")

    output = ok(cli("models", "run", "--workspace", str(root)))
    assert "  success workouts (full, 2 rows, " in output  # the progress display, model by model
    assert "2 of 2 model(s) built" in output
    assert "1 audience event(s) emitted" in output
    lines = {line.split("│")[1].strip(): line for line in output.splitlines() if line.count("│") > 5}
    assert "success" in lines["workouts"] and " 2 " in lines["workouts"]
    assert "+1" in lines["regulars"] and "-0" in lines["regulars"]

    status = json.loads(ok(cli("models", "status", "--workspace", str(root), "--json")))
    by_model = {row["model"]: row for row in status}
    assert by_model["workouts"]["last_build"]["status"] == "success"
    assert by_model["workouts"]["last_build"]["rows_total"] == 2
    assert by_model["workouts"]["stale"] is False
    assert by_model["regulars"]["schedule"] == "1h"
    table = ok(cli("models", "status", "--workspace", str(root)))
    assert "workouts" in table and "regulars" in table and "success" in table


def test_a_failing_model_or_an_unknown_selection_exits_1(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    url = f"duckdb:///{tmp_path / 'cli.duckdb'}"
    write_workspace(root, url)
    store_workouts(url, "ab")
    (root / "models" / "never.sql").write_text(NEVER_BUILT)
    result = cli("models", "run", "--workspace", str(root), "--select", "nope")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no model named 'nope' (models: ")

    (root / "models" / "workouts.sql").write_text(WORKOUTS.replace("count(*)", "count(missing)"))
    failed = cli("models", "run", "--workspace", str(root), "-s", "workouts+")
    assert failed.exit_code == 1, failed.stdout
    assert "failed" in failed.stdout and "skipped" in failed.stdout
    assert "models/workouts.sql:" in failed.stdout
    assert "0 of 2 model(s) built" in failed.stdout

    (root / "models" / "broken.sql").write_text("-- kind: traits\nSELECT profile_id FROM nowhere")
    broken = cli("models", "status", "--workspace", str(root))
    assert broken.exit_code == 1
    assert broken.stderr.startswith("error: models/broken.sql: unknown table `nowhere`")


def send(server: ServerProcess, *events: dict[str, Any]) -> None:
    token = base64.b64encode(b"wk_app_test_0001:").decode()
    response = httpx.post(
        f"{server.url}/v1/batch", json={"batch": list(events)}, headers={"Authorization": f"Basic {token}"}
    )
    assert response.status_code == 200, response.text


def test_with_a_server_running_the_cli_goes_through_its_admin_api(server_factory: Any) -> None:
    server: ServerProcess = server_factory(
        workspace_yaml=WORKSPACE + "models:\n  scheduler: false\n",
        files={"models/workouts.sql": WORKOUTS, "models/regulars.sql": REGULARS, "models/never.sql": NEVER_BUILT},
    )
    send(server, workout("w1", "ana"), workout("w2", "ana"), workout("w3", "ben"))
    output = ok(cli("models", "run", "--workspace", str(server.root), "--select", "+regulars"))
    assert "2 of 2 model(s) built" in output
    rows = server.query("SELECT count(*), sum(workouts) FROM workouts")
    assert rows == [[2, 3]]
    assert server.query("SELECT audience FROM audience_entered") == [["regulars"]]
    status = json.loads(ok(cli("models", "status", "--workspace", str(server.root), "--json")))
    by_model = {row["model"]: row for row in status}
    assert by_model["workouts"]["last_build"]["triggered_by"] == "api"
    assert by_model["never"]["stale"] is True and by_model["never"]["data_as_of"] is None
    table = ok(cli("models", "status", "--workspace", str(server.root)))
    assert "never built (stale)" in table
    (server.root / "models" / "broken.sql").write_text("-- kind: traits\nSELECT profile_id FROM nowhere")
    for command in ("status", "run"):
        refused = cli("models", command, "--workspace", str(server.root))
        assert refused.exit_code == 1
        assert "HTTP 400: models/broken.sql: unknown table `nowhere`" in refused.stderr


def test_the_server_refreshes_scheduled_models_by_itself(server_factory: Any) -> None:
    server: ServerProcess = server_factory(
        workspace_yaml=WORKSPACE + "models:\n  tick: 1s\n",
        files={"models/workouts.sql": WORKOUTS.replace("-- freshness: 1h", "-- schedule: 1h")},
    )
    send(server, workout("w1", "ana"))  # the model's input view appears with the first workout
    deadline = time.monotonic() + 20
    rows: list[list[object]] = []
    while time.monotonic() < deadline:
        rows = server.query("SELECT model, status, triggered_by FROM model_builds")
        if rows:
            break
        time.sleep(0.2)
    assert rows == [["workouts", "success", "schedule"]], server.log()
    assert server.query("SELECT workouts FROM workouts") == [[1]]
