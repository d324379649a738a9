"""Models in the admin API: run them (progress streamed as NDJSON) and read their status.

`orchestrion models run` uses these while a server holds the workspace (DuckDB allows one process per file).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.responses import StreamingResponse

from orchestrion.api.admin import require_admin
from orchestrion.api.responses import FastJSONResponse, error_json
from orchestrion.model.errors import ModelProjectError
from orchestrion.model.refresh import load_models, models_status
from orchestrion.model.runner import ModelRunner, RunProgress
from orchestrion.model.scheduler import wait_for_processing
from orchestrion.store.warehouse import warehouse_for

router = APIRouter(prefix="/api/models", tags=["models"], dependencies=[Depends(require_admin)])


class RunRequest(BaseModel):
    select: list[str] | None = Field(
        default=None, description="dbt-style: `name`, `name+` (with what reads it), `+name` (with what it reads)"
    )
    full_refresh: bool = Field(default=False, description="rebuild incremental models whole")


def _line(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, default=str) + b"\n"


@router.get("", summary="Every model with its last build, rows, duration and freshness")
async def status(request: Request) -> Any:
    state = request.app.state
    try:
        rows = await asyncio.to_thread(models_status, state.store, state.workspace, state.clock)
    except ModelProjectError as exc:
        return error_json(400, "model_project_error", str(exc))
    return FastJSONResponse(rows)


@router.post("/run", summary="Build models in dependency order; streams progress lines, then the report")
async def run(request: Request, body: RunRequest) -> Any:
    state = request.app.state
    warehouse = warehouse_for(state.store)
    try:
        project = await asyncio.to_thread(load_models, state.workspace, warehouse)
        project.select(body.select)
    except ModelProjectError as exc:
        return error_json(400, "model_project_error", str(exc))
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def progress(event: RunProgress) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, _line({"type": "progress", **event.as_dict()}))

    def build() -> None:
        try:
            wait_for_processing(state.store)
            runner = ModelRunner(state.store, warehouse, project, state.clock, triggered_by="api")
            report = runner.run(body.select, full_refresh=body.full_refresh, on_progress=progress)
            loop.call_soon_threadsafe(queue.put_nowait, _line({"type": "report", "report": report.as_dict()}))
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            loop.call_soon_threadsafe(queue.put_nowait, _line({"type": "error", "message": message}))
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    task = asyncio.create_task(asyncio.to_thread(build))

    async def lines() -> AsyncIterator[bytes]:
        while (item := await queue.get()) is not None:
            yield item
        await task

    return StreamingResponse(lines(), media_type="application/x-ndjson")
