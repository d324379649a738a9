"""Consent through a real server, on both backends: identify traits, Segment's consent object, the preference
center, regional defaults — and the state as of any past instant, the question an audit asks.

The server's workspace (`PROFILE_WORKSPACE`) maps the consent categories `Advertising` (every channel's marketing)
and `SmsMarketing`, and needs an explicit opt-in for marketing email in the EU.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.e2e.support_profiles import (
    APP_KEY,
    WEB_KEY,
    ProfileApi,
    at,
    identify,
    iso,
    ref,
    tag,
    track,
)

BERLIN = {"location": {"country": "DE"}}
BOSTON = {"location": {"country": "US"}}


@pytest.fixture
def api(profile_api: ProfileApi) -> ProfileApi:
    """The server of this backend, shared with the other profile modules (see conftest.py)."""
    return profile_api


def consent(api: ProfileApi, reference: str, instant: dt.datetime | None = None) -> dict[str, Any]:
    params = {"at": iso(instant)} if instant is not None else {}
    response = api.admin.get(f"/api/profiles/{ref(reference)}/consent", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def cell(state: dict[str, Any], channel: str, purpose: str = "marketing") -> tuple[bool, str, str | None]:
    """(granted, basis, input) of one channel × purpose."""
    decision = state["channels"][channel][purpose]
    return decision["granted"], decision["basis"], decision["input"]


def test_consent_history_from_every_input_and_its_state_at_past_instants(api: ProfileApi) -> None:
    t = tag()
    user = f"u-{t}"
    anon = f"anon-{t}"
    # an anonymous visitor in Berlin accepts advertising in the cookie banner (Segment's consent object) ...
    api.deliver(
        WEB_KEY,
        track(
            f"{t}-banner",
            10,
            "Consent Preferences Updated",
            anonymousId=anon,
            context={**BERLIN, "consent": {"categoryPreferences": {"Advertising": True, "Analytics": False}}},
        ),
    )
    # ... before that, their email marketing was off: the EU needs an explicit opt-in
    assert cell(consent(api, f"anonymous_id:{anon}", at(5)), "email") == (False, "region:eu_email", None)
    assert cell(consent(api, f"anonymous_id:{anon}", at(5)), "sms") == (True, "default", None)

    # ... signs up in the app (a profile of its own), says no to marketing emails in the signup form, revokes SMS
    # marketing, then logs in on the web: the two profiles merge, and so do their consent histories
    api.deliver(
        APP_KEY,
        identify(
            f"{t}-signup", 20, userId=user, anonymousId=f"app-{t}", traits={"marketing_opt_in": False}, context=BERLIN
        ),
        track(
            f"{t}-revoke",
            30,
            "Consent Preferences Updated",
            userId=user,
            context={"consent": {"categoryPreferences": {"SmsMarketing": False}}},
        ),
    )
    api.deliver(WEB_KEY, identify(f"{t}-login", 32, userId=user, anonymousId=anon))
    assert len(api.profile(f"user_id:{user}")["merges"]) == 1
    # ... and opts back in to marketing emails in the preference center (now)
    put = api.admin.put(f"/api/profiles/{ref(f'user_id:{user}')}/consent", json={"email": {"marketing": True}})
    assert put.status_code == 200, put.text
    assert cell(put.json(), "email") == (True, "change", "preference_center")

    reference = f"user_id:{user}"
    assert cell(consent(api, reference, at(5)), "email") == (False, "region:eu_email", None)
    after_banner = consent(api, reference, at(10))
    assert cell(after_banner, "email") == (True, "change", "consent_object:Advertising")
    assert cell(after_banner, "push") == (True, "change", "consent_object:Advertising")
    assert after_banner["channels"]["email"]["marketing"]["message_id"] == f"{t}-banner"
    after_signup = consent(api, reference, at(25))
    assert cell(after_signup, "email") == (False, "change", "trait:marketing_opt_in")
    assert cell(after_signup, "sms") == (True, "change", "consent_object:Advertising")
    after_revoke = consent(api, reference, at(35))
    assert cell(after_revoke, "sms") == (False, "change", "consent_object:SmsMarketing")
    assert cell(after_revoke, "email") == (False, "change", "trait:marketing_opt_in")
    now = consent(api, reference)
    assert cell(now, "email") == (True, "change", "preference_center")
    assert cell(now, "sms") == (False, "change", "consent_object:SmsMarketing")
    assert cell(now, "email", "transactional") == (True, "default", None)
    assert now["country"] == "DE"
    assert {"profile_id": api.profile_id(reference), **api.profile(reference)["consent"]} == now

    # every change is in the warehouse with its input, source, messageId and time
    profile_ids = [api.profile_id(reference), *(m["merged_profile_id"] for m in api.profile(reference)["merges"])]
    listed = ", ".join(f"'{p}'" for p in profile_ids)
    rows = api.query(
        'select channel, purpose, granted, input, source, message_id, "timestamp" from consent_changes '
        f'where profile_id in ({listed}) order by "timestamp", channel'
    )
    by_input = {(r[0], r[3]): r for r in rows}
    assert set(by_input) == {
        ("email", "consent_object:Advertising"),
        ("sms", "consent_object:Advertising"),
        ("push", "consent_object:Advertising"),
        ("in_app", "consent_object:Advertising"),
        ("email", "trait:marketing_opt_in"),
        ("sms", "consent_object:SmsMarketing"),
        ("email", "preference_center"),
    }
    banner = by_input[("email", "consent_object:Advertising")]
    assert banner[1:6] == ["marketing", True, "consent_object:Advertising", "web", f"{t}-banner"]
    assert banner[6].startswith(iso(at(10))[:19])
    signup = by_input[("email", "trait:marketing_opt_in")]
    assert signup[2:6] == [False, "trait:marketing_opt_in", "app", f"{t}-signup"]
    center = by_input[("email", "preference_center")]
    assert center[2:5] == [True, "preference_center", "preference_center"]
    assert str(center[5]).startswith("pc_")
    assert ["consent.update"] in api.query(f"select action from audit_log where target = '{profile_ids[0]}'")


def test_the_regional_default_depends_on_the_profile_country(api: ProfileApi) -> None:
    t = tag()
    api.deliver(
        APP_KEY,
        identify(f"{t}-fr", 0, userId=f"fr-{t}", context={"location": {"country": "FR"}}),
        identify(f"{t}-us", 0, userId=f"us-{t}", context=BOSTON),
        identify(f"{t}-none", 0, userId=f"none-{t}"),
    )
    fr, us, unknown = (consent(api, f"user_id:{who}-{t}") for who in ("fr", "us", "none"))
    assert fr["channels"]["email"]["marketing"]["reason"] == "consent:email:marketing:opt_in_required"
    assert cell(us, "email") == (True, "default", None)
    assert cell(unknown, "email") == (True, "default", None)
    # a trait read through the mapping overrides the default
    api.deliver(APP_KEY, identify(f"{t}-fr-optin", 5, userId=f"fr-{t}", traits={"marketing_opt_in": "yes"}))
    assert cell(consent(api, f"user_id:fr-{t}"), "email") == (True, "change", "trait:marketing_opt_in")
    assert cell(consent(api, f"user_id:fr-{t}", at(1)), "email") == (False, "region:eu_email", None)


def test_a_late_older_opt_in_does_not_undo_a_newer_opt_out(api: ProfileApi) -> None:
    t = tag()
    user = f"u-{t}"
    api.deliver(APP_KEY, identify(f"{t}-out", 50, userId=user, traits={"unsubscribed": True}))
    # the phone was offline: its older opt-in arrives after the opt-out
    api.deliver(APP_KEY, identify(f"{t}-in", 40, userId=user, traits={"marketing_opt_in": True, "sms_opt_in": True}))
    now = consent(api, f"user_id:{user}")
    assert cell(now, "email") == (False, "change", "trait:unsubscribed")
    assert cell(now, "sms") == (False, "change", "trait:unsubscribed")
    assert now["channels"]["email"]["marketing"]["message_id"] == f"{t}-out"
    assert cell(consent(api, f"user_id:{user}", at(45)), "email") == (True, "change", "trait:marketing_opt_in")
    assert cell(consent(api, f"user_id:{user}", at(45)), "push") == (True, "default", None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"fax": {"marketing": True}}, "/fax"),
        ({"email": {"newsletter": True}}, "/email/newsletter"),
        ({"email": {"marketing": "yes"}}, "/email/marketing"),
        ({"email": True}, "/email"),
        ({}, "/"),
        ([{"email": {"marketing": True}}], "/"),
    ],
)
def test_a_bad_preference_center_body_is_refused_naming_the_field(api: ProfileApi, body: Any, field: str) -> None:
    t = tag()
    api.deliver(APP_KEY, identify(f"{t}-1", 0, userId=f"u-{t}"))
    response = api.admin.put(f"/api/profiles/user_id:u-{t}/consent", json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["code"] == "invalid_consent"
    assert answer["message"].startswith(f"{field}:")
    assert any(problem["field"] == ("" if field == "/" else field) for problem in answer["problems"])
    assert api.query(
        f"select count(*) from consent_changes where message_id like 'pc_%' and profile_id = "
        f"'{api.profile_id(f'user_id:u-{t}')}'"
    ) == [[0]]


def test_consent_errors_are_json_naming_the_problem(api: ProfileApi) -> None:
    t = tag()
    api.deliver(APP_KEY, identify(f"{t}-1", 0, userId=f"u-{t}"))
    not_json = api.admin.put(
        f"/api/profiles/user_id:u-{t}/consent", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400 and not_json.json()["code"] == "invalid_json"
    bad_instant = api.admin.get(f"/api/profiles/user_id:u-{t}/consent", params={"at": "last tuesday"})
    assert bad_instant.status_code == 400 and "at" in bad_instant.json()["message"]
    missing = api.admin.put(f"/api/profiles/user_id:nobody-{t}/consent", json={"email": {"marketing": False}})
    assert missing.status_code == 404 and missing.json()["code"] == "profile_not_found"
