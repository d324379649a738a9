"""The Segment / RudderStack-compatible collection routes.

Success is exactly `200 OK` with a short text body (both Python SDKs test for 200 only); errors are
plain text, so no SDK mistakes them for a retryable failure.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from orchestrion.collect.errors import RequestRejected
from orchestrion.collect.gateway import Gateway
from orchestrion.collect.wire import BATCH_ROUTES, SINGLE_EVENT_TYPES

log = logging.getLogger(__name__)
router = APIRouter(tags=["collect"])

QUARANTINED_HEADER = "X-Orchestrion-Quarantined"
_EVENT_SCHEMA = {
    "type": "object",
    "description": "A Segment/RudderStack event: type, userId or anonymousId, messageId, event, properties...",
    "additionalProperties": True,
}
_BATCH_SCHEMA = {
    "type": "object",
    "properties": {
        "batch": {"type": "array", "items": _EVENT_SCHEMA},
        "context": {"type": "object"},
        "integrations": {"type": "object"},
        "sentAt": {"type": "string"},
        "writeKey": {"type": "string"},
    },
    "required": ["batch"],
}
_AUTH_DOC = "Write key as HTTP Basic username, `writeKey` in the body, or `?writeKey=` (first match wins)."


def text(status: int, body: str, headers: dict[str, str] | None = None) -> PlainTextResponse:
    return PlainTextResponse(body if body.endswith("\n") else body + "\n", status_code=status, headers=headers)


def client_ip(request: Request) -> str | None:
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        return forwarded.split(",")[0].strip() or None
    return request.client.host if request.client else None


async def read_body(request: Request, limit: int) -> bytes | Response:
    """The body, or a 413 answered from Content-Length before reading (the connection is then closed)."""
    declared = request.headers.get("content-length")
    too_large = text(413, f"request size exceeds the {limit}-byte limit; send smaller batches", {"Connection": "close"})
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return too_large
    return bytes(body)


async def ingest(request: Request, route: str) -> Response:
    gateway: Gateway = request.app.state.gateway
    with gateway.writer.preparing():  # a forming group waits for this request's body (group_commit.py)
        body = await read_body(request, gateway.limits.max_request_bytes)
    if isinstance(body, Response):
        return body
    try:
        result = await gateway.ingest(
            route,
            body,
            authorization=request.headers.get("authorization"),
            query_write_key=request.query_params.get("writeKey"),
            content_encoding=request.headers.get("content-encoding"),
            ip=client_ip(request),
        )
    except RequestRejected as exc:
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else None
        return text(exc.status, exc.message, headers)
    except Exception:  # storage down: nothing acknowledged, the SDK retries
        log.exception("ingestion failed")
        return text(503, "storage unavailable; nothing was stored, retry")
    headers = {QUARANTINED_HEADER: str(result.quarantined)} if result.quarantined else None
    if route in SINGLE_EVENT_TYPES and result.invalid_problems:
        problem = result.invalid_problems[0]
        return text(400, f"{problem.message} (field {problem.field or '/'}); the event was quarantined", headers)
    return text(200, "OK", headers)


def _register(path: str, route: str, schema: dict[str, Any], summary: str) -> None:
    async def endpoint(request: Request) -> Response:
        return await ingest(request, route)

    endpoint.__name__ = f"ingest_{path.strip('/').replace('/', '_')}"
    router.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        summary=summary,
        description=_AUTH_DOC,
        response_class=PlainTextResponse,
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "parameters": [{"name": "writeKey", "in": "query", "required": False, "schema": {"type": "string"}}],
        },
        responses={
            200: {"description": "stored (text `OK`); X-Orchestrion-Quarantined counts events kept aside"},
            400: {"description": "unreadable body, or the single event is invalid (text)"},
            401: {"description": "missing or unknown write key (text)"},
            413: {"description": "request too large (text)"},
            429: {"description": "rate limited; see Retry-After"},
        },
    )


for _route, _type in SINGLE_EVENT_TYPES.items():
    _register(f"/v1/{_route}", _route, _EVENT_SCHEMA, f"Send one {_type} event")
for _route in sorted(BATCH_ROUTES):
    _register(f"/v1/{_route}", _route, _BATCH_SCHEMA, "Send a batch of events")
_register("/beacon/v1/batch", "batch", _BATCH_SCHEMA, "Send a batch by navigator.sendBeacon")


@router.post("/v1/m", summary="analytics.js metrics (accepted and ignored)", response_class=PlainTextResponse)
async def analytics_js_metrics() -> Response:
    return text(200, "OK")
