"""Drive an ASGI app in-process, lifespan included, from synchronous tests (hypothesis properties).

Starlette's TestClient is deprecated with httpx here; this runs the app's lifespan and an `httpx.AsyncClient`
over `httpx.ASGITransport` on an event loop in a background thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
from starlette.applications import Starlette

T = TypeVar("T")


class InProcessClient:
    """Synchronous calls into an app whose lifespan is running."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient) -> None:
        self._loop = loop
        self._client = client

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.run(self._client.request(method, url, **kwargs))


@contextmanager
def in_process(app: Starlette) -> Iterator[InProcessClient]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="asgi-loop", daemon=True)
    thread.start()
    # raise_app_exceptions=False: a crash must show up as the 500 a client would get
    transport = httpx.ASGITransport(app, raise_app_exceptions=False, client=("127.0.0.1", 50000))
    client = InProcessClient(loop, httpx.AsyncClient(transport=transport, base_url="http://testserver"))
    lifespan = app.router.lifespan_context(app)
    client.run(lifespan.__aenter__())
    try:
        yield client
    finally:
        try:
            client.run(client._client.aclose())
            client.run(lifespan.__aexit__(None, None, None))
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()
