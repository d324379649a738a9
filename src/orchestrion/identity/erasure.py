"""Right to be forgotten: remove a profile everywhere, keep only salted hashes to drop late events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from orchestrion.identity.links import Identifier
from orchestrion.identity.lookup import profile_ids
from orchestrion.identity.stage import IdentityStage, tombstone_hash


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


def erase(stage: IdentityStage, profile_id: str, *, actor: str) -> ErasureReport:
    """Erase a live profile: its events, identities, traits, consent and merges on every table.

    Every identifier the profile owns is tombstoned. Identifiers its events carried but that were refused (the
    shared iPad's device id) belong to someone else and stay theirs. Holding the stage's lock keeps the conductor
    from resolving new events against the profile meanwhile.
    """
    store = stage.store
    with stage.lock:
        ids = profile_ids(store, profile_id)
        identifiers: set[Identifier] = {
            Identifier(row.identifier_type, row.identifier_value) for row in store.graph_of(profile_id)
        }
        erasure_id = f"erasure_{uuid.uuid4().hex[:16]}"
        hashes = sorted(tombstone_hash(stage.salt, identifier) for identifier in identifiers)
        counts = store.erase_profile(
            profile_ids=ids,
            identifiers=sorted((i.type, i.value) for i in identifiers),
            tombstones=hashes,
            erasure_id=erasure_id,
            actor=actor,
        )
        stage.load()
    return ErasureReport(erasure_id=erasure_id, profile_id=profile_id, identifiers=len(identifiers), counts=counts)
