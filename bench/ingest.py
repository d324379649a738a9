"""Ingestion benchmark: sustained events/s through `/v1/batch` on DuckDB and PostgreSQL, against a baseline.

Starts the real server (`orchestrion serve` in a throw-away workspace; PostgreSQL in a database created for the
run and dropped after) and the baseline app (bench/baseline_app.py: parse JSON, append, fsync — on the same uvicorn
stack), then drives each with the same load generator (bench/loadgen.py) in a separate process: several keep-alive
connections posting 100-event batches with fresh messageIds. Runs are interleaved across targets so that a burst
of other load on this shared machine hits every target alike. After every run the store must hold exactly the
events that were acknowledged.

    python bench/ingest.py                       # 3 runs x 10 s per target
    python bench/ingest.py --quick               # 1 run x 4 s, for a smoke check
    python bench/ingest.py --backends duckdb --runs 5 --duration 15

Prints a table of medians and writes every figure to bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "ingest.json"
WRITE_KEY = "wk_bench_app_000001"
ADMIN_TOKEN = "adm_bench_token_0001"
WORKSPACE_YAML = f"""\
name: bench
sources:
  - name: app
    write_key: {WRITE_KEY}
"""
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432"
console = Console(width=150)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start:\n{log.read_text(errors='replace')}")


@dataclass
class Target:
    """One server under test: how to find it and how to count what it stored."""

    name: str
    label: str
    process: subprocess.Popen[bytes]
    port: int
    stored_events: Callable[[], int]
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    acked_events: int = 0
    runs: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, int | bool]] = field(default_factory=list)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for step in reversed(self.cleanup):
            step()


def spawn(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT)


def start_baseline(root: Path) -> Target:
    port = free_port()
    sink = root / "baseline.jsonl"
    log = root / "baseline.log"
    process = spawn(
        [sys.executable, str(BENCH_DIR / "baseline_app.py"), "--port", str(port), "--path", str(sink)],
        root,
        dict(os.environ),
        log,
    )
    wait_for_port(port, process, log)

    def stored() -> int:
        with sink.open("rb") as handle:
            lines = sum(1 for _ in handle)
        return lines * 100  # one line per request of 100 events

    return Target("baseline", "baseline: parse + append + fsync", process, port, stored)


def start_orchestrion(root: Path, name: str, database_url: str | None) -> Target:
    root.mkdir(parents=True)
    (root / "orchestrion.yml").write_text(WORKSPACE_YAML)
    env = dict(os.environ)
    env["ORCHESTRION_ADMIN_TOKEN"] = ADMIN_TOKEN
    env.pop("ORCHESTRION_DATABASE_URL", None)
    if database_url:
        env["ORCHESTRION_DATABASE_URL"] = database_url
    port = free_port()
    log = root / "server.log"
    process = spawn([sys.executable, "-m", "orchestrion.cli", "serve", "--port", str(port)], root, env, log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} server exited:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{name} server did not become ready:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)

    def stored() -> int:
        response = httpx.post(
            f"{url}/api/query",
            json={"sql": "SELECT count(*) FROM events"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=60,
        )
        response.raise_for_status()
        return int(response.json()["rows"][0][0])

    label = "orchestrion on DuckDB (default)" if name == "duckdb" else "orchestrion on PostgreSQL"
    return Target(name, label, process, port, stored)


@contextlib.contextmanager
def fresh_postgres_database(base_url: str) -> Iterator[str]:
    """A database made for this run and dropped afterwards."""
    import psycopg

    name = f"bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(f"{base_url}/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as exc:
        raise SystemExit(
            f"PostgreSQL at {base_url} is not reachable ({str(exc).strip()}); start it, pass --postgres-url, "
            "or run with --backends duckdb"
        ) from exc
    try:
        yield f"{base_url}/{name}"
    finally:
        with psycopg.connect(f"{base_url}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def drive(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    """One measured run of the load generator against `target`, then the stored == acknowledged check."""
    command = [
        sys.executable,
        str(BENCH_DIR / "loadgen.py"),
        "--port",
        str(target.port),
        "--write-key",
        WRITE_KEY,
        "--connections",
        str(args.connections),
        "--warmup",
        str(args.warmup),
        "--duration",
        str(args.duration),
        "--seed",
        str(len(target.runs) + 1),
        "--watch-pid",
        str(target.process.pid),
    ]
    done = subprocess.run(command, capture_output=True, check=False, timeout=args.warmup + args.duration + 120)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed on {target.name}:\n{done.stderr.decode(errors='replace')}")
    result: dict[str, Any] = json.loads(done.stdout)
    target.acked_events += result["acked_events"]
    stored = target.stored_events()
    failed = sum(n for status, n in result["statuses"].items() if status != "200") + result["transport_errors"]
    # Nothing may be lost; only a request that failed may have left events behind without an answer.
    check = {
        "acknowledged": target.acked_events,
        "stored": stored,
        "ok": stored == target.acked_events if not failed else stored >= target.acked_events,
    }
    target.checks.append(check)
    target.runs.append(result)
    return result


def summarize(target: Target, baseline_eps: float | None) -> dict[str, Any]:
    runs = target.runs
    eps = statistics.median(r["events_per_s"] for r in runs)
    summary = {
        "target": target.name,
        "label": target.label,
        "events_per_s": eps,
        "events_per_s_runs": [r["events_per_s"] for r in runs],
        "requests_per_s": statistics.median(r["requests_per_s"] for r in runs),
        "p50_ms": statistics.median(r["latency_ms"]["p50"] for r in runs),
        "p99_ms": statistics.median(r["latency_ms"]["p99"] for r in runs),
        "server_cpu_cores": statistics.median(r["cpu_cores"]["watched"][0] or 0.0 for r in runs),
        # CPU the server spent per acknowledged event: its efficiency, less sensitive to how much of the
        # machine other processes took during the run than events/s is.
        "server_cpu_us_per_event": statistics.median(
            (r["cpu_cores"]["watched"][0] or 0.0) / r["events_per_s"] * 1e6 if r["events_per_s"] else float("nan")
            for r in runs
        ),
        "loadgen_cpu_cores": statistics.median(r["cpu_cores"]["loadgen"] for r in runs),
        "other_cpu_cores": statistics.median(r["cpu_cores"]["other"] for r in runs),
        "failed_requests": sum(
            sum(n for s, n in r["statuses"].items() if s != "200") + r["transport_errors"] for r in runs
        ),
        "stored_equals_acknowledged": all(bool(c["ok"]) for c in target.checks),
        "checks": target.checks,
        "ratio_to_baseline": (eps / baseline_eps) if baseline_eps else None,
        "runs": runs,
    }
    return summary


def print_table(summaries: list[dict[str, Any]], args: argparse.Namespace) -> None:
    table = Table(
        title=(
            f"/v1/batch ingestion · {args.connections} keep-alive connections · 100 events/request · "
            f"median of {args.runs} x {args.duration:g} s"
        )
    )
    columns = (
        "target",
        "events/s",
        "req/s",
        "p50 ms",
        "p99 ms",
        "× baseline",
        "server CPU",
        "µs CPU/event",
        "loadgen CPU",
        "other CPU",
        "stored = acked",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "target" else "right")
    for s in summaries:
        table.add_row(
            s["label"],
            f"{s['events_per_s']:,.0f}",
            f"{s['requests_per_s']:,.0f}",
            f"{s['p50_ms']:.1f}",
            f"{s['p99_ms']:.1f}",
            "1.00" if s["target"] == "baseline" else f"{s['ratio_to_baseline']:.2f}",
            f"{s['server_cpu_cores']:.2f}",
            f"{s['server_cpu_us_per_event']:.0f}",
            f"{s['loadgen_cpu_cores']:.2f}",
            f"{s['other_cpu_cores']:.2f}",
            ("yes" if s["stored_equals_acknowledged"] else "NO")
            + (f" ({s['failed_requests']} failed)" if s["failed_requests"] else ""),
        )
    console.print(table)
    console.print(
        "CPU columns are cores used during the measured window (this machine has "
        f"{os.cpu_count()}); 'other' is load from processes outside the benchmark."
    )


def revision() -> str | None:
    """The commit measured, with `+dirty` when the work tree has changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=BENCH_DIR)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=BENCH_DIR)
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="duckdb,postgres", help="comma-separated: duckdb, postgres")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="1 run of 4 s per target")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_PG),
        help="server URL without a database; a fresh database is created and dropped",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.duration, args.warmup = 1, 4.0, 1.0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"duckdb", "postgres"}
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(sorted(unknown))}; choose duckdb and/or postgres")

    started = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="orchestrion-bench-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        targets = [start_baseline(root)]
        stack.callback(targets[0].stop)
        for backend in backends:
            url = stack.enter_context(fresh_postgres_database(args.postgres_url)) if backend == "postgres" else None
            target = start_orchestrion(root / backend, backend, url)
            stack.callback(target.stop)
            targets.append(target)
        load_before = os.getloadavg()
        for run in range(args.runs):
            for target in targets:
                result = drive(target, args)
                check = target.checks[-1]
                console.print(
                    f"run {run + 1}/{args.runs} {target.name:>8}: {result['events_per_s']:>9,.0f} events/s  "
                    f"p50 {result['latency_ms']['p50']:6.1f} ms  p99 {result['latency_ms']['p99']:6.1f} ms  "
                    f"server CPU {result['cpu_cores']['watched'][0] or 0:.2f}  "
                    f"loadgen CPU {result['cpu_cores']['loadgen']:.2f}  "
                    f"stored {check['stored']:,} / acked {check['acknowledged']:,}"
                )

    baseline = summarize(targets[0], None)
    summaries = [baseline] + [summarize(t, baseline["events_per_s"]) for t in targets[1:]]
    print_table(summaries, args)
    report = {
        "benchmark": "ingest",
        "started_at": started.isoformat(),
        "revision": revision(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_before": load_before,
        },
        "settings": {
            "connections": args.connections,
            "events_per_request": 100,
            "runs": args.runs,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
        },
        "goal": {"events_per_s_embedded": 20_000, "ratio_to_baseline": 0.5},
        "results": summaries,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"figures written to {args.output}")
    return 0 if all(s["stored_equals_acknowledged"] for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
