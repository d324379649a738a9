"""The store skips landing discovery for events whose shape it has seen recorded: the shape must decide discovery.

If two events share a `landing_shape`, `landing.discover` must find the same view and columns in both; otherwise a
new column could be skipped and never appear in its landing view.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrion.collect.event import NormalizedEvent
from orchestrion.store.landing import discover
from orchestrion.store.sql_store import landing_shape

# A tiny alphabet, so that random pairs often share their keys and types and differ only deeper down.
KEYS = st.sampled_from(["plan", "Plan"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(0, 1), st.just(0.5), st.just("a"))
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=1), st.dictionaries(KEYS, children, max_size=2)),
    max_leaves=4,
)
OBJECTS = st.one_of(st.none(), st.dictionaries(KEYS, VALUES, max_size=2))
EVENTS = st.builds(
    lambda kind, name, properties, traits, context_traits: (kind, name, properties, traits, context_traits),
    st.sampled_from(["track", "identify", "page", "group", "alias"]),
    st.sampled_from(["Workout Completed", "workout completed"]),
    OBJECTS,
    OBJECTS,
    OBJECTS,
)


def make_event(spec: tuple[str, str, Any, Any, Any]) -> NormalizedEvent:
    kind, name, properties, traits, context_traits = spec
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    payload: dict[str, Any] = {"type": kind, "context": {"traits": context_traits} if context_traits else {}}
    if properties is not None:
        payload["properties"] = properties
    if traits is not None:
        payload["traits"] = traits
    return NormalizedEvent(
        source="app",
        message_id="m1",
        type=kind,
        event=name if kind == "track" else None,
        user_id="u1",
        anonymous_id=None,
        timestamp=now,
        original_timestamp=now,
        sent_at=now,
        received_at=now,
        payload=payload,
    )


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_events_with_the_same_landing_shape_yield_the_same_columns(data: st.DataObject) -> None:
    first = data.draw(EVENTS)
    kind, name, *objects = first

    def sibling(obj: dict[str, Any] | None) -> dict[str, Any] | None:
        # Same event and top-level keys, values drawn afresh: shapes often match at the top and differ below.
        return None if obj is None else {key: data.draw(VALUES) for key in obj}

    second = (kind, name, *(sibling(obj) for obj in objects))
    for a, b in ((first, second), (first, data.draw(EVENTS))):
        one, other = make_event(a), make_event(b)
        if landing_shape(one) == landing_shape(other):
            assert discover(one) == discover(other)


def test_a_new_key_or_a_new_value_type_changes_the_shape() -> None:
    base = make_event(("track", "Workout Completed", {"plan": {"id": 1}}, None, None))
    same = make_event(("track", "Workout Completed", {"plan": {"id": 7}}, None, None))
    new_key = make_event(("track", "Workout Completed", {"plan": {"id": 1, "name": "x"}}, None, None))
    new_type = make_event(("track", "Workout Completed", {"plan": {"id": "1"}}, None, None))
    other_event = make_event(("track", "Plan Selected", {"plan": {"id": 1}}, None, None))
    assert landing_shape(base) == landing_shape(same)
    assert len({landing_shape(e) for e in (base, new_key, new_type, other_event)}) == 4
