"""`orchestrion init`: the files of a new workspace."""

from __future__ import annotations

import secrets
from pathlib import Path

WORKSPACE_TEMPLATE = """\
# Orchestrion workspace. Reference: docs/configuration.md
name: {name}
timezone: UTC

sources:
  - name: web
    write_key: ${{WEB_WRITE_KEY:-{web_key}}}
    contract_mode: allow        # allow | omit | block
  - name: app
    write_key: ${{APP_WRITE_KEY:-{app_key}}}
    rate_limit: 500             # requests per second (bursts of 2x)
    contract_mode: allow

storage:
  # default: DuckDB at .orchestrion/orchestrion.duckdb; ORCHESTRION_DATABASE_URL=postgresql://... overrides
  database_url: null

collect:
  max_request_bytes: 4000000
  max_event_bytes: 32768
  max_nesting_depth: 32
  dedup_window: 7d
"""

CONTRACT_TEMPLATE = """\
# A tracking plan: one JSON Schema per event and version. Reference: docs/contracts.md
events:
  - name: Signed Up
    version: 1
    properties:
      type: object
      required: [plan]
      properties:
        plan: {type: string, enum: [free, trial, pro]}
        referral_code: {type: string}
  - name: identify
    type: identify
    traits:
      type: object
      properties:
        email: {type: string}
"""


def scaffold(root: Path, name: str) -> list[Path]:
    """Write a new workspace into `root`; refuses to overwrite an existing orchestrion.yml."""
    created: list[Path] = []
    root.mkdir(parents=True, exist_ok=True)
    workspace_file = root / "orchestrion.yml"
    if workspace_file.exists():
        raise FileExistsError(f"{workspace_file} exists already; nothing was changed")
    workspace_file.write_text(
        WORKSPACE_TEMPLATE.format(
            name=name,
            web_key="wk_web_" + secrets.token_urlsafe(18),
            app_key="wk_app_" + secrets.token_urlsafe(18),
        )
    )
    created.append(workspace_file)
    for folder in ("contracts", "models", "journeys", "templates", "tests"):
        (root / folder).mkdir(exist_ok=True)
        created.append(root / folder)
    contract = root / "contracts" / "signup.yml"
    if not contract.exists():
        contract.write_text(CONTRACT_TEMPLATE)
        created.append(contract)
    gitignore = root / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(".orchestrion/\n")
        created.append(gitignore)
    return created
