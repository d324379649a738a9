"""Errors of the collection stage."""

from __future__ import annotations

from orchestrion.errors import TerminalError


class RequestRejected(TerminalError):
    """The whole request is refused (auth, unreadable body, too large, rate limited).

    `status` is the HTTP status to answer; the message is plain text a developer can act on.
    """

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
