"""The `orchestrion` command line, on both backends, with a server running (admin API) and without (direct)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from orchestrion import __version__
from orchestrion.cli import app
from orchestrion.collect.config import SourceConfig
from orchestrion.collect.contracts import load_contracts
from orchestrion.collect.event import NormalizedEvent
from orchestrion.collect.gateway import check_contract
from orchestrion.collect.normalize import RequestMeta, normalize
from orchestrion.errors import StorageUnavailable
from orchestrion.store import open_store
from orchestrion.store.ports import IngestBatch
from tests.support.server import ServerProcess, free_port, start_server

WORKSPACE = """\
name: cli
sources:
  - name: web
    write_key: wk_web_test_0001
  - name: app
    write_key: wk_app_test_0001
    contract_mode: block
"""
PLAN = """\
events:
  - name: Signed Up
    version: 1
    properties:
      required: [plan]
      properties:
        plan: {type: string}
        referral_code: {type: string}
"""
SOURCE_WEB: dict[str, Any] = {"name": "web", "write_key": "wk_web_test_0001"}
BREAKING_PLAN = PLAN.replace("required: [plan]", "required: [plan, referral_code]")
FIXED_PLAN = PLAN.replace("      required: [plan]\n", "")  # plan becomes optional: not breaking


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run the CLI in process; wide columns so that tables print whole values."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250", **(env or {})})


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def refused(result: Result) -> str:
    """A clean refusal: exit code 1, an `error:` line on stderr, never a traceback."""
    assert result.exit_code == 1, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("error: "), result.stderr
    return result.stderr


def send(url: str, write_key: str, *events: dict[str, Any]) -> None:
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    response = httpx.post(f"{url}/v1/batch", json={"batch": list(events)}, headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 200, response.text


def signup(message_id: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": message_id, "properties": properties}


# -- no workspace needed ---------------------------------------------------------------------------------
def test_version() -> None:
    assert ok(cli("version")).strip() == f"orchestrion {__version__}"


def test_init_scaffolds_a_valid_workspace_and_refuses_to_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "fitness"
    output = ok(cli("init", str(root), "--name", "fitness"))
    assert "created orchestrion.yml" in output
    for folder in ("contracts", "models", "journeys", "templates", "tests"):
        assert (root / folder).is_dir()
    text = (root / "orchestrion.yml").read_text()
    assert "name: fitness" in text
    assert (root / "contracts" / "signup.yml").exists()
    assert "workspace is valid" in ok(cli("validate", "--workspace", str(root)))

    (root / "orchestrion.yml").write_text(text + "# edited by hand\n")
    message = refused(cli("init", str(root)))
    assert "exists already; nothing was changed" in message
    assert (root / "orchestrion.yml").read_text().endswith("# edited by hand\n")


def test_validate_names_the_file_and_field_of_a_bad_contract(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "contracts").mkdir(parents=True)
    (root / "orchestrion.yml").write_text(WORKSPACE)
    (root / "contracts" / "signup.yml").write_text(PLAN.replace("{type: string}", "{type: strng}", 1))
    message = refused(cli("validate", "--workspace", str(root)))
    assert "contracts/signup.yml: event 'Signed Up' version 1: not a valid JSON Schema" in message
    assert "strng" in message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("sources: [\n  - name: web\n", "orchestrion.yml: not valid YAML: line 2, column 3:"),
        (WORKSPACE.replace("wk_web_test_0001", "${CLI_TEST_UNSET_VARIABLE_WITH_A_LONG_NAME}"), "is not set"),
        (WORKSPACE + "storage:\n  database_url: mysql://nowhere/db\n", "unsupported URL 'mysql://nowhere/db'"),
        (WORKSPACE + "sourcez: []\n", "sourcez: Extra inputs are not permitted"),
        (WORKSPACE + "collect:\n  dedup_window: 1h\n", "dedup_window"),
    ],
)
def test_a_bad_workspace_file_is_one_clear_line_and_exit_1(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "orchestrion.yml").write_text(text)
    for command in (["validate"], ["sql", "select 1"], ["sources", "list"], ["contracts", "report"]):
        message = refused(cli(*command, "--workspace", str(tmp_path), env={"COLUMNS": "60"}))  # never wrapped
        assert needle in message
        assert message.count("\n") == 1, f"not one line: {message!r}"


def test_serve_with_a_bad_workspace_file_exits_1_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "orchestrion.yml").write_text(WORKSPACE + "sourcez: []\n")
    done = subprocess.run(
        [sys.executable, "-m", "orchestrion.cli", "serve", "--port", str(free_port())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == ["error: orchestrion.yml: sourcez: Extra inputs are not permitted"]


def test_a_command_outside_any_workspace_says_what_to_do(tmp_path: Path) -> None:
    assert "run `orchestrion init`" in refused(cli("sql", "select 1", "--workspace", str(tmp_path)))


# -- serve in a folder without orchestrion.yml --------------------------------------------------------------
def read_banner(process: subprocess.Popen[str], timeout: float = 60) -> dict[str, str]:
    """The banner lines `orchestrion serve` prints (and must flush) before it serves."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:  # a thread: select() on a buffered text pipe would miss lines already read ahead
        assert process.stdout is not None
        with process.stdout:  # closed here, at the end of the output, never under the reader's feet
            for line in process.stdout:
                lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    found: dict[str, str] = {}
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not {"url", "write key", "admin token"} <= set(found):
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if not line:  # the process ended
            break
        seen.append(line)
        label, _, value = line.strip().partition(":")
        if label.lower() in ("url", "write key", "admin token"):
            found[label.lower()] = value.strip().split()[0]
    assert {"url", "write key", "admin token"} <= set(found), "banner incomplete:\n" + "".join(seen)
    return found


def test_serve_without_a_workspace_prints_key_token_and_url_and_accepts_events(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ORCHESTRION_ADMIN_TOKEN", "ORCHESTRION_DATABASE_URL")}
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrion.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = read_banner(process)
        assert banner.get("url") == f"http://127.0.0.1:{port}", banner
        assert banner.get("write key", "").startswith("wk_dev_"), banner
        assert banner.get("admin token", "").startswith("adm_"), banner
        url = banner["url"]
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/healthz", timeout=5).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        send(url, banner["write key"], signup("m1", plan="pro"))
        response = httpx.post(
            f"{url}/api/query",
            json={"sql": "select source, event from tracks"},
            headers={"Authorization": f"Bearer {banner['admin token']}"},
        )
        assert response.json()["rows"] == [["dev", "Signed Up"]]
        # the CLI finds the running dev workspace and goes through its API
        assert json.loads(ok(cli("sql", "select count(*) as n from events", "--json", "--workspace", str(tmp_path))))[
            "rows"
        ] == [[1]]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    assert process.returncode == 0


# -- every workspace command, through a running server and directly ------------------------------------------
def api_requests(server: ServerProcess, route: str) -> float:
    """How many requests the server answered on `route` (from its Prometheus metrics)."""
    text = httpx.get(f"{server.url}/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("orchestrion_http_requests_total{") and f'route="{route}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def table_rows(output: str) -> list[list[str]]:
    """The body rows of the Rich tables in `output`, as cell texts."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines() if line.startswith("│")]


class WorkspaceCli:
    """The same commands, run against one workspace folder; `env` carries the database URL for direct access."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        self.env = {"ORCHESTRION_DATABASE_URL": database_url}

    def run(self, *args: str) -> Result:
        return cli(*args, "--workspace", str(self.root), env=self.env)

    def sql_json(self, statement: str) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(ok(self.run("sql", statement, "--json")))
        return parsed

    def snapshot(self) -> dict[str, Any]:
        """What a user reads: query results, the sources table and the contracts report."""
        return {
            "tracks": self.sql_json("select message_id, event, user_id from tracks order by message_id"),
            "sources": ok(self.run("sources", "list")),
            "report": ok(self.run("contracts", "report", "--since", "1d")),
        }


def check_commands(ws: WorkspaceCli, plan_file: Path) -> dict[str, Any]:
    table = ok(ws.run("sql", "select message_id, event from tracks order by message_id"))
    assert "s-ok" in table and "Signed Up" in table and "Pizza Ordered" in table
    assert "3 row(s)" in table
    assert "only read queries" in refused(ws.run("sql", "delete from events"))

    snapshot = ws.snapshot()
    assert snapshot["tracks"] == {
        "columns": ["message_id", "event", "user_id"],
        "rows": [["p-1", "Pizza Ordered", "u1"], ["s-app", "Signed Up", "u1"], ["s-ok", "Signed Up", "u1"]],
        "truncated": False,
    }
    # source, write key (shortened), contract mode, rate limit, events, quarantined, enabled
    assert table_rows(snapshot["sources"]) == [
        ["web", "wk_web_tes…", "allow", "-", "2", "0", "yes"],
        ["app", "wk_app_tes…", "block", "-", "1", "2", "yes"],
    ]
    assert table_rows(ok(ws.run("sources", "list", "--show-keys")))[0][1] == "wk_web_test_0001"
    report = table_rows(snapshot["report"])
    assert ["Pizza Ordered", "Unplanned-Event", "web", "1"] in report
    assert ["Signed Up", "Required-Missing", "app", "blocked", "no", "2"] in report

    # a breaking change to a version in force is refused, naming the field and the fix
    plan_file.write_text(BREAKING_PLAN)
    message = refused(ws.run("validate"))
    assert "contracts/signup.yml: event 'Signed Up' version 1: breaking change: new required field 'referral_code'" in (
        message
    )
    assert "publish it as version 2" in message
    plan_file.write_text(PLAN)
    assert "workspace is valid" in ok(ws.run("validate"))
    return snapshot


def test_workspace_commands_through_the_server_and_directly(tmp_path: Path, database_url: str) -> None:
    root = tmp_path / "ws"
    server = start_server(
        root, workspace_yaml=WORKSPACE, database_url=database_url, files={"contracts/signup.yml": PLAN}
    )
    ws = WorkspaceCli(root, database_url)
    plan_file = root / "contracts" / "signup.yml"
    try:
        send(server.url, "wk_web_test_0001", signup("s-ok", plan="pro"))
        send(server.url, "wk_web_test_0001", {**signup("p-1"), "event": "Pizza Ordered"})
        blocked = [signup("b-1", referral_code="r1"), signup("s-app", plan="free")]
        send(server.url, "wk_app_test_0001", *blocked)
        send(server.url, "wk_app_test_0001", blocked[0])  # a retry: quarantined twice

        before = api_requests(server, "/api/query")
        through_server = check_commands(ws, plan_file)
        assert api_requests(server, "/api/query") > before  # the CLI went through the admin API
        if database_url.startswith("duckdb"):
            with pytest.raises(StorageUnavailable):  # the server holds the file: only the API can work
                open_store(database_url)
        output = ok(ws.run("contracts", "replay"))
        assert "examined 2; stored 0; already stored 0; still failing 2" in output
        assert "still failing: Required-Missing: 2" in output
    finally:
        server.stop()
    assert not (root / ".orchestrion" / "server.json").exists()

    directly = check_commands(ws, plan_file)
    assert directly == through_server
    assert "examined 2; stored 0" in ok(ws.run("contracts", "replay"))

    plan_file.write_text(FIXED_PLAN)  # (replay through the API after a fix: test_contracts_flow.py)
    assert "examined 2; would store 2" in ok(ws.run("contracts", "replay", "--dry-run"))
    output = ok(ws.run("contracts", "replay", "--source", "app"))
    assert "examined 2; stored 1; already stored 1; still failing 0" in output
    assert ws.sql_json("select message_id from events where source = 'app' order by 1")["rows"] == [["b-1"], ["s-app"]]
    assert "examined 0; stored 0" in ok(ws.run("contracts", "replay"))
    assert ws.sql_json("select count(*) as n from events")["rows"] == [[4]]


def test_data_that_looks_like_markup_is_printed_as_is(tmp_path: Path) -> None:
    (tmp_path / "contracts").mkdir()
    (tmp_path / "orchestrion.yml").write_text(WORKSPACE)
    (tmp_path / "contracts" / "signup.yml").write_text(PLAN)
    name = "[/x] Promo [bold]Clicked"
    item = {"type": "track", "event": name, "userId": "[red]u1", "messageId": "m1"}
    event = normalize(item, RequestMeta(source="web", received_at=dt.datetime.now(dt.UTC), ip=None))
    assert isinstance(event, NormalizedEvent)
    event = check_contract(event, load_contracts(tmp_path / "contracts"), SourceConfig(**SOURCE_WEB), 0)
    assert isinstance(event, NormalizedEvent)
    store = open_store(f"duckdb:///{tmp_path / '.orchestrion' / 'orchestrion.duckdb'}")
    try:
        store.append([IngestBatch(events=[event])])
    finally:
        store.close()
    env = {"ORCHESTRION_DATABASE_URL": ""}
    assert table_rows(ok(cli("sql", "select event, user_id from tracks", "-w", str(tmp_path), env=env))) == [
        [name, "[red]u1"]
    ]
    report = table_rows(ok(cli("contracts", "report", "-w", str(tmp_path), env=env)))
    assert [name, "Unplanned-Event", "web", "1"] in report
