"""Durations as playbooks and config write them: ``500ms``, ``30s``, ``5m``, ``1h30m``, ``2d``."""

from __future__ import annotations

import re

from kurative.errors import KurativeError

DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d))+$"
_PART = re.compile(r"([0-9]+)(ms|s|m|h|d)")
_WHOLE = re.compile(DURATION_PATTERN)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class DurationError(KurativeError, ValueError):
    """A duration string is malformed."""


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise :class:`DurationError` with a hint when malformed."""
    if not isinstance(text, str) or not _WHOLE.match(text):
        raise DurationError(
            f"invalid duration {text!r}: write a number with a unit, such as 500ms, 30s, 5m, 1h or 1h30m"
        )
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest duration string for ``seconds`` (inverse of :func:`parse_duration`)."""
    if seconds < 1 and seconds > 0:
        return f"{round(seconds * 1000)}ms"
    rest = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"
