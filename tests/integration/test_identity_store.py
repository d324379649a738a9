"""Identity resolution in the processing path, on both backends, without HTTP: events appended to the log as the
gateway stores them, processed by the conductor exactly as a server does, read back through the profile look-ups.

- Determinism: the same events in two arrival orders (processed page by page, so later pages carry late events,
  with a restart of the processing in between) give the same profiles: same ids, identifiers, traits, timelines.
- The CLI `orchestrion profile` reads a workspace with no server running, processing pending events first.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from orchestrion.cli import app
from orchestrion.identity.lookup import find_profile, profile_document, timeline
from orchestrion.pipeline import Processing, build_processing
from orchestrion.store import open_store
from orchestrion.store.ports import Store
from orchestrion.workspace import load_workspace
from tests.e2e.support_database import server_database
from tests.e2e.support_profiles import alias, identify, store_events, track
from tests.support.server import DEFAULT_WORKSPACE

IPAD = {"device": {"id": "family-ipad"}}


def workout_app_events() -> list[tuple[str, dict[str, Any]]]:
    """(source, event) of seed 000's cases, in event-time order: merges, refusals, an alias chain, placeholders,
    an email change, and traits set more than once."""
    return [
        ("web", track("ann-1", 0, "pricing_viewed", anonymousId="ann-web")),
        ("app", track("ann-2", 5, "Signed Up", anonymousId="ann-app", context=IPAD)),
        ("app", identify("ann-3", 6, userId="ann", anonymousId="ann-app", traits={"email": "ann@x.io"}, context=IPAD)),
        ("web", identify("ann-4", 10, userId="ann", anonymousId="ann-web", traits={"plan": "pro"})),
        ("app", identify("bob-1", 20, userId="bob", anonymousId="bob-app", traits={"plan": "free"}, context=IPAD)),
        ("app", track("bob-2", 21, "Workout Completed", userId="bob", context=IPAD)),
        ("web", track("cy-1", 30, "pricing_viewed", anonymousId="cy-web")),
        ("web", alias("cy-2", 31, previous_id="cy-web", user_id="cy")),
        ("web", alias("cy-3", 32, previous_id="cy", user_id="cy-2")),
        ("web", track("cy-4", 33, "Plan Upgraded", userId="cy-2")),
        *(("web", identify(f"null-{i}", 40 + i, userId=f"nu{i}", anonymousId="null")) for i in range(5)),
        ("app", identify("dan-1", 50, userId="dan", traits={"email": "dan@old.io", "plan": "free"})),
        ("app", identify("dan-2", 55, userId="dan", traits={"email": "dan@new.io", "plan": "pro"})),
        ("app", track("dan-3", 56, "Workout Completed", userId="dan", context={"timezone": "Europe/Paris"})),
        ("web", identify("ann-5", 60, userId="ann", traits={"plan": "premium"}, context={"locale": "de-DE"})),
    ]


@contextmanager
def processing(workspace_root: Path, database_url: str) -> Iterator[tuple[Store, Processing]]:
    """The store and the processing a server would build for this workspace."""
    workspace = load_workspace(
        workspace_root, env={"ORCHESTRION_DATABASE_URL": database_url, "ORCHESTRION_ADMIN_TOKEN": "adm_local_0001"}
    )
    store = open_store(workspace.database_url)
    try:
        built = build_processing(store, workspace)
        try:
            yield store, built
        finally:
            built.conductor.lease.release()
    finally:
        store.close()


def feed(root: Path, database_url: str, events: list[tuple[str, dict[str, Any]]], page: int) -> int:
    """Store and process `page` events at a time; the processing restarts (state reloaded) half-way.
    Returns how many late events made the resolver replay a part of the graph."""
    half = len(events) // 2
    replays = 0
    for part in (events[:half], events[half:]):
        with processing(root, database_url) as (store, built):
            for start in range(0, len(part), page):
                for source, item in part[start : start + page]:
                    store_events(store, source, item)
                built.conductor.drain()
            replays += built.identity.resolver.stats.replays
    return replays


def snapshot(root: Path, database_url: str) -> dict[str, Any]:
    """Every live profile as its readers see it: identifiers, traits, maintained fields, timeline."""
    with processing(root, database_url) as (store, _):
        profile_ids = sorted({str(r[0]) for r in store.query("select profile_id from identity_graph").rows})
        result: dict[str, Any] = {}
        for profile_id in profile_ids:
            document = profile_document(store, profile_id)
            result[profile_id] = {
                "identities": sorted(f"{i['type']}:{i['value']}" for i in document["identities"]),
                "traits": {name: (t["value"], t["message_id"]) for name, t in document["traits"].items()},
                "maintained": {name: t["value"] for name, t in document["maintained"].items()},
                "seen": (str(document["first_seen"]), str(document["last_seen"])),
                "timeline": [i["message_id"] for i in timeline(store, profile_id, limit=1000)["items"]],
            }
        return result


@contextmanager
def second_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    if database_url.startswith("duckdb"):
        yield f"duckdb:///{tmp_path / 'second.duckdb'}"
        return
    with server_database("postgres") as url:
        assert url is not None
        yield url


def test_profiles_do_not_depend_on_arrival_order(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "orchestrion.yml").write_text(DEFAULT_WORKSPACE)
    events = workout_app_events()
    assert feed(tmp_path, database_url, events, page=4) == 0
    in_order = snapshot(tmp_path, database_url)

    shuffled = list(events)
    random.Random(7).shuffle(shuffled)
    with second_database(database_url, tmp_path) as other_url:
        assert feed(tmp_path, other_url, shuffled, page=3) > 0  # late events took the replay path
        out_of_order = snapshot(tmp_path, other_url)

    assert out_of_order == in_order
    # and what they agree on is the right answer
    by_identifier = {i: p for p, profile in in_order.items() for i in profile["identities"]}
    ann = in_order[by_identifier["user_id:ann"]]
    assert ann["identities"] == [
        "anonymous_id:ann-app",
        "anonymous_id:ann-web",
        "device_id:family-ipad",
        "email:ann@x.io",
        "user_id:ann",
    ]
    assert ann["traits"]["plan"] == ("premium", "ann-5")
    assert ann["timeline"] == ["ann-5", "ann-4", "ann-3", "ann-2", "ann-1"]
    assert by_identifier["user_id:bob"] != by_identifier["user_id:ann"]
    assert "device_id:family-ipad" not in in_order[by_identifier["user_id:bob"]]["identities"]
    assert by_identifier["user_id:cy-2"] == by_identifier["anonymous_id:cy-web"] == by_identifier["user_id:cy"]
    assert len({by_identifier[f"user_id:nu{i}"] for i in range(5)}) == 5
    assert "anonymous_id:null" not in by_identifier
    dan = in_order[by_identifier["user_id:dan"]]
    assert dan["traits"]["email"] == ("dan@new.io", "dan-2")
    assert dan["traits"]["plan"] == ("pro", "dan-2")
    assert dan["maintained"] == {"timezone": "Europe/Paris"}
    assert {"email:dan@old.io", "email:dan@new.io"} <= set(dan["identities"])


# -- the CLI with no server ----------------------------------------------------------------------------------------
def cli(root: Path, database_url: str, *args: str) -> Result:
    env = {"COLUMNS": "250", "ORCHESTRION_DATABASE_URL": database_url, "ORCHESTRION_ADMIN_TOKEN": "adm_local_0001"}
    return CliRunner().invoke(app, [*args, "--workspace", str(root)], env=env)


def test_cli_profile_without_a_server_processes_pending_events_first(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "orchestrion.yml").write_text(DEFAULT_WORKSPACE)
    store = open_store(database_url)
    try:
        for source, item in workout_app_events()[:4]:
            store_events(store, source, item)
        store_events(
            store,
            "app",
            identify(
                "ann-6",
                7,
                userId="ann",
                traits={"marketing_opt_in": False, "goal": "half marathon"},
                context={"location": {"country": "DE"}},
            ),
        )
        assert store.processing_position("pipeline") == 0  # stored, never processed
    finally:
        store.close()

    shown = cli(tmp_path, database_url, "profile", "email:ann@x.io")
    assert shown.exit_code == 0, shown.stdout + shown.stderr
    output = shown.stdout
    for expected in ("ann-web", "ann-app", "family-ipad", "ann@x.io", "half marathon", "pricing_viewed", "DE"):
        assert expected in output, expected
    assert "consent:email:marketing:denied" in output and "consent:sms:marketing:granted_by_default" in output
    as_json = cli(tmp_path, database_url, "profile", "user_id:ann", "--json")
    assert as_json.exit_code == 0, as_json.stderr
    parsed = json.loads(as_json.stdout)
    document = parsed["profile"]
    assert len(document["merges"]) == 1
    assert document["traits"]["goal"]["message_id"] == "ann-6"
    assert document["consent"]["channels"]["email"]["marketing"]["input"] == "trait:marketing_opt_in"
    assert [i["message_id"] for i in parsed["timeline"]["items"]] == ["ann-4", "ann-6", "ann-3", "ann-2", "ann-1"]
    # the merged-away profile id resolves to the survivor, from the CLI too
    merged = document["merges"][0]["merged_profile_id"]
    again = cli(tmp_path, database_url, "profile", merged, "--json")
    assert json.loads(again.stdout)["profile"]["profile_id"] == document["profile_id"]
    missing = cli(tmp_path, database_url, "profile", "user_id:nobody")
    assert missing.exit_code == 1 and "no profile has user_id:nobody" in missing.stderr
    store = open_store(database_url)
    try:
        assert find_profile(store, "device_id:family-ipad") == document["profile_id"]
    finally:
        store.close()


@pytest.mark.parametrize("reference", [":x", "user_id:"])
def test_cli_profile_names_a_malformed_reference(tmp_path: Path, reference: str) -> None:
    (tmp_path / "orchestrion.yml").write_text(DEFAULT_WORKSPACE)
    result = cli(tmp_path, f"duckdb:///{tmp_path / 'cli.duckdb'}", "profile", reference)
    assert result.exit_code == 1
    assert "must be type:value" in result.stderr and "Traceback" not in result.stderr
