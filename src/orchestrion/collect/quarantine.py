"""What the contracts and the wire checks kept aside: the report, and replay once fixed."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from orchestrion.collect.config import SourceConfig
from orchestrion.collect.contracts import ContractSet
from orchestrion.collect.event import QuarantinedEvent
from orchestrion.collect.gateway import check_contract
from orchestrion.collect.normalize import RequestMeta, normalize
from orchestrion.store.ports import EventStore, IngestBatch


@dataclass
class ContractsReport:
    since: dt.datetime
    violations: list[dict[str, Any]] = field(default_factory=list)  # stored events (allow / omit)
    quarantined: list[dict[str, Any]] = field(default_factory=list)  # blocked and invalid events

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "violations": self.violations,
            "quarantined": self.quarantined,
        }


def contracts_report(store: EventStore, since: dt.datetime) -> ContractsReport:
    """Violations by event, type and source since `since`."""
    rows = store.read(
        "SELECT source, coalesce(event, type) AS event, CAST(json_extract(payload, '$.context.violations') AS VARCHAR) "
        "FROM events WHERE received_at >= ? AND json_extract(payload, '$.context.violations') IS NOT NULL",
        [since],
    ).rows
    allowed: Counter[tuple[str, str, str]] = Counter()
    for source, event, violations in rows:
        for violation in orjson.loads(violations) or []:
            allowed[(event, violation.get("type", "?"), source)] += 1
    quarantined_rows = store.read(
        "SELECT source, kind, coalesce(event, '(none)'), CAST(reasons AS VARCHAR), replayed_at IS NOT NULL "
        "FROM quarantine WHERE received_at >= ?",
        [since],
    ).rows
    kept: Counter[tuple[str, str, str, str, bool]] = Counter()
    for source, kind, event, reasons, replayed in quarantined_rows:
        for reason in orjson.loads(reasons):
            kept[(event, reason.get("code", "?"), source, kind, bool(replayed))] += 1
    report = ContractsReport(since=since)
    report.violations = [{"event": e, "type": t, "source": s, "count": n} for (e, t, s), n in sorted(allowed.items())]
    report.quarantined = [
        {"event": e, "type": t, "source": s, "kind": k, "replayed": r, "count": n}
        for (e, t, s, k, r), n in sorted(kept.items())
    ]
    return report


@dataclass
class ReplayResult:
    examined: int = 0
    replayed: int = 0
    deduplicated: int = 0
    still_failing: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "examined": self.examined,
            "replayed": self.replayed,
            "deduplicated": self.deduplicated,
            "still_failing": self.still_failing,
            "reasons": dict(self.reasons),
        }


def replay_quarantine(
    store: EventStore,
    contracts: ContractSet,
    sources: list[SourceConfig],
    *,
    source: str | None = None,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    max_event_bytes: int = 32 * 1024,
) -> ReplayResult:
    """Run quarantined events through today's checks and plans; store those that now pass.

    Events keep their original receivedAt, so their corrected timestamps are what they would have been.
    """
    by_name = {s.name: s for s in sources}
    result = ReplayResult()
    passed_ids: list[int] = []
    batch = IngestBatch()
    for row in store.pending_quarantine(source=source):
        result.examined += 1
        config = by_name.get(row.source)
        if config is None:
            result.still_failing += 1
            result.reasons["source-removed"] += 1
            continue
        meta = RequestMeta(source=row.source, received_at=row.received_at, ip=None, max_event_bytes=max_event_bytes)
        raw = row.raw
        if row.kind == "blocked" and isinstance(raw, dict):
            # already normalized once: drop the old annotations and re-derive time fields from the original
            raw = {
                **raw,
                "context": {k: v for k, v in (raw.get("context") or {}).items() if k != "violations"},
            }
            raw.pop("timestamp", None)
            raw.pop("receivedAt", None)
        if isinstance(raw, dict) and not raw.get("messageId"):
            raw = {**raw, "messageId": f"quarantine-{row.id}"}  # a stable id: replaying twice stores once
        outcome = normalize(raw, meta)
        if isinstance(outcome, list):
            result.still_failing += 1
            for problem in outcome:
                result.reasons[problem.code] += 1
            continue
        checked = check_contract(outcome, contracts, config, row.batch_index)
        if isinstance(checked, QuarantinedEvent):
            result.still_failing += 1
            for problem in checked.reasons:
                result.reasons[problem.code] += 1
            continue
        batch.events.append(checked)
        passed_ids.append(row.id)
    if batch.events and not dry_run:
        (outcome_counts,) = store.append([batch])
        result.replayed = outcome_counts.accepted
        result.deduplicated = outcome_counts.deduplicated
        store.mark_replayed(passed_ids, now or dt.datetime.now(dt.UTC))
    elif dry_run:
        result.replayed = len(batch.events)
    return result
