"""Per-source token buckets on a virtual clock."""

from __future__ import annotations

import pytest

from orchestrion.collect.ratelimit import TokenBucket


class Ticks:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_twice_the_rate_then_refusal_with_the_wait() -> None:
    ticks = Ticks()
    bucket = TokenBucket(rate=5, now=ticks)
    assert [bucket.take() for _ in range(10)] == [0.0] * 10
    assert bucket.take() == pytest.approx(0.2)  # one token comes back every 1/rate seconds
    ticks.now += 0.1
    assert bucket.take() == pytest.approx(0.1)


def test_tokens_come_back_at_the_rate_but_never_past_the_burst() -> None:
    ticks = Ticks()
    bucket = TokenBucket(rate=2, burst=3, now=ticks)
    for _ in range(3):
        assert bucket.take() == 0.0
    assert bucket.take() > 0
    ticks.now += 1.0  # two tokens
    assert [bucket.take() == 0.0 for _ in range(3)] == [True, True, False]
    ticks.now += 3600  # long idle: still only the burst
    assert sum(bucket.take() == 0.0 for _ in range(10)) == 3


def test_a_slow_rate_still_allows_one_request() -> None:
    ticks = Ticks()
    bucket = TokenBucket(rate=0.1, now=ticks)
    assert bucket.capacity == 1.0
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(10.0)


def test_a_refused_take_costs_nothing() -> None:
    ticks = Ticks()
    bucket = TokenBucket(rate=1, burst=1, now=ticks)
    assert bucket.take() == 0.0
    for _ in range(5):
        assert bucket.take() == pytest.approx(1.0)
    ticks.now += 1.0
    assert bucket.take() == 0.0
