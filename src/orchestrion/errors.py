"""One error tree for the whole product.

`TransientError`s are retried; `TerminalError`s are shown to a person or dead-lettered.
Adapters translate driver and HTTP errors into these at the boundary.
"""

from __future__ import annotations


class OrchestrionError(Exception):
    """Root of every error Orchestrion raises on purpose."""


class ConfigError(OrchestrionError):
    """A workspace file or setting is wrong; the message names the file, the field and the fix."""


class TransientError(OrchestrionError):
    """A passing fault (a database or broker not answering); retrying may succeed."""


class TerminalError(OrchestrionError):
    """A fault that retrying will not fix."""


class StorageUnavailable(TransientError):
    """The storage backend could not be reached or refused the connection."""


class QueryRejected(TerminalError):
    """A read-only query was refused (not a single read statement, or the engine rejected it)."""
