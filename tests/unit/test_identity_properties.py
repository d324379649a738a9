"""Properties of identity resolution over random event sequences (small id pools, so collisions and merges happen).

- any arrival order gives the profiles of the events taken in (timestamp, messageId) order;
- limits are never exceeded (unless an alias was allowed to); blocked values never link anything;
- a profile id, once handed out, always resolves to a live profile;
- the effects are a complete account of the changes: a store that only applies them ends up with the same graph.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrion.identity.config import IdentityConfig, IdentityPolicy
from orchestrion.identity.effects import (
    Effect,
    IdentifierAttached,
    IdentifierDetached,
    LinkRetargeted,
    ProfileCreated,
    ProfileRemapped,
    ProfilesMerged,
)
from orchestrion.identity.identifiers import link_of
from orchestrion.identity.links import Identifier, Link, Unlink
from orchestrion.identity.resolver import IdentityResolver, rebuild_all
from tests.unit.test_identity_graph import T0, make_event

BLOCKED_VALUES = ["null", "", " Undefined ", "0", "-1", "ANONYMOUS", "0000-0000"]
USERS = ["u1", "u2", "u3"]
ANONS = ["a1", "a2", "a3", "a4", "a5"]
DEVICES = ["d1", "d2"]
EMAILS = ["e1@x.io", " E1@X.io", "e2@x.io", "e3@x.io"]
CRM_IDS = ["c1", "c2"]

POLICIES = {
    "default": IdentityPolicy.default(),
    "tight": IdentityConfig.model_validate(
        {
            "identifiers": {"anonymous_id": {"limit": 2}, "email": {"limit": 2}, "device_id": {"limit": 1}},
            "custom_limit": 1,
            "max_identifiers_per_profile": 6,
        }
    ).policy(),
    "tight, alias obeys limits": IdentityConfig.model_validate(
        {
            "identifiers": {"anonymous_id": {"limit": 2}, "email": {"limit": 1}},
            "custom_limit": 1,
            "alias_overrides_limits": False,
        }
    ).policy(),
}


def _maybe(pool: list[str], blocked: bool = True) -> st.SearchStrategy[str | None]:
    values = pool + BLOCKED_VALUES if blocked else pool
    return st.none() | st.sampled_from(values)


@st.composite
def event_fields(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["track", "track", "identify", "identify", "alias"]))
    user = draw(_maybe(USERS))
    anonymous = draw(_maybe(ANONS))
    if kind == "alias":
        user = draw(st.sampled_from(USERS))
    elif user is None and anonymous is None:
        anonymous = draw(st.sampled_from(ANONS))
    context: dict[str, Any] = {}
    device = draw(_maybe(DEVICES))
    if device is not None:
        context["device"] = {"id": device}
    mail = draw(_maybe(EMAILS))
    traits: dict[str, Any] | None = None
    if mail is not None:
        if kind == "identify" and draw(st.booleans()):
            traits = {"email": mail}
        else:
            context["traits"] = {"email": mail}
    crm = draw(_maybe(CRM_IDS, blocked=False))
    if crm is not None:
        context["externalIds"] = [{"id": crm, "type": "crm_id", "collection": "users", "encoding": "none"}]
    return {
        "type": kind,
        "minute": draw(st.integers(0, 12)),  # a narrow range: many ties, broken by messageId
        "source": draw(st.sampled_from(["web", "app"])),
        "user_id": user,
        "anonymous_id": anonymous,
        "previous_id": draw(st.sampled_from(USERS + ANONS)) if kind == "alias" else None,
        "context": context,
        "traits": traits,
    }


def _identifier_pool() -> list[Identifier]:
    return (
        [Identifier("user_id", u) for u in USERS]
        + [Identifier("anonymous_id", a) for a in ANONS]
        + [Identifier("email", e.strip().lower()) for e in EMAILS]
    )


@st.composite
def unlinks(draw: st.DrawFn) -> list[Unlink]:
    pool = _identifier_pool()
    rules = []
    for n in range(draw(st.integers(0, 2))):
        identifier = draw(st.sampled_from(pool))
        separated = draw(st.sets(st.sampled_from(pool), min_size=1, max_size=4))
        minute = draw(st.integers(0, 12))
        rules.append(Unlink(T0 + dt.timedelta(minutes=minute), f"unlink-{n}", identifier, frozenset(separated)))
    return rules


@dataclass
class Scenario:
    policy_name: str
    links: list[Link]
    unlinks: list[Unlink]

    @property
    def policy(self) -> IdentityPolicy:
        return POLICIES[self.policy_name]


@st.composite
def scenarios(draw: st.DrawFn, with_unlinks: bool = True) -> Scenario:
    policy_name = draw(st.sampled_from(sorted(POLICIES)))
    fields = draw(st.lists(event_fields(), min_size=1, max_size=24))
    events = [make_event(f"m{n:03d}", spec.pop("minute"), spec.pop("type"), **spec) for n, spec in enumerate(fields)]
    found = [link_of(event, POLICIES[policy_name]).link for event in events]
    return Scenario(policy_name, [x for x in found if x is not None], draw(unlinks()) if with_unlinks else [])


@dataclass
class StoreModel:
    """What a store holds if it only applies effects: identity rows, merge rows, live profiles, event owners."""

    rows: dict[Identifier, str] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)
    events: dict[tuple[str, str], str] = field(default_factory=dict)

    def canonical(self, profile_id: str) -> str:
        hops = 0
        while profile_id not in self.live:
            profile_id = self.redirects[profile_id]
            hops += 1
            assert hops < 1000, "merge rows form a cycle"
        return profile_id

    def take(self, effects: tuple[Effect, ...]) -> None:
        for effect in effects:
            if isinstance(effect, ProfileCreated):
                self.live.add(effect.profile_id)
                self.redirects.pop(effect.profile_id, None)
            elif isinstance(effect, IdentifierAttached):
                self.rows[effect.identifier] = effect.profile_id
            elif isinstance(effect, IdentifierDetached):
                del self.rows[effect.identifier]
            elif isinstance(effect, ProfilesMerged):
                self.live.discard(effect.merged)
                self.redirects[effect.merged] = effect.survivor
            elif isinstance(effect, ProfileRemapped):
                self.live.discard(effect.old)
                self.redirects[effect.old] = effect.new
            elif isinstance(effect, LinkRetargeted):
                self.events[(effect.source, effect.message_id)] = effect.new_profile


def _arrive(scenario: Scenario, order: list[int]) -> tuple[IdentityResolver, StoreModel, set[str]]:
    """Feed the records in the given order; return the resolver, the store model and every id handed out."""
    records: list[Link | Unlink] = [*scenario.links, *scenario.unlinks]
    resolver = IdentityResolver(scenario.policy)
    store = StoreModel()
    handed_out: set[str] = set()
    for index in order:
        record = records[index]
        if isinstance(record, Link):
            outcome = resolver.add(record)
            store.take(outcome.effects)
            store.events[(record.source, record.message_id)] = outcome.profile_id
            handed_out.add(outcome.profile_id)
            effects = outcome.effects
        else:
            effects = resolver.add_unlink(record)
            store.take(effects)
        handed_out.update(e.profile_id for e in effects if isinstance(e, ProfileCreated))
        # once handed out, an id resolves to a live profile: after every step, not only at the end
        for profile_id in handed_out:
            live = resolver.canonical(profile_id)
            assert live is not None and resolver.graph.profile(live) is not None
    return resolver, store, handed_out


def _assert_same_result(actual: IdentityResolver, expected: IdentityResolver, scenario: Scenario) -> None:
    assert actual.graph.partition() == expected.graph.partition()
    assert actual.graph.separations() == expected.graph.separations()
    for link in scenario.links:
        assert actual.profile_of(link.source, link.message_id) == expected.profile_of(link.source, link.message_id)
    for profile_id, live in expected.graph.retired().items():
        assert actual.canonical(profile_id) == live
    for pid in expected.graph.profile_ids():
        got, want = actual.graph.profile(pid), expected.graph.profile(pid)
        assert got == want  # the same creating record and the same record attaching each identifier
        members = sorted((x for x in scenario.links if expected.profile_of(x.source, x.message_id) == pid), key=_key)
        assert actual.messages_of(pid) == [(x.source, x.message_id) for x in members]


def _key(link: Link) -> tuple[dt.datetime, str, str, int]:
    return link.key


def _assert_store_matches(store: StoreModel, resolver: IdentityResolver, scenario: Scenario) -> None:
    graph = resolver.graph
    assert store.live == set(graph.profile_ids())
    assert {i: store.canonical(p) for i, p in store.rows.items()} == {
        i: pid for pid, ids in graph.partition().items() for i in ids
    }
    for link in scenario.links:
        key = (link.source, link.message_id)
        assert store.canonical(store.events[key]) == resolver.profile_of(*key)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), scenario=scenarios())
def test_any_arrival_order_gives_the_profiles_of_event_time_order(data: st.DataObject, scenario: Scenario) -> None:
    records = len(scenario.links) + len(scenario.unlinks)
    order = data.draw(st.permutations(range(records)), label="arrival order")
    reference = rebuild_all(scenario.links, scenario.policy, scenario.unlinks)
    resolver, store, _ = _arrive(scenario, list(order))
    _assert_same_result(resolver, reference, scenario)
    _assert_store_matches(store, resolver, scenario)
    # and a second, independent arrival order agrees too (ids handed out differ, results do not)
    other, _, _ = _arrive(scenario, list(reversed(order)))
    _assert_same_result(other, reference, scenario)


@settings(max_examples=200, deadline=None)
@given(scenario=scenarios(), data=st.data())
def test_limits_are_never_exceeded(scenario: Scenario, data: st.DataObject) -> None:
    order = data.draw(st.permutations(range(len(scenario.links))))
    resolver = IdentityResolver(scenario.policy)
    for index in order:
        resolver.add(scenario.links[index])
    aliases_may_exceed = scenario.policy.alias_overrides_limits and any(x.alias for x in scenario.links)
    for identifiers in resolver.graph.partition().values():
        assert len(identifiers) <= scenario.policy.max_identifiers_per_profile
        if aliases_may_exceed:
            continue
        for kind, count in Counter(i.type for i in identifiers).items():
            assert count <= scenario.policy.limit(kind), (kind, identifiers)


@settings(max_examples=200, deadline=None)
@given(specs=st.lists(event_fields(), min_size=1, max_size=12), policy_name=st.sampled_from(sorted(POLICIES)))
def test_blocked_values_never_link_anything(specs: list[dict[str, Any]], policy_name: str) -> None:
    policy = POLICIES[policy_name]
    resolver = IdentityResolver(policy)
    for n, spec in enumerate(specs):
        spec = dict(spec)
        minute, kind = spec.pop("minute"), spec.pop("type")
        event = make_event(f"m{n:03d}", minute, kind, **spec)
        cleaned = make_event(f"m{n:03d}", minute, kind, **_without_placeholders(spec))
        extraction = link_of(event, policy)
        # an event with a placeholder makes exactly the link it would make without it ...
        assert extraction.link == link_of(cleaned, policy).link
        # ... and every placeholder it carried is reported, so the pipeline can count them
        reported = {r.identifier.value.strip().casefold() for r in extraction.rejected if r.reason == "blocked"}
        assert reported == {v.strip().casefold() for v in _placeholders(spec)}
        if extraction.link is not None:
            resolver.add(extraction.link)
    for identifiers in resolver.graph.partition().values():
        assert not any(policy.is_blocked(i.type, i.value) for i in identifiers)


def _placeholders(spec: dict[str, Any]) -> list[str]:
    context = spec["context"]
    values = [
        spec["user_id"],
        spec["anonymous_id"],
        context.get("device", {}).get("id"),
        context.get("traits", {}).get("email"),
        (spec["traits"] or {}).get("email"),
    ]
    return [v for v in values if v in BLOCKED_VALUES]


def _without_placeholders(spec: dict[str, Any]) -> dict[str, Any]:
    clean = dict(spec)
    for name in ("user_id", "anonymous_id"):
        if clean[name] in BLOCKED_VALUES:
            clean[name] = None
    context = {k: dict(v) if isinstance(v, dict) else v for k, v in spec["context"].items()}
    if context.get("device", {}).get("id") in BLOCKED_VALUES:
        del context["device"]
    if context.get("traits", {}).get("email") in BLOCKED_VALUES:
        del context["traits"]
    clean["context"] = context
    if (spec["traits"] or {}).get("email") in BLOCKED_VALUES:
        clean["traits"] = None
    return clean
