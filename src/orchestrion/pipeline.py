"""The conductor: consumes the event log in order and walks each event through the stages.

Today the stages are identity (profiles, traits, consent); computed traits, journeys, decisions and the outbox join
here in later issues. This is the only place that knows the order. Each step — a batch of events — commits its
effects together with the checkpoint, so a crash replays the step instead of losing or doubling it.

Positions are the event log's `seq`. With one writer (embedded DuckDB) a gap in `seq` is final (a rolled-back
transaction). With PostgreSQL, concurrent writers commit out of order: a gap may still be filled, so the conductor
waits for it up to `gap_timeout` before moving past it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrion.identity.consent_store import EventConsentReader
from orchestrion.identity.stage import IdentityStage
from orchestrion.store.lease import AlwaysHeld, Lease, processing_lease
from orchestrion.store.ports import PIPELINE_CHECKPOINT, Store, StoredEvent
from orchestrion.workspace import Workspace

log = logging.getLogger(__name__)
CHECKPOINT = PIPELINE_CHECKPOINT


@dataclass
class GapTracker:
    """Decides how far the conductor may advance over a page of the log without skipping a late commit."""

    final_gaps: bool  # True when gaps can never be filled (one writer)
    gap_timeout: float = 5.0
    now: Callable[[], float] = time.monotonic
    _first_seen: dict[int, float] = field(default_factory=dict)

    def ready(self, position: int, page: list[StoredEvent]) -> list[StoredEvent]:
        """The prefix of `page` that can be processed now."""
        if self.final_gaps:
            return page
        expected = position + 1
        ready: list[StoredEvent] = []
        current = self.now()
        for stored in page:
            if stored.seq != expected:
                seen = self._first_seen.setdefault(expected, current)
                if current - seen < self.gap_timeout:
                    break
                log.warning("event log: positions %d..%d never committed; moving on", expected, stored.seq - 1)
            ready.append(stored)
            expected = stored.seq + 1
        for seq in [s for s in self._first_seen if s < expected]:
            del self._first_seen[seq]
        return ready


class Conductor:
    """Runs the processing loop in a thread: poll the log, process a page, commit, repeat."""

    def __init__(
        self,
        store: Store,
        process_page: Callable[[list[StoredEvent], int], None],
        *,
        page_size: int = 1000,
        poll_interval: float = 0.05,
        on_failure: Callable[[], None] | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.store = store
        self._process_page = process_page
        self.page_size = page_size
        self.poll_interval = poll_interval
        # PostgreSQL: a gap may be a transaction still committing; wait for it up to 30 s before moving on
        self.gaps = GapTracker(final_gaps=not store.capabilities.multi_process_writers, gap_timeout=30.0)
        self.position = store.processing_position(CHECKPOINT)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.processed = 0
        self.last_error: str | None = None
        self._after_failure = on_failure
        self.lease = lease or AlwaysHeld()
        self._leading = isinstance(self.lease, AlwaysHeld)  # state was just loaded; a lease holder reloads

    def wake(self) -> None:
        """New events were committed: look now instead of at the next poll."""
        self._wake.set()

    def run_once(self) -> int:
        """Process at most one page; returns how many events it processed (0 while another process leads)."""
        if not self.lease.held():
            self._leading = False
            return 0
        if not self._leading:
            # taking over (or starting): another process may have advanced since our state was loaded
            self._leading = True
            self._on_failure()
        page = self.store.read_events_after(self.position, self.page_size)
        ready = self.gaps.ready(self.position, page)
        if not ready:
            return 0
        new_position = ready[-1].seq
        self._process_page(ready, new_position)
        self.position = new_position
        self.processed += len(ready)
        return len(ready)

    def drain(self, timeout: float = 30.0) -> None:
        """Process until the log is exhausted (for tests, the CLI and shutdown)."""
        deadline = time.monotonic() + timeout
        if not self.lease.held():
            return  # another process leads processing; what it committed is what there is to read
        while time.monotonic() < deadline:
            if self.run_once() == 0 and not self.store.read_events_after(self.position, 1):
                return
        raise TimeoutError(f"the event log was not drained within {timeout}s (at position {self.position})")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="orchestrion-conductor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.lease.release()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        backoff = self.poll_interval
        while not self._stop.is_set():
            try:
                count = self.run_once()
                self.last_error = None
                backoff = self.poll_interval
            except Exception as exc:  # storage hiccup: the step rolled back; retry from the same position
                log.exception("processing failed at position %d", self.position)
                self.last_error = str(exc)
                count = 0
                backoff = min(backoff * 2, 5.0)
                self._on_failure()
            if count == 0:
                self._wake.wait(backoff)
                self._wake.clear()

    def _on_failure(self) -> None:
        """After a failed step, in-memory stage state may be ahead of the database: reload it."""
        self.position = self.store.processing_position(CHECKPOINT)
        if self._after_failure is not None:
            self._after_failure()


@dataclass
class Processing:
    """The stages and the conductor of one workspace, wired together."""

    identity: IdentityStage
    consent: EventConsentReader
    conductor: Conductor


def build_processing(store: Store, workspace: Workspace) -> Processing:
    """Load the identity stage from storage and build the conductor that feeds it."""
    consent = EventConsentReader(workspace.config.consent)
    identity = IdentityStage(store, workspace.config.identity.policy(), consent)
    identity.load()

    def process_page(page: list[StoredEvent], position: int) -> None:
        store.commit_processing(identity.process(page, position, CHECKPOINT))

    conductor = Conductor(store, process_page, on_failure=identity.load, lease=processing_lease(store))
    return Processing(identity=identity, consent=consent, conductor=conductor)
