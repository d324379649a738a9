"""Consent per channel × purpose: the changes inputs make, and the state as of any instant. Pure, no I/O.

Inputs become `ConsentChange`s, each kept with its provenance (source, messageId, event time) and the input that
made it (`input`):

- `trait:<name>`: an identify trait read through `consent.trait_mapping` (`changes_from_event`);
- `consent_object:<category>`: Segment's `context.consent.categoryPreferences` or RudderStack's
  `context.consentManagement`, through `consent.category_mapping` (`changes_from_event`);
- `preference_center`: `PUT /api/profiles/{identifier}/consent` (`changes_from_preferences`);
- `delivery:unsubscribed`: an unsubscribe reported by a delivery provider (`changes_from_delivery`).

The state of a cell as of an instant `at` is decided by the change with the greatest
(event time, messageId, source) whose event time is ≤ `at` — the time the person said it, not the time we heard it,
so a late-arriving older opt-in never overrides a newer opt-out and the answer does not depend on arrival order. If
one event says both yes and no about a cell (say `marketing_opt_in: true` with `unsubscribed: true`), the no wins.
Without any change the configured default holds (`ConsentConfig.default_for`: region rules, then the per-purpose
default). Keep every change: one that repeats the current value still matters once an older, opposite change
arrives late (t1 opt-in, t3 opt-in, then t2 opt-out arrives: the state after t3 is opted in only because of t3).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from orchestrion.collect.event import Problem
from orchestrion.errors import TerminalError
from orchestrion.identity.consent_config import WILDCARD, ConsentConfig, country_code
from orchestrion.identity.links import Provenance

# Trait and category values read as consent, compared after trimming, lower-casing and turning "-" and " " into "_".
TRUE_WORDS: Final = frozenset({"true", "yes", "opted_in", "subscribed", "granted"})
FALSE_WORDS: Final = frozenset({"false", "no", "opted_out", "unsubscribed", "denied"})

DELIVERY_CONSENT_KINDS: Final = frozenset({"unsubscribed"})
# Hard bounces and spam complaints block an address, whatever its owner consents to: they belong to the suppression
# lists of delivery, not to consent, so they make no consent change.
DELIVERY_SUPPRESSION_KINDS: Final = frozenset({"hard_bounce", "complaint"})

PREFERENCE_CENTER_INPUT: Final = "preference_center"

_Order = tuple[dt.datetime, str, str, int, str]


def consent_value(value: object) -> bool | None:
    """A trait or category value as consent: True, False, or None when it says neither (see TRUE_WORDS/FALSE_WORDS).

    JSON booleans count; so do the words, in any case, with `-` or a space for `_` (`Opted-In`). Numbers do not:
    a 1 or 0 is too often a count or an id to be taken as somebody's consent.
    """
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        return None
    word = "_".join(value.strip().lower().replace("-", " ").split())
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """One statement about one channel × purpose: granted or not, which input said it, and when."""

    channel: str
    purpose: str
    granted: bool
    input: str
    provenance: Provenance

    def __post_init__(self) -> None:
        if WILDCARD in (self.channel, self.purpose):
            raise ValueError(
                f"a consent change is about one channel and one purpose, not {self.channel}:{self.purpose}"
            )
        if self.provenance.timestamp.tzinfo is None:
            raise ValueError(f"consent change {self.provenance.message_id!r}: timestamp must be timezone-aware")

    @property
    def order(self) -> _Order:
        """Last-write-wins key: event time, messageId, source; within one event a denial beats a grant."""
        stamp = self.provenance
        return (stamp.timestamp, stamp.message_id, stamp.source, 0 if self.granted else 1, self.input)


@dataclass(frozen=True, slots=True)
class IgnoredConsentInput:
    """An input that looked like consent but was not used. `code`: `invalid_value`, `unmapped_category`."""

    input: str
    value: Any
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ConsentReading:
    """What one event says about consent, and what it carried that could not be used."""

    changes: list[ConsentChange]
    ignored: list[IgnoredConsentInput]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sorted(changes: Iterable[ConsentChange]) -> list[ConsentChange]:
    unique = dict.fromkeys(changes)
    return sorted(unique, key=lambda c: (c.channel, c.purpose, c.input, c.granted))


def read_event(payload: Mapping[str, Any], provenance: Provenance, config: ConsentConfig) -> ConsentReading:
    """The consent changes an event's payload makes, plus the inputs it had to ignore.

    Traits come from identify calls, `traits` and `context.traits`, the top-level value winning when both carry a
    trait; with `trait_events: all` also from `context.traits` (the user's traits) of every other call, never from
    a group call's top-level traits (they describe the account). The consent objects are read on every call.
    `provenance` is the event's, with its corrected time.
    """
    context = _mapping(payload.get("context"))
    kind = payload.get("type")
    traits: dict[str, Any] = {}
    if kind == "identify" or config.trait_events == "all":
        traits.update(_mapping(context.get("traits")))
    if kind == "identify":
        traits.update(_mapping(payload.get("traits")))
    changes: list[ConsentChange] = []
    ignored: list[IgnoredConsentInput] = []

    for name in sorted(set(traits) & set(config.trait_mapping)):
        rule, value, label = config.trait_mapping[name], traits[name], f"trait:{name}"
        granted = consent_value(value)
        if granted is None:
            ignored.append(_invalid(label, value))
            continue
        granted = granted != rule.invert
        if (rule.only == "opt_in" and not granted) or (rule.only == "opt_out" and granted):
            continue
        changes += [
            ConsentChange(c, p, granted, label, provenance) for c, p in config.expand(rule.channel, rule.purpose)
        ]

    statements: list[tuple[Any, Any]] = []
    preferences = _mapping(context.get("consent")).get("categoryPreferences")
    if isinstance(preferences, Mapping):
        statements += list(preferences.items())
    elif preferences is not None:
        ignored.append(_invalid("consent_object:categoryPreferences", preferences, "an object of category: boolean"))
    management = _mapping(context.get("consentManagement"))
    for key, flag in (("allowedConsentIds", True), ("deniedConsentIds", False)):
        ids = management.get(key)
        if isinstance(ids, list):
            statements += [(category, flag) for category in ids]
        elif ids is not None:
            ignored.append(_invalid(f"consent_object:{key}", ids, "a list of consent category ids"))

    for category, value in statements:
        if not isinstance(category, str):
            ignored.append(_invalid("consent_object", category, "a category id (string)"))
            continue
        label = f"consent_object:{category}"
        targets = config.category_mapping.get(category)
        if targets is None:
            message = f"category {category!r} is not in consent.category_mapping"
            ignored.append(IgnoredConsentInput(label, value, "unmapped_category", message))
            continue
        granted = consent_value(value)
        if granted is None:
            ignored.append(_invalid(label, value))
            continue
        for target in targets:
            changes += [
                ConsentChange(c, p, granted, label, provenance)
                for c, p in config.expand(target.channel, target.purpose)
            ]
    return ConsentReading(_sorted(changes), ignored)


def _invalid(label: str, value: Any, expected: str | None = None) -> IgnoredConsentInput:
    wanted = expected or f"a boolean or one of {sorted(TRUE_WORDS | FALSE_WORDS)}"
    return IgnoredConsentInput(label, value, "invalid_value", f"{label}: {value!r} is not {wanted}; ignored")


def changes_from_event(
    payload: Mapping[str, Any], provenance: Provenance, config: ConsentConfig
) -> list[ConsentChange]:
    """The consent changes an event makes (see `read_event` for the inputs it ignored)."""
    return read_event(payload, provenance, config).changes


class ConsentInputError(TerminalError):
    """A preference-center request is not valid; `problems` name each bad field (a JSON pointer) and the fix."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.field or '/'}: {p.message}" for p in problems))


def _pointer(*keys: str) -> str:
    return "".join("/" + key.replace("~", "~0").replace("/", "~1") for key in keys)


def changes_from_preferences(
    body: object, actor: str, at: dt.datetime, config: ConsentConfig, *, request_id: str | None = None
) -> list[ConsentChange]:
    """The changes a preference-center request makes, or ConsentInputError listing every bad field.

    The body maps channel → purpose → boolean: `{"email": {"marketing": false}, "sms": {"marketing": true}}`.
    `"*"` stands for every channel (or purpose); a named entry beats a wildcard one for the same cell, the channel
    counting first (`{"*": {"marketing": false}, "email": {"marketing": true}}`: marketing off except email).
    Provenance: time `at`, source `actor` (who made the request), message id `request_id` or, when not given, a
    hash of actor, time and body (the same request at the same instant records the same id).
    """
    if at.tzinfo is None:
        raise ValueError("the time of a preference change must be timezone-aware")
    channels, purposes = config.all_channels, config.all_purposes
    problems: list[Problem] = []
    entries: dict[tuple[str, str], tuple[tuple[bool, bool], bool]] = {}
    if not isinstance(body, Mapping):
        problems.append(Problem("not_an_object", "", 'the body must be an object like {"email": {"marketing": false}}'))
    elif not body:
        problems.append(Problem("empty", "", "the body names no channel; nothing would change"))
    else:
        for channel, by_purpose in body.items():
            if channel != WILDCARD and channel not in channels:
                allowed = ", ".join((*channels, WILDCARD))
                problems.append(
                    Problem("unknown_channel", _pointer(str(channel)), f"unknown channel; allowed: {allowed}")
                )
                continue
            if not isinstance(by_purpose, Mapping) or not by_purpose:
                message = 'must be a non-empty object of purpose: true|false, e.g. {"marketing": false}'
                problems.append(Problem("not_an_object", _pointer(channel), message))
                continue
            for purpose, granted in by_purpose.items():
                field = _pointer(channel, str(purpose))
                if purpose != WILDCARD and purpose not in purposes:
                    allowed = ", ".join((*purposes, WILDCARD))
                    problems.append(Problem("unknown_purpose", field, f"unknown purpose; allowed: {allowed}"))
                elif not isinstance(granted, bool):
                    problems.append(Problem("not_boolean", field, f"must be true or false, got {granted!r}"))
                else:
                    specificity = (channel != WILDCARD, purpose != WILDCARD)
                    for cell in config.expand(channel, purpose):
                        held = entries.get(cell)
                        if held is None or specificity > held[0]:
                            entries[cell] = (specificity, granted)
    if problems:
        raise ConsentInputError(problems)
    if request_id is None:
        text = json.dumps({"actor": actor, "at": at.isoformat(), "body": body}, sort_keys=True, default=str)
        request_id = "pc_" + hashlib.sha256(text.encode()).hexdigest()[:32]
    stamp = Provenance(at, request_id, actor)
    return _sorted(
        ConsentChange(c, p, granted, PREFERENCE_CENTER_INPUT, stamp) for (c, p), (_, granted) in entries.items()
    )


def changes_from_delivery(
    kind: str, channel: str, provenance: Provenance, *, purpose: str = "marketing"
) -> list[ConsentChange]:
    """The consent change a delivery report makes: an unsubscribe denies `purpose` (marketing) on that channel.

    `hard_bounce` and `complaint` make none: they go to delivery's suppression lists, which block the address for
    every purpose. Any other kind is a programming error (ValueError).
    """
    if kind in DELIVERY_SUPPRESSION_KINDS:
        return []
    if kind not in DELIVERY_CONSENT_KINDS:
        known = sorted(DELIVERY_CONSENT_KINDS | DELIVERY_SUPPRESSION_KINDS)
        raise ValueError(f"unknown delivery report kind {kind!r}; known: {known}")
    return [ConsentChange(channel, purpose, False, f"delivery:{kind}", provenance)]


@dataclass(frozen=True, slots=True)
class ConsentDecision:
    """The consent of one channel × purpose, and why: `basis` is `change` (then `change` is the deciding one),
    `default`, or `region:<rule name>`."""

    channel: str
    purpose: str
    granted: bool
    basis: str
    change: ConsentChange | None

    @property
    def reason_code(self) -> str:
        """`consent:<channel>:<purpose>:` + `granted` / `denied` (the person said so), `granted_by_default`, or
        `opt_in_required` (a default denies it and the person never opted in)."""
        if self.change is not None:
            outcome = "granted" if self.granted else "denied"
        else:
            outcome = "granted_by_default" if self.granted else "opt_in_required"
        return f"consent:{self.channel}:{self.purpose}:{outcome}"

    def as_json(self) -> dict[str, Any]:
        change = self.change
        return {
            "granted": self.granted,
            "basis": self.basis,
            "reason": self.reason_code,
            "input": change.input if change else None,
            "source": change.provenance.source if change else None,
            "message_id": change.provenance.message_id if change else None,
            "timestamp": change.provenance.timestamp.isoformat() if change else None,
        }


@dataclass(frozen=True, slots=True)
class ConsentState:
    """Every configured channel × purpose as of `at` (None: with every recorded change) for a profile whose
    country normalized to `country` (None: unknown)."""

    at: dt.datetime | None
    country: str | None
    decisions: Mapping[tuple[str, str], ConsentDecision]

    def decision(self, channel: str, purpose: str) -> ConsentDecision | None:
        return self.decisions.get((channel, purpose))

    def as_json(self) -> dict[str, Any]:
        """`{"at", "country", "channels": {channel: {purpose: {granted, basis, reason, input, source, ...}}}}`."""
        channels: dict[str, dict[str, Any]] = {}
        for (channel, purpose), decision in self.decisions.items():
            channels.setdefault(channel, {})[purpose] = decision.as_json()
        return {"at": self.at.isoformat() if self.at else None, "country": self.country, "channels": channels}


def state_at(
    changes: Iterable[ConsentChange], at: dt.datetime | None, country: object, config: ConsentConfig
) -> ConsentState:
    """The consent of every configured cell as of `at`: "was this person opted in when we sent?".

    A change counts when its event time is ≤ `at`; the greatest `ConsentChange.order` wins; the order of `changes`
    does not matter. `country` is the profile's country as stored (code or name, see `country_code`); it picks the
    region defaults. Changes about channels or purposes no longer configured are left out.
    """
    if at is not None and at.tzinfo is None:
        raise ValueError("the instant of a consent state must be timezone-aware")
    latest: dict[tuple[str, str], ConsentChange] = {}
    for change in changes:
        if at is not None and change.provenance.timestamp > at:
            continue
        cell = (change.channel, change.purpose)
        held = latest.get(cell)
        if held is None or change.order > held.order:
            latest[cell] = change
    code = country_code(country)
    decisions: dict[tuple[str, str], ConsentDecision] = {}
    for channel in config.all_channels:
        for purpose in config.all_purposes:
            deciding = latest.get((channel, purpose))
            if deciding is not None:
                decisions[(channel, purpose)] = ConsentDecision(channel, purpose, deciding.granted, "change", deciding)
            else:
                granted, basis = config.default_for(channel, purpose, code)
                decisions[(channel, purpose)] = ConsentDecision(channel, purpose, granted, basis, None)
    return ConsentState(at, code, decisions)


def may_contact(state: ConsentState, channel: str, purpose: str) -> tuple[bool, str]:
    """Whether a message of `purpose` may go out on `channel`, with its reason code (see `reason_code`).

    Each purpose is governed by its own cell only: a marketing opt-out does not stop transactional messages.
    Transactional consent defaults to granted and is removed only by an explicit statement about it
    (`transactional: false` in the preference center, a trait or category mapped to it, or a `"*"` purpose).
    A channel or purpose that is not configured is refused: `consent:<channel>:<purpose>:not_configured`.
    """
    decision = state.decision(channel, purpose)
    if decision is None:
        return False, f"consent:{channel}:{purpose}:not_configured"
    return decision.granted, decision.reason_code


def ordered(changes: Iterable[ConsentChange]) -> list[ConsentChange]:
    """The consent history in the order it is applied (oldest first): for audit displays."""
    return sorted(changes, key=lambda change: (change.order, change.channel, change.purpose))
