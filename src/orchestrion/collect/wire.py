"""Request-level decoding of the Segment / RudderStack wire format.

Everything here either yields the request's events or rejects the whole request with a 4xx
(`RequestRejected`): write key resolution, gzip, JSON parsing, nesting depth and the batch shape.
Event-level checks live in `normalize.py`.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from orchestrion.collect.errors import RequestRejected

SINGLE_EVENT_TYPES = {
    "track": "track",
    "t": "track",
    "identify": "identify",
    "i": "identify",
    "page": "page",
    "p": "page",
    "screen": "screen",
    "s": "screen",
    "group": "group",
    "g": "group",
    "alias": "alias",
    "a": "alias",
}
BATCH_ROUTES = {"batch", "b", "import"}


@dataclass(frozen=True)
class DecodedRequest:
    """A readable request: its write key, its raw event items and the batch-level fields."""

    write_key: str
    items: list[Any]
    batch_context: dict[str, Any] | None
    batch_integrations: dict[str, Any] | None
    batch_sent_at: Any


def basic_auth_user(authorization: str | None) -> str | None:
    """The username of an HTTP Basic header (the write key), or None when there is none."""
    if not authorization or authorization[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise RequestRejected(401, "Authorization header is not valid Basic auth: send base64('WRITE_KEY:')") from exc
    user, _, _ = decoded.partition(":")
    return user or None


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress a gzip body, refusing a truncated stream or one that inflates past `limit`."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise RequestRejected(400, f"body is not valid gzip ({exc}); send it uncompressed or fix the encoding") from exc
    if len(out) > limit:
        raise RequestRejected(413, f"request body inflates past the {limit}-byte limit; send smaller batches")
    if not inflater.eof:
        raise RequestRejected(400, "gzip body is truncated; the client must send the whole stream")
    return out


# JSON leaves: skipped by a set lookup, cheaper than isinstance on the ~50 values of every event.
_LEAF_TYPES = frozenset({str, int, float, bool, type(None)})
# Up to this limit the walk recurses (never deeper than the limit, so hostile input cannot exhaust the
# stack); configured limits are at most a few hundred, larger ones take the iterative walk.
_RECURSION_SAFE_LIMIT = 400


def nesting_depth_exceeds(value: Any, limit: int) -> bool:
    """True when objects/arrays nest deeper than `limit` (the top-level value is at depth 1)."""
    if limit <= _RECURSION_SAFE_LIMIT:
        return _deeper_than(value, 1, limit)
    return _deeper_than_iterative(value, limit)


def _deeper_than(node: Any, depth: int, limit: int) -> bool:
    if depth > limit:
        return True
    if isinstance(node, dict):
        children: Any = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return False
    for child in children:
        if type(child) in _LEAF_TYPES:
            continue
        if isinstance(child, dict | list) and _deeper_than(child, depth + 1, limit):
            return True
    return False


def _deeper_than_iterative(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values() if isinstance(child, dict | list))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, dict | list))
    return False


def parse_body(body: bytes, max_depth: int, wrapper_levels: int = 2) -> dict[str, Any]:
    """Parse JSON whatever the Content-Type; the top level must be an object.

    `wrapper_levels` is how deep the events sit: 2 in a batch (the body and its `batch` array), 0 when the
    body is the event itself, so the same event meets the same limit on every route.
    """
    if not body.strip():
        raise RequestRejected(400, "request body is empty; send a JSON object")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
        if "utf-8" in reason.lower() or "surrogates" in reason.lower():
            raise RequestRejected(400, "request body is not valid UTF-8; encode JSON as UTF-8") from exc
        if "recursion" in reason.lower() or "depth limit" in reason.lower():
            raise RequestRejected(
                400, f"JSON nests deeper than the {max_depth}-level limit; flatten the properties"
            ) from exc
        raise RequestRejected(400, f"request body is not valid JSON: {reason}") from exc
    if not isinstance(parsed, dict):
        raise RequestRejected(400, f"request body must be a JSON object, not {type(parsed).__name__}")
    # The batch wrapper and the array around the events do not count against the event's own depth.
    if nesting_depth_exceeds(parsed, max_depth + wrapper_levels):
        raise RequestRejected(400, f"JSON nests deeper than the {max_depth}-level limit; flatten the properties")
    if b"\\u0000" in body:  # rare: the walk is paid only when a NUL may be there
        parsed = {without_nul(key): without_nul(value) for key, value in parsed.items()}
    return parsed


def without_nul(value: Any) -> Any:
    """`value` with every NUL character removed from its strings and keys.

    PostgreSQL text cannot hold a NUL (a batch holding one would fail to commit, and its `->>` cannot
    extract one), and a NUL is never meaningful in an event: it is dropped, the same on every backend.
    Called after the depth check, so the recursion is bounded.
    """
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    return value


def decode_request(
    route: str,
    body: bytes,
    *,
    authorization: str | None,
    query_write_key: str | None,
    content_encoding: str | None,
    max_request_bytes: int,
    max_depth: int,
) -> DecodedRequest:
    """Turn a raw ingestion request into its write key and items, or reject it whole."""
    header_key = basic_auth_user(authorization)
    if content_encoding and content_encoding.strip().lower() == "gzip":
        body = gunzip(body, max_request_bytes)
    elif content_encoding and content_encoding.strip().lower() not in ("identity", ""):
        raise RequestRejected(415, f"Content-Encoding {content_encoding!r} is not supported; use gzip or none")
    parsed = parse_body(body, max_depth, wrapper_levels=2 if route in BATCH_ROUTES else 0)
    body_key = parsed.get("writeKey")
    write_key = header_key or (body_key if isinstance(body_key, str) and body_key else None) or query_write_key
    if not write_key:
        raise RequestRejected(
            401, "no write key: send HTTP Basic auth with the write key as username, or writeKey in the body"
        )
    if route in BATCH_ROUTES:
        items = parsed.get("batch")
        if not isinstance(items, list):
            raise RequestRejected(400, "field 'batch' must be a list of events")
        context = parsed.get("context")
        integrations = parsed.get("integrations")
        return DecodedRequest(
            write_key=write_key,
            items=items,
            batch_context=context if isinstance(context, dict) else None,
            batch_integrations=integrations if isinstance(integrations, dict) else None,
            batch_sent_at=parsed.get("sentAt"),
        )
    event = dict(parsed)
    event.pop("writeKey", None)
    event["type"] = SINGLE_EVENT_TYPES[route]
    return DecodedRequest(
        write_key=write_key, items=[event], batch_context=None, batch_integrations=None, batch_sent_at=None
    )
