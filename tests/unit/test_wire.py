"""Request-level decoding: write key, gzip, JSON, depth, batch shape and the type taken from the path."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import orjson
import pytest

from orchestrion.collect.errors import RequestRejected
from orchestrion.collect.wire import basic_auth_user, decode_request, gunzip, nesting_depth_exceeds, parse_body

LIMIT = 4_000_000


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def decode(route: str, body: bytes | dict[str, Any], **overrides: Any) -> Any:
    raw = orjson.dumps(body) if isinstance(body, dict) else body
    options: dict[str, Any] = {
        "authorization": basic("wk_web_test_0001"),
        "query_write_key": None,
        "content_encoding": None,
        "max_request_bytes": LIMIT,
        "max_depth": 32,
    }
    options.update(overrides)
    return decode_request(route, raw, **options)


def rejected(route: str, body: bytes | dict[str, Any], **overrides: Any) -> RequestRejected:
    with pytest.raises(RequestRejected) as caught:
        decode(route, body, **overrides)
    return caught.value


# -- write key ------------------------------------------------------------------------------------------
def test_basic_auth_username_is_the_write_key() -> None:
    assert basic_auth_user(basic("wk_1")) == "wk_1"
    assert basic_auth_user(basic("wk_1", "ignored-password")) == "wk_1"
    assert basic_auth_user("basic " + base64.b64encode(b"wk_lower:").decode()) == "wk_lower"


def test_no_or_other_authorization_yields_no_key() -> None:
    assert basic_auth_user(None) is None
    assert basic_auth_user("") is None
    assert basic_auth_user("Bearer abc") is None
    assert basic_auth_user(basic("")) is None


def test_malformed_basic_auth_is_401() -> None:
    for header in ("Basic not-base64!!", "Basic " + base64.b64encode(b"\xff\xfe:").decode()):
        with pytest.raises(RequestRejected) as caught:
            basic_auth_user(header)
        assert caught.value.status == 401
        assert "Basic" in caught.value.message


def test_write_key_order_header_then_body_then_query() -> None:
    body = {"writeKey": "wk_body_0001", "batch": []}
    assert decode("batch", body, query_write_key="wk_query_01").write_key == "wk_web_test_0001"
    assert decode("batch", body, authorization=None, query_write_key="wk_query_01").write_key == "wk_body_0001"
    assert decode("batch", {"batch": []}, authorization=None, query_write_key="wk_query_01").write_key == "wk_query_01"


def test_missing_write_key_is_401() -> None:
    error = rejected("batch", {"batch": []}, authorization=None)
    assert error.status == 401
    assert "write key" in error.message
    assert rejected("track", {"writeKey": 5, "event": "x"}, authorization=None).status == 401


# -- body ---------------------------------------------------------------------------------------------------
def test_gzip_body_is_inflated() -> None:
    body = gzip.compress(orjson.dumps({"batch": [{"type": "track", "event": "A", "userId": "u"}]}))
    decoded = decode("batch", body, content_encoding="gzip")
    assert decoded.items == [{"type": "track", "event": "A", "userId": "u"}]
    assert decode("batch", body, content_encoding=" GZIP ").items == decoded.items


def test_truncated_gzip_is_400() -> None:
    body = gzip.compress(orjson.dumps({"batch": [{"type": "track"}] * 50}))
    error = rejected("batch", body[: len(body) // 2], content_encoding="gzip")
    assert error.status == 400
    assert "truncated" in error.message


def test_garbage_declared_as_gzip_is_400() -> None:
    error = rejected("batch", b'{"batch": []}', content_encoding="gzip")
    assert error.status == 400
    assert "gzip" in error.message


def test_gzip_bomb_over_the_limit_is_413_without_inflating_it_all() -> None:
    bomb = gzip.compress(b" " * 50_000_000)  # ~50 KB on the wire
    assert len(bomb) < 100_000
    with pytest.raises(RequestRejected) as caught:
        gunzip(bomb, 1_000_000)
    assert caught.value.status == 413
    assert gunzip(gzip.compress(b"x" * 1000), 1000) == b"x" * 1000  # exactly at the limit is fine


def test_unknown_content_encoding_is_415() -> None:
    assert rejected("batch", {"batch": []}, content_encoding="br").status == 415
    assert decode("batch", {"batch": []}, content_encoding="identity").items == []


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"{not json", "not valid JSON"),
        (b'{"batch": [}', "not valid JSON"),
        (b'{"a": "\xff\xfe"}', "UTF-8"),
        (b'"just a string"', "must be a JSON object"),
        (b"[1, 2]", "must be a JSON object"),
    ],
)
def test_unreadable_bodies_are_400_with_a_reason(body: bytes, needle: str) -> None:
    error = rejected("batch", body)
    assert error.status == 400
    assert needle in error.message


def test_nesting_deeper_than_the_limit_is_400() -> None:
    def nested(depth: int) -> dict[str, Any]:
        value: dict[str, Any] = {}
        for _ in range(depth - 1):
            value = {"a": value}
        return value

    # the event itself may nest `max_depth` levels; the batch wrapper and its array do not count
    ok = {"batch": [{"type": "track", "properties": nested(7)}]}
    assert len(decode("batch", ok, max_depth=8).items) == 1
    deep = {"batch": [{"type": "track", "properties": nested(8)}]}
    error = rejected("batch", deep, max_depth=8)
    assert error.status == 400
    assert "8-level limit" in error.message


def test_json_too_deep_for_the_parser_is_400_not_a_crash() -> None:
    body = b'{"batch": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    error = rejected("batch", body)
    assert error.status == 400
    assert "nests deeper" in error.message


def test_nesting_depth_counts_arrays_and_objects() -> None:
    assert not nesting_depth_exceeds({"a": [1, {"b": 2}]}, 3)
    assert nesting_depth_exceeds({"a": [1, {"b": [3]}]}, 3)


def test_parse_body_accepts_any_whitespace_and_unicode() -> None:
    assert parse_body(' {"name": "Zoë 🏋"} '.encode(), 32) == {"name": "Zoë 🏋"}


# -- batch shape and type -----------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [None, {"type": "track"}, "events", 3])
def test_batch_that_is_not_a_list_is_400(batch: Any) -> None:
    body: dict[str, Any] = {} if batch is None else {"batch": batch}
    error = rejected("batch", body)
    assert error.status == 400
    assert "'batch' must be a list" in error.message


def test_batch_level_fields_are_returned_for_merging() -> None:
    decoded = decode(
        "b",
        {
            "batch": [{"type": "track"}],
            "context": {"library": {"name": "x"}},
            "integrations": {"All": True},
            "sentAt": "2026-01-01T00:00:00Z",
        },
    )
    assert decoded.batch_context == {"library": {"name": "x"}}
    assert decoded.batch_integrations == {"All": True}
    assert decoded.batch_sent_at == "2026-01-01T00:00:00Z"
    # wrong-typed batch-level objects are ignored rather than failing every event
    assert decode("import", {"batch": [], "context": [1]}).batch_context is None


@pytest.mark.parametrize(
    ("route", "expected"),
    [("track", "track"), ("t", "track"), ("i", "identify"), ("page", "page"), ("s", "screen"), ("g", "group")],
)
def test_single_event_routes_set_type_from_the_path(route: str, expected: str) -> None:
    decoded = decode(route, {"type": "alias", "userId": "u", "writeKey": "wk_body_0001"}, authorization=None)
    assert decoded.write_key == "wk_body_0001"
    assert decoded.items == [{"type": expected, "userId": "u"}]  # writeKey is not part of the event
    assert decoded.batch_context is None
