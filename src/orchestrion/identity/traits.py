"""Profile traits: last write wins by event time, each value with its provenance. Pure, no I/O.

Every trait keeps the value of the event with the greatest (timestamp, messageId, source) — the corrected event time,
not the arrival time — so a late-arriving older event never overwrites a newer value, and the result is the same in
any arrival order. (Two different values with the very same key, which only a broken client sends, are ordered by
their JSON text so that even then the result does not depend on arrival.)

Read from each event:

- traits: an identify call's `traits` and any event's `context.traits` (a group call's top-level traits describe
  the account, so they are left out); the top-level ones win within one event. Top-level keys are the unit:
  `address` is replaced as a whole. An explicit `null` is a value (the trait was cleared).
- maintained fields: `timezone` (context.timezone), `locale` (context.locale), `device_os` (context.os.name),
  `country` (context.location.country, else traits.address.country), plus `first_seen` / `last_seen`, the earliest
  and latest event of the profile.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrion.collect.event import NormalizedEvent
from orchestrion.identity.links import Provenance

MAINTAINED_FIELDS = ("timezone", "locale", "device_os", "country")

_Order = tuple[Any, ...]


def _order(provenance: Provenance) -> tuple[Any, str, str]:
    return (provenance.timestamp, provenance.message_id, provenance.source)


@dataclass(frozen=True, slots=True)
class TraitValue:
    """A trait's value and the event it came from."""

    value: Any
    provenance: Provenance

    def order(self) -> _Order:
        return _order(self.provenance)

    def beats(self, other: TraitValue) -> bool:
        """Whether this value replaces `other` under last-write-wins."""
        mine, theirs = self.order(), other.order()
        if mine != theirs:
            return mine > theirs
        return _canonical(self.value) > _canonical(other.value)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class TraitObservation:
    """What one event says about its person's traits."""

    provenance: Provenance
    traits: Mapping[str, Any]
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ProfileTraits:
    """A profile's traits and maintained fields, with provenance; immutable (updates return a new one)."""

    traits: Mapping[str, TraitValue] = field(default_factory=dict)
    fields: Mapping[str, TraitValue] = field(default_factory=dict)
    first_seen: Provenance | None = None
    last_seen: Provenance | None = None

    def values(self) -> dict[str, Any]:
        """The plain trait values, maintained fields included (`first_seen`/`last_seen` as datetimes)."""
        result = {name: item.value for name, item in sorted(self.traits.items())}
        result.update({name: item.value for name, item in sorted(self.fields.items())})
        if self.first_seen is not None:
            result["first_seen"] = self.first_seen.timestamp
        if self.last_seen is not None:
            result["last_seen"] = self.last_seen.timestamp
        return result


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def observation_of(event: NormalizedEvent) -> TraitObservation:
    """The traits and maintained fields one normalized event carries."""
    payload = event.payload
    context = _mapping(payload.get("context"))
    traits: dict[str, Any] = dict(_mapping(context.get("traits")))
    if event.type == "identify":
        traits.update(_mapping(payload.get("traits")))
    fields: dict[str, Any] = {}
    candidates = {
        "timezone": context.get("timezone"),
        "locale": context.get("locale"),
        "device_os": _mapping(context.get("os")).get("name"),
        "country": _text(_mapping(context.get("location")).get("country"))
        or _mapping(traits.get("address")).get("country"),
    }
    for name, value in candidates.items():
        text = _text(value)
        if text is not None:
            fields[name] = text
    return TraitObservation(Provenance(event.timestamp, event.message_id, event.source), traits, fields)


def _lww(current: Mapping[str, TraitValue], incoming: Mapping[str, TraitValue]) -> dict[str, TraitValue]:
    result = dict(current)
    for name, candidate in incoming.items():
        held = result.get(name)
        if held is None or candidate.beats(held):
            result[name] = candidate
    return result


def _earliest(a: Provenance | None, b: Provenance | None) -> Provenance | None:
    if a is None or b is None:
        return a or b
    return a if _order(a) <= _order(b) else b


def _latest(a: Provenance | None, b: Provenance | None) -> Provenance | None:
    if a is None or b is None:
        return a or b
    return a if _order(a) >= _order(b) else b


def record(profile: ProfileTraits, observation: TraitObservation) -> ProfileTraits:
    """The profile's traits after one more event, whatever the order events arrive in."""
    stamp = observation.provenance
    return ProfileTraits(
        traits=_lww(profile.traits, {k: TraitValue(v, stamp) for k, v in observation.traits.items()}),
        fields=_lww(profile.fields, {k: TraitValue(v, stamp) for k, v in observation.fields.items()}),
        first_seen=_earliest(profile.first_seen, stamp),
        last_seen=_latest(profile.last_seen, stamp),
    )


def merge_traits(survivor: ProfileTraits, merged: ProfileTraits) -> ProfileTraits:
    """The traits of two profiles merged into one: per trait the later write wins, as if one profile had seen all
    the events (so the order of the arguments does not matter)."""
    return ProfileTraits(
        traits=_lww(survivor.traits, merged.traits),
        fields=_lww(survivor.fields, merged.fields),
        first_seen=_earliest(survivor.first_seen, merged.first_seen),
        last_seen=_latest(survivor.last_seen, merged.last_seen),
    )


def traits_of(events: Iterable[NormalizedEvent]) -> ProfileTraits:
    """The traits of a profile built from its events (in any order)."""
    profile = ProfileTraits()
    for event in events:
        profile = record(profile, observation_of(event))
    return profile
