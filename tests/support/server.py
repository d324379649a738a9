"""A real `orchestrion serve` process for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

DEFAULT_WORKSPACE = """\
name: e2e
sources:
  - name: web
    write_key: wk_web_test_0001
  - name: app
    write_key: wk_app_test_0001
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    root: Path
    port: int
    url: str
    admin_token: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    extra_args: list[str] = field(default_factory=list)

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=30)

    def query(self, sql: str) -> list[list[object]]:
        with self.admin() as client:
            response = client.post("/api/query", json={"sql": sql})
            response.raise_for_status()
            rows: list[list[object]] = response.json()["rows"]
            return rows

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks run."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> ServerProcess:
        """Stop (if still running) and start again on the same workspace, port and database.

        Updates this object in place (and returns it), so whoever tracks it for teardown stops the new process.
        """
        self.stop()
        fresh = launch(self.root, self.port, self.env, self.admin_token, self.extra_args)
        self.process, self.log_path = fresh.process, fresh.log_path
        return self


def launch(root: Path, port: int, env: dict[str, str], token: str, extra_args: list[str]) -> ServerProcess:
    log_path = root / f"server-{time.time_ns()}.log"
    with log_path.open("wb") as log_file:  # the child keeps its own descriptor; ours must not leak
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrion.cli", "serve", "--port", str(port), *extra_args],
            cwd=root,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError(f"server did not become ready:\n{log_path.read_text()}")
    return ServerProcess(root, port, url, token, env, process, log_path, extra_args)


def start_server(
    root: Path,
    *,
    workspace_yaml: str | None = None,
    database_url: str | None = None,
    files: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
) -> ServerProcess:
    """Write a workspace into `root` (orchestrion.yml + extra files) and start a server on a free port."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "orchestrion.yml").write_text(workspace_yaml if workspace_yaml is not None else DEFAULT_WORKSPACE)
    for relative, content in (files or {}).items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    env = dict(os.environ)
    token = "adm_test_token_0001"
    env["ORCHESTRION_ADMIN_TOKEN"] = token
    env.pop("ORCHESTRION_DATABASE_URL", None)
    if database_url:
        env["ORCHESTRION_DATABASE_URL"] = database_url
    return launch(root, free_port(), env, token, extra_args or [])
