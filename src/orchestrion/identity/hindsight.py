"""Late links that change nothing: decided against the graph as it was at their time, without a replay. Pure.

A late link normally costs a replay of its component. But most late events come from people already known — a
phone's offline batch — and change nothing: their identifiers were already on one profile, or the ones that were
not are refused again. `quiet_outcome` recognises them exactly. It rebuilds, from the live graph, the profiles the
link touches *as they were just before the link's key*, which is possible when

- every identifier of the link that is on a profile now was attached before that key, and
- none of those profiles was created or had another profile merged into it since, and
- no admin unlink of the component is newer than the key (the caller checks this: unlinks detach identifiers);

then a profile then held exactly its identifiers attached before the key. Matching the link against those profiles
gives what a replay would give at that point; when that leaves every kept identifier on one existing profile, the
link changes nothing and every later record replays as before. Only its refusals are new.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from orchestrion.identity.config import IdentityPolicy
from orchestrion.identity.effects import LinkOutcome, LinkRefused
from orchestrion.identity.graph import IdentityGraph
from orchestrion.identity.links import Identifier, Link, RecordKey, Unlink
from orchestrion.identity.matching import settle


@dataclass(slots=True)
class _PastProfile:
    profile_id: str
    created: RecordKey
    identifiers: set[Identifier] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)


class _PastView:
    """The graph restricted to some profiles, as they were just before `key` (see the module docstring)."""

    def __init__(self, graph: IdentityGraph, key: RecordKey, profile_ids: set[str]) -> None:
        self._graph = graph
        self._key = key
        self._profiles: dict[str, _PastProfile] = {}
        for pid in profile_ids:
            state = graph.state(pid)
            past = _PastProfile(pid, state.created)
            for identifier in state.identifiers:
                attached = graph.attached_key(identifier)
                if attached is not None and attached < key:
                    past.identifiers.add(identifier)
                    past.counts[identifier.type] = past.counts.get(identifier.type, 0) + 1
            self._profiles[pid] = past

    @property
    def policy(self) -> IdentityPolicy:
        return self._graph.policy

    def owner_of(self, identifier: Identifier) -> str | None:
        owner = self._graph.owner_of(identifier)
        if owner is None or owner not in self._profiles:
            return None
        return owner if identifier in self._profiles[owner].identifiers else None

    def oldest_first(self, profile_ids: Iterable[str]) -> list[_PastProfile]:
        return sorted((self._profiles[pid] for pid in profile_ids), key=lambda p: (p.created, p.profile_id))

    def has_separations(self) -> bool:
        return self._graph.has_separations()

    def separations_touching(self, identifier: Identifier) -> Iterable[Unlink]:
        return self._graph.separations_touching(identifier)


def quiet_outcome(graph: IdentityGraph, link: Link) -> LinkOutcome | None:
    """The outcome of a late link if it changes no profile wherever it falls in key order, else None (replay)."""
    if link.alias is not None:
        return None
    key = link.key
    owners: dict[Identifier, str] = {}
    for identifier in link.identifiers:
        owner = graph.owner_of(identifier)
        if owner is None:
            continue
        attached = graph.attached_key(identifier)
        if attached is None or attached >= key:
            return None
        owners[identifier] = owner
    if not owners:
        return None  # it would create a profile
    for pid in set(owners.values()):
        state = graph.state(pid)
        if state.created >= key or (state.last_merge is not None and state.last_merge >= key):
            return None
    settlement = settle(_PastView(graph, key, set(owners.values())), link.identifiers)
    targets = {owners.get(identifier) for identifier in settlement.kept}
    if len(targets) != 1:
        return None
    (target,) = targets
    if target is None:
        return None  # it would attach or create
    provenance = link.provenance
    refusals = tuple(
        LinkRefused(identifier, breach.code, breach.reason, target, provenance)
        for identifier, breach in settlement.dropped
        if owners.get(identifier) != target
    )
    return LinkOutcome(profile_id=target, effects=refusals)
