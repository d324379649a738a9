"""Test-side HTTP tools for the end-to-end suite: a fault-injecting loopback proxy, raw socket requests
(for what httpx refuses to send, such as a lying Content-Length), Prometheus parsing and time parsing."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx

_FORWARDED_HEADERS = ("content-type", "content-encoding", "authorization", "user-agent", "x-retry-count")


@dataclass
class ProxyLog:
    """What the proxy saw: each request's decoded JSON body and the status the client was given."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    content_encodings: list[str] = field(default_factory=list)
    upstream_statuses: list[int] = field(default_factory=list)
    client_statuses: list[int] = field(default_factory=list)

    def message_ids(self, attempt: int) -> list[str]:
        return [str(item["messageId"]) for item in self.bodies[attempt]["batch"]]


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    upstream: str
    fail_first: int
    log: ProxyLog
    lock: threading.Lock


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k: v for k, v in self.headers.items() if k.lower() in _FORWARDED_HEADERS}
        upstream = httpx.post(self.server.upstream + self.path, content=body, headers=headers, timeout=30)
        raw = gzip.decompress(body) if self.headers.get("Content-Encoding", "").lower() == "gzip" else body
        with self.server.lock:
            attempt = len(self.server.log.bodies)
            self.server.log.bodies.append(json.loads(raw))
            self.server.log.content_encodings.append(self.headers.get("Content-Encoding", ""))
            self.server.log.upstream_statuses.append(upstream.status_code)
            # The server stored the batch, but the answer is "lost": the client sees a 500 and must retry.
            injected = attempt < self.server.fail_first
            status = 500 if injected else upstream.status_code
            self.server.log.client_statuses.append(status)
        reply = b"injected failure after forwarding\n" if injected else upstream.content
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


@contextmanager
def lost_reply_proxy(upstream: str, *, fail_first: int = 1) -> Iterator[tuple[str, ProxyLog]]:
    """A loopback proxy that forwards every request, but answers the first `fail_first` with 500."""
    server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
    server.upstream = upstream
    server.fail_first = fail_first
    server.log = ProxyLog()
    server.lock = threading.Lock()
    thread = threading.Thread(target=server.serve_forever, name="lost-reply-proxy", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.log
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(url: str, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> RawResponse:
    """Send bytes as they are (headers included, even a Content-Length that lies) and read the answer.

    The body goes out from a second thread: a server that refuses early stops reading, and the
    answer must still be read rather than the client blocking in `sendall`.
    """
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=30)
    head = f"{method} {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"

    def send_body() -> None:
        # OSError: the server answered and closed before reading everything, as a refusal may
        with contextlib.suppress(OSError):
            sock.sendall(head.encode() + body)

    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    received = bytearray()
    try:
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        head_bytes, _, rest = bytes(received).partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        answer_headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            answer_headers[name.strip().lower()] = value.strip()
        length = int(answer_headers.get("content-length", "0"))
        body_bytes = bytearray(rest)
        while len(body_bytes) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body_bytes += chunk
    finally:
        sock.close()
        sender.join(timeout=10)
    return RawResponse(status, answer_headers, bytes(body_bytes))


def metric_value(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0.0 when absent)."""
    for line in exposition.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return 0.0


def instant(value: object) -> dt.datetime:
    """A timestamp as the admin query API returns it (ISO text), as an aware datetime."""
    assert isinstance(value, str), f"expected an ISO timestamp, got {value!r}"
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
