"""The normalized event: what the collection stage hands to storage and to every later stage."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

EVENT_TYPES = ("identify", "track", "page", "screen", "group", "alias")


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one event cannot be accepted: a stable code, the field (JSON pointer) and a sentence."""

    code: str
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "field": self.field, "message": self.message}


@dataclass(slots=True)
class NormalizedEvent:
    """One accepted event with corrected time fields; `payload` is the full event as stored."""

    source: str
    message_id: str
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    timestamp: dt.datetime
    original_timestamp: dt.datetime
    sent_at: dt.datetime
    received_at: dt.datetime
    payload: dict[str, Any]
    violations: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class QuarantinedEvent:
    """An event kept aside with its reasons, replayable once fixed.

    `kind` is `invalid` (breaks the wire contract) or `blocked` (breaks a tracking plan in block mode).
    """

    source: str
    kind: str
    batch_index: int
    message_id: str | None
    event: str | None
    reasons: list[Problem]
    raw: Any
    received_at: dt.datetime
