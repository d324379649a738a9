"""A processing step is written in a few statements on each backend and leaves exactly what writing its rows one
by one, in order, would: merge chains end on the last survivor, a row named twice keeps its last version, values
(JSON, booleans, times, NULLs) arrive intact, and the checkpoint moves with them."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import duckdb
import psycopg
import pytest

from orchestrion.store.ports import EventStore
from orchestrion.store.profile_rows import (
    ConsentRow,
    GraphRow,
    LinkRow,
    MergeRow,
    ProcessingStep,
    ProfileRow,
    RefusalRow,
)

T0 = dt.datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=dt.UTC)


def rows(store: EventStore, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in store.query(sql).rows]


def as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def link(seq: int, message_id: str, profile_id: str, alias: dict[str, Any] | None = None) -> LinkRow:
    return LinkRow(seq, "app", message_id, T0 + dt.timedelta(seconds=seq), ["user_id:u1"], alias, profile_id)


def profile(profile_id: str, plan: str) -> ProfileRow:
    provenance = {"traits": {"plan": [T0.isoformat(), "m1", "app"]}, "fields": {}, "first_seen": None}
    return ProfileRow(
        profile_id, {"plan": plan, "score": 1.5e300}, provenance, T0, T0, "Europe/Berlin", None, "iOS", "DE"
    )


def test_a_step_with_chains_and_repeated_rows_leaves_the_one_by_one_result(store: EventStore) -> None:
    store.commit_processing(
        ProcessingStep(
            checkpoint="pipeline",
            position=2,
            links=[link(1, "m1", "p_a"), link(2, "m2", "p_x")],
            merges=[MergeRow("p_x", "p_a", "event linked a and x", "m2", T0)],
        )
    )
    store.commit_processing(
        ProcessingStep(
            checkpoint="pipeline",
            position=4,
            links=[link(3, "m3", "p_b", alias={"target": "user_id:u1", "candidates": ["anonymous_id:a1"]})],
            graph_upserts=[
                GraphRow("email", "ann@example.com", "p_a", T0, "m1", "app"),
                GraphRow("user_id", "u1", "p_a", T0, "m1", "app"),
                GraphRow("email", "ann@example.com", "p_c", T0 + dt.timedelta(hours=1), "m3", "app"),
            ],
            # a -> b, then b -> c in the same step: x (merged earlier into a), a and b all end on c
            merges=[MergeRow("p_a", "p_b", "event", "m3", T0), MergeRow("p_b", "p_c", "alias", "m3", T0)],
            retargets=[("app", "m1", "p_b"), ("app", "m1", "p_c"), ("app", "m3", "p_c")],
            profiles=[profile("p_c", "free"), profile("p_c", "pro")],
            deleted_profiles=["p_a", "p_b"],
            refusals=[RefusalRow("app", "m3", "device_id", "d1", "limit", "two user_ids", "p_c", T0)],
            consent=[
                ConsentRow("p_c", "email", "marketing", True, "trait:marketing_opt_in", "app", "m3", T0),
                ConsentRow("p_c", "sms", "marketing", False, "trait:sms_opt_in", "app", "m3", T0),
            ],
        )
    )

    assert rows(store, "select merged_profile_id, survivor_profile_id, reason from profile_merges order by 1") == [
        ("p_a", "p_c", "event"),
        ("p_b", "p_c", "alias"),
        ("p_x", "p_c", "event linked a and x"),
    ]
    assert rows(store, "select seq, profile_id from identity_links order by 1") == [(1, "p_c"), (2, "p_x"), (3, "p_c")]
    ((identifiers, alias),) = rows(store, "select identifiers, alias from identity_links where seq = 3")
    assert as_json(identifiers) == ["user_id:u1"]
    assert as_json(alias) == {"target": "user_id:u1", "candidates": ["anonymous_id:a1"]}
    assert rows(store, "select alias from identity_links where seq = 1") == [(None,)]
    assert rows(
        store, "select identifier_type, profile_id, attached_at, message_id from identity_graph order by 1"
    ) == [
        ("email", "p_c", T0 + dt.timedelta(hours=1), "m3"),
        ("user_id", "p_a", T0, "m1"),
    ]
    ((profile_id, traits, provenance, first_seen, timezone, locale, device_os),) = rows(
        store, "select profile_id, traits, trait_provenance, first_seen, timezone, locale, device_os from profiles"
    )
    assert (profile_id, first_seen, timezone, locale, device_os) == ("p_c", T0, "Europe/Berlin", None, "iOS")
    assert as_json(traits) == {"plan": "pro", "score": 1.5e300}
    assert as_json(provenance)["traits"]["plan"] == [T0.isoformat(), "m1", "app"]
    assert rows(store, "select channel, granted, input from consent_changes order by 1") == [
        ("email", True, "trait:marketing_opt_in"),
        ("sms", False, "trait:sms_opt_in"),
    ]
    assert rows(store, "select identifier_value, code, profile_id from identity_refusals") == [("d1", "limit", "p_c")]
    assert store.processing_position("pipeline") == 4


def test_a_step_that_fails_leaves_nothing_behind(store: EventStore) -> None:
    store.commit_processing(ProcessingStep(checkpoint="pipeline", position=1, links=[link(1, "m1", "p_a")]))
    broken = ProcessingStep(
        checkpoint="pipeline",
        position=2,
        links=[link(2, "m2", "p_a")],
        profiles=[profile("p_a", "free")],
        consent=[ConsentRow("p_a", "email", "marketing", True, "trait:x", "app", "m2", None)],  # type: ignore[arg-type]
    )
    with pytest.raises((duckdb.ConstraintException, psycopg.errors.NotNullViolation)):
        store.commit_processing(broken)  # a consent change without a time breaks a NOT NULL column
    assert rows(store, "select seq from identity_links") == [(1,)]
    assert rows(store, "select count(*) from profiles") == [(0,)]
    assert store.processing_position("pipeline") == 1
