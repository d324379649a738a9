"""Consolidate: identity graph, canonical profiles, consent and erasure.

The pure core of identity resolution (no I/O, no clock, deterministic):

- `config`      — the `identity:` section of orchestrion.yml (`IdentityConfig`) and its compiled `IdentityPolicy`;
- `links`       — `Identifier`, the `Link` an event makes, the admin `Unlink`, and their `RecordKey` order;
- `identifiers` — `link_of(event, policy)`: the identifiers of a normalized event, placeholders refused;
- `matching`    — limits, profile size and admin separations: which identifiers of a link may be linked;
- `graph`       — `IdentityGraph` and its transitions `apply(graph, link)` / `unlink(graph, rule)`;
- `effects`     — what a transition changed, as values a store applies;
- `resolver`    — `IdentityResolver`: arrival-order independent, replays a component for late links;
- `hindsight`   — recognises late links that change nothing, without a replay;
- `ledger`      — what the effects handed out so far told a store, so rebuild corrections are exact;
- `traits`      — last-write-wins profile traits with provenance.
"""
