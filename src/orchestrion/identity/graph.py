"""The identity graph: profiles, the identifiers they own, retired ids, admin separations. Pure, no I/O.

`apply(graph, link)` is Segment Unify's flat matching:

- no profile holds any identifier of the link: create one;
- one does: attach the new identifiers to it;
- several do: merge them into the oldest (by the time and messageId of the link that created it); the others'
  ids are retired and resolve to it forever;
- and first, when linking would break a limit, the profile size cap or an admin separation, drop the weakest
  identifier taking part (`matching.settle`) and record the refusal.

The graph is advanced in place: `apply` returns the same object, and the effects are the complete record of the
change (what a store writes). Keep a snapshot with `graph.copy()`. Profile ids are `p_` + 16 hex digits of a hash of
the creating record and its strongest identifier, so replaying the same records gives the same ids.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from orchestrion.identity.config import IdentityPolicy
from orchestrion.identity.effects import (
    Effect,
    IdentifierAttached,
    LinkOutcome,
    LinkRefused,
    ProfileCreated,
    ProfilesMerged,
)
from orchestrion.identity.errors import UnlinkRefused
from orchestrion.identity.links import Alias, Identifier, Link, Provenance, RecordKey, Unlink
from orchestrion.identity.matching import settle


def profile_id_for(provenance: Provenance, part: int, first: Identifier) -> str:
    """The id of a profile created by this record (`part` 1 is the alias half of an alias call)."""
    text = f"{provenance.source}\x1f{provenance.message_id}\x1f{part}\x1f{first.type}\x1f{first.value}"
    return "p_" + hashlib.sha256(text.encode()).hexdigest()[:16]


class ProfileState:
    """A live profile inside the graph (mutable; read it through `IdentityGraph.profile` from outside)."""

    __slots__ = ("counts", "created", "identifiers", "last_merge", "profile_id", "provenance")

    def __init__(self, profile_id: str, created: RecordKey, provenance: Provenance) -> None:
        self.profile_id = profile_id
        self.created = created
        self.provenance = provenance
        self.identifiers: set[Identifier] = set()
        self.counts: dict[str, int] = {}
        self.last_merge: RecordKey | None = None  # the newest record that merged another profile into this one

    def age(self) -> tuple[RecordKey, str]:
        return (self.created, self.profile_id)


@dataclass(frozen=True, slots=True)
class ProfileView:
    """A profile as seen from outside: its id, its creating record, and its identifiers (strongest first) each
    with the record that attached it."""

    profile_id: str
    created: Provenance
    identities: tuple[tuple[Identifier, Provenance], ...]

    @property
    def identifiers(self) -> tuple[Identifier, ...]:
        return tuple(identifier for identifier, _ in self.identities)


class IdentityGraph:
    """Profiles and their identifiers; see the module docstring for the rules."""

    __slots__ = ("_attached", "_attached_at", "_owner", "_profiles", "_redirect", "_rules", "policy")

    def __init__(self, policy: IdentityPolicy | None = None) -> None:
        self.policy = policy or IdentityPolicy.default()
        self._profiles: dict[str, ProfileState] = {}
        self._owner: dict[Identifier, str] = {}  # may name a retired id: resolved (and compressed) on read
        self._attached: dict[Identifier, Provenance] = {}
        self._attached_at: dict[Identifier, RecordKey] = {}
        self._redirect: dict[str, str] = {}  # retired profile id -> the id it went into
        self._rules: dict[Identifier, dict[RecordKey, Unlink]] = {}  # each identifier -> separations naming it

    # ---- reading -------------------------------------------------------------------------------------------

    def canonical(self, profile_id: str) -> str | None:
        """The live profile an id (live or retired) resolves to; None for an id never issued."""
        current = profile_id
        hops = 0
        while current not in self._profiles:
            following = self._redirect.get(current)
            if following is None:
                return None
            current = following
            hops += 1
            if hops > len(self._redirect):
                raise RuntimeError(f"profile id {profile_id!r}: redirect cycle")
        if hops > 1:
            self._redirect[profile_id] = current
        return current

    def owner_of(self, identifier: Identifier) -> str | None:
        """The live profile holding this identifier, if any."""
        owner = self._owner.get(identifier)
        if owner is None or owner in self._profiles:
            return owner
        resolved = self.canonical(owner)
        if resolved is not None:
            self._owner[identifier] = resolved
        return resolved

    resolve = owner_of

    def profile(self, profile_id: str) -> ProfileView | None:
        """The live profile an id resolves to."""
        live = self.canonical(profile_id)
        if live is None:
            return None
        state = self._profiles[live]
        rank = self.policy.rank
        ordered = sorted(state.identifiers, key=lambda i: (rank(i.type), i.value))
        return ProfileView(live, state.provenance, tuple((i, self._attached[i]) for i in ordered))

    def state(self, profile_id: str) -> ProfileState:
        return self._profiles[profile_id]

    def attached_by(self, identifier: Identifier) -> Provenance | None:
        """The record that attached this identifier to its profile."""
        return self._attached.get(identifier)

    def attached_key(self, identifier: Identifier) -> RecordKey | None:
        """The key of the record that attached this identifier (for views of the past)."""
        return self._attached_at.get(identifier)

    def profile_ids(self) -> list[str]:
        return sorted(self._profiles)

    def partition(self) -> dict[str, frozenset[Identifier]]:
        """Every live profile id with its identifiers: the result that must not depend on arrival order."""
        return {pid: frozenset(state.identifiers) for pid, state in sorted(self._profiles.items())}

    def retired(self) -> dict[str, str]:
        """Every retired profile id with the live id it resolves to (the merge history, flattened)."""
        result: dict[str, str] = {}
        for old in sorted(self._redirect):
            live = self.canonical(old)
            if live is not None:
                result[old] = live
        return result

    def oldest_first(self, profile_ids: Iterable[str]) -> list[ProfileState]:
        return sorted((self._profiles[pid] for pid in profile_ids), key=ProfileState.age)

    def has_separations(self) -> bool:
        return bool(self._rules)

    def separations_touching(self, identifier: Identifier) -> Iterable[Unlink]:
        rules = self._rules.get(identifier)
        return () if rules is None else rules.values()

    def separations(self) -> list[Unlink]:
        unique = {rule.key: rule for rules in self._rules.values() for rule in rules.values()}
        return [unique[key] for key in sorted(unique)]

    def __len__(self) -> int:
        return len(self._profiles)

    def copy(self) -> IdentityGraph:
        """An independent snapshot."""
        twin = IdentityGraph(self.policy)
        for pid, state in self._profiles.items():
            clone = ProfileState(pid, state.created, state.provenance)
            clone.identifiers = set(state.identifiers)
            clone.counts = dict(state.counts)
            clone.last_merge = state.last_merge
            twin._profiles[pid] = clone
        twin._owner = dict(self._owner)
        twin._attached = dict(self._attached)
        twin._attached_at = dict(self._attached_at)
        twin._redirect = dict(self._redirect)
        twin._rules = {i: dict(rules) for i, rules in self._rules.items()}
        return twin

    # ---- changing (used by the transitions below and by the resolver's rebuilds) ------------------------------

    def create(self, profile_id: str, created: RecordKey, provenance: Provenance) -> None:
        self._redirect.pop(profile_id, None)  # a rebuild may bring a retired id back to life
        self._profiles[profile_id] = ProfileState(profile_id, created, provenance)

    def attach(self, profile_id: str, identifier: Identifier, provenance: Provenance, key: RecordKey) -> None:
        state = self._profiles[profile_id]
        state.identifiers.add(identifier)
        state.counts[identifier.type] = state.counts.get(identifier.type, 0) + 1
        self._owner[identifier] = profile_id
        self._attached[identifier] = provenance
        self._attached_at[identifier] = key

    def detach(self, identifier: Identifier) -> None:
        owner = self.owner_of(identifier)
        if owner is None:
            return
        state = self._profiles[owner]
        state.identifiers.discard(identifier)
        state.counts[identifier.type] -= 1
        if not state.counts[identifier.type]:
            del state.counts[identifier.type]
        del self._owner[identifier]
        del self._attached[identifier]
        del self._attached_at[identifier]

    def merge(self, survivor: str, merged: str, key: RecordKey) -> None:
        keep, gone = self._profiles[survivor], self._profiles.pop(merged)
        keep.last_merge = key
        keep.identifiers |= gone.identifiers
        for kind, count in gone.counts.items():
            keep.counts[kind] = keep.counts.get(kind, 0) + count
        self._redirect[merged] = survivor  # owners of its identifiers follow this on their next read

    def redirect(self, old: str, new: str) -> None:
        self._redirect[old] = new

    def add_separation(self, rule: Unlink) -> None:
        for identifier in rule.touched():
            self._rules.setdefault(identifier, {})[rule.key] = rule

    def evict(self, identifiers: Iterable[Identifier]) -> None:
        """Forget the profiles holding these identifiers, their ownership and the separations naming them, so a
        rebuild can replay them. Retired ids stay (they are re-pointed after the replay)."""
        owners: set[str] = set()
        for identifier in identifiers:
            owner = self.owner_of(identifier)
            if owner is not None:
                owners.add(owner)
            for rule in list(self._rules.get(identifier, {}).values()):
                for named in rule.touched():
                    rules = self._rules.get(named)
                    if rules is not None:
                        rules.pop(rule.key, None)
                        if not rules:
                            del self._rules[named]
        for owner in owners:
            for identifier in self._profiles.pop(owner).identifiers:
                self._owner.pop(identifier, None)
                self._attached.pop(identifier, None)
                self._attached_at.pop(identifier, None)


# ---- transitions ---------------------------------------------------------------------------------------------


def apply(graph: IdentityGraph, link: Link) -> tuple[IdentityGraph, LinkOutcome]:
    """Link the identifiers of one event; return the (same, advanced) graph and what changed."""
    effects: list[Effect] = []
    target = _link(graph, link.identifiers, link, part=0, exempt_limits=False, effects=effects)
    if link.alias is not None:
        previous = _previous_identifier(graph, link.alias)
        exempt = graph.policy.alias_overrides_limits
        target = _link(graph, (link.alias.target, previous), link, part=1, exempt_limits=exempt, effects=effects)
    return graph, LinkOutcome(profile_id=target, effects=tuple(effects))


def _previous_identifier(graph: IdentityGraph, alias: Alias) -> Identifier:
    for candidate in alias.candidates:
        if graph.owner_of(candidate) is not None:
            return candidate
    return alias.candidates[-1]


def _link(
    graph: IdentityGraph,
    identifiers: Iterable[Identifier],
    link: Link,
    part: int,
    exempt_limits: bool,
    effects: list[Effect],
) -> str:
    identifiers = tuple(identifiers)
    first_owner = graph.owner_of(identifiers[0])
    if first_owner is not None and all(graph.owner_of(i) == first_owner for i in identifiers[1:]):
        return first_owner  # all already together on one profile (most events): nothing can change
    provenance = link.provenance
    settlement = settle(graph, identifiers, exempt_limits)
    kept = settlement.kept
    owners = {identifier: graph.owner_of(identifier) for identifier in kept}
    matched = graph.oldest_first({owner for owner in owners.values() if owner is not None})
    if matched:
        survivor = matched[0].profile_id
        for other in matched[1:]:
            via_survivor = next(i for i in kept if owners[i] == survivor)
            via_other = next(i for i in kept if owners[i] == other.profile_id)
            kind = "alias" if part else "event"
            reason = f"{kind} linked {via_survivor} and {via_other}"
            graph.merge(survivor, other.profile_id, link.key)
            effects.append(ProfilesMerged(survivor, other.profile_id, reason, provenance))
    else:
        survivor = profile_id_for(provenance, part, kept[0])
        graph.create(survivor, link.key, provenance)
        effects.append(ProfileCreated(survivor, provenance))
    for identifier in kept:
        if owners[identifier] is None:
            graph.attach(survivor, identifier, provenance, link.key)
            effects.append(IdentifierAttached(survivor, identifier, provenance))
    for identifier, breach in settlement.dropped:
        if graph.owner_of(identifier) != survivor:  # dropped but already there: nothing was refused
            effects.append(LinkRefused(identifier, breach.code, breach.reason, survivor, provenance))
    return survivor


def separation_for(graph: IdentityGraph, identifier: Identifier, *, timestamp: dt.datetime, unlink_id: str) -> Unlink:
    """The admin unmerge of `identifier` from its current profile, as a record to apply (and to keep)."""
    owner = graph.owner_of(identifier)
    if owner is None:
        raise UnlinkRefused(f"{identifier} is on no profile; nothing to unmerge")
    others = graph.state(owner).identifiers - {identifier}
    if not others:
        raise UnlinkRefused(f"{identifier} is alone on profile {owner}; nothing to unmerge")
    return Unlink(timestamp=timestamp, unlink_id=unlink_id, identifier=identifier, separated_from=frozenset(others))


def unlink(graph: IdentityGraph, rule: Unlink) -> tuple[IdentityGraph, tuple[Effect, ...]]:
    """Apply an admin unmerge: the identifier moves to a profile of its own, and the separation holds from now on."""
    graph.add_separation(rule)
    identifier = rule.identifier
    owner = graph.owner_of(identifier)
    if owner is not None and graph.state(owner).identifiers == {identifier}:
        return graph, ()
    graph.detach(identifier)
    provenance = rule.provenance
    profile_id = profile_id_for(provenance, 0, identifier)
    graph.create(profile_id, rule.key, provenance)
    graph.attach(profile_id, identifier, provenance, rule.key)
    return graph, (ProfileCreated(profile_id, provenance), IdentifierAttached(profile_id, identifier, provenance))
