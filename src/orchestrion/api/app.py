"""The HTTP application: ingestion, SDK config, admin API, health and metrics on one server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrion import __version__
from orchestrion.api import admin, health, ingest, pipeline_status, profiles, sdk_config
from orchestrion.api import models as models_api
from orchestrion.api.cors import BrowserCORSMiddleware
from orchestrion.api.responses import error_json
from orchestrion.clock import Clock, SystemClock
from orchestrion.collect.contracts import ContractSet, load_contracts
from orchestrion.collect.gateway import Gateway
from orchestrion.model.scheduler import ModelScheduler
from orchestrion.observe.metrics import Metrics
from orchestrion.operations import contracts_to_record
from orchestrion.pipeline import build_processing
from orchestrion.store.group_commit import GroupCommitWriter
from orchestrion.store.ports import Store
from orchestrion.workspace import Workspace

log = logging.getLogger(__name__)
_PRUNE_EVERY_SECONDS = 3600.0


class MetricsMiddleware:
    """Counts requests by route template and status, and times them."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, scope["method"], str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - started)


async def _prune_dedup_keys(app: FastAPI) -> None:
    while True:
        await asyncio.sleep(_PRUNE_EVERY_SECONDS)
        window = app.state.workspace.config.collect.dedup_window
        try:
            await asyncio.to_thread(app.state.store.prune_dedup, app.state.clock.now() - window)
        except Exception:
            log.exception("pruning dedup keys failed; will retry")


def create_app(
    workspace: Workspace,
    store: Store,
    *,
    clock: Clock | None = None,
    contracts: ContractSet | None = None,
    on_started: Callable[[], None] | None = None,
) -> FastAPI:
    """Build the app around an open store; the lifespan starts and drains the event writers."""
    clock = clock or SystemClock()
    contracts = contracts if contracts is not None else load_contracts(workspace.contracts_dir)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        processing = await asyncio.to_thread(build_processing, store, workspace)
        app.state.processing = processing
        writer = GroupCommitWriter(
            store, threads=store.capabilities.writer_threads, on_commit=processing.conductor.wake
        )
        app.state.writer = writer
        app.state.gateway = Gateway(workspace, contracts, writer, metrics, clock)
        store.record_contracts(contracts_to_record(contracts))
        pruner = asyncio.create_task(_prune_dedup_keys(app))
        scheduler = ModelScheduler(store, workspace, clock) if workspace.config.models.scheduler else None
        refresher = asyncio.create_task(scheduler.run_forever()) if scheduler is not None else None
        processing.conductor.start()
        if on_started is not None:
            on_started()
        try:
            yield
        finally:
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruner
            if scheduler is not None and refresher is not None:
                await scheduler.stop(refresher)
            await asyncio.to_thread(writer.close)
            await asyncio.to_thread(processing.conductor.stop)

    app = FastAPI(
        title="Orchestrion",
        version=__version__,
        description="Segment/RudderStack-compatible collection and the Orchestrion admin API.",
        lifespan=lifespan,
    )
    app.state.workspace = workspace
    app.state.store = store
    app.state.clock = clock
    app.state.metrics = metrics
    app.include_router(ingest.router)
    app.include_router(sdk_config.router)
    app.include_router(admin.router)
    app.include_router(profiles.router)
    app.include_router(models_api.router)
    app.include_router(pipeline_status.router)
    app.include_router(health.router)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return error_json(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Any:
        parts = []
        for item in exc.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {item.get('msg')}")
        return error_json(400, "invalid_request", "; ".join(parts))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Any:
        log.exception("unexpected error on %s", request.url.path)
        return error_json(500, "internal_error", "unexpected server error; see the server log")

    app.add_middleware(BrowserCORSMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
