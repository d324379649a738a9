"""Streaming state of computed traits: each aggregate, windows as whole UTC buckets, late events, replays, expiry,
profile merges and storage round trips."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from orchestrion.collect.event import NormalizedEvent
from orchestrion.model.computed import (
    ALL_TIME_OPEN_DAYS,
    ComputedTrait,
    StateMismatch,
    TraitState,
    from_json,
    merge,
    prune,
    to_json,
    update,
    update_with_outcome,
    value,
)

NOON = dt.datetime(2024, 5, 10, 12, 0, tzinfo=dt.UTC)


def track(
    message_id: str,
    at: dt.datetime,
    properties: dict[str, Any] | None = None,
    name: str = "Workout Completed",
    source: str = "app",
    context: dict[str, Any] | None = None,
) -> NormalizedEvent:
    payload: dict[str, Any] = {"type": "track", "event": name, "messageId": message_id, "userId": "u1"}
    payload["properties"] = properties or {}
    payload["context"] = context or {}
    return NormalizedEvent(
        source=source,
        message_id=message_id,
        type="track",
        event=name,
        user_id="u1",
        anonymous_id=None,
        timestamp=at,
        original_timestamp=at,
        sent_at=at,
        received_at=at,
        payload=payload,
    )


def build(trait: ComputedTrait, *events: NormalizedEvent) -> TraitState | None:
    state: TraitState | None = None
    for event in events:
        state = update(state, event, trait)
    return state


def trait(**fields: Any) -> ComputedTrait:
    return ComputedTrait.model_validate({"name": "t", "event": "Workout Completed", **fields})


def test_count_all_time_counts_each_matching_event_once() -> None:
    workouts = trait(aggregate="count")
    state = build(
        workouts,
        track("a", NOON),
        track("b", NOON - dt.timedelta(days=400)),
        track("c", NOON, name="Workout Started"),  # another event: not counted
        track("a", NOON),  # the same event delivered again
    )
    assert value(state, workouts, NOON) == 2
    assert value(None, workouts, NOON) == 0


def test_the_same_message_id_from_another_source_is_another_event() -> None:
    workouts = trait(aggregate="count")
    state = build(workouts, track("a", NOON, source="app"), track("a", NOON, source="web"))
    assert value(state, workouts, NOON) == 2


def test_replay_reports_duplicate_and_leaves_state_unchanged() -> None:
    workouts = trait(aggregate="sum", property="minutes")
    state, first = update_with_outcome(None, track("a", NOON, {"minutes": 30}), workouts)
    again, second = update_with_outcome(state, track("a", NOON, {"minutes": 30}), workouts)
    assert (first.kind, second.kind) == ("applied", "duplicate")
    assert to_json(again) == to_json(state)
    assert value(again, workouts, NOON) == 30


def test_day_window_covers_today_and_the_previous_days_in_utc() -> None:
    recent = trait(aggregate="count", window="7d")
    state = build(
        recent,
        track("today-late", dt.datetime(2024, 5, 10, 23, 59, tzinfo=dt.UTC)),
        track("first-day", dt.datetime(2024, 5, 4, 0, 0, tzinfo=dt.UTC)),
        track("one-day-too-old", dt.datetime(2024, 5, 3, 23, 59, 59, 999999, tzinfo=dt.UTC)),
        track("tomorrow", dt.datetime(2024, 5, 11, 0, 0, tzinfo=dt.UTC)),
    )
    assert value(state, recent, NOON) == 2
    # a day later the window has moved: May 4 leaves, tomorrow's event arrives in it
    assert value(state, recent, NOON + dt.timedelta(days=1)) == 2
    assert value(state, recent, NOON + dt.timedelta(days=7)) == 1  # only May 11 remains (May 11..17)
    assert value(state, recent, NOON + dt.timedelta(days=8)) == 0


def test_hour_window_counts_whole_hours() -> None:
    recent = trait(aggregate="count", window="2h")
    state = build(
        recent,
        track("now", NOON + dt.timedelta(minutes=30)),
        track("last-hour", NOON - dt.timedelta(minutes=1)),
        track("too-old", NOON - dt.timedelta(hours=1, minutes=1)),
    )
    assert value(state, recent, NOON + dt.timedelta(minutes=5)) == 2


def test_late_event_inside_the_window_counts_and_outside_it_is_reported() -> None:
    recent = trait(aggregate="count", window="7d")
    state = prune(build(recent, track("a", NOON)), recent, NOON)
    state, late = update_with_outcome(state, track("late", NOON - dt.timedelta(days=5)), recent)
    state, expired = update_with_outcome(state, track("old", NOON - dt.timedelta(days=8)), recent)
    assert (late.kind, expired.kind) == ("applied", "outside_window")
    assert value(state, recent, NOON) == 2


def test_prune_drops_what_left_the_window() -> None:
    recent = trait(aggregate="distinct_count", property="kind", window="3d")
    state = build(
        recent,
        *[track(f"m{d}", NOON - dt.timedelta(days=d), {"kind": f"k{d}"}) for d in range(10)],
    )
    assert state is not None and len(state.buckets) == 10
    pruned = prune(state, recent, NOON)
    assert sorted(pruned.buckets) == sorted(state.buckets)[-3:]
    assert value(pruned, recent, NOON) == value(state, recent, NOON) == 3


def test_all_time_count_folds_old_buckets_and_refuses_events_too_late_to_deduplicate() -> None:
    workouts = trait(aggregate="count")
    old = NOON - dt.timedelta(days=ALL_TIME_OPEN_DAYS + 5)
    state = prune(build(workouts, track("old", old), track("new", NOON)), workouts, NOON)
    assert len(state.buckets) == 1 and state.settled == 1
    again, outcome = update_with_outcome(state, track("old", old), workouts)
    assert outcome.kind == "too_late"  # its dedup key is gone: counting it could count it twice
    assert value(again, workouts, NOON) == 2
    inside, recent_late = update_with_outcome(state, track("late", NOON - dt.timedelta(days=20)), workouts)
    assert recent_late.kind == "applied" and value(inside, workouts, NOON) == 3


def test_all_time_min_folds_late_events_into_the_summary() -> None:
    shortest = trait(aggregate="min", property="minutes")
    old = NOON - dt.timedelta(days=ALL_TIME_OPEN_DAYS + 5)
    state = prune(build(shortest, track("a", NOON, {"minutes": 30})), shortest, NOON)
    state, outcome = update_with_outcome(state, track("b", old, {"minutes": 12}), shortest)
    assert outcome.kind == "applied"
    assert value(state, shortest, NOON) == 12


def test_sum_min_max_take_numbers_only() -> None:
    events = [
        track("a", NOON, {"minutes": 30}),
        track("b", NOON, {"minutes": 12.5}),
        track("c", NOON, {"minutes": "45"}),  # a string is not a number
        track("d", NOON, {"minutes": True}),  # nor is a bool
        track("e", NOON, {}),
    ]
    total = trait(aggregate="sum", property="minutes")
    low = trait(aggregate="min", property="minutes")
    high = trait(aggregate="max", property="minutes")
    assert value(build(total, *events), total, NOON) == 42.5
    assert value(build(low, *events), low, NOON) == 12.5
    assert value(build(high, *events), high, NOON) == 30
    assert value(None, low, NOON) is None


def test_sum_of_integers_stays_exact() -> None:
    total = trait(aggregate="sum", property="cents")
    big = 2**60
    state = build(total, track("a", NOON, {"cents": big}), track("b", NOON, {"cents": 1}))
    assert value(state, total, NOON) == big + 1


def test_first_and_last_go_by_event_time_then_message_id_not_arrival() -> None:
    first, last = trait(aggregate="first", property="plan"), trait(aggregate="last", property="plan")
    events = [
        track("m2", NOON, {"plan": "pro"}),
        track("m1", NOON - dt.timedelta(days=2), {"plan": "basic"}),  # arrives late but happened first
        track("m3", NOON, {"plan": "team"}),  # same instant as m2: m3 sorts after m2
        track("m0", NOON, {"plan": None}),  # null: no value
    ]
    assert value(build(first, *events), first, NOON) == "basic"
    assert value(build(last, *events), last, NOON) == "team"
    assert value(build(last, *reversed(events)), last, NOON) == "team"


def test_first_keeps_structured_values() -> None:
    first = trait(aggregate="first", property="cart")
    state = build(first, track("a", NOON, {"cart": {"items": [1, 2], "total": 9.5}}))
    assert value(state, first, NOON) == {"items": [1, 2], "total": 9.5}


def test_distinct_count_tells_types_apart() -> None:
    kinds = trait(aggregate="distinct_count", property="kind")
    values = ["run", "run", "yoga", 1, 1.0, True, None, ["run"], {"a": 1}]
    state = build(kinds, *[track(f"m{i}", NOON, {"kind": v}) for i, v in enumerate(values)])
    assert value(state, kinds, NOON) == 5  # run, yoga, 1, 1.0, true; null/list/object are not values


def test_nested_property_path() -> None:
    spend = trait(aggregate="sum", property="order.total")
    state = build(spend, track("a", NOON, {"order": {"total": 10}}), track("b", NOON, {"order": "n/a"}))
    assert value(state, spend, NOON) == 10


def test_count_with_property_counts_events_that_carry_it() -> None:
    rated = trait(aggregate="count", property="rating")
    state = build(rated, track("a", NOON, {"rating": 4}), track("b", NOON, {"rating": None}), track("c", NOON))
    assert value(state, rated, NOON) == 1


def test_event_type_and_any_event_name() -> None:
    any_track = ComputedTrait(name="events_7d", aggregate="count", window="7d")
    pages = ComputedTrait(name="page_views", aggregate="count", type="page")
    events = [track("a", NOON, name="Signed Up"), track("b", NOON, name="Workout Completed")]
    assert value(build(any_track, *events), any_track, NOON) == 2
    state, outcome = update_with_outcome(None, events[0], pages)
    assert outcome.kind == "not_matching" and value(state, pages, NOON) == 0


@pytest.mark.parametrize("aggregate", ["count", "sum", "min", "max", "first", "last", "distinct_count"])
def test_merge_equals_one_state_built_from_both_profiles_events(aggregate: str) -> None:
    declared = trait(aggregate=aggregate, property=None if aggregate == "count" else "n", window="30d")
    mine = [track(f"a{i}", NOON - dt.timedelta(days=i * 3), {"n": i}) for i in range(6)]
    theirs = [track(f"b{i}", NOON - dt.timedelta(days=i * 5, hours=1), {"n": 10 - i}) for i in range(6)]
    a = prune(build(declared, *mine), declared, NOON - dt.timedelta(days=2))  # pruned at different times
    b = build(declared, *theirs)
    assert a is not None and b is not None
    together = build(declared, *mine, *theirs)
    assert value(merge(a, b, declared), declared, NOON) == value(together, declared, NOON)
    assert to_json(merge(a, b, declared)) == to_json(merge(b, a, declared))


@pytest.mark.parametrize("aggregate", ["count", "sum", "min", "max", "first", "last", "distinct_count"])
def test_json_round_trip_is_lossless_and_deterministic(aggregate: str) -> None:
    declared = trait(aggregate=aggregate, property=None if aggregate == "count" else "n")
    events = [track(f"m{i}", NOON - dt.timedelta(days=i * 7), {"n": [3, 1.5, 7, "x"][i % 4]}) for i in range(8)]
    state = prune(build(declared, *events), declared, NOON)  # 8 weeks: some buckets are folded
    assert state is not None
    restored = from_json(to_json(state))
    assert restored == state
    assert to_json(restored) == to_json(state)
    assert value(update(restored, track("new", NOON, {"n": 2}), declared), declared, NOON) == value(
        update(state, track("new", NOON, {"n": 2}), declared), declared, NOON
    )


def test_state_of_another_declaration_is_refused() -> None:
    old = trait(aggregate="count", window="7d")
    new = trait(aggregate="count", window="30d")
    state = build(old, track("a", NOON))
    with pytest.raises(StateMismatch, match=r"'t'.*rebuild"):
        update(state, track("b", NOON), new)
    renamed = ComputedTrait.model_validate({**old.model_dump(), "name": "renamed"})
    assert value(state, renamed, NOON) == 1  # a rename alone keeps the state


def test_update_does_not_change_the_state_it_was_given() -> None:
    workouts = trait(aggregate="count")
    before = build(workouts, track("a", NOON))
    assert before is not None
    snapshot = to_json(before)
    update(before, track("b", NOON), workouts)
    assert to_json(before) == snapshot
