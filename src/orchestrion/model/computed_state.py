"""The streaming state of one computed trait for one profile: pure functions, deterministic, JSON for storage.

Events fall into whole UTC buckets (a day, or an hour for `<N>h` windows). A window of N buckets as of an instant
covers the bucket holding that instant and the N-1 before it, so per-bucket aggregates give the exact value, the
SQL compiler bounds its query by the same buckets, and both agree. Late events land in their own bucket as long as
it is still kept. `prune` drops buckets that left the window; for all-time traits it folds buckets older than
`ALL_TIME_OPEN_DAYS` into one summary (dropping their dedup keys, which bounds memory): a count/sum event that
arrives later still for such a bucket is reported `too_late` and left to the nightly reconciliation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from orchestrion.model.computed_aggregates import AGGREGATORS, Aggregator, distinct_key
from orchestrion.model.computed_declaration import ComputedTrait
from orchestrion.model.computed_filter import FilterEvaluationError, compiled_filter

STATE_FORMAT = 1
ALL_TIME_OPEN_DAYS = 30  # all-time traits keep per-event dedup keys for this many days back from the last prune
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_MISSING = object()


class StateMismatch(ValueError):
    """A stored state was built under another declaration (its fingerprint differs): rebuild it from history."""


class TraitEvent(Protocol):
    """What the state reads of an event; `collect.event.NormalizedEvent` fits."""

    @property
    def source(self) -> str: ...
    @property
    def message_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def event(self) -> str | None: ...
    @property
    def timestamp(self) -> dt.datetime: ...
    @property
    def payload(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class TraitState:
    """Buckets by index (µs since epoch // bucket length), the all-time summary, and the lowest bucket kept."""

    fingerprint: str
    aggregate: str
    buckets: Mapping[int, Any] = field(default_factory=dict)
    settled: Any = None
    floor: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one event did: `applied`, `duplicate`, `not_matching`, `no_value`, `filtered_out`, `filter_error`,
    `outside_window` or `too_late`; `detail` carries the filter's error."""

    kind: str
    detail: str = ""

    @property
    def counted(self) -> bool:
        return self.kind == "applied"


def empty_state(trait: ComputedTrait) -> TraitState:
    return TraitState(trait.fingerprint, trait.aggregate)


def empty_value_of(trait: ComputedTrait) -> Any:
    """The value of a profile with no counted event: 0 for count, sum, distinct_count; None otherwise."""
    return AGGREGATORS[trait.aggregate].empty()


def update(state: TraitState | None, event: TraitEvent, trait: ComputedTrait) -> TraitState:
    """The state with `event` taken into account; the same event twice counts once."""
    return update_with_outcome(state, event, trait)[0]


def update_with_outcome(
    state: TraitState | None, event: TraitEvent, trait: ComputedTrait
) -> tuple[TraitState, Outcome]:
    """`update`, also saying what the event did (for metrics: filter errors, too-late events, duplicates)."""
    current = _checked(state, trait)
    if event.type != trait.type or (trait.event is not None and event.event != trait.event):
        return current, Outcome("not_matching")
    aggregator = AGGREGATORS[trait.aggregate]
    timestamp_us = (event.timestamp - _EPOCH) // _MICROSECOND
    contribution = _contribution(trait, event, timestamp_us)
    if contribution is _MISSING:
        return current, Outcome("no_value")
    if trait.filter is not None:
        try:
            if not compiled_filter(trait.filter).matches(event.payload):
                return current, Outcome("filtered_out")
        except FilterEvaluationError as exc:
            return current, Outcome("filter_error", str(exc))
    index = timestamp_us // trait.parsed_window.bucket_us
    if current.floor is not None and index < current.floor:
        if not trait.parsed_window.all_time:
            return current, Outcome("outside_window")
        if not aggregator.idempotent:
            return current, Outcome("too_late")
        settled = aggregator.add_to_summary(current.settled, contribution)
        return _replace(current, settled=settled), Outcome("applied")
    key = _dedup_key(event) if not aggregator.idempotent else ""
    bucket = aggregator.add(current.buckets.get(index), key, contribution)
    if bucket is None:
        return current, Outcome("applied" if aggregator.idempotent else "duplicate")
    buckets = dict(current.buckets)
    buckets[index] = bucket
    return _replace(current, buckets=buckets), Outcome("applied")


def value(state: TraitState | None, trait: ComputedTrait, as_of: dt.datetime) -> Any:
    """The trait's value as of `as_of`: the window's buckets ending with the one holding `as_of`.

    Exact for any `as_of` not earlier than the last `prune`'s. Empty: 0 for count, sum and distinct_count; None
    for min, max, first and last.
    """
    aggregator = AGGREGATORS[trait.aggregate]
    if state is None:
        return aggregator.empty()
    current = _checked(state, trait)
    window = trait.parsed_window
    high = _bucket(as_of, window.bucket_us)
    low = None if window.count is None else high - window.count + 1
    parts = [
        aggregator.summarize(bucket)
        for index, bucket in current.buckets.items()
        if index <= high and (low is None or index >= low)
    ]
    if window.all_time and current.settled is not None:
        parts.append(current.settled)
    return aggregator.finish(parts) if parts else aggregator.empty()


def prune(state: TraitState, trait: ComputedTrait, as_of: dt.datetime) -> TraitState:
    """Drop what no window from `as_of` on can see; fold old all-time buckets into the summary."""
    current = _checked(state, trait)
    window = trait.parsed_window
    high = _bucket(as_of, window.bucket_us)
    floor = high - (ALL_TIME_OPEN_DAYS if window.count is None else window.count) + 1
    if current.floor is not None:
        if floor <= current.floor:
            return current  # nothing below the floor is ever kept: the same floor has nothing to drop
        floor = max(floor, current.floor)
    return _apply_floor(current, trait, floor)


def merge(a: TraitState, b: TraitState, trait: ComputedTrait) -> TraitState:
    """One state for two profiles merged into one (order does not matter)."""
    first, second = _checked(a, trait), _checked(b, trait)
    aggregator = AGGREGATORS[trait.aggregate]
    buckets = dict(first.buckets)
    for index, bucket in second.buckets.items():
        mine = buckets.get(index)
        buckets[index] = bucket if mine is None else aggregator.combine(mine, bucket)
    settled = _combine_optional(aggregator, first.settled, second.settled)
    floors = [f for f in (first.floor, second.floor) if f is not None]
    merged = TraitState(trait.fingerprint, trait.aggregate, buckets, settled, None)
    return _apply_floor(merged, trait, max(floors)) if floors else merged


def _apply_floor(state: TraitState, trait: ComputedTrait, floor: int) -> TraitState:
    aggregator = AGGREGATORS[trait.aggregate]
    kept: dict[int, Any] = {}
    settled = state.settled
    for index, bucket in state.buckets.items():
        if index >= floor:
            kept[index] = bucket
        elif trait.parsed_window.all_time:
            settled = _combine_optional(aggregator, settled, aggregator.summarize(bucket))
    return TraitState(state.fingerprint, state.aggregate, kept, settled, floor)


def rebuild(
    trait: ComputedTrait, events: Iterable[tuple[str, TraitEvent]], as_of: dt.datetime
) -> dict[str, TraitState]:
    """States built from stored history (profile id, event), e.g. the rows of `compile_history_sql`, pruned to
    `as_of`: for a backfill, or to repair a profile whose streamed value drifted. Row order does not matter."""
    states: dict[str, TraitState] = {}
    for profile_id, event in events:
        states[profile_id] = update(states.get(profile_id), event, trait)
    return {profile_id: prune(state, trait, as_of) for profile_id, state in states.items()}


def _combine_optional(aggregator: Aggregator, a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return aggregator.combine_summaries(a, b)


def to_json(state: TraitState) -> str:
    """Deterministic JSON (same state, same bytes) for storage."""
    aggregator = AGGREGATORS[state.aggregate]
    document = {
        "format": STATE_FORMAT,
        "fingerprint": state.fingerprint,
        "aggregate": state.aggregate,
        "floor": state.floor,
        "buckets": [[index, aggregator.dump_bucket(state.buckets[index])] for index in sorted(state.buckets)],
        "settled": None if state.settled is None else aggregator.dump_summary(state.settled),
    }
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS).decode()


def from_json(text: str | bytes) -> TraitState:
    document = orjson.loads(text)
    if document.get("format") != STATE_FORMAT:
        raise StateMismatch(
            f"computed trait state format {document.get('format')!r}; this version reads {STATE_FORMAT}"
        )
    aggregator = AGGREGATORS[document["aggregate"]]
    settled = document["settled"]
    return TraitState(
        fingerprint=document["fingerprint"],
        aggregate=document["aggregate"],
        buckets={int(index): aggregator.load_bucket(data) for index, data in document["buckets"]},
        settled=None if settled is None else aggregator.load_summary(settled),
        floor=document["floor"],
    )


def _checked(state: TraitState | None, trait: ComputedTrait) -> TraitState:
    if state is None:
        return empty_state(trait)
    if state.fingerprint != trait.fingerprint:
        raise StateMismatch(
            f"computed trait '{trait.name}': the stored state was built for another declaration "
            f"({state.fingerprint} != {trait.fingerprint}); rebuild it from the event history"
        )
    return state


def _replace(state: TraitState, **changes: Any) -> TraitState:
    fields = {"buckets": state.buckets, "settled": state.settled, "floor": state.floor, **changes}
    return TraitState(state.fingerprint, state.aggregate, **fields)


def _bucket(instant: dt.datetime, bucket_us: int) -> int:
    return ((instant - _EPOCH) // _MICROSECOND) // bucket_us


def _dedup_key(event: TraitEvent) -> str:
    # what the event log deduplicates on (source, messageId), hashed to 16 hex characters to keep states small
    return hashlib.blake2b(f"{event.source}\x1f{event.message_id}".encode(), digest_size=8).hexdigest()


def _contribution(trait: ComputedTrait, event: TraitEvent, timestamp_us: int) -> Any:
    """What the event adds to its bucket, or _MISSING when it carries no usable value."""
    found: Any = event.payload
    for key in trait.property_path:
        if not isinstance(found, dict) or key not in found:
            return _MISSING
        found = found[key]
    aggregate = trait.aggregate
    if aggregate == "count":
        return _MISSING if trait.property is not None and found is None else 1
    if aggregate in ("sum", "min", "max"):
        is_number = isinstance(found, int | float) and not isinstance(found, bool)
        return found if is_number else _MISSING
    if aggregate == "distinct_count":
        distinct = distinct_key(found)
        return _MISSING if distinct is None else distinct
    if found is None:
        return _MISSING
    return (timestamp_us, event.message_id, event.source, found)
