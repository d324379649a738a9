"""The workspace: `orchestrion.yml` and the folders beside it (contracts/, models/, journeys/...).

Loading resolves `${ENV_VAR}` references, applies environment overrides and validates every field, so a
mistake is reported once, at start, naming the file, the field and the fix.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrion.collect.config import CollectConfig, SourceConfig
from orchestrion.errors import ConfigError
from orchestrion.identity.config import IdentityConfig
from orchestrion.identity.consent_config import ConsentConfig
from orchestrion.model.config import ModelsConfig

WORKSPACE_FILE = "orchestrion.yml"
DATA_DIR = ".orchestrion"
DEFAULT_DUCKDB = f"{DATA_DIR}/orchestrion.duckdb"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class StorageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_url: str | None = Field(
        default=None, description="duckdb:///path or postgresql://...; ORCHESTRION_DATABASE_URL overrides"
    )


class AdminConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str | None = Field(default=None, description="ORCHESTRION_ADMIN_TOKEN overrides")


class WorkspaceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "workspace"
    timezone: str = "UTC"
    sources: list[SourceConfig] = Field(default_factory=list)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    consent: ConsentConfig = Field(default_factory=ConsentConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)

    @model_validator(mode="after")
    def _unique_sources(self) -> WorkspaceConfig:
        names: set[str] = set()
        keys: dict[str, str] = {}
        for source in self.sources:
            if source.name in names:
                raise ValueError(f"source name {source.name!r} is used twice; give each source its own name")
            names.add(source.name)
            if source.write_key in keys:
                raise ValueError(
                    f"sources {keys[source.write_key]!r} and {source.name!r} share a write key; "
                    "each source needs its own"
                )
            keys[source.write_key] = source.name
        return self


@dataclass(frozen=True)
class Workspace:
    """A loaded workspace: its folder, its validated configuration and where its data lives."""

    root: Path
    config: WorkspaceConfig
    admin_token: str
    database_url: str
    is_dev: bool = False

    @property
    def data_dir(self) -> Path:
        return self.root / DATA_DIR

    @property
    def contracts_dir(self) -> Path:
        return self.root / "contracts"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def source_by_key(self, write_key: str) -> SourceConfig | None:
        for source in self.config.sources:
            if source.write_key == write_key:
                return source
        return None


def interpolate_env(value: Any, where: str, env: dict[str, str]) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate_env(v, f"{where}.{k}", env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_env(v, f"{where}[{i}]", env) for i, v in enumerate(value)]
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{where}: environment variable {name} is not set; export it or write ${{{name}:-default}}"
            )

        return _ENV_REF.sub(replace, value)
    return value


def yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error in one line: the problem and where (PyYAML's own text spans several lines)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def _format_validation(path: Path, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{path.name}: {field}: {item['msg']}")
    return "\n".join(lines)


def resolve_database_url(root: Path, configured: str | None, env: dict[str, str]) -> str:
    url = env.get("ORCHESTRION_DATABASE_URL") or configured or f"duckdb:///{DEFAULT_DUCKDB}"
    if url.startswith("duckdb:///"):
        raw = url.removeprefix("duckdb:///")
        if raw == ":memory:":
            return url
        path = Path(raw)
        if not path.is_absolute():
            path = root / path
        return f"duckdb:///{path}"
    if url.startswith(("postgresql://", "postgres://")):
        return url
    raise ConfigError(
        f"storage.database_url: unsupported URL {url!r}; use duckdb:///path/to/file.duckdb or postgresql://..."
    )


def load_workspace(root: Path, env: dict[str, str] | None = None) -> Workspace:
    """Load `orchestrion.yml` from `root`; raise ConfigError with a readable message on any mistake."""
    env = dict(os.environ) if env is None else env
    path = root / WORKSPACE_FILE
    if not path.exists():
        raise ConfigError(f"{path}: no workspace file; run `orchestrion init` to create one")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name}: not valid YAML: {yaml_problem(exc)}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path.name}: the top level must be a mapping (name:, sources:, ...)")
    raw = interpolate_env(raw, path.name, env)
    try:
        config = WorkspaceConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation(path, exc)) from exc
    token = env.get("ORCHESTRION_ADMIN_TOKEN") or config.admin.token or _stored_admin_token(root)
    database_url = resolve_database_url(root, config.storage.database_url, env)
    return Workspace(root=root, config=config, admin_token=token, database_url=database_url)


def _stored_admin_token(root: Path) -> str:
    """A generated admin token kept under .orchestrion/ so that it survives restarts."""
    token_file = root / DATA_DIR / "admin_token"
    if token_file.exists():
        return token_file.read_text().strip()
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token = "adm_" + secrets.token_urlsafe(24)
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return token


def dev_workspace(root: Path, env: dict[str, str] | None = None) -> Workspace:
    """A workspace for a folder with no orchestrion.yml: one source `dev` whose key survives restarts."""
    env = dict(os.environ) if env is None else env
    state = root / DATA_DIR / "dev-workspace.json"
    if state.exists():
        write_key = json.loads(state.read_text())["write_key"]
    else:
        state.parent.mkdir(parents=True, exist_ok=True)
        write_key = "wk_dev_" + secrets.token_urlsafe(18)
        state.write_text(json.dumps({"write_key": write_key}))
    config = WorkspaceConfig(name="dev", sources=[SourceConfig(name="dev", write_key=write_key)])
    token = env.get("ORCHESTRION_ADMIN_TOKEN") or _stored_admin_token(root)
    database_url = resolve_database_url(root, None, env)
    return Workspace(root=root, config=config, admin_token=token, database_url=database_url, is_dev=True)


def find_workspace(start: Path, env: dict[str, str] | None = None, allow_dev: bool = False) -> Workspace:
    """The workspace of `start`, else (when allowed) a dev workspace there."""
    if (start / WORKSPACE_FILE).exists():
        return load_workspace(start, env)
    if allow_dev or (start / DATA_DIR / "dev-workspace.json").exists():
        return dev_workspace(start, env)
    raise ConfigError(f"{start}: no {WORKSPACE_FILE} here; run `orchestrion init` or cd into a workspace")
