"""Identity stitching on the workout-app cases of seed 000, through real events: extraction, graph, resolver."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import pytest

from orchestrion.collect.event import NormalizedEvent
from orchestrion.identity.config import IdentityConfig, IdentityPolicy
from orchestrion.identity.effects import (
    LIMIT,
    UNMERGED,
    IdentifierAttached,
    LinkOutcome,
    LinkRefused,
    LinkRetargeted,
    ProfileCreated,
    ProfileRemapped,
    ProfilesMerged,
)
from orchestrion.identity.errors import UnlinkRefused
from orchestrion.identity.graph import IdentityGraph, apply
from orchestrion.identity.identifiers import BLOCKED, link_of
from orchestrion.identity.links import Identifier, Link
from orchestrion.identity.resolver import IdentityResolver, rebuild_all

T0 = dt.datetime(2026, 4, 10, 9, 0, tzinfo=dt.UTC)
POLICY = IdentityPolicy.default()


def make_event(
    message_id: str,
    minute: float,
    type: str = "track",
    *,
    source: str = "web",
    user_id: str | None = None,
    anonymous_id: str | None = None,
    event: str | None = None,
    traits: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    previous_id: str | None = None,
) -> NormalizedEvent:
    """A normalized event as the collection stage hands it over (corrected time = T0 + minute)."""
    when = T0 + dt.timedelta(minutes=minute)
    payload: dict[str, Any] = {"type": type, "messageId": message_id, "context": context or {}}
    for name, value in (
        ("userId", user_id),
        ("anonymousId", anonymous_id),
        ("event", event),
        ("traits", traits),
        ("previousId", previous_id),
    ):
        if value is not None:
            payload[name] = value
    return NormalizedEvent(
        source=source,
        message_id=message_id,
        type=type,
        event=event,
        user_id=user_id,
        anonymous_id=anonymous_id,
        timestamp=when,
        original_timestamp=when,
        sent_at=when,
        received_at=when,
        payload=payload,
    )


def links(events: Iterable[NormalizedEvent], policy: IdentityPolicy = POLICY) -> list[Link]:
    result = []
    for event in events:
        link = link_of(event, policy).link
        assert link is not None, event
        result.append(link)
    return result


def feed(
    events: Iterable[NormalizedEvent], policy: IdentityPolicy = POLICY
) -> tuple[IdentityResolver, list[LinkOutcome]]:
    resolver = IdentityResolver(policy)
    outcomes = [resolver.add(link) for link in links(events, policy)]
    return resolver, outcomes


def uid(value: str) -> Identifier:
    return Identifier("user_id", value)


def anon(value: str) -> Identifier:
    return Identifier("anonymous_id", value)


def device(value: str) -> Identifier:
    return Identifier("device_id", value)


def email(value: str) -> Identifier:
    return Identifier("email", value)


def workout_journey() -> list[NormalizedEvent]:
    """Ann views pricing on the web, installs the app, signs up there, then logs in on the web."""
    return [
        make_event("w1", 0, anonymous_id="web-anon-1", event="pricing_viewed"),
        make_event("w2", 1, anonymous_id="web-anon-1", event="plan_comparison_viewed"),
        make_event(
            "a1",
            30,
            source="app",
            anonymous_id="app-anon-1",
            event="app_opened",
            context={"device": {"id": "iphone-1"}},
        ),
        make_event(
            "a2",
            31,
            "identify",
            source="app",
            anonymous_id="app-anon-1",
            user_id="ann",
            traits={"email": " Ann@Example.com "},
            context={"device": {"id": "iphone-1"}},
        ),
        make_event("w3", 60, "identify", anonymous_id="web-anon-1", user_id="ann"),
        make_event("w4", 61, anonymous_id="web-anon-1", user_id="ann", event="checkout_abandoned"),
    ]


def test_web_visitor_app_signup_and_identify_become_one_profile() -> None:
    resolver, outcomes = feed(workout_journey())
    profile = resolver.resolve(uid("ann"))
    assert profile is not None
    view = resolver.graph.profile(profile)
    assert view is not None
    assert set(view.identifiers) == {
        uid("ann"),
        anon("web-anon-1"),
        anon("app-anon-1"),
        device("iphone-1"),
        email("ann@example.com"),
    }
    # the web profile was created first (pricing_viewed), so it survives and the app profile's id resolves to it
    web_profile, app_profile = outcomes[0].profile_id, outcomes[2].profile_id
    assert web_profile != app_profile
    assert profile == web_profile
    assert resolver.canonical(app_profile) == web_profile
    merges = [e for o in outcomes for e in o.effects if isinstance(e, ProfilesMerged)]
    assert [(m.survivor, m.merged, m.provenance.message_id) for m in merges] == [(web_profile, app_profile, "w3")]
    # the event right after the web identify resolves to the merged profile, and so do the old web events
    assert outcomes[5].profile_id == web_profile
    assert {resolver.profile_of(s, m) for s, m in [("web", "w1"), ("app", "a1"), ("app", "a2")]} == {web_profile}
    assert len(resolver.graph) == 1


def test_profiles_do_not_depend_on_arrival_order() -> None:
    events = workout_journey()
    in_order, _ = feed(events)
    for arrival in (list(reversed(events)), events[3:] + events[:3], [events[4], events[0], *events[1:4], events[5]]):
        shuffled, outcomes = feed(arrival)
        assert shuffled.graph.partition() == in_order.graph.partition()
        # ids handed out along the way differ with arrival order, but every one of them resolves to the same profile
        handed_out = {o.profile_id for o in outcomes} | set(in_order.graph.retired())
        assert {shuffled.canonical(pid) for pid in handed_out} == set(in_order.graph.profile_ids())
    assert rebuild_all(links(reversed(events))).graph.partition() == in_order.graph.partition()


def family_ipad() -> list[NormalizedEvent]:
    ipad = {"device": {"id": "family-ipad"}}
    return [
        make_event("i1", 0, "identify", source="app", user_id="mum", anonymous_id="ipad-anon-1", context=ipad),
        make_event(
            "i2", 5, source="app", user_id="mum", anonymous_id="ipad-anon-1", event="workout_completed", context=ipad
        ),
        make_event("i3", 60, "identify", source="app", user_id="teen", anonymous_id="ipad-anon-2", context=ipad),
        make_event(
            "i4", 65, source="app", user_id="teen", anonymous_id="ipad-anon-2", event="workout_completed", context=ipad
        ),
    ]


def test_shared_family_ipad_keeps_two_members_apart() -> None:
    resolver, outcomes = feed(family_ipad())
    mum, teen = resolver.resolve(uid("mum")), resolver.resolve(uid("teen"))
    assert mum is not None and teen is not None and mum != teen
    assert resolver.resolve(device("family-ipad")) == mum  # the first user of the device keeps it
    assert resolver.resolve(anon("ipad-anon-2")) == teen
    refused = [e for e in outcomes[2].effects if isinstance(e, LinkRefused)]
    assert [(r.identifier, r.code) for r in refused] == [(device("family-ipad"), LIMIT)]
    assert refused[0].reason == f"limit:user_id=1 on profile {mum}"
    assert refused[0].profile_id == teen
    assert outcomes[3].profile_id == teen and outcomes[1].profile_id == mum
    assert not any(isinstance(e, ProfilesMerged) for o in outcomes for e in o.effects)


def test_family_ipad_device_goes_to_whoever_used_it_first_in_event_time() -> None:
    ipad = {"device": {"id": "family-ipad"}}
    events = [
        *family_ipad(),
        # a third anonymous session on the iPad, no login: it belongs to whoever owns the device
        make_event("i5", 90, source="app", anonymous_id="ipad-anon-3", event="app_opened", context=ipad),
    ]
    # the teen's identify was made before mum's but arrives last (an offline batch): the device moves to the teen
    teen_first = make_event(
        "t1", -30, "identify", source="app", user_id="teen", anonymous_id="ipad-anon-2", context=ipad
    )
    resolver = IdentityResolver(POLICY)
    outcomes = [resolver.add(link) for link in links([*events, teen_first])]
    mum, teen = resolver.resolve(uid("mum")), resolver.resolve(uid("teen"))
    assert outcomes[4].profile_id == mum  # before the late batch
    assert resolver.resolve(device("family-ipad")) == teen
    assert resolver.profile_of("app", "i5") == teen
    late = outcomes[-1].effects
    moved = {(e.identifier, e.profile_id, e.provenance.message_id) for e in late if isinstance(e, IdentifierAttached)}
    assert moved == {
        (device("family-ipad"), teen, "t1"),
        (anon("ipad-anon-3"), teen, "i5"),
        # the teen's own identifiers stay on the teen's profile but were now first attached by the earlier event
        (uid("teen"), teen, "t1"),
        (anon("ipad-anon-2"), teen, "t1"),
    }
    retargeted = [(e.message_id, e.old_profile, e.new_profile) for e in late if isinstance(e, LinkRetargeted)]
    assert retargeted == [("i5", mum, teen)]
    assert resolver.graph.partition() == rebuild_all(links([teen_first, *events])).graph.partition()


def test_email_change_keeps_old_and_new_up_to_the_limit() -> None:
    events = [make_event("e0", 0, "identify", user_id="ann", traits={"email": "ann@old.example"})]
    events += [
        make_event(f"e{n}", n, "identify", user_id="ann", traits={"email": f"ann{n}@new.example"}) for n in range(1, 6)
    ]
    resolver, outcomes = feed(events)
    profile = resolver.resolve(uid("ann"))
    assert profile is not None
    view = resolver.graph.profile(profile)
    assert view is not None
    emails = [i.value for i in view.identifiers if i.type == "email"]
    assert emails == ["ann1@new.example", "ann2@new.example", "ann3@new.example", "ann4@new.example", "ann@old.example"]
    # the sixth address breaks the limit of 5: refused, and the event still belongs to Ann
    refused = [e for e in outcomes[5].effects if isinstance(e, LinkRefused)]
    assert [(r.identifier, r.code, r.reason) for r in refused] == [
        (email("ann5@new.example"), LIMIT, f"limit:email=5 on profile {profile}")
    ]
    assert outcomes[5].profile_id == profile
    assert resolver.resolve(email("ann5@new.example")) is None


def test_email_limit_is_configurable() -> None:
    policy = IdentityConfig.model_validate({"identifiers": {"email": {"limit": 2}}}).policy()
    events = [
        make_event(f"e{n}", n, "identify", user_id="ann", traits={"email": f"ann{n}@example.com"}) for n in range(3)
    ]
    resolver, _ = feed(events, policy)
    profile = resolver.resolve(uid("ann"))
    assert [resolver.resolve(email(f"ann{n}@example.com")) for n in range(3)] == [profile, profile, None]


def test_alias_chain_merges_anonymous_and_both_user_ids() -> None:
    events = [
        make_event("c1", 0, anonymous_id="a", event="pricing_viewed"),
        make_event("c2", 1, "alias", previous_id="a", user_id="b", anonymous_id="a"),
        make_event("c3", 2, user_id="b", event="plan_selected"),
        make_event("c4", 3, "alias", previous_id="b", user_id="c"),
        make_event("c5", 4, user_id="c", event="subscription_started"),
    ]
    resolver, outcomes = feed(events)
    profile = outcomes[0].profile_id
    assert resolver.graph.partition() == {profile: frozenset({anon("a"), uid("b"), uid("c")})}
    assert {resolver.profile_of("web", f"c{n}") for n in range(1, 6)} == {profile}
    # alias is an explicit statement, so the user_id limit of 1 does not refuse it ...
    assert not any(isinstance(e, LinkRefused) for o in outcomes for e in o.effects)
    # ... but afterwards the limit still guards the profile against a third, unrelated user id
    stranger = IdentityResolver(POLICY)
    for link in links([*events, make_event("c6", 5, user_id="d", anonymous_id="a")]):
        last = stranger.add(link)
    assert [e.code for e in last.effects if isinstance(e, LinkRefused)] == [LIMIT]
    assert stranger.resolve(uid("d")) != profile
    # in any arrival order the same profile results
    assert feed(reversed(events))[0].graph.partition() == resolver.graph.partition()


def test_alias_merges_two_known_user_profiles_into_the_older() -> None:
    events = [
        make_event("k1", 0, "identify", user_id="old-id", traits={"email": "kim@example.com"}),
        make_event("k2", 10, "identify", user_id="new-id"),
        make_event("k3", 20, "alias", previous_id="old-id", user_id="new-id"),
    ]
    resolver, outcomes = feed(events)
    old_profile, new_profile = outcomes[0].profile_id, outcomes[1].profile_id
    assert resolver.resolve(uid("new-id")) == old_profile
    assert resolver.canonical(new_profile) == old_profile
    merged = [e for e in outcomes[2].effects if isinstance(e, ProfilesMerged)]
    assert [(m.survivor, m.merged, m.reason) for m in merged] == [
        (old_profile, new_profile, "alias linked user_id:old-id and user_id:new-id")
    ]


def test_alias_obeys_limits_when_configured_so() -> None:
    policy = IdentityConfig(alias_overrides_limits=False).policy()
    events = [
        make_event("k1", 0, "identify", user_id="old-id"),
        make_event("k2", 10, "alias", previous_id="old-id", user_id="new-id"),
    ]
    resolver, outcomes = feed(events, policy)
    assert resolver.resolve(uid("old-id")) != resolver.resolve(uid("new-id"))
    assert [e.code for e in outcomes[1].effects if isinstance(e, LinkRefused)] == [LIMIT]


def test_blocked_anonymous_id_sent_by_thousands_does_not_merge_them() -> None:
    events = [make_event(f"n{n}", n, "identify", user_id=f"user-{n}", anonymous_id="null") for n in range(2000)]
    events += [make_event("z1", 3000, anonymous_id=" NULL ", event="pricing_viewed")]
    resolver = IdentityResolver(POLICY)
    blocked = 0
    for event in events:
        extraction = link_of(event, POLICY)
        blocked += sum(1 for r in extraction.rejected if r.reason == BLOCKED)
        if extraction.link is not None:
            resolver.add(extraction.link)
    assert blocked == 2001
    assert len(resolver.graph) == 2000
    assert resolver.resolve(anon("null")) is None
    assert link_of(events[-1], POLICY).link is None  # an event with only a placeholder id belongs to no profile


def test_zeroed_device_id_and_configured_values_are_blocked() -> None:
    policy = IdentityConfig(blocked_values=["guest"]).policy()
    events = [
        make_event("d1", 0, user_id="ann", context={"device": {"id": "00000000-0000-0000-0000-000000000000"}}),
        make_event(
            "d2",
            1,
            user_id="bob",
            anonymous_id="Guest",
            context={"device": {"id": "00000000-0000-0000-0000-000000000000"}},
        ),
    ]
    resolver, _ = feed(events, policy)
    assert resolver.resolve(uid("ann")) != resolver.resolve(uid("bob"))
    assert len(resolver.graph) == 2


def test_late_anonymous_events_join_the_profile_and_the_oldest_id_survives() -> None:
    identify = make_event("l2", 10, "identify", source="app", user_id="ann", anonymous_id="anon-1")
    page = make_event("l1", 1, "page", anonymous_id="anon-1")  # made earlier, arrives later
    resolver = IdentityResolver(POLICY)
    first = resolver.add(links([identify])[0])
    late = resolver.add(links([page])[0])
    # in event time the page came first, so its profile is the older one: the identify's id is remapped to it
    assert late.profile_id != first.profile_id
    assert resolver.canonical(first.profile_id) == late.profile_id
    assert resolver.resolve(uid("ann")) == late.profile_id
    # the store is told: a new profile, the old id now resolves to it, and anon-1 was attached by the page view
    # (user_id:ann keeps its row: it follows the remap)
    assert [type(e) for e in late.effects] == [ProfileCreated, ProfileRemapped, IdentifierAttached]
    remap, attached = late.effects[1], late.effects[2]
    assert isinstance(remap, ProfileRemapped) and (remap.old, remap.new) == (first.profile_id, late.profile_id)
    assert isinstance(attached, IdentifierAttached)
    assert (attached.identifier, attached.provenance.message_id) == (anon("anon-1"), "l1")
    assert resolver.graph.partition() == rebuild_all(links([page, identify])).graph.partition()
    assert resolver.stats.replays == 1


def test_a_late_batch_from_a_known_person_needs_no_replay() -> None:
    newer = make_event("w5", 90, anonymous_id="web-anon-1", user_id="ann", event="faq_viewed")
    resolver, _ = feed([*workout_journey(), newer])
    ann = resolver.resolve(uid("ann"))
    # the phone was offline: workouts made at minutes 62-66 arrive after the web event of minute 90
    offline = [
        make_event(f"o{n}", 62 + n, source="app", user_id="ann", anonymous_id="app-anon-1", event="workout_completed")
        for n in range(5)
    ]
    outcomes = [resolver.add(link) for link in links(offline)]
    assert all(o.profile_id == ann and o.effects == () for o in outcomes)
    assert (resolver.stats.late_no_ops, resolver.stats.replays) == (5, 0)
    assert [m for _, m in resolver.messages_of(ann)] == [
        "w1",
        "w2",
        "a1",
        "a2",
        "w3",
        "w4",
        "o0",
        "o1",
        "o2",
        "o3",
        "o4",
        "w5",
    ]
    assert resolver.graph.partition() == rebuild_all(links([*workout_journey(), newer, *offline])).graph.partition()
    # a late event from before the web login (minute 40) must be replayed: the app profile was merged after it
    resolver.add(links([make_event("o9", 40, source="app", user_id="ann", anonymous_id="app-anon-1")])[0])
    assert resolver.stats.replays == 1 and resolver.resolve(uid("ann")) == ann


def test_a_late_event_is_judged_by_the_profile_as_it_was_at_its_time() -> None:
    policy = IdentityConfig.model_validate({"identifiers": {"email": {"limit": 2}}}).policy()
    first = make_event("e1", 0, "identify", user_id="ann", traits={"email": "one@example.com"})
    third = make_event("e3", 10, "identify", user_id="ann", traits={"email": "three@example.com"})
    second = make_event("e2", 5, "identify", user_id="ann", traits={"email": "two@example.com"})  # arrives last
    resolver = IdentityResolver(policy)
    outcomes = [resolver.add(link) for link in links([first, third, second], policy)]
    # at minute 5 Ann had one address, so the second one fits; the third, made later, is the one over the limit
    ann = outcomes[0].profile_id
    assert resolver.resolve(email("two@example.com")) == ann
    assert resolver.resolve(email("three@example.com")) is None
    assert resolver.graph.partition() == rebuild_all(links([first, second, third], policy), policy).graph.partition()
    # once that is settled, a late repeat of the refused address is refused again without a replay
    replays = resolver.stats.replays
    (again,) = links([make_event("e4", 7, "identify", user_id="ann", traits={"email": "three@example.com"})], policy)
    outcome = resolver.add(again)
    assert [(e.identifier, e.code) for e in outcome.effects if isinstance(e, LinkRefused)] == [
        (email("three@example.com"), LIMIT)
    ]
    assert (resolver.stats.replays, resolver.stats.late_no_ops) == (replays, 1)


def test_ties_in_time_are_broken_by_message_id() -> None:
    a = make_event("m-b", 5, user_id="ann", anonymous_id="x")
    b = make_event("m-a", 5, anonymous_id="x", context={"device": {"id": "d"}})
    one, two = feed([a, b])[0], feed([b, a])[0]
    assert one.graph.partition() == two.graph.partition()
    (profile,) = one.graph.profile_ids()
    view = one.graph.profile(profile)
    assert view is not None and view.created.message_id == "m-a"


def test_duplicate_message_is_applied_once() -> None:
    event = make_event("dup", 0, user_id="ann", anonymous_id="x")
    resolver = IdentityResolver(POLICY)
    (link,) = links([event])
    first, again = resolver.add(link), resolver.add(link)
    assert not first.duplicate and again.duplicate
    assert again.effects == () and again.profile_id == first.profile_id
    assert resolver.stats.duplicates == 1


def test_replays_give_byte_identical_profile_ids() -> None:
    events = workout_journey() + family_ipad()
    first = rebuild_all(links(events))
    second = rebuild_all(links(list(reversed(events))))
    assert first.graph.partition() == second.graph.partition()
    assert all(pid.startswith("p_") and len(pid) == 18 for pid in first.graph.profile_ids())


def test_admin_unmerge_separates_and_later_events_respect_it() -> None:
    events = [
        make_event("u1", 0, "identify", user_id="ann", anonymous_id="x", traits={"email": "shared@family.example"}),
        make_event("u2", 5, "identify", user_id="ann", anonymous_id="x"),
    ]
    resolver, outcomes = feed(events)
    ann = outcomes[0].profile_id
    rule, effects = resolver.unlink(
        email("shared@family.example"), timestamp=T0 + dt.timedelta(hours=1), unlink_id="unmerge-1"
    )
    separate = resolver.resolve(email("shared@family.example"))
    assert separate is not None and separate != ann
    assert rule.separated_from == {uid("ann"), anon("x")}
    assert [type(e) for e in effects] == [ProfileCreated, IdentifierAttached]
    # a later event linking them again is refused with reason `unmerged`; it still belongs to Ann
    (relink,) = links([make_event("u3", 120, "identify", user_id="ann", traits={"email": "shared@family.example"})])
    outcome = resolver.add(relink)
    assert outcome.profile_id == ann
    assert [(e.identifier, e.code) for e in outcome.effects if isinstance(e, LinkRefused)] == [
        (email("shared@family.example"), UNMERGED)
    ]
    assert resolver.resolve(email("shared@family.example")) == separate
    # a late event from before the unmerge changes nothing either: the separation is replayed at its time
    (older,) = links(
        [
            make_event(
                "u0",
                -10,
                anonymous_id="x",
                traits={"email": "shared@family.example"},
                context={"traits": {"email": "shared@family.example"}},
            )
        ]
    )
    resolver.add(older)
    assert resolver.resolve(email("shared@family.example")) not in (None, resolver.resolve(uid("ann")))
    # and the whole history rebuilt from the stored records gives the same graph
    rebuilt = rebuild_all([r for r in resolver.records() if isinstance(r, Link)], unlinks=[rule])
    assert rebuilt.graph.partition() == resolver.graph.partition()


def test_unmerge_of_an_identifier_alone_is_refused() -> None:
    resolver, _ = feed([make_event("s1", 0, user_id="solo")])
    with pytest.raises(UnlinkRefused, match="alone"):
        resolver.unlink(uid("solo"), timestamp=T0, unlink_id="u")
    with pytest.raises(UnlinkRefused, match="on no profile"):
        resolver.unlink(uid("nobody"), timestamp=T0, unlink_id="u")


def test_apply_on_a_bare_graph_returns_the_effects_of_one_link() -> None:
    graph = IdentityGraph(POLICY)
    (link,) = links([make_event("g1", 0, user_id="ann", anonymous_id="x")])
    same, outcome = apply(graph, link)
    assert same is graph
    assert [type(e) for e in outcome.effects] == [ProfileCreated, IdentifierAttached, IdentifierAttached]
    assert graph.resolve(uid("ann")) == graph.resolve(anon("x")) == outcome.profile_id
