"""Loading `models/`: each `<name>.sql` is one SELECT; its kind and settings come from `<name>.yml` beside it or
from `-- key: value` lines at the top of the SQL. Dependencies are the tables the SELECT reads (parsed with
sqlglot); every one must be another model or a relation of the warehouse (landing views, identity tables).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlglot
import yaml
from pydantic import ValidationError
from sqlglot import exp

from orchestrion.model.config import IDENTIFIER, ModelConfig, ModelKind
from orchestrion.model.errors import ModelProjectError, UnknownModel

# Table names a model may not take: the build's scratch tables end with these.
SCRATCH_SUFFIXES = ("__new", "__delta")
_DEFAULT_SCHEMAS = ("", "main", "public")
_HEADER_KEYS = tuple(ModelConfig.model_fields)
_HEADER_LINE = re.compile(rf"^--\s*({'|'.join(_HEADER_KEYS)})\s*:(.*)$")
_NAME = re.compile(IDENTIFIER)


@dataclass(frozen=True)
class Model:
    """One model: its file, settings, parsed query and the relations it reads."""

    name: str
    path: Path
    config: ModelConfig
    dialect: str
    sql: str
    query: exp.Query
    inputs: frozenset[str]
    version: str
    waiting_for: frozenset[str] = frozenset()  # expected landing views that do not exist yet

    @property
    def kind(self) -> ModelKind:
        return self.config.kind

    @property
    def where(self) -> str:
        """How a person finds the file: `models/x.sql`."""
        return f"{self.path.parent.name}/{self.path.name}"


@dataclass(frozen=True)
class ModelProject:
    """The models of a workspace, in an order where every model comes after the models it reads."""

    models: Mapping[str, Model]

    @property
    def names(self) -> list[str]:
        return list(self.models)

    def upstream(self, name: str) -> set[str]:
        """The models `name` reads, directly or through others."""
        found: set[str] = set()
        pending = [name]
        while pending:
            for parent in self.models[pending.pop()].inputs:
                if parent in self.models and parent not in found:
                    found.add(parent)
                    pending.append(parent)
        return found

    def downstream(self, name: str) -> set[str]:
        """The models that read `name`, directly or through others."""
        return {other for other in self.models if name in self.upstream(other)}

    def select(self, patterns: Sequence[str] | None) -> list[str]:
        """Models named by dbt-style patterns (`name`, `name+` with its dependents, `+name` with what it reads),
        in build order. None or empty: every model."""
        if not patterns:
            return self.names
        chosen: set[str] = set()
        for pattern in patterns:
            name = pattern.strip().strip("+")
            if name not in self.models:
                known = ", ".join(self.names) or "none"
                raise UnknownModel(f"no model named {name!r} (models: {known})")
            chosen.add(name)
            if pattern.strip().endswith("+"):
                chosen |= self.downstream(name)
            if pattern.strip().startswith("+"):
                chosen |= self.upstream(name)
        return [name for name in self.models if name in chosen]


def _header(sql: str, where: str) -> dict[str, Any]:
    """`-- key: value` lines of the leading comment block whose key is a setting; other comments are prose."""
    found: dict[str, Any] = {}
    for line in sql.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        match = _HEADER_LINE.match(stripped)
        if match is None:
            continue
        try:
            found[match.group(1)] = yaml.safe_load(match.group(2).strip() or "null")
        except yaml.YAMLError as exc:
            raise ModelProjectError(f"{where}: header `{match.group(1)}:` is not valid YAML: {exc}") from exc
    return found


def _config(sql_path: Path, sql: str) -> ModelConfig:
    where = f"{sql_path.parent.name}/{sql_path.name}"
    sidecar = sql_path.with_suffix(".yml")
    header = _header(sql, where)
    raw: Any = header
    source = f"{where} (header)"
    if sidecar.exists():
        if header:
            raise ModelProjectError(
                f"{where}: settings are in both the header ({', '.join(header)}) and {sidecar.name}; keep one place"
            )
        try:
            raw = yaml.safe_load(sidecar.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ModelProjectError(f"{sidecar.parent.name}/{sidecar.name}: not valid YAML: {exc}") from exc
        source = f"{sidecar.parent.name}/{sidecar.name}"
    if not raw:
        raise ModelProjectError(
            f"{where}: no kind declared; add {sidecar.name} with `kind: traits` (or audience, state, table), "
            "or a first line `-- kind: traits`"
        )
    if not isinstance(raw, dict):
        raise ModelProjectError(f"{source}: the top level must be a mapping (kind:, freshness:, ...)")
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or 'settings'}: {item['msg']}" for item in exc.errors()
        )
        raise ModelProjectError(f"{source}: {problems}") from exc


def _parse(sql: str, dialect: str, where: str) -> exp.Query:
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except sqlglot.errors.ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        place = f"line {first.get('line')}, column {first.get('col')}: " if first else ""
        description = first.get("description") or str(exc).splitlines()[0]
        raise ModelProjectError(f"{where}: not valid {dialect} SQL: {place}{description}") from exc
    if len(statements) != 1:
        raise ModelProjectError(f"{where}: write exactly one SELECT statement (found {len(statements)})")
    (statement,) = statements
    if not isinstance(statement, exp.Query):
        raise ModelProjectError(f"{where}: a model is one SELECT (or WITH ... SELECT); found {statement.key.upper()}")
    return statement


def referenced_tables(query: exp.Query, where: str) -> frozenset[str]:
    """The relations a query reads, by name; CTE names and table functions are not relations."""
    ctes = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}
    names: set[str] = set()
    for table in query.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # range(10), read_parquet(...): functions, not relations
        name = table.name.lower()
        if table.catalog or table.db.lower() not in _DEFAULT_SCHEMAS:
            raise ModelProjectError(
                f"{where}: reads {table.sql()}; models read the tables of the workspace's own schema, unqualified"
            )
        if not table.db and name in ctes:
            continue
        names.add(name)
    return frozenset(names)


def _version(dialect: str, sql: str, config: ModelConfig) -> str:
    text = json.dumps([dialect, sql, config.model_dump(mode="json")], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _order(models: dict[str, Model]) -> list[str]:
    """Models sorted so that each follows what it reads; a cycle is an error naming a file and a table."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1: being visited, 2: done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name) :], name]
            reader = models[cycle[-2]]
            raise ModelProjectError(
                f"{reader.where}: reads `{name}`, which leads back to it: a cycle ({' -> '.join(cycle)})"
            )
        state[name] = 1
        for parent in sorted(models[name].inputs):
            if parent in models:
                visit(parent, [*path, name])
        state[name] = 2
        order.append(name)

    for name in sorted(models):
        visit(name, [])
    return order


def load_project(
    models_dir: Path,
    relations: Iterable[str],
    *,
    dialect: str = "duckdb",
    built_models: Iterable[str] = (),
    expected: Iterable[str] = (),
) -> ModelProject:
    """Read and check every model of `models_dir`.

    `relations`: the tables and views of the warehouse; `built_models`: names of models built before (their
    tables are among the relations and may be taken again by the same name); `expected`: landing views that will
    appear with their first event (the events of the tracking plans): a model reading one that does not exist yet
    waits for it instead of failing the project.
    """
    if not models_dir.is_dir():
        return ModelProject(models={})
    existing = {name.lower() for name in relations}
    built = {name.lower() for name in built_models}
    awaited = {name.lower() for name in expected}
    models: dict[str, Model] = {}
    for sql_path in sorted(models_dir.glob("*.sql")):
        name = sql_path.stem
        where = f"{models_dir.name}/{sql_path.name}"
        if not _NAME.match(name) or name.endswith(SCRATCH_SUFFIXES):
            raise ModelProjectError(
                f"{where}: a model's file name is its table name: lower case letters, digits and _ "
                f"(not ending in {' or '.join(SCRATCH_SUFFIXES)})"
            )
        if name in existing and name not in built:
            raise ModelProjectError(
                f"{where}: `{name}` is already a table or view of the workspace (landing or identity); rename the model"
            )
        sql = sql_path.read_text()
        config = _config(sql_path, sql)
        source_dialect = config.dialect or dialect
        query = _parse(sql, source_dialect, where)
        inputs = referenced_tables(query, where)
        models[name] = Model(
            name=name,
            path=sql_path,
            config=config,
            dialect=source_dialect,
            sql=sql,
            query=query,
            inputs=inputs,
            version=_version(source_dialect, sql, config),
        )
    for yml in sorted(models_dir.glob("*.yml")):
        if yml.stem not in models and _declares_a_model(yml):
            raise ModelProjectError(
                f"{models_dir.name}/{yml.name}: no {yml.stem}.sql beside it; a sidecar describes the SQL model "
                "of the same name"
            )
    for name, model in models.items():
        if model.name in model.inputs:
            raise ModelProjectError(f"{model.where}: reads `{model.name}`, its own table: a cycle")
        waiting = set()
        for table in sorted(model.inputs):
            if table in models:
                continue
            if table not in existing and table in awaited:
                waiting.add(table)
            elif table not in existing or table in built:
                hint = "another model, a landing view (a per-event view appears with the first event of that name)"
                raise ModelProjectError(
                    f"{model.where}: unknown table `{table}`; a model reads {hint}, or an "
                    "identity table (profiles, identity_graph, event_profiles, ...)"
                )
        if waiting:
            models[name] = dataclasses.replace(model, waiting_for=frozenset(waiting))
    ordered = _order(models)
    return ModelProject(models={name: models[name] for name in ordered})


def _declares_a_model(path: Path) -> bool:
    """A YAML file with `kind:` is a model sidecar; others in models/ (e.g. real-time trait declarations) are not
    this loader's business."""
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return True
    return isinstance(raw, dict) and "kind" in raw
