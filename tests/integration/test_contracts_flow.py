"""Tracking plans end to end through the real app (in process) on each backend: allow, omit, block, the
report, and replay once the plan is fixed."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
from fastapi import FastAPI

from orchestrion.api.app import create_app
from orchestrion.api.ingest import QUARANTINED_HEADER
from orchestrion.store.ports import EventStore
from orchestrion.workspace import load_workspace

WORKSPACE = """\
name: contracts-flow
admin:
  token: adm_flow_token_0001
sources:
  - name: allowed
    write_key: wk_allowed_0001
    contract_mode: allow
  - name: omitted
    write_key: wk_omitted_0001
    contract_mode: omit
  - name: blocked
    write_key: wk_blocked_0001
    contract_mode: block
"""
PLAN = """\
events:
  - name: Workout Completed
    version: 1
    properties:
      required: [duration_min]
      properties:
        duration_min: {type: integer}
        mood: {type: string}
"""
# the fix: duration_min becomes optional, which is not a breaking change to version 1
FIXED_PLAN = PLAN.replace("      required: [duration_min]\n", "")
ADMIN = {"Authorization": "Bearer adm_flow_token_0001"}


def auth(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


def workout(message_id: str, properties: dict[str, Any], user: str = "u1") -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Workout Completed",
        "userId": user,
        "messageId": message_id,
        "properties": properties,
    }


T = TypeVar("T")


class InProcessClient:
    """The real ASGI app with its lifespan (writers, contracts) on a private event loop; sync calls for tests."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._lifespan = app.router.lifespan_context(app)
        self._run(self._lifespan.__aenter__())
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://orchestrion.test")

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._run(self._client.post(path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._run(self._client.get(path, **kwargs))

    def close(self) -> None:
        try:
            self._run(self._client.aclose())
            self._run(self._lifespan.__aexit__(None, None, None))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()


@contextmanager
def running_app(root: Path, store: EventStore) -> Iterator[InProcessClient]:
    """The real application on `store`, with the workspace (and contracts) as they are on disk now."""
    client = InProcessClient(create_app(load_workspace(root, {}), store))
    try:
        yield client
    finally:
        client.close()


def make_workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "contracts").mkdir(parents=True)
    (root / "orchestrion.yml").write_text(WORKSPACE)
    (root / "contracts" / "workouts.yml").write_text(PLAN)
    return root


def send(client: InProcessClient, write_key: str, *events: dict[str, Any]) -> Any:
    response = client.post("/v1/batch", content=orjson.dumps({"batch": list(events)}), headers=auth(write_key))
    assert response.status_code == 200, response.text
    return response


def query(client: InProcessClient, sql: str) -> list[list[Any]]:
    response = client.post("/api/query", json={"sql": sql}, headers=ADMIN)
    assert response.status_code == 200, response.text
    rows: list[list[Any]] = response.json()["rows"]
    return rows


def violations_of(client: InProcessClient, message_id: str) -> list[dict[str, str]]:
    ((value,),) = query(client, f"select context_violations from tracks where message_id = '{message_id}'")
    found: list[dict[str, str]] = orjson.loads(value) if isinstance(value, str) else value
    return found


def test_allow_annotates_omit_strips_block_quarantines(tmp_path: Path, store: EventStore) -> None:
    root = make_workspace(tmp_path)
    with running_app(root, store) as client:
        response = send(client, "wk_allowed_0001", workout("a-bad", {"duration_min": "thirty"}), workout("a-ok", {}))
        assert QUARANTINED_HEADER not in response.headers
        # allow: stored as sent, violations annotated with their type and JSON pointer
        assert query(client, "select duration_min from workout_completed where message_id = 'a-bad'") == [["thirty"]]
        assert [(v["type"], v["field"]) for v in violations_of(client, "a-bad")] == [
            ("Datatype-Mismatch", "/properties/duration_min")
        ]
        assert [(v["type"], v["field"]) for v in violations_of(client, "a-ok")] == [
            ("Required-Missing", "/properties/duration_min")
        ]

        # omit: the offending property is stripped, the rest kept, the violation annotated
        send(client, "wk_omitted_0001", workout("o-bad", {"duration_min": 30, "mood": 5}))
        ((payload,),) = query(client, "select payload from events where message_id = 'o-bad'")
        stored = orjson.loads(payload) if isinstance(payload, str) else payload
        assert stored["properties"] == {"duration_min": 30}
        assert [(v["type"], v["field"]) for v in violations_of(client, "o-bad")] == [
            ("Datatype-Mismatch", "/properties/mood")
        ]

        # block: kept aside with its reasons, the good event beside it stored, still a 200
        response = send(
            client, "wk_blocked_0001", workout("b-bad", {"mood": "tired"}), workout("b-ok", {"duration_min": 5})
        )
        assert response.headers[QUARANTINED_HEADER] == "1"
        assert query(client, "select message_id from events where source = 'blocked'") == [["b-ok"]]
        rows = query(client, "select kind, message_id, event, batch_index, reasons from quarantine")
        assert len(rows) == 1
        kind, message_id, event, index, reasons = rows[0]
        assert (kind, message_id, event, index) == ("blocked", "b-bad", "Workout Completed", 0)
        parsed = orjson.loads(reasons) if isinstance(reasons, str) else reasons
        assert [(r["code"], r["field"]) for r in parsed] == [("Required-Missing", "/properties/duration_min")]


def test_report_and_replay_after_the_plan_is_fixed(tmp_path: Path, store: EventStore) -> None:
    root = make_workspace(tmp_path)
    blocked = [workout("b-1", {"mood": "tired"}), workout("b-2", {}, user="u2"), workout("b-ok", {"duration_min": 5})]
    with running_app(root, store) as client:
        send(client, "wk_allowed_0001", workout("a-1", {"duration_min": "x"}), workout("a-2", {"duration_min": 1.5}))
        send(client, "wk_allowed_0001", {"type": "track", "event": "Pizza Ordered", "userId": "u1"})
        send(client, "wk_blocked_0001", *blocked)
        send(client, "wk_blocked_0001", *blocked)  # the SDK retried the batch: blocked twice, stored once later
        send(client, "wk_blocked_0001", {"type": "track", "event": "Workout Completed"})  # no ids: invalid

        report = client.get("/api/contracts/report", params={"since": "1h"}, headers=ADMIN).json()
        assert report["violations"] == [
            {"event": "Pizza Ordered", "type": "Unplanned-Event", "source": "allowed", "count": 1},
            {"event": "Workout Completed", "type": "Datatype-Mismatch", "source": "allowed", "count": 2},
        ]
        assert report["quarantined"] == [
            {
                "event": "Workout Completed",
                "type": "Required-Missing",
                "source": "blocked",
                "kind": "blocked",
                "replayed": False,
                "count": 4,
            },
            {
                "event": "Workout Completed",
                "type": "Required-Missing",
                "source": "blocked",
                "kind": "invalid",
                "replayed": False,
                "count": 1,
            },
        ]

        # before the fix, replay stores nothing and says why
        result = client.post("/api/contracts/replay", json={}, headers=ADMIN).json()
        assert result == {
            "examined": 5,
            "replayed": 0,
            "deduplicated": 0,
            "still_failing": 5,
            "reasons": {"Required-Missing": 5},
        }

    (root / "contracts" / "workouts.yml").write_text(FIXED_PLAN)
    with running_app(root, store) as client:
        dry = client.post("/api/contracts/replay", json={"dry_run": True}, headers=ADMIN).json()
        assert (dry["replayed"], dry["still_failing"]) == (4, 1)
        assert query(client, "select count(*) from events where source = 'blocked'") == [[1]]

        result = client.post("/api/contracts/replay", json={"source": "blocked"}, headers=ADMIN).json()
        assert result == {
            "examined": 5,
            "replayed": 2,
            "deduplicated": 2,
            "still_failing": 1,
            "reasons": {"Required-Missing": 1},
        }
        stored = query(client, "select message_id, user_id from events where source = 'blocked' order by 1")
        assert stored == [["b-1", "u1"], ["b-2", "u2"], ["b-ok", "u1"]]
        # replayed events carry no stale violation annotations and land in the views
        assert query(client, "select mood from workout_completed where message_id = 'b-1'") == [["tired"]]
        assert violations_of(client, "b-1") is None or violations_of(client, "b-1") == []

        again = client.post("/api/contracts/replay", json={}, headers=ADMIN).json()
        assert (again["examined"], again["replayed"]) == (1, 0)
        assert query(client, "select count(*) from events where source = 'blocked'") == [[3]]

        report = client.get("/api/contracts/report", headers=ADMIN).json()
        replayed = {(r["kind"], r["replayed"]): r["count"] for r in report["quarantined"]}
        assert replayed == {("blocked", True): 4, ("invalid", False): 1}
