"""Response helpers shared by the HTTP routes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import JSONResponse


def _default(value: Any) -> Any:
    # PostgreSQL returns sum()/avg() as Decimal; clients expect the number DuckDB gives for the same query
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


class FastJSONResponse(JSONResponse):
    """JSON via orjson: datetimes as ISO-8601, decimals as numbers, anything else unknown as its string."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default, option=orjson.OPT_NON_STR_KEYS)


def error_json(status: int, code: str, message: str) -> FastJSONResponse:
    """Errors carry both `code` and `message`: SDKs retry forever on JSON without them."""
    return FastJSONResponse({"code": code, "message": message}, status_code=status)
