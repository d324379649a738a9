"""The reference pages stay true: every setting, route and command that exists is documented, with its default.

A new field in a configuration model, a new route or a new CLI command fails here until README.md and
docs/configuration.md describe it.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from orchestrion.api import admin, health, ingest, pipeline_status, profiles, sdk_config
from orchestrion.cli import app as cli_app
from orchestrion.workspace import WorkspaceConfig

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()


def _nested_model(annotation: object) -> tuple[type[BaseModel], bool] | None:
    """(model, is_list) when a field holds a model or a list of models."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item, True
    return None


def _leaf_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, str | None]]:
    """(dotted path, section heading on docs/configuration.md, rendered default or None when required)."""
    for name, info in model.model_fields.items():
        nested = _nested_model(info.annotation)
        if nested is not None:
            inner, is_list = nested
            yield from _leaf_fields(inner, f"{prefix}{name}{'[]' if is_list else ''}.")
            continue
        yield f"{prefix}{name}", prefix.rstrip("."), _render(info.get_default(call_default_factory=True))


def _map_entry_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, str | None]]:
    """The fields of models held in maps (`identity.identifiers.*.limit`): each map has its own section, `.*`."""
    for name, info in model.model_fields.items():
        nested = _nested_model(info.annotation)
        if nested is not None:
            inner, is_list = nested
            yield from _map_entry_fields(inner, f"{prefix}{name}{'[]' if is_list else ''}.")
        elif typing.get_origin(info.annotation) is dict:
            _, value_type = typing.get_args(info.annotation)
            entry = _nested_model(value_type)
            if entry is not None:
                inner, is_list = entry
                yield from _leaf_fields(inner, f"{prefix}{name}.*{'[]' if is_list else ''}.")


def _render(value: object) -> str | None:
    if value is PydanticUndefined:
        return None
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, dt.timedelta):
        days, seconds = divmod(int(value.total_seconds()), 86400)
        return f"{days}d" if not seconds else f"{int(value.total_seconds())}s"
    if isinstance(value, list):
        return "[]" if not value else str(value)
    if isinstance(value, dict):  # a map of settings: as one would write it in orchestrion.yml
        return "{}" if not value else _yaml_flow(value)
    return str(value)


def _yaml_flow(value: dict[str, object]) -> str:
    """`{user_id: {priority: 1, limit: 1}, ...}`: models show the fields that differ from their own defaults."""

    def plain(item: object) -> object:
        if isinstance(item, BaseModel):
            return item.model_dump(mode="json", exclude_defaults=True)
        if isinstance(item, dict):
            return {key: plain(inner) for key, inner in item.items()}
        return item

    text: str = yaml.safe_dump(plain(value), default_flow_style=True, sort_keys=False, width=100_000)
    return text.strip()


def _table_rows(text: str) -> dict[str, str]:
    """`| \\`name\\` | rest` rows of one Markdown section, by name."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `([^`]+)` \|(.*)$", text, re.MULTILINE)}


def _section(heading: str) -> str:
    title = "Top level" if not heading else f"`{heading}`"
    match = re.search(rf"^### {re.escape(title)}\n(.*?)(?=^#{{1,3}} |\Z)", CONFIGURATION, re.MULTILINE | re.DOTALL)
    assert match, f"docs/configuration.md has no '### {title}' section; add one for these settings"
    return match.group(1)


SETTINGS = list(_leaf_fields(WorkspaceConfig))
MAP_ENTRY_SETTINGS = list(_map_entry_fields(WorkspaceConfig))


@pytest.mark.parametrize(("path", "section", "default"), SETTINGS, ids=[s[0] for s in SETTINGS])
def test_every_setting_is_in_the_configuration_reference_with_its_default(
    path: str, section: str, default: str | None
) -> None:
    field = path.rsplit(".", 1)[-1]
    row = _table_rows(_section(section)).get(field)
    assert row is not None, f"docs/configuration.md: section {section or 'Top level'!r} has no row for `{field}`"
    expected = "required" if default is None else f"`{default}`"
    assert expected in row, f"docs/configuration.md: `{path}` should show its default {expected}: {row}"


@pytest.mark.parametrize(("path", "section", "default"), MAP_ENTRY_SETTINGS, ids=[s[0] for s in MAP_ENTRY_SETTINGS])
def test_every_map_entry_setting_is_in_the_configuration_reference_with_its_default(
    path: str, section: str, default: str | None
) -> None:
    test_every_setting_is_in_the_configuration_reference_with_its_default(path, section, default)


@pytest.mark.parametrize(("path", "section", "default"), SETTINGS, ids=[s[0] for s in SETTINGS])
def test_every_setting_is_in_the_readme_with_its_default(path: str, section: str, default: str | None) -> None:
    row = _table_rows(README).get(path)
    assert row is not None, f"README.md: the configuration table has no row for `{path}`"
    expected = "required" if default is None else f"`{default}`"
    assert expected in row, f"README.md: `{path}` should show its default {expected}: {row}"


def _routes() -> set[str]:
    paths = set()
    for router in (
        ingest.router,
        sdk_config.router,
        admin.router,
        profiles.router,
        pipeline_status.router,
        health.router,
    ):
        for route in router.routes:
            # `{reference:path}` is documented as `{reference}`: the converter is a routing detail
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", getattr(route, "path", ""))
            if getattr(route, "include_in_schema", True):
                paths.add(path)
    return paths


@pytest.mark.parametrize("path", sorted(_routes()))
def test_every_route_is_in_the_readme(path: str) -> None:
    short = path.removeprefix("/v1/") if re.fullmatch(r"/v1/[a-z]", path) else None
    mentioned = f"`{path}`" in README or f" {path}`" in README or f" {path}?" in README or f"{path}," in README
    if short is not None:  # the analytics.js short paths are listed together: `/v1/t`, `/v1/i`, ...
        mentioned = mentioned or f"`/v1/{short}`" in README
    assert mentioned, f"README.md: the HTTP API table does not mention {path}"


def _commands(group: typer.Typer, prefix: str = "orchestrion") -> Iterator[str]:
    command = typer.main.get_command(group)
    stack = [(prefix, command)]
    while stack:
        name, current = stack.pop()
        children = getattr(current, "commands", None)
        if children:
            stack.extend((f"{name} {child}", sub) for child, sub in children.items())
        else:
            yield name


@pytest.mark.parametrize("command", sorted(_commands(cli_app)))
def test_every_command_is_in_the_readme(command: str) -> None:
    assert f"`{command}" in README, f"README.md: the command-line table does not mention `{command}`"
