"""Settings of consent: the `consent:` section of `orchestrion.yml`.

Consent is kept per channel × purpose (`email` × `marketing`, `sms` × `transactional`, ...). This section names the
channels and purposes, says which event inputs count as a consent statement, and what holds for a profile that has
never said anything (the defaults, which may depend on the profile's country).

Example::

    consent:
      channels: [whatsapp]                      # added to email, sms, push, in_app
      purposes: [product_updates]               # added to marketing, transactional
      trait_mapping:                            # merged over the built-in mapping; `name: null` removes an entry
        newsletter: {channel: email, purpose: product_updates}
        sms_opt_in: null
      category_mapping:                         # Segment categoryPreferences / RudderStack consent ids
        Advertising: [{channel: "*", purpose: marketing}]
      defaults:
        purposes: {marketing: true, transactional: true}
        regions:
          - {name: eu_email, countries: [EU], channel: email, purpose: marketing, granted: false}
          - {name: sms_everywhere, countries: ["*"], channel: sms, purpose: marketing, granted: false}
"""

from __future__ import annotations

import re
from typing import Final, Literal

import pytz
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

WILDCARD: Final = "*"
DEFAULT_CHANNELS: Final = ("email", "sms", "push", "in_app")
DEFAULT_PURPOSES: Final = ("marketing", "transactional")

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

# ISO 3166-1 alpha-2 codes, as shipped with the tz database (pytz is a dependency already).
ISO_COUNTRIES: Final = frozenset(code.upper() for code in pytz.country_names)
# fmt: off
EU_COUNTRIES: Final = frozenset({
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
    "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
})
# fmt: on
EEA_COUNTRIES: Final = EU_COUNTRIES | {"IS", "LI", "NO"}
COUNTRY_GROUPS: Final = {"EU": EU_COUNTRIES, "EEA": EEA_COUNTRIES}

# Values a profile's country often carries instead of its code (GeoIP names, common abbreviations).
_COUNTRY_ALIASES: Final = {
    "UK": "GB",
    "UNITED KINGDOM": "GB",
    "GREAT BRITAIN": "GB",
    "USA": "US",
    "UNITED STATES OF AMERICA": "US",
    "CZECHIA": "CZ",
    "SOUTH KOREA": "KR",
}
_COUNTRY_BY_NAME: Final = {name.upper(): code.upper() for code, name in pytz.country_names.items()}


def country_code(value: object) -> str | None:
    """The ISO 3166-1 alpha-2 code of a profile's country, or None when it is missing or not recognized.

    Accepts a code in any case (`de`, ` DE `), an English name as the tz database spells it (`Germany`,
    `United States`) and a few common aliases (`UK`, `USA`, `Czechia`). Anything else is unknown, and an unknown
    country gets the global defaults.
    """
    if not isinstance(value, str):
        return None
    text = " ".join(value.split()).upper()
    if text in ISO_COUNTRIES:
        return text
    return _COUNTRY_ALIASES.get(text) or _COUNTRY_BY_NAME.get(text)


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            f"{kind} {name!r} must be lower case letters, digits and _ (e.g. in_app), starting with a letter"
        )
    return name


class ConsentTarget(BaseModel):
    """One channel × purpose cell an input speaks for; `"*"` stands for every configured channel (or purpose)."""

    model_config = ConfigDict(extra="forbid")

    channel: str = Field(description='a configured channel, or "*" for all of them')
    purpose: str = Field(description='a configured purpose, or "*" for all of them')


class TraitRule(ConsentTarget):
    """How one identify trait reads as consent."""

    invert: bool = Field(
        default=False,
        description="the trait says the opposite of consent (e.g. `unsubscribed: true` means denied)",
    )
    only: Literal["opt_in", "opt_out"] | None = Field(
        default=None,
        description=(
            "record only grants (opt_in) or only denials (opt_out) from this trait. `unsubscribed: false` is the "
            "absence of an unsubscription, not an opt-in to every channel, so the built-in rule is opt_out only."
        ),
    )


class RegionRule(BaseModel):
    """A default that holds for profiles in some countries until they say otherwise."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None,
        description="shown as `region:<name>` in consent states and decision traces; default `regions[<index>]`",
    )
    countries: list[str] = Field(
        min_length=1,
        description=(
            'ISO 3166-1 alpha-2 codes (case-insensitive), the groups "EU" and "EEA", or "*" for every profile '
            "(a country-less one too)"
        ),
    )
    channel: str = Field(default=WILDCARD, description='a configured channel, or "*"')
    purpose: str = Field(default="marketing", description='a configured purpose, or "*"')
    granted: bool = Field(default=False, description="the default consent in these countries")
    _codes: frozenset[str] = PrivateAttr(default=frozenset())
    _everywhere: bool = PrivateAttr(default=False)

    @field_validator("countries")
    @classmethod
    def _known_countries(cls, value: list[str]) -> list[str]:
        for entry in value:
            text = entry.strip().upper()
            if text != WILDCARD and text not in COUNTRY_GROUPS and text not in ISO_COUNTRIES:
                hint = f" (use {_COUNTRY_ALIASES[text]})" if text in _COUNTRY_ALIASES else ""
                raise ValueError(
                    f"country {entry!r} is not an ISO 3166-1 alpha-2 code{hint}; use codes like DE or FR, "
                    'the groups "EU" or "EEA", or "*"'
                )
        return value

    @model_validator(mode="after")
    def _expand(self) -> RegionRule:
        codes: set[str] = set()
        for entry in self.countries:
            text = entry.strip().upper()
            if text == WILDCARD:
                self._everywhere = True
            else:
                codes |= COUNTRY_GROUPS.get(text, {text})
        self._codes = frozenset(codes)
        return self

    def applies_to(self, country: str | None) -> bool:
        """Whether the rule covers a profile of this (normalized, see `country_code`) country."""
        return self._everywhere or (country is not None and country in self._codes)

    def covers(self, channel: str, purpose: str) -> bool:
        return self.channel in (WILDCARD, channel) and self.purpose in (WILDCARD, purpose)


def _default_trait_mapping() -> dict[str, TraitRule]:
    return {
        "marketing_opt_in": TraitRule(channel="email", purpose="marketing"),
        "sms_opt_in": TraitRule(channel="sms", purpose="marketing"),
        "unsubscribed": TraitRule(channel=WILDCARD, purpose="marketing", invert=True, only="opt_out"),
    }


def _default_purposes() -> dict[str, bool]:
    return {"marketing": True, "transactional": True}


class ConsentDefaults(BaseModel):
    """What holds for a channel × purpose no input has spoken about yet."""

    model_config = ConfigDict(extra="forbid")

    purposes: dict[str, bool] = Field(
        default_factory=_default_purposes,
        description=(
            "the global default per purpose, merged over {marketing: true, transactional: true}; a configured "
            "purpose not listed here defaults to granted"
        ),
    )
    regions: list[RegionRule] = Field(
        default_factory=list,
        description=(
            "country rules over the global default. When several rules cover a profile's cell, the last one in "
            "the list wins, so a narrow exception can follow a broad rule."
        ),
    )

    @field_validator("purposes", mode="before")
    @classmethod
    def _over_defaults(cls, value: object) -> object:
        return {**_default_purposes(), **value} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _name_rules(self) -> ConsentDefaults:
        seen: set[str] = set()
        for index, rule in enumerate(self.regions):
            if rule.name is None:
                rule.name = f"regions[{index}]"
            if rule.name in seen:
                raise ValueError(f"two region rules are named {rule.name!r}; give each its own name")
            seen.add(rule.name)
        return self


class ConsentConfig(BaseModel):
    """The `consent:` section of `orchestrion.yml`."""

    model_config = ConfigDict(extra="forbid")

    channels: list[str] = Field(
        default_factory=list,
        description=f"channels besides the built-in {list(DEFAULT_CHANNELS)}; `all_channels` lists both",
    )
    purposes: list[str] = Field(
        default_factory=list,
        description=f"purposes besides the built-in {list(DEFAULT_PURPOSES)}; `all_purposes` lists both",
    )
    trait_mapping: dict[str, TraitRule] = Field(
        default_factory=_default_trait_mapping,
        description=(
            "identify traits (see trait_events) read as consent, by exact trait name. Merged over the built-in "
            "mapping (marketing_opt_in → email marketing, sms_opt_in → sms marketing, unsubscribed → every "
            "channel's marketing, inverted, opt-out only); `name: null` removes a built-in entry. Accepted values: "
            "booleans and the words of `consent.TRUE_WORDS` / `consent.FALSE_WORDS`; others are ignored (not recorded)."
        ),
    )
    trait_events: Literal["identify", "all"] = Field(
        default="identify",
        description=(
            "which calls' traits are read through trait_mapping. `identify` (default): the `traits` and "
            "`context.traits` of identify calls only. `all`: also `context.traits` of track/page/screen calls, which "
            "client SDKs (RudderStack's JavaScript SDK on every call) fill from their cache of earlier traits, so a "
            "stale cached opt-in could undo a newer opt-out made elsewhere (preference center, unsubscribe link)."
        ),
    )
    category_mapping: dict[str, list[ConsentTarget]] = Field(
        default_factory=dict,
        description=(
            "consent categories (exact, case-sensitive ids) → the cells each governs. Read from Segment's "
            "`context.consent.categoryPreferences` ({category: true|false}) and RudderStack's "
            "`context.consentManagement` (allowedConsentIds / deniedConsentIds). Unmapped categories (Analytics, "
            "Functional...) are about data collection, not messaging, and are ignored."
        ),
    )
    defaults: ConsentDefaults = Field(default_factory=ConsentDefaults)

    @field_validator("channels", "purposes")
    @classmethod
    def _valid_names(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_name("channel or purpose", name)
        return value

    @field_validator("trait_mapping", mode="before")
    @classmethod
    def _merge_traits(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        merged: dict[str, object] = {name: rule.model_dump() for name, rule in _default_trait_mapping().items()}
        for name, rule in value.items():
            if rule is None:
                merged.pop(name, None)
            else:
                merged[name] = rule
        return merged

    @model_validator(mode="after")
    def _known_cells(self) -> ConsentConfig:
        channels, purposes = set(self.all_channels), set(self.all_purposes)

        def check(where: str, channel: str, purpose: str) -> None:
            if channel != WILDCARD and channel not in channels:
                raise ValueError(f"{where}: channel {channel!r} is not configured; known: {sorted(channels)} or '*'")
            if purpose != WILDCARD and purpose not in purposes:
                raise ValueError(f"{where}: purpose {purpose!r} is not configured; known: {sorted(purposes)} or '*'")

        for trait, rule in self.trait_mapping.items():
            check(f"trait_mapping.{trait}", rule.channel, rule.purpose)
        for category, targets in self.category_mapping.items():
            for index, target in enumerate(targets):
                check(f"category_mapping.{category}[{index}]", target.channel, target.purpose)
        for region in self.defaults.regions:
            check(f"defaults.regions {region.name}", region.channel, region.purpose)
        for purpose in self.defaults.purposes:
            if purpose not in purposes:
                raise ValueError(f"defaults.purposes: purpose {purpose!r} is not configured; known: {sorted(purposes)}")
        return self

    @property
    def all_channels(self) -> tuple[str, ...]:
        """The built-in channels then the configured ones, without repeats."""
        return tuple(dict.fromkeys((*DEFAULT_CHANNELS, *self.channels)))

    @property
    def all_purposes(self) -> tuple[str, ...]:
        """The built-in purposes then the configured ones, without repeats."""
        return tuple(dict.fromkeys((*DEFAULT_PURPOSES, *self.purposes)))

    def expand(self, channel: str, purpose: str) -> list[tuple[str, str]]:
        """The concrete cells a (possibly wildcard) channel × purpose stands for."""
        channels = self.all_channels if channel == WILDCARD else (channel,)
        purposes = self.all_purposes if purpose == WILDCARD else (purpose,)
        return [(c, p) for c in channels for p in purposes]

    def default_for(self, channel: str, purpose: str, country: str | None) -> tuple[bool, str]:
        """The consent of a cell nobody has spoken about: (granted, basis) with basis `region:<name>` or `default`.

        `country` must be normalized already (see `country_code`).
        """
        for rule in reversed(self.defaults.regions):
            if rule.covers(channel, purpose) and rule.applies_to(country):
                return rule.granted, f"region:{rule.name}"
        return self.defaults.purposes.get(purpose, True), "default"
