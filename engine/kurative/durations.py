"""Durations as playbooks and config write them: ``500ms``, ``30s``, ``5m``, ``1h30m``, ``2d``.

A duration is bounded (:data:`MAX_DURATION_SECONDS`): a number with hundreds of digits would otherwise
overflow float conversion, or parse to infinity and break every later use (formatting, deadlines,
timers). The schemas mark durations with ``"format": "duration"``, and :data:`FORMAT_CHECKER` makes
validation apply this parser, so that a document that passes the schema always parses here.
:data:`FORMATS` is the same check for the quick schema check, which needs no jsonschema: the checker
is built (and jsonschema imported) on first use, as ``format_checker()`` or ``FORMAT_CHECKER``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from kurative.errors import KurativeError

if TYPE_CHECKING:
    import jsonschema

DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d))+(?!\n)$"
"""Also refuses a final newline, which ``$`` alone lets through (jsonschema matches with re.search)."""
_PART = re.compile(r"([0-9]+)(ms|s|m|h|d)")
_WHOLE = re.compile(DURATION_PATTERN)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION_DAYS = 36500
MAX_DURATION_SECONDS = MAX_DURATION_DAYS * 86400.0
# No number of more digits can stay within the maximum, whatever its unit (milliseconds need 13).
_MAX_DIGITS = len(str(int(MAX_DURATION_SECONDS * 1000)))


class DurationError(KurativeError, ValueError):
    """A duration string is malformed or out of range."""


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37]) + f"... ({len(text)} characters)"


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise :class:`DurationError` with a hint when malformed."""
    if not isinstance(text, str) or not _WHOLE.fullmatch(text):
        shown = _shown(text) if isinstance(text, str) else repr(text)
        raise DurationError(
            f"invalid duration {shown}: write a number with a unit, such as 500ms, 30s, 5m, 1h or 1h30m"
        )
    total = 0.0
    for number, unit in _PART.findall(text):
        digits = number.lstrip("0")
        if len(digits) > _MAX_DIGITS:
            total = math.inf
            break
        total += int(digits or "0") * _UNIT_SECONDS[unit]
    if total > MAX_DURATION_SECONDS:
        raise DurationError(
            f"duration {_shown(text)} is longer than the maximum of {MAX_DURATION_DAYS}d (about 100 years)"
        )
    return total


def format_duration(seconds: float) -> str:
    """The shortest duration string for ``seconds`` (inverse of :func:`parse_duration`)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise DurationError(f"cannot write {seconds!r} seconds as a duration: it must be finite and >= 0")
    if seconds < 1 and seconds > 0:
        return f"{round(seconds * 1000)}ms"
    rest = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


def _is_duration(value: object) -> bool:
    """``"format": "duration"``: within range (wrong types and spellings are for ``type`` and ``pattern``)."""
    if isinstance(value, str) and _WHOLE.fullmatch(value):
        parse_duration(value)
    return True


def conforms_to_duration(value: object) -> bool:
    """:func:`_is_duration` as a yes/no, as ``FORMAT_CHECKER.conforms(value, "duration")``."""
    try:
        return _is_duration(value)
    except DurationError:
        return False


FORMATS: dict[str, Callable[[object], bool]] = {"duration": conforms_to_duration}
"""Every format our schemas check (any other ``format`` is an annotation only)."""


@functools.cache
def format_checker() -> jsonschema.FormatChecker:
    """The jsonschema format checker for :data:`FORMATS`, built once."""
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())
    checker.checks("duration", raises=DurationError)(_is_duration)
    return checker


def __getattr__(name: str) -> jsonschema.FormatChecker:
    if name == "FORMAT_CHECKER":  # built on first use: importing jsonschema takes a while
        return format_checker()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
