"""Identifiers of one event: which values it carries, normalized, with placeholders refused. Pure.

Taken from a Segment-shaped event (`NormalizedEvent.payload`):

| type           | from                                                                 | normalized            |
|----------------|----------------------------------------------------------------------|-----------------------|
| `user_id`      | `userId`                                                             | trimmed               |
| `anonymous_id` | `anonymousId`                                                        | trimmed               |
| `email`        | `traits.email` (identify only) and `context.traits.email`            | trimmed, lower case   |
| `phone`        | `traits.phone` (identify only) and `context.traits.phone`            | `+` and digits only   |
| `device_id`    | `context.device.id`                                                  | trimmed               |
| custom         | `context.externalIds[{id, type, collection: "users"}]`               | by type (email/phone) |

A group call's top-level traits describe the account, not the person, so they are not read; nor is `groupId`
(an account id shared by many people would merge them all).

Alias: `alias(previousId, userId)` links `previousId` to the new id (`user_id:userId`, or the event's anonymous id
when there is no userId). On the wire previousId is untyped, so it is offered as `user_id:previousId` then
`anonymous_id:previousId`; the graph takes the first already on a profile, else `anonymous_id` — a previousId never
seen before is most often the anonymous id of a visitor whose earlier events arrive later. When previousId equals
the event's own anonymousId it can only be that anonymous id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from orchestrion.collect.event import NormalizedEvent
from orchestrion.identity.config import TYPE_NAME, IdentityPolicy
from orchestrion.identity.links import Alias, Identifier, Link

BLOCKED: Final = "blocked"
INVALID: Final = "invalid"

_TYPE_NAME = re.compile(TYPE_NAME)
_NOT_TYPE_CHAR = re.compile(r"[^a-z0-9_]+")
_PHONE_NOISE = re.compile(r"[^0-9]")
_MIN_PHONE_DIGITS = 5
_SHOWN_VALUE = 80  # rejections are reported, not stored: keep them short


@dataclass(frozen=True, slots=True)
class Rejection:
    """An identifier value the event carried but that links nothing: `blocked` (a placeholder) or `invalid`."""

    identifier: Identifier
    reason: str


@dataclass(frozen=True, slots=True)
class Extraction:
    """The link an event makes (None when no usable identifier is left) and the values refused on the way."""

    link: Link | None
    rejected: tuple[Rejection, ...]


def _text(raw: Any) -> str | None:
    """Ids arrive as strings or numbers (the SDKs stringify numbers); anything else is no id."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        return None
    return (raw if isinstance(raw, str) else str(raw)).strip()


def normalize_value(identifier_type: str, text: str) -> str | None:
    """The canonical form of a value of this type, or None when it cannot be one (an email without @)."""
    if identifier_type == "email":
        email = text.strip().lower()
        local, at, domain = email.rpartition("@")
        if not at or not local or not domain or any(ch.isspace() for ch in email):
            return None
        return email
    if identifier_type == "phone":
        stripped = text.strip()
        digits = _PHONE_NOISE.sub("", stripped)
        if len(digits) < _MIN_PHONE_DIGITS:
            return None
        return ("+" if stripped.startswith("+") else "") + digits
    return text.strip()


def _custom_type(raw: Any) -> str | None:
    if not isinstance(raw, str):
        return None
    name = _NOT_TYPE_CHAR.sub("_", raw.strip().lower()).strip("_")
    return name if _TYPE_NAME.match(name) else None


class _Collector:
    """Accumulates the identifiers of one event, refusing placeholders and malformed values."""

    def __init__(self, policy: IdentityPolicy) -> None:
        self.policy = policy
        self.accepted: list[Identifier] = []
        self.rejected: list[Rejection] = []

    def check(self, identifier_type: str, raw: Any) -> Identifier | None:
        """The normalized identifier, or None (recording a rejection when the value was refused)."""
        if raw is None or not self.policy.counts(identifier_type):
            return None
        text = _text(raw)
        if text is None:
            self.rejected.append(Rejection(Identifier(identifier_type, repr(raw)[:_SHOWN_VALUE]), INVALID))
            return None
        if self.policy.is_blocked(identifier_type, text):
            self.rejected.append(Rejection(Identifier(identifier_type, text[:_SHOWN_VALUE]), BLOCKED))
            return None
        value = normalize_value(identifier_type, text)
        if value is None or len(value) > self.policy.max_value_length:
            self.rejected.append(Rejection(Identifier(identifier_type, text[:_SHOWN_VALUE]), INVALID))
            return None
        if self.policy.is_blocked(identifier_type, value):
            self.rejected.append(Rejection(Identifier(identifier_type, value[:_SHOWN_VALUE]), BLOCKED))
            return None
        return Identifier(identifier_type, value)

    def add(self, identifier_type: str, raw: Any) -> Identifier | None:
        identifier = self.check(identifier_type, raw)
        if identifier is not None and identifier not in self.accepted:
            self.accepted.append(identifier)
        return identifier


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _external_ids(collector: _Collector, context: Mapping[str, Any]) -> None:
    entries = context.get("externalIds")
    if not isinstance(entries, list):
        return
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        if entry.get("collection") not in (None, "users"):
            continue  # "accounts" ids identify companies, not people
        identifier_type = _custom_type(entry.get("type"))
        if identifier_type is None:
            collector.rejected.append(
                Rejection(Identifier("external_id", str(entry.get("type"))[:_SHOWN_VALUE]), INVALID)
            )
            continue
        collector.add(identifier_type, entry.get("id"))


def _alias(collector: _Collector, payload: Mapping[str, Any]) -> Alias | None:
    previous = _text(payload.get("previousId"))
    if previous is None:
        return None
    target = collector.check("user_id", payload.get("userId")) or collector.check(
        "anonymous_id", payload.get("anonymousId")
    )
    if target is None:
        return None
    kinds = ("anonymous_id",) if previous == _text(payload.get("anonymousId")) else ("user_id", "anonymous_id")
    candidates = []
    for kind in kinds:
        candidate = collector.check(kind, previous)
        if candidate is not None and candidate != target:
            candidates.append(candidate)
    if not candidates:
        return None
    return Alias(target=target, candidates=tuple(candidates))


def extract_identifiers(payload: Mapping[str, Any], policy: IdentityPolicy) -> tuple[list[Identifier], list[Rejection]]:
    """The identifiers of one Segment-shaped event, in discovery order, and the values refused."""
    collector = _Collector(policy)
    context = _mapping(payload.get("context"))
    context_traits = _mapping(context.get("traits"))
    top_traits = _mapping(payload.get("traits")) if payload.get("type") == "identify" else {}
    collector.add("user_id", payload.get("userId"))
    collector.add("anonymous_id", payload.get("anonymousId"))
    for traits in (top_traits, context_traits):
        collector.add("email", traits.get("email"))
        collector.add("phone", traits.get("phone"))
    collector.add("device_id", _mapping(context.get("device")).get("id"))
    _external_ids(collector, context)
    return collector.accepted, collector.rejected


def link_of(event: NormalizedEvent, policy: IdentityPolicy) -> Extraction:
    """The link one normalized event makes, keyed by its corrected timestamp and messageId."""
    identifiers, rejected = extract_identifiers(event.payload, policy)
    alias = None
    if event.type == "alias":
        collector = _Collector(policy)
        alias = _alias(collector, event.payload)
        rejected.extend(r for r in collector.rejected if r not in rejected)
    if not identifiers:
        return Extraction(link=None, rejected=tuple(rejected))
    link = Link(
        timestamp=event.timestamp,
        message_id=event.message_id,
        source=event.source,
        identifiers=tuple(identifiers),
        alias=alias,
    )
    return Extraction(link=link, rejected=tuple(rejected))
