"""Refresh schedules: an interval (`15m`, `1h`) or a five-field cron expression (`*/15 * * * *`), in UTC. Pure.

A model is due when the next time its schedule names after its last build started has come. Cron fields are
minute, hour, day of month, month, day of week (0 or 7 = Sunday) with `*`, lists, ranges and steps; when both
day fields are restricted, either may match (as in Vixie cron).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from orchestrion.durations import parse_duration

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_MAX_SEARCH = dt.timedelta(days=366 * 5)


def _parse_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"cron {name}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, _, last = body.partition("-")
            if not (first.isdigit() and last.isdigit()):
                raise ValueError(f"cron {name}: cannot read range {body!r}")
            start, end = int(first), int(last)
        elif body.isdigit():
            start = int(body)
            end = high if step_text else start
        else:
            raise ValueError(f"cron {name}: cannot read {body!r} (numbers, *, a-b, */n and lists only)")
        if start < low or end > high or start > end:
            raise ValueError(f"cron {name}: {body!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(f"cron {text!r}: write five fields (minute hour day-of-month month day-of-week)")
        fields = [_parse_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset(0 if day == 7 else day for day in fields[4])
        return cls(fields[0], fields[1], fields[2], fields[3], weekdays, parts[2] == "*", parts[4] == "*")

    def _day_matches(self, day: dt.datetime) -> bool:
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, after: dt.datetime) -> dt.datetime:
        """The first matching minute strictly after `after` (UTC)."""
        at = after.astimezone(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        limit = at + _MAX_SEARCH
        while at < limit:
            if at.month not in self.months:
                at = (at.replace(day=1, hour=0, minute=0) + dt.timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(at):
                at = at.replace(hour=0, minute=0) + dt.timedelta(days=1)
                continue
            if at.hour not in self.hours:
                at = at.replace(minute=0) + dt.timedelta(hours=1)
                continue
            if at.minute not in self.minutes:
                at += dt.timedelta(minutes=1)
                continue
            return at
        raise ValueError("cron expression never matches (e.g. 31 February)")


@dataclass(frozen=True)
class Schedule:
    """When a model refreshes: every `interval`, or at the minutes `cron` names."""

    text: str
    interval: dt.timedelta | None = None
    cron: Cron | None = None

    @classmethod
    def parse(cls, text: str) -> Schedule:
        cleaned = str(text).strip()
        if len(cleaned.split()) == 5:
            cron = Cron.parse(cleaned)
            cron.next_after(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))  # refuses expressions that never match
            return cls(text=cleaned, cron=cron)
        try:
            interval = parse_duration(cleaned)
        except ValueError:
            raise ValueError(
                f"schedule {text!r}: write an interval ('15m', '1h') or a cron expression ('*/15 * * * *')"
            ) from None
        if interval < dt.timedelta(seconds=10):
            raise ValueError(f"schedule {text!r}: refresh at most every 10s")
        return cls(text=cleaned, interval=interval)

    def next_after(self, last_start: dt.datetime) -> dt.datetime:
        if self.interval is not None:
            return last_start + self.interval
        assert self.cron is not None
        return self.cron.next_after(last_start)

    def is_due(self, last_start: dt.datetime | None, now: dt.datetime) -> bool:
        """Never built: due at once. Otherwise due once the next scheduled time after the last start has come."""
        return last_start is None or self.next_after(last_start) <= now
