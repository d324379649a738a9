"""Writing one processing step (`ProcessingStep`) on the SQL backends: every table it touches, one transaction.

A step is a page of about a thousand events, so each kind of row goes in one statement, not one per row: the rows
travel as one JSON document (`_insert_rows`), upserts are `INSERT ... SELECT ... ON CONFLICT DO UPDATE` and
updates are `UPDATE ... FROM` the same rows. The result is exactly what applying the rows one by one, in the
step's order, would leave; where that order matters (chains of merges, the same row named twice) it is settled
here first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import orjson

from orchestrion.store.profile_rows import MergeRow, ProcessingStep

_LINK_TYPES = ("bigint", "text", "text", "timestamptz", "json", "json", "text")
_GRAPH_TYPES = ("text", "text", "text", "timestamptz", "text", "text")
_MERGE_TYPES = ("text", "text", "text", "text", "timestamptz", "timestamptz")
_RENAME_TYPES = ("text", "text")
_REFUSAL_TYPES = ("text",) * 7 + ("timestamptz", "timestamptz")
_RETARGET_TYPES = ("text", "text", "text")
_PROFILE_TYPES = ("text", "json", "json", "timestamptz", "timestamptz", "text", "text", "text", "text", "timestamptz")
_CONSENT_TYPES = ("text", "text", "text", "bool", "text", "text", "text", "timestamptz", "timestamptz")


_COLUMN_NAMES = tuple(f"c{i}" for i in range(16))  # the keys `_json_rows` reads


class _StepAccess(Protocol):
    def _transaction(self) -> AbstractContextManager[Any]: ...

    def _sql(self, text: str) -> str: ...

    def _json_rows(self, types: Sequence[str]) -> str: ...

    def _json_param(self, document: bytes) -> Any: ...


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _rows(store: _StepAccess, types: Sequence[str], rows: list[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    """A SELECT of `rows` (tuples in column order) and its one parameter: rows travel as one JSON document."""
    names = _COLUMN_NAMES[: len(types)]
    document = orjson.dumps([dict(zip(names, row, strict=True)) for row in rows], option=orjson.OPT_NAIVE_UTC)
    return store._json_rows(types), [store._json_param(document)]


def _execute_rows(
    store: _StepAccess, cur: Any, head: str, types: Sequence[str], rows: list[tuple[Any, ...]], tail: str = ""
) -> None:
    select, params = _rows(store, types, rows)
    cur.execute(f"{head} {select} {tail}", params)


def _last_by(rows: list[tuple[Any, ...]], width: int) -> list[tuple[Any, ...]]:
    """The rows with each key (the first `width` values) kept once, as its last occurrence: the row that one by
    one would have been written last (an upsert or update may not name a row twice in one statement)."""
    kept: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in rows:
        key = row[:width]
        kept.pop(key, None)
        kept[key] = row
    return list(kept.values())


def settle_merges(merges: Sequence[MergeRow]) -> tuple[dict[str, str], dict[str, str]]:
    """What applying the merge rows in order leaves, where each one upserts (merged -> survivor) and then points every
    row whose survivor is the merged id at the survivor instead.

    Returns the survivor each merged id's row ends with, and for each merged id the survivor that existing rows
    pointing at it end with (the renames applied in order).
    """
    # Walked backwards, `after` maps an id to where the renames after the current merge take it; only the current
    # merge's id changes at each step, so the walk is linear in the number of merges.
    after: dict[str, str] = {}
    final: dict[str, str] = {}
    for merge in reversed(merges):
        survivor = after.get(merge.survivor_profile_id, merge.survivor_profile_id)
        final.setdefault(merge.merged_profile_id, survivor)  # the last row for an id is the one that stays
        after[merge.merged_profile_id] = survivor
    return final, {merged: after[merged] for merged in dict.fromkeys(m.merged_profile_id for m in merges)}


def write_step(store: _StepAccess, step: ProcessingStep, bump_epoch: Any) -> None:
    """Write every row of `step` and its checkpoint in one transaction (see the module docstring)."""
    now = dt.datetime.now(dt.UTC)
    sql = store._sql
    with store._transaction() as cur:
        if step.links:
            _execute_rows(
                store,
                cur,
                'INSERT INTO identity_links (seq, source, message_id, "timestamp", identifiers, alias, profile_id)',
                _LINK_TYPES,
                [
                    (
                        r.seq,
                        r.source,
                        r.message_id,
                        r.timestamp,
                        _json(r.identifiers),
                        _json(r.alias) if r.alias is not None else None,
                        r.profile_id,
                    )
                    for r in step.links
                ],
            )
        if step.unlinks:
            bump_epoch(store, cur)
        for unlink in step.unlinks:  # admin actions: one at a time
            cur.execute(
                sql("INSERT INTO identity_unlinks VALUES (%s, %s, %s, %s, %s)"),
                [unlink.unlink_id, unlink.identifier, _json(unlink.separated_from), unlink.timestamp, unlink.actor],
            )
        for kind, value in step.graph_deletes:  # rare (a late event undid an attachment): one at a time
            cur.execute(
                sql("DELETE FROM identity_graph WHERE identifier_type = %s AND identifier_value = %s"), [kind, value]
            )
        if step.graph_upserts:
            _execute_rows(
                store,
                cur,
                "INSERT INTO identity_graph (identifier_type, identifier_value, profile_id, attached_at, message_id, "
                "source)",
                _GRAPH_TYPES,
                _last_by(
                    [
                        (r.identifier_type, r.identifier_value, r.profile_id, r.attached_at, r.message_id, r.source)
                        for r in step.graph_upserts
                    ],
                    2,
                ),
                "ON CONFLICT (identifier_type, identifier_value) DO UPDATE SET profile_id = excluded.profile_id, "
                "attached_at = excluded.attached_at, message_id = excluded.message_id, source = excluded.source",
            )
        if step.revived:
            cur.execute(
                sql("DELETE FROM profile_merges WHERE merged_profile_id IN (SELECT unnest(%s::VARCHAR[]))"),
                [step.revived],
            )
        if step.merges:
            _write_merges(store, cur, step.merges, now)
        if step.refusals:
            _execute_rows(
                store,
                cur,
                "INSERT INTO identity_refusals (source, message_id, identifier_type, identifier_value, code, reason, "
                'profile_id, "timestamp", recorded_at)',
                _REFUSAL_TYPES,
                [
                    (
                        r.source,
                        r.message_id,
                        r.identifier_type,
                        r.identifier_value,
                        r.code,
                        r.reason,
                        r.profile_id,
                        r.timestamp,
                        now,
                    )
                    for r in step.refusals
                ],
            )
        if step.retargets:
            select, params = _rows(store, _RETARGET_TYPES, _last_by(list(step.retargets), 2))
            cur.execute(
                "UPDATE identity_links SET profile_id = retarget.c2 "
                f"FROM ({select}) AS retarget (c0, c1, c2) "
                "WHERE identity_links.source = retarget.c0 AND identity_links.message_id = retarget.c1",
                params,
            )
        if step.deleted_profiles:
            cur.execute(
                sql("DELETE FROM profiles WHERE profile_id IN (SELECT unnest(%s::VARCHAR[]))"), [step.deleted_profiles]
            )
        if step.profiles:
            _execute_rows(
                store,
                cur,
                "INSERT INTO profiles (profile_id, traits, trait_provenance, first_seen, last_seen, timezone, locale, "
                "device_os, country, updated_at)",
                _PROFILE_TYPES,
                _last_by(
                    [
                        (
                            p.profile_id,
                            _json(p.traits),
                            _json(p.trait_provenance),
                            p.first_seen,
                            p.last_seen,
                            p.timezone,
                            p.locale,
                            p.device_os,
                            p.country,
                            now,
                        )
                        for p in step.profiles
                    ],
                    1,
                ),
                "ON CONFLICT (profile_id) DO UPDATE SET traits = excluded.traits, "
                "trait_provenance = excluded.trait_provenance, first_seen = excluded.first_seen, "
                "last_seen = excluded.last_seen, timezone = excluded.timezone, locale = excluded.locale, "
                "device_os = excluded.device_os, country = excluded.country, updated_at = excluded.updated_at",
            )
        if step.consent:
            _execute_rows(
                store,
                cur,
                "INSERT INTO consent_changes (profile_id, channel, purpose, granted, input, source, message_id, "
                '"timestamp", recorded_at)',
                _CONSENT_TYPES,
                [
                    (c.profile_id, c.channel, c.purpose, c.granted, c.input, c.source, c.message_id, c.timestamp, now)
                    for c in step.consent
                ],
            )
        if step.dropped_seqs:
            cur.execute(sql("DELETE FROM events WHERE seq IN (SELECT unnest(%s::BIGINT[]))"), [step.dropped_seqs])
        for digest, count in step.dropped_by_hash.items():
            cur.execute(
                sql("UPDATE erasure_tombstones SET dropped_events = dropped_events + %s WHERE identifier_hash = %s"),
                [count, digest],
            )
        if step.checkpoint is not None and step.position is not None:
            cur.execute(
                sql(
                    "INSERT INTO process_checkpoints VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                    "position = excluded.position, updated_at = excluded.updated_at"
                ),
                [step.checkpoint, step.position, now],
            )


def _write_merges(store: _StepAccess, cur: Any, merges: Sequence[MergeRow], now: dt.datetime) -> None:
    """Merge rows stay one hop from the canonical id: rows that pointed at a merged id now point at its survivor."""
    final, renamed = settle_merges(merges)
    renames = [(old, new) for old, new in renamed.items() if old != new]
    if renames:
        select, params = _rows(store, _RENAME_TYPES, renames)
        cur.execute(
            "UPDATE profile_merges SET survivor_profile_id = renamed.c1 "
            f"FROM ({select}) AS renamed (c0, c1) WHERE profile_merges.survivor_profile_id = renamed.c0",
            params,
        )
    last = {m.merged_profile_id: m for m in merges}
    _execute_rows(
        store,
        cur,
        "INSERT INTO profile_merges (merged_profile_id, survivor_profile_id, reason, message_id, merged_at, "
        "recorded_at)",
        _MERGE_TYPES,
        [
            (m.merged_profile_id, final[m.merged_profile_id], m.reason, m.message_id, m.merged_at, now)
            for m in last.values()
        ],
        "ON CONFLICT (merged_profile_id) DO UPDATE SET survivor_profile_id = excluded.survivor_profile_id, "
        "reason = excluded.reason, message_id = excluded.message_id, merged_at = excluded.merged_at, "
        "recorded_at = excluded.recorded_at",
    )
