"""The configuration documents browser SDKs fetch before they send anything."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from orchestrion.api.ingest import text
from orchestrion.api.responses import FastJSONResponse
from orchestrion.collect.errors import RequestRejected
from orchestrion.collect.gateway import Gateway
from orchestrion.collect.wire import basic_auth_user

router = APIRouter(tags=["collect"])


def _source_or_error(request: Request, write_key: str | None) -> Any:
    gateway: Gateway = request.app.state.gateway
    if not write_key:
        return text(401, "no write key: pass ?writeKey= or Basic auth")
    try:
        return gateway.authenticate(write_key)
    except RequestRejected as exc:
        return text(exc.status, exc.message)


@router.get("/sourceConfig/", summary="RudderStack JS SDK v3 source configuration")
@router.get("/sourceConfig", include_in_schema=False)
async def source_config(request: Request, writeKey: str | None = None) -> Response:
    try:
        key = writeKey or basic_auth_user(request.headers.get("authorization"))
    except RequestRejected as exc:
        return text(exc.status, exc.message)
    source = _source_or_error(request, key)
    if isinstance(source, Response):
        return source
    workspace = request.app.state.workspace
    return FastJSONResponse(
        {
            "isHosted": False,
            "source": {
                "id": source.name,
                "name": source.name,
                "writeKey": key,
                "workspaceId": workspace.config.name,
                "enabled": True,
                "config": {"statsCollection": {"errors": {"enabled": False}, "metrics": {"enabled": False}}},
                "destinations": [],
            },
        }
    )


@router.get("/v1/projects/{write_key}/settings", summary="Segment analytics.js settings (CDN document)")
async def segment_settings(request: Request, write_key: str) -> Response:
    source = _source_or_error(request, write_key)
    if isinstance(source, Response):
        return source
    scheme = request.headers.get("x-forwarded-proto") or request.url.scheme
    host = request.headers.get("x-forwarded-host") or request.headers.get("host") or request.url.netloc
    return FastJSONResponse(
        {
            "integrations": {"Segment.io": {"apiKey": write_key, "apiHost": f"{host}/v1", "protocol": scheme}},
            "plan": {"track": {"__default": {"enabled": True, "integrations": {}}}},
            "metrics": {"sampleRate": 0},
            "middlewareSettings": {},
            "enabledMiddleware": {},
            "remotePlugins": [],
            "edgeFunction": {},
            "analyticsNextEnabled": True,
        }
    )
