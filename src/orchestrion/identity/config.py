"""Settings of identity resolution: the `identity:` section of `orchestrion.yml`.

Defaults follow Segment Unify: `user_id` has priority 1 and a limit of one per profile, `email` priority 2,
every other type ranks after them alphabetically with a limit of five. `IdentityConfig.policy()` compiles the
settings into an `IdentityPolicy`, the fast, immutable form the pure resolution code reads.

Example::

    identity:
      identifiers:
        phone: {enabled: false}          # this workspace does not stitch on phone numbers
        crm_id: {priority: 3, limit: 1}  # a custom type from context.externalIds
      blocked_values: ["guest", "test@example.com"]
      blocked_patterns: ["^[0-]*$", "^unknown"]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TYPE_NAME: Final = r"^[a-z][a-z0-9_]{0,62}$"
_TYPE_NAME = re.compile(TYPE_NAME)

# The values that SDKs and buggy apps send in place of a missing id (`String(null)`, `-1` sentinels,
# a literal "anonymous"); linking on them would merge every visitor who sent one into one profile.
BUILTIN_BLOCKED_VALUES: Final = ("", "null", "undefined", "0", "-1", "anonymous", "none", "nan")


class IdentifierTypeConfig(BaseModel):
    """How one identifier type takes part in stitching."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        default=True, description="false: values of this type are ignored (never stored, never linked)"
    )
    priority: int | None = Field(
        default=None,
        ge=1,
        description=(
            "1 is the strongest. When a link would break a limit, the lowest-priority identifier of that link is "
            "dropped first. Types without a priority rank after those with one, alphabetically."
        ),
    )
    limit: int = Field(default=5, ge=1, le=1000, description="most distinct values of this type on one profile")
    blocked_values: list[str] = Field(
        default_factory=list, description="more values refused for this type only (case-insensitive, trimmed)"
    )


def _default_identifiers() -> dict[str, IdentifierTypeConfig]:
    return {
        "user_id": IdentifierTypeConfig(priority=1, limit=1),
        "email": IdentifierTypeConfig(priority=2, limit=5),
        "anonymous_id": IdentifierTypeConfig(limit=5),
        "device_id": IdentifierTypeConfig(limit=5),
        "phone": IdentifierTypeConfig(limit=5),
    }


class IdentityConfig(BaseModel):
    """The `identity:` section of `orchestrion.yml`."""

    model_config = ConfigDict(extra="forbid")

    identifiers: dict[str, IdentifierTypeConfig] = Field(
        default_factory=_default_identifiers,
        description=(
            "settings per identifier type. Entries given here are merged over the defaults (user_id, email, "
            "anonymous_id, device_id, phone), so `phone: {enabled: false}` only switches phone off."
        ),
    )
    custom_identifiers: bool = Field(
        default=True,
        description="accept `context.externalIds` types not listed in `identifiers` (with `custom_limit`)",
    )
    custom_limit: int = Field(default=5, ge=1, le=1000, description="limit of unlisted custom types")
    blocked_values: list[str] = Field(
        default_factory=list,
        description="values refused for every type, on top of the built-in ones (case-insensitive, trimmed)",
    )
    builtin_blocked_values: bool = Field(
        default=True,
        description=f"refuse the built-in placeholder values {list(BUILTIN_BLOCKED_VALUES)}",
    )
    blocked_patterns: list[str] = Field(
        default_factory=lambda: [r"^[0-]*$"],
        description=(
            "regular expressions searched (re.search, case-insensitive) in each trimmed value; anchor them with "
            "^...$. The default refuses all-zero ids such as the zeroed advertising id 00000000-0000-..."
        ),
    )
    alias_overrides_limits: bool = Field(
        default=True,
        description=(
            "an alias(previousId, userId) call is an explicit statement that two ids are one person, so its "
            "merge ignores per-type limits (two user_ids end up on one profile). Admin unmerges still win."
        ),
    )
    max_identifiers_per_profile: int = Field(
        default=1000, ge=1, description="further identifiers are refused (Segment's hard limit is 1000)"
    )
    max_value_length: int = Field(default=512, ge=1, description="longer identifier values are refused as invalid")

    @field_validator("identifiers", mode="before")
    @classmethod
    def _over_defaults(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        merged: dict[str, object] = {name: item.model_dump() for name, item in _default_identifiers().items()}
        for name, settings in value.items():
            base = merged.get(name)
            if isinstance(base, dict) and isinstance(settings, dict):
                merged[name] = {**base, **settings}
            else:
                merged[name] = settings
        return merged

    @field_validator("identifiers")
    @classmethod
    def _valid_names(cls, value: dict[str, IdentifierTypeConfig]) -> dict[str, IdentifierTypeConfig]:
        for name in value:
            if not _TYPE_NAME.match(name):
                raise ValueError(
                    f"identifier type {name!r} must be lower case letters, digits and _ (e.g. crm_id), "
                    "starting with a letter"
                )
        return value

    @field_validator("blocked_patterns")
    @classmethod
    def _compilable(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"blocked pattern {pattern!r} is not a regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _distinct_priorities(self) -> IdentityConfig:
        seen: dict[int, str] = {}
        for name, settings in sorted(self.identifiers.items()):
            if settings.priority is None:
                continue
            if settings.priority in seen:
                raise ValueError(
                    f"identifier types {seen[settings.priority]!r} and {name!r} both have priority "
                    f"{settings.priority}; give each its own"
                )
            seen[settings.priority] = name
        return self

    def policy(self) -> IdentityPolicy:
        """The compiled, immutable form of these settings."""
        return IdentityPolicy.from_config(self)


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    """What the pure resolution code needs, precomputed: which types count, their rank, limits, blocked values."""

    configured: dict[str, IdentifierTypeConfig]
    blocked_by_type: dict[str, frozenset[str]]
    custom_identifiers: bool
    custom_limit: int
    blocked_everywhere: frozenset[str]
    blocked_patterns: tuple[re.Pattern[str], ...]
    alias_overrides_limits: bool
    max_identifiers_per_profile: int
    max_value_length: int

    @classmethod
    def from_config(cls, config: IdentityConfig) -> IdentityPolicy:
        blocked = {value.strip().casefold() for value in config.blocked_values}
        if config.builtin_blocked_values:
            blocked.update(BUILTIN_BLOCKED_VALUES)
        return cls(
            configured=dict(config.identifiers),
            blocked_by_type={
                name: frozenset(v.strip().casefold() for v in settings.blocked_values)
                for name, settings in config.identifiers.items()
                if settings.blocked_values
            },
            custom_identifiers=config.custom_identifiers,
            custom_limit=config.custom_limit,
            blocked_everywhere=frozenset(blocked),
            blocked_patterns=tuple(re.compile(p, re.IGNORECASE) for p in config.blocked_patterns),
            alias_overrides_limits=config.alias_overrides_limits,
            max_identifiers_per_profile=config.max_identifiers_per_profile,
            max_value_length=config.max_value_length,
        )

    @classmethod
    def default(cls) -> IdentityPolicy:
        return IdentityConfig().policy()

    def counts(self, identifier_type: str) -> bool:
        """Whether values of this type are used at all."""
        settings = self.configured.get(identifier_type)
        if settings is None:
            return self.custom_identifiers
        return settings.enabled

    def limit(self, identifier_type: str) -> int:
        settings = self.configured.get(identifier_type)
        return self.custom_limit if settings is None else settings.limit

    def rank(self, identifier_type: str) -> tuple[int, str]:
        """Sort key, strongest first: explicit priorities, then the other types alphabetically."""
        settings = self.configured.get(identifier_type)
        if settings is not None and settings.priority is not None:
            return (settings.priority, identifier_type)
        return (1_000_000, identifier_type)

    def is_blocked(self, identifier_type: str, value: str) -> bool:
        """Whether a (normalized) value is a placeholder that must never link anything."""
        folded = value.strip().casefold()
        if folded in self.blocked_everywhere:
            return True
        per_type = self.blocked_by_type.get(identifier_type)
        if per_type is not None and folded in per_type:
            return True
        return any(pattern.search(folded) for pattern in self.blocked_patterns)
