"""Right to be forgotten, on both backends: `DELETE /api/profiles/{ref}` through a real server, and
`orchestrion erase --yes` on a workspace with no server running.

The proof is a scan of every table and view of the schema (listed from `information_schema.tables`): no row may
still contain any erased value. Late events for erased identifiers are dropped and counted, and make no profile.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from orchestrion.cli import app
from orchestrion.store import open_store
from tests.e2e.support_profiles import (
    APP_KEY,
    WEB_KEY,
    ProfileApi,
    identify,
    iso,
    quoted,
    store_events,
    table_texts,
    tag,
    traces,
    track,
)
from tests.support.server import DEFAULT_WORKSPACE


@pytest.fixture
def api(profile_api: ProfileApi) -> ProfileApi:
    """The server of this backend, shared with the other profile modules (see conftest.py)."""
    return profile_api


class Person:
    """Everything that identifies one person in the tests: distinctive values, so a scan cannot match by chance."""

    def __init__(self, label: str) -> None:
        t = tag()
        self.tag = t
        self.web_anon = f"{label}-web-anon-{t}"
        self.app_anon = f"{label}-app-anon-{t}"
        self.user = f"{label}-user-{t}"
        self.email = f"{label}.{t}@example.com"
        self.phone = "+49151" + str(int(t, 16))[:8]
        self.device = f"{label}-device-{t}"
        self.name = f"Vera {label.title()} {t}"

    @property
    def values(self) -> list[str]:
        return [self.web_anon, self.app_anon, self.user, self.email, self.phone, self.device, self.name]

    def history(self) -> list[tuple[str, dict[str, Any]]]:
        """(write key, event): an anonymous web visit, an app signup, identify with traits and consent, a login."""
        t = self.tag
        device = {"device": {"id": self.device}}
        return [
            (WEB_KEY, track(f"{t}-1", 0, "pricing_viewed", anonymousId=self.web_anon, properties={"plan": "pro"})),
            (APP_KEY, track(f"{t}-2", 10, "Signed Up", anonymousId=self.app_anon, context=device)),
            (
                APP_KEY,
                identify(
                    f"{t}-3",
                    11,
                    userId=self.user,
                    anonymousId=self.app_anon,
                    # as typed in a form: the scan below must not find it in any case
                    traits={
                        "email": self.email.title(),
                        "phone": self.phone,
                        "name": self.name,
                        "marketing_opt_in": True,
                    },
                    context={**device, "location": {"country": "DE"}},
                ),
            ),
            (WEB_KEY, identify(f"{t}-4", 20, userId=self.user, anonymousId=self.web_anon)),
        ]


def test_erasure_leaves_no_trace_in_any_table_and_drops_late_events(api: ProfileApi) -> None:
    victim, other = Person("victim"), Person("other")
    for key, item in victim.history():
        api.send(key, item)
    # someone else's event that mentions the victim's email in a property: theirs to keep, the email is not
    api.send(APP_KEY, identify(f"{other.tag}-1", 30, userId=other.user, traits={"email": other.email}))
    api.send(
        APP_KEY, track(f"{other.tag}-2", 31, "Friend Invited", userId=other.user, properties={"invitee": victim.email})
    )
    # an event the gateway quarantined (no user or anonymous id) that carries the victim's email
    quarantined = api.send(
        WEB_KEY, track(f"{victim.tag}-q", 40, "Newsletter Signup", properties={"email": victim.email})
    )
    assert quarantined.headers["X-Orchestrion-Quarantined"] == "1"
    api.settle()

    profile = api.profile(f"user_id:{victim.user}")
    assert len(profile["merges"]) == 1 and profile["traits"]["name"]["value"] == victim.name
    put = api.admin.put(f"/api/profiles/user_id:{victim.user}/consent", json={"sms": {"marketing": False}})
    assert put.status_code == 200, put.text
    before = traces(table_texts(api.query), victim.values)
    assert {table.split(".", 1)[1] for table, _, _ in before} >= {
        "events",
        "quarantine",
        "identity_graph",
        "identity_links",
        "profiles",
        "identifies",
        "pricing_viewed",
    }
    assert api.query(f"select count(*) from consent_changes where profile_id = '{profile['profile_id']}'") != [[0]]

    erased = api.admin.delete(f"/api/profiles/email:{victim.email}")
    assert erased.status_code == 200, erased.text
    report = erased.json()
    assert report["profile_id"] == profile["profile_id"]
    assert report["identifiers"] == 6  # two anonymous ids, user id, email, phone, device
    assert report["deleted"]["events"] == 4 and report["deleted"]["quarantine"] == 1

    assert traces(table_texts(api.query), victim.values) == []
    audit = api.query(f"select actor, action, target from audit_log where target = '{report['erasure_id']}'")
    assert audit == [["admin", "erase", report["erasure_id"]]]
    tombstones = api.query(f"select count(*) from erasure_tombstones where erasure_id = '{report['erasure_id']}'")
    assert tombstones == [[6]]
    for reference in (
        f"user_id:{victim.user}",
        profile["profile_id"],
        *(m["merged_profile_id"] for m in profile["merges"]),
    ):
        assert api.admin.get(f"/api/profiles/{reference}").status_code == 404
    assert api.admin.delete(f"/api/profiles/user_id:{victim.user}").status_code == 404

    # the other person keeps their profile and their event, without the victim's email in it
    survivor = api.timeline(f"user_id:{other.user}")
    invite = next(item for item in survivor["items"] if item["message_id"] == f"{other.tag}-2")
    assert invite["payload"]["properties"]["invitee"] != victim.email
    assert api.profile(f"email:{other.email}")["profile_id"] == survivor["profile_id"]

    # late events for the erased identifiers are dropped and counted, and make no new profile
    dropped_before = api.settle()["dropped_erased_events"]
    new_anon, new_email = f"new-anon-{victim.tag}", f"new-{victim.email}"
    api.send(
        APP_KEY,
        track(f"{victim.tag}-late-1", 50, "Workout Completed", userId=victim.user),
        identify(f"{victim.tag}-late-2", 51, userId=victim.user, anonymousId=new_anon, traits={"email": new_email}),
        track(
            f"{victim.tag}-late-3",
            52,
            "App Opened",
            anonymousId=victim.app_anon,
            context={"device": {"id": victim.device}},
        ),
    )
    status = api.settle()
    assert status["dropped_erased_events"] == dropped_before + 3
    counted = api.query(
        "select cast(sum(dropped_events) as integer) from erasure_tombstones "
        f"where erasure_id = '{report['erasure_id']}'"
    )
    assert counted == [[4]]  # each tombstone counts the events that carried it: 1 + 1 + 2
    assert api.query(f"select count(*) from events where message_id like '{victim.tag}-late-%'") == [[0]]
    for reference in (f"email:{new_email}", f"anonymous_id:{new_anon}"):
        assert api.admin.get(f"/api/profiles/{reference}").status_code == 404
    assert api.query(f"select count(*) from identity_graph where identifier_value in ({quoted(victim.values)})") == [
        [0]
    ]
    assert traces(table_texts(api.query), [*victim.values, new_anon, new_email]) == []
    assert api.profile(f"user_id:{other.user}")["profile_id"] == survivor["profile_id"]


def test_a_refused_shared_identifier_stays_with_its_owner(api: ProfileApi) -> None:
    """The family iPad: erasing the member whose device link was refused does not erase the device's owner."""
    t = tag()
    ipad = f"ipad-{t}"
    api.deliver(
        APP_KEY,
        identify(f"{t}-ann", 0, userId=f"ann-{t}", context={"device": {"id": ipad}}),
        identify(f"{t}-bob", 5, userId=f"bob-{t}", context={"device": {"id": ipad}}),
    )
    assert api.admin.delete(f"/api/profiles/user_id:bob-{t}").status_code == 200
    ann = api.profile(f"user_id:ann-{t}")
    assert f"device_id:{ipad}" in {f"{i['type']}:{i['value']}" for i in ann["identities"]}
    assert api.timeline_ids(f"device_id:{ipad}") == [f"{t}-ann"]
    assert traces(table_texts(api.query), [f"bob-{t}"]) == []
    # a later event of the device alone still belongs to its owner
    api.deliver(
        APP_KEY, track(f"{t}-later", 10, "App Opened", anonymousId=f"anon-{t}", context={"device": {"id": ipad}})
    )
    assert api.profile_id(f"anonymous_id:anon-{t}") == ann["profile_id"]

    # a third member signs in on the iPad (refused the device, as bob was); then the owner is erased
    api.deliver(APP_KEY, identify(f"{t}-cy", 20, userId=f"cy-{t}", context={"device": {"id": ipad}}))
    assert api.admin.delete(f"/api/profiles/device_id:{ipad}").status_code == 200
    assert traces(table_texts(api.query), [f"ann-{t}", f"anon-{t}", ipad]) == []
    assert api.timeline_ids(f"user_id:cy-{t}") == [f"{t}-cy"]  # cy's event stays, without the device id
    # cy's next event on the iPad is cy's: kept, and the erased device id links nothing
    dropped = api.settle()["dropped_erased_events"]
    api.deliver(
        APP_KEY, track(f"{t}-cy-run", 30, "Workout Completed", userId=f"cy-{t}", context={"device": {"id": ipad}})
    )
    assert api.timeline_ids(f"user_id:cy-{t}") == [f"{t}-cy-run", f"{t}-cy"]
    assert api.admin.get(f"/api/profiles/device_id:{ipad}").status_code == 404
    assert api.settle()["dropped_erased_events"] == dropped


def test_late_events_of_an_erased_member_do_not_land_on_the_shared_devices_owner(api: ProfileApi) -> None:
    t = tag()
    ipad = {"device": {"id": f"ipad-{t}"}}
    api.deliver(
        APP_KEY,
        identify(f"{t}-bob", 0, userId=f"bob-{t}", context=ipad),  # bob's iPad: ann's link to it is refused
        identify(f"{t}-ann", 5, userId=f"ann-{t}", anonymousId=f"anon-ann-{t}", context=ipad),
    )
    assert api.admin.delete(f"/api/profiles/user_id:ann-{t}").status_code == 200
    dropped = api.settle()["dropped_erased_events"]
    # ann's events queued offline on the iPad arrive after her erasure: hers, not bob's
    api.deliver(
        APP_KEY,
        track(f"{t}-ann-late-1", 6, "Workout Completed", userId=f"ann-{t}", context=ipad),
        track(f"{t}-ann-late-2", 7, "Workout Completed", anonymousId=f"anon-ann-{t}", context=ipad),
    )
    assert api.settle()["dropped_erased_events"] == dropped + 2
    assert api.timeline_ids(f"user_id:bob-{t}") == [f"{t}-bob"]
    assert traces(table_texts(api.query), [f"ann-{t}"]) == []


def test_a_new_owner_of_an_erased_persons_device_gets_a_profile(api: ProfileApi) -> None:
    t = tag()
    phone = {"device": {"id": f"phone-{t}"}}
    api.deliver(APP_KEY, identify(f"{t}-ann", 0, userId=f"ann-{t}", context=phone))
    assert api.admin.delete(f"/api/profiles/user_id:ann-{t}").status_code == 200
    dropped = api.settle()["dropped_erased_events"]
    # the phone is sold on: the new owner signs up on it
    api.deliver(
        APP_KEY,
        identify(f"{t}-dan", 10, userId=f"dan-{t}", traits={"email": f"dan-{t}@example.com"}, context=phone),
        track(f"{t}-dan-run", 11, "Workout Completed", userId=f"dan-{t}", context=phone),
    )
    assert api.settle()["dropped_erased_events"] == dropped
    dan = api.profile(f"email:dan-{t}@example.com")
    assert {i["type"] for i in dan["identities"]} == {"user_id", "email"}  # the erased device id links nothing
    assert api.timeline_ids(f"user_id:dan-{t}") == [f"{t}-dan-run", f"{t}-dan"]
    assert api.admin.get(f"/api/profiles/device_id:phone-{t}").status_code == 404


def test_erasing_both_sides_of_an_unmerge_leaves_no_trace(api: ProfileApi) -> None:
    t = tag()
    user, anon, device = f"u-{t}", f"anon-{t}", f"tablet-{t}"
    api.deliver(APP_KEY, identify(f"{t}-1", 0, userId=user, anonymousId=anon, context={"device": {"id": device}}))
    detached = api.admin.post(f"/api/profiles/user_id:{user}/unmerge", json={"identifier": f"device_id:{device}"})
    assert detached.status_code == 200, detached.text
    later = track(f"{t}-2", 0, "Workout Completed", userId=user, context={"device": {"id": device}})
    later["timestamp"] = iso(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    api.deliver(APP_KEY, later)
    assert api.query(f"select code from identity_refusals where message_id = '{t}-2'") == [["unmerged"]]
    assert traces(table_texts(api.query), [device]) != []

    assert api.admin.delete(f"/api/profiles/user_id:{user}").status_code == 200
    assert traces(table_texts(api.query), [user, anon]) == []  # the unmerge record named them too
    assert api.profile_id(f"device_id:{device}") == detached.json()["new_profile_id"]
    assert api.admin.delete(f"/api/profiles/device_id:{device}").status_code == 200
    assert traces(table_texts(api.query), [user, anon, device]) == []


# -- the CLI, with no server ---------------------------------------------------------------------------------------
def cli(root: Path, database_url: str, *args: str, answer: str | None = None) -> Result:
    env = {"COLUMNS": "250", "ORCHESTRION_DATABASE_URL": database_url, "ORCHESTRION_ADMIN_TOKEN": "adm_local_0001"}
    return CliRunner().invoke(app, [*args, "--workspace", str(root)], env=env, input=answer)


def test_cli_erase_works_without_a_server(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "orchestrion.yml").write_text(DEFAULT_WORKSPACE)
    victim, other = Person("cli"), Person("kept")
    store = open_store(database_url)
    try:
        for key, item in victim.history():
            store_events(store, "web" if key == WEB_KEY else "app", item)
        store_events(store, "app", identify(f"{other.tag}-1", 30, userId=other.user, traits={"email": other.email}))
    finally:
        store.close()

    # events were stored but never processed: the CLI processes them before reading and erasing
    shown = cli(tmp_path, database_url, "profile", f"user_id:{victim.user}", "--json")
    assert shown.exit_code == 0, shown.stdout + shown.stderr
    document = json.loads(shown.stdout)["profile"]
    assert len(document["identities"]) == 6

    refused = cli(tmp_path, database_url, "erase", f"user_id:{victim.user}", answer="n\n")  # asked, said no
    assert refused.exit_code == 1 and "nothing erased" in refused.stderr
    erased = cli(tmp_path, database_url, "erase", f"user_id:{victim.user}", "--yes")
    assert erased.exit_code == 0, erased.stdout + erased.stderr
    assert f"erased profile {document['profile_id']} (6 identifiers tombstoned)" in erased.stdout
    assert "events: 4" in erased.stdout

    gone = cli(tmp_path, database_url, "profile", f"user_id:{victim.user}")
    assert gone.exit_code == 1 and "no profile" in gone.stderr
    assert cli(tmp_path, database_url, "profile", f"user_id:{other.user}").exit_code == 0
    store = open_store(database_url)
    try:
        assert traces(table_texts(lambda sql: [list(r) for r in store.query(sql, 100_000).rows]), victim.values) == []
        audit = store.query("select actor, action from audit_log").rows
        assert [tuple(r) for r in audit] == [("cli", "erase")]
    finally:
        store.close()
