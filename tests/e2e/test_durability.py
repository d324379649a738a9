"""ARCHITECTURE invariant 1: an event answered 200 is durable; a `kill -9` in the middle of a load loses none.

Several clients send batches with unique messageIds; the server is SIGKILLed while they send and restarted
on the same workspace and database. Every acknowledged messageId must be there exactly once, and the batches
that got no answer, resent as an SDK would, must complete the set without a duplicate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.e2e.support_http import metric_value
from tests.support.server import ServerProcess

WEB_KEY = "wk_web_test_0001"
WORKERS = 4
EVENTS_PER_BATCH = 20
ACKS_BEFORE_KILL = 1_500
Factory = Callable[..., ServerProcess]


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest) -> str | None:
    """None: the server's default embedded DuckDB; else a fresh PostgreSQL database."""
    if request.param == "duckdb":
        return None
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


@dataclass
class Load:
    """The batches sent and which of them were answered 200."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acknowledged: set[str] = field(default_factory=set)
    unanswered: list[dict[str, Any]] = field(default_factory=list)
    attempted: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acknowledged)


def batch_of(worker: int, sequence: int) -> dict[str, Any]:
    return {
        "batch": [
            {
                "type": "track",
                "event": "Load Tested",
                "userId": f"load-user-{worker}-{i % 5}",
                "messageId": f"w{worker}-s{sequence}-e{i}",
                "properties": {"sequence": sequence, "index": i},
            }
            for i in range(EVENTS_PER_BATCH)
        ]
    }


def send_until_refused(url: str, worker: int, stop: threading.Event, load: Load) -> None:
    """Send batches until the server goes away (then record the unanswered batch) or `stop` is set."""
    with httpx.Client(base_url=url, auth=(WEB_KEY, ""), timeout=10) as client:
        sequence = 0
        while not stop.is_set():
            body = batch_of(worker, sequence)
            ids = [item["messageId"] for item in body["batch"]]
            with load.lock:
                load.attempted.update(ids)
            try:
                response = client.post("/v1/batch", json=body)
            except httpx.HTTPError as exc:
                with load.lock:
                    load.unanswered.append(body)
                    load.failures.append(repr(exc))
                return
            with load.lock:
                if response.status_code == 200:
                    load.acknowledged.update(ids)
                else:
                    load.unanswered.append(body)
            sequence += 1


def all_rows(server: ServerProcess, sql: str) -> list[list[Any]]:
    with server.admin() as admin:
        response = admin.post("/api/query", json={"sql": sql, "max_rows": 1_000_000})
    response.raise_for_status()
    result = response.json()
    assert not result["truncated"]
    rows: list[list[Any]] = result["rows"]
    return rows


def test_every_acknowledged_event_survives_sigkill(server_factory: Factory, backend_url: str | None) -> None:
    server = server_factory(database_url=backend_url)
    load = Load()
    stop = threading.Event()
    workers = [
        threading.Thread(target=send_until_refused, args=(server.url, n, stop, load), name=f"load-{n}")
        for n in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 20
    while load.acked_count() < ACKS_BEFORE_KILL and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()  # mid-load: requests are in flight, some committed but not yet answered
    stop.set()
    for worker in workers:
        worker.join(timeout=30)
    assert not any(w.is_alive() for w in workers)
    assert load.acked_count() >= ACKS_BEFORE_KILL, "the load did not run before the kill"
    assert len(load.failures) == WORKERS, "every client must have seen the server die under it"

    server = server.restart()
    assert all_rows(server, "select message_id, count(*) from events group by 1 having count(*) > 1") == []
    stored = {row[0] for row in all_rows(server, "select message_id from events")}
    lost = load.acknowledged - stored
    assert not lost, f"{len(lost)} acknowledged events lost after SIGKILL, e.g. {sorted(lost)[:5]}"
    assert stored <= load.attempted

    # The SDKs resend what got no answer; whatever of it was committed before the kill is deduplicated.
    already_stored = sum(1 for body in load.unanswered for item in body["batch"] if item["messageId"] in stored)
    with httpx.Client(base_url=server.url, auth=(WEB_KEY, ""), timeout=10) as client:
        for body in load.unanswered:
            assert client.post("/v1/batch", json=body).status_code == 200
    assert all_rows(server, "select message_id, count(*) from events group by 1 having count(*) > 1") == []
    assert all_rows(server, "select count(*) from events") == [[len(load.attempted)]]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert metric_value(metrics, "orchestrion_events_total", source="web", outcome="deduplicated") == already_stored
