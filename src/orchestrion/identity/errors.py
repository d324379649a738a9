"""Errors of identity resolution."""

from __future__ import annotations

from orchestrion.errors import TerminalError


class UnlinkRefused(TerminalError):
    """An admin unmerge cannot be done as asked (the identifier is on no profile, or alone on its profile)."""
