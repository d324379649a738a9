"""Profile storage on the SQL backends: identity graph, merges, profiles, consent, erasure, audit.

Mixed into the SQL stores next to the event log; every write of a processing step is one transaction.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import orjson

from orchestrion.store.profile_rows import (
    ConsentRow,
    GraphRow,
    LinkRow,
    MergeRow,
    ProcessingStep,
    ProfileRow,
    RefusalRow,
    UnlinkRow,
)
from orchestrion.store.step_sql import write_step


class _SqlAccess(Protocol):
    def _read(self) -> AbstractContextManager[Any]: ...

    def _transaction(self) -> AbstractContextManager[Any]: ...

    def _sql(self, text: str) -> str: ...

    def _bulk_rows(self, types: Sequence[str]) -> str: ...


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _in(placeholder: str = "%s", sql_type: str = "VARCHAR") -> str:
    """`IN` over one array parameter: works on DuckDB and PostgreSQL alike."""
    return f"IN (SELECT unnest({placeholder}::{sql_type}[]))"


IDENTITY_EPOCH = "identity_epoch"


def _bump_epoch(store: _SqlAccess, cur: Any) -> None:
    """Admin changes to identity (erasure, unmerge) bump the epoch: the processing leader reloads its graph."""
    cur.execute(
        store._sql(
            "INSERT INTO workspace_settings VALUES (%s, '1') ON CONFLICT (name) DO UPDATE SET "
            "value = CAST(CAST(workspace_settings.value AS BIGINT) + 1 AS VARCHAR)"
        ),
        [IDENTITY_EPOCH],
    )


class ProfileSqlMixin:
    def identity_epoch(self: _SqlAccess) -> int:
        with self._read() as cur:
            cur.execute(self._sql("SELECT value FROM workspace_settings WHERE name = %s"), [IDENTITY_EPOCH])
            row = cur.fetchone()
        return int(row[0]) if row else 0

    # -- processing ------------------------------------------------------------------------------
    def commit_processing(self: _SqlAccess, step: ProcessingStep) -> None:
        write_step(self, step, _bump_epoch)  # type: ignore[arg-type]  # the SQL stores have every hook it needs

    def identity_records(self: _SqlAccess) -> tuple[list[LinkRow], list[UnlinkRow]]:
        with self._read() as cur:
            # the time as UTC wall-clock, made aware here: drivers build aware datetimes slowly (a rebuild reads all)
            cur.execute(
                "SELECT seq, source, message_id, \"timestamp\" AT TIME ZONE 'UTC', CAST(identifiers AS VARCHAR), "
                "CAST(alias AS VARCHAR), profile_id FROM identity_links ORDER BY seq"
            )
            utc = dt.UTC
            links = [
                LinkRow(
                    r[0],
                    r[1],
                    r[2],
                    r[3].replace(tzinfo=utc),
                    orjson.loads(r[4]),
                    orjson.loads(r[5]) if r[5] else None,
                    r[6],
                )
                for r in cur.fetchall()
            ]
            cur.execute(
                'SELECT unlink_id, identifier, CAST(separated_from AS VARCHAR), "timestamp", actor '
                "FROM identity_unlinks"
            )
            unlinks = [UnlinkRow(r[0], r[1], orjson.loads(r[2]), r[3], r[4]) for r in cur.fetchall()]
        return links, unlinks

    # -- reads -----------------------------------------------------------------------------------
    def canonical_profile(self: _SqlAccess, profile_id: str) -> str | None:
        """Follow the merge history to the live profile; None when the id was never issued."""
        with self._read() as cur:
            current = profile_id
            for _ in range(64):
                cur.execute(
                    self._sql("SELECT survivor_profile_id FROM profile_merges WHERE merged_profile_id = %s"), [current]
                )
                row = cur.fetchone()
                if row is None:
                    break
                current = row[0]
            cur.execute(self._sql("SELECT 1 FROM profiles WHERE profile_id = %s"), [current])
            if cur.fetchone() is not None:
                return current
            cur.execute(self._sql("SELECT 1 FROM identity_graph WHERE profile_id = %s LIMIT 1"), [current])
            return current if cur.fetchone() is not None else None

    def profile_for_identifier(self: _SqlAccess, identifier_type: str, value: str) -> str | None:
        with self._read() as cur:
            cur.execute(
                self._sql("SELECT profile_id FROM identity_graph WHERE identifier_type = %s AND identifier_value = %s"),
                [identifier_type, value],
            )
            row = cur.fetchone()
        return str(row[0]) if row else None

    def merged_into(self: _SqlAccess, profile_id: str) -> list[MergeRow]:
        """Every profile id that resolves to `profile_id` (merges are kept one hop from the canonical id)."""
        with self._read() as cur:
            cur.execute(
                self._sql(
                    "SELECT merged_profile_id, survivor_profile_id, reason, message_id, merged_at FROM profile_merges "
                    "WHERE survivor_profile_id = %s ORDER BY merged_at"
                ),
                [profile_id],
            )
            return [MergeRow(*r) for r in cur.fetchall()]

    def graph_of(self: _SqlAccess, profile_id: str) -> list[GraphRow]:
        with self._read() as cur:
            cur.execute(
                self._sql(
                    "SELECT identifier_type, identifier_value, profile_id, attached_at, message_id, source "
                    "FROM identity_graph WHERE profile_id = %s ORDER BY identifier_type, attached_at"
                ),
                [profile_id],
            )
            return [GraphRow(*r) for r in cur.fetchall()]

    def profile_row(self: _SqlAccess, profile_id: str) -> ProfileRow | None:
        rows = ProfileSqlMixin.profile_rows(self, [profile_id])
        return rows[0] if rows else None

    def profile_rows(self: _SqlAccess, profile_ids: Sequence[str]) -> list[ProfileRow]:
        if not profile_ids:
            return []
        with self._read() as cur:
            cur.execute(
                self._sql(
                    "SELECT profile_id, CAST(traits AS VARCHAR), CAST(trait_provenance AS VARCHAR), first_seen, "
                    f"last_seen, timezone, locale, device_os, country FROM profiles WHERE profile_id {_in()}"
                ),
                [list(profile_ids)],
            )
            return [
                ProfileRow(r[0], orjson.loads(r[1]), orjson.loads(r[2]), r[3], r[4], r[5], r[6], r[7], r[8])
                for r in cur.fetchall()
            ]

    def refusals_of(self: _SqlAccess, profile_ids: Sequence[str]) -> list[RefusalRow]:
        with self._read() as cur:
            cur.execute(
                self._sql(
                    "SELECT source, message_id, identifier_type, identifier_value, code, reason, profile_id, "
                    f'"timestamp" FROM identity_refusals WHERE profile_id {_in()} ORDER BY "timestamp"'
                ),
                [list(profile_ids)],
            )
            return [RefusalRow(*r) for r in cur.fetchall()]

    def consent_rows(self: _SqlAccess, profile_ids: Sequence[str]) -> list[ConsentRow]:
        with self._read() as cur:
            cur.execute(
                self._sql(
                    'SELECT profile_id, channel, purpose, granted, input, source, message_id, "timestamp" '
                    f'FROM consent_changes WHERE profile_id {_in()} ORDER BY "timestamp", message_id'
                ),
                [list(profile_ids)],
            )
            return [ConsentRow(*r) for r in cur.fetchall()]

    def timeline_rows(
        self: _SqlAccess, profile_ids: Sequence[str], limit: int, before: tuple[dt.datetime, int] | None
    ) -> list[tuple[int, dt.datetime, str, str | None, str, str, str]]:
        """(seq, timestamp, type, event, source, message_id, payload) newest first; `before` pages on."""
        params: list[Any] = [list(profile_ids)]
        where = ""
        if before is not None:
            where = ' AND (e."timestamp" < %s OR (e."timestamp" = %s AND e.seq < %s))'
            params += [before[0], before[0], before[1]]
        with self._read() as cur:
            cur.execute(
                self._sql(
                    'SELECT e.seq, e."timestamp", e.type, e.event, e.source, e.message_id, CAST(e.payload AS VARCHAR) '
                    f"FROM events e WHERE e.seq IN (SELECT seq FROM identity_links WHERE profile_id {_in()}){where} "
                    f'ORDER BY e."timestamp" DESC, e.seq DESC LIMIT {int(limit)}'
                ),
                params,
            )
            return [tuple(r) for r in cur.fetchall()]

    def event_seqs_of(self: _SqlAccess, profile_ids: Sequence[str]) -> list[int]:
        with self._read() as cur:
            cur.execute(self._sql(f"SELECT seq FROM identity_links WHERE profile_id {_in()}"), [list(profile_ids)])
            return [int(r[0]) for r in cur.fetchall()]

    # -- settings, audit, erasure ------------------------------------------------------------------
    def workspace_secret(self: _SqlAccess, name: str) -> str:
        """A random secret kept in the database (e.g. the erasure salt), created on first use."""
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT value FROM workspace_settings WHERE name = %s"), [name])
            row = cur.fetchone()
            if row:
                return str(row[0])
            value = secrets.token_hex(32)
            cur.execute(
                self._sql("INSERT INTO workspace_settings VALUES (%s, %s) ON CONFLICT (name) DO NOTHING"), [name, value]
            )
            cur.execute(self._sql("SELECT value FROM workspace_settings WHERE name = %s"), [name])
            again = cur.fetchone()
            return str(again[0]) if again else value

    def tombstones(self: _SqlAccess) -> set[str]:
        with self._read() as cur:
            cur.execute("SELECT identifier_hash FROM erasure_tombstones")
            return {str(r[0]) for r in cur.fetchall()}

    def audit(self: _SqlAccess, actor: str, action: str, target: str, details: dict[str, Any]) -> None:
        with self._transaction() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO audit_log (occurred_at, actor, action, target, details) VALUES (%s, %s, %s, %s, %s)"
                ),
                [dt.datetime.now(dt.UTC), actor, action, target, _json(details)],
            )

    def erase_profile(
        self: _SqlAccess,
        *,
        profile_ids: Sequence[str],
        identifiers: Sequence[tuple[str, str]],
        forms: Sequence[str],
        tombstones: Sequence[str],
        erasure_id: str,
        actor: str,
    ) -> dict[str, int]:
        """Delete the profile's rows and scrub its identifiers everywhere else, in one transaction.

        `forms` are every way the values were written (normalized and as sent: `Ann@Example.com`,
        `+49 151 ...`); text columns are scrubbed case-insensitively, quarantined events carrying one are deleted.
        """
        now = dt.datetime.now(dt.UTC)
        ids = list(profile_ids)
        counts: dict[str, int] = {}
        erased = {f"{kind}:{value}" for kind, value in identifiers}
        with self._transaction() as cur:
            cur.execute(self._sql(f"SELECT seq FROM identity_links WHERE profile_id {_in()}"), [ids])
            seqs = [int(r[0]) for r in cur.fetchall()]
            cur.execute(self._sql(f"DELETE FROM events WHERE seq {_in(sql_type='BIGINT')} RETURNING 1"), [seqs])
            counts["events"] = len(cur.fetchall())
            for table in ("identity_links", "identity_graph", "identity_refusals", "profiles", "consent_changes"):
                cur.execute(self._sql(f"DELETE FROM {table} WHERE profile_id {_in()} RETURNING 1"), [ids])
                counts[table] = len(cur.fetchall())
            cur.execute(
                self._sql(
                    f"DELETE FROM profile_merges WHERE merged_profile_id {_in()} "
                    f"OR survivor_profile_id {_in()} RETURNING 1"
                ),
                [ids, ids],
            )
            counts["profile_merges"] = len(cur.fetchall())
            for kind, value in identifiers:
                for table in ("identity_graph", "identity_refusals"):
                    cur.execute(
                        self._sql(f"DELETE FROM {table} WHERE identifier_type = %s AND identifier_value = %s"),
                        [kind, value],
                    )
            counts["scrubbed"] = _scrub_links(self, cur, erased)
            counts["quarantine"] = 0
            for form in sorted(set(forms)):
                quoted = orjson.dumps(form).decode()
                like = "%" + quoted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                cur.execute(
                    self._sql("DELETE FROM quarantine WHERE CAST(raw AS VARCHAR) ILIKE %s ESCAPE '\\' RETURNING 1"),
                    [like],
                )
                counts["quarantine"] += len(cur.fetchall())
                for table, column in (("events", "payload"), ("profiles", "traits")):
                    cur.execute(
                        self._sql(
                            f"UPDATE {table} SET {column} = "
                            f"CAST(regexp_replace(CAST({column} AS VARCHAR), %s, %s, 'gi') AS JSON) "
                            f"WHERE CAST({column} AS VARCHAR) ILIKE %s ESCAPE '\\' RETURNING 1"
                        ),
                        [_regex_literal(quoted), '"erased"', like],
                    )
                    counts["scrubbed"] += len(cur.fetchall())
                for column in ("user_id", "anonymous_id"):
                    cur.execute(
                        self._sql(
                            f"UPDATE events SET {column} = 'erased' WHERE lower({column}) = lower(%s) RETURNING 1"
                        ),
                        [form],
                    )
                    counts["scrubbed"] += len(cur.fetchall())
            for digest in tombstones:
                cur.execute(
                    self._sql("INSERT INTO erasure_tombstones VALUES (%s, %s, %s, 0) ON CONFLICT DO NOTHING"),
                    [digest, erasure_id, now],
                )
            _bump_epoch(self, cur)
            cur.execute(
                self._sql(
                    "INSERT INTO audit_log (occurred_at, actor, action, target, details) VALUES (%s, %s, %s, %s, %s)"
                ),
                [now, actor, "erase", erasure_id, _json({"counts": counts, "identifiers": len(identifiers)})],
            )
        return counts


_REGEX_SPECIAL = set(".^$*+?{}[]\\|()")


def _regex_literal(text: str) -> str:
    """`text` as a regular expression matching itself (the same escapes work in DuckDB's RE2 and PostgreSQL)."""
    return "".join("\\" + ch if ch in _REGEX_SPECIAL else ch for ch in text)


def _scrub_links(store: _SqlAccess, cur: Any, erased: set[str]) -> int:
    """Remove erased identifiers from other people's link records (a shared device) and admin unlinks."""
    changed = 0
    for identifier in sorted(erased):
        quoted = orjson.dumps(identifier).decode()
        like = "%" + quoted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        cur.execute(
            store._sql(
                "SELECT seq, CAST(identifiers AS VARCHAR), CAST(alias AS VARCHAR) FROM identity_links "
                "WHERE CAST(identifiers AS VARCHAR) LIKE %s ESCAPE '\\' OR CAST(alias AS VARCHAR) LIKE %s ESCAPE '\\'"
            ),
            [like, like],
        )
        for seq, raw_ids, raw_alias in cur.fetchall():
            kept = [i for i in orjson.loads(raw_ids) if i not in erased]
            alias = orjson.loads(raw_alias) if raw_alias else None
            if alias is not None:
                candidates = [c for c in alias["candidates"] if c not in erased]
                alias = None if alias["target"] in erased or not candidates else {**alias, "candidates": candidates}
            if kept:
                cur.execute(
                    store._sql("UPDATE identity_links SET identifiers = %s, alias = %s WHERE seq = %s"),
                    [_json(kept), _json(alias) if alias is not None else None, seq],
                )
            else:
                cur.execute(store._sql("DELETE FROM identity_links WHERE seq = %s"), [seq])
            changed += 1
        cur.execute(store._sql("SELECT unlink_id, identifier, CAST(separated_from AS VARCHAR) FROM identity_unlinks"))
        for unlink_id, target, raw_from in cur.fetchall():
            separated = [i for i in orjson.loads(raw_from) if i not in erased]
            if target in erased or not separated:
                cur.execute(store._sql("DELETE FROM identity_unlinks WHERE unlink_id = %s"), [unlink_id])
                changed += 1
            elif len(separated) != len(orjson.loads(raw_from)):
                cur.execute(
                    store._sql("UPDATE identity_unlinks SET separated_from = %s WHERE unlink_id = %s"),
                    [_json(separated), unlink_id],
                )
                changed += 1
    return changed
