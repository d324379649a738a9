"""Workspace operations shared by the faces: the API runs them in the server, the CLI runs them
locally when no server holds the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrion.collect.contracts import ContractSet, breaking_changes, load_contracts
from orchestrion.errors import ConfigError
from orchestrion.store.ports import EventStore
from orchestrion.workspace import Workspace


def source_summaries(workspace: Workspace, store: EventStore) -> list[dict[str, Any]]:
    counts = {r[0]: r[1] for r in store.read("SELECT source, count(*) FROM events GROUP BY source").rows}
    kept = {
        r[0]: r[1]
        for r in store.read("SELECT source, count(*) FROM quarantine WHERE replayed_at IS NULL GROUP BY source").rows
    }
    return [
        {
            "name": s.name,
            "write_key": s.write_key,
            "enabled": s.enabled,
            "contract_mode": s.contract_mode.value,
            "rate_limit": s.rate_limit,
            "events": int(counts.get(s.name, 0)),
            "quarantined": int(kept.get(s.name, 0)),
        }
        for s in workspace.config.sources
    ]


@dataclass
class ValidationReport:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def validate_contract_changes(
    contracts: ContractSet, recorded: dict[tuple[str, str, int], dict[str, Any]]
) -> list[str]:
    """A changed schema of a version already in force must not refuse what it used to accept."""
    errors = []
    for contract in contracts.contracts:
        key = (contract.type, contract.name, contract.version)
        old = recorded.get(key)
        if old is None or old == contract.schema:
            continue
        for reason in breaking_changes(old, contract.schema):
            errors.append(
                f"{contract.file}: event {contract.name!r} version {contract.version}: breaking change: {reason}; "
                f"publish it as version {contract.version + 1} instead"
            )
    return errors


def validate_workspace(
    workspace: Workspace, recorded: dict[tuple[str, str, int], dict[str, Any]] | None
) -> ValidationReport:
    """Check every workspace file; `recorded` (when known) catches breaking contract changes."""
    report = ValidationReport()
    try:
        contracts = load_contracts(workspace.contracts_dir)
    except ConfigError as exc:
        report.errors.append(str(exc))
        return report
    report.notes.append(f"{len(workspace.config.sources)} source(s), {len(contracts.contracts)} contract version(s)")
    if recorded is None:
        report.notes.append("no database reachable: breaking-change check against versions in force skipped")
    else:
        report.errors.extend(validate_contract_changes(contracts, recorded))
    return report


def contracts_to_record(contracts: ContractSet) -> list[tuple[str, str, int, str, dict[str, Any]]]:
    return [(c.type, c.name, c.version, c.schema_hash, c.schema) for c in contracts.contracts]
