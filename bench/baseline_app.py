"""The benchmark's baseline: the least a durable ingestion endpoint can do on our server stack.

A bare ASGI app that reads the body, parses it as JSON, appends it to a file and fsyncs before answering
`200 OK` — so its throughput is what uvicorn (same loop and HTTP implementation as `orchestrion serve`), JSON
parsing and one fsync per request cost on this machine. Orchestrion's figures are reported as a ratio to it.

Run: `python bench/baseline_app.py --port 8099 --path /tmp/baseline.jsonl`.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import orjson
import uvicorn

Scope = dict[str, Any]
Message = dict[str, Any]


class AppendAndFsync:
    """POST anything: parse the body as JSON, append it as one line, fsync, answer 200."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    os.close(self.fd)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            await self._answer(send, 400, b"invalid JSON\n")
            return
        os.write(self.fd, body + b"\n")
        os.fsync(self.fd)
        await self._answer(send, 200, b"OK\n")

    @staticmethod
    async def _answer(send: Any, status: int, text: bytes) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": text})


def uvicorn_config(app: Any, host: str, port: int) -> uvicorn.Config:
    """The options `orchestrion serve` gives uvicorn (src/orchestrion/api/server.py), so the stacks match."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        server_header=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True, help="the file every request body is appended to")
    args = parser.parse_args()
    uvicorn.Server(uvicorn_config(AppendAndFsync(args.path), args.host, args.port)).run()


if __name__ == "__main__":
    main()
