"""The read-only gate of `POST /api/query` and `orchestrion sql`: reads pass, anything that writes is refused."""

from __future__ import annotations

import pytest

from orchestrion.errors import QueryRejected
from orchestrion.store.readonly import check_read_only

DIALECTS = ["duckdb", "postgres"]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "sql",
    [
        "select count(*) from tracks",
        "SELECT event, count(*) AS n FROM events GROUP BY 1 ORDER BY 2 DESC LIMIT 5;",
        "with t as (select * from tracks) select user_id from t",
        "select 1 union all select 2",
        "select * from identifies where email like '%@example.com'",
        "select 'drop table events' as text",
        "-- a comment\nselect 1",
    ],
)
def test_reads_pass(sql: str, dialect: str) -> None:
    check_read_only(sql, dialect)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("sql", "needle"),
    [
        ("insert into events (source) values ('x')", "INSERT"),
        ("update quarantine set replayed_at = now()", "UPDATE"),
        ("delete from message_ids", "DELETE"),
        ("drop table events", "DROP"),
        ("create table x as select 1", "CREATE"),
        ("alter table events add column y int", "ALTER"),
        ("truncate events", "only read queries"),
        ("select 1; drop table events", "exactly one statement (got 2)"),
        ("select 1; select 2", "exactly one statement (got 2)"),
        ("with gone as (delete from events returning *) select * from gone", "DELETE inside the query"),
        ("", "exactly one statement (got 0)"),
        ("select from where (", "cannot parse"),
    ],
)
def test_writes_and_several_statements_are_refused(sql: str, needle: str, dialect: str) -> None:
    with pytest.raises(QueryRejected) as caught:
        check_read_only(sql, dialect)
    assert needle in str(caught.value)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("sql", "needle"),
    [
        ("select * into copy_of_events from events", "INTO"),
        ("select setval('events_seq', 1)", "setval() changes a sequence"),
        ("select id, NEXTVAL('quarantine_seq') from quarantine", "NEXTVAL() changes a sequence"),
    ],
)
def test_writes_hidden_in_a_select_are_refused(sql: str, needle: str, dialect: str) -> None:
    with pytest.raises(QueryRejected) as caught:
        check_read_only(sql, dialect)
    assert needle in str(caught.value)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "sql", ["copy events to '/tmp/out.csv'", "install httpfs", "set threads = 1", "pragma version", "begin"]
)
def test_engine_commands_are_refused(sql: str, dialect: str) -> None:
    with pytest.raises(QueryRejected):
        check_read_only(sql, dialect)
