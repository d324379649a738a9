"""Right to be forgotten: remove a profile everywhere, keep only salted hashes to drop late events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from orchestrion.identity.identifiers import normalize_value
from orchestrion.identity.links import Identifier
from orchestrion.identity.lookup import profile_ids
from orchestrion.identity.stage import IdentityStage, tombstone_hash
from orchestrion.store.ports import Store


@dataclass(frozen=True)
class ErasureReport:
    erasure_id: str
    profile_id: str
    identifiers: int
    counts: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "erasure_id": self.erasure_id,
            "profile_id": self.profile_id,
            "identifiers": self.identifiers,
            "deleted": self.counts,
        }


def written_forms(store: Store, ids: list[str], identifiers: set[Identifier]) -> set[str]:
    """Every way the profile's events wrote its identifiers: normalized, and as sent (`Ann@Example.com`)."""
    forms = {identifier.value for identifier in identifiers}
    by_type: dict[str, set[str]] = {}
    for identifier in identifiers:
        by_type.setdefault(identifier.type, set()).add(identifier.value)
    for row in store.timeline_rows(ids, 1_000_000, None):
        for kind, raw in raw_identifiers(orjson.loads(row[6])):
            normalized = normalize_value(kind, raw)
            if normalized is not None and normalized in by_type.get(kind, set()):
                forms.add(raw)
    return forms


def raw_identifiers(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """(type, value as sent) of the identifier fields of one stored event."""
    found: list[tuple[str, str]] = []
    raw_context = payload.get("context")
    context: dict[str, Any] = raw_context if isinstance(raw_context, dict) else {}
    for kind, value in (("user_id", payload.get("userId")), ("anonymous_id", payload.get("anonymousId"))):
        if isinstance(value, str):
            found.append((kind, value))
    for traits in (payload.get("traits"), context.get("traits")):
        if isinstance(traits, dict):
            for kind in ("email", "phone"):
                if isinstance(traits.get(kind), str):
                    found.append((kind, traits[kind]))
    device = context.get("device")
    if isinstance(device, dict) and isinstance(device.get("id"), str):
        found.append(("device_id", device["id"]))
    external = context.get("externalIds")
    if isinstance(external, list):
        for item in external:
            if isinstance(item, dict) and isinstance(item.get("id"), str) and isinstance(item.get("type"), str):
                found.append((item["type"], item["id"]))
    return found


def erase(stage: IdentityStage, profile_id: str, *, actor: str) -> ErasureReport:
    """Erase a live profile: its events, identities, traits, consent and merges on every table.

    Every identifier the profile owns is tombstoned. Identifiers its events carried but that were refused (the
    shared iPad's device id) belong to someone else and stay theirs. Holding the stage's lock keeps the conductor
    from resolving new events against the profile meanwhile.
    """
    store = stage.store
    with stage.lock:
        stage.ensure_current()
        ids = profile_ids(store, profile_id)
        identifiers: set[Identifier] = {
            Identifier(row.identifier_type, row.identifier_value) for row in store.graph_of(profile_id)
        }
        erasure_id = f"erasure_{uuid.uuid4().hex[:16]}"
        hashes = sorted(tombstone_hash(stage.salt, identifier) for identifier in identifiers)
        counts = store.erase_profile(
            profile_ids=ids,
            identifiers=sorted((i.type, i.value) for i in identifiers),
            forms=sorted(written_forms(store, ids, identifiers)),
            tombstones=hashes,
            erasure_id=erasure_id,
            actor=actor,
        )
        stage.load()
    return ErasureReport(erasure_id=erasure_id, profile_id=profile_id, identifiers=len(identifiers), counts=counts)
