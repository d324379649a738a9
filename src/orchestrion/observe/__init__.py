"""Observability: metrics, tracing, anomaly guards."""
