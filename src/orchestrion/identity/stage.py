"""The identity stage of the conductor: resolve each event to a profile, keep traits and consent, drop erased.

Holds the in-memory resolver (rebuilt from `identity_links` at start) and turns a page of events into one
`ProcessingStep` that the store commits with the checkpoint. The resolver is the source of truth for the graph;
the tables mirror it so that SQL models can join on them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Iterable
from typing import Any

from orchestrion.collect.event import NormalizedEvent
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
from orchestrion.identity.identifiers import link_of
from orchestrion.identity.links import Alias, Identifier, Link, Provenance, Unlink
from orchestrion.identity.resolver import IdentityResolver, rebuild_all
from orchestrion.identity.traits import ProfileTraits, TraitValue, merge_traits, observation_of, record, traits_of
from orchestrion.store.ports import PIPELINE_CHECKPOINT as CHECKPOINT
from orchestrion.store.ports import Store, StoredEvent
from orchestrion.store.profile_rows import (
    ConsentRow,
    GraphRow,
    LinkRow,
    MergeRow,
    ProcessingStep,
    ProfileRow,
    RefusalRow,
    UnlinkRow,
)

ConsentReader = Callable[[NormalizedEvent, str], list[ConsentRow]]
ERASURE_SALT = "erasure_salt"


def tombstone_hash(salt: str, identifier: Identifier) -> str:
    """A salted hash of an erased identifier: late events can be recognised, the value cannot be read back."""
    return hashlib.sha256(f"{salt}\x1f{identifier.type}\x1f{identifier.value}".encode()).hexdigest()


# -- conversions between the pure types and stored rows ------------------------------------------------
def link_from_row(row: LinkRow, identifiers: IdentifierCache | None = None) -> Link:
    parse = identifiers or IdentifierCache()
    alias = None
    if row.alias:
        alias = Alias(target=parse.one(row.alias["target"]), candidates=parse.many(row.alias["candidates"]))
    return Link(
        timestamp=row.timestamp,
        message_id=row.message_id,
        source=row.source,
        identifiers=parse.many(row.identifiers),
        alias=alias,
    )


class IdentifierCache:
    """`Identifier.parse` remembering its answers: a rebuild reads a person's few identifiers in many links."""

    def __init__(self) -> None:
        self._one: dict[str, Identifier] = {}
        self._many: dict[tuple[str, ...], tuple[Identifier, ...]] = {}

    def one(self, text: str) -> Identifier:
        found = self._one.get(text)
        if found is None:
            found = self._one[text] = Identifier.parse(text)
        return found

    def many(self, texts: list[str]) -> tuple[Identifier, ...]:
        key = tuple(texts)
        found = self._many.get(key)
        if found is None:
            found = self._many[key] = tuple(self.one(text) for text in texts)
        return found


def link_row(stored: StoredEvent, link: Link, profile_id: str) -> LinkRow:
    """The stored form of the link an event made and the profile it resolved to."""
    event = stored.event
    return LinkRow(
        seq=stored.seq,
        source=event.source,
        message_id=event.message_id,
        timestamp=event.timestamp,
        identifiers=[str(i) for i in link.identifiers],
        alias=(
            {"target": str(link.alias.target), "candidates": [str(c) for c in link.alias.candidates]}
            if link.alias
            else None
        ),
        profile_id=profile_id,
    )


def unlink_from_row(row: UnlinkRow) -> Unlink:
    return Unlink(
        timestamp=row.timestamp,
        unlink_id=row.unlink_id,
        identifier=Identifier.parse(row.identifier),
        separated_from=frozenset(Identifier.parse(i) for i in row.separated_from),
    )


def _stamp(provenance: Provenance) -> list[str]:
    return [provenance.timestamp.isoformat(), provenance.message_id, provenance.source]


def _provenance(raw: list[str]) -> Provenance:
    return Provenance(dt.datetime.fromisoformat(raw[0]), raw[1], raw[2])


def profile_row(profile_id: str, traits: ProfileTraits) -> ProfileRow:
    fields = {name: item.value for name, item in traits.fields.items()}
    stamps: dict[Provenance, list[str]] = {}  # most values of a profile come from a few events: format each once

    def stamp(provenance: Provenance) -> list[str]:
        found = stamps.get(provenance)
        if found is None:
            found = stamps[provenance] = _stamp(provenance)
        return found

    provenance: dict[str, Any] = {
        "traits": {name: stamp(item.provenance) for name, item in sorted(traits.traits.items())},
        "fields": {name: stamp(item.provenance) for name, item in sorted(traits.fields.items())},
        "first_seen": stamp(traits.first_seen) if traits.first_seen else None,
        "last_seen": stamp(traits.last_seen) if traits.last_seen else None,
    }
    return ProfileRow(
        profile_id=profile_id,
        traits={name: item.value for name, item in sorted(traits.traits.items())},
        trait_provenance=provenance,
        first_seen=traits.first_seen.timestamp if traits.first_seen else None,
        last_seen=traits.last_seen.timestamp if traits.last_seen else None,
        timezone=fields.get("timezone"),
        locale=fields.get("locale"),
        device_os=fields.get("device_os"),
        country=fields.get("country"),
    )


def traits_from_row(row: ProfileRow) -> ProfileTraits:
    stamps = row.trait_provenance
    fields = {"timezone": row.timezone, "locale": row.locale, "device_os": row.device_os, "country": row.country}
    return ProfileTraits(
        traits={
            name: TraitValue(value, _provenance(stamps["traits"][name]))
            for name, value in row.traits.items()
            if name in stamps.get("traits", {})
        },
        fields={
            name: TraitValue(fields[name], _provenance(stamp))
            for name, stamp in stamps.get("fields", {}).items()
            if fields.get(name) is not None
        },
        first_seen=_provenance(stamps["first_seen"]) if stamps.get("first_seen") else None,
        last_seen=_provenance(stamps["last_seen"]) if stamps.get("last_seen") else None,
    )


class IdentityStage:
    """Identity resolution inside the processing path; thread-safe (admin actions share the lock)."""

    def __init__(self, store: Store, policy: IdentityPolicy, consent_of: ConsentReader | None = None) -> None:
        self.store = store
        self.policy = policy
        self.consent_of = consent_of
        self.lock = threading.RLock()
        self.resolver = IdentityResolver(policy)
        self.salt = ""
        self.tombstones: set[str] = set()
        self._traits: dict[str, ProfileTraits] = {}
        self._stored_traits: dict[str, ProfileTraits] = {}  # stored rows read ahead for the page in process
        self.dropped_erased = 0
        self.epoch = 0  # identity epoch of the loaded state (admin changes bump it)
        self.position = 0  # processing checkpoint the in-memory state reflects

    def load(self) -> None:
        """Rebuild the resolver from the stored records (start-up, and after an erasure or a failed step)."""
        with self.lock:
            links, unlinks = self.store.identity_records()
            identifiers = IdentifierCache()
            self.resolver = rebuild_all(
                (link_from_row(r, identifiers) for r in links), self.policy, (unlink_from_row(u) for u in unlinks)
            )
            self.salt = self.store.workspace_secret(ERASURE_SALT)
            self.tombstones = self.store.tombstones()
            self.epoch = self.store.identity_epoch()
            self.position = self.store.processing_position(CHECKPOINT)
            self._traits.clear()

    def ensure_current(self) -> None:
        """Reload when another process changed identity since (a standby acting, or acted upon, in scale-out)."""
        with self.lock:
            if self.store.identity_epoch() != self.epoch or self.store.processing_position(CHECKPOINT) != self.position:
                self.load()

    # -- the processing step ---------------------------------------------------------------------
    def process(self, page: list[StoredEvent], position: int, checkpoint: str) -> ProcessingStep:
        with self.lock:
            if self.store.identity_epoch() != self.epoch:
                self.load()  # an erasure or unmerge happened through another process
            step = ProcessingStep(checkpoint=checkpoint, position=position)
            touched_identifiers: set[Identifier] = set()
            touched_profiles: set[str] = set()
            changed_traits: dict[str, ProfileTraits] = {}
            rebuilt: set[str] = set()
            # First resolve every event (the resolver never reads traits), then fold traits and consent in the
            # same order: the stored traits of every profile the page touches are then read in one query.
            resolved: list[tuple[StoredEvent, Link, LinkOutcome]] = []
            for stored in page:
                extraction = link_of(stored.event, self.policy)
                if extraction.link is None:
                    continue
                link = self._without_erased(extraction.link, stored, step)
                if link is None:
                    continue
                outcome = self.resolver.add(link)
                if outcome.duplicate:
                    continue
                step.links.append(link_row(stored, link, outcome.profile_id))
                resolved.append((stored, link, outcome))
            self._prefetch_traits(resolved)
            try:
                for stored, link, outcome in resolved:
                    event = stored.event
                    self._translate(
                        outcome.effects, step, touched_identifiers, touched_profiles, changed_traits, rebuilt
                    )
                    current = changed_traits.get(outcome.profile_id) or self._load_traits(outcome.profile_id)
                    changed_traits[outcome.profile_id] = record(current, observation_of(event))
                    touched_identifiers.update(link.identifiers)
                    if self.consent_of is not None:
                        step.consent.extend(self.consent_of(event, outcome.profile_id))
            finally:
                self._stored_traits.clear()
            self._finish(step, touched_identifiers, touched_profiles, changed_traits, rebuilt)
            self.position = position
            return step

    def _without_erased(self, link: Link, stored: StoredEvent, step: ProcessingStep) -> Link | None:
        """The link with erased identifiers taken out; None (and the event dropped) when it is the erased person's.

        An event is the erased person's when its strongest identifier (by priority) is erased: a late event from
        their phone is dropped and counted, also when it carries a shared device id that another live profile owns
        (it must not land on that profile with the erased ids in its payload). The shared iPad's next event from the
        other owner, or a new owner's first event on the erased person's old device, keeps its place, without the
        erased device id.
        """
        if not self.tombstones:
            return link
        hashes = {identifier: tombstone_hash(self.salt, identifier) for identifier in link.touched()}
        erased = {identifier for identifier, digest in hashes.items() if digest in self.tombstones}
        if not erased:
            return link
        kept = tuple(i for i in link.identifiers if i not in erased)
        strongest = min(link.identifiers, key=lambda i: (self.policy.rank(i.type), i.value))
        if not kept or strongest in erased:
            step.dropped_seqs.append(stored.seq)
            for identifier in erased:
                step.dropped_by_hash[hashes[identifier]] = step.dropped_by_hash.get(hashes[identifier], 0) + 1
            self.dropped_erased += 1
            return None
        alias = link.alias
        if alias is not None:
            candidates = tuple(c for c in alias.candidates if c not in erased)
            alias = None if alias.target in erased or not candidates else Alias(alias.target, candidates)
        return Link(
            timestamp=link.timestamp, message_id=link.message_id, source=link.source, identifiers=kept, alias=alias
        )

    def step_for_effects(self, effects: Iterable[Effect]) -> ProcessingStep:
        """The rows an admin action's effects change (an unmerge): graph, merges, and refolded traits."""
        with self.lock:
            step = ProcessingStep()
            identifiers: set[Identifier] = set()
            profiles: set[str] = set()
            changed: dict[str, ProfileTraits] = {}
            rebuilt: set[str] = set()
            self._translate(effects, step, identifiers, profiles, changed, rebuilt)
            self._finish(step, identifiers, profiles, changed, rebuilt | profiles)
            return step

    def _translate(
        self,
        effects: Iterable[Effect],
        step: ProcessingStep,
        identifiers: set[Identifier],
        profiles: set[str],
        changed: dict[str, ProfileTraits],
        rebuilt: set[str],
    ) -> None:
        for effect in effects:
            if isinstance(effect, ProfileCreated):
                step.revived.append(effect.profile_id)
                profiles.add(effect.profile_id)
            elif isinstance(effect, IdentifierAttached | IdentifierDetached):
                identifiers.add(effect.identifier)
                profiles.add(effect.profile_id)
                if isinstance(effect, IdentifierDetached):
                    rebuilt.add(effect.profile_id)
            elif isinstance(effect, ProfilesMerged):
                step.merges.append(
                    MergeRow(
                        effect.merged,
                        effect.survivor,
                        effect.reason,
                        effect.provenance.message_id,
                        effect.provenance.timestamp,
                    )
                )
                survivor = changed.get(effect.survivor) or self._load_traits(effect.survivor)
                merged = changed.pop(effect.merged, None) or self._load_traits(effect.merged)
                changed[effect.survivor] = merge_traits(survivor, merged)
                self._traits.pop(effect.merged, None)
                step.deleted_profiles.append(effect.merged)
                profiles.update((effect.survivor, effect.merged))
            elif isinstance(effect, ProfileRemapped):
                step.merges.append(MergeRow(effect.old, effect.new, effect.reason, None, dt.datetime.now(dt.UTC)))
                step.deleted_profiles.append(effect.old)
                changed.pop(effect.old, None)
                self._traits.pop(effect.old, None)
                profiles.update((effect.old, effect.new))
                rebuilt.add(effect.new)
            elif isinstance(effect, LinkRefused):
                step.refusals.append(
                    RefusalRow(
                        effect.provenance.source,
                        effect.provenance.message_id,
                        effect.identifier.type,
                        effect.identifier.value,
                        effect.code,
                        effect.reason,
                        effect.profile_id,
                        effect.provenance.timestamp,
                    )
                )
            elif isinstance(effect, LinkRetargeted):
                step.retargets.append((effect.source, effect.message_id, effect.new_profile))
                rebuilt.update((effect.old_profile, effect.new_profile))

    def _finish(
        self,
        step: ProcessingStep,
        identifiers: set[Identifier],
        profiles: set[str],
        changed: dict[str, ProfileTraits],
        rebuilt: set[str],
    ) -> None:
        graph = self.resolver.graph
        for profile_id in profiles:
            view = graph.profile(profile_id) if graph.canonical(profile_id) == profile_id else None
            if view is not None:
                identifiers.update(view.identifiers)
        for identifier in sorted(identifiers):
            owner = self.resolver.resolve(identifier)
            provenance = graph.attached_by(identifier)
            if owner is None or provenance is None:
                step.graph_deletes.append((identifier.type, identifier.value))
            else:
                step.graph_upserts.append(
                    GraphRow(
                        identifier.type,
                        identifier.value,
                        owner,
                        provenance.timestamp,
                        provenance.message_id,
                        provenance.source,
                    )
                )
        live_rebuilt = {p for p in (graph.canonical(r) for r in rebuilt) if p is not None}
        if live_rebuilt:
            changed.update(self._recompute(live_rebuilt, step))
        for profile_id, traits in changed.items():
            if graph.canonical(profile_id) != profile_id:
                continue
            self._traits[profile_id] = traits
            step.profiles.append(profile_row(profile_id, traits))

    def _recompute(self, profile_ids: set[str], step: ProcessingStep) -> dict[str, ProfileTraits]:
        """After a late event rebuilt a component, a profile's traits are refolded from its events (the events of
        all these profiles are read at once; the resolver finds each profile's within its component)."""
        owner_of_key = {key: profile_id for profile_id in profile_ids for key in self.resolver.messages_of(profile_id)}
        events: dict[str, list[NormalizedEvent]] = {profile_id: [] for profile_id in profile_ids}
        for stored in self.store.events_by_keys(list(owner_of_key)):
            events[owner_of_key[(stored.event.source, stored.event.message_id)]].append(stored.event)
        return {profile_id: traits_of(found) for profile_id, found in events.items()}

    def _prefetch_traits(self, resolved: list[tuple[StoredEvent, Link, LinkOutcome]]) -> None:
        """Read the stored traits of the profiles a page's outcomes name (and are not cached) in one query."""
        wanted: set[str] = set()
        for _, _, outcome in resolved:
            wanted.add(outcome.profile_id)
            for effect in outcome.effects:
                if isinstance(effect, ProfilesMerged):
                    wanted.update((effect.survivor, effect.merged))
        missing = sorted(wanted.difference(self._traits))
        if not missing:
            return
        self._stored_traits = dict.fromkeys(missing, ProfileTraits())
        for row in self.store.profile_rows(missing):
            self._stored_traits[row.profile_id] = traits_from_row(row)

    def _load_traits(self, profile_id: str) -> ProfileTraits:
        cached = self._traits.get(profile_id)
        if cached is not None:
            return cached
        stored = self._stored_traits.get(profile_id)  # read for this page before any of its effects
        if stored is not None:
            return stored
        row = self.store.profile_row(profile_id)
        return traits_from_row(row) if row is not None else ProfileTraits()

    def forget_cache(self) -> None:
        with self.lock:
            self._traits.clear()
