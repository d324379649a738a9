"""Scale-out on PostgreSQL: several servers share one database; one conductor leads, another takes over."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.support.server import ServerProcess


def _send(server: ServerProcess, user: str, message_id: str) -> None:
    body = {
        "writeKey": "wk_app_test_0001",
        "batch": [{"type": "identify", "userId": user, "traits": {"plan": "pro"}, "messageId": message_id}],
    }
    assert httpx.post(f"{server.url}/v1/batch", json=body, timeout=10).status_code == 200


def _profile_status(server: ServerProcess, user: str, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    status = 0
    with server.admin() as admin:
        while time.monotonic() < deadline:
            status = admin.get(f"/api/profiles/user_id:{user}").status_code
            if status == 200:
                return status
            time.sleep(0.2)
    return status


def test_one_leader_processes_and_a_standby_takes_over(
    server_factory: Callable[..., ServerProcess], fresh_pg_url: str
) -> None:
    first = server_factory(database_url=fresh_pg_url)
    second = server_factory(database_url=fresh_pg_url)
    _send(first, "scale-a", "scale-m1")
    _send(second, "scale-b", "scale-m2")
    # both events are processed, whichever server leads, and visible through either server
    assert _profile_status(second, "scale-a") == 200
    assert _profile_status(first, "scale-b") == 200
    with first.admin() as a, second.admin() as b:
        running = [a.get("/api/pipeline").json(), b.get("/api/pipeline").json()]
    leaders = [info for info in running if info["processed"] > 0]
    assert len(leaders) == 1, running  # exactly one conductor did the work

    leader, standby = (first, second) if running[0]["processed"] > 0 else (second, first)
    leader.kill()  # SIGKILL: its session ends, PostgreSQL releases the advisory lock
    _send(standby, "scale-c", "scale-m3")
    assert _profile_status(standby, "scale-c", timeout=30) == 200
    rows = standby.query("SELECT count(*) FROM identity_links")
    assert rows == [[3]]  # each event linked once: no double processing across the takeover
