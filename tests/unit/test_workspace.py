"""`orchestrion.yml`: env interpolation, validation messages, storage resolution and the dev workspace."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from orchestrion.collect.config import ContractMode
from orchestrion.errors import ConfigError
from orchestrion.workspace import (
    dev_workspace,
    find_workspace,
    interpolate_env,
    load_workspace,
    resolve_database_url,
)

BASE = """\
name: fitness
sources:
  - name: web
    write_key: wk_web_test_0001
"""


def write(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "orchestrion.yml").write_text(text)
    return root


def load_error(root: Path, text: str, env: dict[str, str] | None = None) -> str:
    write(root, text)
    with pytest.raises(ConfigError) as caught:
        load_workspace(root, env or {})
    return str(caught.value)


def test_a_minimal_workspace_loads_with_defaults(tmp_path: Path) -> None:
    ws = load_workspace(write(tmp_path, BASE), {})
    assert ws.config.name == "fitness"
    (source,) = ws.config.sources
    assert (source.name, source.write_key, source.contract_mode) == ("web", "wk_web_test_0001", ContractMode.ALLOW)
    assert ws.config.collect.dedup_window == dt.timedelta(days=7)
    assert ws.config.collect.max_request_bytes == 4_000_000
    assert ws.database_url == f"duckdb:///{tmp_path / '.orchestrion' / 'orchestrion.duckdb'}"
    assert ws.source_by_key("wk_web_test_0001") is source
    assert ws.source_by_key("wk_nope") is None
    assert not ws.is_dev


def test_env_references_and_defaults_are_resolved(tmp_path: Path) -> None:
    text = """\
sources:
  - name: web
    write_key: ${WEB_KEY}
  - name: app
    write_key: ${APP_KEY:-wk_app_default_1}
    contract_mode: ${APP_MODE:-block}
"""
    ws = load_workspace(write(tmp_path, text), {"WEB_KEY": "wk_from_env_0001", "APP_MODE": "omit"})
    assert [s.write_key for s in ws.config.sources] == ["wk_from_env_0001", "wk_app_default_1"]
    assert ws.config.sources[1].contract_mode is ContractMode.OMIT


def test_interpolation_keeps_text_around_references_and_non_strings() -> None:
    tree = {"a": "pre-${X}-post", "b": [1, "${Y:-}"], "c": None}
    assert interpolate_env(tree, "f.yml", {"X": "x"}) == {"a": "pre-x-post", "b": [1, ""], "c": None}


def test_a_missing_env_var_names_the_field_and_the_variable(tmp_path: Path) -> None:
    text = BASE.replace("wk_web_test_0001", "${WEB_WRITE_KEY}")
    message = load_error(tmp_path, text)
    assert "orchestrion.yml.sources[0].write_key" in message
    assert "WEB_WRITE_KEY is not set" in message


def test_duplicate_source_names_are_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, BASE + "  - name: web\n    write_key: wk_other_0001\n")
    assert "orchestrion.yml" in message
    assert "source name 'web' is used twice" in message


def test_duplicate_write_keys_are_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, BASE + "  - name: app\n    write_key: wk_web_test_0001\n")
    assert "'web' and 'app' share a write key" in message


@pytest.mark.parametrize(
    ("window", "needle"),
    [("12h", "at least 1d"), ("soon", "cannot read duration 'soon'"), ("", "empty duration")],
)
def test_a_bad_dedup_window_names_the_field(tmp_path: Path, window: str, needle: str) -> None:
    message = load_error(tmp_path, BASE + f"collect:\n  dedup_window: '{window}'\n")
    assert "orchestrion.yml: collect.dedup_window:" in message
    assert needle in message


def test_dedup_window_accepts_durations(tmp_path: Path) -> None:
    ws = load_workspace(write(tmp_path, BASE + "collect:\n  dedup_window: 1d12h\n"), {})
    assert ws.config.collect.dedup_window == dt.timedelta(days=1, hours=12)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("colect: {}\n", "colect"),
        ("sources:\n  - name: Web Site\n    write_key: wk_web_test_0001\n", "sources.0.name"),
        ("sources:\n  - name: web\n    write_key: short\n", "sources.0.write_key"),
        ("sources:\n  - name: web\n    write_key: wk_web_test_0001\n    contract_mode: strict\n", "contract_mode"),
        ("sources:\n  - name: web\n    write_key: wk_web_test_0001\n    rate_limit: -5\n", "rate_limit"),
    ],
)
def test_invalid_fields_are_named(tmp_path: Path, extra: str, needle: str) -> None:
    message = load_error(tmp_path, extra)
    assert message.startswith("orchestrion.yml: ")
    assert needle in message


def test_invalid_yaml_and_a_non_mapping_are_config_errors(tmp_path: Path) -> None:
    assert "not valid YAML" in load_error(tmp_path, "sources: [\n")
    assert "top level must be a mapping" in load_error(tmp_path, "- a\n")


def test_database_url_env_override_wins_over_the_file(tmp_path: Path) -> None:
    text = BASE + "storage:\n  database_url: duckdb:///data/x.duckdb\n"
    ws = load_workspace(write(tmp_path, text), {"ORCHESTRION_DATABASE_URL": "postgresql://u@h:5432/db"})
    assert ws.database_url == "postgresql://u@h:5432/db"
    ws = load_workspace(tmp_path, {})
    assert ws.database_url == f"duckdb:///{tmp_path / 'data' / 'x.duckdb'}"  # relative: under the workspace


def test_database_url_forms(tmp_path: Path) -> None:
    assert resolve_database_url(tmp_path, "duckdb:////abs/o.duckdb", {}) == "duckdb:////abs/o.duckdb"
    assert resolve_database_url(tmp_path, "duckdb:///:memory:", {}) == "duckdb:///:memory:"
    assert resolve_database_url(tmp_path, "postgres://h/db", {}) == "postgres://h/db"
    with pytest.raises(ConfigError, match=re.escape("storage.database_url: unsupported URL 'mysql://h/db'")):
        resolve_database_url(tmp_path, "mysql://h/db", {})


def test_admin_token_env_then_file_then_generated_and_kept(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    assert load_workspace(tmp_path, {"ORCHESTRION_ADMIN_TOKEN": "adm_env"}).admin_token == "adm_env"
    generated = load_workspace(tmp_path, {}).admin_token
    assert generated.startswith("adm_") and len(generated) > 20
    assert load_workspace(tmp_path, {}).admin_token == generated  # survives restarts
    assert (tmp_path / ".orchestrion" / "admin_token").stat().st_mode & 0o077 == 0
    write(tmp_path, BASE + "admin:\n  token: adm_from_file\n")
    assert load_workspace(tmp_path, {}).admin_token == "adm_from_file"


def test_dev_workspace_has_one_source_whose_key_survives_restarts(tmp_path: Path) -> None:
    first = dev_workspace(tmp_path, {})
    assert first.is_dev
    (source,) = first.config.sources
    assert source.name == "dev" and source.write_key.startswith("wk_dev_")
    assert dev_workspace(tmp_path, {}).config.sources[0].write_key == source.write_key
    # once a dev workspace exists, CLI commands find it without being told
    assert find_workspace(tmp_path, {}).is_dev


def test_find_workspace_without_a_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run `orchestrion init`"):
        find_workspace(tmp_path, {})
    assert not find_workspace(write(tmp_path / "ws", BASE), {}).is_dev
