"""Where processing stands: the conductor's position against the head of the event log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from orchestrion.api.admin import require_admin
from orchestrion.api.responses import FastJSONResponse

router = APIRouter(prefix="/api", tags=["admin"], dependencies=[Depends(require_admin)])


@router.get("/pipeline", summary="Processing position, log head and lag")
async def pipeline(request: Request) -> Any:
    store = request.app.state.store
    processing = request.app.state.processing
    head_rows = store.read("SELECT coalesce(max(seq), 0) FROM events").rows
    head = int(head_rows[0][0]) if head_rows else 0
    conductor = processing.conductor
    return FastJSONResponse(
        {
            "position": conductor.position,
            "head": head,
            "lag": max(0, head - conductor.position),
            "processed": conductor.processed,
            "running": conductor.alive,
            "last_error": conductor.last_error,
            "dropped_erased_events": processing.identity.dropped_erased,
            "resolver_replays": processing.identity.resolver.stats.replays,
        }
    )
