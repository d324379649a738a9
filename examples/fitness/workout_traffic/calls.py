"""A client call of the simulated traffic, and what the server should make of a list of them."""

from __future__ import annotations

import copy
import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Call:
    """One call a client makes: an SDK method (identify, track, page, screen) with its arguments."""

    source: str
    kind: str
    timestamp: dt.datetime
    message_id: str
    user_id: str | None = None
    anonymous_id: str | None = None
    event: str | None = None
    name: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    transport: str = "sdk"  # sdk: rudder-sdk-python; http: a hand-rolled client posting /v1/batch itself
    expect: str = "stored"  # stored | blocked | invalid | duplicate
    mistake: str | None = None  # the violation kind (or the invalid reason) planted on purpose
    wire_overrides: dict[str, Any] = field(default_factory=dict)  # http only: fields as the broken client sends

    def sdk_arguments(self) -> dict[str, Any]:
        """Keyword arguments for the RudderStack Python SDK method named by `kind` (copies: the SDK mutates)."""
        arguments: dict[str, Any] = {
            "user_id": self.user_id,
            "anonymous_id": self.anonymous_id,
            "context": copy.deepcopy(self.context),
            "timestamp": self.timestamp,
            "message_id": self.message_id,
        }
        if self.kind == "track":
            arguments.update(event=self.event, properties=copy.deepcopy(self.properties))
        elif self.kind == "identify":
            arguments["traits"] = copy.deepcopy(self.traits)
        else:
            arguments.update(name=self.name, properties=copy.deepcopy(self.properties))
        return arguments

    def wire_event(self) -> dict[str, Any]:
        """The event as a client that builds JSON itself would post it inside /v1/batch."""
        event: dict[str, Any] = {
            "type": self.kind,
            "messageId": self.message_id,
            "userId": self.user_id,
            "anonymousId": self.anonymous_id,
            "timestamp": self.timestamp.isoformat(),
            "context": copy.deepcopy(self.context),
        }
        if self.kind == "track":
            event.update(event=self.event, properties=copy.deepcopy(self.properties))
        elif self.kind == "identify":
            event["traits"] = copy.deepcopy(self.traits)
        else:
            event.update(name=self.name, properties=copy.deepcopy(self.properties))
        event.update(self.wire_overrides)
        return {k: v for k, v in event.items() if v is not None}


@dataclass(frozen=True)
class Expectation:
    """What the server should report for a list of calls."""

    sent: int
    stored: int
    duplicates: int
    violations: Counter[str]  # stored events annotated, by violation kind
    blocked: Counter[str]  # quarantined by a plan in block mode, by violation kind
    invalid: Counter[str]  # quarantined for breaking the wire contract, by reason


def expectation(calls: list[Call]) -> Expectation:
    return Expectation(
        sent=len(calls),
        stored=sum(1 for c in calls if c.expect == "stored"),
        duplicates=sum(1 for c in calls if c.expect == "duplicate"),
        violations=Counter(c.mistake for c in calls if c.expect == "stored" and c.mistake),
        blocked=Counter(c.mistake for c in calls if c.expect == "blocked" and c.mistake),
        invalid=Counter(c.mistake for c in calls if c.expect == "invalid" and c.mistake),
    )
