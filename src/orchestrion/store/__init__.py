"""Storage: ports (ports.py) and backends chosen by a URL (duckdb:///..., postgresql://...)."""

from __future__ import annotations

from orchestrion.errors import ConfigError
from orchestrion.store.ports import Store


def open_store(url: str, *, read_only: bool = False, migrate: bool = True) -> Store:
    """Open (and by default migrate) the backend a URL names; drivers are imported lazily."""
    store: Store
    if url.startswith("duckdb:///"):
        from orchestrion.store.duckdb_backend import DuckDBStore

        store = DuckDBStore(url.removeprefix("duckdb:///"), read_only=read_only)
    elif url.startswith(("postgresql://", "postgres://")):
        from orchestrion.store.postgres_backend import PostgresStore

        store = PostgresStore(url)
    else:
        raise ConfigError(f"unsupported database URL {url!r}; use duckdb:///path or postgresql://...")
    if migrate and not read_only:
        store.migrate()
    return store
