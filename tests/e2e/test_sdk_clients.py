"""The official Python SDKs, unchanged, pointed at a real `orchestrion serve`: every call lands, on both backends.

`segment-analytics-python` and `rudder-sdk-python` send what they send (Basic auth and/or a body write key,
gzip or not, explicit JSON nulls, traits at the top or in `context.traits`); the warehouse views must show
each call with its fields. A batch whose answer was lost (a 500 after the server stored it) is retried by the
SDK and still stored once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from rudderstack.analytics import Client as RudderClient  # type: ignore[import-untyped]
from segment.analytics import Client as SegmentClient  # type: ignore[import-untyped]

from tests.e2e.support_http import instant, lost_reply_proxy, metric_value, now
from tests.support.server import ServerProcess

WEB_KEY = "wk_web_test_0001"
APP_KEY = "wk_app_test_0001"
CALLS = ("identify", "track", "page", "screen", "group", "alias")
Factory = Callable[..., ServerProcess]


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest) -> str | None:
    """None: the server's default embedded DuckDB; else a fresh PostgreSQL database."""
    if request.param == "duckdb":
        return None
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


@dataclass(frozen=True)
class Sent:
    """What one client sent: its tag, source, ids and the messageId of each call."""

    tag: str
    source: str
    user_id: str
    anonymous_id: str
    message_ids: dict[str, str]


class ClientErrors:
    """`on_error` of the async consumers: any call means a batch was dropped."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(self, error: Exception, batch: list[dict[str, Any]]) -> None:
        self.errors.append(f"{error!r} for {len(batch)} events")


def send_every_call(client: Any, tag: str, source: str) -> Sent:
    """One call of each type through an SDK client, with messageIds we can look up."""
    user, anon = f"user-{tag}", f"anon-{tag}"
    ids = {call: f"{tag}-{call}-{uuid.uuid4().hex[:10]}" for call in CALLS}
    client.identify(
        user_id=user,
        anonymous_id=anon,
        traits={"email": f"{tag}@example.com", "plan": "pro", "age": 34},
        message_id=ids["identify"],
    )
    client.track(
        user_id=user,
        anonymous_id=anon,
        event="Workout Completed",
        properties={"duration_min": 32.5, "workout_type": "run", "personal_best": True},
        context={"app": {"name": "FitTrack", "version": "4.2.0"}},
        message_id=ids["track"],
    )
    client.page(
        user_id=user,
        category="Docs",
        name="Pricing",
        properties={"path": "/pricing", "referrer_kind": "search"},
        message_id=ids["page"],
    )
    client.screen(user_id=user, name="Workout Summary", properties={"workout_id": "w-77"}, message_id=ids["screen"])
    client.group(user_id=user, group_id=f"team-{tag}", traits={"seats": 12}, message_id=ids["group"])
    client.alias(previous_id=anon, user_id=user, message_id=ids["alias"])
    return Sent(tag, source, user, anon, ids)


def one_row(server: ServerProcess, sql: str) -> dict[str, Any]:
    with server.admin() as admin:
        response = admin.post("/api/query", json={"sql": sql})
    response.raise_for_status()
    result = response.json()
    assert len(result["rows"]) == 1, f"{sql} returned {result['rows']}"
    return dict(zip(result["columns"], result["rows"][0], strict=True))


def assert_sane_times(row: dict[str, Any], sent_after: dt.datetime) -> None:
    """The clocks of client and server agree here: timestamp ≈ now, receivedAt set and not before the call."""
    received = instant(row["received_at"])
    timestamp = instant(row["timestamp"])
    assert sent_after - dt.timedelta(seconds=1) <= received <= now() + dt.timedelta(seconds=1)
    assert abs(timestamp - received) < dt.timedelta(seconds=30), (timestamp, received)
    assert instant(row["sent_at"]) <= received + dt.timedelta(seconds=1)


def assert_landed(server: ServerProcess, sent: Sent, started: dt.datetime) -> None:
    ids = sent.message_ids
    common = "message_id, source, user_id, anonymous_id, context_library_name, timestamp, sent_at, received_at"

    identify = one_row(
        server, f"select {common}, email, plan, age from identifies where message_id = '{ids['identify']}'"
    )
    assert (identify["source"], identify["user_id"], identify["anonymous_id"]) == (
        sent.source,
        sent.user_id,
        sent.anonymous_id,
    )
    assert (identify["email"], identify["plan"], identify["age"]) == (f"{sent.tag}@example.com", "pro", 34)
    assert identify["context_library_name"] == "analytics-python"
    assert_sane_times(identify, started)

    track = one_row(server, f"select {common}, event, context_app_name from tracks where message_id = '{ids['track']}'")
    assert (track["event"], track["user_id"], track["anonymous_id"]) == (
        "Workout Completed",
        sent.user_id,
        sent.anonymous_id,
    )
    assert track["context_app_name"] == "FitTrack"
    assert_sane_times(track, started)
    workout = one_row(
        server,
        "select user_id, duration_min, workout_type, personal_best, context_library_name "
        f"from workout_completed where message_id = '{ids['track']}'",
    )
    assert workout == {
        "user_id": sent.user_id,
        "duration_min": 32.5,
        "workout_type": "run",
        "personal_best": True,
        "context_library_name": "analytics-python",
    }

    page = one_row(
        server, f"select {common}, name, category, path, referrer_kind from pages where message_id = '{ids['page']}'"
    )
    assert (page["name"], page["category"], page["path"], page["referrer_kind"]) == (
        "Pricing",
        "Docs",
        "/pricing",
        "search",
    )
    assert page["user_id"] == sent.user_id
    assert page["anonymous_id"] is None  # the SDK sent an explicit JSON null
    assert_sane_times(page, started)

    screen = one_row(server, f"select {common}, name, workout_id from screens where message_id = '{ids['screen']}'")
    assert (screen["name"], screen["workout_id"], screen["user_id"]) == ("Workout Summary", "w-77", sent.user_id)
    assert_sane_times(screen, started)

    group = one_row(server, f"select {common}, group_id, seats from groups where message_id = '{ids['group']}'")
    assert (group["group_id"], group["seats"], group["user_id"]) == (f"team-{sent.tag}", 12, sent.user_id)
    assert_sane_times(group, started)

    alias = one_row(server, f"select {common}, previous_id from aliases where message_id = '{ids['alias']}'")
    assert (alias["previous_id"], alias["user_id"]) == (sent.anonymous_id, sent.user_id)
    assert_sane_times(alias, started)


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    """Async SDK clients to flush and stop at the end of a test, even a failing one."""
    clients: list[Any] = []
    yield clients
    for client in clients:
        client.shutdown()


def test_every_call_type_lands_from_both_sdks(
    server_factory: Factory, backend_url: str | None, closing: list[Any]
) -> None:
    server = server_factory(database_url=backend_url)
    started = now()
    errors = ClientErrors()
    segment_sync = SegmentClient(WEB_KEY, host=server.url, sync_mode=True, max_retries=0)
    segment_gzip = SegmentClient(WEB_KEY, host=server.url, gzip=True, upload_interval=0.05, on_error=errors)
    # rudder-sdk-python gzips by default; host is always explicit (it would read a .env file otherwise)
    rudder = RudderClient(APP_KEY, host=server.url, upload_interval=0.05, on_error=errors)
    rudder_sync = RudderClient(APP_KEY, host=server.url, sync_mode=True, max_retries=0)
    closing.extend([segment_gzip, rudder])

    sent = [
        send_every_call(segment_sync, "segsync", "web"),
        send_every_call(segment_gzip, "seggzip", "web"),
        send_every_call(rudder, "rudder", "app"),
        send_every_call(rudder_sync, "ruddersync", "app"),
    ]
    segment_gzip.flush()
    rudder.flush()

    assert errors.errors == []
    for one in sent:
        assert_landed(server, one, started)
    rudder_channel = one_row(server, f"select channel from tracks where message_id = '{sent[2].message_ids['track']}'")
    assert rudder_channel == {"channel": "server"}
    counts = {row[0]: row[1] for row in server.query("select source, count(*) from events group by source")}
    assert counts == {"web": 2 * len(CALLS), "app": 2 * len(CALLS)}


def retry_through_lost_reply(server: ServerProcess, sdk: str, closing: list[Any]) -> None:
    """20 tracks through a proxy that stores the first batch but answers 500; the SDK retries it."""
    errors = ClientErrors()
    client_class: Any = SegmentClient if sdk == "segment" else RudderClient
    key, source = (WEB_KEY, "web") if sdk == "segment" else (APP_KEY, "app")
    with lost_reply_proxy(server.url, fail_first=1) as (proxy_url, seen):
        client = client_class(key, host=proxy_url, max_retries=3, upload_interval=0.05, on_error=errors)
        closing.append(client)
        sent_ids = []
        for n in range(20):
            _, message = client.track(user_id=f"retry-{sdk}-{n % 3}", event="Workout Started", properties={"n": n})
            sent_ids.append(message["messageId"])
        client.flush()

    assert errors.errors == []
    # rudder-sdk-python gzips by default, segment-analytics-python does not
    assert set(seen.content_encodings) == ({"gzip"} if sdk == "rudderstack" else {""})
    assert seen.upstream_statuses[0] == 200, "the first attempt must reach the server and be stored"
    assert seen.client_statuses[0] == 500
    assert len(seen.bodies) >= 2, "the SDK must have retried after the 500"
    retried = set(seen.message_ids(1))
    assert retried and retried <= set(seen.message_ids(0)), "the retry resends messageIds already stored"

    stored = {row[0] for row in server.query(f"select message_id from events where source = '{source}'")}
    assert stored == set(sent_ids)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert metric_value(metrics, "orchestrion_events_total", source=source, outcome="deduplicated") >= len(retried)
    assert metric_value(metrics, "orchestrion_events_total", source=source, outcome="accepted") == len(sent_ids)


def test_batch_retried_after_lost_answer_is_stored_once(
    server_factory: Factory, backend_url: str | None, closing: list[Any]
) -> None:
    server = server_factory(database_url=backend_url)
    retry_through_lost_reply(server, "segment", closing)
    retry_through_lost_reply(server, "rudderstack", closing)
    assert server.query("select message_id, count(*) from events group by 1 having count(*) > 1") == []
    assert server.query("select count(*) from events") == [[40]]
