"""The one place that decides what a failed step attempt leads to: another attempt, and when, or not.

A temporary error (conflict, throttling, a 5xx, a timeout) is retried while the step's ``retry.attempts``
last, after ``retry.backoff`` doubled per attempt with ±10 % jitter (the journal's reconnect schedule),
or after the server's ``Retry-After`` when that is longer. A permanent error fails at once. An open
circuit breaker is no failure of the step at all: the execution waits for the breaker's half-open probe
and the attempt is not counted.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from kurative.errors import ActionError, BreakerOpen, TemporaryActionError
from kurative.journal.backoff import Backoff
from kurative.playbooks.models import Retry

MAX_DELAY = 600.0


@dataclass(frozen=True, slots=True)
class Decision:
    """``retry``: run the step again after ``delay`` seconds; ``counted``: the attempt used one try."""

    retry: bool
    delay: float = 0.0
    counted: bool = True


def decide(error: BaseException, retry: Retry, failures: int, rng: random.Random | None = None) -> Decision:
    """What to do after ``error``, the ``failures``-th counted failure of a step with ``retry``."""
    if isinstance(error, BreakerOpen):
        return Decision(True, max(error.retry_after, 0.1), counted=False)
    temporary = isinstance(error, TemporaryActionError | TimeoutError) or (
        isinstance(error, ActionError) and error.temporary
    )
    if not temporary or failures >= retry.attempts:
        return Decision(False)
    schedule = Backoff(initial=retry.backoff, maximum=MAX_DELAY).delays(rng)
    delay = 0.0
    for _ in range(failures):
        delay = next(schedule)
    asked = getattr(error, "retry_after", None)
    if isinstance(asked, int | float) and math.isfinite(asked):
        delay = max(delay, min(float(asked), MAX_DELAY))
    return Decision(True, delay)
