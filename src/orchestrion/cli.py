"""The `orchestrion` command line. Commands that read or change a workspace go through a running
server's admin API when there is one, else open the database directly."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrion import __version__
from orchestrion.errors import OrchestrionError
from orchestrion.workspace import Workspace, find_workspace

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Orchestrion: warehouse-native journeys.")
sources_app = typer.Typer(no_args_is_help=True, help="Event sources (write keys).")
contracts_app = typer.Typer(no_args_is_help=True, help="Data contracts: violations and quarantine replay.")
models_app = typer.Typer(no_args_is_help=True, help="SQL models: traits, states and audiences over the warehouse.")
app.add_typer(sources_app, name="sources")
app.add_typer(contracts_app, name="contracts")
app.add_typer(models_app, name="models")
console = Console(emoji=False)
errors = Console(stderr=True, emoji=False)
T = TypeVar("T")

WorkspaceOption = Annotated[Path, typer.Option("--workspace", "-w", help="workspace folder (default: the current one)")]


def _fail(message: str) -> None:
    # escape: messages quote user values ("[/x]" would be read as markup); soft_wrap: one line per error
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def _errors_as_messages() -> Iterator[None]:
    try:
        yield
    except OrchestrionError as exc:
        _fail(str(exc))


def _workspace(path: Path, allow_dev: bool = False) -> Workspace:
    with _errors_as_messages():
        return find_workspace(path.resolve(), allow_dev=allow_dev)
    raise AssertionError  # unreachable: _fail raised


def _with_access(path: Path, action: Callable[[Any], T]) -> T:
    from orchestrion.access import connect

    workspace = _workspace(path)
    with _errors_as_messages():
        access = connect(workspace)
        try:
            return action(access)
        finally:
            access.close()
    raise AssertionError


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"orchestrion {__version__}")


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="folder to create the workspace in")] = Path("."),
    name: Annotated[str | None, typer.Option(help="workspace name (default: the folder's name)")] = None,
) -> None:
    """Scaffold a workspace: orchestrion.yml, contracts/, models/, journeys/, templates/, tests/."""
    from orchestrion.scaffold import scaffold

    root = path.resolve()
    try:
        created = scaffold(root, name or root.name or "workspace")
    except FileExistsError as exc:
        _fail(str(exc))
        return
    for item in created:
        console.print(f"  created {item.relative_to(root) if item != root else item}")
    console.print(f"Workspace ready in {root}. Next: [bold]orchestrion serve[/] there.")


@app.command()
def serve(
    workspace: WorkspaceOption = Path("."),
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Run the server (API + writers). Without orchestrion.yml, starts a dev workspace."""
    from orchestrion.api.server import serve as run

    ws = _workspace(workspace, allow_dev=True)
    with _errors_as_messages():
        run(ws, host=host, port=port, log_level=log_level)


@sources_app.command("list")
def sources_list(
    workspace: WorkspaceOption = Path("."),
    show_keys: Annotated[bool, typer.Option("--show-keys", help="print whole write keys")] = False,
) -> None:
    """List sources with their write keys, modes and event counts."""
    rows = _with_access(workspace, lambda access: access.sources())
    table = Table("source", "write key", "contract mode", "rate limit", "events", "quarantined", "enabled")
    for row in rows:
        key = row["write_key"] if show_keys else row["write_key"][:10] + "…"
        table.add_row(
            row["name"],
            key,
            row["contract_mode"],
            f"{row['rate_limit']:g}/s" if row["rate_limit"] else "-",
            f"{row['events']:,}",
            f"{row['quarantined']:,}",
            "yes" if row["enabled"] else "no",
        )
    console.print(table)


@app.command()
def validate(workspace: WorkspaceOption = Path(".")) -> None:
    """Check the workspace files; refuse breaking changes to contract versions in force."""
    from orchestrion.access import connect
    from orchestrion.operations import validate_workspace

    ws = _workspace(workspace)
    recorded = None
    try:
        access = connect(ws)
        try:
            recorded = access.recorded_contracts()
        finally:
            access.close()
    except OrchestrionError as exc:
        errors.print(f"[yellow]note:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    report = validate_workspace(ws, recorded)
    for note in report.notes:
        console.print(f"  {note}")
    if not report.ok:
        for error in report.errors:
            errors.print(f"[bold red]error:[/] {escape(error)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print("[green]workspace is valid[/]")


def _cell(value: Any) -> str:
    if value is None:
        return "[dim]NULL[/]"
    if isinstance(value, dict | list):
        return escape(json.dumps(value, default=str))
    return escape(str(value))  # data, not markup


@app.command()
def sql(
    statement: Annotated[str, typer.Argument(help='one read-only statement, e.g. "select count(*) from tracks"')],
    workspace: WorkspaceOption = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    max_rows: Annotated[int, typer.Option(help="rows to print at most")] = 1000,
) -> None:
    """Run a read-only SQL query over the warehouse tables and print it as a table."""
    result = _with_access(workspace, lambda access: access.query(statement, max_rows))
    if as_json:
        sys.stdout.write(
            json.dumps({"columns": result.columns, "rows": result.rows, "truncated": result.truncated}, default=str)
            + "\n"
        )
        return
    table = Table(*result.columns)
    for row in result.rows:
        table.add_row(*(_cell(v) for v in row))
    console.print(table)
    note = " (truncated)" if result.truncated else ""
    console.print(f"[dim]{len(result.rows)} row(s){note}[/]")


@contracts_app.command("report")
def contracts_report(
    workspace: WorkspaceOption = Path("."),
    since: Annotated[str, typer.Option(help="window, e.g. 24h or 7d")] = "7d",
) -> None:
    """Contract violations by event, type and source, and what was quarantined."""
    report = _with_access(workspace, lambda access: access.contracts_report(since))
    table = Table("event", "violation", "source", "count", title=f"Violations on stored events (last {since})")
    for row in report["violations"]:
        table.add_row(escape(row["event"]), row["type"], row["source"], f"{row['count']:,}")
    console.print(table)
    kept = Table("event", "reason", "source", "kind", "replayed", "count", title=f"Quarantined (last {since})")
    for row in report["quarantined"]:
        kept.add_row(
            escape(row["event"]),
            row["type"],
            row["source"],
            row["kind"],
            "yes" if row["replayed"] else "no",
            f"{row['count']:,}",
        )
    console.print(kept)


@contracts_app.command("replay")
def contracts_replay(
    workspace: WorkspaceOption = Path("."),
    source: Annotated[str | None, typer.Option(help="only this source")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report what would be stored")] = False,
) -> None:
    """Run quarantined events through today's contracts; store those that now pass."""
    result = _with_access(workspace, lambda access: access.contracts_replay(source, dry_run))
    verb = "would store" if dry_run else "stored"
    console.print(
        f"examined {result['examined']:,}; {verb} {result['replayed']:,}; "
        f"already stored {result['deduplicated']:,}; still failing {result['still_failing']:,}"
    )
    for reason, count in sorted(result["reasons"].items()):
        console.print(f"  still failing: {reason}: {count:,}")


@app.command()
def profile(
    reference: Annotated[str, typer.Argument(help="a profile id (p_...) or type:value, e.g. user_id:u1, email:a@b.c")],
    workspace: WorkspaceOption = Path("."),
    events: Annotated[int, typer.Option(help="how many recent events of the timeline to show")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """Show one profile: identities, traits with provenance, consent, merges and its recent events."""

    def read(access: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        return access.profile(reference), access.timeline(reference, events, None)

    document, recent = _with_access(workspace, read)
    if as_json:
        sys.stdout.write(json.dumps({"profile": document, "timeline": recent}, default=str) + "\n")
        return
    console.print(
        f"[bold]Profile {escape(document['profile_id'])}[/]  first seen {document['first_seen']}, "
        f"last seen {document['last_seen']}"
    )
    ids = Table("identifier", "value", "attached at", "by message", "source", title="Identities")
    for item in document["identities"]:
        ids.add_row(
            item["type"],
            escape(str(item["value"])),
            str(item["attached_at"]),
            escape(item["message_id"]),
            item["source"],
        )
    console.print(ids)
    traits = Table("trait", "value", "set at", "by message", "source", title="Traits (last write wins)")
    for name, item in sorted({**document["traits"], **document["maintained"]}.items()):
        traits.add_row(
            escape(name),
            _cell(item["value"]),
            str(item.get("timestamp", "")),
            escape(str(item.get("message_id", ""))),
            str(item.get("source", "")),
        )
    console.print(traits)
    consent = Table("channel", "purpose", "granted", "because", title="Consent now")
    for channel, purposes in document["consent"]["channels"].items():
        for purpose, decision in purposes.items():
            consent.add_row(channel, purpose, "yes" if decision["granted"] else "[red]no[/]", decision["reason"])
    console.print(consent)
    if document["merges"] or document["refusals"]:
        history = Table("kind", "detail", "message", title="Merges and refused links")
        for merge in document["merges"]:
            history.add_row(
                "merged", escape(f"{merge['merged_profile_id']}: {merge['reason']}"), escape(str(merge["message_id"]))
            )
        for refusal in document["refusals"]:
            history.add_row(
                "refused", escape(f"{refusal['identifier']}: {refusal['reason']}"), escape(refusal["message_id"])
            )
        console.print(history)
    timeline = Table("time", "type", "event", "source", "message", title=f"Latest {events} events")
    for item in recent["items"]:
        timeline.add_row(
            str(item["timestamp"]),
            item["type"],
            escape(item["event"] or ""),
            item["source"],
            escape(item["message_id"]),
        )
    console.print(timeline)


@app.command()
def erase(
    reference: Annotated[str, typer.Argument(help="a profile id (p_...) or type:value, e.g. email:a@b.c")],
    workspace: WorkspaceOption = Path("."),
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Erase a profile everywhere (right to be forgotten); late events for its identifiers are dropped."""
    if not yes and not typer.confirm(f"Erase {reference} and all its events for good?"):
        _fail("nothing erased")
    report = _with_access(workspace, lambda access: access.erase(reference))
    console.print(
        f"erased profile {report['profile_id']} ({report['identifiers']} identifiers tombstoned); "
        f"erasure id {report['erasure_id']}"
    )
    for table, count in sorted(report["deleted"].items()):
        console.print(f"  {table}: {count:,}")


@models_app.command("run")
def models_run(
    workspace: WorkspaceOption = Path("."),
    select: Annotated[
        list[str] | None,
        typer.Option("--select", "-s", help="NAME, NAME+ (and what reads it), +NAME (and what it reads); repeatable"),
    ] = None,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="rebuild incremental models whole")] = False,
) -> None:
    """Build models in dependency order (through the server when one runs) and show what each build did."""
    from orchestrion.model.display import print_run_report, run_progress

    with run_progress(console) as on_progress:
        report = _with_access(workspace, lambda access: access.models_run(select, full_refresh, on_progress))
    if not print_run_report(console, report):
        raise typer.Exit(1)


@models_app.command("status")
def models_status(
    workspace: WorkspaceOption = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Each model's last build, rows, duration and freshness (stale ones in red)."""
    from orchestrion.model.display import print_status

    rows = _with_access(workspace, lambda access: access.models_status())
    if as_json:
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    print_status(console, rows)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
