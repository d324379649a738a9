"""The admin API under /api/, for the CLI and the web console. Bearer auth with the admin token."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from orchestrion.api.responses import FastJSONResponse, error_json
from orchestrion.collect.quarantine import contracts_report, replay_quarantine
from orchestrion.durations import parse_duration
from orchestrion.errors import QueryRejected
from orchestrion.operations import source_summaries


def require_admin(request: Request) -> None:
    expected: str = request.app.state.workspace.admin_token
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise HTTPException(
            status_code=401,
            detail="send Authorization: Bearer <admin token> (printed by `orchestrion serve`, "
            "or ORCHESTRION_ADMIN_TOKEN)",
        )


router = APIRouter(prefix="/api", tags=["admin"], dependencies=[Depends(require_admin)])


class QueryRequest(BaseModel):
    sql: str = Field(min_length=1, description="one read-only statement (SELECT, WITH ... SELECT, DESCRIBE)")
    max_rows: int = Field(default=10_000, ge=1, le=1_000_000)


class ReplayRequest(BaseModel):
    source: str | None = None
    dry_run: bool = False


@router.post("/query", summary="Run one read-only SQL statement")
async def query(request: Request, body: QueryRequest) -> Any:
    store = request.app.state.store
    try:
        result = store.query(body.sql, body.max_rows)
    except QueryRejected as exc:
        return error_json(400, "query_rejected", str(exc))
    return FastJSONResponse(
        {"columns": result.columns, "rows": [list(r) for r in result.rows], "truncated": result.truncated}
    )


@router.get("/sources", summary="Sources of this workspace with event counts")
async def sources(request: Request) -> Any:
    return FastJSONResponse(source_summaries(request.app.state.workspace, request.app.state.store))


@router.get("/workspace", summary="Workspace name, storage backend and schema version")
async def workspace_info(request: Request) -> Any:
    workspace = request.app.state.workspace
    store = request.app.state.store
    return FastJSONResponse(
        {
            "name": workspace.config.name,
            "root": str(workspace.root),
            "backend": store.capabilities.name,
            "schema_version": store.schema_version(),
        }
    )


@router.get("/contracts/report", summary="Contract violations by event, type and source")
async def report(request: Request, since: Annotated[str, "e.g. 7d"] = "7d") -> Any:
    try:
        window = parse_duration(since)
    except ValueError as exc:
        return error_json(400, "invalid_since", f"since: {exc}")
    now = request.app.state.clock.now()
    return FastJSONResponse(contracts_report(request.app.state.store, now - window).as_dict())


@router.post("/contracts/replay", summary="Replay quarantined events through today's checks")
async def replay(request: Request, body: ReplayRequest) -> Any:
    workspace = request.app.state.workspace
    gateway = request.app.state.gateway
    result = replay_quarantine(
        request.app.state.store,
        gateway.contracts,
        workspace.config.sources,
        source=body.source,
        dry_run=body.dry_run,
        now=request.app.state.clock.now(),
        max_event_bytes=workspace.config.collect.max_event_bytes,
    )
    return FastJSONResponse(result.as_dict())


@router.get("/contracts/recorded", summary="The contract versions recorded as in force")
async def recorded(request: Request) -> Any:
    rows = request.app.state.store.recorded_contracts()
    return FastJSONResponse(
        [{"type": t, "name": n, "version": v, "schema": s} for (t, n, v), s in sorted(rows.items())]
    )
