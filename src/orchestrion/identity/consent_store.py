"""Consent between the pure core (consent.py) and storage: events and requests in, rows out, state back."""

from __future__ import annotations

import datetime as dt

from orchestrion.collect.event import NormalizedEvent
from orchestrion.identity.consent import ConsentChange, ConsentState, changes_from_preferences, read_event, state_at
from orchestrion.identity.consent_config import ConsentConfig
from orchestrion.identity.links import Provenance
from orchestrion.identity.lookup import profile_ids
from orchestrion.store.ports import Store
from orchestrion.store.profile_rows import ConsentRow


def row_of(change: ConsentChange, profile_id: str) -> ConsentRow:
    stamp = change.provenance
    return ConsentRow(
        profile_id=profile_id,
        channel=change.channel,
        purpose=change.purpose,
        granted=change.granted,
        input=change.input,
        source=stamp.source,
        message_id=stamp.message_id,
        timestamp=stamp.timestamp,
    )


def change_of(row: ConsentRow) -> ConsentChange:
    return ConsentChange(
        channel=row.channel,
        purpose=row.purpose,
        granted=row.granted,
        input=row.input,
        provenance=Provenance(row.timestamp, row.message_id, row.source),
    )


class EventConsentReader:
    """The `consent_of` hook of the identity stage: consent rows an event records for its profile."""

    def __init__(self, config: ConsentConfig) -> None:
        self.config = config
        self.ignored = 0

    def __call__(self, event: NormalizedEvent, profile_id: str) -> list[ConsentRow]:
        reading = read_event(event.payload, Provenance(event.timestamp, event.message_id, event.source), self.config)
        self.ignored += len(reading.ignored)
        return [row_of(change, profile_id) for change in reading.changes]


def consent_state(store: Store, profile_id: str, config: ConsentConfig, at: dt.datetime | None) -> ConsentState:
    """The profile's consent as of `at` (None: now), from every change recorded under any of its ids."""
    rows = store.consent_rows(profile_ids(store, profile_id))
    profile = store.profile_row(profile_id)
    return state_at((change_of(r) for r in rows), at, profile.country if profile else None, config)


def preference_rows(
    body: object, profile_id: str, actor: str, at: dt.datetime, config: ConsentConfig
) -> list[ConsentRow]:
    """Validated preference-center changes as rows (ConsentInputError names every bad field)."""
    return [row_of(change, profile_id) for change in changes_from_preferences(body, actor, at, config)]
