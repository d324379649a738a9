"""Declarations of computed traits as a user writes them in orchestrion.yml: what is accepted, and errors that name
the file, the trait and the field."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from orchestrion.errors import ConfigError
from orchestrion.model.computed import ComputedTrait, parse_computed_traits

FITNESS = """
computed_traits:
  - name: workouts_completed
    aggregate: count
    event: Workout Completed
  - name: open_tickets
    aggregate: count
    event: Ticket Opened
    window: 30d
    filter: event.properties.status != "resolved"
  - name: minutes_last_24h
    aggregate: sum
    event: Workout Completed
    property: duration.minutes
    window: 24h
  - name: first_plan_viewed
    aggregate: first
    event: Plan Viewed
    property: plan
  - name: page_views
    aggregate: count
    type: page
"""


def test_fitness_declarations_load() -> None:
    traits = parse_computed_traits(yaml.safe_load(FITNESS)["computed_traits"], "orchestrion.yml")
    assert [t.name for t in traits] == [
        "workouts_completed",
        "open_tickets",
        "minutes_last_24h",
        "first_plan_viewed",
        "page_views",
    ]
    minutes = traits[2]
    assert minutes.property_path == ("properties", "duration", "minutes")
    assert minutes.parsed_window.count == 24 and minutes.parsed_window.bucket_us == 3_600_000_000
    assert traits[0].parsed_window.all_time
    assert parse_computed_traits(None, "orchestrion.yml") == []


def _refusal(entry: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as refused:
        parse_computed_traits([{"name": "workouts", "aggregate": "count", **entry}], "models/fitness.yml")
    return str(refused.value)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"aggregate": "average"}, "computed trait 'workouts': aggregate: Input should be 'count', 'sum'"),
        ({"aggregate": "sum"}, "computed trait 'workouts': property: 'sum' needs a property"),
        ({"window": "30 days"}, "computed trait 'workouts': window: cannot read window '30 days'"),
        ({"window": "0d"}, "computed trait 'workouts': window: cannot read window '0d'"),
        ({"window": "1000d"}, "computed trait 'workouts': window: window '1000d' is longer than 400d"),
        ({"type": "page", "event": "Pricing"}, "computed trait 'workouts': event: event names apply to track calls"),
        ({"property": "plan-name"}, "computed trait 'workouts': property: 'plan-name' is not a dotted path"),
        ({"event": "  "}, "computed trait 'workouts': event: an event name cannot be empty"),
        ({"windw": "7d"}, "computed trait 'workouts': windw: Extra inputs are not permitted"),
        ({"filter": "event.properties.(x"}, "computed trait 'workouts': filter: not valid CEL"),
        ({"filter": "event.properties.n * 2 > 4"}, "computed trait 'workouts': filter: arithmetic ('*')"),
        (
            {"name": "workouts completed"},
            "computed trait 'workouts completed': name: 'workouts completed' is not a trait name",
        ),
    ],
)
def test_errors_name_file_trait_and_field(entry: dict[str, Any], expected: str) -> None:
    message = _refusal(entry)
    assert message.startswith("models/fitness.yml: ")
    assert expected in message


def test_an_entry_without_a_name_is_named_by_position() -> None:
    with pytest.raises(ConfigError, match=r"orchestrion.yml: computed trait '#2': name: Field required"):
        parse_computed_traits(
            [{"name": "a", "aggregate": "count"}, {"aggregate": "count"}],
            "orchestrion.yml",
        )


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"'workouts' is declared twice \(entries 1 and 3\)"):
        parse_computed_traits(
            [
                {"name": "workouts", "aggregate": "count"},
                {"name": "minutes", "aggregate": "sum", "property": "m"},
                {"name": "workouts", "aggregate": "count", "window": "7d"},
            ],
            "orchestrion.yml",
        )


def test_computed_traits_must_be_a_list() -> None:
    with pytest.raises(ConfigError, match="computed_traits must be a list"):
        parse_computed_traits({"workouts": {"aggregate": "count"}}, "orchestrion.yml")


def test_fingerprint_changes_with_what_shapes_the_state_only() -> None:
    base = ComputedTrait(name="w", aggregate="count", event="Workout Completed", window="7d")
    assert (
        base.fingerprint
        == ComputedTrait(name="other", aggregate="count", event="Workout Completed", window="7d").fingerprint
    )
    for change in ({"window": "30d"}, {"event": "Workout Started"}, {"filter": "event.properties.n > 1"}):
        changed = ComputedTrait.model_validate({**base.model_dump(), **change})
        assert changed.fingerprint != base.fingerprint
