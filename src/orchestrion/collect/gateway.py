"""The collection gateway: one ingestion request in, durable events (or a clear refusal) out.

HTTP-free: the API face hands it bytes and headers and maps the result to a response.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from orchestrion.clock import Clock
from orchestrion.collect.config import ContractMode, SourceConfig
from orchestrion.collect.contracts import ContractSet, apply_omit
from orchestrion.collect.errors import RequestRejected
from orchestrion.collect.event import NormalizedEvent, Problem, QuarantinedEvent
from orchestrion.collect.normalize import RequestMeta, normalize
from orchestrion.collect.ratelimit import TokenBucket
from orchestrion.collect.wire import DecodedRequest, decode_request
from orchestrion.observe.metrics import Metrics
from orchestrion.store.group_commit import GroupCommitWriter
from orchestrion.store.ports import AppendOutcome, IngestBatch
from orchestrion.workspace import Workspace


@dataclass(frozen=True)
class IngestResult:
    source: str
    accepted: int
    deduplicated: int
    quarantined: int
    invalid_problems: list[Problem]  # problems of the one event of a single-event route, if invalid


def quarantine_raw(item: Any, decoded: DecodedRequest, ip: str | None) -> Any:
    """The item as it would be replayed: batch-level context and sentAt folded in."""
    if not isinstance(item, dict):
        return item
    raw = dict(item)
    if decoded.batch_context:
        context = dict(decoded.batch_context)
        if isinstance(item.get("context"), dict):
            context.update(item["context"])
        raw["context"] = context
    if ip and isinstance(raw.get("context"), dict) and not raw["context"].get("ip"):
        raw["context"] = {**raw["context"], "ip": ip}
    if decoded.batch_integrations and "integrations" not in raw:
        raw["integrations"] = decoded.batch_integrations
    if decoded.batch_sent_at is not None and "sentAt" not in raw:
        raw["sentAt"] = decoded.batch_sent_at
    raw.pop("writeKey", None)
    return raw


def check_contract(
    event: NormalizedEvent, contracts: ContractSet, source: SourceConfig, index: int
) -> NormalizedEvent | QuarantinedEvent:
    """Apply the tracking plan: annotate (allow), strip (omit) or quarantine (block)."""
    verdict = contracts.check(event, source.contract_mode)
    if not verdict.violations:
        return event
    if verdict.mode is ContractMode.BLOCK:
        return QuarantinedEvent(
            source=source.name,
            kind="blocked",
            batch_index=index,
            message_id=event.message_id,
            event=event.event,
            reasons=verdict.violations,
            raw=event.payload,
            received_at=event.received_at,
        )
    payload = apply_omit(event.payload, verdict.violations) if verdict.mode is ContractMode.OMIT else event.payload
    context = dict(payload.get("context") or {})
    context["violations"] = [{"type": v.code, "field": v.field, "message": v.message} for v in verdict.violations]
    if verdict.contract is not None:
        context["trackingPlan"] = {"file": verdict.contract.file, "version": verdict.contract.version}
    event.payload = {**payload, "context": context}
    event.violations = [v.as_dict() for v in verdict.violations]
    return event


class Gateway:
    def __init__(
        self,
        workspace: Workspace,
        contracts: ContractSet,
        writer: GroupCommitWriter,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.workspace = workspace
        self.contracts = contracts
        self.writer = writer
        self.metrics = metrics
        self.clock = clock
        self.limits = workspace.config.collect
        self._buckets = {
            s.name: TokenBucket(s.rate_limit) for s in workspace.config.sources if s.rate_limit is not None
        }

    def authenticate(self, write_key: str) -> SourceConfig:
        source = self.workspace.source_by_key(write_key)
        if source is None:
            raise RequestRejected(401, "invalid write key: no source of this workspace has it")
        if not source.enabled:
            raise RequestRejected(404, f"source {source.name!r} is disabled")
        return source

    def prepare(
        self,
        route: str,
        body: bytes,
        *,
        authorization: str | None,
        query_write_key: str | None,
        content_encoding: str | None,
        ip: str | None,
    ) -> tuple[SourceConfig, IngestBatch, list[Problem]]:
        """Decode, authenticate, rate-limit, normalize and check one request (pure CPU, no I/O)."""
        decoded = decode_request(
            route,
            body,
            authorization=authorization,
            query_write_key=query_write_key,
            content_encoding=content_encoding,
            max_request_bytes=self.limits.max_request_bytes,
            max_depth=self.limits.max_nesting_depth,
        )
        source = self.authenticate(decoded.write_key)
        bucket = self._buckets.get(source.name)
        if bucket is not None:
            wait = bucket.take()
            if wait > 0:
                raise RequestRejected(
                    429, f"rate limit of source {source.name!r} reached; retry later", retry_after=wait
                )
        received = self.clock.now()
        meta = RequestMeta(
            source=source.name,
            received_at=received,
            ip=ip,
            batch_context=decoded.batch_context,
            batch_integrations=decoded.batch_integrations,
            batch_sent_at=decoded.batch_sent_at,
            max_event_bytes=self.limits.max_event_bytes,
        )
        batch = IngestBatch()
        first_problems: list[Problem] = []
        check_plans = not self.contracts.empty
        for index, item in enumerate(decoded.items):
            outcome = normalize(item, meta)
            if isinstance(outcome, list):
                if not first_problems:
                    first_problems = outcome
                message_id = item.get("messageId") if isinstance(item, dict) else None
                name = item.get("event") if isinstance(item, dict) else None
                batch.quarantined.append(
                    QuarantinedEvent(
                        source=source.name,
                        kind="invalid",
                        batch_index=index,
                        message_id=str(message_id)[:200] if isinstance(message_id, str | int) else None,
                        event=str(name)[:200] if isinstance(name, str) else None,
                        reasons=outcome,
                        raw=quarantine_raw(item, decoded, ip),
                        received_at=received,
                    )
                )
                continue
            checked = check_contract(outcome, self.contracts, source, index) if check_plans else outcome
            if isinstance(checked, QuarantinedEvent):
                batch.quarantined.append(checked)
            else:
                batch.events.append(checked)
        return source, batch, first_problems

    async def ingest(
        self,
        route: str,
        body: bytes,
        *,
        authorization: str | None,
        query_write_key: str | None,
        content_encoding: str | None,
        ip: str | None,
    ) -> IngestResult:
        try:
            with self.writer.preparing():
                source, batch, problems = self.prepare(
                    route,
                    body,
                    authorization=authorization,
                    query_write_key=query_write_key,
                    content_encoding=content_encoding,
                    ip=ip,
                )
                submitted = self.writer.submit(batch)
        except RequestRejected as exc:
            self.metrics.rejected_requests.labels(str(exc.status)).inc()
            raise
        outcome: AppendOutcome = await asyncio.wrap_future(submitted)
        self._count(source.name, outcome, batch)
        return IngestResult(
            source=source.name,
            accepted=outcome.accepted,
            deduplicated=outcome.deduplicated,
            quarantined=outcome.quarantined,
            invalid_problems=problems,
        )

    def _count(self, source: str, outcome: AppendOutcome, batch: IngestBatch) -> None:
        if outcome.accepted:
            self.metrics.events.labels(source, "accepted").inc(outcome.accepted)
        if outcome.deduplicated:
            self.metrics.events.labels(source, "deduplicated").inc(outcome.deduplicated)
        blocked = sum(1 for q in batch.quarantined if q.kind == "blocked")
        if blocked:
            self.metrics.events.labels(source, "blocked").inc(blocked)
        if len(batch.quarantined) - blocked:
            self.metrics.events.labels(source, "quarantined").inc(len(batch.quarantined) - blocked)
