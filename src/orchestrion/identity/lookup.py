"""Reading profiles for the faces: find one by id or `type:value`, and render its document and timeline."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import orjson

from orchestrion.errors import TerminalError
from orchestrion.identity.links import Identifier
from orchestrion.store.ports import Store


class ProfileNotFound(TerminalError):
    """No profile holds this identifier or id."""


class InvalidProfileReference(TerminalError):
    """The reference is neither a profile id nor `type:value`."""


def find_profile(store: Store, reference: str) -> str:
    """The live profile id for `p_…` (merged ids resolve to their survivor) or `type:value`."""
    reference = reference.strip()
    if ":" in reference:
        try:
            identifier = Identifier.parse(reference)
        except ValueError as exc:
            raise InvalidProfileReference(str(exc)) from exc
        owner = store.profile_for_identifier(identifier.type, identifier.value)
        if owner is None and identifier.type == "email":
            owner = store.profile_for_identifier("email", identifier.value.lower())
        if owner is None:
            raise ProfileNotFound(f"no profile has {identifier}; check the type (user_id, email, anonymous_id, ...)")
        return owner
    if not reference:
        raise InvalidProfileReference("empty reference; pass a profile id or type:value, e.g. user_id:u1")
    live = store.canonical_profile(reference)
    if live is None:
        raise ProfileNotFound(
            f"no profile {reference!r}; pass a profile id (p_...) or type:value, e.g. user_id:u1 or email:a@b.c"
        )
    return live


def profile_ids(store: Store, profile_id: str) -> list[str]:
    """The live id and every id that was merged into it."""
    return [profile_id, *(m.merged_profile_id for m in store.merged_into(profile_id))]


def profile_document(store: Store, profile_id: str) -> dict[str, Any]:
    """Identities, traits with provenance, merges and refusals of one live profile."""
    row = store.profile_row(profile_id)
    ids = profile_ids(store, profile_id)
    traits: dict[str, Any] = {}
    maintained: dict[str, Any] = {}
    if row is not None:
        stamps = row.trait_provenance
        for name, value in row.traits.items():
            stamp = stamps.get("traits", {}).get(name)
            traits[name] = {"value": value, **_provenance(stamp)}
        for name in ("timezone", "locale", "device_os", "country"):
            value = getattr(row, name)
            if value is not None:
                maintained[name] = {"value": value, **_provenance(stamps.get("fields", {}).get(name))}
    return {
        "profile_id": profile_id,
        "identities": [
            {
                "type": g.identifier_type,
                "value": g.identifier_value,
                "attached_at": g.attached_at,
                "message_id": g.message_id,
                "source": g.source,
            }
            for g in store.graph_of(profile_id)
        ],
        "traits": traits,
        "maintained": maintained,
        "first_seen": row.first_seen if row else None,
        "last_seen": row.last_seen if row else None,
        "merges": [
            {
                "merged_profile_id": m.merged_profile_id,
                "reason": m.reason,
                "message_id": m.message_id,
                "merged_at": m.merged_at,
            }
            for m in store.merged_into(profile_id)
        ],
        "refusals": [
            {
                "identifier": f"{r.identifier_type}:{r.identifier_value}",
                "code": r.code,
                "reason": r.reason,
                "message_id": r.message_id,
                "source": r.source,
                "timestamp": r.timestamp,
            }
            for r in store.refusals_of(ids)
        ],
    }


def _provenance(stamp: list[str] | None) -> dict[str, Any]:
    if not stamp:
        return {}
    return {"timestamp": stamp[0], "message_id": stamp[1], "source": stamp[2]}


def encode_cursor(timestamp: dt.datetime, seq: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([timestamp.isoformat(), seq])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return dt.datetime.fromisoformat(raw[0]), int(raw[1])
    except (ValueError, TypeError, IndexError, orjson.JSONDecodeError) as exc:
        raise InvalidProfileReference(f"cursor {cursor!r} is not one this API returned; drop it to start over") from exc


def timeline(store: Store, profile_id: str, *, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    """The profile's events, newest first, `limit` per page; `next_cursor` fetches the next page."""
    before = decode_cursor(cursor) if cursor else None
    rows = store.timeline_rows(profile_ids(store, profile_id), limit + 1, before)
    page = rows[:limit]
    items = [
        {
            "kind": "event",
            "seq": seq,
            "timestamp": timestamp,
            "type": kind,
            "event": name,
            "source": source,
            "message_id": message_id,
            "payload": orjson.loads(payload),
        }
        for seq, timestamp, kind, name, source, message_id, payload in page
    ]
    next_cursor = encode_cursor(page[-1][1], page[-1][0]) if len(rows) > limit and page else None
    return {"profile_id": profile_id, "items": items, "next_cursor": next_cursor}
