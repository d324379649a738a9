"""Profile traits: last write wins by event time, with provenance, whatever the arrival order."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrion.identity.traits import ProfileTraits, merge_traits, observation_of, record, traits_of
from tests.unit.test_identity_graph import T0, make_event


def test_a_late_older_event_never_overwrites_a_newer_value() -> None:
    newer = make_event("n2", 30, "identify", user_id="ann", traits={"plan": "pro", "name": "Ann"})
    older = make_event("n1", 10, "identify", source="app", user_id="ann", traits={"plan": "trial", "age": 31})
    profile = traits_of([newer, older])  # the older one arrives last
    assert profile.values()["plan"] == "pro"
    assert profile.values()["age"] == 31  # a trait only the older event had is still taken
    plan = profile.traits["plan"]
    assert (plan.provenance.message_id, plan.provenance.source, plan.provenance.timestamp) == (
        "n2",
        "web",
        T0 + dt.timedelta(minutes=30),
    )


def test_maintained_fields_come_from_the_context() -> None:
    events = [
        make_event(
            "f1",
            5,
            context={
                "timezone": "Europe/Berlin",
                "locale": "de-DE",
                "os": {"name": "iOS", "version": "17.4"},
                "location": {"country": "Germany"},
            },
            anonymous_id="a",
        ),
        make_event("f2", 1, "identify", user_id="u", traits={"address": {"country": "France"}}),
        make_event(
            "f3", 9, anonymous_id="a", context={"os": {"name": "Android"}, "traits": {"address": {"city": "Lyon"}}}
        ),
    ]
    values = traits_of(events).values()
    assert values["timezone"] == "Europe/Berlin"
    assert values["locale"] == "de-DE"
    assert values["device_os"] == "Android"  # the latest event wins
    assert values["country"] == "Germany"  # f1 (context.location) is newer than f2 (traits.address)
    assert values["first_seen"] == T0 + dt.timedelta(minutes=1)
    assert values["last_seen"] == T0 + dt.timedelta(minutes=9)
    assert values["address"] == {"city": "Lyon"}  # a top-level trait is replaced as a whole


def test_identify_traits_win_over_context_traits_of_the_same_event_and_group_traits_are_ignored() -> None:
    both = make_event("b1", 0, "identify", user_id="u", traits={"plan": "pro"}, context={"traits": {"plan": "free"}})
    group = make_event("g1", 5, "group", user_id="u", traits={"plan": "enterprise", "employees": 500})
    values = traits_of([both, group]).values()
    assert values["plan"] == "pro"
    assert "employees" not in values


def test_merging_two_profiles_keeps_the_latest_value_of_each_trait() -> None:
    ann_web = traits_of([make_event("w1", 0, "identify", user_id="x", traits={"plan": "trial", "name": "A."})])
    ann_app = traits_of([make_event("a1", 20, "identify", user_id="x", traits={"plan": "pro"})])
    merged = merge_traits(ann_web, ann_app)
    assert merged == merge_traits(ann_app, ann_web)
    assert merged.values()["plan"] == "pro" and merged.values()["name"] == "A."
    assert merged.first_seen is not None and merged.first_seen.message_id == "w1"
    assert merged.last_seen is not None and merged.last_seen.message_id == "a1"


def test_an_explicit_null_clears_a_trait() -> None:
    profile = traits_of(
        [
            make_event("c1", 0, "identify", user_id="u", traits={"coupon": "SPRING"}),
            make_event("c2", 1, "identify", user_id="u", traits={"coupon": None}),
        ]
    )
    assert profile.values()["coupon"] is None


_VALUES = st.one_of(st.none(), st.integers(0, 3), st.sampled_from(["a", "b"]), st.just({"nested": [1, 2]}))


@st.composite
def trait_events(draw: st.DrawFn) -> list[Any]:
    events = []
    for n in range(draw(st.integers(1, 12))):
        traits = draw(st.dictionaries(st.sampled_from(["plan", "name", "age"]), _VALUES, max_size=3))
        context: dict[str, Any] = {}
        if draw(st.booleans()):
            context["os"] = {"name": draw(st.sampled_from(["iOS", "Android"]))}
        if draw(st.booleans()):
            context["traits"] = draw(st.dictionaries(st.sampled_from(["plan", "name"]), _VALUES, max_size=2))
        message_id = draw(st.sampled_from([f"m{n}", "same-id"]))  # duplicate ids with different content, too
        events.append(
            make_event(
                message_id,
                draw(st.integers(0, 4)),
                "identify",
                source=draw(st.sampled_from(["web", "app"])),
                user_id="u",
                traits=traits,
                context=context,
            )
        )
    return events


@settings(max_examples=200, deadline=None)
@given(events=trait_events(), data=st.data())
def test_the_final_traits_do_not_depend_on_arrival_order(events: list[Any], data: st.DataObject) -> None:
    order = data.draw(st.permutations(events))
    assert traits_of(order) == traits_of(events)
    # split between two profiles that are later merged: still the same
    cut = data.draw(st.integers(0, len(events)))
    left, right = traits_of(order[:cut]), traits_of(order[cut:])
    assert merge_traits(left, right) == traits_of(events)
    assert merge_traits(ProfileTraits(), traits_of(events)) == traits_of(events)
    one = observation_of(events[0])
    assert record(traits_of(events), one) == traits_of(events)  # applying an event twice changes nothing
