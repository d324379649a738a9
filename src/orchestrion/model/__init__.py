"""Models: traits, states and audiences as SQL over the warehouse (models/*.sql), built in dependency order.

`project.py` loads and checks the files, `compile.py` turns a model into an engine's statement, `runner.py` builds
them (atomic swaps, incremental buckets), `audiences.py` turns membership changes into events, `freshness.py`
watches SLOs, `scheduler.py` refreshes inside the server. See docs/models.md.
"""
