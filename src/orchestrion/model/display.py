"""How `orchestrion models run` and `models status` look in a terminal (Rich). Reads the plain documents that
both the local runner and the admin API produce, so the display is the same with or without a server."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

_STATUS_STYLE = {"success": "green", "failed": "bold red", "skipped": "yellow", "running": "cyan"}


def _instant(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


def _when(value: Any, short: bool = False) -> str:
    instant = _instant(value)
    if instant is None:
        return "-"
    return instant.astimezone(dt.UTC).strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S")


def _span(seconds: float | None) -> str:
    """`42s`, `3m 05s`, `2h 10m`, `3d 4h`."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def _count(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def _status(status: str) -> str:
    return f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]"


@contextmanager
def run_progress(console: Console) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A progress bar over the models of a run; yields the callback that feeds it."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("loading models", total=None)

        def on_progress(item: dict[str, Any]) -> None:
            progress.update(task, total=item["total"])
            if item["phase"] == "model_started":
                progress.update(task, description=f"building [bold]{escape(item['model'])}[/]")
                return
            result = item["result"] or {}
            progress.advance(task)
            progress.console.print(
                f"  {_status(result.get('status', '?'))} {escape(item['model'])} "
                f"[dim]({result.get('mode', '')}, {_count(result.get('rows_total'))} rows, "
                f"{_span(result.get('duration_seconds'))})[/]",
                highlight=False,
            )

        yield on_progress


def print_run_report(console: Console, report: dict[str, Any]) -> bool:
    """The table of a run; True when every model was built."""
    table = Table(
        Column("model", no_wrap=True), "kind", "mode", "status", "rows", "written", "duration", "audience", "error"
    )
    for result in report["results"]:
        audience = ""
        if result["kind"] == "audience" and result["status"] == "success":
            audience = f"[green]+{result['entered']}[/] [red]-{result['exited']}[/]"
        table.add_row(
            escape(result["model"]),
            result["kind"],
            result["mode"],
            _status(result["status"]),
            _count(result.get("rows_total")),
            _count(result.get("rows_written")),
            _span(result.get("duration_seconds")),
            audience,
            escape(result.get("error") or ""),
        )
    console.print(table)
    built = sum(1 for r in report["results"] if r["status"] == "success")
    console.print(
        f"{built} of {len(report['results'])} model(s) built as of {_when(report['as_of'])}; "
        f"{report['events_emitted']} audience event(s) emitted",
        highlight=False,
    )
    if report["stale"]:
        console.print(f"[bold red]stale:[/] {escape(', '.join(report['stale']))}", highlight=False)
    return bool(report["ok"])


def print_status(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(
        Column("model", no_wrap=True), "kind", "last build (UTC)", "status", "rows", "took", "age", "SLO", "schedule"
    )
    for row in rows:
        last = row["last_build"] or {}
        success = row["last_success"] or {}
        age = _span(row["age_seconds"]) if row["data_as_of"] else "never built"
        if row["stale"]:
            age = f"[bold red]{age} (stale)[/]"
        note = " [yellow](changed)[/]" if row["changed_since_build"] else ""
        status = _status(last["status"]) if last else "-"
        if last.get("status") == "failed":
            status += f" [dim]{escape(str(last.get('error') or ''))[:80]}[/]"
        table.add_row(
            escape(row["model"]) + note,
            row["kind"],
            _when(last.get("finished_at") or last.get("started_at"), short=True),
            status,
            _count(success.get("rows_total")),
            _span(success.get("duration_seconds")),
            age,
            _span(row["freshness_slo_seconds"]),
            escape(row["schedule"] or "-"),
        )
    console.print(table)
