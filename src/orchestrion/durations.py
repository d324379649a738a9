"""Parsing of human durations used across workspace files: `30s`, `15m`, `2h`, `7d`, `1d12h`."""

from __future__ import annotations

import datetime as dt
import re

_PART = re.compile(r"(\d+)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | int | float) -> dt.timedelta:
    """Parse `7d`, `1h30m`, `45s` or a number of seconds; raise ValueError naming the accepted forms."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return dt.timedelta(seconds=float(text))
    cleaned = str(text).strip().replace(" ", "")
    if not cleaned:
        raise ValueError("empty duration; write e.g. '30s', '15m', '2h' or '7d'")
    pos = 0
    seconds = 0.0
    for match in _PART.finditer(cleaned):
        if match.start() != pos:
            break
        seconds += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(cleaned):
        raise ValueError(f"cannot read duration {text!r}; write e.g. '30s', '15m', '2h', '7d' or '1d12h'")
    return dt.timedelta(seconds=seconds)
