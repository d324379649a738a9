"""Never a 5xx for bad input: the SDKs retry a 5xx for hours, so only a real outage may answer one.

Hypothesis throws arbitrary bodies at the ingestion routes of the real app, in-process with its lifespan (so
the group-commit writer and the database run), on DuckDB and on PostgreSQL: random nested JSON, wrong types
in every known field, random bytes, gzip that is real, false or cut short, any write-key placement. Every
answer must be below 500, and every error one the SDKs read correctly (text, or JSON with `code` and `message`).
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orchestrion.api.app import create_app
from orchestrion.store import open_store
from orchestrion.workspace import load_workspace
from tests.e2e.support_asgi import InProcessClient, in_process
from tests.e2e.support_database import server_database
from tests.support.server import DEFAULT_WORKSPACE

WEB_KEY = "wk_web_test_0001"
ADMIN_TOKEN = "adm_fuzz_token_0001"
QUARANTINED = "X-Orchestrion-Quarantined"
ROUTES = [
    "/v1/batch",
    "/v1/b",
    "/v1/import",
    "/beacon/v1/batch",
    "/v1/track",
    "/v1/t",
    "/v1/identify",
    "/v1/page",
    "/v1/screen",
    "/v1/group",
    "/v1/alias",
    "/v1/a",
    "/v1/m",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "2026-11-23T09:00:00.000Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59+14:00"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
ids = st.text(max_size=20) | st.integers() | json_values
times = st.sampled_from(["2026-11-23T09:00:00Z", "2026-11-23T09:00:00", "1990-01-01T00:00:00+02:00"]) | json_values
events = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["track", "identify", "page", "screen", "group", "alias", "purchase"]) | json_values,
        "userId": ids,
        "anonymousId": ids,
        "messageId": ids,
        "previousId": ids,
        "groupId": ids,
        "event": st.text(max_size=30) | json_values,
        "name": json_values,
        "properties": st.dictionaries(st.text(max_size=12), json_values, max_size=5) | json_values,
        "traits": st.dictionaries(st.text(max_size=12), json_values, max_size=5) | json_values,
        "context": st.dictionaries(st.sampled_from(["ip", "library", "traits", "page", "app"]), json_values)
        | json_values,
        "integrations": json_values,
        "timestamp": times,
        "originalTimestamp": times,
        "sentAt": times,
        "writeKey": st.sampled_from([WEB_KEY, "wk_nobody_0000"]) | json_values,
    },
)
# Well-formed enough to be stored: what stresses storage and the landing views (hostile names and keys).
hostile_text = st.text(min_size=1, max_size=30) | st.sampled_from(['Order\'s "Done"', "tracks", "1st; DROP", "ü ß"])
plausible_events = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "identify", "page", "screen", "group", "alias"]),
        "userId": hostile_text | st.integers(),
        "event": hostile_text,
        "groupId": hostile_text,
        "previousId": hostile_text,
    },
    optional={
        "messageId": st.uuids().map(str) | st.text(max_size=100),
        "anonymousId": st.none() | hostile_text,
        "properties": st.dictionaries(hostile_text, json_values, max_size=5),
        "traits": st.dictionaries(hostile_text, json_values, max_size=5),
        "context": st.fixed_dictionaries({}, optional={"traits": json_values, "page": json_values, "ip": json_values}),
        "timestamp": times,
        "name": st.none() | hostile_text,
    },
)
event_lists = st.lists(plausible_events | plausible_events | events | json_values, min_size=1, max_size=5)
batch_bodies = st.fixed_dictionaries(
    {"batch": st.one_of(event_lists, event_lists, event_lists, json_values)},
    optional={
        "context": json_values,
        "integrations": json_values,
        "sentAt": times,
        "writeKey": st.sampled_from([WEB_KEY, ""]) | json_values,
    },
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, str], bytes, dict[str, str]]:
    """(path, headers, raw body, query params) for one ingestion request."""
    route = draw(st.sampled_from(ROUTES[:4] * 3 + ROUTES))  # batches most often: they carry the most events
    is_batch_route = route in ROUTES[:4]
    shape = draw(st.sampled_from(["expected"] * 6 + ["other", "any"]))
    body: Any
    if shape == "expected":  # the body the route expects, mostly
        body = draw(batch_bodies if is_batch_route else plausible_events | events)
    else:
        body = draw(json_values) if shape == "any" else draw(events if is_batch_route else batch_bodies)
    text = json.dumps(body)
    encoding = draw(
        st.sampled_from(["plain"] * 4 + ["gzip"] * 2 + ["false-gzip", "cut-gzip", "bytes", "bad-utf8", "nan", "other"])
    )
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "text/plain", "application/x-www-form"]))}
    raw = text.encode("utf-8", errors="surrogatepass")
    if encoding == "gzip":
        raw, headers["Content-Encoding"] = gzip.compress(raw), "gzip"
    elif encoding == "false-gzip":
        headers["Content-Encoding"] = "gzip"
    elif encoding == "cut-gzip":
        whole = gzip.compress(raw)
        raw, headers["Content-Encoding"] = whole[: draw(st.integers(0, len(whole) - 1))], "gzip"
    elif encoding == "bytes":
        raw = draw(st.binary(max_size=200))
    elif encoding == "bad-utf8":
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])) + raw[cut:]
    elif encoding == "nan":  # what Python's json module writes for float("nan"): not JSON
        nan_event = {"type": "track", "event": "E", "userId": "u", "properties": {"v": math.nan}}
        raw = json.dumps({"batch": [nan_event]}).encode()
    elif encoding == "other":
        headers["Content-Encoding"] = draw(st.sampled_from(["br", "deflate", "GZIP", "identity", ""]))
    auth = draw(st.sampled_from(["basic"] * 8 + ["basic-unknown", "basic-garbage", "bearer", "query", "none"]))
    params: dict[str, str] = {}
    if auth == "basic":
        headers["Authorization"] = "Basic d2tfd2ViX3Rlc3RfMDAwMTo="  # base64("wk_web_test_0001:")
    elif auth == "basic-unknown":
        headers["Authorization"] = "Basic bm9ib2R5Og=="
    elif auth == "basic-garbage":
        headers["Authorization"] = draw(st.sampled_from(["Basic !!!", "Basic", "Basic /w==", "basic  =="]))
    elif auth == "bearer":
        headers["Authorization"] = "Bearer " + draw(st.text(alphabet="abc123", max_size=10))
    elif auth == "query":
        params["writeKey"] = draw(st.sampled_from([WEB_KEY, "", "wk_nobody_0000"]))
    return route, headers, raw, params


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessClient]:
    """The real app with its lifespan running (writer threads started, drained at the end), on each backend."""
    root = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    (root / "orchestrion.yml").write_text(DEFAULT_WORKSPACE)
    with server_database(request.param) as database_url:
        env = {"ORCHESTRION_ADMIN_TOKEN": ADMIN_TOKEN}
        if database_url:
            env["ORCHESTRION_DATABASE_URL"] = database_url
        workspace = load_workspace(root, env=env)
        store = open_store(workspace.database_url)
        try:
            with in_process(create_app(workspace, store)) as app_client:
                yield app_client
        finally:
            store.close()


def assert_sdk_readable(status: int, content_type: str, body: bytes, success_type: str = "text/plain") -> None:
    """Success is 200 (text for ingestion); an error is text, or JSON with both `code` and `message`."""
    if status == 200:
        assert content_type.startswith(success_type), content_type
        return
    assert body.strip(), "an error must say what is wrong"
    if content_type.startswith("application/json"):
        payload: Any = json.loads(body)
        assert isinstance(payload, dict) and {"code", "message"} <= set(payload), payload


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=requests())
def test_ingestion_never_answers_5xx(
    client: InProcessClient, request: tuple[str, dict[str, str], bytes, dict[str, str]]
) -> None:
    route, headers, raw, params = request
    response = client.request("POST", route, content=raw, headers=headers, params=params)
    event(f"{route.split('/')[-1]} -> {response.status_code} {response.headers.get(QUARANTINED, '')}".strip())
    assert response.status_code < 500, (response.status_code, response.text)
    assert_sdk_readable(response.status_code, response.headers.get("content-type", ""), response.content)


@settings(max_examples=60, deadline=None, database=None)
@given(
    write_key=st.text(max_size=30),
    path=st.sampled_from(["/sourceConfig/", "/v1/projects/{key}/settings"]),
    authorization=st.none() | st.text(alphabet="Basic !=/+abcXYZ019", max_size=20),
)
def test_sdk_config_routes_never_answer_5xx(
    client: InProcessClient, write_key: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    if path == "/sourceConfig/":
        response = client.request("GET", path, params={"writeKey": write_key}, headers=headers)
    else:
        response = client.request("GET", path.format(key=quote(write_key, safe="") or "x"), headers=headers)
    assert response.status_code < 500, (response.status_code, response.text)
    assert_sdk_readable(response.status_code, response.headers.get("content-type", ""), response.content, "")


def test_still_ready_and_storing_after_the_fuzz(client: InProcessClient) -> None:
    """Runs after the properties (file order): no input above stopped the writer or broke the landing views."""
    assert client.request("GET", "/readyz").status_code == 200
    body = {"batch": [{"type": "track", "event": "After Fuzz", "userId": "u-after", "messageId": "after-fuzz-1"}]}
    assert client.request("POST", "/v1/batch", json=body, auth=(WEB_KEY, "")).status_code == 200
    answer = client.request(
        "POST",
        "/api/query",
        json={"sql": "select user_id from after_fuzz union all select count(*)::varchar from tracks"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert answer.status_code == 200, answer.text
    rows = answer.json()["rows"]
    assert rows[0] == ["u-after"] and int(rows[1][0]) >= 1
