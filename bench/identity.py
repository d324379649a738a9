"""Identity benchmark: events/s through processing with identity resolution, against processing without it, on
DuckDB and PostgreSQL; the time to rebuild the whole identity graph from the stored landing data; µs per link.

The data is a seeded workout-app stream (bench/identity_data.py: anonymous web visits, app signups, identifies,
workouts, aliases, shared devices, late events), loaded into the `events` table of a fresh database for every run
(DuckDB: a copy of a cached file; PostgreSQL: a database created for the run, filled with COPY, dropped after).

- processing: `build_processing(store, workspace).conductor.drain()` over every event, against the baseline — the
  same conductor reading the same pages but committing only its checkpoint (a no-op stage), measured in the same run;
- rebuild: `IdentityStage.load()` (what a server does at start) on a database holding the `identity_links` of
  1,000,000 events (what processing wrote for them), on both backends; and on DuckDB the same graph rebuilt from the
  landing `events` table itself (read every event, `link_of`, `rebuild_all`);
- micro: `IdentityResolver.add` for links in event-time order (the common, in-order path), µs per link.

    python bench/identity.py                  # 3 runs per backend of 40k events, rebuild of 1M events (~5 min)
    python bench/identity.py --quick          # 1 run of 20k events, rebuild of 100k events
    python bench/identity.py --backends duckdb --events 200000 --rebuild-from-events duckdb,postgres

Prints a table of medians and writes every figure to bench/results/identity.json, with the CPU seconds of this
process beside the wall-clock ones (the machine is shared: CPU time shows what the load cost). The first run builds
the data under bench/data/ (about 5 minutes for 1M events; cached for the next runs).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import identity_data
from orchestrion.identity.config import IdentityPolicy
from orchestrion.identity.identifiers import link_of
from orchestrion.identity.links import Link
from orchestrion.identity.resolver import IdentityResolver, rebuild_all
from orchestrion.identity.stage import IdentityStage
from orchestrion.pipeline import CHECKPOINT, Conductor, build_processing
from orchestrion.store import open_store
from orchestrion.store.duckdb_backend import DuckDBStore
from orchestrion.store.lease import processing_lease
from orchestrion.store.ports import Store, StoredEvent
from orchestrion.store.profile_rows import ProcessingStep
from orchestrion.workspace import Workspace, WorkspaceConfig

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "identity.json"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432"
EVENT_COLUMNS = (
    'seq, source, message_id, type, event, user_id, anonymous_id, "timestamp", original_timestamp, sent_at, '
    "received_at, payload"
)
LINK_COLUMNS = 'seq, source, message_id, "timestamp", identifiers, alias, profile_id'
console = Console(width=150)


# -- fresh databases holding the landing data ----------------------------------------------------------------------
def _csv_of(cached: Path, table: str, columns: str) -> Path:
    """The rows of a table of a cached DuckDB file as CSV (for PostgreSQL's COPY); cached beside it."""
    path = cached.with_name(f"{cached.stem}.{table}.csv")
    if not path.exists():
        store = DuckDBStore(str(cached), read_only=True)
        try:
            partial = path.with_suffix(f".{os.getpid()}.partial")
            store.raw_connection().execute(
                f"COPY (SELECT {columns} FROM {table} ORDER BY seq) TO '{partial}' (FORMAT csv, HEADER false)"
            )
            partial.rename(path)
        finally:
            store.close()
    return path


@contextlib.contextmanager
def postgres_database(base_url: str) -> Iterator[str]:
    """A database made for this run and dropped afterwards."""
    import psycopg

    name = f"bench_identity_{secrets.token_hex(4)}"
    with psycopg.connect(f"{base_url}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{base_url}/{name}"
    finally:
        with psycopg.connect(f"{base_url}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _copy_into_postgres(url: str, csv_path: Path, table: str, columns: str) -> None:
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as copy, csv_path.open("rb") as handle:
            while block := handle.read(1 << 20):
                copy.write(block)
        if table == "events":
            cur.execute("SELECT setval('events_seq', (SELECT max(seq) FROM events))")
        cur.execute(f"ANALYZE {table}")


@contextlib.contextmanager
def landed_store(backend: str, cached: Path, work: Path, pg_base: str, tables: tuple[str, ...]) -> Iterator[Store]:
    """A fresh store of `backend` holding the cached landing data (`tables`: events and/or identity_links)."""
    if backend == "duckdb":
        path = identity_data.copy_of(cached, work)
        store = open_store(f"duckdb:///{path}")
        try:
            yield store
        finally:
            store.close()
            path.unlink(missing_ok=True)
        return
    with postgres_database(pg_base) as url:
        store = open_store(url)
        try:
            for table in tables:
                columns = EVENT_COLUMNS if table == "events" else LINK_COLUMNS
                _copy_into_postgres(url, _csv_of(cached, table, columns), table, columns)
            yield store
        finally:
            store.close()


def bench_workspace(root: Path) -> Workspace:
    """The default identity and consent settings (what `orchestrion init` writes)."""
    return Workspace(root=root, config=WorkspaceConfig(name="bench"), admin_token="adm_bench", database_url="")


# -- processing -------------------------------------------------------------------------------------------------
def _timed_drain(conductor: Conductor, expected: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds of this process (DuckDB runs in it; PostgreSQL's own work is not counted)."""
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    conductor.drain(timeout=3600)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if conductor.processed != expected:
        raise RuntimeError(f"processed {conductor.processed} events, expected {expected}")
    return elapsed, cpu


def measure_processing(store: Store, workspace: Workspace, events: int) -> dict[str, Any]:
    """Baseline (a no-op stage committing only the checkpoint), then identity resolution, over the same events."""

    def commit_checkpoint(page: list[StoredEvent], position: int) -> None:
        store.commit_processing(ProcessingStep(checkpoint=CHECKPOINT, position=position))

    baseline = Conductor(store, commit_checkpoint, lease=processing_lease(store))
    baseline_s, baseline_cpu = _timed_drain(baseline, events)
    baseline.lease.release()
    _reset_processing(store)

    processing = build_processing(store, workspace)
    identity_s, identity_cpu = _timed_drain(processing.conductor, events)
    processing.conductor.lease.release()
    stats = processing.identity.resolver.stats
    return {
        "events": events,
        "baseline_s": baseline_s,
        "baseline_events_per_s": events / baseline_s,
        "baseline_cpu_s": baseline_cpu,
        "identity_s": identity_s,
        "identity_events_per_s": events / identity_s,
        "identity_cpu_s": identity_cpu,
        "ratio": baseline_s / identity_s,
        "resolver": {
            "applied": stats.applied,
            "late_no_ops": stats.late_no_ops,
            "replays": stats.replays,
            "replayed": stats.replayed,
        },
        "stored": _stored_counts(store),
    }


def _reset_processing(store: Store) -> None:
    """Forget the baseline's checkpoint: processing with resolution starts from the first event again."""
    with store._transaction() as cur:  # type: ignore[attr-defined]  # a benchmark reset, not a product operation
        cur.execute("DELETE FROM process_checkpoints")


# What processing stored, reduced to counts and a digest of who is who: the same events must give the same rows
# on every backend.
_STORED = {
    "identity_links": "SELECT seq, profile_id FROM identity_links ORDER BY seq",
    "identity_graph": "SELECT identifier_type, identifier_value, profile_id FROM identity_graph ORDER BY 1, 2",
    "profiles": "SELECT profile_id, CAST(last_seen AS VARCHAR) FROM profiles ORDER BY 1",
    "profile_merges": "SELECT merged_profile_id, survivor_profile_id FROM profile_merges ORDER BY 1",
    "identity_refusals": "SELECT count(*) FROM identity_refusals",
    "consent_changes": "SELECT count(*) FROM consent_changes",
}


def _stored_counts(store: Store) -> dict[str, Any]:
    stored: dict[str, Any] = {}
    for table, sql in _STORED.items():
        rows = store.query(sql, max_rows=10_000_000).rows
        if sql.startswith("SELECT count"):
            stored[table] = int(rows[0][0])
        else:
            digest = hashlib.sha256(json.dumps([list(r) for r in rows], default=str).encode()).hexdigest()
            stored[table] = {"rows": len(rows), "digest": digest[:16]}
    return stored


# -- rebuild ----------------------------------------------------------------------------------------------------
def measure_rebuild_from_links(store: Store, policy: IdentityPolicy) -> dict[str, Any]:
    """`IdentityStage.load()`: read `identity_links`, rebuild the resolver in key order."""
    stage = IdentityStage(store, policy)
    read = store.identity_records
    read_s, count = 0.0, 0

    def timed_read() -> Any:
        nonlocal read_s, count
        started = time.perf_counter()
        rows = read()
        read_s, count = time.perf_counter() - started, len(rows[0])
        return rows

    store.identity_records = timed_read  # type: ignore[method-assign]  # time the read inside load()
    try:
        gc.collect()
        started, cpu = time.perf_counter(), time.process_time()
        stage.load()
        total_s, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        del store.identity_records
    return {
        "links": count,
        "seconds": total_s,
        "cpu_s": cpu,
        "links_per_s": count / total_s,
        "read_rows_s": read_s,
        "profiles": len(stage.resolver.graph),
    }


def measure_rebuild_from_events(store: Store, policy: IdentityPolicy) -> dict[str, Any]:
    """The graph from the raw `events` table: read every event in log order, `link_of`, rebuild in key order."""
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    found: list[Link] = []
    position = 0
    events = 0
    while page := store.read_events_after(position, 20_000):
        events += len(page)
        for stored in page:
            link = link_of(stored.event, policy).link
            if link is not None:
                found.append(link)
        position = page[-1].seq
    read_s = time.perf_counter() - started
    resolver = rebuild_all(found, policy)
    total_s, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "events": events,
        "links": len(found),
        "seconds": total_s,
        "cpu_s": cpu,
        "links_per_s": len(found) / total_s,
        "read_and_extract_s": read_s,
        "profiles": len(resolver.graph),
    }


# -- micro ------------------------------------------------------------------------------------------------------
def measure_resolver_add(count: int, runs: int) -> dict[str, Any]:
    policy = IdentityPolicy.default()
    generated = identity_data.events(count)
    started = time.perf_counter()
    links = [link for e in generated if (link := link_of(e, policy).link) is not None]
    link_of_us = (time.perf_counter() - started) / len(generated) * 1e6
    links.sort(key=lambda link: link.key)
    per_link = []
    for _ in range(runs):
        resolver = IdentityResolver(policy)
        add = resolver.add
        gc.collect()
        started = time.perf_counter()
        for link in links:
            add(link)
        per_link.append((time.perf_counter() - started) / len(links) * 1e6)
    return {
        "links": len(links),
        "us_per_link_runs": per_link,
        "us_per_link": statistics.median(per_link),
        "link_of_us_per_event": link_of_us,
    }


# -- report -----------------------------------------------------------------------------------------------------
def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def print_table(report: dict[str, Any]) -> None:
    table = Table(title=f"Identity processing ({report['settings']['events']:,} events, median of "
                  f"{report['settings']['runs']} runs; ratio = with resolution / without, same run)")  # fmt: skip
    for column in ("backend", "without resolution", "with resolution", "ratio", "replays / run"):
        table.add_column(column, justify="right" if column != "backend" else "left")
    for backend, summary in report["processing"].items():
        table.add_row(
            backend,
            f"{summary['baseline_events_per_s']:,.0f} events/s",
            f"{summary['identity_events_per_s']:,.0f} events/s",
            f"{summary['ratio']:.3f}",
            f"{summary['runs'][0]['resolver']['replays']:,}",
        )
    console.print(table)
    rebuild = Table(title="Rebuild of the whole identity graph (median)")
    for column in ("backend", "from", "events", "links", "seconds", "links/s", "profiles"):
        rebuild.add_column(column, justify="left" if column in ("backend", "from") else "right")
    for backend, kinds in report["rebuild"].items():
        for kind, summary in kinds.items():
            rebuild.add_row(
                backend,
                kind,
                f"{report['settings']['rebuild_events']:,}",
                f"{summary['links']:,}",
                f"{summary['seconds']:.1f}",
                f"{summary['links_per_s']:,.0f}",
                f"{summary['profiles']:,}",
            )
    if report["rebuild"]:
        console.print(rebuild)
    micro = report["micro"]
    console.print(
        f"resolver.add, in event-time order: {micro['us_per_link']:.1f} µs/link over {micro['links']:,} links "
        f"(link_of: {micro['link_of_us_per_event']:.1f} µs/event)"
    )


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        key: _median(runs, key)
        for key in ("baseline_events_per_s", "identity_events_per_s", "ratio", "baseline_s", "identity_s")
    }
    summary["runs"] = runs
    return summary


def _repeat(label: str, runs: int, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    results = []
    for run in range(runs):
        result = measure()
        console.print(f"  {label} {run + 1}/{runs}: {result['seconds']:.1f}s, {result['links_per_s']:,.0f} links/s")
        results.append(result)
    best = dict(min(results, key=lambda r: abs(r["seconds"] - statistics.median(x["seconds"] for x in results))))
    best["seconds"] = statistics.median(r["seconds"] for r in results)
    best["links_per_s"] = best["links"] / best["seconds"]
    best["seconds_runs"] = [r["seconds"] for r in results]
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="duckdb,postgres", help="comma-separated: duckdb, postgres")
    parser.add_argument("--runs", type=int, default=3, help="processing runs per backend")
    parser.add_argument("--events", type=int, default=40_000, help="events processed per run")
    parser.add_argument("--rebuild-events", type=int, default=1_000_000)
    parser.add_argument("--rebuild-runs", type=int, default=1)
    parser.add_argument("--rebuild-backends", default="duckdb,postgres", help="rebuild from identity_links on")
    parser.add_argument(
        "--rebuild-from-events",
        default="duckdb",
        help="backends on which the rebuild from the raw events table is measured too (loading 1M events into "
        "PostgreSQL takes a while)",
    )
    parser.add_argument("--quick", action="store_true", help="1 run of 20k events, rebuild of 100k events")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_PG),
        help="server URL without a database; a fresh database is created and dropped for each run",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.events, args.rebuild_events = 1, 20_000, 100_000
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    rebuild_backends = [b.strip() for b in args.rebuild_backends.split(",") if b.strip() in backends]
    from_events = {b.strip() for b in args.rebuild_from_events.split(",") if b.strip()}
    unknown = set(backends) - {"duckdb", "postgres"}
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(sorted(unknown))}; choose duckdb and/or postgres")

    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    console.print(f"data: {args.events:,} events to process, {args.rebuild_events:,} to rebuild from (cached)")
    processing_data = identity_data.cached_store(args.events)
    rebuild_data = identity_data.cached_store(args.rebuild_events, with_links=True)
    policy = IdentityPolicy.default()
    processing: dict[str, list[dict[str, Any]]] = {b: [] for b in backends}
    rebuild: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="orchestrion-bench-identity-") as tmp:
        work = Path(tmp)
        workspace = bench_workspace(work)
        for run in range(args.runs):
            for backend in backends:
                with landed_store(backend, processing_data, work, args.postgres_url, ("events",)) as store:
                    result = measure_processing(store, workspace, args.events)
                processing[backend].append(result)
                console.print(
                    f"run {run + 1}/{args.runs} {backend:>8}: without {result['baseline_events_per_s']:>9,.0f} "
                    f"events/s, with resolution {result['identity_events_per_s']:>8,.0f} events/s "
                    f"(ratio {result['ratio']:.3f}; {result['resolver']['replays']} replays)"
                )
        for backend in rebuild_backends:
            tables = ("identity_links", "events") if backend in from_events else ("identity_links",)
            with landed_store(backend, rebuild_data, work, args.postgres_url, tables) as store:
                rebuild[backend] = {
                    "identity_links": _repeat(
                        f"{backend} rebuild from identity_links",
                        args.rebuild_runs,
                        lambda store=store: measure_rebuild_from_links(store, policy),  # type: ignore[misc]
                    )
                }
                if backend in from_events:
                    rebuild[backend]["events (link_of)"] = _repeat(
                        f"{backend} rebuild from events",
                        args.rebuild_runs,
                        lambda store=store: measure_rebuild_from_events(store, policy),  # type: ignore[misc]
                    )
    micro = measure_resolver_add(min(args.events, 200_000), 3)

    # The same events give the same rows on every backend, and every rebuild finds the same profiles.
    profiles_agree = len({json.dumps(runs[0]["stored"], sort_keys=True) for runs in processing.values()}) <= 1
    rebuilds_agree = len({kind["profiles"] for kinds in rebuild.values() for kind in kinds.values()}) <= 1
    report = {
        "benchmark": "identity",
        "started_at": started.isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "settings": {
            "events": args.events,
            "runs": args.runs,
            "rebuild_events": args.rebuild_events,
            "rebuild_runs": args.rebuild_runs,
            "page_size": 1000,
            "data": f"bench/identity_data.py v{identity_data.DATA_VERSION}, seed {identity_data.SEED}",
        },
        "processing": {backend: summarize(runs) for backend, runs in processing.items()},
        "backends_store_the_same_rows": profiles_agree,
        "rebuilds_find_the_same_profiles": rebuilds_agree,
        "rebuild": rebuild,
        "micro": micro,
    }
    print_table(report)
    if not profiles_agree:
        console.print("[red]the backends stored different identity rows for the same events[/red]")
    if not rebuilds_agree:
        console.print("[red]the rebuilds found different numbers of profiles[/red]")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    console.print(f"figures written to {args.output}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if profiles_agree and rebuilds_agree else 1


if __name__ == "__main__":
    sys.exit(main())
