"""Declarations of real-time computed traits: what to aggregate, over which events, in which window.

A declaration lives under `computed_traits:` in `orchestrion.yml` or in `models/*.yml`. One that validates is
guaranteed to run both on the stream (its CEL filter compiles) and in SQL (its filter is inside the SQL subset).
"""

from __future__ import annotations

import builtins
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from orchestrion.errors import ConfigError

Aggregate = Literal["count", "sum", "min", "max", "first", "last", "distinct_count"]
EventType = Literal["track", "page", "screen", "identify", "group"]

AGGREGATES: tuple[str, ...] = ("count", "sum", "min", "max", "first", "last", "distinct_count")
NUMERIC_AGGREGATES = frozenset({"sum", "min", "max"})

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WINDOW = re.compile(r"^([1-9][0-9]*)([dh])$")
MAX_WINDOW_DAYS = 400
MAX_WINDOW_HOURS = 720

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US


class ComputedTraitError(ConfigError):
    """A computed trait cannot be declared, evaluated in SQL or loaded; the message names the trait and field."""

    def __init__(self, trait: str, field: str, problem: str) -> None:
        super().__init__(f"computed trait '{trait}': {field}: {problem}")
        self.trait = trait
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Window:
    """A window as whole UTC buckets: `days`/`hours` buckets ending with the bucket that holds `as_of`.

    `count` is None for all time (buckets of one day, no lower bound).
    """

    text: str
    bucket_us: int
    count: int | None

    @property
    def all_time(self) -> bool:
        return self.count is None


@lru_cache(maxsize=1024)
def parse_window(text: str) -> Window:
    """`all`, `<N>d` (N UTC days, today included) or `<N>h` (N UTC hours, the current hour included)."""
    if text == "all":
        return Window(text, DAY_US, None)
    match = _WINDOW.match(text)
    if match is None:
        raise ValueError(f"cannot read window {text!r}; write 'all', '<N>d' (e.g. '30d') or '<N>h' (e.g. '24h')")
    count, unit = int(match.group(1)), match.group(2)
    limit = MAX_WINDOW_DAYS if unit == "d" else MAX_WINDOW_HOURS
    if count > limit:
        raise ValueError(f"window {text!r} is longer than {limit}{unit}; use 'all' or a SQL model for longer spans")
    return Window(text, DAY_US if unit == "d" else HOUR_US, count)


class ComputedTrait(BaseModel):
    """One real-time computed trait, e.g. `workouts_completed`: count of track `Workout Completed`, all time.

    `property` is a dotted path under the event's `properties` (required for every aggregate but `count`, where it
    restricts the count to events that carry a non-null value). `filter` is a CEL expression over `event`, the
    Segment-shaped payload (`event.properties.duration_min > 10`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    aggregate: Aggregate
    type: EventType = "track"
    event: str | None = None
    property: str | None = None
    window: str = "all"
    filter: str | None = None

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} is not a trait name; use letters, digits and '_' (e.g. workouts_completed)")
        return value

    @field_validator("event")
    @classmethod
    def _event_is_named(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("an event name cannot be empty; leave 'event' out to take every event of the type")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _consistent(self) -> ComputedTrait:
        name = self.name
        if self.event is not None and self.type != "track":
            raise ComputedTraitError(name, "event", f"event names apply to track calls only, not to {self.type!r}")
        if self.property is None and self.aggregate != "count":
            raise ComputedTraitError(name, "property", f"'{self.aggregate}' needs a property to aggregate")
        if self.property is not None and not all(_SEGMENT.match(p) for p in self.property.split(".")):
            raise ComputedTraitError(
                name, "property", f"{self.property!r} is not a dotted path of names under properties (e.g. plan.price)"
            )
        try:
            parse_window(self.window)
        except ValueError as exc:
            raise ComputedTraitError(name, "window", str(exc)) from None
        if self.filter is not None:
            # imported here: the filter module imports this one for its error type
            from orchestrion.model.computed_filter import check_filter

            check_filter(name, self.filter)
        return self

    # Plain properties over caches keyed by field values (not values cached on the instance, which model_copy
    # would carry over stale). `builtins.property`: the field `property` shadows the builtin inside this class.
    @builtins.property
    def parsed_window(self) -> Window:
        return parse_window(self.window)

    @builtins.property
    def property_path(self) -> tuple[str, ...]:
        """The path of the aggregated value inside the payload, `properties` first; empty without a property."""
        return _property_path(self.property)

    @builtins.property
    def fingerprint(self) -> str:
        """A short hash of everything that decides the state's contents: a state built under another is stale."""
        return _fingerprint(self.aggregate, self.type, self.event, self.property, self.window, self.filter)


@lru_cache(maxsize=1024)
def _property_path(dotted: str | None) -> tuple[str, ...]:
    return ("properties", *dotted.split(".")) if dotted else ()


@lru_cache(maxsize=1024)
def _fingerprint(*shape: str | None) -> str:
    return hashlib.blake2b(orjson.dumps(list(shape)), digest_size=6).hexdigest()


def parse_computed_traits(items: Any, origin: str) -> list[ComputedTrait]:
    """Validate the `computed_traits:` list of `origin` (a file name); raise ConfigError naming trait and field."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise ConfigError(f"{origin}: computed_traits must be a list of trait declarations")
    traits: list[ComputedTrait] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        label = item.get("name") if isinstance(item, dict) and isinstance(item.get("name"), str) else f"#{index + 1}"
        try:
            trait = ComputedTrait.model_validate(item)
        except ValidationError as exc:
            raise ConfigError(f"{origin}: computed trait '{label}': {_describe(exc)}") from None
        except ComputedTraitError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
        if trait.name in seen:
            raise ConfigError(
                f"{origin}: computed trait '{trait.name}' is declared twice "
                f"(entries {seen[trait.name]} and {index + 1})"
            )
        seen[trait.name] = index + 1
        traits.append(trait)
    return traits


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "declaration"
        problems.append(f"{field}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)
