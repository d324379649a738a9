"""Audience membership: each build diffs the new member set against `audience_memberships`.

The diff is written to `audience_changes` in the same transaction as the table swap (an outbox), then emitted
as `audience_entered` / `audience_exited` events. A crash between the two leaves the changes pending; the next
run emits them with the same messageIds, and the event log's dedup stores each once. A build whose membership
did not change writes no change, so refreshing again emits nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from orchestrion.model.signals import AUDIENCE_ENTERED, AUDIENCE_EXITED, internal_event
from orchestrion.store.ports import IngestBatch, Store
from orchestrion.store.warehouse import Warehouse, WarehouseCursor, product_sql, quoted

_EMIT_BATCH = 2000


@dataclass(frozen=True)
class MembershipDiff:
    entered: int
    exited: int


def record_membership_changes(
    cur: WarehouseCursor, dialect: str, audience: str, members_table: str, build_id: str, at: dt.datetime
) -> MembershipDiff:
    """Inside the swap's transaction: record who entered and left, and make the memberships the new set."""
    prefix = f"audience:{audience}:"
    members = quoted(members_table)
    # Who is new and who left, by anti-joins between the new set and the memberships (not the change history,
    # which only grows).
    entering = (
        f"SELECT DISTINCT n.profile_id FROM {members} AS n WHERE NOT EXISTS (SELECT 1 FROM "
        "audience_memberships AS a WHERE a.audience = CAST(? AS VARCHAR) AND a.profile_id = n.profile_id)"
    )
    leaving = (
        "SELECT a.profile_id FROM audience_memberships AS a WHERE a.audience = CAST(? AS VARCHAR) AND NOT EXISTS "
        f"(SELECT 1 FROM {members} AS n WHERE n.profile_id = a.profile_id)"
    )

    def record(change: str, select_profiles: str) -> int:
        count = cur.fetch(product_sql(f"SELECT count(*) FROM ({select_profiles}) AS c", dialect), [audience])
        if not count.rows[0][0]:
            return 0
        cur.execute(
            product_sql(
                "INSERT INTO audience_changes (message_id, audience, profile_id, change, build_id, occurred_at) "
                "SELECT CAST(? AS VARCHAR) || c.profile_id || CAST(? AS VARCHAR), CAST(? AS VARCHAR), c.profile_id, "
                f"CAST(? AS VARCHAR), CAST(? AS VARCHAR), CAST(? AS TIMESTAMPTZ) FROM ({select_profiles}) AS c",
                dialect,
            ),
            [prefix, f":{build_id}:{change}", audience, change, build_id, at, audience],
        )
        return int(count.rows[0][0])

    entered = record("entered", entering)
    exited = record("exited", leaving)
    if exited:
        cur.execute(
            product_sql(
                "DELETE FROM audience_memberships AS a WHERE a.audience = ? AND NOT EXISTS "
                f"(SELECT 1 FROM {members} AS n WHERE n.profile_id = a.profile_id)",
                dialect,
            ),
            [audience],
        )
    if entered:
        cur.execute(
            product_sql(
                "INSERT INTO audience_memberships (audience, profile_id, entered_at, build_id) SELECT "
                f"CAST(? AS VARCHAR), c.profile_id, CAST(? AS TIMESTAMPTZ), CAST(? AS VARCHAR) FROM ({entering}) AS c",
                dialect,
            ),
            [audience, at, build_id, audience],
        )
    return MembershipDiff(entered=entered, exited=exited)


def emit_pending_changes(warehouse: Warehouse, store: Store, now: dt.datetime) -> int:
    """Write every recorded, not yet emitted change into the event log; returns how many were emitted."""
    emitted = 0
    while True:
        pending = warehouse.fetch(
            product_sql(
                "SELECT message_id, audience, profile_id, change, build_id, occurred_at FROM audience_changes "
                f"WHERE emitted_at IS NULL ORDER BY occurred_at, message_id LIMIT {_EMIT_BATCH}",
                warehouse.dialect,
            )
        ).rows
        if not pending:
            return emitted
        events = [
            internal_event(
                AUDIENCE_ENTERED if change == "entered" else AUDIENCE_EXITED,
                str(message_id),
                {"audience": audience, "profile_id": profile_id, "build_id": build_id},
                occurred_at,
                now,
            )
            for message_id, audience, profile_id, change, build_id, occurred_at in pending
        ]
        store.append([IngestBatch(events=events)])
        ids = [str(row[0]) for row in pending]
        with warehouse.transaction() as cur:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                cur.execute(
                    product_sql(
                        "UPDATE audience_changes SET emitted_at = ? WHERE message_id IN "
                        f"({', '.join(['?'] * len(chunk))})",
                        warehouse.dialect,
                    ),
                    [now, *chunk],
                )
        emitted += len(pending)
