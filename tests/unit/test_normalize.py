"""Event-level normalization: time correction, ids, messageId, the checks that send an event to quarantine."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrion.collect.event import EVENT_TYPES, NormalizedEvent, Problem
from orchestrion.collect.normalize import MAX_MESSAGE_ID, RequestMeta, iso, normalize, parse_instant

RECEIVED = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def meta(**overrides: Any) -> RequestMeta:
    fields: dict[str, Any] = {"source": "web", "received_at": RECEIVED, "ip": "203.0.113.9"}
    fields.update(overrides)
    return RequestMeta(**fields)


def accepted(item: Any, request: RequestMeta | None = None) -> NormalizedEvent:
    outcome = normalize(item, request or meta())
    assert isinstance(outcome, NormalizedEvent), outcome
    return outcome


def problems(item: Any, request: RequestMeta | None = None) -> list[Problem]:
    outcome = normalize(item, request or meta())
    assert isinstance(outcome, list), f"expected quarantine, got {outcome}"
    return outcome


def codes(found: list[Problem]) -> set[tuple[str, str]]:
    return {(p.code, p.field) for p in found}


def track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Workout Completed", "userId": "u1", **fields}


# -- clock skew ------------------------------------------------------------------------------------
def test_clock_skew_is_corrected_with_event_level_sent_at() -> None:
    # the device clock is 10 minutes fast: it says sent 12:10, the call happened 30 s before that
    event = accepted(track(originalTimestamp="2026-03-01T12:09:30.000Z", sentAt="2026-03-01T12:10:00.000Z"))
    assert event.timestamp == RECEIVED - dt.timedelta(seconds=30)
    assert event.original_timestamp == dt.datetime(2026, 3, 1, 12, 9, 30, tzinfo=dt.UTC)
    assert event.sent_at == dt.datetime(2026, 3, 1, 12, 10, tzinfo=dt.UTC)
    assert event.received_at == RECEIVED
    assert event.payload["timestamp"] == "2026-03-01T11:59:30.000Z"
    assert event.payload["receivedAt"] == "2026-03-01T12:00:00.000Z"


def test_sent_at_falls_back_to_the_batch_level() -> None:
    request = meta(batch_sent_at="2026-03-01T08:00:05Z")
    event = accepted(track(originalTimestamp="2026-03-01T08:00:00Z"), request)
    assert event.sent_at == dt.datetime(2026, 3, 1, 8, 0, 5, tzinfo=dt.UTC)
    assert event.timestamp == RECEIVED - dt.timedelta(seconds=5)


def test_event_level_sent_at_wins_over_the_batch_level() -> None:
    request = meta(batch_sent_at="2026-03-01T08:00:05Z")
    event = accepted(track(originalTimestamp="2026-03-01T08:00:00Z", sentAt="2026-03-01T08:01:00Z"), request)
    assert event.timestamp == RECEIVED - dt.timedelta(minutes=1)


def test_without_any_sent_at_the_original_timestamp_is_kept_as_is() -> None:
    # sentAt := receivedAt, so the correction is the identity
    event = accepted(track(originalTimestamp="2026-03-01T11:00:00Z"))
    assert event.sent_at == RECEIVED
    assert event.timestamp == dt.datetime(2026, 3, 1, 11, 0, tzinfo=dt.UTC)


def test_without_any_time_fields_every_time_is_received_at() -> None:
    event = accepted(track())
    assert event.timestamp == event.original_timestamp == event.sent_at == RECEIVED


def test_a_client_timestamp_is_the_original_time_and_gets_corrected() -> None:
    # Segment's rule (the Python SDKs send `timestamp`, not originalTimestamp)
    request = meta(batch_sent_at="2026-03-01T12:05:00Z")
    event = accepted(track(timestamp="2026-03-01T12:04:00Z"), request)
    assert event.original_timestamp == dt.datetime(2026, 3, 1, 12, 4, tzinfo=dt.UTC)
    assert event.timestamp == RECEIVED - dt.timedelta(minutes=1)
    assert event.payload["originalTimestamp"] == "2026-03-01T12:04:00.000Z"
    assert event.payload["timestamp"] == "2026-03-01T11:59:00.000Z"


def test_original_timestamp_wins_over_a_client_timestamp() -> None:
    event = accepted(track(originalTimestamp="2026-03-01T10:00:00Z", timestamp="2026-03-01T09:00:00Z"))
    assert event.original_timestamp == dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)


def test_offsets_and_naive_times_are_read_as_instants() -> None:
    event = accepted(track(originalTimestamp="2026-03-01T13:00:00+02:00", sentAt="2026-03-01T11:00:10"))
    assert event.original_timestamp == dt.datetime(2026, 3, 1, 11, 0, tzinfo=dt.UTC)
    assert event.sent_at == dt.datetime(2026, 3, 1, 11, 0, 10, tzinfo=dt.UTC)  # naive = UTC
    assert event.timestamp == RECEIVED - dt.timedelta(seconds=10)


def test_an_unreadable_time_is_quarantined_naming_the_field() -> None:
    found = problems(track(sentAt="yesterday"))
    assert codes(found) == {("Datatype-Mismatch", "/sentAt")}
    assert "ISO-8601" in found[0].message
    assert codes(problems(track(originalTimestamp=1700000000))) == {("Datatype-Mismatch", "/originalTimestamp")}


def test_a_correction_outside_representable_years_is_quarantined_not_raised() -> None:
    found = problems(track(originalTimestamp="0001-01-01T00:00:00Z", sentAt="9999-12-31T00:00:00Z"))
    assert codes(found) == {("Invalid-Value", "/originalTimestamp")}


def test_iso_pads_early_years_and_keeps_milliseconds() -> None:
    assert iso(dt.datetime(5, 1, 2, 3, 4, 5, 678_999, tzinfo=dt.UTC)) == "0005-01-02T03:04:05.678Z"
    assert parse_instant(iso(dt.datetime(5, 1, 2, tzinfo=dt.UTC))) == dt.datetime(5, 1, 2, tzinfo=dt.UTC)


# -- messageId ---------------------------------------------------------------------------------------
def test_message_id_is_kept_trimmed() -> None:
    event = accepted(track(messageId="  m-1  "))
    assert event.message_id == "m-1"
    assert event.payload["messageId"] == "m-1"


def test_message_id_is_generated_when_missing_empty_or_null() -> None:
    ids = {accepted(track(**extra)).message_id for extra in ({}, {"messageId": ""}, {"messageId": None})}
    assert len(ids) == 3
    assert all(i.startswith("srv-") and len(i) <= MAX_MESSAGE_ID for i in ids)


def test_numeric_message_id_is_stringified() -> None:
    assert accepted(track(messageId=12345)).message_id == "12345"


def test_message_id_over_100_characters_is_quarantined() -> None:
    assert accepted(track(messageId="m" * 100)).message_id == "m" * 100
    found = problems(track(messageId="m" * 101))
    assert codes(found) == {("Invalid-Value", "/messageId")}
    assert "101" in found[0].message


def test_message_id_of_another_type_is_quarantined() -> None:
    assert codes(problems(track(messageId={"a": 1}))) == {("Datatype-Mismatch", "/messageId")}


# -- ids and fields ------------------------------------------------------------------------------------
def test_numeric_ids_are_stringified() -> None:
    event = accepted({"type": "identify", "userId": 42, "anonymousId": 7.5})
    assert (event.user_id, event.anonymous_id) == ("42", "7.5")
    assert event.payload["userId"] == "42"
    group = accepted({"type": "group", "userId": "u", "groupId": 99})
    assert group.payload["groupId"] == "99"


def test_ids_of_other_types_are_quarantined() -> None:
    assert codes(problems(track(userId=True))) >= {("Datatype-Mismatch", "/userId")}
    assert codes(problems(track(anonymousId=["a"], userId="u"))) == {("Datatype-Mismatch", "/anonymousId")}


def test_missing_ids_are_quarantined() -> None:
    base = {"type": "track", "event": "X"}
    for ids in ({}, {"userId": None}, {"userId": "  ", "anonymousId": ""}):
        assert codes(problems({**base, **ids})) == {("Required-Missing", "/userId")}
    assert accepted({**base, "anonymousId": "anon-1"}).anonymous_id == "anon-1"


def test_track_needs_an_event_name() -> None:
    for event in (None, "", "   ", 5):
        assert ("Required-Missing", "/event") in codes(problems({"type": "track", "userId": "u", "event": event}))
    assert accepted(track(event="  Signed Up ")).event == "Signed Up"


def test_alias_needs_previous_id_and_group_needs_group_id() -> None:
    assert codes(problems({"type": "alias", "userId": "u"})) == {("Required-Missing", "/previousId")}
    assert accepted({"type": "alias", "userId": "u", "previousId": "anon"}).payload["previousId"] == "anon"
    assert codes(problems({"type": "group", "userId": "u"})) == {("Required-Missing", "/groupId")}


def test_unknown_or_missing_type_is_quarantined() -> None:
    assert ("Unknown-Type", "/type") in codes(problems({"type": "merge", "userId": "u"}))
    assert ("Unknown-Type", "/type") in codes(problems({"userId": "u"}))


def test_object_fields_must_be_objects() -> None:
    for name in ("context", "properties", "traits", "integrations"):
        assert codes(problems(track(**{name: ["not", "an", "object"]}))) == {("Datatype-Mismatch", f"/{name}")}
    # explicit nulls are unset fields (the Python SDKs send them)
    event = accepted(track(context=None, properties=None, traits=None, integrations=None))
    assert event.payload["context"] == {"ip": "203.0.113.9"}


def test_a_non_object_item_is_quarantined() -> None:
    for item in ("track", 3, None, [1, 2]):
        assert codes(problems(item)) == {("Invalid-Event", "")}


def test_an_event_over_the_size_limit_is_quarantined() -> None:
    found = problems(track(properties={"blob": "x" * 2000}), meta(max_event_bytes=1024))
    assert codes(found) == {("Event-Too-Large", "")}


def test_every_problem_of_an_event_is_reported_at_once() -> None:
    found = problems({"type": "track", "messageId": "m" * 150, "context": 3})
    assert codes(found) == {
        ("Required-Missing", "/userId"),
        ("Required-Missing", "/event"),
        ("Invalid-Value", "/messageId"),
        ("Datatype-Mismatch", "/context"),
    }


# -- batch-level fields and context.ip ------------------------------------------------------------------
def test_batch_context_and_integrations_merge_with_event_precedence() -> None:
    request = meta(
        batch_context={"library": {"name": "analytics-python"}, "locale": "en-US"},
        batch_integrations={"All": True, "Salesforce": False},
    )
    event = accepted(track(context={"locale": "fr-FR"}, integrations={"Salesforce": True}), request)
    assert event.payload["context"]["library"] == {"name": "analytics-python"}
    assert event.payload["context"]["locale"] == "fr-FR"
    assert event.payload["integrations"] == {"All": True, "Salesforce": True}


def test_integrations_are_absent_when_nobody_sent_them() -> None:
    assert "integrations" not in accepted(track()).payload


def test_context_ip_is_filled_from_the_request_only_when_absent() -> None:
    assert accepted(track()).payload["context"]["ip"] == "203.0.113.9"
    assert accepted(track(context={"ip": "198.51.100.1"})).payload["context"]["ip"] == "198.51.100.1"
    assert "ip" not in accepted(track(), meta(ip=None)).payload["context"]


def test_write_key_is_not_stored_in_the_payload() -> None:
    assert "writeKey" not in accepted(track(writeKey="wk_secret_0001")).payload


def test_the_raw_item_is_not_modified() -> None:
    item = track(context={"locale": "de"}, userId=5)
    snapshot = {**item, "context": dict(item["context"])}
    accepted(item, meta(batch_context={"app": {"name": "x"}}))
    assert item == snapshot


# -- properties ------------------------------------------------------------------------------------------
_ORJSON_INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson.loads can produce
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | _ORJSON_INTS | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
EXTREME_TIMES = st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:30:00+01:00"])
TIME_TEXT = st.datetimes(timezones=st.just(dt.UTC)).map(lambda d: d.isoformat()) | EXTREME_TIMES | st.text(max_size=30)
ID_VALUES = st.none() | st.text(max_size=20) | _ORJSON_INTS | st.booleans() | st.floats(allow_nan=False)
EVENT_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from([*EVENT_TYPES, "merge"]) | JSON_VALUES,
        "event": st.text(max_size=20) | JSON_VALUES,
        "userId": ID_VALUES,
        "anonymousId": ID_VALUES,
        "previousId": ID_VALUES,
        "groupId": ID_VALUES,
        "messageId": st.text(max_size=120) | JSON_VALUES,
        "originalTimestamp": TIME_TEXT | JSON_VALUES,
        "timestamp": TIME_TEXT | JSON_VALUES,
        "sentAt": TIME_TEXT | JSON_VALUES,
        "context": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3) | JSON_VALUES,
        "properties": JSON_VALUES,
        "traits": JSON_VALUES,
        "integrations": JSON_VALUES,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item=JSON_VALUES | EVENT_LIKE, batch_sent_at=TIME_TEXT | JSON_VALUES)
def test_normalize_never_raises_on_arbitrary_json(item: Any, batch_sent_at: Any) -> None:
    outcome = normalize(item, meta(batch_sent_at=batch_sent_at, batch_context={"app": {"name": "a"}}))
    if isinstance(outcome, list):
        assert outcome, "a refusal names at least one problem"
        assert all(isinstance(p, Problem) and p.code and p.message for p in outcome)
    else:
        assert outcome.type in EVENT_TYPES
        assert outcome.user_id or outcome.anonymous_id
        assert 0 < len(outcome.message_id) <= MAX_MESSAGE_ID


WELL_FORMED = st.fixed_dictionaries(
    {
        "type": st.just("track"),
        "event": st.just("Workout Completed"),
        "userId": st.text(min_size=1, max_size=8).filter(str.strip),
    },
    optional={
        "originalTimestamp": st.datetimes(
            min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.timezones()
        ).map(lambda d: d.isoformat()),
        "timestamp": st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1)).map(
            lambda d: d.isoformat() + "Z"
        ),
        "sentAt": st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1)).map(
            lambda d: d.isoformat() + "Z"
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    item=WELL_FORMED,
    batch_sent_at=st.none()
    | st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1)).map(lambda d: d.isoformat()),
    received=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2090, 1, 1)),
)
def test_correction_preserves_the_time_between_call_and_send(
    item: dict[str, Any], batch_sent_at: str | None, received: dt.datetime
) -> None:
    request = meta(received_at=received.replace(tzinfo=dt.UTC), batch_sent_at=batch_sent_at)
    event = accepted(item, request)
    assert event.timestamp - event.original_timestamp == event.received_at - event.sent_at
    # the stored payload says the same as the columns, to the millisecond
    for field, value in (
        ("timestamp", event.timestamp),
        ("originalTimestamp", event.original_timestamp),
        ("sentAt", event.sent_at),
        ("receivedAt", event.received_at),
    ):
        assert parse_instant(event.payload[field]) == value.replace(microsecond=value.microsecond // 1000 * 1000)
