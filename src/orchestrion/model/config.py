"""What a model declares beside its SQL (a sidecar `models/<name>.yml` or a `-- key: value` header), and the
`models:` section of `orchestrion.yml`.

Example sidecar::

    kind: state                 # traits | audience | state | table
    description: Where a member is in their first weeks.
    values: [new, activated, committed, at_risk, retained]
    freshness: 2h               # older than this, the model is stale (a `model_stale` alert)
    schedule: 30m               # or cron: "*/30 * * * *"
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrion.durations import parse_duration
from orchestrion.model.schedule import Schedule

IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"
PROFILE_COLUMN = "profile_id"
SOURCE_DIALECTS = ("duckdb", "postgres", "clickhouse", "snowflake", "bigquery")


class ModelKind(StrEnum):
    TRAITS = "traits"  # one row per profile_id, any columns
    AUDIENCE = "audience"  # a set of profile_ids; membership changes become audience_entered/exited events
    STATE = "state"  # one row per profile_id with one value out of a declared list
    TABLE = "table"  # any shape: intermediate tables other models read (daily roll-ups, staging)


def _duration(value: object) -> object:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return parse_duration(value)
    return value


class IncrementalConfig(BaseModel):
    """Rebuild only the recent time buckets: those from (watermark - lookback) on.

    The watermark is the newest bucket in the table (`time_column`). Each build filters the inputs to rows whose
    `input_column` is at or after that instant, deletes the table's rows from that bucket on, and inserts what the
    filtered query returns. Correct when a bucket's row depends only on input rows of that bucket (e.g.
    `date_trunc('day', "timestamp") AS day`); an event arriving later than `lookback` is picked up by the next
    full refresh.
    """

    model_config = ConfigDict(extra="forbid")

    time_column: str = Field(pattern=IDENTIFIER, description="output column holding the row's UTC time bucket")
    grain: Literal["hour", "day"] = Field(default="day", description="the size of a time bucket")
    lookback: dt.timedelta = Field(
        default=dt.timedelta(days=1), description="late-arrival window: buckets this far back are rebuilt"
    )
    input_column: str = Field(default="timestamp", pattern=IDENTIFIER, description="input column filtered")
    inputs: list[str] | None = Field(
        default=None, description="relations to filter (default: every input that has input_column)"
    )

    _lookback = field_validator("lookback", mode="before")(_duration)

    @model_validator(mode="after")
    def _lookback_in_whole_buckets(self) -> IncrementalConfig:
        bucket = dt.timedelta(days=1) if self.grain == "day" else dt.timedelta(hours=1)
        if self.lookback < dt.timedelta(0) or self.lookback % bucket:
            raise ValueError(f"incremental.lookback must be a whole number of {self.grain}s")
        return self

    @property
    def bucket(self) -> dt.timedelta:
        return dt.timedelta(days=1) if self.grain == "day" else dt.timedelta(hours=1)

    def rebuild_from(self, watermark: dt.datetime, as_of: dt.datetime) -> dt.datetime:
        """The first bucket an incremental build recomputes: the watermark minus the lookback, where the watermark
        counts no later than the run's own bucket (an event dated in the future must not hold back today's)."""
        current = as_of.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
        if self.grain == "day":
            current = current.replace(hour=0)
        return min(watermark, current) - self.lookback


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ModelKind
    description: str = ""
    freshness: dt.timedelta | None = Field(default=None, description="SLO: older than this, the model is stale")
    schedule: str | None = Field(default=None, description="refresh interval ('15m') or cron ('*/15 * * * *')")
    column: str = Field(default="state", pattern=IDENTIFIER, description="state models: the column holding it")
    values: list[str] = Field(default_factory=list, description="state models: the allowed values")
    unique_key: list[str] | None = Field(default=None, description="table models: columns unique per row")
    incremental: IncrementalConfig | None = None
    dialect: str | None = Field(default=None, description="SQL dialect of this file (default: models.dialect)")

    _freshness = field_validator("freshness", mode="before")(_duration)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            Schedule.parse(value)
        return value

    @field_validator("dialect")
    @classmethod
    def _dialect(cls, value: str | None) -> str | None:
        if value is not None and value not in SOURCE_DIALECTS:
            raise ValueError(f"dialect {value!r} is not one of {', '.join(SOURCE_DIALECTS)}")
        return value

    @model_validator(mode="after")
    def _kind_rules(self) -> ModelConfig:
        if self.kind is ModelKind.STATE:
            if not self.values:
                raise ValueError("a state model declares its allowed values: values: [a, b, c]")
            if len(set(self.values)) != len(self.values):
                raise ValueError("values: each allowed state once")
        elif self.values:
            raise ValueError(f"values: only state models declare values (this one is {self.kind.value})")
        if self.unique_key is not None and self.kind is not ModelKind.TABLE:
            raise ValueError(f"unique_key: {self.kind.value} models are unique by {PROFILE_COLUMN} already")
        if self.incremental is not None and self.kind is ModelKind.AUDIENCE:
            raise ValueError("incremental: an audience is rebuilt whole (its membership is diffed)")
        return self

    @property
    def key_columns(self) -> list[str]:
        """The columns that identify a row (checked unique after each build); empty: no check."""
        if self.kind is ModelKind.TABLE:
            return list(self.unique_key or [])
        return [PROFILE_COLUMN]

    @property
    def refresh(self) -> Schedule | None:
        return Schedule.parse(self.schedule) if self.schedule else None


class ModelsConfig(BaseModel):
    """The `models:` section of orchestrion.yml."""

    model_config = ConfigDict(extra="forbid")

    dialect: str = Field(default="duckdb", description="SQL dialect models/*.sql are written in")
    scheduler: bool = Field(default=True, description="refresh scheduled models inside `orchestrion serve`")
    tick: dt.timedelta = Field(
        default=dt.timedelta(seconds=15), description="how often the scheduler looks for due models"
    )

    _tick = field_validator("tick", mode="before")(_duration)

    @field_validator("tick")
    @classmethod
    def _tick_range(cls, value: dt.timedelta) -> dt.timedelta:
        if not dt.timedelta(seconds=1) <= value <= dt.timedelta(hours=1):
            raise ValueError("tick must be between 1s and 1h")
        return value

    @field_validator("dialect")
    @classmethod
    def _dialect(cls, value: str) -> str:
        if value not in SOURCE_DIALECTS:
            raise ValueError(f"dialect {value!r} is not one of {', '.join(SOURCE_DIALECTS)}")
        return value
