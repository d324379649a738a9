"""The inputs of identity resolution: identifiers, the links events make between them, and admin unlinks.

A `Link` is what one event says about identity: "these identifiers belong to one person". An `Unlink` is what an
admin says: "this identifier is not the person the others are". Both are ordered by a `RecordKey` — event time,
then id — and the identity graph is a function of the records taken in that order.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from orchestrion.identity.config import TYPE_NAME

ADMIN_SOURCE: Final = "admin"
_TYPE_NAME = re.compile(TYPE_NAME)

# (time, message id or unlink id, source, kind): a total order. kind 0 = link, 1 = unlink, so an unlink and a
# link that share a time and an id still compare.
RecordKey = tuple[dt.datetime, str, str, int]


class Identifier(NamedTuple):
    """One typed, normalized identifier value: `user_id:u1`, `email:ann@example.com`.

    A named tuple rather than a dataclass: identifiers are hashed and compared on every link, and tuples do that in C.
    """

    type: str
    value: str

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> Identifier:
        """Read `type:value` (the value may contain ':'); raise ValueError naming the expected form."""
        kind, sep, value = text.partition(":")
        if not sep or not value or not _TYPE_NAME.match(kind):
            raise ValueError(f"identifier {text!r} must be type:value, e.g. user_id:u1 or email:ann@example.com")
        return cls(kind, value)


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a fact came from: the event (or admin action) and its time."""

    timestamp: dt.datetime
    message_id: str
    source: str


@dataclass(frozen=True, slots=True)
class Alias:
    """The identity part of an `alias(previousId, userId)` call.

    `previousId` is untyped on the wire: it may be an anonymous id or an earlier user id. `candidates` lists the
    identifiers it may stand for in order of preference; when the link is applied, the first one already on a
    profile is taken, otherwise the last (see `identifiers.py` for how the list is built).
    """

    target: Identifier
    candidates: tuple[Identifier, ...]


@dataclass(frozen=True, slots=True)
class Link:
    """What one event says: its identifiers belong to one person (plus, for `alias`, a previous id)."""

    timestamp: dt.datetime
    message_id: str
    source: str
    identifiers: tuple[Identifier, ...]
    alias: Alias | None = None
    key: RecordKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None:
            raise ValueError(f"link {self.message_id!r}: timestamp must be timezone-aware")
        if not self.identifiers:
            raise ValueError(f"link {self.message_id!r} has no identifier; events without one link nothing")
        object.__setattr__(self, "identifiers", tuple(sorted(set(self.identifiers))))
        object.__setattr__(self, "key", (self.timestamp, self.message_id, self.source, 0))

    @property
    def provenance(self) -> Provenance:
        return Provenance(self.timestamp, self.message_id, self.source)

    def touched(self) -> tuple[Identifier, ...]:
        """Every identifier whose profile this link may read or change."""
        if self.alias is None:
            return self.identifiers
        return (*self.identifiers, self.alias.target, *self.alias.candidates)


@dataclass(frozen=True, slots=True)
class Unlink:
    """An admin unmerge: `identifier` leaves its profile and may never again share one with `separated_from`.

    `separated_from` is fixed when the admin acts (the other identifiers of the profile then), so replaying the
    records in any order applies exactly the same rule.
    """

    timestamp: dt.datetime
    unlink_id: str
    identifier: Identifier
    separated_from: frozenset[Identifier]
    key: RecordKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None:
            raise ValueError(f"unlink {self.unlink_id!r}: timestamp must be timezone-aware")
        object.__setattr__(self, "separated_from", frozenset(self.separated_from - {self.identifier}))
        object.__setattr__(self, "key", (self.timestamp, self.unlink_id, ADMIN_SOURCE, 1))

    @property
    def provenance(self) -> Provenance:
        return Provenance(self.timestamp, self.unlink_id, ADMIN_SOURCE)

    def touched(self) -> tuple[Identifier, ...]:
        return (self.identifier, *sorted(self.separated_from))


Record = Link | Unlink
