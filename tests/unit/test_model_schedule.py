"""Refresh schedules: intervals and cron expressions say when a model is due."""

from __future__ import annotations

import datetime as dt

import pytest

from orchestrion.model.schedule import Schedule


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def test_an_interval_is_due_that_long_after_the_last_start() -> None:
    schedule = Schedule.parse("15m")
    assert schedule.interval == dt.timedelta(minutes=15)
    last = at("2026-03-01 10:00:00")
    assert not schedule.is_due(last, at("2026-03-01 10:14:59"))
    assert schedule.is_due(last, at("2026-03-01 10:15:00"))


def test_a_model_never_built_is_due_at_once() -> None:
    assert Schedule.parse("1h").is_due(None, at("2026-03-01 10:00:00"))
    assert Schedule.parse("0 3 * * *").is_due(None, at("2026-03-01 10:00:00"))


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("*/15 * * * *", "2026-03-01 10:07:30", "2026-03-01 10:15:00"),
        ("*/15 * * * *", "2026-03-01 10:15:00", "2026-03-01 10:30:00"),  # strictly after
        ("0 3 * * *", "2026-03-01 03:00:00", "2026-03-02 03:00:00"),
        ("30 9 * * 1-5", "2026-03-06 10:00:00", "2026-03-09 09:30:00"),  # Friday after 9:30 -> Monday
        ("0 0 1 * *", "2026-01-31 12:00:00", "2026-02-01 00:00:00"),
        ("0 12 29 2 *", "2026-03-01 00:00:00", "2028-02-29 12:00:00"),  # the next leap day
        ("0 8 * * 0", "2026-03-01 09:00:00", "2026-03-08 08:00:00"),  # 2026-03-01 is a Sunday
        ("0 8 * * 7", "2026-03-01 09:00:00", "2026-03-08 08:00:00"),  # 7 is Sunday too
        ("0 6 1,15 * *", "2026-03-02 00:00:00", "2026-03-15 06:00:00"),
        ("0 6 13 * 5", "2026-03-02 00:00:00", "2026-03-06 06:00:00"),  # both day fields: either matches
    ],
)
def test_cron_expressions_name_the_next_minute(cron: str, after: str, expected: str) -> None:
    assert Schedule.parse(cron).next_after(at(after)) == at(expected)


def test_a_cron_model_is_due_once_its_next_minute_has_come() -> None:
    schedule = Schedule.parse("0 * * * *")
    last = at("2026-03-01 10:00:02")
    assert not schedule.is_due(last, at("2026-03-01 10:59:59"))
    assert schedule.is_due(last, at("2026-03-01 11:00:00"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("every hour", "write an interval"),
        ("5s", "at most every 10s"),
        ("61 * * * *", "outside 0-59"),
        ("* * * *", "write an interval"),
        ("*/0 * * * *", "step"),
        ("0 0 31 2 *", "never matches"),
        ("a b c d e", "cannot read"),
    ],
)
def test_a_schedule_that_cannot_be_read_is_refused_with_the_accepted_forms(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule.parse(text)
