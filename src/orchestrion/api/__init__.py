"""The HTTP face: ingestion, SDK config, admin API, health and metrics."""
