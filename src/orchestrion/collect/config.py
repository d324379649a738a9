"""Settings of the collection stage: sources, their write keys, limits and contract modes."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrion.durations import parse_duration


class ContractMode(StrEnum):
    """What happens to an event that breaks its tracking plan."""

    ALLOW = "allow"  # store it, annotate context.violations
    OMIT = "omit"  # strip the offending properties, annotate
    BLOCK = "block"  # quarantine it; replayable once the plan is fixed


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]{0,62}$")
    write_key: str = Field(min_length=8)
    rate_limit: float | None = Field(
        default=None, gt=0, description="requests per second; bursts of twice that are allowed"
    )
    contract_mode: ContractMode = ContractMode.ALLOW
    enabled: bool = True


class CollectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_request_bytes: int = Field(default=4_000_000, ge=1024, le=64_000_000)
    max_event_bytes: int = Field(default=32 * 1024, ge=1024)
    max_nesting_depth: int = Field(default=32, ge=4, le=256)
    dedup_window: dt.timedelta = dt.timedelta(days=7)

    @field_validator("dedup_window", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, str | int | float):
            return parse_duration(value)
        return value

    @field_validator("dedup_window")
    @classmethod
    def _at_least_a_day(cls, value: dt.timedelta) -> dt.timedelta:
        if value < dt.timedelta(days=1):
            raise ValueError("dedup_window must be at least 1d: both Python SDKs retry for hours")
        return value
