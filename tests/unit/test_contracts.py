"""Tracking plans: loading errors, version choice, violations with JSON pointers, omit, block, breaking changes."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path
from typing import Any

import pytest

from orchestrion.collect.config import ContractMode, SourceConfig
from orchestrion.collect.contracts import ContractSet, apply_omit, breaking_changes, load_contracts
from orchestrion.collect.event import NormalizedEvent, QuarantinedEvent
from orchestrion.collect.gateway import check_contract
from orchestrion.collect.normalize import RequestMeta, normalize
from orchestrion.errors import ConfigError

WORKOUT_PLAN = """\
events:
  - name: Workout Completed
    version: 1
    properties:
      required: [duration_min]
      properties:
        duration_min: {type: integer}
  - name: Workout Completed
    version: 2
    properties:
      required: [duration_min, kind]
      additionalProperties: false
      properties:
        duration_min: {type: integer}
        kind: {type: string}
        coach: {type: object, properties: {name: {type: string}}}
  - name: identify
    type: identify
    traits:
      properties:
        email: {type: string}
        age: {type: integer}
"""


def plan(tmp_path: Path, *files: str) -> ContractSet:
    folder = tmp_path / "contracts"
    folder.mkdir(exist_ok=True)
    for index, text in enumerate(files):
        (folder / f"plan{index}.yml").write_text(textwrap.dedent(text))
    return load_contracts(folder)


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        plan(tmp_path, text)
    return str(caught.value)


def event(**fields: Any) -> NormalizedEvent:
    item = {"type": "track", "userId": "u1", "messageId": "m1", **fields}
    outcome = normalize(item, RequestMeta(source="app", received_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), ip=None))
    assert isinstance(outcome, NormalizedEvent), outcome
    return outcome


def workout(properties: dict[str, Any], version: int | None = None) -> NormalizedEvent:
    context = {"protocols": {"event_version": version}} if version is not None else {}
    return event(event="Workout Completed", properties=properties, context=context)


def violations(contracts: ContractSet, item: NormalizedEvent) -> set[tuple[str, str]]:
    return {(p.code, p.field) for p in contracts.check(item, ContractMode.ALLOW).violations}


# -- loading ---------------------------------------------------------------------------------------------
def test_no_contracts_folder_is_an_empty_plan_that_checks_nothing(tmp_path: Path) -> None:
    contracts = load_contracts(tmp_path / "contracts")
    assert contracts.empty
    assert contracts.check(event(event="Anything"), ContractMode.BLOCK).violations == []


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("events: [\n", ["contracts/plan0.yml", "not valid YAML"]),
        ("- a\n- b\n", ["contracts/plan0.yml", "top level"]),
        ("evnts: []\n", ["contracts/plan0.yml", "evnts"]),
        ("mode: strict\nevents: []\n", ["contracts/plan0.yml", "'strict'", "allow, omit or block"]),
        ("events: {name: X}\n", ["contracts/plan0.yml", "'events' must be a list"]),
        ("events:\n  - version: 1\n", ["contracts/plan0.yml", "events[0]", "'name'"]),
        ("events:\n  - name: X\n    type: merge\n", ["event 'X'", "type 'merge'"]),
        ("events:\n  - name: X\n    version: 0\n", ["event 'X'", "version must be a positive integer"]),
        ("events:\n  - name: X\n    version: two\n", ["event 'X'", "'two'"]),
        ("events:\n  - name: X\n    properties: [a]\n", ["event 'X'", "'properties' must be a JSON Schema"]),
        (
            "events:\n  - name: Signed Up\n    properties:\n      properties:\n        plan: {type: strng}\n",
            ["contracts/plan0.yml", "event 'Signed Up'", "version 1", "not a valid JSON Schema", "strng"],
        ),
        ("common: {type: 12}\n", ["contracts/plan0.yml", "common", "not a valid JSON Schema"]),
    ],
)
def test_loading_errors_name_the_file_the_event_and_the_field(tmp_path: Path, text: str, needles: list[str]) -> None:
    message = load_error(tmp_path, text)
    for needle in needles:
        assert needle in message


def test_a_version_declared_twice_names_both_files(tmp_path: Path) -> None:
    twice = "events:\n  - name: X\n    version: 3\n"
    with pytest.raises(ConfigError) as caught:
        plan(tmp_path, twice, twice)
    assert "version 3 is declared twice" in str(caught.value)
    assert "plan0.yml" in str(caught.value)
    assert "plan1.yml" in str(caught.value)


# -- versions ----------------------------------------------------------------------------------------------
def test_the_latest_version_applies_when_the_event_names_none(tmp_path: Path) -> None:
    contracts = plan(tmp_path, WORKOUT_PLAN)
    verdict = contracts.check(workout({"duration_min": 30}), ContractMode.ALLOW)
    assert verdict.contract is not None and verdict.contract.version == 2
    assert {(p.code, p.field) for p in verdict.violations} == {("Required-Missing", "/properties/kind")}


def test_context_protocols_event_version_picks_the_version(tmp_path: Path) -> None:
    contracts = plan(tmp_path, WORKOUT_PLAN)
    assert violations(contracts, workout({"duration_min": 30}, version=1)) == set()
    assert violations(contracts, workout({"duration_min": 30}, version="1")) == set()  # type: ignore[arg-type]
    assert violations(contracts, workout({"duration_min": 30}, version=2)) == {("Required-Missing", "/properties/kind")}


def test_an_unknown_version_is_an_unplanned_event(tmp_path: Path) -> None:
    contracts = plan(tmp_path, WORKOUT_PLAN)
    verdict = contracts.check(workout({"duration_min": 30}, version=7), ContractMode.ALLOW)
    assert [(p.code, p.field) for p in verdict.violations] == [("Unplanned-Event", "/context/protocols/event_version")]
    assert "known: 1, 2" in verdict.violations[0].message


# -- the four violation types -------------------------------------------------------------------------------
def test_unplanned_event(tmp_path: Path) -> None:
    contracts = plan(tmp_path, WORKOUT_PLAN)
    assert violations(contracts, event(event="Pizza Ordered")) == {("Unplanned-Event", "/event")}
    # a page without a plan is fine: only track events need one
    assert violations(contracts, event(type="page", name="Pricing")) == set()


def test_required_missing_datatype_mismatch_and_additional_properties_with_pointers(tmp_path: Path) -> None:
    contracts = plan(tmp_path, WORKOUT_PLAN)
    found = violations(
        contracts, workout({"duration_min": "thirty", "coach": {"name": 5}, "mood": "great", "a/b~c": 1})
    )
    assert found == {
        ("Required-Missing", "/properties/kind"),
        ("Datatype-Mismatch", "/properties/duration_min"),
        ("Datatype-Mismatch", "/properties/coach/name"),
        ("Additional-Properties", "/properties/mood"),
        ("Additional-Properties", "/properties/a~1b~0c"),  # RFC 6901 escaping
    }


def test_identify_traits_are_checked_including_context_traits(tmp_path: Path) -> None:
    contracts = plan(tmp_path, WORKOUT_PLAN)
    identify = event(type="identify", traits={"email": 5}, context={"traits": {"age": "old"}})
    assert violations(contracts, identify) == {
        ("Datatype-Mismatch", "/traits/email"),
        ("Datatype-Mismatch", "/traits/age"),
    }


def test_common_rules_apply_to_every_event(tmp_path: Path) -> None:
    contracts = plan(
        tmp_path,
        WORKOUT_PLAN,
        "common:\n  properties:\n    context:\n      required: [app]\n",
    )
    assert ("Required-Missing", "/context/app") in violations(contracts, workout({"duration_min": 1, "kind": "run"}))


def test_draft_07_schemas_are_accepted(tmp_path: Path) -> None:
    contracts = plan(
        tmp_path,
        """\
        events:
          - name: Legacy
            properties:
              $schema: http://json-schema.org/draft-07/schema#
              required: [a]
        """,
    )
    assert violations(contracts, event(event="Legacy", properties={})) == {("Required-Missing", "/properties/a")}


# -- modes -------------------------------------------------------------------------------------------------
def source(mode: ContractMode) -> SourceConfig:
    return SourceConfig(name="app", write_key="wk_app_test_0001", contract_mode=mode)


def test_allow_stores_and_annotates_the_violations(tmp_path: Path) -> None:
    contracts = plan(tmp_path, WORKOUT_PLAN)
    checked = check_contract(workout({"duration_min": 30, "kind": 1}), contracts, source(ContractMode.ALLOW), 0)
    assert isinstance(checked, NormalizedEvent)
    assert checked.payload["properties"] == {"duration_min": 30, "kind": 1}
    assert checked.payload["context"]["violations"] == [
        {"type": "Datatype-Mismatch", "field": "/properties/kind", "message": "1 is not of type 'string'"}
    ]
    assert checked.payload["context"]["trackingPlan"] == {"file": "contracts/plan0.yml", "version": 2}


def test_omit_strips_the_offending_properties_and_annotates(tmp_path: Path) -> None:
    contracts = plan(tmp_path, WORKOUT_PLAN)
    item = workout(
        {"duration_min": 30, "kind": 1, "mood": "great", "coach": {"name": 5, "id": "c1"}, "utm/src~x": "ad"}
    )
    checked = check_contract(item, contracts, source(ContractMode.OMIT), 0)
    assert isinstance(checked, NormalizedEvent)
    assert checked.payload["properties"] == {"duration_min": 30, "coach": {"id": "c1"}}
    assert {v["field"] for v in checked.payload["context"]["violations"]} == {
        "/properties/kind",
        "/properties/mood",
        "/properties/coach/name",
        "/properties/utm~1src~0x",
    }


def test_omit_strips_traits_in_both_places(tmp_path: Path) -> None:
    payload = {"traits": {"email": 5, "name": "Ann"}, "context": {"traits": {"email": 6}}}
    contracts = plan(tmp_path, WORKOUT_PLAN)
    problems = contracts.check(event(type="identify", **payload), ContractMode.OMIT).violations
    stripped = apply_omit(payload, problems)
    assert stripped == {"traits": {"name": "Ann"}, "context": {"traits": {}}}
    assert payload["traits"] == {"email": 5, "name": "Ann"}  # the input is not modified


def test_block_quarantines_with_the_reasons(tmp_path: Path) -> None:
    contracts = plan(tmp_path, WORKOUT_PLAN)
    checked = check_contract(workout({"duration_min": 30}), contracts, source(ContractMode.BLOCK), 4)
    assert isinstance(checked, QuarantinedEvent)
    assert checked.kind == "blocked"
    assert checked.batch_index == 4
    assert checked.message_id == "m1"
    assert checked.event == "Workout Completed"
    assert [(p.code, p.field) for p in checked.reasons] == [("Required-Missing", "/properties/kind")]


def test_a_contract_mode_overrides_the_source_mode(tmp_path: Path) -> None:
    contracts = plan(tmp_path, "mode: block\n" + WORKOUT_PLAN)
    assert isinstance(check_contract(workout({}), contracts, source(ContractMode.ALLOW), 0), QuarantinedEvent)
    # an unplanned event has no contract: the source mode applies
    assert isinstance(check_contract(event(event="Other"), contracts, source(ContractMode.ALLOW), 0), NormalizedEvent)


def test_a_valid_event_passes_untouched(tmp_path: Path) -> None:
    contracts = plan(tmp_path, WORKOUT_PLAN)
    item = workout({"duration_min": 30, "kind": "run"})
    checked = check_contract(item, contracts, source(ContractMode.BLOCK), 0)
    assert checked is item
    assert "violations" not in checked.payload["context"]


# -- breaking changes ---------------------------------------------------------------------------------------
OLD = {
    "type": "object",
    "required": ["plan"],
    "properties": {"plan": {"type": "string"}, "seats": {"type": "number"}, "meta": {"type": "object"}},
}


def changed(**overrides: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {**OLD, "properties": dict(OLD["properties"])}
    for key, value in overrides.items():
        if key in OLD["properties"]:
            schema["properties"][key] = value
        else:
            schema[key] = value
    return schema


def test_a_new_required_field_is_breaking() -> None:
    reasons = breaking_changes(OLD, changed(required=["plan", "seats"]))
    assert reasons == ["new required field 'seats'"]


def test_a_nested_new_required_field_names_its_path() -> None:
    reasons = breaking_changes(OLD, changed(meta={"type": "object", "required": ["source"]}))
    assert reasons == ["new required field 'meta.source'"]


def test_narrowing_a_type_is_breaking() -> None:
    assert breaking_changes(OLD, changed(seats={"type": "integer"})) == [
        "type of 'seats' changed from ['integer', 'number'] to ['integer']"
    ]
    assert breaking_changes(OLD, changed(plan={"type": "integer"})) == [
        "type of 'plan' changed from ['string'] to ['integer']"
    ]


def test_forbidding_additional_properties_is_breaking() -> None:
    assert breaking_changes(OLD, changed(additionalProperties=False)) == ["'(root)' now forbids additional properties"]


@pytest.mark.parametrize(
    "new",
    [
        changed(required=[]),  # a field becomes optional
        changed(seats={"type": ["number", "null"]}),  # a type widens
        {**OLD, "properties": {**OLD["properties"], "note": {"type": "string"}}},  # a new optional field
        changed(additionalProperties=True),
        changed(seats={"type": "number", "minimum": 0, "description": "how many"}),
    ],
)
def test_non_breaking_changes_are_accepted(new: dict[str, Any]) -> None:
    assert breaking_changes(OLD, new) == []
