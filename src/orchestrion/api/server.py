"""`orchestrion serve`: one process with the API and the writers; announces itself in .orchestrion/server.json
so that CLI commands go through its admin API while it runs (DuckDB allows one writing process)."""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import uvicorn

from orchestrion import __version__
from orchestrion.api.app import create_app
from orchestrion.collect.contracts import load_contracts
from orchestrion.errors import ConfigError
from orchestrion.operations import validate_contract_changes
from orchestrion.store import open_store
from orchestrion.workspace import Workspace

SERVER_FILE = "server.json"


def _exit_after_graceful_shutdown(signum: int, frame: object) -> None:
    # uvicorn drains and shuts down on SIGTERM, then re-raises the signal: leave through our `finally`
    # blocks (server.json removed, store closed) with status 0 instead of dying from the default action.
    raise SystemExit(0)


def tune_garbage_collector() -> None:
    """Keep the cycle collector off the ingestion path.

    A 100-event batch allocates ~1,500 containers that live until its commit. With the default thresholds the
    collector ran several full passes a second over every object of the process (the imported framework
    included): a fifth of the event loop's CPU under load. Startup objects are frozen out of the collector's
    view and young generations are collected less often; the data we allocate is acyclic and freed by
    reference counting anyway.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)


def server_file(workspace: Workspace) -> Path:
    return workspace.data_dir / SERVER_FILE


def read_server_file(workspace: Workspace) -> dict[str, Any] | None:
    path = server_file(workspace)
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info


def _banner(workspace: Workspace, url: str, backend: str) -> str:
    lines = [
        f"Orchestrion {__version__} serving workspace {workspace.config.name!r} on {backend}",
        f"  URL:          {url}",
    ]
    for source in workspace.config.sources:
        lines.append(f"  write key:    {source.write_key}   (source {source.name!r})")
    if os.environ.get("ORCHESTRION_ADMIN_TOKEN"):
        lines.append("  admin token:  (from ORCHESTRION_ADMIN_TOKEN)")
    else:
        lines.append(f"  admin token:  {workspace.admin_token}")
    if workspace.is_dev:
        lines.append("  (dev workspace: no orchestrion.yml here; `orchestrion init` creates one)")
    return "\n".join(lines)


def serve(workspace: Workspace, host: str = "127.0.0.1", port: int = 8080, log_level: str = "warning") -> None:
    """Run until SIGINT/SIGTERM; refuses to start with a breaking change to a contract version in force."""
    store = open_store(workspace.database_url)
    try:
        contracts = load_contracts(workspace.contracts_dir)
        errors = validate_contract_changes(contracts, store.recorded_contracts())
        if errors:
            raise ConfigError("\n".join(errors))
        url = f"http://{host}:{port}"
        info_path = server_file(workspace)

        def announce() -> None:
            info_path.parent.mkdir(parents=True, exist_ok=True)
            info = {
                "url": url,
                "pid": os.getpid(),
                "admin_token": workspace.admin_token,
                "backend": store.capabilities.name,
                "started_at": dt.datetime.now(dt.UTC).isoformat(),
            }
            tmp = info_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(info))
            tmp.chmod(0o600)
            tmp.replace(info_path)
            print(_banner(workspace, url, store.capabilities.name), flush=True)
            sys.stdout.flush()

        app = create_app(workspace, store, contracts=contracts, on_started=announce)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=10,
            server_header=False,
        )
        previous = signal.signal(signal.SIGTERM, _exit_after_graceful_shutdown)
        tune_garbage_collector()
        try:
            uvicorn.Server(config).run()
        finally:
            signal.signal(signal.SIGTERM, previous)
            info = read_server_file(workspace)
            if info and info.get("pid") == os.getpid():
                info_path.unlink(missing_ok=True)
    finally:
        store.close()
