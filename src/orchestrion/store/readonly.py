"""The read-only gate of `POST /api/query` and `orchestrion sql`: one statement that only reads."""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from orchestrion.errors import QueryRejected

_WRITES = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Merge,
    exp.Command,
    exp.Copy,
    exp.Into,
)
# Functions that write although they sit in a SELECT. PostgreSQL refuses them in its read-only transaction;
# DuckDB has no read-only transaction on a writing connection, so the gate must (setval would rewind
# events_seq, the order the pipeline reads events in).
_WRITING_FUNCTIONS = frozenset({"nextval", "setval"})


def check_read_only(sql: str, dialect: str) -> None:
    """Raise QueryRejected unless `sql` is exactly one SELECT-like statement."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except sqlglot.errors.ParseError as exc:
        first = str(exc).splitlines()[0]
        raise QueryRejected(f"cannot parse the query: {first}") from exc
    if len(statements) != 1:
        raise QueryRejected(f"send exactly one statement (got {len(statements)})")
    statement = statements[0]
    if not isinstance(statement, exp.Query | exp.Describe):
        raise QueryRejected(
            f"only read queries are allowed (SELECT, WITH ... SELECT, DESCRIBE); got {statement.key.upper()}"
        )
    for node in statement.walk():
        if isinstance(node, _WRITES):
            raise QueryRejected(f"only read queries are allowed; found {node.key.upper()} inside the query")
        if isinstance(node, exp.Anonymous) and str(node.name).lower() in _WRITING_FUNCTIONS:
            raise QueryRejected(f"only read queries are allowed; {node.name}() changes a sequence")
