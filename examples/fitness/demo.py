"""`make demo`: the workout app of seed 000, end to end on the embedded server.

Starts `orchestrion serve` on this workspace (DuckDB, a free loopback port), sends a few thousand
historical events from the four sources through the RudderStack Python SDK (plus one batch from a
hand-rolled client), then prints what landed, read back through the admin API, and stops the server.

    python examples/fitness/demo.py [--users 300] [--workspace-dir DIR] [--summary-json FILE]

By default the data lands in examples/fitness/.orchestrion/ (reset first), so that afterwards
`orchestrion sql -w examples/fitness "..."` can explore it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rudderstack.analytics import Client as RudderClient

from orchestrion.workspace import DATA_DIR, load_workspace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import workout_traffic  # noqa: E402  (lives beside this script, not in the package)

SOURCES = ("app", "web", "acquisition", "support")
VIOLATION_KINDS = ("Unplanned-Event", "Required-Missing", "Datatype-Mismatch", "Additional-Properties")
REPORT_WINDOW = "3650d"  # the report filters on receivedAt; everything of this run is inside it


@dataclass
class RunningServer:
    url: str
    token: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--users",
        type=int,
        default=int(os.environ.get("ORCHESTRION_DEMO_USERS", workout_traffic.DEFAULT_USERS)),
        help="how many users to simulate (default 300, or ORCHESTRION_DEMO_USERS)",
    )
    parser.add_argument("--seed", type=int, default=workout_traffic.SEED, help="random seed of the traffic")
    parser.add_argument(
        "--workspace-dir",
        type=Path,
        default=None,
        help="copy the workspace there and run on the copy (default: run in examples/fitness itself)",
    )
    parser.add_argument("--summary-json", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument(
        "--database-url",
        default=None,
        help="an empty database to use instead of the default DuckDB file (e.g. postgresql://...)",
    )
    return parser.parse_args(argv)


# -- the workspace and the server ------------------------------------------------------------------
def prepare_workspace(target: Path | None) -> Path:
    """The folder to serve, with no data from an earlier run."""
    root = HERE if target is None else target.resolve()
    if root != HERE:
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy2(HERE / "orchestrion.yml", root / "orchestrion.yml")
        shutil.rmtree(root / "contracts", ignore_errors=True)
        shutil.copytree(HERE / "contracts", root / "contracts")
    data = root / DATA_DIR
    server_file = data / "server.json"
    if server_file.exists():
        pid = json.loads(server_file.read_text()).get("pid")
        if isinstance(pid, int) and _alive(pid):
            raise SystemExit(f"a server (pid {pid}) is serving {root}; stop it before running the demo there")
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    return root


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(root: Path, env: dict[str, str]) -> Iterator[RunningServer]:
    """`orchestrion serve` as a child process; stopped with SIGTERM (a clean shutdown) on the way out."""
    port = free_port()
    log_path = root / DATA_DIR / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrion.cli", "serve", "--workspace", str(root), "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(f"http://127.0.0.1:{port}", env["ORCHESTRION_ADMIN_TOKEN"], process, log_path)
    try:
        _wait_until_ready(server)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise SystemExit(f"the server did not stop within 30 s; see {log_path}") from None
        if process.returncode != 0:
            raise SystemExit(f"the server exited with {process.returncode}; see {log_path}")


def _wait_until_ready(server: RunningServer) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"the server exited with {server.process.returncode}:\n{server.log_path.read_text()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the server did not become ready within 60 s:\n{server.log_path.read_text()}")


# -- sending ---------------------------------------------------------------------------------------
def send_with_sdk(calls: list[workout_traffic.Call], keys: dict[str, str], url: str, console: Console) -> list[str]:
    """Every `sdk` call through rudder-sdk-python (gzip, batches of 100); returns the errors it reported."""
    errors: list[str] = []

    def on_error(error: Exception, batch: list[dict[str, Any]]) -> None:
        errors.append(f"{len(batch)} events: {error}")

    clients = {
        source: RudderClient(
            keys[source],
            host=url,  # always explicit: without it the SDK reads a data plane URL from a .env file
            max_queue_size=len(calls) + 1,
            upload_size=100,
            upload_interval=0.05,
            max_retries=3,
            on_error=on_error,
        )
        for source in SOURCES
    }
    enqueued: Counter[str] = Counter()

    def acknowledged() -> int:
        return sum(enqueued[s] - clients[s].queue.unfinished_tasks for s in SOURCES)

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("rudder-sdk-python → /v1/batch", total=len(calls))
        for index, call in enumerate(calls):
            client = clients[call.source]
            ok, _ = getattr(client, call.kind)(**call.sdk_arguments())
            if not ok:
                errors.append(f"the SDK queue refused {call.message_id}")
            enqueued[call.source] += 1
            if index % 250 == 0:
                progress.update(task, completed=acknowledged())
        while acknowledged() < len(calls):
            progress.update(task, completed=acknowledged())
            time.sleep(0.05)
        for client in clients.values():
            client.shutdown()  # flush, then stop the consumer thread
        progress.update(task, completed=acknowledged())
    return errors


def send_relay_batch(calls: list[workout_traffic.Call], key: str, url: str) -> httpx.Response:
    """The help desk's survey relay builds its own JSON: writeKey in the body, no SDK, no gzip."""
    body = {
        "writeKey": key,
        "sentAt": dt.datetime.now(dt.UTC).isoformat(),
        "batch": [call.wire_event() for call in calls],
    }
    return httpx.post(f"{url}/v1/batch", json=body, timeout=30)


# -- reading back ----------------------------------------------------------------------------------
def query(admin: httpx.Client, sql: str) -> list[list[Any]]:
    response = admin.post("/api/query", json={"sql": sql})
    if response.status_code != 200:
        raise SystemExit(f"POST /api/query failed ({response.status_code}): {response.text}\n{sql}")
    rows: list[list[Any]] = response.json()["rows"]
    return rows


def gather(server: RunningServer) -> dict[str, Any]:
    """What landed, through the admin API: the same figures `orchestrion sql` and `contracts report` show."""
    with server.admin() as admin:
        sources = admin.get("/api/sources").json()
        report = admin.get("/api/contracts/report", params={"since": REPORT_WINDOW}).json()
        (stored,) = query(admin, "SELECT count(*) FROM events")[0]
        by_type = query(
            admin,
            "SELECT 'track' AS type, event AS name, source, count(*) FROM tracks GROUP BY event, source "
            "UNION ALL SELECT 'page', name, source, count(*) FROM pages GROUP BY name, source "
            "UNION ALL SELECT 'screen', name, source, count(*) FROM screens GROUP BY name, source "
            "UNION ALL SELECT 'identify', NULL, source, count(*) FROM identifies GROUP BY source "
            "UNION ALL SELECT 'group', NULL, source, count(*) FROM groups GROUP BY source "
            "UNION ALL SELECT 'alias', NULL, source, count(*) FROM aliases GROUP BY source",
        )
        event_views = sorted({row[0] for row in query(admin, "SELECT table_name FROM landing_events")})
        standard = ["tracks", "identifies", "pages", "screens", "groups", "aliases"]
        counts = query(
            admin, " UNION ALL ".join(f"SELECT '{view}', count(*) FROM {view}" for view in standard + event_views)
        )
        columns: dict[str, list[str]] = defaultdict(list)
        for table, column in query(admin, "SELECT table_name, column_name FROM landing_columns ORDER BY 1, 2"):
            columns[table].append(column)
        (first, last, max_shift) = query(
            admin,
            'SELECT min("timestamp"), max("timestamp"), '
            'max(abs(extract(epoch FROM "timestamp") - extract(epoch FROM original_timestamp))) FROM events',
        )[0]
        weeks = query(
            admin,
            "SELECT CAST(date_trunc('week', \"timestamp\") AS DATE), count(*) FROM workout_completed GROUP BY 1 "
            "ORDER BY 1",
        )
    deduplicated: Counter[str] = Counter()
    for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "orchestrion_events_total" and sample.labels.get("outcome") == "deduplicated":
                deduplicated[sample.labels["source"]] += int(sample.value)
    violations: Counter[str] = Counter()
    for row in report["violations"]:
        violations[row["type"]] += row["count"]
    quarantined: dict[str, Counter[str]] = {"blocked": Counter(), "invalid": Counter()}
    for row in report["quarantined"]:
        quarantined.setdefault(row["kind"], Counter())[row["type"]] += row["count"]
    return {
        "sources": sources,
        "report": report,
        "stored": stored,
        "by_type": by_type,
        "views": {view: n for view, n in counts},
        "view_columns": dict(columns),
        "first_event_at": first,
        "last_event_at": last,
        "max_time_shift_seconds": float(max_shift or 0),
        "workouts_by_week": weeks,
        "deduplicated": dict(deduplicated),
        "violations": dict(violations),
        "quarantined": {kind: dict(counter) for kind, counter in quarantined.items()},
    }


# -- printing --------------------------------------------------------------------------------------
def render(console: Console, landed: dict[str, Any], sent: int) -> bool:
    """Print the tables; True when every event sent is accounted for."""
    dedup = landed["deduplicated"]
    sources = Table("source", "contract mode", "stored", "quarantined", "deduplicated", title="Sources")
    for row in landed["sources"]:
        sources.add_row(
            row["name"],
            row["contract_mode"],
            f"{row['events']:,}",
            f"{row['quarantined']:,}",
            f"{dedup.get(row['name'], 0):,}",
        )
    console.print(sources)

    counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for kind, name, source, n in landed["by_type"]:
        counts[(kind, name or "")][source] += n
    order = {"identify": 0, "track": 1, "page": 2, "screen": 3, "group": 4, "alias": 5}
    events = Table("type", "name", *SOURCES, "total", title="Events by type and name")
    for (kind, name), per_source in sorted(counts.items(), key=lambda i: (order[i[0][0]], -sum(i[1].values()))):
        cells = [f"{per_source[s]:,}" if per_source[s] else "" for s in SOURCES]
        events.add_row(kind, name, *cells, f"{sum(per_source.values()):,}")
    events.add_row("", "[bold]all[/]", *["" for _ in SOURCES], f"[bold]{landed['stored']:,}[/]")
    console.print(events)

    views = Table(
        "landing view", "rows", "property / trait columns", title="Landing views (plain SQL on the warehouse)"
    )
    for view, n in landed["views"].items():
        names = landed["view_columns"].get(view, [])
        shown = ", ".join(names[:6]) + (f", … (+{len(names) - 6})" if len(names) > 6 else "")
        views.add_row(view, f"{n:,}", shown)
    console.print(views)

    violations = Table("violation", "event", "source", "what happened", "events", title="Contract violations by kind")
    rows: list[tuple[str, str, str, str, int]] = []
    for row in landed["report"]["violations"]:
        rows.append((row["type"], row["event"], row["source"], "stored, annotated", row["count"]))
    for row in landed["report"]["quarantined"]:
        if row["kind"] == "blocked":
            rows.append((row["type"], row["event"], row["source"], "quarantined (block)", row["count"]))
    for kind, event, source, outcome, n in sorted(rows, key=lambda r: (_kind_order(r[0]), r[1], r[2])):
        violations.add_row(kind, event, source, outcome, f"{n:,}")
    console.print(violations)
    console.print(
        "[dim]allow: stored, annotated in context.violations · omit: the offending fields stripped, then stored "
        "· block: quarantined[/]"
    )

    kept = Table("reason", "kind", "event", "source", "events", title="Quarantine by reason")
    for row in sorted(landed["report"]["quarantined"], key=lambda r: (r["kind"], r["type"], r["event"])):
        kept.add_row(row["type"], row["kind"], row["event"] or '""', row["source"], f"{row['count']:,}")
    console.print(kept)
    console.print(
        "[dim]invalid: breaks the wire contract · blocked: breaks a plan in block mode · "
        "`orchestrion contracts replay` stores them once fixed[/]"
    )

    weeks = " · ".join(f"{str(week)[5:]} {n}" for week, n in landed["workouts_by_week"])
    console.print(
        f"History kept: event times from {str(landed['first_event_at'])[:10]} to {str(landed['last_event_at'])[:10]} "
        f"(clock-skew correction moved none by more than {landed['max_time_shift_seconds']:.3f} s)."
    )
    console.print(f"workout_completed per week (week of MM-DD): {weeks}")
    quarantined = sum(sum(c.values()) for c in landed["quarantined"].values())
    duplicates = sum(dedup.values())
    balanced = bool(landed["stored"] + quarantined + duplicates == sent)
    mark = "[green]✓[/]" if balanced else "[bold red]✗ does not add up[/]"
    console.print(
        f"Sent {sent:,} = stored {landed['stored']:,} + quarantined {quarantined:,} "
        f"+ retried duplicates dropped {duplicates:,} {mark}"
    )
    return balanced


def _kind_order(kind: str) -> int:
    return VIOLATION_KINDS.index(kind) if kind in VIOLATION_KINDS else len(VIOLATION_KINDS)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # a pipe has no width: Rich would assume 80 columns and wrap the tables
    console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 140)
    started = time.monotonic()
    root = prepare_workspace(args.workspace_dir)
    env = dict(os.environ)
    env["ORCHESTRION_ADMIN_TOKEN"] = "adm_demo_" + secrets.token_urlsafe(16)
    env.pop("ORCHESTRION_DATABASE_URL", None)
    if args.database_url:
        env["ORCHESTRION_DATABASE_URL"] = args.database_url
    workspace = load_workspace(root, env)
    keys = {source.name: source.write_key for source in workspace.config.sources}
    end = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    calls = workout_traffic.generate(args.users, args.seed, end)
    sdk_calls = [c for c in calls if c.transport == "sdk"]
    relay_calls = [c for c in calls if c.transport == "http"]
    console.print(
        f"[bold]Orchestrion demo[/]: the workout app of seed 000 — {args.users:,} users, {len(calls):,} events "
        f"from {len(keys)} sources, event times over the {workout_traffic.HISTORY_DAYS} days before {end:%Y-%m-%d}"
    )
    with running_server(root, env) as server:
        console.print(f"server: {server.url} (workspace {root}, log {server.log_path})")
        sending = time.monotonic()
        errors = send_with_sdk(sdk_calls, keys, server.url, console)
        relay = send_relay_batch(relay_calls, keys["support"], server.url) if relay_calls else None
        elapsed = time.monotonic() - sending
        message = f"sent {len(sdk_calls):,} events through rudder-sdk-python (gzip) in {elapsed:.1f} s"
        if relay is not None:
            header = relay.headers.get("x-orchestrion-quarantined", "0")
            message += (
                f"; the help desk relay posted {len(relay_calls)} by hand: "
                f"{relay.status_code} {relay.text.strip()!r}, X-Orchestrion-Quarantined: {header}"
            )
        console.print(message)
        for error in errors:
            console.print(f"[bold red]SDK error:[/] {error}")
        landed = gather(server)
    balanced = render(console, landed, len(calls))
    where = "examples/fitness" if root == HERE else str(root)
    console.print(
        f"Done in {time.monotonic() - started:.1f} s. Explore what landed:\n"
        f'  uv run orchestrion sql -w {where} "select workout_type, count(*) from workout_completed group by 1"\n'
        f"  uv run orchestrion contracts report -w {where} --since 1d"
    )
    if args.summary_json:
        summary = {
            "end": end.isoformat(),
            "users": args.users,
            "seed": args.seed,
            "sent": len(calls),
            "sdk_errors": errors,
            "relay_status": relay.status_code if relay is not None else None,
            "relay_quarantined_header": relay.headers.get("x-orchestrion-quarantined") if relay is not None else None,
            **{k: v for k, v in landed.items() if k not in ("report", "sources")},
        }
        args.summary_json.write_text(json.dumps(summary, indent=2, default=str))
    ok = balanced and not errors and (relay is None or relay.status_code == 200)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
