"""What each aggregate keeps per time bucket, how buckets combine, and the value they give.

Buckets are immutable values (frozensets, tuples, numbers, dicts never changed after creation), so a state update
copies only the one bucket it touches. `count` and `sum` keep the dedup key of every event in an open bucket, so
a replayed event is not counted twice; the other aggregates are idempotent by nature (the same event twice gives
the same min, max, first, last or set of values).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import orjson

Number = int | float
# first/last entries: (timestamp in µs, message_id, source, value); ties on time break by message_id, then source
Entry = tuple[int, str, str, Any]


class Aggregator:
    """One aggregate's bucket algebra. `summary` is a bucket with its dedup keys dropped (what all-time folds keep)."""

    name = ""
    idempotent = True  # adding the same event twice changes nothing, so no dedup key is needed

    def add(self, bucket: Any, key: str, contribution: Any) -> Any:
        """The bucket with the event added, or None when the event was already in it."""
        raise NotImplementedError

    def combine(self, a: Any, b: Any) -> Any:
        """Two buckets of the same time bucket (from two profiles being merged) as one."""
        raise NotImplementedError

    def summarize(self, bucket: Any) -> Any:
        return bucket

    def combine_summaries(self, a: Any, b: Any) -> Any:
        return self.combine(a, b)

    def add_to_summary(self, summary: Any, contribution: Any) -> Any:
        """A late event folded straight into the all-time summary (idempotent aggregates only)."""
        added = self.add(None, "", contribution)
        return added if summary is None else self.combine_summaries(summary, self.summarize(added))

    def finish(self, summaries: Iterable[Any]) -> Any:
        raise NotImplementedError

    def empty(self) -> Any:
        return None

    def dump_bucket(self, bucket: Any) -> Any:
        return bucket

    def load_bucket(self, data: Any) -> Any:
        return data

    def dump_summary(self, summary: Any) -> Any:
        return self.dump_bucket(summary)

    def load_summary(self, data: Any) -> Any:
        return self.load_bucket(data)


class Count(Aggregator):
    name = "count"
    idempotent = False

    def add(self, bucket: frozenset[str] | None, key: str, contribution: Any) -> frozenset[str] | None:
        if bucket is None:
            return frozenset((key,))
        return None if key in bucket else bucket | {key}

    def combine(self, a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
        return a | b

    def summarize(self, bucket: frozenset[str]) -> int:
        return len(bucket)

    def combine_summaries(self, a: int, b: int) -> int:
        return a + b

    def finish(self, summaries: Iterable[int]) -> int:
        return sum(summaries)

    def empty(self) -> int:
        return 0

    def dump_bucket(self, bucket: frozenset[str]) -> list[str]:
        return sorted(bucket)

    def load_bucket(self, data: list[str]) -> frozenset[str]:
        return frozenset(data)

    def dump_summary(self, summary: int) -> int:
        return summary

    def load_summary(self, data: int) -> int:
        return int(data)


class Sum(Aggregator):
    """Keeps each event's number by dedup key; the total is exact for ints and correctly rounded (fsum) otherwise."""

    name = "sum"
    idempotent = False

    def add(self, bucket: dict[str, Number] | None, key: str, contribution: Number) -> dict[str, Number] | None:
        if bucket is None:
            return {key: contribution}
        if key in bucket:
            return None
        grown = dict(bucket)
        grown[key] = contribution
        return grown

    def combine(self, a: dict[str, Number], b: dict[str, Number]) -> dict[str, Number]:
        return {**a, **b}

    def summarize(self, bucket: dict[str, Number]) -> Number:
        return _total(bucket.values())

    def combine_summaries(self, a: Number, b: Number) -> Number:
        return _total((a, b))

    def finish(self, summaries: Iterable[Number]) -> Number:
        return _total(summaries)

    def empty(self) -> int:
        return 0

    def dump_bucket(self, bucket: dict[str, Number]) -> list[list[Any]]:
        return [[key, bucket[key]] for key in sorted(bucket)]

    def load_bucket(self, data: list[list[Any]]) -> dict[str, Number]:
        return {str(key): value for key, value in data}

    def dump_summary(self, summary: Number) -> Number:
        return summary

    def load_summary(self, data: Number) -> Number:
        return data


def _total(values: Iterable[Number]) -> Number:
    numbers = list(values)
    if all(isinstance(v, int) for v in numbers):
        total = sum(numbers)
        # past 64 bits a JSON state cannot hold it as an integer (orjson refuses): keep it as a float
        return total if -(2**63) <= total < 2**64 else float(total)
    return math.fsum(numbers)


class Extreme(Aggregator):
    """min/max of numbers."""

    def __init__(self, name: str, lowest: bool) -> None:
        self.name = name
        self._lowest = lowest

    def _better(self, a: Number, b: Number) -> Number:
        return (a if a <= b else b) if self._lowest else (a if a >= b else b)

    def add(self, bucket: Number | None, key: str, contribution: Number) -> Number | None:
        if bucket is None:
            return contribution
        best = self._better(bucket, contribution)
        return None if best is bucket else best

    def combine(self, a: Number, b: Number) -> Number:
        return self._better(a, b)

    def finish(self, summaries: Iterable[Number]) -> Number | None:
        best: Number | None = None
        for number in summaries:
            best = number if best is None else self._better(best, number)
        return best


class Ordered(Aggregator):
    """first/last: the entry with the lowest/highest (timestamp, message_id, source)."""

    def __init__(self, name: str, lowest: bool) -> None:
        self.name = name
        self._lowest = lowest

    def _better(self, a: Entry, b: Entry) -> Entry:
        a_first = a[:3] <= b[:3]
        return a if a_first == self._lowest else b

    def add(self, bucket: Entry | None, key: str, contribution: Entry) -> Entry | None:
        if bucket is None:
            return contribution
        if bucket[:3] == contribution[:3]:
            return None
        return self._better(bucket, contribution)

    def combine(self, a: Entry, b: Entry) -> Entry:
        return self._better(a, b)

    def finish(self, summaries: Iterable[Entry]) -> Any:
        best: Entry | None = None
        for entry in summaries:
            best = entry if best is None else self._better(best, entry)
        return None if best is None else best[3]

    def dump_bucket(self, bucket: Entry) -> list[Any]:
        return list(bucket)

    def load_bucket(self, data: list[Any]) -> Entry:
        return (int(data[0]), str(data[1]), str(data[2]), data[3])


class Distinct(Aggregator):
    name = "distinct_count"

    def add(self, bucket: frozenset[str] | None, key: str, contribution: str) -> frozenset[str] | None:
        if bucket is None:
            return frozenset((contribution,))
        return None if contribution in bucket else bucket | {contribution}

    def combine(self, a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
        return a | b

    def finish(self, summaries: Iterable[frozenset[str]]) -> int:
        seen: set[str] = set()
        for values in summaries:
            seen |= values
        return len(seen)

    def empty(self) -> int:
        return 0

    def dump_bucket(self, bucket: frozenset[str]) -> list[str]:
        return sorted(bucket)

    def load_bucket(self, data: list[str]) -> frozenset[str]:
        return frozenset(data)


def distinct_key(value: Any) -> str | None:
    """The identity of a value for distinct_count: strings by content, numbers and bools by their JSON text.

    1 and 1.0 are different values (as in the stored JSON); objects, arrays and null are not counted.
    """
    if isinstance(value, str):
        return "s:" + value
    if isinstance(value, bool | int | float):
        return "v:" + orjson.dumps(value).decode()
    return None


AGGREGATORS: dict[str, Aggregator] = {
    "count": Count(),
    "sum": Sum(),
    "min": Extreme("min", lowest=True),
    "max": Extreme("max", lowest=False),
    "first": Ordered("first", lowest=True),
    "last": Ordered("last", lowest=False),
    "distinct_count": Distinct(),
}
