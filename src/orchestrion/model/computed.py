"""Real-time computed traits (issue 4): one declaration, run on the stream and compiled to SQL.

Public API (import from here):

- `ComputedTrait` (pydantic) and `parse_computed_traits(items, origin)`: declarations under `computed_traits:`.
- Streaming, pure: `update(state, event, trait)`, `update_with_outcome(...)`, `value(state, trait, as_of)`,
  `merge(a, b, trait)`, `prune(state, trait, as_of)`, `to_json(state)` / `from_json(text)`, `empty_value_of(trait)`.
- SQL: `compile_sql(trait, as_of, dialect)`, `decode_sql_value(trait, raw)`, `window_bounds(trait, as_of)`,
  `reconcile(trait, streamed, sql_rows) -> list[Drift]`, `values_agree(a, b)`.
- Backfill and repair: `compile_history_sql(trait, as_of, profile_ids, dialect)` → `history_rows(rows)` →
  `rebuild(trait, pairs, as_of) -> {profile_id: TraitState}`.

Semantics are in docs/computed-traits.md; the module docstrings of computed_state and computed_sql say why.
"""

from __future__ import annotations

from orchestrion.model.computed_declaration import (
    AGGREGATES,
    ComputedTrait,
    ComputedTraitError,
    Window,
    parse_computed_traits,
    parse_window,
)
from orchestrion.model.computed_filter import (
    CompiledFilter,
    FilterEvaluationError,
    UnsupportedFilter,
    compiled_filter,
    parse_filter,
)
from orchestrion.model.computed_sql import (
    Drift,
    StoredEvent,
    compile_history_sql,
    compile_sql,
    decode_sql_value,
    filter_sql,
    history_rows,
    reconcile,
    values_agree,
    window_bounds,
)
from orchestrion.model.computed_state import (
    ALL_TIME_OPEN_DAYS,
    Outcome,
    StateMismatch,
    TraitEvent,
    TraitState,
    empty_state,
    empty_value_of,
    from_json,
    merge,
    prune,
    rebuild,
    to_json,
    update,
    update_with_outcome,
    value,
)

__all__ = [
    "AGGREGATES",
    "ALL_TIME_OPEN_DAYS",
    "CompiledFilter",
    "ComputedTrait",
    "ComputedTraitError",
    "Drift",
    "FilterEvaluationError",
    "Outcome",
    "StateMismatch",
    "StoredEvent",
    "TraitEvent",
    "TraitState",
    "UnsupportedFilter",
    "Window",
    "compile_history_sql",
    "compile_sql",
    "compiled_filter",
    "decode_sql_value",
    "empty_state",
    "empty_value_of",
    "filter_sql",
    "from_json",
    "history_rows",
    "merge",
    "parse_computed_traits",
    "parse_filter",
    "parse_window",
    "prune",
    "rebuild",
    "reconcile",
    "to_json",
    "update",
    "update_with_outcome",
    "value",
    "values_agree",
    "window_bounds",
]
