"""CORS for the routes browsers call (ingestion, SDK config, decisions): any origin, with credentials.

Browser SDKs send `Authorization`, so preflights must succeed; with credentials the origin is echoed,
never `*`.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BROWSER_PREFIXES = ("/v1/", "/beacon/", "/sourceConfig")
_MAX_AGE = "900"
_METHODS = "GET, POST, OPTIONS"


class BrowserCORSMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(BROWSER_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if scope["method"] == "OPTIONS":
            allow = {
                "access-control-allow-origin": origin or "*",
                "access-control-allow-methods": _METHODS,
                "access-control-allow-headers": headers.get("access-control-request-headers", "*"),
                "access-control-max-age": _MAX_AGE,
                "vary": "Origin",
            }
            if origin:
                allow["access-control-allow-credentials"] = "true"
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [(k.encode(), v.encode()) for k, v in allow.items()],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start" and origin:
                mutable = MutableHeaders(scope=message)
                mutable["access-control-allow-origin"] = origin
                mutable["access-control-allow-credentials"] = "true"
                mutable.append("vary", "Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)
