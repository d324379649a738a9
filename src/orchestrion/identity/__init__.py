"""Consolidate: identity graph, canonical profiles, consent and erasure."""
