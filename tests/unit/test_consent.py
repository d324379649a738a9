"""Consent per channel × purpose: inputs → changes, the state as of any instant, and the contact check.

Properties (hypothesis): the state does not depend on the order of the changes; a change after `at` never affects
the state at `at`; repeating changes changes nothing; without changes the state is the (region-aware) default.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrion.identity.consent import (
    ConsentChange,
    ConsentInputError,
    changes_from_delivery,
    changes_from_event,
    changes_from_preferences,
    may_contact,
    ordered,
    read_event,
    state_at,
)
from orchestrion.identity.consent_config import ConsentConfig, country_code
from orchestrion.identity.links import Provenance

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
# Written out here rather than imported, so a wrong list in the code shows up as a failing test.
# fmt: off
EU_MEMBERS = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
    "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
]
# fmt: on
NOT_EU = ["GB", "CH", "NO", "IS", "LI", "US", "TR", "BR"]

CONFIG = ConsentConfig.model_validate(
    {
        "channels": ["whatsapp"],
        "purposes": ["product_updates"],
        "category_mapping": {
            "Email": [{"channel": "email", "purpose": "marketing"}],
            "Advertising": [{"channel": "*", "purpose": "marketing"}],
        },
        "defaults": {
            "regions": [
                {"name": "eu_email", "countries": ["EU"], "channel": "email", "purpose": "marketing", "granted": False}
            ]
        },
    }
)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def stamp(message_id: str, minutes: float, source: str = "web") -> Provenance:
    return Provenance(at(minutes), message_id, source)


def identify(traits: dict[str, Any], context: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "identify", "userId": "u1", "traits": traits, "context": context or {}}


def track(**context: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Page Viewed", "userId": "u1", "context": context}


def cell(channel: str, purpose: str, granted: bool, message_id: str, minutes: float) -> ConsentChange:
    return ConsentChange(channel, purpose, granted, "trait:test", stamp(message_id, minutes))


# --- defaults and regions -----------------------------------------------------------------------------------------


def test_an_eu_profile_without_opt_in_may_not_get_marketing_email() -> None:
    state = state_at([], at(0), "de", CONFIG)
    assert state.country == "DE"
    email = state.decision("email", "marketing")
    assert email is not None and email.basis == "region:eu_email" and not email.granted
    assert may_contact(state, "email", "marketing") == (False, "consent:email:marketing:opt_in_required")
    # the rule names email only: other channels and transactional email keep the global defaults
    assert may_contact(state, "sms", "marketing") == (True, "consent:sms:marketing:granted_by_default")
    assert may_contact(state, "email", "transactional") == (True, "consent:email:transactional:granted_by_default")


@pytest.mark.parametrize("country", ["US", "Atlantis", None, "", 49, "EU"])
def test_a_profile_outside_the_region_or_of_unknown_country_gets_the_global_default(country: object) -> None:
    state = state_at([], at(0), country, CONFIG)
    assert may_contact(state, "email", "marketing") == (True, "consent:email:marketing:granted_by_default")


def test_the_eu_shortcut_covers_exactly_the_member_states() -> None:
    for code in EU_MEMBERS:
        assert not state_at([], None, code, CONFIG).decisions["email", "marketing"].granted, code
    for code in NOT_EU:
        assert state_at([], None, code, CONFIG).decisions["email", "marketing"].granted, code


@pytest.mark.parametrize(
    ("stored", "code"),
    [(" fr ", "FR"), ("Germany", "DE"), ("czechia", "CZ"), ("UK", "GB"), ("United Kingdom", "GB"), ("Nowhere", None)],
)
def test_a_country_is_read_from_codes_and_common_names(stored: str, code: str | None) -> None:
    assert country_code(stored) == code


def test_the_last_matching_region_rule_wins_and_star_covers_every_profile() -> None:
    config = ConsentConfig.model_validate(
        {
            "defaults": {
                "purposes": {"marketing": False},
                "regions": [
                    {"name": "sms_everywhere", "countries": ["*"], "channel": "sms", "granted": False},
                    {"name": "eea_marketing", "countries": ["EEA"], "granted": False},
                    {"name": "norway_push", "countries": ["no"], "channel": "push", "granted": True},
                ],
            }
        }
    )
    norway = state_at([], None, "NO", config)
    assert may_contact(norway, "push", "marketing") == (True, "consent:push:marketing:granted_by_default")
    assert norway.decisions["push", "marketing"].basis == "region:norway_push"
    assert norway.decisions["email", "marketing"].basis == "region:eea_marketing"
    nowhere = state_at([], None, None, config)
    assert nowhere.decisions["sms", "marketing"].basis == "region:sms_everywhere"
    assert nowhere.decisions["email", "marketing"].basis == "default"
    assert not nowhere.decisions["email", "marketing"].granted  # global purpose default: marketing off
    assert nowhere.decisions["email", "transactional"].granted


# --- inputs from events --------------------------------------------------------------------------------------------


def test_an_opt_in_trait_grants_marketing_email_even_in_the_eu() -> None:
    changes = changes_from_event(identify({"marketing_opt_in": True}), stamp("m1", 0), CONFIG)
    assert [(c.channel, c.purpose, c.granted, c.input) for c in changes] == [
        ("email", "marketing", True, "trait:marketing_opt_in")
    ]
    state = state_at(changes, at(5), "DE", CONFIG)
    assert may_contact(state, "email", "marketing") == (True, "consent:email:marketing:granted")
    assert state.decisions["email", "marketing"].change == changes[0]
    # before the opt-in the region rule still held: the audit question
    assert may_contact(state_at(changes, at(-1), "DE", CONFIG), "email", "marketing")[0] is False


def test_a_later_opt_out_through_category_preferences_wins() -> None:
    opt_in = changes_from_event(identify({"marketing_opt_in": "yes"}), stamp("m1", 0), CONFIG)
    opt_out = changes_from_event(
        track(consent={"categoryPreferences": {"Email": False, "Analytics": True}}), stamp("m2", 10), CONFIG
    )
    assert [(c.channel, c.input, c.granted) for c in opt_out] == [("email", "consent_object:Email", False)]
    changes = opt_in + opt_out
    assert may_contact(state_at(changes, at(20), "US", CONFIG), "email", "marketing") == (
        False,
        "consent:email:marketing:denied",
    )
    assert may_contact(state_at(changes, at(5), "US", CONFIG), "email", "marketing")[0] is True


def test_a_late_arriving_older_opt_in_does_not_override_a_newer_opt_out() -> None:
    opt_out = changes_from_event(identify({"marketing_opt_in": False}), stamp("new", 30), CONFIG)
    late_opt_in = changes_from_event(identify({"marketing_opt_in": True}), stamp("old", 10, "app"), CONFIG)
    state = state_at(opt_out + late_opt_in, None, "US", CONFIG)  # arrival order: the opt-in came last
    decision = state.decisions["email", "marketing"]
    assert not decision.granted and decision.change is not None and decision.change.provenance.message_id == "new"


def test_unsubscribed_denies_marketing_on_every_channel_but_not_transactional() -> None:
    changes = changes_from_event(identify({}, {"traits": {"unsubscribed": " YES "}}), stamp("u1", 0), CONFIG)
    assert sorted(c.channel for c in changes) == ["email", "in_app", "push", "sms", "whatsapp"]
    state = state_at(changes, None, "FR", CONFIG)
    for channel in CONFIG.all_channels:
        assert may_contact(state, channel, "marketing") == (False, f"consent:{channel}:marketing:denied")
        assert may_contact(state, channel, "transactional")[0] is True


def test_unsubscribed_false_is_not_an_opt_in_to_every_channel() -> None:
    assert changes_from_event(identify({"unsubscribed": False}), stamp("u1", 0), CONFIG) == []


def test_top_level_identify_traits_win_over_context_traits_and_group_traits_are_not_read() -> None:
    payload = identify({"sms_opt_in": "Opted-In"}, {"traits": {"sms_opt_in": "opted_out"}})
    assert [c.granted for c in changes_from_event(payload, stamp("i1", 0), CONFIG)] == [True]
    group = {"type": "group", "groupId": "g1", "traits": {"marketing_opt_in": True}}
    assert changes_from_event(group, stamp("g1", 0), CONFIG) == []


def test_context_traits_of_other_calls_are_a_cache_echo_and_read_only_when_configured() -> None:
    # RudderStack's JavaScript SDK stamps its cached traits on every call: an old opt-in must not undo a newer opt-out
    opt_out = changes_from_preferences({"email": {"marketing": False}}, "admin", at(0), CONFIG)
    echo = track(traits={"marketing_opt_in": True})
    assert changes_from_event(echo, stamp("t1", 5), CONFIG) == []
    assert not state_at(opt_out, None, None, CONFIG).decisions["email", "marketing"].granted
    every_call = CONFIG.model_copy(update={"trait_events": "all"})
    [change] = changes_from_event(echo, stamp("t1", 5), every_call)
    assert (change.channel, change.granted, change.input) == ("email", True, "trait:marketing_opt_in")
    group = {"type": "group", "groupId": "g1", "traits": {"marketing_opt_in": True}}
    assert changes_from_event(group, stamp("g1", 0), every_call) == []


def test_values_that_are_not_consent_are_ignored_and_reported() -> None:
    payload = identify(
        {"marketing_opt_in": "maybe", "sms_opt_in": 1}, {"consent": {"categoryPreferences": {"Email": None}}}
    )
    reading = read_event(payload, stamp("v1", 0), CONFIG)
    assert reading.changes == []
    assert sorted((i.input, i.code) for i in reading.ignored) == [
        ("consent_object:Email", "invalid_value"),
        ("trait:marketing_opt_in", "invalid_value"),
        ("trait:sms_opt_in", "invalid_value"),
    ]
    [maybe] = [i for i in reading.ignored if i.input == "trait:marketing_opt_in"]
    assert "'maybe'" in maybe.message and "opted_in" in maybe.message


def test_unmapped_categories_are_reported_not_applied() -> None:
    reading = read_event(track(consent={"categoryPreferences": {"Analytics": False}}), stamp("c1", 0), CONFIG)
    assert reading.changes == []
    assert [(i.input, i.code) for i in reading.ignored] == [("consent_object:Analytics", "unmapped_category")]


def test_rudderstack_consent_ids_map_like_segment_categories() -> None:
    payload = track(consentManagement={"allowedConsentIds": ["Email"], "deniedConsentIds": ["Advertising"]})
    changes = changes_from_event(payload, stamp("r1", 0), CONFIG)
    state = state_at(changes, None, None, CONFIG)
    # Email grants email marketing, Advertising denies every channel's: in one event the denial wins
    assert may_contact(state, "email", "marketing") == (False, "consent:email:marketing:denied")
    assert may_contact(state, "whatsapp", "marketing") == (False, "consent:whatsapp:marketing:denied")
    assert {c.input for c in changes} == {"consent_object:Email", "consent_object:Advertising"}


def test_one_event_saying_yes_and_no_about_a_cell_means_no() -> None:
    payload = identify({"marketing_opt_in": True, "unsubscribed": True})
    changes = changes_from_event(payload, stamp("x1", 0), CONFIG)
    for arrangement in (changes, list(reversed(changes))):
        decision = state_at(arrangement, None, None, CONFIG).decisions["email", "marketing"]
        assert not decision.granted and decision.change is not None
        assert decision.change.input == "trait:unsubscribed"


def test_events_with_the_same_time_are_ordered_by_message_id() -> None:
    first, second = cell("email", "marketing", False, "m-b", 0), cell("email", "marketing", True, "m-a", 0)
    assert state_at([first, second], None, None, CONFIG).decisions["email", "marketing"].granted is False
    assert ordered([first, second]) == [second, first]


# --- preference center ---------------------------------------------------------------------------------------------


def test_the_preference_center_records_each_cell_with_who_and_when() -> None:
    body = {"email": {"marketing": False}, "sms": {"marketing": True, "transactional": False}}
    changes = changes_from_preferences(body, "admin", at(0), CONFIG)
    assert [(c.channel, c.purpose, c.granted) for c in changes] == [
        ("email", "marketing", False),
        ("sms", "marketing", True),
        ("sms", "transactional", False),
    ]
    assert {(c.input, c.provenance.source, c.provenance.timestamp) for c in changes} == {
        ("preference_center", "admin", at(0))
    }
    # the same request at the same instant records the same id; another request another one
    again = changes_from_preferences(body, "admin", at(0), CONFIG)
    assert again[0].provenance.message_id == changes[0].provenance.message_id
    assert (
        changes_from_preferences(body, "admin", at(1), CONFIG)[0].provenance.message_id
        != again[0].provenance.message_id
    )
    state = state_at(changes, None, None, CONFIG)
    assert may_contact(state, "sms", "transactional") == (False, "consent:sms:transactional:denied")
    assert may_contact(state, "email", "transactional")[0] is True


def test_a_named_preference_beats_a_wildcard_in_the_same_request() -> None:
    wildcard_first = {"*": {"marketing": False}, "email": {"marketing": True}}
    named_first = {"email": {"marketing": True}, "*": {"marketing": False}}
    changes = changes_from_preferences(named_first, "user", at(0), CONFIG, request_id="req-1")
    assert changes == changes_from_preferences(wildcard_first, "user", at(0), CONFIG, request_id="req-1")
    state = state_at(changes, None, None, CONFIG)
    assert may_contact(state, "email", "marketing") == (True, "consent:email:marketing:granted")
    assert may_contact(state, "push", "marketing") == (False, "consent:push:marketing:denied")
    assert state.decisions["push", "marketing"].change is not None
    assert state.decisions["push", "marketing"].change.provenance.message_id == "req-1"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"fax": {"marketing": True}}, "/fax", ["unknown channel", "email", "whatsapp"]),
        ({"email": {"promo": True}}, "/email/promo", ["unknown purpose", "marketing", "product_updates"]),
        ({"email": {"marketing": "no"}}, "/email/marketing", ["true or false", "'no'"]),
        ({"email": {"marketing": 0}}, "/email/marketing", ["true or false"]),
        ({"email": True}, "/email", ["object"]),
        ({}, "", ["names no channel"]),
        ([{"channel": "email"}], "", ["must be an object"]),
    ],
)
def test_preference_center_errors_name_the_field_and_the_allowed_values(
    body: Any, field: str, words: list[str]
) -> None:
    with pytest.raises(ConsentInputError) as caught:
        changes_from_preferences(body, "admin", at(0), CONFIG)
    [problem] = caught.value.problems
    assert problem.field == field
    for word in words:
        assert word in problem.message
    assert (field or "/") in str(caught.value)


def test_preference_center_reports_every_bad_field_at_once_and_records_nothing() -> None:
    body = {"email": {"marketing": "off"}, "fax": {"marketing": True}, "sms": {"marketing": True}}
    with pytest.raises(ConsentInputError) as caught:
        changes_from_preferences(body, "admin", at(0), CONFIG)
    assert sorted(p.field for p in caught.value.problems) == ["/email/marketing", "/fax"]


# --- delivery reports ----------------------------------------------------------------------------------------------


def test_only_an_unsubscribe_from_a_delivery_changes_consent() -> None:
    [change] = changes_from_delivery("unsubscribed", "email", stamp("d1", 0))
    assert (change.channel, change.purpose, change.granted, change.input) == (
        "email",
        "marketing",
        False,
        "delivery:unsubscribed",
    )
    assert changes_from_delivery("hard_bounce", "email", stamp("d2", 0)) == []
    assert changes_from_delivery("complaint", "email", stamp("d3", 0)) == []
    with pytest.raises(ValueError, match="soft_bounce"):
        changes_from_delivery("soft_bounce", "email", stamp("d4", 0))


# --- configuration -------------------------------------------------------------------------------------------------


def test_configured_channels_and_purposes_add_to_the_built_in_ones() -> None:
    assert CONFIG.all_channels == ("email", "sms", "push", "in_app", "whatsapp")
    assert CONFIG.all_purposes == ("marketing", "transactional", "product_updates")
    state = state_at([], None, None, CONFIG)
    assert len(state.decisions) == 15
    assert may_contact(state, "whatsapp", "product_updates") == (
        True,
        "consent:whatsapp:product_updates:granted_by_default",
    )
    assert may_contact(state, "fax", "marketing") == (False, "consent:fax:marketing:not_configured")


def test_trait_mapping_merges_over_the_built_in_one_and_null_removes_an_entry() -> None:
    config = ConsentConfig.model_validate(
        {"trait_mapping": {"sms_opt_in": None, "newsletter": {"channel": "email", "purpose": "marketing"}}}
    )
    assert sorted(config.trait_mapping) == ["marketing_opt_in", "newsletter", "unsubscribed"]
    assert changes_from_event(identify({"sms_opt_in": True}), stamp("t1", 0), config) == []


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ({"trait_mapping": {"x": {"channel": "fax", "purpose": "marketing"}}}, ["trait_mapping.x", "'fax'"]),
        (
            {"category_mapping": {"Ads": [{"channel": "email", "purpose": "promo"}]}},
            ["category_mapping.Ads", "'promo'"],
        ),
        ({"defaults": {"regions": [{"countries": ["UK"]}]}}, ["'UK'", "GB"]),
        ({"defaults": {"regions": [{"countries": ["XX"]}]}}, ["'XX'", "ISO 3166"]),
        ({"channels": ["Fax Machine"]}, ["'Fax Machine'"]),
        ({"defaults": {"purposes": {"promo": False}}}, ["defaults.purposes", "'promo'"]),
        ({"default": {}}, ["default", "Extra inputs"]),
    ],
)
def test_a_wrong_consent_section_is_refused_with_the_field_named(section: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        ConsentConfig.model_validate(section)
    for word in words:
        assert word in str(caught.value)


def test_the_state_reads_as_json_for_the_api() -> None:
    changes = changes_from_event(identify({"marketing_opt_in": True}), stamp("j1", 0), CONFIG)
    document = state_at(changes, at(1), "Germany", CONFIG).as_json()
    assert document["at"] == at(1).isoformat() and document["country"] == "DE"
    assert document["channels"]["email"]["marketing"] == {
        "granted": True,
        "basis": "change",
        "reason": "consent:email:marketing:granted",
        "input": "trait:marketing_opt_in",
        "source": "web",
        "message_id": "j1",
        "timestamp": at(0).isoformat(),
    }
    assert document["channels"]["sms"]["marketing"]["basis"] == "default"


def test_times_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone"):
        state_at([], dt.datetime(2025, 1, 1), None, CONFIG)
    with pytest.raises(ValueError, match="timezone"):
        ConsentChange("email", "marketing", True, "trait:x", Provenance(dt.datetime(2025, 1, 1), "m", "web"))


# --- properties ----------------------------------------------------------------------------------------------------

CHANNELS = ["email", "sms", "whatsapp"]
PURPOSES = ["marketing", "transactional"]
changes_strategy = st.builds(
    ConsentChange,
    channel=st.sampled_from(CHANNELS),
    purpose=st.sampled_from(PURPOSES),
    granted=st.booleans(),
    input=st.sampled_from(["trait:marketing_opt_in", "consent_object:Email", "preference_center"]),
    # few times, ids and sources, so that ties on each part of the order happen
    provenance=st.builds(
        Provenance,
        timestamp=st.integers(0, 6).map(at),
        message_id=st.sampled_from(["m1", "m2", "m3"]),
        source=st.sampled_from(["web", "app"]),
    ),
)
countries = st.one_of(
    st.sampled_from([None, "", "France", "Atlantis", "EU"]),
    st.sampled_from(EU_MEMBERS + NOT_EU).flatmap(lambda code: st.sampled_from([code, code.lower(), f" {code} "])),
)
instants = st.one_of(st.none(), st.integers(-1, 7).map(at))


@settings(max_examples=200, deadline=None)
@given(st.lists(changes_strategy, max_size=25), instants, countries, st.randoms(use_true_random=False))
def test_the_state_does_not_depend_on_the_order_of_the_changes(
    changes: list[ConsentChange], instant: dt.datetime | None, country: str | None, rng: random.Random
) -> None:
    shuffled = list(changes)
    rng.shuffle(shuffled)
    assert state_at(shuffled, instant, country, CONFIG) == state_at(changes, instant, country, CONFIG)
    assert state_at(changes + changes, instant, country, CONFIG) == state_at(changes, instant, country, CONFIG)


@settings(max_examples=200, deadline=None)
@given(st.lists(changes_strategy, max_size=20), st.lists(changes_strategy, min_size=1, max_size=5), countries)
def test_a_change_after_the_instant_never_affects_the_state_then(
    changes: list[ConsentChange], later: list[ConsentChange], country: str | None
) -> None:
    instant = at(3)
    before = [c for c in changes if c.provenance.timestamp <= instant]
    after = [c for c in later if c.provenance.timestamp > instant] or [cell("email", "marketing", True, "m9", 4)]
    expected = state_at(before, instant, country, CONFIG)
    assert state_at(before + after, instant, country, CONFIG) == expected
    assert state_at(changes + after, instant, country, CONFIG) == expected


@settings(max_examples=100, deadline=None)
@given(countries, instants)
def test_without_changes_the_state_is_the_region_aware_default(
    country: str | None, instant: dt.datetime | None
) -> None:
    state = state_at([], instant, country, CONFIG)
    in_eu = country_code(country) in EU_MEMBERS
    for channel in CONFIG.all_channels:
        for purpose in CONFIG.all_purposes:
            decision = state.decisions[channel, purpose]
            denied_by_region = in_eu and (channel, purpose) == ("email", "marketing")
            assert decision.granted is not denied_by_region
            assert decision.basis == ("region:eu_email" if denied_by_region else "default")
            assert decision.change is None


@settings(max_examples=100, deadline=None)
@given(st.lists(changes_strategy, min_size=1, max_size=20), instants)
def test_the_deciding_change_is_the_latest_one_at_the_instant(
    changes: list[ConsentChange], instant: dt.datetime | None
) -> None:
    state = state_at(changes, instant, None, CONFIG)
    for (channel, purpose), decision in state.decisions.items():
        seen = [
            c
            for c in changes
            if (c.channel, c.purpose) == (channel, purpose) and (instant is None or c.provenance.timestamp <= instant)
        ]
        if not seen:
            assert decision.change is None
            continue
        latest = max(c.provenance.timestamp for c in seen)
        assert decision.change is not None and decision.change.provenance.timestamp == latest
        same_moment = [c for c in seen if c.provenance.timestamp == latest]
        assert decision.change.provenance.message_id == max(c.provenance.message_id for c in same_moment)
        assert decision.granted is decision.change.granted
