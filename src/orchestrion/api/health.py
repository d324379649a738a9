"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from orchestrion.api.responses import FastJSONResponse
from orchestrion.observe.metrics import CONTENT_TYPE

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> Any:
    return FastJSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: storage answers and the writers run")
async def readyz(request: Request) -> Any:
    problems = []
    try:
        request.app.state.store.ping()
    except Exception as exc:
        problems.append(f"storage: {exc}")
    if not request.app.state.writer.alive:
        problems.append("event writer stopped")
    if problems:
        return FastJSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return FastJSONResponse({"status": "ready"})


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
