"""What the effects handed out so far say: the identity graph as a store applying them holds it. Pure.

A store keeps the profile ids it was told — an identifier's row names the profile it was attached to, a retired id
names the id it went into — and resolves through those merge rows. After a rebuild the graph may bring a retired id
back to life, so an old row can resolve somewhere new. The resolver compares this ledger with the rebuilt graph and
tells the store exactly the corrections it needs, instead of guessing from the graph's own (compressed) pointers.
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrion.identity.effects import (
    Effect,
    IdentifierAttached,
    IdentifierDetached,
    ProfileCreated,
    ProfileRemapped,
    ProfilesMerged,
)
from orchestrion.identity.links import Identifier


class EffectLedger:
    """Identity rows, merge rows and live profiles, exactly as the effects taken so far leave them."""

    __slots__ = ("live", "owner", "redirect")

    def __init__(self) -> None:
        self.owner: dict[Identifier, str] = {}
        self.redirect: dict[str, str] = {}
        self.live: set[str] = set()

    def take(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, ProfileCreated):
                self.live.add(effect.profile_id)
                self.redirect.pop(effect.profile_id, None)
            elif isinstance(effect, IdentifierAttached):
                self.owner[effect.identifier] = effect.profile_id
            elif isinstance(effect, IdentifierDetached):
                self.owner.pop(effect.identifier, None)
            elif isinstance(effect, ProfilesMerged):
                self.live.discard(effect.merged)
                self.redirect[effect.merged] = effect.survivor
            elif isinstance(effect, ProfileRemapped):
                self.live.discard(effect.old)
                self.redirect[effect.old] = effect.new

    def knows(self, profile_id: str) -> bool:
        return profile_id in self.live or profile_id in self.redirect

    def resolve(self, profile_id: str) -> str | None:
        """Where a store following its merge rows ends up from this id; None at a dead end."""
        current = profile_id
        for _ in range(len(self.redirect) + 1):
            if current in self.live:
                return current
            following = self.redirect.get(current)
            if following is None:
                return None
            current = following
        return None  # a cycle: the caller treats it as wrong and corrects it

    def owner_of(self, identifier: Identifier) -> str | None:
        row = self.owner.get(identifier)
        return None if row is None else self.resolve(row)
