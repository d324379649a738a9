"""How a CLI command reaches a workspace: through the running server's admin API when one holds it,
else by opening the database itself."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import orjson

from orchestrion.api.server import read_server_file
from orchestrion.clock import SystemClock
from orchestrion.collect.contracts import load_contracts
from orchestrion.collect.quarantine import contracts_report, replay_quarantine
from orchestrion.durations import parse_duration
from orchestrion.errors import OrchestrionError, QueryRejected
from orchestrion.identity.consent_store import consent_state
from orchestrion.identity.erasure import erase
from orchestrion.identity.lookup import find_profile, profile_document, timeline
from orchestrion.model.refresh import models_status, run_models
from orchestrion.operations import source_summaries
from orchestrion.pipeline import Processing, build_processing
from orchestrion.store import open_store
from orchestrion.store.ports import QueryResult, Store
from orchestrion.workspace import Workspace


class WorkspaceAccess(Protocol):
    description: str

    def query(self, sql: str, max_rows: int = 10_000) -> QueryResult: ...

    def sources(self) -> list[dict[str, Any]]: ...

    def contracts_report(self, since: str) -> dict[str, Any]: ...

    def contracts_replay(self, source: str | None, dry_run: bool) -> dict[str, Any]: ...

    def recorded_contracts(self) -> dict[tuple[str, str, int], dict[str, Any]]: ...

    def profile(self, reference: str) -> dict[str, Any]: ...

    def timeline(self, reference: str, limit: int, cursor: str | None) -> dict[str, Any]: ...

    def erase(self, reference: str) -> dict[str, Any]: ...

    def models_run(
        self,
        select: Sequence[str] | None,
        full_refresh: bool,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Build models; `on_progress` hears each model start and finish (RunProgress.as_dict)."""
        ...

    def models_status(self) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class LocalAccess:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.store: Store = open_store(workspace.database_url)
        self.description = f"local {self.store.capabilities.name}"
        self._processing: Processing | None = None

    def query(self, sql: str, max_rows: int = 10_000) -> QueryResult:
        return self.store.query(sql, max_rows)

    def sources(self) -> list[dict[str, Any]]:
        return source_summaries(self.workspace, self.store)

    def contracts_report(self, since: str) -> dict[str, Any]:
        start = dt.datetime.now(dt.UTC) - parse_duration(since)
        return contracts_report(self.store, start).as_dict()

    def contracts_replay(self, source: str | None, dry_run: bool) -> dict[str, Any]:
        contracts = load_contracts(self.workspace.contracts_dir)
        return replay_quarantine(
            self.store,
            contracts,
            self.workspace.config.sources,
            source=source,
            dry_run=dry_run,
            max_event_bytes=self.workspace.config.collect.max_event_bytes,
        ).as_dict()

    def recorded_contracts(self) -> dict[tuple[str, str, int], dict[str, Any]]:
        return self.store.recorded_contracts()

    def _processed(self) -> Processing:
        """Profiles are read after every stored event went through processing (no server does it now)."""
        if self._processing is None:
            self._processing = build_processing(self.store, self.workspace)
            self._processing.conductor.drain(timeout=600)
        return self._processing

    def profile(self, reference: str) -> dict[str, Any]:
        self._processed()
        profile_id = find_profile(self.store, reference)
        document = profile_document(self.store, profile_id)
        document["consent"] = consent_state(self.store, profile_id, self.workspace.config.consent, None).as_json()
        return document

    def timeline(self, reference: str, limit: int, cursor: str | None) -> dict[str, Any]:
        self._processed()
        return timeline(self.store, find_profile(self.store, reference), limit=limit, cursor=cursor)

    def erase(self, reference: str) -> dict[str, Any]:
        processing = self._processed()
        return erase(processing.identity, find_profile(self.store, reference), actor="cli").as_dict()

    def models_run(
        self,
        select: Sequence[str] | None,
        full_refresh: bool,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        self._processed()  # models join on the identity tables: bring them up to the log's head first
        report = run_models(
            self.store,
            self.workspace,
            SystemClock(),
            select=select,
            full_refresh=full_refresh,
            on_progress=(lambda event: on_progress(event.as_dict())) if on_progress else None,
        )
        return report.as_dict()

    def models_status(self) -> list[dict[str, Any]]:
        return models_status(self.store, self.workspace, SystemClock())

    def close(self) -> None:
        if self._processing is not None:
            self._processing.conductor.lease.release()  # PostgreSQL: the lease holds a connection of its own
        self.store.close()


class RemoteAccess:
    def __init__(self, url: str, token: str) -> None:
        self.description = f"server at {url}"
        self._client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise OrchestrionError(f"the server did not answer {path}: {exc}") from exc
        if response.status_code == 400 and path == "/api/query":
            raise QueryRejected(response.json().get("message", response.text))
        if response.status_code >= 300:
            self._raise(path, response)
        return response.json()

    @staticmethod
    def _raise(path: str, response: httpx.Response) -> None:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        raise OrchestrionError(f"{path}: HTTP {response.status_code}: {message}")

    def query(self, sql: str, max_rows: int = 10_000) -> QueryResult:
        body = self._call("POST", "/api/query", json={"sql": sql, "max_rows": max_rows})
        return QueryResult(columns=body["columns"], rows=[tuple(r) for r in body["rows"]], truncated=body["truncated"])

    def sources(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/api/sources")
        return result

    def contracts_report(self, since: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/api/contracts/report", params={"since": since})
        return result

    def contracts_replay(self, source: str | None, dry_run: bool) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", "/api/contracts/replay", json={"source": source, "dry_run": dry_run}
        )
        return result

    def profile(self, reference: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/profiles/{quote(reference, safe='')}")
        return result

    def timeline(self, reference: str, limit: int, cursor: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        result: dict[str, Any] = self._call("GET", f"/api/profiles/{quote(reference, safe='')}/timeline", params=params)
        return result

    def erase(self, reference: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"/api/profiles/{quote(reference, safe='')}")
        return result

    def recorded_contracts(self) -> dict[tuple[str, str, int], dict[str, Any]]:
        rows = self._call("GET", "/api/contracts/recorded")
        return {(r["type"], r["name"], int(r["version"])): r["schema"] for r in rows}

    def models_run(
        self,
        select: Sequence[str] | None,
        full_refresh: bool,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        body = {"select": list(select) if select else None, "full_refresh": full_refresh}
        path = "/api/models/run"
        try:
            with self._client.stream("POST", path, json=body, timeout=None) as response:
                if response.status_code >= 300:
                    response.read()
                    self._raise(path, response)
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    item = orjson.loads(line)
                    if item["type"] == "progress" and on_progress is not None:
                        on_progress(item)
                    elif item["type"] == "report":
                        report: dict[str, Any] = item["report"]
                        return report
                    elif item["type"] == "error":
                        raise OrchestrionError(f"{path}: {item['message']}")
        except httpx.HTTPError as exc:
            raise OrchestrionError(f"the server did not answer {path}: {exc}") from exc
        raise OrchestrionError(f"{path}: the server ended the run without a report; see its log")

    def models_status(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/api/models")
        return result

    def close(self) -> None:
        self._client.close()


def running_server(workspace: Workspace) -> tuple[str, str] | None:
    """(url, admin token) of a live server of this workspace, else None (a stale file is ignored)."""
    info = read_server_file(workspace)
    if not info:
        return None
    pid = info.get("pid")
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    try:
        response = httpx.get(f"{info['url']}/healthz", timeout=2)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return str(info["url"]), str(info.get("admin_token") or workspace.admin_token)


def connect(workspace: Workspace) -> WorkspaceAccess:
    found = running_server(workspace)
    if found is not None:
        return RemoteAccess(*found)
    return LocalAccess(workspace)
