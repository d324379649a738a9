"""The storage ports: what the stages may ask of storage. Backends live in store/<backend>/."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrion.collect.event import NormalizedEvent, QuarantinedEvent
from orchestrion.store.capabilities import Capabilities
from orchestrion.store.profile_rows import (
    ConsentRow,
    GraphRow,
    LinkRow,
    MergeRow,
    ProcessingStep,
    ProfileRow,
    RefusalRow,
    UnlinkRow,
)

PIPELINE_CHECKPOINT = "pipeline"  # the conductor's position in the event log (process_checkpoints.name)


@dataclass
class IngestBatch:
    """The outcome of one ingestion request, written in one transaction with its neighbours."""

    events: list[NormalizedEvent] = field(default_factory=list)
    quarantined: list[QuarantinedEvent] = field(default_factory=list)


@dataclass(frozen=True)
class AppendOutcome:
    accepted: int
    deduplicated: int
    quarantined: int


@dataclass(frozen=True)
class StoredEvent:
    """An event read back from the log with its position (`seq`, increasing in commit order per writer)."""

    seq: int
    event: NormalizedEvent


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool = False


@dataclass(frozen=True)
class QuarantineRow:
    id: int
    source: str
    kind: str
    batch_index: int
    message_id: str | None
    event: str | None
    reasons: list[dict[str, str]]
    raw: Any
    received_at: dt.datetime


class EventStore(Protocol):
    """The event log with its dedup keys, the quarantine and the landing views."""

    capabilities: Capabilities

    def migrate(self, *, via_migrations: bool = False, upto: int | None = None) -> None:
        """Bring the schema to the current version (fresh install, or migrations from an older one)."""
        ...

    def schema_version(self) -> int: ...

    def append(self, batches: Sequence[IngestBatch]) -> list[AppendOutcome]:
        """Store every batch in one transaction; a (source, messageId) already stored is counted, not stored."""
        ...

    def query(self, sql: str, max_rows: int = 10_000) -> QueryResult:
        """Run one read-only statement; QueryRejected on anything else."""
        ...

    def read(self, sql: str, params: Sequence[Any] = ()) -> QueryResult:
        """Run product SQL written in DuckDB's dialect with `?` placeholders, transpiled for this backend."""
        ...

    def pending_quarantine(self, *, source: str | None = None, limit: int = 10_000) -> list[QuarantineRow]: ...

    def mark_replayed(self, ids: Sequence[int], at: dt.datetime) -> None: ...

    def prune_dedup(self, older_than: dt.datetime) -> int:
        """Forget dedup keys received before `older_than`; returns how many."""
        ...

    def describe_schema(self) -> dict[str, list[tuple[str, str]]]:
        """Every table and view with its (column, type) pairs: for migration tests and `orchestrion sql`."""
        ...

    def recorded_contracts(self) -> dict[tuple[str, str, int], dict[str, Any]]:
        """The plan versions recorded as in force: (type, name, version) -> JSON Schema."""
        ...

    def record_contracts(self, contracts: Sequence[tuple[str, str, int, str, dict[str, Any]]]) -> None:
        """Record (type, name, version, hash, schema) as in force (insert or replace)."""
        ...

    def ping(self) -> None:
        """Raise StorageUnavailable when the backend does not answer."""
        ...

    def close(self) -> None: ...


class ProfileStore(Protocol):
    """The identity graph, profiles, consent history, erasure and audit (see profiles_sql.py)."""

    def read_events_after(self, position: int, limit: int = 1000) -> list[StoredEvent]: ...

    def processing_position(self, name: str) -> int: ...

    def events_by_keys(self, keys: list[tuple[str, str]]) -> list[StoredEvent]: ...

    def commit_processing(self, step: ProcessingStep) -> None: ...

    def identity_records(self) -> tuple[list[LinkRow], list[UnlinkRow]]: ...

    def canonical_profile(self, profile_id: str) -> str | None: ...

    def profile_for_identifier(self, identifier_type: str, value: str) -> str | None: ...

    def merged_into(self, profile_id: str) -> list[MergeRow]: ...

    def graph_of(self, profile_id: str) -> list[GraphRow]: ...

    def profile_row(self, profile_id: str) -> ProfileRow | None: ...

    def profile_rows(self, profile_ids: Sequence[str]) -> list[ProfileRow]: ...

    def refusals_of(self, profile_ids: Sequence[str]) -> list[RefusalRow]: ...

    def consent_rows(self, profile_ids: Sequence[str]) -> list[ConsentRow]: ...

    def timeline_rows(
        self, profile_ids: Sequence[str], limit: int, before: tuple[dt.datetime, int] | None
    ) -> list[tuple[int, dt.datetime, str, str | None, str, str, str]]: ...

    def event_seqs_of(self, profile_ids: Sequence[str]) -> list[int]: ...

    def workspace_secret(self, name: str) -> str: ...

    def tombstones(self) -> set[str]: ...

    def identity_epoch(self) -> int: ...

    def audit(self, actor: str, action: str, target: str, details: dict[str, Any]) -> None: ...

    def erase_profile(
        self,
        *,
        profile_ids: Sequence[str],
        identifiers: Sequence[tuple[str, str]],
        forms: Sequence[str],
        tombstones: Sequence[str],
        erasure_id: str,
        actor: str,
    ) -> dict[str, int]: ...


class Store(EventStore, ProfileStore, Protocol):
    """Everything a backend provides."""
