"""Group commit: concurrent requests share one transaction (and one fsync).

A request is answered only after the transaction holding its events committed, so an acknowledged
event is durable; the cost of the commit is shared by every request that arrived meanwhile. A forming group
waits a few milliseconds for requests still being read and prepared (`preparing()`), so that a burst of
requests shares one transaction instead of a small group leaving first and the rest waiting for it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager

from orchestrion.store.ports import AppendOutcome, EventStore, IngestBatch

log = logging.getLogger(__name__)
_STOP = object()


class GroupCommitWriter:
    def __init__(
        self,
        store: EventStore,
        *,
        threads: int = 1,
        max_group: int = 64,
        on_commit: Callable[[], None] | None = None,
        linger: float = 0.003,
    ) -> None:
        self._store = store
        self._on_commit = on_commit
        self._linger = linger
        self._preparing = 0
        self._preparing_lock = threading.Lock()
        self._queue: queue.Queue[object] = queue.Queue()
        self._max_group = max_group
        self._threads = [
            threading.Thread(target=self._run, name=f"orchestrion-writer-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, batch: IngestBatch) -> Future[AppendOutcome]:
        future: Future[AppendOutcome] = Future()
        self._queue.put((batch, future))
        return future

    @contextmanager
    def preparing(self) -> Iterator[None]:
        """Around reading and preparing one request that will be submitted: groups wait for it (see module)."""
        with self._preparing_lock:
            self._preparing += 1
        try:
            yield
        finally:
            with self._preparing_lock:
                self._preparing -= 1

    @property
    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def close(self) -> None:
        """Finish what was submitted, then stop the threads."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            group = [first]
            stop_after = False
            deadline: float | None = None
            while len(group) < self._max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    if not self._preparing:
                        break
                    deadline = deadline or time.monotonic() + self._linger
                    try:
                        item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                if item is _STOP:
                    stop_after = True
                    break
                group.append(item)
            self._write(group)  # type: ignore[arg-type]
            if stop_after:
                return

    def _write(self, group: list[tuple[IngestBatch, Future[AppendOutcome]]]) -> None:
        try:
            outcomes = self._store.append([batch for batch, _ in group])
        except Exception as exc:  # nothing of this group was acknowledged: clients retry
            log.exception("append failed for %d requests", len(group))
            for _, future in group:
                future.set_exception(exc)
            return
        for (_, future), outcome in zip(group, outcomes, strict=True):
            future.set_result(outcome)
        if self._on_commit is not None and any(o.accepted for o in outcomes):
            self._on_commit()
