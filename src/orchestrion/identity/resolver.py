"""Incremental identity resolution whose result does not depend on arrival order. Pure, no I/O.

The profiles must be a function of the records (event links and admin unlinks) taken in `RecordKey` order —
corrected event time, then messageId — whatever order they arrive in. The resolver keeps every record it has seen,
grouped into *components*: records are in one component when their identifiers connect, directly or through other
records (including identifiers a link was refused, since a refusal also depends on order). Records of different
components never read or write the same profile, so they commute.

`add(link)` then has two paths:

- in order: the link is newer than every record of each component it touches, so applying it last is what a
  replay in key order would do. This is the common, cheap path;
- late: the components are joined and replayed in key order from a clean slate. Afterwards every profile id that
  no longer lives is re-pointed to where its identifiers went (`ProfileRemapped`), so any id ever handed out still
  resolves to a live profile, and the effects describe the difference to the previous state.

A late link that changes nothing wherever it falls — the usual case of a delayed batch of events from a known person —
is recognised against the graph as it was at its time (`hindsight.py`) and skips the replay. Any other late event
costs a replay of its component (the records of one person, or of the people a
shared identifier touches); `stats` counts replays so the pipeline can report them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from orchestrion.identity.config import IdentityPolicy
from orchestrion.identity.effects import (
    Effect,
    IdentifierAttached,
    IdentifierDetached,
    LinkOutcome,
    LinkRefused,
    LinkRetargeted,
    ProfileCreated,
    ProfileRemapped,
    ProfilesMerged,
)
from orchestrion.identity.graph import IdentityGraph, apply, separation_for, unlink
from orchestrion.identity.hindsight import quiet_outcome
from orchestrion.identity.ledger import EffectLedger
from orchestrion.identity.links import ADMIN_SOURCE, Identifier, Link, Provenance, Record, RecordKey, Unlink


class _Entry:
    """A record the resolver has seen and, for a link, the profile its event belongs to."""

    __slots__ = ("record", "reported", "target")

    def __init__(self, record: Record) -> None:
        self.record = record
        self.target: str | None = None  # as the graph has it (may be a retired id: resolve it)
        self.reported: str | None = None  # as the caller was last told (outcome or LinkRetargeted)


class _Component:
    __slots__ = ("entries", "identifiers", "issued", "newest", "newest_unlink")

    def __init__(self) -> None:
        self.identifiers: list[Identifier] = []
        self.entries: list[_Entry] = []
        self.issued: set[str] = set()  # every profile id its records ever created
        self.newest: RecordKey | None = None
        self.newest_unlink: RecordKey | None = None

    def absorb(self, other: _Component) -> None:
        self.identifiers.extend(other.identifiers)
        self.entries.extend(other.entries)
        self.issued |= other.issued
        self.newest = _latest(self.newest, other.newest)
        self.newest_unlink = _latest(self.newest_unlink, other.newest_unlink)


def _latest(a: RecordKey | None, b: RecordKey | None) -> RecordKey | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


@dataclass(slots=True)
class ResolverStats:
    applied: int = 0  # records applied in order
    late_no_ops: int = 0  # late links that changed nothing (decided in hindsight, no replay)
    replays: int = 0  # late records that caused a component replay
    replayed: int = 0  # records re-applied by those replays
    duplicates: int = 0  # records ignored because their (source, id) was seen with an earlier or equal key


def _entry_id(record: Record) -> tuple[str, str]:
    if isinstance(record, Link):
        return (record.source, record.message_id)
    return (ADMIN_SOURCE, record.unlink_id)


def _precedence(record: Record) -> tuple[RecordKey, str]:
    """Among records sharing a (source, id), the one kept: the earliest key, then the smallest content."""
    if isinstance(record, Link):
        return (record.key, repr((record.identifiers, record.alias)))
    return (record.key, repr((record.identifier, sorted(record.separated_from))))


class IdentityResolver:
    """The identity graph plus the records that built it; see the module docstring."""

    def __init__(self, policy: IdentityPolicy | None = None) -> None:
        self.graph = IdentityGraph(policy)
        self.stats = ResolverStats()
        self._parent: dict[Identifier, Identifier] = {}
        self._components: dict[Identifier, _Component] = {}  # by root identifier
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._ledger = EffectLedger()

    # ---- reading -------------------------------------------------------------------------------------------

    def resolve(self, identifier: Identifier) -> str | None:
        """The live profile holding this identifier."""
        return self.graph.owner_of(identifier)

    def canonical(self, profile_id: str) -> str | None:
        """The live profile a profile id (live, merged or remapped) resolves to; None if never issued."""
        return self.graph.canonical(profile_id)

    def profile_of(self, source: str, message_id: str) -> str | None:
        """The live profile the event (source, messageId) belongs to now."""
        entry = self._entries.get((source, message_id))
        if entry is None or entry.target is None:
            return None
        return self.graph.canonical(entry.target)

    def messages_of(self, profile_id: str) -> list[tuple[str, str]]:
        """The (source, messageId) of every event that belongs to this profile now, in record order. Costs one
        component, not the whole graph."""
        live = self.graph.canonical(profile_id)
        if live is None:
            return []
        view = self.graph.profile(live)
        if view is None or not view.identifiers:
            return []
        component = self._components[self._find(view.identifiers[0])]
        found = [
            e.record
            for e in component.entries
            if isinstance(e.record, Link) and e.target is not None and self.graph.canonical(e.target) == live
        ]
        return [(r.source, r.message_id) for r in sorted(found, key=lambda r: r.key)]

    def records(self) -> Iterator[Record]:
        """Every record kept, in key order (what `rebuild_all` needs to rebuild the same graph)."""
        return iter(sorted((e.record for e in self._entries.values()), key=lambda r: r.key))

    # ---- adding --------------------------------------------------------------------------------------------

    def add(self, link: Link) -> LinkOutcome:
        """Apply one event's link; the outcome names the profile the event belongs to and what changed."""
        entry, replaced = self._admit(link)
        if entry is None:
            known = self._entries[_entry_id(link)]
            return LinkOutcome(profile_id=self._target(known), effects=(), duplicate=True)
        effects = self._place(entry, replaced)
        entry.reported = self._target(entry)
        return LinkOutcome(profile_id=entry.reported, effects=effects)

    def add_unlink(self, rule: Unlink) -> tuple[Effect, ...]:
        """Apply a stored admin unmerge (as `unlink` made it), in key order with the events."""
        entry, replaced = self._admit(rule)
        if entry is None:
            return ()
        return self._place(entry, replaced)

    def unlink(
        self, identifier: Identifier, *, timestamp: dt.datetime, unlink_id: str
    ) -> tuple[Unlink, tuple[Effect, ...]]:
        """Admin unmerge: `identifier` leaves its profile for a new one and may never rejoin the others.

        Returns the record to persist (replay it with `add_unlink` or `rebuild_all`) and the effects. Raises
        `UnlinkRefused` when the identifier is on no profile or alone on its profile.
        """
        rule = separation_for(self.graph, identifier, timestamp=timestamp, unlink_id=unlink_id)
        return rule, self.add_unlink(rule)

    def _target(self, entry: _Entry) -> str:
        live = self.graph.canonical(entry.target) if entry.target is not None else None
        if live is None:
            raise RuntimeError(f"record {_entry_id(entry.record)} resolves to no live profile")
        return live

    def _admit(self, record: Record) -> tuple[_Entry | None, Record | None]:
        """The entry to place (None when a record with the same (source, id) takes precedence), and the record
        it replaces when this one has the same (source, id) and an earlier key."""
        key = _entry_id(record)
        known = self._entries.get(key)
        if known is None:
            entry = _Entry(record)
            self._entries[key] = entry
            return entry, None
        self.stats.duplicates += 1
        if _precedence(known.record) <= _precedence(record):
            return None, None
        replaced, known.record = known.record, record
        return known, replaced

    def _place(self, entry: _Entry, replaced: Record | None) -> tuple[Effect, ...]:
        record = entry.record
        touched = record.touched() if replaced is None else (*record.touched(), *replaced.touched())
        roots = {self._find(i) for i in touched if i in self._parent}
        late = replaced is not None or any(self._newer(self._components[root], record.key) for root in roots)
        component = self._join(touched, roots)
        if replaced is None:
            component.entries.append(entry)
        if component.newest is None or record.key > component.newest:
            component.newest = record.key
        if isinstance(record, Unlink):
            component.newest_unlink = _latest(component.newest_unlink, record.key)
        if late and replaced is None and isinstance(record, Link) and not self._newer_unlink(component, record.key):
            quiet = quiet_outcome(self.graph, record)
            if quiet is not None:  # changes nothing wherever it falls: a replay would give the same graph
                self.stats.late_no_ops += 1
                entry.target = quiet.profile_id
                return quiet.effects
        if late:
            return self._replay(component, entry)
        self.stats.applied += 1
        if isinstance(record, Link):
            _, outcome = apply(self.graph, record)
            entry.target = outcome.profile_id
            effects = outcome.effects
        else:
            _, effects = unlink(self.graph, record)
        if effects:  # most events change nothing
            component.issued.update(e.profile_id for e in effects if isinstance(e, ProfileCreated))
            self._ledger.take(effects)
        return effects

    @staticmethod
    def _newer(component: _Component, key: RecordKey) -> bool:
        return component.newest is not None and component.newest > key

    @staticmethod
    def _newer_unlink(component: _Component, key: RecordKey) -> bool:
        return component.newest_unlink is not None and component.newest_unlink > key

    # ---- components ----------------------------------------------------------------------------------------

    def _find(self, identifier: Identifier) -> Identifier:
        parent = self._parent
        while parent[identifier] != identifier:
            parent[identifier] = parent[parent[identifier]]
            identifier = parent[identifier]
        return identifier

    def _join(self, touched: Iterable[Identifier], roots: set[Identifier]) -> _Component:
        ordered = sorted(roots, key=lambda r: -len(self._components[r].identifiers))
        if ordered:
            root = ordered[0]
            component = self._components[root]
            for other in ordered[1:]:
                component.absorb(self._components.pop(other))
                self._parent[other] = root
        else:
            root = next(iter(touched))
            component = _Component()
            self._components[root] = component
            self._parent[root] = root
            component.identifiers.append(root)
        for identifier in touched:
            if identifier not in self._parent:
                self._parent[identifier] = root
                component.identifiers.append(identifier)
        return component

    # ---- replay --------------------------------------------------------------------------------------------

    def _replay(self, component: _Component, focus: _Entry) -> tuple[Effect, ...]:
        """Rebuild one component from its records in key order; return what a store must change to match."""
        graph = self.graph
        self.stats.replays += 1
        self.stats.replayed += len(component.entries)
        identifiers = sorted(set(component.identifiers))
        before_owner: dict[Identifier, str] = {}
        before_provenance: dict[Identifier, Provenance] = {}
        for identifier in identifiers:
            owner, attached = graph.owner_of(identifier), graph.attached_by(identifier)
            if owner is not None and attached is not None:
                before_owner[identifier], before_provenance[identifier] = owner, attached

        graph.evict(identifiers)
        component.entries.sort(key=lambda e: e.record.key)
        merges: dict[str, ProfilesMerged] = {}
        refusals: list[Effect] = []
        for entry in component.entries:
            record = entry.record
            if isinstance(record, Link):
                _, outcome = apply(graph, record)
                entry.target = outcome.profile_id
                produced = outcome.effects
            else:
                _, produced = unlink(graph, record)
            for effect in produced:
                if isinstance(effect, ProfileCreated):
                    component.issued.add(effect.profile_id)
                elif isinstance(effect, ProfilesMerged):
                    merges[effect.merged] = effect
                elif isinstance(effect, LinkRefused) and entry is focus:
                    refusals.append(effect)

        live = {owner for i in identifiers if (owner := graph.owner_of(i)) is not None}
        self._repoint_retired(component, before_owner, live)
        effects = self._corrections(component, identifiers, before_provenance, live, merges)
        effects.extend(refusals)
        return tuple(effects)

    def _repoint_retired(self, component: _Component, before_owner: dict[Identifier, str], live: set[str]) -> None:
        """Every id the component ever issued that is not live after the replay resolves to a live profile: where
        the replay merged it, else where its strongest identifier went, else the oldest profile of the component."""
        graph = self.graph
        oldest = graph.oldest_first(live)[0].profile_id
        for pid in sorted(set(before_owner.values()) - live):
            if graph.canonical(pid) is None:
                old = sorted((i for i, owner in before_owner.items() if owner == pid), key=self._strength)
                heir = next((owner for i in old if (owner := graph.owner_of(i)) is not None), oldest)
                graph.redirect(pid, heir)
        for pid in sorted(component.issued - live):
            graph.redirect(pid, graph.canonical(pid) or oldest)

    def _corrections(
        self,
        component: _Component,
        identifiers: list[Identifier],
        before_provenance: dict[Identifier, Provenance],
        live: set[str],
        merges: dict[str, ProfilesMerged],
    ) -> list[Effect]:
        """The effects that bring what the store was told (the ledger) in line with the rebuilt graph."""
        graph, ledger = self.graph, self._ledger
        effects: list[Effect] = []

        def tell(effect: Effect) -> None:
            effects.append(effect)
            ledger.take((effect,))

        for pid in sorted(live - ledger.live):
            tell(ProfileCreated(pid, graph.state(pid).provenance))
        retired = [pid for pid in sorted(component.issued - live) if ledger.knows(pid)]
        # fixing one merge row can break a chain through it: repeat until every row resolves right. Each fix points
        # a row straight at a live profile, so it stays right, and len(retired) + 1 passes always suffice.
        for _ in range(len(retired) + 2):
            changed = False
            for pid in retired:
                target = graph.canonical(pid)
                if target is None or ledger.resolve(pid) == target:
                    continue
                merge = merges.get(pid)
                if merge is not None:
                    tell(ProfilesMerged(target, pid, merge.reason, merge.provenance))
                else:
                    tell(ProfileRemapped(pid, target, "rebuilt in event-time order; its identifiers moved"))
                changed = True
            if not changed:
                break
        else:
            raise RuntimeError("identity rebuild: merge rows do not converge; this is a bug")

        for identifier in identifiers:
            owner, told = graph.owner_of(identifier), ledger.owner_of(identifier)
            if owner is None:
                if identifier in ledger.owner:
                    gone_from = told or ledger.owner[identifier]
                    tell(IdentifierDetached(gone_from, identifier, "refused when rebuilt in event-time order"))
                continue
            provenance = graph.attached_by(identifier)
            assert provenance is not None
            if told != owner or before_provenance.get(identifier) != provenance:
                tell(IdentifierAttached(owner, identifier, provenance))

        for entry in component.entries:
            record = entry.record
            if not isinstance(record, Link) or entry.reported is None or entry.target is None:
                continue
            target = graph.canonical(entry.target)
            if target is not None and ledger.resolve(entry.reported) != target:
                tell(LinkRetargeted(record.source, record.message_id, record.timestamp, entry.reported, target))
                entry.reported = target
        return effects

    def _strength(self, identifier: Identifier) -> tuple[tuple[int, str], str]:
        return (self.graph.policy.rank(identifier.type), identifier.value)


def rebuild_all(
    links: Iterable[Link], policy: IdentityPolicy | None = None, unlinks: Iterable[Unlink] = ()
) -> IdentityResolver:
    """Build the graph from scratch: every record applied once, in key order (no replays)."""
    resolver = IdentityResolver(policy)
    records: list[Record] = [*links, *unlinks]
    for record in sorted(records, key=lambda r: r.key):
        if isinstance(record, Link):
            resolver.add(record)
        else:
            resolver.add_unlink(record)
    return resolver
