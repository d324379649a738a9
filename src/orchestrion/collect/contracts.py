"""Data contracts (tracking plans): `contracts/*.yml`, one JSON Schema per (event, version).

A contract file looks like::

    mode: block                  # optional; overrides the source's contract_mode for these events
    events:
      - name: Workout Completed  # a track event; identify/page/screen/group use `type:`
        version: 1
        properties: {JSON Schema of the properties}
    common: {JSON Schema applied to the whole event}   # optional

The version used is `context.protocols.event_version` when the event names one, else the latest.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator

from orchestrion.collect.config import ContractMode
from orchestrion.collect.event import NormalizedEvent, Problem
from orchestrion.errors import ConfigError
from orchestrion.workspace import yaml_problem

CONTRACT_TYPES = ("track", "identify", "page", "screen", "group")


@dataclass(frozen=True)
class EventContract:
    name: str
    type: str
    version: int
    schema: dict[str, Any]
    file: str
    mode: ContractMode | None
    validator: Validator = field(compare=False, repr=False)

    @property
    def schema_hash(self) -> str:
        return hashlib.sha256(orjson.dumps(self.schema, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


@dataclass(frozen=True)
class ContractCheck:
    """The verdict of the plan on one event: its violations and the mode that applies."""

    violations: list[Problem]
    mode: ContractMode
    contract: EventContract | None


def _validator_for(schema: dict[str, Any]) -> Validator:
    declared = str(schema.get("$schema", ""))
    cls: Any = Draft7Validator if "draft-07" in declared else Draft202012Validator
    cls.check_schema(schema)
    validator: Validator = cls(schema)
    return validator


def _contract_key(event_type: str, name: str) -> tuple[str, str]:
    # identify/group plans are keyed by type: their `name` is only a label
    return (event_type, name if event_type in ("track", "page", "screen") else event_type)


class ContractSet:
    """Every contract of a workspace, indexed by (type, name) and version."""

    def __init__(self, contracts: list[EventContract], common: list[tuple[str, Validator]]) -> None:
        self.contracts = contracts
        self._common = common
        self._by_key: dict[tuple[str, str], dict[int, EventContract]] = {}
        for contract in contracts:
            self._by_key.setdefault(_contract_key(contract.type, contract.name), {})[contract.version] = contract

    @property
    def empty(self) -> bool:
        return not self.contracts and not self._common

    def lookup(self, event_type: str, name: str) -> dict[int, EventContract] | None:
        return self._by_key.get(_contract_key(event_type, name))

    def check(self, event: NormalizedEvent, source_mode: ContractMode) -> ContractCheck:
        """Validate one normalized event; an empty plan checks nothing."""
        if self.empty or event.type == "alias":
            return ContractCheck([], source_mode, None)
        payload = event.payload
        problems: list[Problem] = []
        for _file, validator in self._common:
            problems.extend(_problems(validator, payload, ""))
        name = (event.event or "") if event.type == "track" else str(payload.get("name") or "")
        versions = self.lookup(event.type, name)
        if event.type in ("page", "screen") and versions is None:
            versions = self.lookup(event.type, "")  # one plan for every page/screen
        if versions is None:
            if event.type == "track":
                problems.append(Problem("Unplanned-Event", "/event", f"event {name!r} is not in the tracking plan"))
            return ContractCheck(problems, source_mode, None)
        wanted = _requested_version(payload)
        if wanted is not None and wanted not in versions:
            known = ", ".join(str(v) for v in sorted(versions))
            problems.append(
                Problem(
                    "Unplanned-Event",
                    "/context/protocols/event_version",
                    f"version {wanted} of {name or event.type!r} is not in the plan (known: {known})",
                )
            )
            return ContractCheck(problems, source_mode, None)
        contract = versions[wanted if wanted is not None else max(versions)]
        if event.type in ("identify", "group"):
            body: dict[str, Any] = {}
            context_traits = (payload.get("context") or {}).get("traits")
            if isinstance(context_traits, dict):
                body.update(context_traits)
            if isinstance(payload.get("traits"), dict):
                body.update(payload["traits"])
            problems.extend(_problems(contract.validator, body, "/traits"))
        else:
            props = payload.get("properties")
            problems.extend(_problems(contract.validator, props if isinstance(props, dict) else {}, "/properties"))
        return ContractCheck(problems, contract.mode or source_mode, contract)


def _requested_version(payload: dict[str, Any]) -> int | None:
    protocols = (payload.get("context") or {}).get("protocols")
    if isinstance(protocols, dict):
        value = protocols.get("event_version")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
    return None


def _escape(part: Any) -> str:
    """One JSON pointer segment (RFC 6901): `~` and `/` escaped, so omit can find the key again."""
    return str(part).replace("~", "~0").replace("/", "~1")


def _pointer(prefix: str, path: Any) -> str:
    return prefix + "".join("/" + _escape(part) for part in path)


def _problems(validator: Validator, instance: Any, prefix: str) -> list[Problem]:
    found: list[Problem] = []
    for error in validator.iter_errors(instance):
        where = _pointer(prefix, error.absolute_path)
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else "?"
            found.append(Problem("Required-Missing", f"{where}/{_escape(missing)}", error.message))
        elif error.validator == "type":
            found.append(Problem("Datatype-Mismatch", where, error.message))
        elif error.validator in ("additionalProperties", "unevaluatedProperties"):
            allowed = set((error.schema or {}).get("properties", {}) if isinstance(error.schema, dict) else {})
            extras = [k for k in (error.instance or {}) if k not in allowed] if isinstance(error.instance, dict) else []
            for extra in extras or ["?"]:
                found.append(
                    Problem(
                        "Additional-Properties", f"{where}/{_escape(extra)}", f"property {extra!r} is not in the plan"
                    )
                )
        else:
            found.append(Problem("Unknown-Violation", where, error.message))
    return found


def apply_omit(payload: dict[str, Any], violations: list[Problem]) -> dict[str, Any]:
    """Strip the properties or traits a violation points at (not the missing ones: nothing to strip)."""
    result = copy.deepcopy(payload)
    for problem in violations:
        if problem.code == "Required-Missing" or not problem.field.startswith(("/properties/", "/traits/")):
            continue
        parts = [p.replace("~1", "/").replace("~0", "~") for p in problem.field.strip("/").split("/")]
        roots: list[Any] = []
        if parts[0] == "traits":
            roots = [result.get("traits"), (result.get("context") or {}).get("traits")]
        else:
            roots = [result.get("properties")]
        for root in roots:
            node = root
            for part in parts[1:-1]:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(parts[-1], None)
    return result


def load_contracts(folder: Path) -> ContractSet:
    """Read every contracts/*.yml; ConfigError names the file, the event and the field on any mistake."""
    contracts: list[EventContract] = []
    common: list[tuple[str, Validator]] = []
    if not folder.is_dir():
        return ContractSet([], [])
    seen: dict[tuple[str, str, int], str] = {}
    for path in sorted(folder.glob("*.y*ml")):
        where = f"contracts/{path.name}"
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: not valid YAML: {yaml_problem(exc)}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: the top level must be a mapping with 'events:'")
        unknown = set(raw) - {"mode", "events", "common", "description"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: mode, events, common, description")
        mode = None
        if raw.get("mode") is not None:
            try:
                mode = ContractMode(raw["mode"])
            except ValueError as exc:
                raise ConfigError(f"{where}: mode {raw['mode']!r} must be allow, omit or block") from exc
        if raw.get("common") is not None:
            try:
                common.append((where, _validator_for(raw["common"])))
            except SchemaError as exc:
                raise ConfigError(f"{where}: common: not a valid JSON Schema: {exc.message}") from exc
        events = raw.get("events") or []
        if not isinstance(events, list):
            raise ConfigError(f"{where}: 'events' must be a list of {{name, version, properties}}")
        for index, entry in enumerate(events):
            label = f"{where}: events[{index}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise ConfigError(f"{label}: each event needs a 'name'")
            label = f"{where}: event {entry['name']!r}"
            event_type = entry.get("type", "track")
            if event_type not in CONTRACT_TYPES:
                raise ConfigError(f"{label}: type {event_type!r} must be one of {', '.join(CONTRACT_TYPES)}")
            version = entry.get("version", 1)
            if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                raise ConfigError(f"{label}: version must be a positive integer, not {version!r}")
            schema_key = "traits" if event_type in ("identify", "group") else "properties"
            schema = entry.get(schema_key, {"type": "object"})
            if not isinstance(schema, dict):
                raise ConfigError(f"{label}: '{schema_key}' must be a JSON Schema object")
            schema = {"type": "object", **schema}
            try:
                validator = _validator_for(schema)
            except SchemaError as exc:
                raise ConfigError(f"{label} version {version}: not a valid JSON Schema: {exc.message}") from exc
            key = (event_type, *_contract_key(event_type, entry["name"])[1:], version)
            if key in seen:
                raise ConfigError(f"{label}: version {version} is declared twice ({seen[key]} and {where})")
            seen[key] = where
            contracts.append(EventContract(entry["name"], event_type, version, schema, where, mode, validator))
    return ContractSet(contracts, common)


# -- breaking changes ------------------------------------------------------------------------------
def _types(schema: Any) -> set[str]:
    if not isinstance(schema, dict) or "type" not in schema:
        return set()
    value = schema["type"]
    kinds = set(value) if isinstance(value, list) else {value}
    if "number" in kinds:
        kinds.add("integer")
    return kinds


def breaking_changes(old: dict[str, Any], new: dict[str, Any], path: str = "") -> list[str]:
    """Why `new` would refuse events that `old` accepted: new required fields, narrowed types."""
    reasons: list[str] = []
    old_required = set(old.get("required") or [])
    for name in sorted(set(new.get("required") or []) - old_required):
        reasons.append(f"new required field '{path}{name}'")
    old_types, new_types = _types(old), _types(new)
    if old_types and new_types and not old_types <= new_types:
        reasons.append(
            f"type of '{path.rstrip('.') or '(root)'}' changed from {sorted(old_types)} to {sorted(new_types)}"
        )
    if old.get("additionalProperties", True) is not False and new.get("additionalProperties", True) is False:
        reasons.append(f"'{path.rstrip('.') or '(root)'}' now forbids additional properties")
    old_props = old.get("properties") or {}
    new_props = new.get("properties") or {}
    for name in sorted(set(old_props) & set(new_props)):
        if isinstance(old_props[name], dict) and isinstance(new_props[name], dict):
            reasons.extend(breaking_changes(old_props[name], new_props[name], f"{path}{name}."))
    return reasons
