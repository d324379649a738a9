"""What applying a link or an unlink changed, as values: the only way the identity graph reports a change.

A store keeps its tables in step by applying these in order:

| effect               | table change                                                                          |
|----------------------|---------------------------------------------------------------------------------------|
| `ProfileCreated`     | insert the profile (or make it live again after a rebuild: drop its merge row)         |
| `IdentifierAttached` | upsert identity_graph(type, value) -> profile_id: the identifier now belongs there     |
| `IdentifierDetached` | delete the identity_graph row: the identifier belongs to no profile any more           |
| `ProfilesMerged`     | merge row merged -> survivor; every identifier of `merged` now belongs to `survivor`   |
| `ProfileRemapped`    | merge row old -> new (a rebuild retired `old`); its identifiers are re-attached apart  |
| `LinkRefused`        | a refusal log row: this event's identifier was not linked, and why                     |
| `LinkRetargeted`     | events of that message now belong to `new_profile`                                     |

`survivor` / `new` are live when the call that returned the effect returns; they may be merged later, so a store
keeping a flat canonical map also repoints rows whose target is the merged id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from orchestrion.identity.links import Identifier, Provenance

LIMIT: Final = "limit"  # a per-type limit (user_id: 1) would be exceeded
PROFILE_SIZE: Final = "profile_size"  # max_identifiers_per_profile would be exceeded
UNMERGED: Final = "unmerged"  # an admin separated these identifiers


@dataclass(frozen=True, slots=True)
class ProfileCreated:
    profile_id: str
    provenance: Provenance


@dataclass(frozen=True, slots=True)
class IdentifierAttached:
    profile_id: str
    identifier: Identifier
    provenance: Provenance


@dataclass(frozen=True, slots=True)
class IdentifierDetached:
    profile_id: str
    identifier: Identifier
    reason: str


@dataclass(frozen=True, slots=True)
class ProfilesMerged:
    survivor: str
    merged: str
    reason: str
    provenance: Provenance


@dataclass(frozen=True, slots=True)
class ProfileRemapped:
    old: str
    new: str
    reason: str


@dataclass(frozen=True, slots=True)
class LinkRefused:
    """`identifier` of this event was dropped from its link; `code` is LIMIT, PROFILE_SIZE or UNMERGED."""

    identifier: Identifier
    code: str
    reason: str
    profile_id: str
    provenance: Provenance


@dataclass(frozen=True, slots=True)
class LinkRetargeted:
    source: str
    message_id: str
    timestamp: dt.datetime
    old_profile: str
    new_profile: str


Effect = (
    ProfileCreated
    | IdentifierAttached
    | IdentifierDetached
    | ProfilesMerged
    | ProfileRemapped
    | LinkRefused
    | LinkRetargeted
)


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """The profile an event now belongs to, and what linking it changed."""

    profile_id: str
    effects: tuple[Effect, ...]
    duplicate: bool = False  # the (source, messageId) was seen before: nothing was applied
