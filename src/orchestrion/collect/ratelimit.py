"""Per-source token buckets: `rate` requests per second, bursts up to twice that."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None, now: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate * 2)
        self._tokens = self.capacity
        self._now = now
        self._last = now()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""
        with self._lock:
            current = self._now()
            self._tokens = min(self.capacity, self._tokens + (current - self._last) * self.rate)
            self._last = current
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate
