"""Warehouse landing: the Segment/RudderStack table shapes as views over the one `events` table.

`tracks`, `identifies`, `pages`, `screens`, `groups`, `aliases` carry the standard snake_case columns and
`context_*` fields; every track event name gets its own view (`workout_completed`) with its properties
flattened into columns. Columns are discovered as events arrive and recorded in `landing_columns`; view SQL
is written once (DuckDB dialect) and transpiled per backend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from orchestrion.collect.event import NormalizedEvent

STANDARD_TABLES = {
    "track": "tracks",
    "identify": "identifies",
    "page": "pages",
    "screen": "screens",
    "group": "groups",
    "alias": "aliases",
}
# Names a per-event view may not take: the standard views and Orchestrion's own tables.
RESERVED_NAMES = frozenset(STANDARD_TABLES.values()) | {
    "events",
    "message_ids",
    "quarantine",
    "landing_columns",
    "landing_events",
    "schema_migrations",
    "users",
    "profiles",
    "identity_graph",
    "profile_merges",
    "consent_changes",
    "model_builds",
    "event_profiles",
    "audience_memberships",
    "audience_changes",
}
CONTEXT_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (f"context_{path.replace('.', '_')}", f"context.{path}")
    for path in (
        "ip",
        "library.name",
        "library.version",
        "locale",
        "timezone",
        "user_agent",
        "page.path",
        "page.url",
        "page.title",
        "page.referrer",
        "page.search",
        "os.name",
        "os.version",
        "device.id",
        "device.type",
        "device.manufacturer",
        "device.model",
        "app.name",
        "app.version",
        "app.build",
        "campaign.source",
        "campaign.medium",
        "campaign.name",
        "campaign.term",
        "campaign.content",
        "screen.width",
        "screen.height",
        "network.carrier",
        "location.country",
        "location.city",
        "protocols.event_version",
    )
)
BASE_COLUMNS = (
    "id",
    "message_id",
    "source",
    "user_id",
    "anonymous_id",
    "timestamp",
    "original_timestamp",
    "sent_at",
    "received_at",
    "channel",
)
TYPE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "track": (("event", "event"), ("event_text", "event")),
    "page": (("name", "name"), ("category", "category")),
    "screen": (("name", "name"), ("category", "category")),
    "group": (("group_id", "groupId"),),
    "alias": (("previous_id", "previousId"),),
    "identify": (),
}
SQL_TYPES = {"string": "VARCHAR", "number": "DOUBLE", "boolean": "BOOLEAN", "json": "JSON"}
_MAX_FLATTEN_DEPTH = 3
_SAFE_KEY = re.compile(r"^[^\"'\\\x00-\x1f]{1,128}$")


@dataclass(frozen=True, slots=True)
class LandingColumn:
    table_name: str
    column_name: str
    json_path: str  # dotted path under the event, e.g. properties.plan.name
    data_type: str  # string | number | boolean | json


def snake_case(name: str) -> str:
    """`Workout Completed` → `workout_completed`; a leading digit gets an underscore."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    text = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    if not text:
        text = "unnamed"
    if text[0].isdigit():
        text = "_" + text
    return text[:60]


def event_table_name(event: str) -> str:
    name = snake_case(event)
    return f"{name}_event" if name in RESERVED_NAMES else name


def json_type(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "json"


def _flatten(
    prefix_path: str, prefix_col: str, obj: dict[str, Any], depth: int, out: list[tuple[str, str, str]]
) -> None:
    for key, value in obj.items():
        if not isinstance(key, str) or not _SAFE_KEY.match(key):
            continue
        column = f"{prefix_col}_{snake_case(key)}" if prefix_col else snake_case(key)
        path = f"{prefix_path}.{key}"
        if isinstance(value, dict) and depth < _MAX_FLATTEN_DEPTH:
            _flatten(path, column, value, depth + 1, out)
            continue
        kind = json_type(value)
        if kind is not None:
            out.append((column, path, kind))


def discover(event: NormalizedEvent) -> tuple[str, list[tuple[str, str, str]]]:
    """The landing view an event feeds and the (column, path, type) triples its payload carries.

    `sql_store.landing_shape` summarizes exactly the fields read here (to skip events already recorded):
    reading another field here means adding it there.
    """
    payload = event.payload
    out: list[tuple[str, str, str]] = []
    if event.type == "track":
        table = event_table_name(event.event or "")
        props = payload.get("properties")
        if isinstance(props, dict):
            _flatten("properties", "", props, 1, out)
    elif event.type in ("identify", "group"):
        table = STANDARD_TABLES[event.type]
        context_traits = (payload.get("context") or {}).get("traits")
        if isinstance(context_traits, dict):
            # RudderStack's identify sends traits only in context.traits, Segment's at the top: an identify
            # column is recorded under `traits.*` and its view reads either place (see `view_sql`).
            _flatten("traits" if event.type == "identify" else "context.traits", "", context_traits, 1, out)
        traits = payload.get("traits")
        if isinstance(traits, dict):
            _flatten("traits", "", traits, 1, out)
    elif event.type in ("page", "screen"):
        table = STANDARD_TABLES[event.type]
        props = payload.get("properties")
        if isinstance(props, dict):
            _flatten("properties", "", props, 1, out)
    else:
        table = STANDARD_TABLES[event.type]
    return table, out


def merge_type(old: str, new: str) -> str:
    """A column seen with two JSON types widens to string (or json, if either side is json)."""
    if old == new:
        return old
    return "json" if "json" in (old, new) else "string"


def _extract(path: str, data_type: str) -> str:
    json_path = "$." + ".".join(
        f'"{part}"' if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", part) else part for part in path.split(".")
    )
    if data_type == "json":
        return f"json_extract(payload, '{json_path}')"
    text = f"json_extract_string(payload, '{json_path}')"
    if data_type == "string":
        return text
    return f"CAST({text} AS {SQL_TYPES[data_type]})"


def view_sql(table_name: str, event_type: str, columns: list[LandingColumn], events: list[str] | None = None) -> str:
    """CREATE VIEW text (DuckDB dialect) for one landing view."""
    select = [
        "message_id AS id",
        "message_id",
        "source",
        "user_id",
        "anonymous_id",
        '"timestamp"',
        "original_timestamp",
        "sent_at",
        "received_at",
        _extract("channel", "string") + " AS channel",
    ]
    taken = set(BASE_COLUMNS)
    for column, path in TYPE_COLUMNS[event_type]:
        select.append(f"{_extract(path, 'string')} AS {column}")
        taken.add(column)
    for column, path in CONTEXT_COLUMNS:
        select.append(f"{_extract(path, 'string')} AS {column}")
        taken.add(column)
    select.append(f"{_extract('context.violations', 'json')} AS context_violations")
    taken.add("context_violations")
    for col in sorted(columns, key=lambda c: c.column_name):
        name = col.column_name if col.column_name not in taken else f"property_{col.column_name}"
        if name in taken:
            continue
        taken.add(name)
        value = _extract(col.json_path, col.data_type)
        if event_type == "identify" and col.json_path.startswith("traits."):
            value = f"coalesce({value}, {_extract('context.' + col.json_path, col.data_type)})"
        select.append(f"{value} AS {name}")
    where = f"type = '{event_type}'"
    if events is not None:
        quoted = ", ".join("'" + e.replace("'", "''") + "'" for e in sorted(events))
        where += f" AND event IN ({quoted})"
    return f"CREATE VIEW {table_name} AS SELECT {', '.join(select)} FROM events WHERE {where}"
