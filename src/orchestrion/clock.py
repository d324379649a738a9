"""Time comes from a Clock so that the pure core can run on a virtual clock."""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current instant, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class VirtualClock:
    """A clock that moves only when told to: for tests, scenario runs and backtests."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("VirtualClock needs a timezone-aware start")
        self._now = start

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, by: dt.timedelta) -> None:
        self._now += by

    def set(self, to: dt.datetime) -> None:
        self._now = to
