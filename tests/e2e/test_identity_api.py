"""Identity stitching through a real server, on both backends: the workout-app cases of seed 000.

Events go in through `/v1/batch` like an SDK sends them; profiles come out of `/api/profiles`, the warehouse tables
(`identity_graph`, `profile_merges`, `identity_refusals`) and the CLI. One server per backend serves these tests
(see conftest.py); each test names its ids with its own tag.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from orchestrion.cli import app
from tests.e2e.support_profiles import (
    APP_KEY,
    WEB_KEY,
    ProfileApi,
    alias,
    at,
    identify,
    iso,
    quoted,
    ref,
    tag,
    track,
)


@pytest.fixture
def api(profile_api: ProfileApi) -> ProfileApi:
    """The server of this backend, shared with the other profile modules (see conftest.py)."""
    return profile_api


def graph_rows(api: ProfileApi, *values: str) -> dict[tuple[str, str], str]:
    """(type, value) -> profile_id from the warehouse table `identity_graph`."""
    rows = api.query(
        "select identifier_type, identifier_value, profile_id from identity_graph "
        f"where identifier_value in ({quoted(list(values))})"
    )
    return {(str(r[0]), str(r[1])): str(r[2]) for r in rows}


def identities(document: dict[str, Any]) -> set[str]:
    return {f"{item['type']}:{item['value']}" for item in document["identities"]}


# -- the workout app: anonymous web visit, app signup, login --------------------------------------------------
def test_anonymous_web_visit_then_app_signup_then_login_make_one_profile(api: ProfileApi) -> None:
    t = tag()
    web_anon, app_anon, user, email = f"web-{t}", f"app-{t}", f"u-{t}", f"runner-{t}@example.com"
    api.deliver(WEB_KEY, track(f"{t}-pricing", 0, "pricing_viewed", anonymousId=web_anon, properties={"plan": "pro"}))
    api.deliver(APP_KEY, track(f"{t}-signup", 60, "Signed Up", anonymousId=app_anon))
    api.deliver(APP_KEY, identify(f"{t}-identify", 61, userId=user, anonymousId=app_anon, traits={"email": email}))

    web_profile = api.profile_id(f"anonymous_id:{web_anon}")
    app_profile = api.profile_id(f"user_id:{user}")
    assert web_profile != app_profile  # nothing links the web visitor to the app user yet
    assert api.timeline_ids(f"user_id:{user}") == [f"{t}-identify", f"{t}-signup"]

    # the user logs in on the web: the web visitor's anonymous id meets the user id
    api.deliver(WEB_KEY, identify(f"{t}-login", 120, userId=user, anonymousId=web_anon))

    document = api.profile(f"user_id:{user}")
    assert document["profile_id"] == web_profile  # the older profile survives
    assert identities(document) == {
        f"anonymous_id:{web_anon}",
        f"anonymous_id:{app_anon}",
        f"user_id:{user}",
        f"email:{email}",
    }
    assert api.timeline_ids(f"email:{email}") == [f"{t}-login", f"{t}-identify", f"{t}-signup", f"{t}-pricing"]
    assert document["traits"]["email"]["value"] == email
    assert document["first_seen"].startswith(at(0).isoformat()[:19])
    assert set(graph_rows(api, web_anon, app_anon, user, email).values()) == {web_profile}

    merges = api.query(
        "select merged_profile_id, survivor_profile_id, message_id from profile_merges "
        f"where survivor_profile_id = '{web_profile}'"
    )
    assert merges == [[app_profile, web_profile, f"{t}-login"]]
    assert [m["merged_profile_id"] for m in document["merges"]] == [app_profile]
    # the retired id still resolves, forever: to the survivor
    assert api.profile_id(app_profile) == web_profile
    assert api.timeline(app_profile, limit=1)["profile_id"] == web_profile


def test_the_event_right_after_a_login_on_a_second_device_resolves_to_the_user(api: ProfileApi) -> None:
    t = tag()
    user, phone_anon, tablet_anon = f"u-{t}", f"phone-{t}", f"tablet-{t}"
    api.deliver(APP_KEY, identify(f"{t}-phone", 0, userId=user, anonymousId=phone_anon))
    profile = api.profile_id(f"user_id:{user}")

    # one batch: the login on the tablet, then an event that carries only the tablet's anonymous id
    api.deliver(
        APP_KEY,
        identify(f"{t}-tablet-login", 10, userId=user, anonymousId=tablet_anon),
        track(f"{t}-workout", 11, "Workout Started", anonymousId=tablet_anon),
    )
    assert api.timeline_ids(f"user_id:{user}")[:2] == [f"{t}-workout", f"{t}-tablet-login"]
    # it was resolved to the user's profile while being processed, not stitched on afterwards
    rows = api.query(f"select profile_id from identity_links where message_id = '{t}-workout'")
    assert rows == [[profile]]
    assert api.query(f"select count(*) from profile_merges where survivor_profile_id = '{profile}'") == [[0]]


# -- what must not merge ---------------------------------------------------------------------------------------
def test_a_shared_family_ipad_keeps_two_members_apart_and_says_why(api: ProfileApi) -> None:
    t = tag()
    ipad = f"ipad-{t}"
    ann, bob = f"ann-{t}", f"bob-{t}"
    api.deliver(
        APP_KEY,
        identify(f"{t}-ann", 0, userId=ann, anonymousId=f"anon-ann-{t}", context={"device": {"id": ipad}}),
        track(f"{t}-ann-run", 5, "Workout Completed", userId=ann, context={"device": {"id": ipad}}),
        identify(f"{t}-bob", 60, userId=bob, anonymousId=f"anon-bob-{t}", context={"device": {"id": ipad}}),
        track(f"{t}-bob-yoga", 65, "Workout Completed", userId=bob, context={"device": {"id": ipad}}),
    )
    ann_profile, bob_profile = api.profile(f"user_id:{ann}"), api.profile(f"user_id:{bob}")
    assert ann_profile["profile_id"] != bob_profile["profile_id"]
    assert f"device_id:{ipad}" in identities(ann_profile)  # the first member keeps the device
    assert identities(bob_profile) == {f"user_id:{bob}", f"anonymous_id:anon-bob-{t}"}
    assert api.timeline_ids(f"user_id:{bob}") == [f"{t}-bob-yoga", f"{t}-bob"]
    assert api.profile_id(f"device_id:{ipad}") == ann_profile["profile_id"]

    refusals = api.query(
        "select message_id, identifier_type, identifier_value, code, reason from identity_refusals "
        f"where message_id in ('{t}-bob', '{t}-bob-yoga') order by message_id"
    )
    assert [r[:4] for r in refusals] == [
        [f"{t}-bob", "device_id", ipad, "limit"],
        [f"{t}-bob-yoga", "device_id", ipad, "limit"],
    ]
    assert all("user_id" in str(r[4]) for r in refusals)  # the reason names the limit that would break
    shown = bob_profile["refusals"]
    assert {(r["identifier"], r["code"], r["message_id"]) for r in shown} == {
        (f"device_id:{ipad}", "limit", f"{t}-bob"),
        (f"device_id:{ipad}", "limit", f"{t}-bob-yoga"),
    }
    assert all(r["reason"] for r in shown)


@pytest.mark.parametrize("placeholder", ["null", "undefined", "0"])
def test_a_placeholder_anonymous_id_does_not_merge_fifty_users(api: ProfileApi, placeholder: str) -> None:
    t = tag()
    users = [f"u{i}-{t}" for i in range(50)]
    api.deliver(
        WEB_KEY,
        *(
            identify(f"{t}-{i}", i, userId=user, anonymousId=placeholder, traits={"email": f"{user}@example.com"})
            for i, user in enumerate(users)
        ),
    )
    owners = graph_rows(api, *users)
    assert len(owners) == 50
    assert len(set(owners.values())) == 50
    assert api.query(f"select count(*) from identity_graph where identifier_value = '{placeholder}'") == [[0]]
    assert api.admin.get(f"/api/profiles/anonymous_id:{placeholder}").status_code == 404
    assert api.timeline_ids(f"user_id:{users[7]}") == [f"{t}-7"]


# -- changes over time ------------------------------------------------------------------------------------------
def test_an_email_change_keeps_both_addresses_and_the_newest_trait(api: ProfileApi) -> None:
    t = tag()
    user = f"u-{t}"
    emails = [f"old-{t}@example.com", f"new-{t}@example.com"]
    api.deliver(APP_KEY, identify(f"{t}-e0", 0, userId=user, traits={"email": emails[0]}))
    api.deliver(APP_KEY, identify(f"{t}-e1", 30, userId=user, traits={"email": emails[1].upper()}))
    document = api.profile(f"email:{emails[0]}")
    assert identities(document) == {f"user_id:{user}", f"email:{emails[0]}", f"email:{emails[1]}"}
    assert api.profile_id(f"email:{emails[1]}") == document["profile_id"]
    assert api.profile_id(f"email:{emails[1].upper()}") == document["profile_id"]  # as the person typed it
    trait = document["traits"]["email"]
    assert (trait["value"], trait["message_id"]) == (emails[1].upper(), f"{t}-e1")

    # email takes at most five values per profile: a sixth address is refused, and the refusal is kept
    more = [f"e{i}-{t}@example.com" for i in range(2, 6)]
    api.deliver(
        APP_KEY, *(identify(f"{t}-e{i}", 30 + i, userId=user, traits={"email": e}) for i, e in enumerate(more, 2))
    )
    document = api.profile(f"user_id:{user}")
    kept = {i for i in identities(document) if i.startswith("email:")}
    assert kept == {f"email:{e}" for e in [*emails, *more[:3]]}
    assert {(r["identifier"], r["code"]) for r in document["refusals"]} == {(f"email:{more[3]}", "limit")}
    assert api.admin.get(f"/api/profiles/email:{more[3]}").status_code == 404


def test_an_alias_chain_makes_one_profile(api: ProfileApi) -> None:
    t = tag()
    a, b, c = f"anon-{t}", f"user-b-{t}", f"user-c-{t}"
    api.deliver(
        WEB_KEY,
        track(f"{t}-1", 0, "pricing_viewed", anonymousId=a),
        alias(f"{t}-2", 1, previous_id=a, user_id=b),
        track(f"{t}-3", 2, "Trial Started", userId=b),
        alias(f"{t}-4", 3, previous_id=b, user_id=c),
        track(f"{t}-5", 4, "Plan Upgraded", userId=c),
    )
    profile = api.profile_id(f"anonymous_id:{a}")
    assert api.profile_id(f"user_id:{b}") == profile
    assert api.profile_id(f"user_id:{c}") == profile
    assert set(graph_rows(api, a, b, c).values()) == {profile}
    assert api.timeline_ids(f"user_id:{c}") == [f"{t}-{i}" for i in (5, 4, 3, 2, 1)]


def test_late_and_out_of_order_identifies_keep_the_newest_trait(api: ProfileApi) -> None:
    t = tag()
    user = f"u-{t}"
    api.deliver(
        APP_KEY, identify(f"{t}-new", 100, userId=user, traits={"plan": "pro"}, context={"timezone": "Europe/Berlin"})
    )
    # an older identify arrives later (a phone that was offline): its value is older, so it must not win ...
    api.deliver(APP_KEY, identify(f"{t}-old", 10, userId=user, traits={"plan": "free", "goal": "5k"}))
    document = api.profile(f"user_id:{user}")
    plan, goal = document["traits"]["plan"], document["traits"]["goal"]
    assert (plan["value"], plan["message_id"], plan["source"]) == ("pro", f"{t}-new", "app")
    # ... but what it says and nothing newer contradicts still counts, and it moves first_seen back
    assert (goal["value"], goal["message_id"]) == ("5k", f"{t}-old")
    assert document["first_seen"].startswith(at(10).isoformat()[:19])
    assert document["last_seen"].startswith(at(100).isoformat()[:19])
    assert document["maintained"]["timezone"]["value"] == "Europe/Berlin"
    assert api.timeline_ids(f"user_id:{user}") == [f"{t}-new", f"{t}-old"]  # newest first by event time

    # an even later arrival of an older anonymous visit that the user's login links: the profile absorbs it
    before = api.profile_id(f"user_id:{user}")
    api.deliver(
        WEB_KEY,
        identify(f"{t}-login", 50, userId=user, anonymousId=f"anon-{t}"),
        track(f"{t}-visit", 5, "pricing_viewed", anonymousId=f"anon-{t}", context={"traits": {"plan": "trial"}}),
    )
    document = api.profile(f"anonymous_id:anon-{t}")
    assert document["traits"]["plan"]["value"] == "pro"
    assert document["first_seen"].startswith(at(5).isoformat()[:19])
    assert api.timeline_ids(f"user_id:{user}") == [f"{t}-new", f"{t}-login", f"{t}-old", f"{t}-visit"]
    # in event-time order the visit made the oldest profile, so it survives; the id handed out before still resolves
    assert api.profile_id(before) == document["profile_id"]


# -- admin unmerge -----------------------------------------------------------------------------------------------
def test_unmerge_detaches_an_identifier_and_later_events_do_not_merge_it_back(api: ProfileApi) -> None:
    t = tag()
    user, device = f"u-{t}", f"gym-tablet-{t}"
    api.deliver(
        APP_KEY,
        identify(f"{t}-1", 0, userId=user, anonymousId=f"anon-{t}", context={"device": {"id": device}}),
        track(f"{t}-2", 1, "Class Booked", anonymousId=f"other-anon-{t}", context={"device": {"id": device}}),
    )
    profile = api.profile_id(f"user_id:{user}")
    assert api.profile_id(f"device_id:{device}") == profile

    answer = api.admin.post(
        f"/api/profiles/{ref(f'user_id:{user}')}/unmerge", json={"identifier": f"device_id:{device}"}
    )
    assert answer.status_code == 200, answer.text
    detached = answer.json()
    assert detached["profile_id"] == profile and detached["detached"] == f"device_id:{device}"
    new_profile = detached["new_profile_id"]
    assert new_profile not in (None, profile)
    assert api.profile_id(f"device_id:{device}") == new_profile
    assert f"device_id:{device}" not in identities(api.profile(f"user_id:{user}"))
    assert graph_rows(api, device) == {("device_id", device): new_profile}
    audit = api.query(f"select action from audit_log where target = '{profile}'")
    assert ["identity.unmerge"] in audit

    # an event from before the unmerge arrives late: it is placed before the separation, which still holds
    api.deliver(APP_KEY, track(f"{t}-3", 10, "Workout Completed", userId=user, context={"device": {"id": device}}))
    assert api.profile_id(f"device_id:{device}") == new_profile
    # an event after the unmerge links the device with the user again: refused, with the reason
    later = {**track(f"{t}-4", 0, "Workout Completed", userId=user, context={"device": {"id": device}})}
    later["timestamp"] = iso(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    api.deliver(APP_KEY, later)
    assert api.profile_id(f"user_id:{user}") == profile
    assert api.profile_id(f"device_id:{device}") == new_profile
    refusal = api.query(
        f"select identifier_type, identifier_value, code from identity_refusals where message_id = '{t}-4'"
    )
    assert refusal == [["device_id", device, "unmerged"]]
    assert api.timeline_ids(f"user_id:{user}")[0] == f"{t}-4"

    # an identifier that is not on the profile, or not an identifier at all, changes nothing
    again = api.admin.post(
        f"/api/profiles/{ref(f'user_id:{user}')}/unmerge", json={"identifier": f"device_id:{device}"}
    )
    assert again.status_code == 409 and again.json()["code"] == "not_on_profile"
    bad = api.admin.post(f"/api/profiles/{ref(f'user_id:{user}')}/unmerge", json={"identifier": "nocolon"})
    assert bad.status_code == 400 and "identifier" in bad.json()["message"]


# -- the timeline and the profile look-up ------------------------------------------------------------------------
def test_the_timeline_is_newest_first_and_paginated(api: ProfileApi) -> None:
    t = tag()
    user = f"u-{t}"
    minutes = [30, 10, 50, 20, 40]  # sent out of time order, and two events share a time
    api.deliver(APP_KEY, *(track(f"{t}-{m}", m, "Workout Completed", userId=user) for m in minutes))
    api.deliver(APP_KEY, track(f"{t}-40b", 40, "Workout Completed", userId=user))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
        page = api.timeline(f"user_id:{user}", **params)
        assert len(page["items"]) <= 2
        assert all(item["payload"]["userId"] == user for item in page["items"])
        seen += [item["message_id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # equal times: the later stored first; every event exactly once across the pages
    assert seen == [f"{t}-50", f"{t}-40b", f"{t}-40", f"{t}-30", f"{t}-20", f"{t}-10"]
    assert pages == 3
    stamps = [item["timestamp"] for item in api.timeline(f"user_id:{user}", limit=10)["items"]]
    assert stamps == sorted(stamps, reverse=True)
    broken = api.admin.get(f"/api/profiles/user_id:{user}/timeline", params={"cursor": "not-a-cursor"})
    assert broken.status_code == 400 and broken.json()["code"] == "invalid_cursor"


@pytest.mark.parametrize(
    ("reference", "status"),
    [("user_id:nobody-at-all", 404), ("p_0000000000000000", 404), ("nocolon", 404), (":x", 400), ("user_id:", 400)],
)
def test_an_unknown_or_malformed_reference_is_a_json_error(api: ProfileApi, reference: str, status: int) -> None:
    for path in (f"/api/profiles/{ref(reference)}", f"/api/profiles/{ref(reference)}/timeline"):
        response = api.admin.get(path)
        assert response.status_code == status, response.text
        body = response.json()
        assert body["code"] in ("profile_not_found", "invalid_reference")
        assert body["message"]


def test_a_reference_may_contain_slashes_and_any_character(api: ProfileApi) -> None:
    t = tag()
    odd = f"web/visitor ü+{t}"
    api.deliver(WEB_KEY, track(f"{t}-1", 0, "pricing_viewed", anonymousId=odd))
    profile = api.profile(f"anonymous_id:{odd}")
    assert identities(profile) == {f"anonymous_id:{odd}"}
    assert api.timeline_ids(f"anonymous_id:{odd}") == [f"{t}-1"]
    assert consent_of(api, f"anonymous_id:{odd}")["profile_id"] == profile["profile_id"]


def consent_of(api: ProfileApi, reference: str) -> dict[str, Any]:
    response = api.admin.get(f"/api/profiles/{ref(reference)}/consent")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_profiles_need_the_admin_token(api: ProfileApi) -> None:
    assert api.public.get("/api/profiles/user_id:x").status_code == 401
    assert api.public.delete("/api/profiles/user_id:x").status_code == 401


# -- the CLI through the running server --------------------------------------------------------------------------
def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


def test_cli_profile_prints_identities_traits_and_consent_through_the_server(api: ProfileApi) -> None:
    t = tag()
    user, email = f"u-{t}", f"cli-{t}@example.com"
    api.deliver(APP_KEY, identify(f"{t}-1", 0, userId=user, traits={"email": email, "goal": "marathon"}))
    root = str(api.server.root)
    shown = cli("profile", f"user_id:{user}", "--workspace", root)
    assert shown.exit_code == 0, shown.stdout + shown.stderr
    for expected in (api.profile_id(f"user_id:{user}"), email, "marathon", f"{t}-1", "consent:email:marketing"):
        assert expected in shown.stdout
    as_json = cli("profile", f"email:{email}", "--workspace", root, "--json")
    assert as_json.exit_code == 0, as_json.stderr
    parsed = json.loads(as_json.stdout)
    assert parsed["profile"] == api.profile(f"user_id:{user}")
    assert [i["message_id"] for i in parsed["timeline"]["items"]] == [f"{t}-1"]
    missing = cli("profile", f"user_id:missing-{t}", "--workspace", root)
    assert missing.exit_code == 1 and "404" in missing.stderr
