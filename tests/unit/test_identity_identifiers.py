"""Which identifiers an event carries, how they are normalized, and the `identity:` settings that govern them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from orchestrion.identity.config import IdentityConfig, IdentityPolicy
from orchestrion.identity.identifiers import BLOCKED, INVALID, Rejection, link_of
from orchestrion.identity.links import Alias, Identifier
from tests.unit.test_identity_graph import make_event

POLICY = IdentityPolicy.default()


def identifiers(event_policy: IdentityPolicy = POLICY, **kwargs: Any) -> list[str]:
    extraction = link_of(make_event("m1", 0, **kwargs), event_policy)
    return [] if extraction.link is None else [str(i) for i in extraction.link.identifiers]


def test_every_identifier_of_a_segment_event_is_taken_and_normalized() -> None:
    found = identifiers(
        type="identify",
        user_id="u-42",
        anonymous_id="anon-7",
        traits={"email": "  Ann.Lee@Example.COM ", "phone": "+1 (555) 010-2030"},
        context={
            "traits": {"email": "ann@work.example"},
            "device": {"id": "C0FFEE-1"},
            "externalIds": [
                {"id": "CRM-9", "type": "crm_id", "collection": "users", "encoding": "none"},
                {"id": "acct-1", "type": "salesforce_account", "collection": "accounts"},
                {"id": "GA1.2.3", "type": "ga Client-ID"},
            ],
        },
    )
    assert found == [
        "anonymous_id:anon-7",
        "crm_id:CRM-9",
        "device_id:C0FFEE-1",
        "email:ann.lee@example.com",
        "email:ann@work.example",
        "ga_client_id:GA1.2.3",
        "phone:+15550102030",
        "user_id:u-42",
    ]


def test_numbers_are_ids_but_other_types_are_refused() -> None:
    numeric_user_id: Any = 12345
    extraction = link_of(make_event("m1", 0, user_id=numeric_user_id, context={"device": {"id": ["x"]}}), POLICY)
    assert extraction.link is not None
    assert [str(i) for i in extraction.link.identifiers] == ["user_id:12345"]
    assert extraction.rejected == (Rejection(Identifier("device_id", "['x']"), INVALID),)


def test_group_traits_describe_the_account_and_are_not_read() -> None:
    found = identifiers(type="group", user_id="u1", traits={"email": "billing@company.example"})
    assert found == ["user_id:u1"]


def test_malformed_email_and_short_phone_are_invalid_not_linked() -> None:
    extraction = link_of(
        make_event("m1", 0, anonymous_id="a", context={"traits": {"email": "not an email", "phone": "12"}}), POLICY
    )
    assert extraction.link is not None and [str(i) for i in extraction.link.identifiers] == ["anonymous_id:a"]
    assert {(r.identifier.type, r.reason) for r in extraction.rejected} == {("email", INVALID), ("phone", INVALID)}


@pytest.mark.parametrize("placeholder", ["null", " NULL ", "", "undefined", "0", "-1", "Anonymous", "000-000", "None"])
def test_placeholders_are_blocked_case_insensitively(placeholder: str) -> None:
    extraction = link_of(make_event("m1", 0, user_id="u1", anonymous_id=placeholder), POLICY)
    assert extraction.link is not None and [str(i) for i in extraction.link.identifiers] == ["user_id:u1"]
    assert [r.reason for r in extraction.rejected] == [BLOCKED]


def test_configured_blocked_values_and_patterns() -> None:
    policy = IdentityConfig.model_validate(
        {
            "blocked_values": ["Guest"],
            "blocked_patterns": [r"^test-"],
            "identifiers": {"email": {"blocked_values": ["noreply@shop.example"]}},
        }
    ).policy()
    assert policy.is_blocked("anonymous_id", " guest ")
    assert policy.is_blocked("user_id", "TEST-123")
    assert policy.is_blocked("email", "NoReply@shop.example")
    assert not policy.is_blocked("user_id", "noreply@shop.example")  # that list is for emails only
    assert not policy.is_blocked("user_id", "000")  # the default pattern was replaced ...
    assert policy.is_blocked("user_id", "0")  # ... the built-in values stay
    assert not IdentityConfig(builtin_blocked_values=False, blocked_patterns=[]).policy().is_blocked("user_id", "0")


def test_a_workspace_may_switch_a_type_off_or_refuse_custom_ids() -> None:
    policy = IdentityConfig.model_validate(
        {"identifiers": {"phone": {"enabled": False}}, "custom_identifiers": False}
    ).policy()
    found = identifiers(
        policy,
        user_id="u1",
        context={"traits": {"phone": "+44 20 7946 0000"}, "externalIds": [{"id": "c1", "type": "crm_id"}]},
    )
    assert found == ["user_id:u1"]


def test_alias_previous_id_is_typed_by_what_it_can_be() -> None:
    link = link_of(make_event("m1", 0, "alias", user_id="new", previous_id="old"), POLICY).link
    assert link is not None
    assert link.alias == Alias(
        Identifier("user_id", "new"), (Identifier("user_id", "old"), Identifier("anonymous_id", "old"))
    )
    # the event's own anonymous id can only be an anonymous id
    link = link_of(make_event("m2", 0, "alias", user_id="new", anonymous_id="anon", previous_id="anon"), POLICY).link
    assert link is not None and link.alias == Alias(Identifier("user_id", "new"), (Identifier("anonymous_id", "anon"),))
    # a placeholder previousId links nothing
    blocked = link_of(make_event("m3", 0, "alias", user_id="new", previous_id="null"), POLICY)
    assert blocked.link is not None and blocked.link.alias is None
    assert {r.reason for r in blocked.rejected} == {BLOCKED}


def test_identifier_text_form_round_trips() -> None:
    assert Identifier.parse("email:a@b.c") == Identifier("email", "a@b.c")
    assert Identifier.parse("crm_id:x:y") == Identifier("crm_id", "x:y")
    assert str(Identifier("user_id", "u1")) == "user_id:u1"
    for bad in ("u1", "user_id:", "User Id:u1"):
        with pytest.raises(ValueError, match="must be type:value"):
            Identifier.parse(bad)


def test_defaults_follow_segment_unify() -> None:
    policy = IdentityConfig.model_validate({"identifiers": {"crm_id": {"limit": 1}}}).policy()
    types = ["phone", "device_id", "crm_id", "email", "anonymous_id", "user_id", "zendesk_id"]
    assert sorted(types, key=policy.rank) == [
        "user_id",
        "email",
        "anonymous_id",
        "crm_id",
        "device_id",
        "phone",
        "zendesk_id",
    ]
    assert [policy.limit(t) for t in ("user_id", "email", "anonymous_id", "crm_id", "zendesk_id")] == [1, 5, 5, 1, 5]


def test_settings_merge_over_the_defaults() -> None:
    config = IdentityConfig.model_validate({"identifiers": {"phone": {"enabled": False}}})
    assert config.identifiers["phone"].enabled is False
    assert config.identifiers["phone"].limit == 5
    assert config.identifiers["user_id"].priority == 1 and config.identifiers["user_id"].limit == 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"identifiers": {"email": {"priority": 1}}}, "both have priority 1"),
        ({"identifiers": {"CRM ID": {}}}, "must be lower case letters"),
        ({"blocked_patterns": ["(unclosed"]}, "is not a regular expression"),
        ({"identifiers": {"user_id": {"limit": 0}}}, "greater than or equal to 1"),
        ({"blocked_value": ["x"]}, "Extra inputs are not permitted"),
    ],
)
def test_mistakes_in_settings_are_named(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IdentityConfig.model_validate(settings)
