"""What a model's result must satisfy before it replaces the table readers see, by kind.

- traits, state, audience: a `profile_id` column, never NULL, one row per profile.
- state: the state column holds only the declared values (no NULL).
- table: its `unique_key`, when declared, is unique and never NULL.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrion.model.config import PROFILE_COLUMN, ModelKind
from orchestrion.model.errors import ModelBuildFailed
from orchestrion.model.project import Model
from orchestrion.store.warehouse import WarehouseCursor, quoted

_SHOWN = 3


def result_columns(cur: WarehouseCursor, table: str) -> list[str]:
    return cur.fetch(f"SELECT * FROM {quoted(table)} WHERE 1 = 0").columns


def check_result(cur: WarehouseCursor, model: Model, table: str, where: str = "") -> int:
    """Raise ModelBuildFailed naming the file and the offending values; `where` limits the rows checked.

    Returns the number of rows checked: one scan counts them, their NULL keys and their distinct keys; the query
    that names duplicates runs only when there are some.
    """
    config = model.config
    columns = result_columns(cur, table)
    keys = config.key_columns
    missing = [key for key in keys if key not in columns]
    if model.kind is ModelKind.STATE and config.column not in columns:
        missing.append(config.column)
    if config.incremental is not None and config.incremental.time_column not in columns:
        missing.append(config.incremental.time_column)
    if missing:
        raise ModelBuildFailed(
            f"{model.where}: a {model.kind.value} model's result needs the column(s) {', '.join(missing)} "
            f"(it has: {', '.join(columns)})"
        )
    where_sql = f" WHERE {where}" if where else ""
    if not keys:
        rows = int(cur.fetch(f"SELECT count(*) FROM {quoted(table)}{where_sql}").rows[0][0])
    else:
        rows = _check_keys(cur, model, table, keys, where_sql)
    if model.kind is ModelKind.STATE:
        _check_states(cur, model, table, config.column, config.values, where_sql)
    return rows


def _check_keys(cur: WarehouseCursor, model: Model, table: str, keys: Sequence[str], where_sql: str) -> int:
    key_list = ", ".join(quoted(k) for k in keys)
    any_null = " OR ".join(f"{quoted(k)} IS NULL" for k in keys)
    distinct = f"count(DISTINCT {key_list})" if len(keys) == 1 else f"count(DISTINCT ({key_list}))"
    rows, nulls, distinct_keys = cur.fetch(
        f"SELECT count(*), count(*) FILTER (WHERE {any_null}), {distinct} FROM {quoted(table)}{where_sql}"
    ).rows[0]
    if nulls:
        raise ModelBuildFailed(f"{model.where}: {nulls} row(s) have a NULL {' or '.join(keys)}; filter them out")
    if distinct_keys == rows:
        return int(rows)
    duplicates = cur.fetch(
        f"SELECT {key_list}, count(*) FROM {quoted(table)}{where_sql} GROUP BY {key_list} "
        f"HAVING count(*) > 1 ORDER BY {key_list} LIMIT {_SHOWN}"
    ).rows
    shown = "; ".join(f"{', '.join(str(v) for v in row[:-1])} ({row[-1]} rows)" for row in duplicates)
    per = PROFILE_COLUMN if model.kind is not ModelKind.TABLE else ", ".join(keys)
    raise ModelBuildFailed(
        f"{model.where}: a {model.kind.value} model has one row per {per}, but some repeat: {shown}; "
        f"group by {per}" + (" or add DISTINCT" if model.kind is ModelKind.AUDIENCE else "")
    )


def _check_states(
    cur: WarehouseCursor, model: Model, table: str, column: str, values: Sequence[str], where_sql: str
) -> None:
    allowed = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    wrong = cur.fetch(
        f"SELECT DISTINCT CAST({quoted(column)} AS VARCHAR) FROM {quoted(table)} "
        f"WHERE ({quoted(column)} IS NULL OR CAST({quoted(column)} AS VARCHAR) NOT IN ({allowed}))"
        f"{where_sql.replace(' WHERE ', ' AND ', 1)} "
        f"LIMIT {_SHOWN}"
    ).rows
    if wrong:
        found = ", ".join("NULL" if row[0] is None else repr(row[0]) for row in wrong)
        raise ModelBuildFailed(
            f"{model.where}: `{column}` holds {found}, which is not among the declared values "
            f"({', '.join(values)}); fix the SQL or the values list"
        )
