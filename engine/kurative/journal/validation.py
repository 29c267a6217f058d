"""Argument checks shared by the backends, made before any transaction starts.

A caller's mistake (a negative window, an unknown state, a page of a million rows) is refused with
:class:`kurative.errors.RecordRejected` naming the argument, never turned into a half-run transaction.
"""

from __future__ import annotations

import math

from kurative.errors import RecordRejected
from kurative.journal.encoding import JournalLimits
from kurative.journal.models import RELEASE_STATES, ExecutionRequest, ExecutionState

MAX_PAGE = 1000


def _positive(value: float, what: str) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value <= 0:
        raise RecordRejected(f"{what} must be a positive number of seconds, got {value!r}")


def check_request(request: ExecutionRequest, limits: JournalLimits) -> None:
    """Refuse an execution request the matcher should never have built."""
    for what, text in (
        ("playbook name", request.playbook_name),
        ("playbook content hash", request.playbook_hash),
        ("dedupe key", request.dedupe_key),
    ):
        if text is None:
            continue
        if not isinstance(text, str) or not text:
            raise RecordRejected(f"{what} must be a non-empty string, got {text!r}")
        if len(text) > limits.max_text_chars or "\x00" in text:
            raise RecordRejected(
                f"{what} must be at most {limits.max_text_chars} characters without NUL bytes"
            )
    if isinstance(request.playbook_version, bool) or not isinstance(request.playbook_version, int):
        raise RecordRejected(f"playbook version must be an integer, got {request.playbook_version!r}")
    if request.dedupe_window is not None:
        _positive(request.dedupe_window, "dedupe window")
    for limit in request.limits:
        if not isinstance(limit.key, str) or len(limit.key) > limits.max_text_chars or "\x00" in limit.key:
            raise RecordRejected(
                f"limit key must be a string of at most {limits.max_text_chars} characters without NUL bytes"
            )
        if not isinstance(limit.name, str) or len(limit.name) > limits.max_text_chars or "\x00" in limit.name:
            raise RecordRejected(
                f"limit name must be a string of at most {limits.max_text_chars} characters without NUL bytes"
            )
        if isinstance(limit.max, bool) or not isinstance(limit.max, int) or limit.max < 0:
            raise RecordRejected(f"limit max must be a non-negative integer, got {limit.max!r}")
        _positive(limit.per, "limit period")


def check_lease_seconds(seconds: float) -> None:
    _positive(seconds, "lease duration")


def check_page_limit(limit: int, *, what: str = "limit", maximum: int = MAX_PAGE) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise RecordRejected(f"{what} must be an integer from 1 to {maximum}, got {limit!r}")


def check_release(state: ExecutionState | str, delay: float) -> ExecutionState:
    try:
        checked = ExecutionState(state)
    except ValueError:
        raise RecordRejected(f"unknown execution state {state!r}") from None
    if checked not in RELEASE_STATES:
        raise RecordRejected(
            f"an execution cannot be released as {checked}: use one of "
            + ", ".join(sorted(s.value for s in RELEASE_STATES))
        )
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) or delay < 0:
        raise RecordRejected(f"delay must be zero or a positive number of seconds, got {delay!r}")
    return checked
