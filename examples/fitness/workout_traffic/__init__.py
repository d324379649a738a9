"""Workout-app traffic for the fitness example: deterministic (seeded), a few hundred users over eight weeks.

Each user walks a path through the four sources of seed 000: an ad click, a search landing or a referral
code (`acquisition`), anonymous visits to the site (`web`), a signup that identifies them, workouts in the
app over days and weeks (`app`), for some an upgrade or an abandoned checkout, and help-desk tickets
(`support`). Timestamps lie in the past: they are the times the events happened, sent later as history.

A handful of calls carry planted mistakes so that the data contracts have something to report. Every call
records what should become of it (`expect`), given the modes in orchestrion.yml and contracts/*.yml; the
demo's test compares that with what the server did.
"""

from __future__ import annotations

import datetime as dt

from .calls import Call, Expectation, expectation
from .journeys import HISTORY_DAYS, Traffic
from .mistakes import plant_mistakes, plant_retries

SEED = 2026
DEFAULT_USERS = 300

__all__ = ["DEFAULT_USERS", "HISTORY_DAYS", "SEED", "Call", "Expectation", "expectation", "generate"]


def generate(users: int = DEFAULT_USERS, seed: int = SEED, end: dt.datetime | None = None) -> list[Call]:
    """Every call, in the order a client sends them: by event time, then the retried duplicates.

    `end` (default: today, 00:00 UTC) is the end of the history; the same users and seed give the same
    calls relative to it.
    """
    if end is None:
        end = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    traffic = Traffic(users, seed, end)
    for user in traffic.users:
        traffic.journey(user)
    traffic.calls.sort(key=lambda c: (c.timestamp, c.message_id))
    plant_mistakes(traffic)
    traffic.calls.sort(key=lambda c: (c.timestamp, c.message_id))
    retries = plant_retries(traffic, max(1, len(traffic.calls) // 200))
    return traffic.calls + retries
