"""What a real server answers to bad input, and the wire details clients rely on (auth, CORS, SDK config).

Request-level problems refuse the whole request with a 4xx and a plain-text message naming the problem;
event-level problems cost only the bad events, which land in `quarantine` with their reasons.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.support_database import server_database
from tests.e2e.support_http import instant, now, raw_request
from tests.support.server import DEFAULT_WORKSPACE, ServerProcess, start_server

WEB_KEY = "wk_web_test_0001"
APP_KEY = "wk_app_test_0001"
LIMITED_KEY = "wk_limited_test_0001"
WORKSPACE = DEFAULT_WORKSPACE + "  - name: limited\n    write_key: wk_limited_test_0001\n    rate_limit: 2\n"
LIMIT_BYTES = 4_000_000
QUARANTINED = "X-Orchestrion-Quarantined"


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per backend for the whole module: each test uses its own ids."""
    with server_database(request.param) as database_url:
        running = start_server(
            tmp_path_factory.mktemp(f"bad-input-{request.param}"), workspace_yaml=WORKSPACE, database_url=database_url
        )
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def mid(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


def track(message_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Workout Completed", "userId": "u-bad-input", "messageId": message_id, **fields}


def post_batch(http: httpx.Client, events: list[Any], key: str = WEB_KEY, **body: Any) -> httpx.Response:
    return http.post("/v1/batch", json={"batch": events, **body}, auth=(key, ""))


def assert_refused(response: httpx.Response | Any, status: int, *words: str) -> None:
    """A refusal a developer can act on: the status, plain text, and the words that name the problem."""
    if isinstance(response, httpx.Response):
        actual, text = response.status_code, response.text
    else:
        actual, text = response.status, response.body.decode()
    headers = response.headers
    assert actual == status, text
    assert headers["content-type"].startswith("text/plain"), headers
    for word in words:
        assert word.lower() in text.lower(), f"{word!r} not in {text!r}"


def stored(server: ServerProcess, *message_ids: str, columns: str = "message_id") -> list[list[Any]]:
    quoted = ", ".join(f"'{m}'" for m in message_ids)
    return server.query(f"select {columns} from events where message_id in ({quoted}) order by message_id")


def nested(depth: int) -> dict[str, Any]:
    """An object whose own nesting depth is `depth` (a flat object has depth 1)."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"inner": value}
    return value


# -- request-level refusals ------------------------------------------------------------------------


def test_malformed_json_is_refused_whole(http: httpx.Client) -> None:
    response = http.post("/v1/batch", content=b'{"batch": [{"type": "track",', auth=(WEB_KEY, ""))
    assert_refused(response, 400, "not valid JSON")
    assert_refused(http.post("/v1/batch", content=b"[1, 2]", auth=(WEB_KEY, "")), 400, "JSON object")
    assert_refused(http.post("/v1/batch", json={"batch": {"type": "track"}}, auth=(WEB_KEY, "")), 400, "batch", "list")
    assert_refused(http.post("/v1/batch", content=b"", auth=(WEB_KEY, "")), 400, "empty")


def test_truncated_or_false_gzip_is_refused(http: httpx.Client) -> None:
    whole = gzip.compress(json.dumps({"batch": [track(mid("gz"))]}).encode())
    headers = {"Content-Encoding": "gzip"}
    assert_refused(http.post("/v1/batch", content=whole[:-12], headers=headers, auth=(WEB_KEY, "")), 400, "truncated")
    not_gzip = http.post("/v1/batch", content=b'{"batch": []}', headers=headers, auth=(WEB_KEY, ""))
    assert_refused(not_gzip, 400, "gzip")
    assert http.post("/v1/batch", content=whole, headers=headers, auth=(WEB_KEY, "")).status_code == 200


def test_invalid_utf8_is_refused(http: httpx.Client) -> None:
    body = b'{"batch": [{"type": "track", "event": "Caf\xe9 \xff", "userId": "u1"}]}'
    assert_refused(http.post("/v1/batch", content=body, auth=(WEB_KEY, "")), 400, "UTF-8")


@pytest.mark.parametrize("route", ["/v1/batch", "/v1/track"])
def test_nesting_limit_is_the_events_own_depth_on_every_route(
    server: ServerProcess, http: httpx.Client, route: str
) -> None:
    """32 levels (the default) are accepted in a batch and alone; 33 are refused, whatever the route."""
    at_limit, over_limit = mid("deep32"), mid("deep33")
    for message_id, depth, expected in ((at_limit, 31, 200), (over_limit, 32, 400)):
        event = track(message_id, properties=nested(depth))  # the event object itself adds one level
        body = {"batch": [event]} if route == "/v1/batch" else event
        response = http.post(route, json=body, auth=(WEB_KEY, ""))
        assert response.status_code == expected, (depth + 1, response.text)
        if expected == 400:
            assert_refused(response, 400, "nests deeper", "32")
    assert stored(server, at_limit, over_limit) == [[at_limit]]


def test_pathological_nesting_is_a_400_not_a_crash(http: httpx.Client) -> None:
    body = b'{"batch": [' + b"[" * 5000 + b"]" * 5000 + b"]}"
    assert_refused(http.post("/v1/batch", content=body, auth=(WEB_KEY, "")), 400, "deeper")


def test_oversize_request_is_413(server: ServerProcess) -> None:
    padding = "x" * (LIMIT_BYTES + 100_000)
    body = json.dumps({"writeKey": WEB_KEY, "batch": [track(mid("big"), properties={"p": padding})]}).encode()
    sent_whole = raw_request(server.url, "POST", "/v1/batch", {"Content-Length": str(len(body))}, body)
    assert_refused(sent_whole, 413, "exceeds", str(LIMIT_BYTES))
    # Refused from the declared length alone, before a byte of body is read.
    declared_only = raw_request(server.url, "POST", "/v1/batch", {"Content-Length": "5000000"})
    assert_refused(declared_only, 413, "exceeds")
    # Without a length (chunked), counted while reading.
    chunked = raw_request(
        server.url,
        "POST",
        "/v1/batch",
        {"Transfer-Encoding": "chunked"},
        b"".join(
            f"{len(part):x}\r\n".encode() + part + b"\r\n"
            for part in [body[i : i + 65536] for i in range(0, len(body), 65536)]
        )
        + b"0\r\n\r\n",
    )
    assert_refused(chunked, 413, "exceeds")


def test_gzip_that_inflates_past_the_limit_is_413(http: httpx.Client) -> None:
    bomb = gzip.compress(b'{"batch": [], "pad": "' + b" " * (LIMIT_BYTES + 10) + b'"}')
    assert len(bomb) < 100_000
    response = http.post("/v1/batch", content=bomb, headers={"Content-Encoding": "gzip"}, auth=(WEB_KEY, ""))
    assert_refused(response, 413, "inflates")


def test_missing_or_unknown_write_key_is_401(http: httpx.Client) -> None:
    assert_refused(http.post("/v1/batch", json={"batch": [track(mid("nokey"))]}), 401, "no write key")
    unknown = http.post("/v1/batch", json={"batch": [track(mid("unknown"))]}, auth=("wk_nobody_0000", ""))
    assert_refused(unknown, 401, "invalid write key")
    in_body = http.post("/v1/track", json={**track(mid("unknown")), "writeKey": "wk_nobody_0000"})
    assert_refused(in_body, 401, "invalid write key")


# -- event-level problems --------------------------------------------------------------------------


def reasons_of(value: Any) -> list[dict[str, str]]:
    """`reasons` as the query API returns it: JSON text (DuckDB) or already decoded (PostgreSQL)."""
    decoded = json.loads(value) if isinstance(value, str) else value
    assert isinstance(decoded, list)
    return decoded


def test_bad_events_are_quarantined_and_good_ones_stored(server: ServerProcess, http: httpx.Client) -> None:
    ids = {name: mid(name) for name in ("good1", "typed", "noids", "noevent", "badtype", "huge", "good2")}
    events = [
        track(ids["good1"], properties={"duration_min": 20}),
        track(ids["typed"], userId={}),
        {"type": "identify", "messageId": ids["noids"], "traits": {"plan": "pro"}},
        {"type": "track", "userId": "u-bad-input", "messageId": ids["noevent"], "properties": {}},
        {"type": "purchase", "userId": "u-bad-input", "messageId": ids["badtype"]},
        track(ids["huge"], properties={"notes": "n" * 40_000}),
        {"type": "identify", "userId": "u-bad-input", "messageId": ids["good2"], "traits": {"plan": "pro"}},
    ]
    response = post_batch(http, events)
    assert response.status_code == 200, response.text
    assert response.headers[QUARANTINED] == "5"

    assert stored(server, *ids.values()) == sorted([[ids["good1"]], [ids["good2"]]])
    quoted = ", ".join(f"'{m}'" for m in ids.values())
    rows = server.query(f"select message_id, kind, reasons, batch_index from quarantine where message_id in ({quoted})")
    quarantined = {row[0]: (row[1], reasons_of(row[2]), row[3]) for row in rows}
    expected = {
        "typed": (1, "Datatype-Mismatch", "/userId"),
        "noids": (2, "Required-Missing", "/userId"),
        "noevent": (3, "Required-Missing", "/event"),
        "badtype": (4, "Unknown-Type", "/type"),
        "huge": (5, "Event-Too-Large", ""),
    }
    assert set(quarantined) == {ids[name] for name in expected}
    for name, (index, code, field) in expected.items():
        kind, reasons, batch_index = quarantined[ids[name]]
        assert (kind, batch_index) == ("invalid", index)
        assert any(r["code"] == code and r["field"] == field and r["message"] for r in reasons), (name, reasons)


@pytest.mark.parametrize(
    ("route", "event", "field"),
    [
        ("/v1/track", {"userId": "u-single", "properties": {"a": 1}}, "/event"),
        ("/v1/identify", {"userId": {"id": 7}, "traits": {}}, "/userId"),
        ("/v1/t", {"event": "Signed Up"}, "/userId"),
        ("/v1/group", {"userId": "u-single"}, "/groupId"),
    ],
)
def test_single_event_route_answers_400_naming_the_field(
    server: ServerProcess, http: httpx.Client, route: str, event: dict[str, Any], field: str
) -> None:
    message_id = mid("single")
    response = http.post(route, json={**event, "messageId": message_id}, auth=(WEB_KEY, ""))
    assert_refused(response, 400, field, "quarantined")
    assert response.headers[QUARANTINED] == "1"
    assert server.query(f"select batch_index from quarantine where message_id = '{message_id}'") == [[0]]


def test_explicit_nulls_for_optional_fields_are_accepted(server: ServerProcess, http: httpx.Client) -> None:
    message_id = mid("nulls")
    event = {
        "type": "page",
        "userId": "u-nulls",
        "anonymousId": None,
        "messageId": message_id,
        "name": None,
        "category": None,
        "properties": None,
        "context": None,
        "integrations": None,
        "timestamp": None,
        "originalTimestamp": None,
        "sentAt": None,
    }
    response = post_batch(http, [event], sentAt=None, context=None, integrations=None)
    assert response.status_code == 200, response.text
    assert QUARANTINED not in response.headers
    assert server.query(f"select user_id, anonymous_id, name from pages where message_id = '{message_id}'") == [
        ["u-nulls", None, None]
    ]
    unnamed = http.post(
        "/v1/track", json={"event": "Null Id", "userId": "u-nulls", "messageId": None}, auth=(WEB_KEY, "")
    )
    assert unnamed.status_code == 200
    generated = server.query("select message_id from tracks where event = 'Null Id' and user_id = 'u-nulls'")
    assert len(generated) == 1 and generated[0][0]


def test_nul_characters_are_dropped_on_every_backend(server: ServerProcess, http: httpx.Client) -> None:
    """PostgreSQL text cannot hold NUL: without care one such event would fail its whole commit group (503)."""
    message_id = mid("nul")
    event = {
        "type": "track",
        "event": "Nul\x00 Seen",
        "userId": "u-\x00nul",
        "messageId": message_id + "\x00",
        "properties": {"note\x00": "a\x00b", "list": ["\x00"]},
    }
    response = post_batch(http, [event])
    assert response.status_code == 200, response.text
    assert QUARANTINED not in response.headers
    rows = server.query(f"select event, user_id, note from nul_seen where message_id = '{message_id}'")
    assert rows == [["Nul Seen", "u-nul", "ab"]]


def test_analytics_js_text_plain_body_and_short_paths(server: ServerProcess, http: httpx.Client) -> None:
    message_id = mid("ajs")
    body = json.dumps({"event": "Clicked", "anonymousId": "anon-ajs", "writeKey": WEB_KEY, "messageId": message_id})
    response = http.post("/v1/t", content=body, headers={"Content-Type": "text/plain"})
    assert (response.status_code, response.text.strip()) == (200, "OK")
    assert server.query(f"select event, anonymous_id from tracks where message_id = '{message_id}'") == [
        ["Clicked", "anon-ajs"]
    ]
    assert http.post("/v1/m", content=b'{"series": []}', headers={"Content-Type": "text/plain"}).status_code == 200


# -- auth, dedup, CORS, SDK config, rate limit, admin errors ---------------------------------------


def send_keyed(
    http: httpx.Client,
    message_id: str,
    *,
    basic: str | None,
    body: str | None,
    query: str | None,
    path: str = "/v1/batch",
) -> httpx.Response:
    """One event with the write key in any of the three places."""
    payload: dict[str, Any] = {"batch": [track(message_id)]}
    if body is not None:
        payload["writeKey"] = body
    options: dict[str, Any] = {}
    if basic is not None:
        options["auth"] = (basic, "")
    if query is not None:
        options["params"] = {"writeKey": query}
    return http.post(path, content=json.dumps(payload), **options)


def test_write_key_order_basic_then_body_then_query(server: ServerProcess, http: httpx.Client) -> None:
    cases: dict[str, tuple[dict[str, Any], str]] = {
        mid("basic"): ({"basic": APP_KEY, "body": WEB_KEY, "query": WEB_KEY}, "app"),
        mid("body"): ({"basic": None, "body": WEB_KEY, "query": APP_KEY}, "web"),
        mid("query"): ({"basic": None, "body": None, "query": APP_KEY}, "app"),
        mid("beacon"): ({"basic": None, "body": None, "query": APP_KEY, "path": "/beacon/v1/batch"}, "app"),
    }
    for message_id, (keys, _) in cases.items():
        response = send_keyed(http, message_id, **keys)
        assert response.status_code == 200, (keys, response.text)
    rows = stored(server, *cases, columns="message_id, source")
    assert {row[0]: row[1] for row in rows} == {message_id: source for message_id, (_, source) in cases.items()}
    # First match wins: an unknown key in the header is not rescued by a good one in the body.
    refused = send_keyed(http, mid("x"), basic="wk_nobody_0000", body=WEB_KEY, query=None)
    assert_refused(refused, 401, "invalid write key")


def test_same_batch_twice_is_stored_once(server: ServerProcess, http: httpx.Client) -> None:
    ids = [mid("dup") for _ in range(3)]
    events = [track(m) for m in ids]
    assert post_batch(http, events).status_code == 200
    assert post_batch(http, events).status_code == 200
    assert post_batch(http, [events[1], events[1]]).status_code == 200
    quoted = ", ".join(f"'{m}'" for m in ids)
    counts = server.query(f"select message_id, count(*) from events where message_id in ({quoted}) group by 1")
    assert sorted(counts) == [[m, 1] for m in sorted(ids)]


def test_cors_preflight_and_origin_echo(http: httpx.Client) -> None:
    origin = "https://shop.example.com"
    preflight = http.options(
        "/v1/batch",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    actual = http.post(
        "/v1/batch", json={"batch": [track(mid("cors"))]}, auth=(WEB_KEY, ""), headers={"Origin": origin}
    )
    assert actual.status_code == 200
    assert actual.headers["access-control-allow-origin"] == origin
    assert actual.headers["access-control-allow-credentials"] == "true"


def test_browser_sdk_config_documents(server: ServerProcess, http: httpx.Client) -> None:
    rudder = http.get("/sourceConfig/", params={"writeKey": WEB_KEY, "p": "npm", "v": "3.0.0"})
    assert rudder.status_code == 200
    source = rudder.json()["source"]
    assert source["enabled"] is True
    assert source["config"]["statsCollection"]["errors"]["enabled"] is False
    assert source["config"]["statsCollection"]["metrics"]["enabled"] is False
    assert isinstance(source["destinations"], list) and source["id"] and source["workspaceId"]
    assert_refused(http.get("/sourceConfig/", params={"writeKey": "wk_nobody_0000"}), 401, "write key")

    segment = http.get(f"/v1/projects/{WEB_KEY}/settings")
    assert segment.status_code == 200
    settings = segment.json()["integrations"]["Segment.io"]
    assert settings["apiHost"] == f"127.0.0.1:{server.port}/v1"
    assert settings["apiKey"] == WEB_KEY
    assert settings["protocol"] == "http"
    assert http.get("/v1/projects/wk_nobody_0000/settings").status_code == 401


def test_rate_limited_source_gets_429_with_retry_after(http: httpx.Client) -> None:
    answers = []
    for _ in range(100):  # the bucket holds 4 and refills 2/s: a slow machine needs more than 4 sends
        answers.append(post_batch(http, [track(mid("rl"))], key=LIMITED_KEY))
        if answers[-1].status_code != 200:
            break
    statuses = [a.status_code for a in answers]
    assert statuses[:4] == [200] * 4 and statuses[-1] == 429, statuses
    limited = answers[-1]
    assert_refused(limited, 429, "rate limit")
    assert int(limited.headers["Retry-After"]) >= 1
    # Other sources are not throttled by it.
    assert post_batch(http, [track(mid("rl-other"))]).status_code == 200


def test_admin_errors_are_json_with_code_and_message(server: ServerProcess, http: httpx.Client) -> None:
    no_token = http.post("/api/query", json={"sql": "select 1"})
    assert no_token.status_code == 401
    assert no_token.json()["code"] and "admin token" in no_token.json()["message"]
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    for body, status in (({"sql": "delete from events"}, 400), ({"query": "select 1"}, 400), ({"sql": "selec 1"}, 400)):
        answer = http.post("/api/query", json=body, headers=headers)
        assert answer.status_code == status, answer.text
        assert set(answer.json()) >= {"code", "message"} and answer.json()["message"]


# -- time fields -----------------------------------------------------------------------------------


def iso(instant_: dt.datetime) -> str:
    return instant_.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_clock_skew_is_corrected_from_sent_at(server: ServerProcess, http: httpx.Client) -> None:
    """A device clock 10 minutes fast, an event made an hour before it was sent: stored an hour before receipt."""
    device_now = now() + dt.timedelta(minutes=10)
    made = device_now - dt.timedelta(hours=1)
    event_level, batch_level, client_timestamp, no_times = (mid(n) for n in ("evsent", "bsent", "clientts", "none"))
    events = [
        track(event_level, originalTimestamp=iso(made), sentAt=iso(device_now)),
        track(batch_level, originalTimestamp=iso(made)),
        track(client_timestamp, timestamp=iso(made)),  # Segment's rule: a client timestamp is the original time
        track(no_times),
    ]
    # The batch-level sentAt is what both Python SDKs send; the event-level one wins where present.
    response = post_batch(http, events, sentAt=iso(device_now))
    assert response.status_code == 200, response.text
    rows = stored(
        server,
        *[e["messageId"] for e in events],
        columns="message_id, timestamp, original_timestamp, sent_at, received_at",
    )
    by_id = {row[0]: [instant(value) for value in row[1:]] for row in rows}
    assert len(by_id) == 4
    for message_id in (event_level, batch_level, client_timestamp):
        timestamp, original, sent_at, received = by_id[message_id]
        assert abs(timestamp - (received - dt.timedelta(hours=1))) < dt.timedelta(milliseconds=5), message_id
        assert abs(original - made) < dt.timedelta(milliseconds=1), message_id
        assert abs(sent_at - device_now) < dt.timedelta(milliseconds=1), message_id
        assert abs(received - now()) < dt.timedelta(seconds=30)
    # No device time for the call: nothing to correct, whatever the device clock says.
    timestamp, _, sent_at, received = by_id[no_times]
    assert abs(timestamp - received) < dt.timedelta(milliseconds=5)
    assert abs(sent_at - device_now) < dt.timedelta(milliseconds=1)
