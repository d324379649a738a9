"""Which identifiers of a link may be linked: the limit, size and unmerge rules. Pure; reads the graph only.

Segment Unify's rule, with one refinement: when linking would break a rule, Segment drops the lowest-priority
identifier of the whole event and retries. We drop the lowest-priority identifier *among those taking part in the
breach* — a new value of the type over its limit, an identifier that brings in a profile already holding values of
that type, or a side of an admin separation — so that an innocent new phone number is not lost because the event
also carried a shared device id. Retrying until nothing is breached ends, since each round drops one identifier and
a single identifier never breaches anything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass
from typing import Final, Protocol

from orchestrion.identity.config import IdentityPolicy
from orchestrion.identity.effects import LIMIT, PROFILE_SIZE, UNMERGED
from orchestrion.identity.links import Identifier, RecordKey, Unlink


class ProfileReader(Protocol):
    """What matching reads of a profile."""

    @property
    def profile_id(self) -> str: ...
    @property
    def counts(self) -> dict[str, int]: ...
    @property
    def identifiers(self) -> Set[Identifier]: ...


class GraphReader(Protocol):
    """What matching reads of the graph: the live graph, or a view of it as it was at a past key."""

    @property
    def policy(self) -> IdentityPolicy: ...
    def owner_of(self, identifier: Identifier) -> str | None: ...
    def oldest_first(self, profile_ids: Iterable[str]) -> Sequence[ProfileReader]: ...
    def has_separations(self) -> bool: ...
    def separations_touching(self, identifier: Identifier) -> Iterable[Unlink]: ...


_NEW: Final = ""  # the holder of identifiers that no profile has yet (never a profile id)
_Holder = Callable[[Identifier], str | None]


@dataclass(frozen=True, slots=True)
class Breach:
    """One rule the link would break: its code, a sentence, and the identifiers of the link taking part."""

    code: str
    reason: str
    involved: frozenset[Identifier]


@dataclass(frozen=True, slots=True)
class Settlement:
    """The identifiers that may be linked together (strongest first) and those dropped, each with its breach."""

    kept: tuple[Identifier, ...]
    dropped: tuple[tuple[Identifier, Breach], ...]


def settle(graph: GraphReader, identifiers: Iterable[Identifier], exempt_limits: bool = False) -> Settlement:
    """Drop the weakest identifier taking part in a breach until the rest can be linked; `exempt_limits` skips
    the per-type limits (for alias calls), never the size cap or admin separations."""
    rank = graph.policy.rank
    kept = sorted(set(identifiers), key=lambda i: (rank(i.type), i.value))
    dropped: list[tuple[Identifier, Breach]] = []
    while len(kept) > 1:
        breaches = breaches_of(graph, kept, exempt_limits)
        if not breaches:
            break
        involved = set().union(*(b.involved for b in breaches))
        victim = max(involved, key=lambda i: (rank(i.type), i.value))
        cause = next(b for b in breaches if victim in b.involved)
        kept.remove(victim)
        dropped.append((victim, cause))
    return Settlement(tuple(kept), tuple(dropped))


def breaches_of(graph: GraphReader, identifiers: list[Identifier], exempt_limits: bool) -> list[Breach]:
    """Every rule that linking `identifiers` together (merging the profiles they are on) would break."""
    owners: dict[Identifier, str] = {}
    new: list[Identifier] = []
    for identifier in identifiers:
        owner = graph.owner_of(identifier)
        if owner is None:
            new.append(identifier)
        else:
            owners[identifier] = owner
    matched = graph.oldest_first(set(owners.values()))
    target = matched[0].profile_id if matched else "new"

    def pulling(sides: set[str]) -> list[Identifier]:
        """The identifiers of the link that bring these profiles into it."""
        return [i for i, owner in owners.items() if owner in sides]

    breaches: list[Breach] = []
    policy = graph.policy
    if not exempt_limits:
        new_counts = Counter(i.type for i in new)
        types = set(new_counts)
        if len(matched) > 1:
            for profile in matched:
                types.update(profile.counts)
        for kind in sorted(types, key=policy.rank):
            counts = [p.counts.get(kind, 0) for p in matched]
            total = sum(counts) + new_counts.get(kind, 0)
            limit = policy.limit(kind)
            # a profile already past a limit (lowered in config, or grown by an alias) may keep what it has
            if total > limit and total > max(counts, default=0):
                sides = {p.profile_id for p in matched if p.counts.get(kind, 0)}
                involved = [i for i in new if i.type == kind] + pulling(sides)
                breaches.append(Breach(LIMIT, f"limit:{kind}={limit} on profile {target}", frozenset(involved)))

    cap = policy.max_identifiers_per_profile
    sizes = [len(p.identifiers) for p in matched]
    if sum(sizes) + len(new) > cap and sum(sizes) + len(new) > max(sizes, default=0):
        involved = [*new, *owners]
        breaches.append(Breach(PROFILE_SIZE, f"profile_size={cap} on profile {target}", frozenset(involved)))

    if graph.has_separations():
        breaches.extend(_separation_breaches(graph, new, set(owners.values()), pulling))
    return breaches


def _separation_breaches(
    graph: GraphReader,
    new: list[Identifier],
    matched_ids: set[str],
    pulling: Callable[[set[str]], list[Identifier]],
) -> list[Breach]:
    new_set = set(new)

    def holder(identifier: Identifier) -> str | None:
        if identifier in new_set:
            return _NEW
        owner = graph.owner_of(identifier)
        return owner if owner in matched_ids else None

    scan: list[Identifier] = list(new)
    if len(matched_ids) > 1:
        for profile in graph.oldest_first(matched_ids):
            scan.extend(profile.identifiers)
    seen: set[RecordKey] = set()
    breaches: list[Breach] = []
    for identifier in scan:
        for rule in graph.separations_touching(identifier):
            if rule.key in seen:
                continue
            seen.add(rule.key)
            sides = _separation_sides(rule, holder)
            if sides:
                involved = [i for i in new if i == rule.identifier or i in rule.separated_from]
                involved += pulling(sides - {_NEW})
                reason = f"unmerged:{rule.identifier} was separated from this profile by {rule.unlink_id}"
                breaches.append(Breach(UNMERGED, reason, frozenset(involved)))
    return breaches


def _separation_sides(rule: Unlink, holder: _Holder) -> set[str]:
    """The holders (profile ids, or _NEW) that linking would wrongly bring together: the holder of the separated
    identifier and of each identifier it was separated from, unless they already share one existing profile.
    Empty when the rule is not broken."""
    own = holder(rule.identifier)
    if own is None:
        return set()
    sides: set[str] = set()
    for other in rule.separated_from:
        theirs = holder(other)
        if theirs is not None and (theirs != own or own == _NEW):
            sides.add(theirs)
    return sides | {own} if sides else set()
