"""Merge rows of a processing step written in two statements leave what writing them one by one would.

One by one, each merge upserts its row (merged -> survivor) and then points every row whose survivor is the merged
id at the survivor. The batched write renames the rows that existed before the step with `settle_merges`' renames,
then upserts each merged id's final row. Random chains over a few ids (repeats, cycles, revived ids) must agree.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from orchestrion.store.profile_rows import MergeRow
from orchestrion.store.step_sql import settle_merges

IDS = ["p1", "p2", "p3", "p4", "p5"]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def one_by_one(rows: dict[str, str], merges: list[MergeRow]) -> dict[str, str]:
    result = dict(rows)
    for merge in merges:
        result[merge.merged_profile_id] = merge.survivor_profile_id
        for merged, survivor in result.items():
            if survivor == merge.merged_profile_id:
                result[merged] = merge.survivor_profile_id
    return result


def batched(rows: dict[str, str], merges: list[MergeRow]) -> dict[str, str]:
    final, renamed = settle_merges(merges)
    result = {merged: renamed.get(survivor, survivor) for merged, survivor in rows.items()}
    result.update(final)
    return result


merge_pairs = st.lists(
    st.tuples(st.sampled_from(IDS), st.sampled_from(IDS)).filter(lambda pair: pair[0] != pair[1]), max_size=8
)
existing_rows = st.dictionaries(st.sampled_from(IDS), st.sampled_from(IDS), max_size=5)


@given(existing_rows, merge_pairs)
def test_batched_merge_rows_equal_one_by_one(rows: dict[str, str], pairs: list[tuple[str, str]]) -> None:
    merges = [MergeRow(merged, survivor, "event", f"m{i}", T0) for i, (merged, survivor) in enumerate(pairs)]
    assert batched(rows, merges) == one_by_one(rows, merges)


def test_a_chain_within_one_step_ends_on_the_last_survivor() -> None:
    merges = [MergeRow("a", "b", "event", "m1", T0), MergeRow("b", "c", "event", "m2", T0)]
    final, renamed = settle_merges(merges)
    assert final == {"a": "c", "b": "c"}
    assert renamed == {"a": "c", "b": "c"}  # an older row x -> a ends on c too
