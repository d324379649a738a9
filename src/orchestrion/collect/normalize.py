"""Event-level normalization: pure, no I/O.

Turns one raw item of a request into a `NormalizedEvent`, or into the `Problem`s that send it to
quarantine. Time fields follow Segment's rule (docs/collect.md "Timestamps"): a client-sent `timestamp`
is the original device time and is corrected for clock skew.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from orchestrion.collect.event import EVENT_TYPES, NormalizedEvent, Problem

MAX_MESSAGE_ID = 100
_OBJECT_FIELDS = ("context", "properties", "traits", "integrations")
_ID_FIELDS = ("userId", "anonymousId", "previousId", "groupId")
_ISO_SECONDS = orjson.OPT_UTC_Z | orjson.OPT_OMIT_MICROSECONDS


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """What the request adds to each of its events."""

    source: str
    received_at: dt.datetime
    ip: str | None
    batch_context: dict[str, Any] | None = None
    batch_integrations: dict[str, Any] | None = None
    batch_sent_at: Any = None
    max_event_bytes: int = 32 * 1024


def iso(instant: dt.datetime) -> str:
    """RFC 3339 with milliseconds and a Z, the form both vendors write (years zero-padded to four digits)."""
    if instant.tzinfo is not dt.UTC:
        instant = instant.astimezone(dt.UTC)
    # orjson renders the date and time in C, several times faster than isoformat/strftime on this hot path.
    return orjson.dumps(instant, option=_ISO_SECONDS)[1:-2].decode() + f".{instant.microsecond // 1000:03d}Z"


# Every event of a request shares receivedAt and, usually, sentAt: format those once.
_iso_shared = lru_cache(maxsize=64)(iso)


def parse_instant(value: Any) -> dt.datetime | None:
    """Parse an ISO-8601 instant; naive values are taken as UTC. None when unreadable."""
    if not isinstance(value, str) or not value:
        return None
    return _parse_text(value)


@lru_cache(maxsize=1024)  # a batch repeats its sentAt in every event; datetimes are immutable, so sharing is safe
def _parse_text(value: str) -> dt.datetime | None:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):  # OverflowError: an offset pushes year 1 or 9999 out of range
        return None


def _identifier(item: dict[str, Any], name: str, problems: list[Problem]) -> str | None:
    """Ids may arrive as strings or numbers (stringified, as the SDKs do); other types are refused."""
    value = item.get(name)
    if type(value) is str:  # the usual case, first
        return value.strip() or None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):  # a tuple: `str | int` allocates
        problems.append(
            Problem("Datatype-Mismatch", f"/{name}", f"{name} must be a string, not {type(value).__name__}")
        )
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    return text or None


def _time_field(item: dict[str, Any], name: str, problems: list[Problem]) -> dt.datetime | None:
    value = item.get(name)
    if value is None:
        return None
    parsed = parse_instant(value)
    if parsed is None:
        problems.append(
            Problem(
                "Datatype-Mismatch",
                f"/{name}",
                f"{name} {str(value)[:40]!r} is not an ISO-8601 time; send e.g. 2026-11-23T09:00:00.000Z",
            )
        )
    return parsed


def normalize(item: Any, meta: RequestMeta) -> NormalizedEvent | list[Problem]:
    """Normalize one raw item; return its problems instead when it cannot be accepted."""
    if not isinstance(item, dict):
        return [Problem("Invalid-Event", "", f"each event must be a JSON object, not {type(item).__name__}")]
    problems: list[Problem] = []
    size = len(orjson.dumps(item))
    if size > meta.max_event_bytes:
        problems.append(
            Problem(
                "Event-Too-Large",
                "",
                f"event is {size} bytes, over the {meta.max_event_bytes}-byte limit; trim its properties",
            )
        )
    event_type = item.get("type")
    if event_type not in EVENT_TYPES:
        problems.append(Problem("Unknown-Type", "/type", f"type {event_type!r} is not one of {', '.join(EVENT_TYPES)}"))
    for name in _OBJECT_FIELDS:
        value = item.get(name)
        if value is not None and not isinstance(value, dict):
            problems.append(
                Problem("Datatype-Mismatch", f"/{name}", f"{name} must be an object, not {type(value).__name__}")
            )
    ids = {name: _identifier(item, name, problems) for name in _ID_FIELDS}
    if ids["userId"] is None and ids["anonymousId"] is None:
        problems.append(Problem("Required-Missing", "/userId", "event has neither userId nor anonymousId"))
    event_name = item.get("event")
    if event_type == "track" and (not isinstance(event_name, str) or not event_name.strip()):
        problems.append(Problem("Required-Missing", "/event", "a track call needs a non-empty string 'event'"))
    if event_type == "alias" and ids["previousId"] is None:
        problems.append(Problem("Required-Missing", "/previousId", "an alias call needs 'previousId'"))
    if event_type == "group" and ids["groupId"] is None:
        problems.append(Problem("Required-Missing", "/groupId", "a group call needs 'groupId'"))
    message_id = item.get("messageId")
    if message_id is not None and not isinstance(message_id, (str, int)):
        problems.append(Problem("Datatype-Mismatch", "/messageId", "messageId must be a string"))
        message_id = None
    message_id = str(message_id).strip() if message_id is not None else ""
    if len(message_id) > MAX_MESSAGE_ID:
        problems.append(
            Problem("Invalid-Value", "/messageId", f"messageId is {len(message_id)} characters; at most 100")
        )
    original = _time_field(item, "originalTimestamp", problems)
    client_timestamp = _time_field(item, "timestamp", problems)
    event_sent_at = _time_field(item, "sentAt", problems)
    batch_sent_at = parse_instant(meta.batch_sent_at)
    if problems:
        return problems

    received = meta.received_at
    sent_at = event_sent_at or batch_sent_at or received
    # No device time for the call: it was made when sent, so no skew applies (timestamp = receivedAt).
    original = original or client_timestamp or sent_at
    try:
        corrected = received - (sent_at - original)
    except OverflowError:  # a device clock thousands of years off: no instant to store
        return [
            Problem(
                "Invalid-Value",
                "/originalTimestamp",
                "clock-skew correction (receivedAt - (sentAt - originalTimestamp)) leaves years 1-9999; "
                "check the device clock",
            )
        ]

    payload = dict(item)
    payload.pop("writeKey", None)
    context = dict(meta.batch_context or {})
    context.update(item.get("context") or {})
    if meta.ip and not context.get("ip"):
        context["ip"] = meta.ip
    payload["context"] = context
    if meta.batch_integrations or "integrations" in item:
        integrations = dict(meta.batch_integrations or {})
        integrations.update(item.get("integrations") or {})
        payload["integrations"] = integrations
    if not message_id:
        message_id = f"srv-{uuid.uuid4()}"
    for name, value in ids.items():
        if value is not None:
            payload[name] = value
    payload["messageId"] = message_id
    payload["originalTimestamp"] = iso(original)
    payload["sentAt"] = _iso_shared(sent_at)
    payload["receivedAt"] = _iso_shared(received)
    payload["timestamp"] = iso(corrected)
    return NormalizedEvent(
        source=meta.source,
        message_id=message_id,
        type=str(event_type),
        event=event_name.strip() if event_type == "track" and isinstance(event_name, str) else None,
        user_id=ids["userId"],
        anonymous_id=ids["anonymousId"],
        timestamp=corrected,
        original_timestamp=original,
        sent_at=sent_at,
        received_at=received,
        payload=payload,
    )
