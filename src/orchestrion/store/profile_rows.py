"""Plain rows exchanged between the identity stage and storage (no identity types leak into store/)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class LinkRow:
    seq: int
    source: str
    message_id: str
    timestamp: dt.datetime
    identifiers: list[str]  # "type:value"
    alias: dict[str, Any] | None
    profile_id: str


@dataclass(frozen=True, slots=True)
class UnlinkRow:
    unlink_id: str
    identifier: str
    separated_from: list[str]
    timestamp: dt.datetime
    actor: str


@dataclass(frozen=True, slots=True)
class GraphRow:
    identifier_type: str
    identifier_value: str
    profile_id: str
    attached_at: dt.datetime
    message_id: str
    source: str


@dataclass(frozen=True, slots=True)
class MergeRow:
    merged_profile_id: str
    survivor_profile_id: str
    reason: str
    message_id: str | None
    merged_at: dt.datetime


@dataclass(frozen=True, slots=True)
class RefusalRow:
    source: str
    message_id: str
    identifier_type: str
    identifier_value: str
    code: str
    reason: str
    profile_id: str
    timestamp: dt.datetime


@dataclass(frozen=True, slots=True)
class ProfileRow:
    profile_id: str
    traits: dict[str, Any]
    trait_provenance: dict[str, Any]
    first_seen: dt.datetime | None
    last_seen: dt.datetime | None
    timezone: str | None
    locale: str | None
    device_os: str | None
    country: str | None


@dataclass(frozen=True, slots=True)
class ConsentRow:
    profile_id: str
    channel: str
    purpose: str
    granted: bool
    input: str
    source: str
    message_id: str
    timestamp: dt.datetime


@dataclass
class ProcessingStep:
    """Everything one processing step changes, written in one transaction with the checkpoint."""

    checkpoint: str | None = None
    position: int | None = None
    links: list[LinkRow] = field(default_factory=list)
    unlinks: list[UnlinkRow] = field(default_factory=list)
    graph_upserts: list[GraphRow] = field(default_factory=list)
    graph_deletes: list[tuple[str, str]] = field(default_factory=list)
    merges: list[MergeRow] = field(default_factory=list)
    revived: list[str] = field(default_factory=list)
    refusals: list[RefusalRow] = field(default_factory=list)
    retargets: list[tuple[str, str, str]] = field(default_factory=list)  # (source, message_id, profile_id)
    profiles: list[ProfileRow] = field(default_factory=list)
    deleted_profiles: list[str] = field(default_factory=list)
    consent: list[ConsentRow] = field(default_factory=list)
    dropped_seqs: list[int] = field(default_factory=list)
    dropped_by_hash: dict[str, int] = field(default_factory=dict)
