"""Response helpers shared by the HTTP routes."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    """JSON via orjson: datetimes as ISO-8601, anything else unknown as its string."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str, option=orjson.OPT_NON_STR_KEYS)


def error_json(status: int, code: str, message: str) -> FastJSONResponse:
    """Errors carry both `code` and `message`: SDKs retry forever on JSON without them."""
    return FastJSONResponse({"code": code, "message": message}, status_code=status)
